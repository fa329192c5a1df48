/*
 * The ops dashboard: polls the gateway's GET /admin/ops/summary every
 * POLL_MS and draws what it says with uPlot (vendor/).  The summary holds
 * totals since the gateway started; rates are the difference between two
 * successive summaries over the time between them.
 *
 * The admin token comes from the URL fragment (#token=..., never sent to
 * a server and removed from the address bar once read) or from the form,
 * and is kept in sessionStorage, so it lasts as long as the tab.
 *
 * window.marqueeOps exposes the state for the headless test
 * (tests/integration/test_dashboard.py).
 */
(function () {
  'use strict';

  const POLL_MS = 2000;
  const FETCH_TIMEOUT_MS = 5000;
  const POINTS_MAX = 180; /* six minutes of history at POLL_MS */
  const CHART_HEIGHT = 240;
  const TOKEN_KEY = 'marquee.ops.token';
  const SUMMARY_PATH = '/admin/ops/summary';

  const COLORS = {
    requests: '#3467d4',
    errors: '#c62828',
    p50: '#1e8e3e',
    p90: '#c77700',
    p99: '#c62828',
  };
  /* One pair per show: held, sold. */
  const SHOW_COLORS = [
    ['#c77700', '#3467d4'], ['#8e44ad', '#1e8e3e'],
    ['#d35400', '#16a085'], ['#7f8c8d', '#2c3e50'],
  ];

  const state = {
    token: null,
    timer: null,
    polls: 0,
    failures: 0,
    last: null,     /* the last summary */
    lastAt: null,   /* Date of the last good answer */
    prev: null,     /* the summary before it, for rates */
    time: [],
    reqRate: [], errRate: [],
    p50: [], p90: [], p99: [],
    showIds: [],
    held: [], sold: [],   /* one array per show */
    charts: {},
  };
  window.marqueeOps = state;

  const $ = (id) => document.getElementById(id);

  /* --- token ----------------------------------------------------------- */

  function tokenFromFragment() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!m) return null;
    history.replaceState(null, '', location.pathname + location.search);
    return decodeURIComponent(m[1]);
  }

  function askToken(message) {
    stopPolling();
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $('board').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    $('status').textContent = 'signed out';
    $('token').focus();
  }

  function useToken(token) {
    state.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
    $('login').hidden = true;
    $('board').hidden = false;
    startPolling();
  }

  /* --- polling --------------------------------------------------------- */

  function startPolling() {
    stopPolling();
    poll();
  }

  function stopPolling() {
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = null;
  }

  /* The next poll is planned when this one ends, so a slow gateway never
   * has two of them in flight. */
  async function poll() {
    const ctl = new AbortController();
    const timeout = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    let res;

    try {
      res = await fetch(SUMMARY_PATH, {
        headers: { Authorization: 'Bearer ' + state.token },
        cache: 'no-store',
        signal: ctl.signal,
      });
      if (res.status === 401) {
        return askToken('The gateway refused this token.');
      }
      if (res.status === 403) {
        return askToken('The gateway has no admin token configured.');
      }
      if (!res.ok) throw new Error('answer ' + res.status);
      update(await res.json());
    } catch (e) {
      state.failures++;
      showStale(e.name === 'AbortError' ? 'no answer' : String(e.message));
    } finally {
      clearTimeout(timeout);
    }
    if (state.token !== null) state.timer = setTimeout(poll, POLL_MS);
  }

  function showStale(why) {
    const el = $('status');
    const since = state.lastAt ? ' since ' + clock(state.lastAt) : '';
    el.textContent = 'gateway unreachable' + since + ' (' + why + ')';
    el.classList.add('stale');
  }

  /* --- one summary ----------------------------------------------------- */

  function update(s) {
    state.polls++;
    state.prev = state.last;
    state.last = s;
    state.lastAt = new Date();
    const el = $('status');
    el.textContent = 'updated ' + clock(state.lastAt) + ', every ' +
      POLL_MS / 1000 + ' s';
    el.classList.remove('stale');

    record(s, state.prev);
    drawTiles(s);
    drawCharts();
    drawPools(s.pools || []);
    drawShows(s.shows || []);
  }

  /* Per second between two summaries; null across a gateway restart. */
  function rate(now, before, key) {
    if (!before) return null;
    const dt = (now.time_ms - before.time_ms) / 1000;
    const dv = now[key] - before[key];
    if (dt <= 0 || dv < 0) return null;
    return dv / dt;
  }

  function push(arr, v) {
    arr.push(v);
    if (arr.length > POINTS_MAX) arr.shift();
  }

  function record(s, before) {
    const ids = (s.shows || []).map((x) => x.id);
    if (ids.join() !== state.showIds.join()) {
      /* Another set of shows: their history starts again. */
      state.showIds = ids;
      state.held = ids.map(() => state.time.map(() => null));
      state.sold = ids.map(() => state.time.map(() => null));
      if (state.charts.seats) state.charts.seats.destroy();
      state.charts.seats = null;
    }
    const lat = s.latency_ms || {};
    push(state.time, s.time_ms / 1000);
    push(state.reqRate, rate(s, before, 'requests_total'));
    push(state.errRate, rate(s, before, 'errors_total'));
    push(state.p50, lat.p50 ?? null);
    push(state.p90, lat.p90 ?? null);
    push(state.p99, lat.p99 ?? null);
    (s.shows || []).forEach((show, i) => {
      push(state.held[i], show.held);
      push(state.sold[i], show.sold);
    });
  }

  /* --- tiles ----------------------------------------------------------- */

  function drawTiles(s) {
    const r = state.reqRate[state.reqRate.length - 1];
    const e = state.errRate[state.errRate.length - 1];
    const lat = s.latency_ms || {};

    $('stat-rate').textContent = r === null ? '-' : fixed(r);
    $('stat-requests-total').textContent = count(s.requests_total);
    const err = $('stat-error-rate');
    err.textContent = e === null ? '-' :
      fixed(e) + '/s' + (r > 0 ? ' (' + fixed(100 * e / r) + '%)' : '');
    err.classList.toggle('bad', e > 0);
    $('stat-errors-total').textContent = count(s.errors_total);

    $('stat-latency').textContent = [lat.p50, lat.p90, lat.p99]
      .map((v) => (v == null ? '-' : ms(v))).join(' / ');
    $('stat-latency-window').textContent = s.latency_window_ms == null
      ? 'ms, since the gateway started'
      : 'ms, last ' + Math.round(s.latency_window_ms / 1000) + ' s';

    let up = 0, all = 0, open = 0, half = 0;
    for (const p of s.pools || []) {
      if (p.breaker.state === 'open') open++;
      if (p.breaker.state === 'half_open') half++;
      for (const i of p.instances) {
        all++;
        if (i.health === 'up' && !i.ejected) up++;
      }
    }
    const upEl = $('stat-up');
    upEl.textContent = up + ' / ' + all;
    upEl.classList.toggle('bad', up < all);
    $('stat-breakers').textContent = open + half === 0
      ? 'all breakers closed'
      : open + ' open, ' + half + ' half-open';

    const q = $('stat-queue');
    const unread = s.queue == null || s.queue.depth == null;
    q.textContent = unread ? 'no queue' : count(s.queue.depth);
    q.classList.toggle('none', unread);
    $('stat-queue-sub').textContent = s.queue == null
      ? 'messages waiting'
      : s.queue.error != null
        ? s.queue.error
        : 'waiting; ' + count(s.queue.leased) + ' being handled, ' +
          count(s.queue.dead) + ' dead';
    $('stat-queue-sub').classList.toggle('bad', s.queue != null &&
      s.queue.dead != null && s.queue.dead > 0);
  }

  /* --- charts ---------------------------------------------------------- */

  function series(label, stroke, unit, dash) {
    return {
      label: label,
      stroke: stroke,
      width: 2,
      dash: dash,
      spanGaps: false,
      points: { show: false },
      value: (u, v) => (v == null ? '-' : fixed(v) + unit),
    };
  }

  function makeChart(el, list, yLabel) {
    const opts = {
      width: el.clientWidth || 400,
      height: CHART_HEIGHT,
      cursor: { drag: { x: false, y: false } },
      /* Labels only: the tiles give the latest values. */
      legend: { live: false },
      scales: {
        x: { time: true },
        y: { range: (u, lo, hi) => [0, niceMax(hi)] },
      },
      axes: [
        { stroke: '#6b7280', grid: { stroke: '#eef0f3' } },
        { stroke: '#6b7280', grid: { stroke: '#eef0f3' }, label: yLabel,
          size: 56 },
      ],
      series: [{}].concat(list),
    };
    return new uPlot(opts, [[]].concat(list.map(() => [])), el);
  }

  /* A y range that starts at 0 and never collapses to nothing. */
  function niceMax(hi) {
    if (!(hi > 0)) return 1;
    return hi * 1.15;
  }

  function drawCharts() {
    const c = state.charts;
    if (!c.rate) {
      c.rate = makeChart($('chart-rate'), [
        series('requests', COLORS.requests, '/s'),
        series('5xx', COLORS.errors, '/s'),
      ], 'per second');
      c.latency = makeChart($('chart-latency'), [
        series('p50', COLORS.p50, ' ms'),
        series('p90', COLORS.p90, ' ms'),
        series('p99', COLORS.p99, ' ms'),
      ], 'ms');
    }
    if (!c.seats) {
      const list = [];
      state.showIds.forEach((id, i) => {
        const pair = SHOW_COLORS[i % SHOW_COLORS.length];
        list.push(series('show ' + id + ' held', pair[0], '', [6, 4]));
        list.push(series('show ' + id + ' sold', pair[1], ''));
      });
      c.seats = makeChart($('chart-seats'), list, 'seats');
    }
    c.rate.setData([state.time, state.reqRate, state.errRate]);
    c.latency.setData([state.time, state.p50, state.p90, state.p99]);
    const seats = [state.time];
    state.showIds.forEach((id, i) => seats.push(state.held[i], state.sold[i]));
    c.seats.setData(seats);
  }

  function resizeCharts() {
    for (const key of ['rate', 'latency', 'seats']) {
      const chart = state.charts[key];
      if (chart) {
        chart.setSize({ width: chart.root.parentNode.clientWidth,
                        height: CHART_HEIGHT });
      }
    }
  }

  /* --- tables ---------------------------------------------------------- */

  function cell(row, text, cls) {
    const td = document.createElement('td');
    if (cls) td.className = cls;
    if (text instanceof Node) td.appendChild(text);
    else td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function badge(text, cls) {
    const b = document.createElement('span');
    b.className = 'badge ' + cls;
    b.textContent = text;
    return b;
  }

  function drawPools(pools) {
    const body = $('pools').tBodies[0];
    const rows = [];

    for (const p of pools) {
      const list = p.instances.length ? p.instances : [null];
      list.forEach((inst, k) => {
        const tr = document.createElement('tr');
        if (k === 0) {
          tr.className = 'pool-first';
          cell(tr, p.name + (p.balance === 'hash' ? ' (hash)' : ''))
            .rowSpan = list.length;
          const st = p.breaker.state.replace('_', '-');
          cell(tr, badge(st, st)).rowSpan = list.length;
        }
        if (inst === null) {
          cell(tr, 'no instances').colSpan = 7;
        } else {
          cell(tr, inst.address);
          cell(tr, badge(inst.health, inst.health));
          cell(tr, inst.ejected ? badge('ejected', 'ejected') : '-');
          cell(tr, count(inst.in_flight), 'num');
          cell(tr, fixed(inst.weight), 'num');
          cell(tr, count(inst.requests_total), 'num');
          cell(tr, count(inst.failures_total), 'num');
        }
        rows.push(tr);
      });
    }
    body.replaceChildren(...rows);
  }

  function drawShows(shows) {
    const body = $('shows').tBodies[0];
    body.replaceChildren(...shows.map((s) => {
      const tr = document.createElement('tr');
      tr.dataset.show = s.id;
      cell(tr, String(s.id));
      cell(tr, s.held == null ? '-' : count(s.held), 'num held');
      cell(tr, s.sold == null ? '-' : count(s.sold), 'num sold');
      cell(tr, s.free == null ? '-' : count(s.free), 'num free');
      cell(tr, s.error ? s.error : '', 'error');
      return tr;
    }));
  }

  /* --- numbers --------------------------------------------------------- */

  function fixed(v) {
    return v >= 100 ? Math.round(v).toString() : v.toFixed(1);
  }

  function ms(v) {
    return v >= 10 ? Math.round(v).toString() : v.toFixed(2);
  }

  function count(v) {
    return v == null ? '-' : Number(v).toLocaleString('en-US');
  }

  function clock(d) {
    return d.toTimeString().slice(0, 8);
  }

  /* --- start ----------------------------------------------------------- */

  $('login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    if (t) useToken(t);
  });
  let resizing = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizing);
    resizing = setTimeout(resizeCharts, 100);
  });

  const token = tokenFromFragment() || sessionStorage.getItem(TOKEN_KEY);
  if (token) useToken(token);
  else askToken('');
})();
