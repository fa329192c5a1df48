"""The ops dashboard: GET /admin/ops/summary against real catalog and
booking processes behind the gateway, and the page at /ops/ opened in
headless Chromium while load runs through the gateway.

The browser is Debian's chromium, driven by playwright-core from
build/node/node_modules; scripts/deps.sh installs both, and nothing is
installed here.  The node script is written out by the test (it is part of
the test, not a tool of its own): it opens the page with the admin token in
the URL fragment, waits for data, prints a "ready" line, waits until the
displayed request count and held seats of show 1 have grown under the load
this file sends, checks that every chart's canvas has its first series
drawn, saves a screenshot to tests/output/dashboard.png, and checks that
a tab without the token shows the form and a wrong token is refused.
"""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

from support import ApiSchema, HOST, Service, repo_path
from test_gateway import AUTH, TOKEN, Gateway, addr, wait_for

DEMO = repo_path("data", "demo", "catalog.json")
NODE_MODULES = repo_path("build", "node", "node_modules")
CHROMIUM = "/usr/bin/chromium"
OUTPUT_DIR = repo_path("tests", "output")
SCREENSHOT = os.path.join(OUTPUT_DIR, "dashboard.png")
SUMMARY = "/admin/ops/summary"
SHOW = 1
# The browser part as a whole, start to screenshot.
BROWSER_TIMEOUT_S = 50
# Seats held per hold, and holds at most, so a run never sells out show 1.
LOAD_HOLDS_MAX = 12

NODE_SCRIPT = r"""
'use strict';
const { chromium } = require('playwright-core');
const [url, shot, show] = process.argv.slice(2);
const WAIT_MS = 20000;

function say(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

/* What the page shows: the request total and show's held seats. */
function displayed(show) {
  const digits = (el) => {
    const t = el ? el.textContent.replace(/[^0-9]/g, '') : '';
    return t === '' ? NaN : Number(t);
  };
  const row = document.querySelector('#shows tr[data-show="' + show + '"]');
  return {
    requests: digits(document.getElementById('stat-requests-total')),
    held: row ? digits(row.querySelector('td.held')) : NaN,
    polls: window.marqueeOps ? window.marqueeOps.polls : 0,
  };
}

/* Per chart: pixels drawn at all, and pixels of its first series' colour
 * (the axes and grid are grey, so these are the line itself). */
function canvases(colors) {
  return [...document.querySelectorAll('.chart canvas')].map((c, i) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const [r, g, b] = colors[i];
    let drawn = 0, line = 0;
    for (let k = 0; k < d.length; k += 4) {
      if (d[k + 3] === 0) continue;
      drawn++;
      if (Math.abs(d[k] - r) < 40 && Math.abs(d[k + 1] - g) < 40 &&
          Math.abs(d[k + 2] - b) < 40 && d[k + 3] > 160) line++;
    }
    return { id: c.closest('.chart').id, width: c.width, height: c.height,
             drawn: drawn, line: line };
  });
}

/* Polls what the page shows until ok(it) or WAIT_MS; returns it. */
async function until(page, show, ok, what) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const d = await page.evaluate(displayed, show);
    if (ok(d)) return d;
    if (Date.now() > deadline) {
      throw new Error('timed out waiting for ' + what + ': ' +
                      JSON.stringify(d));
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

(async () => {
  const problems = [];
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage({
      viewport: { width: 1440, height: 960 } });
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push('console: ' + m.text());
    });
    page.on('requestfailed', (r) => problems.push('request failed: ' +
                                                  r.url()));
    await page.goto(url);
    const first = await until(page, show, (d) =>
      d.polls >= 2 && d.requests > 0 && !Number.isNaN(d.held),
      'the first data');
    if (page.url().includes('token=')) problems.push('token left in URL');
    say(Object.assign({ event: 'ready' }, first));

    await until(page, show, (d) =>
      d.requests >= first.requests + 50 && d.held > first.held &&
      d.polls >= first.polls + 3, 'the counts to grow under load');
    const last = await page.evaluate(displayed, show);
    const charts = await page.evaluate(canvases, [
      [0x34, 0x67, 0xd4], [0x1e, 0x8e, 0x3e], [0xc7, 0x77, 0x00]]);
    await page.screenshot({ path: shot, fullPage: true });

    /* A new tab without the token asks for it, and a wrong one is
     * refused with the form still there. */
    const bare = await (await browser.newContext()).newPage();
    await bare.goto(url.split('#')[0]);
    await bare.waitForSelector('#login', { state: 'visible' });
    await bare.fill('#token', 'wrong-token');
    await bare.click('#login button');
    await bare.waitForFunction(() =>
      !document.getElementById('login').hidden &&
      /refused/.test(document.getElementById('login-error').textContent),
    null, { timeout: WAIT_MS });
    say({ event: 'done', first: first, last: last, charts: charts,
          problems: problems });
  } finally {
    await browser.close();
  }
})().catch((e) => {
  say({ event: 'fail', reason: String(e && e.stack || e) });
  process.exit(1);
});
"""


def free_seats(svc, show, n):
    """Up to n free seat ids ("F5") of show, read through the gateway."""
    status, _, body = svc.json("GET", f"/v1/shows/{show}/seats")
    assert status == 200, (status, body)
    seats = []
    for row in body["rows"]:
        for number, st in zip(row["seats"], row["states"]):
            if number is not None and st == "F":
                seats.append(f"{row['label']}{number}")
    return seats[:n]


def sign_in(gw):
    """A new customer's Authorization header: the gateway names the
    customer to booking from its access token, never from the client."""
    name = "c" + uuid.uuid4().hex[:12]
    account = {"email": f"{name}@example.com", "password": "a long pass",
               "name": name}
    status, _, body = gw.json("POST", "/v1/accounts", account)
    assert status == 201, (status, body)
    status, _, body = gw.json("POST", "/v1/sessions",
                              {"email": account["email"],
                               "password": account["password"]})
    assert status == 201, (status, body)
    return {"Authorization": f"Bearer {body['access_token']}"}


def hold(svc, show, seat, auth):
    status, _, body = svc.json(
        "POST", f"/v1/shows/{show}/holds", {"seats": [seat]},
        headers=dict(auth, **{"Idempotency-Key": "k-" + uuid.uuid4().hex}))
    return status, body


class DashboardTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.catalog = Service("catalog", flags={
            "catalog.demo": "true", "catalog.demo_file": DEMO})
        cls.booking = None
        cls.gw = None
        try:
            # Booking consumes show events from a queue (in its own
            # folder), so its exposition has the queue's gauges.
            cls.booking = Service("booking", flags={
                "booking.catalog_url": cls.catalog.url,
                "mq.path": "queue.db"})
            # A pool with no instance: its route answers the gateway's own
            # 503, the errors the summary counts.
            routes = {
                "pools": {
                    "booking": {"instances": [addr(cls.booking)],
                                "balance": "hash"},
                    "catalog": {"instances": [addr(cls.catalog)]},
                    "empty": {"instances": []},
                },
                "routes": [
                    {"pattern": "/v1/shows/{show_id}/seats",
                     "pool": "booking", "hash_param": "show_id"},
                    {"pattern": "/v1/shows/{show_id}/holds",
                     "pool": "booking", "hash_param": "show_id"},
                    {"prefix": "/v1/empty/", "pool": "empty"},
                    {"prefix": "/v1/", "pool": "catalog"},
                ],
            }
            cls.gw = Gateway(routes)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for svc in (cls.gw, cls.booking, cls.catalog):
            if svc is None:
                continue
            try:
                svc.stop()
            finally:
                svc.close()

    def setUp(self):
        # A customer of its own per test: one may hold 10 seats of a show.
        self.auth = sign_in(self.gw)

    def summary(self):
        status, headers, data = self.gw.request("GET", SUMMARY, headers=AUTH)
        self.assertEqual(status, 200, data)
        self.assertEqual(headers.get("cache-control"), "no-store")
        ApiSchema.for_file("gateway.yaml").check("GET", SUMMARY, status,
                                                 headers, data)
        return json.loads(data)

    def show(self, body):
        return next(s for s in body["shows"] if s["id"] == SHOW)

    # ------------------------------------------------------------ summary

    def test_summary_needs_the_token(self):
        for headers in ({}, {"Authorization": "Bearer wrong-" + TOKEN}):
            status, got, body = self.gw.request("GET", SUMMARY,
                                                headers=headers)
            self.assertEqual(status, 401, body)
            self.assertIn("Bearer", got.get("www-authenticate", ""))
            ApiSchema.for_file("gateway.yaml").check("GET", SUMMARY, status,
                                                     got, body)

    def test_summary_counts_requests_errors_and_seats(self):
        before = self.summary()
        self.assertEqual([p["name"] for p in before["pools"]],
                         ["booking", "catalog", "empty"])
        # The first read starts the seat map fetch; counts follow.
        counted = wait_for("show counts", lambda: (
            lambda s: s if s["held"] is not None else None)(
                self.show(self.summary())))
        before = self.summary()

        for _ in range(20):
            self.assertEqual(self.gw.request("GET", "/v1/cities")[0], 200)
        for _ in range(3):
            self.assertEqual(self.gw.request("GET", "/v1/empty/x")[0], 503)
        seats = free_seats(self.gw, SHOW, 2)
        for seat in seats:
            status, body = hold(self.gw, SHOW, seat, self.auth)
            self.assertEqual(status, 201, body)

        after = self.summary()
        # Our 20 + 3 + 1 + 2 at least; the summaries themselves not at all.
        self.assertGreaterEqual(after["requests_total"] -
                                before["requests_total"], 26)
        self.assertLess(after["requests_total"] - before["requests_total"],
                        40)
        self.assertEqual(after["errors_total"] - before["errors_total"], 3)
        lat = after["latency_ms"]
        self.assertIsNotNone(lat["p50"])
        self.assertLessEqual(lat["p50"], lat["p90"])
        self.assertLessEqual(lat["p90"], lat["p99"])
        self.assertGreaterEqual(after["time_ms"], before["time_ms"])

        # The held seats show once the 2 s cache has been refetched.
        now = wait_for("held seats to grow", lambda: (
            lambda s: s if s["held"] >= counted["held"] + 2 else None)(
                self.show(self.summary())), timeout=8)
        self.assertEqual(now["held"] + now["sold"] + now["free"],
                         counted["held"] + counted["sold"] + counted["free"])

    def test_summary_reads_the_queue_depth_from_booking(self):
        queue = wait_for("the queue's gauges", lambda: (
            lambda q: q if q is not None and q["depth"] is not None
            else None)(self.summary()["queue"]), timeout=8)
        # Booking's queue is declared and empty; the numbers are its
        # marquee_mq_messages gauges, read through the booking pool.
        self.assertEqual((queue["depth"], queue["leased"], queue["dead"]),
                         (0, 0, 0), queue)
        self.assertNotIn("error", queue)
        _, _, text = self.booking.request("GET", "/metrics")
        self.assertIn(b'marquee_mq_messages{queue="booking.shows",'
                      b'state="ready"} 0', text)

    # ------------------------------------------------------------ browser

    def browser_missing(self):
        if not os.access(CHROMIUM, os.X_OK):
            return f"{CHROMIUM} is missing: run scripts/deps.sh"
        if not os.path.isdir(os.path.join(NODE_MODULES, "playwright-core")):
            return (f"{NODE_MODULES}/playwright-core is missing: run "
                    "scripts/deps.sh")
        if shutil.which("node") is None:
            return "node is missing: run scripts/deps.sh"
        return None

    def load(self, stop, sent):
        """GETs through the gateway, a few 503s and a hold now and then,
        until stop is set."""
        seats = free_seats(self.gw, SHOW, LOAD_HOLDS_MAX)
        n = 0
        while not stop.is_set():
            n += 1
            for path in ("/v1/cities", f"/v1/shows/{SHOW}",
                         f"/v1/shows/{SHOW}/seats"):
                self.gw.request("GET", path)
            if n % 10 == 0:
                self.gw.request("GET", "/v1/empty/x")
            if n % 5 == 0 and seats:
                if hold(self.gw, SHOW, seats.pop(), self.auth)[0] == 201:
                    sent["holds"] += 1
            sent["requests"] += 3
            time.sleep(0.01)

    def test_page_draws_live_data_in_chromium(self):
        missing = self.browser_missing()
        if missing:
            self.fail(f"cannot run the browser test: {missing}")
        os.makedirs(OUTPUT_DIR, exist_ok=True)
        if os.path.exists(SCREENSHOT):
            os.unlink(SCREENSHOT)
        tmp = tempfile.mkdtemp(prefix="marquee-dashboard-")
        script = os.path.join(tmp, "dashboard.cjs")
        with open(script, "w") as f:
            f.write(NODE_SCRIPT)
        env = dict(os.environ, NODE_PATH=NODE_MODULES)
        url = f"http://{HOST}:{self.gw.port}/ops/#token={TOKEN}"
        proc = subprocess.Popen(
            ["node", script, url, SCREENSHOT, str(SHOW)], cwd=tmp, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        watchdog = threading.Timer(BROWSER_TIMEOUT_S, proc.kill)
        watchdog.start()
        stop = threading.Event()
        sent = {"requests": 0, "holds": 0}
        loader = threading.Thread(target=self.load, args=(stop, sent),
                                  daemon=True)
        events, output = {}, []
        try:
            for line in proc.stdout:
                output.append(line)
                if not line.startswith("{"):
                    continue
                event = json.loads(line)
                events[event["event"]] = event
                if event["event"] == "ready":
                    loader.start()
            code = proc.wait()
        finally:
            watchdog.cancel()
            stop.set()
            if loader.is_alive():
                loader.join()
            shutil.rmtree(tmp, ignore_errors=True)

        text = "".join(output)
        self.assertEqual(code, 0, f"the browser script failed:\n{text}")
        done = events["done"]
        self.assertEqual(done["problems"], [], text)
        self.assertGreater(done["last"]["requests"],
                           done["first"]["requests"])
        self.assertGreater(done["last"]["held"], done["first"]["held"])
        self.assertGreater(sent["holds"], 0)
        self.assertEqual([c["id"] for c in done["charts"]],
                         ["chart-rate", "chart-latency", "chart-seats"])
        for chart in done["charts"]:
            self.assertGreater(chart["width"], 200, chart)
            self.assertGreater(chart["line"], 20,
                               f"{chart['id']}: its first series is not "
                               f"drawn: {chart}")
        with open(SCREENSHOT, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        print(f"dashboard: screenshot in {os.path.relpath(SCREENSHOT)}")


if __name__ == "__main__":
    unittest.main()
