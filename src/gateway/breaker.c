/*
 * breaker.c - the circuit breaker's state machine (see breaker.h).
 */
#include "gateway/breaker.h"

#include <assert.h>
#include <string.h>

#include "base/err.h"

void gw_breaker_config_default(struct gw_breaker_config *c)
{
    *c = (struct gw_breaker_config){
        .window = 100,
        .min_calls = 20,
        .failure_rate = 0.5,
        .slow_rate = 0.8,
        .slow_call_ms = 2000,
        .open_ms = 5000,
        .probes = 3,
        .probe_deadline_ms = 5000,
    };
}

/* A rate in (0,1]; written so that NaN fails too. */
static bool rate_ok(double r)
{
    return r > 0.0 && r <= 1.0;
}

static bool time_ok(int64_t ms)
{
    return ms >= 1 && ms <= GW_BREAKER_TIME_MAX_MS;
}

static bool config_ok(const struct gw_breaker_config *c)
{
    return c->window >= 1 && c->window <= GW_BREAKER_WINDOW_MAX &&
           c->min_calls >= 1 && c->min_calls <= c->window &&
           rate_ok(c->failure_rate) && rate_ok(c->slow_rate) &&
           time_ok(c->slow_call_ms) && time_ok(c->open_ms) && c->probes >= 1 &&
           c->probes <= GW_BREAKER_PROBES_MAX && time_ok(c->probe_deadline_ms);
}

int gw_breaker_init(struct gw_breaker *b, const struct gw_breaker_config *c)
{
    if (!config_ok(c))
        return ERR_INVALID;
    memset(b, 0, sizeof(*b));
    b->cfg = *c;
    b->state = GW_BREAKER_CLOSED;
    /* Never 0, so a zeroed ticket that was never allowed is always stale. */
    b->generation = 1;
    b->now_ms = INT64_MIN;
    return ERR_OK;
}

const char *gw_breaker_state_name(enum gw_breaker_state s)
{
    switch (s) {
    case GW_BREAKER_CLOSED: return "closed";
    case GW_BREAKER_OPEN: return "open";
    case GW_BREAKER_HALF_OPEN: return "half_open";
    }
    return "unknown";
}

/* --- moves between states ---------------------------------------------- */

static void enter_closed(struct gw_breaker *b)
{
    b->state = GW_BREAKER_CLOSED;
    b->generation++;
    b->ring_next = 0;
    b->count = 0;
    b->failures = 0;
    b->slow = 0;
}

/* Opens at at_ms, which may be earlier than the newest now_ms seen. */
static void enter_open(struct gw_breaker *b, int64_t at_ms)
{
    b->state = GW_BREAKER_OPEN;
    b->generation++;
    b->opened_at_ms = at_ms;
    b->opened_total++;
}

static void enter_half_open(struct gw_breaker *b)
{
    b->state = GW_BREAKER_HALF_OPEN;
    b->generation++;
    b->probes_issued = 0;
    b->probes_ok = 0;
    b->probes_slow = 0;
    memset(b->probe_pending, 0, sizeof(b->probe_pending));
}

/*
 * The earliest deadline among the probes still out, or -1 when none is.
 * latest picks the latest instead.
 */
static int64_t probe_deadline(const struct gw_breaker *b, bool latest)
{
    int64_t found = -1;

    for (int i = 0; i < b->probes_issued; i++) {
        if (!b->probe_pending[i])
            continue;
        int64_t due = b->probe_started_ms[i] + b->cfg.probe_deadline_ms;
        if (found < 0 || (latest ? due > found : due < found))
            found = due;
    }
    return found;
}

/*
 * Applies every time-driven move due by now_ms, each at the moment it fell
 * due.  At most: open -> half-open -> (stuck probe) open -> half-open; the
 * second half-open has no probe out, so nothing more can fall due.
 */
static void advance(struct gw_breaker *b, int64_t now_ms)
{
    if (now_ms > b->now_ms)
        b->now_ms = now_ms;
    now_ms = b->now_ms;

    if (b->state == GW_BREAKER_OPEN &&
        now_ms >= b->opened_at_ms + b->cfg.open_ms)
        enter_half_open(b);

    if (b->state == GW_BREAKER_HALF_OPEN) {
        int64_t due = probe_deadline(b, false);

        if (due >= 0 && now_ms >= due) {
            enter_open(b, due);
            if (now_ms >= b->opened_at_ms + b->cfg.open_ms)
                enter_half_open(b);
        }
    }
}

/* --- closed: the window ------------------------------------------------- */

static void window_push(struct gw_breaker *b, unsigned bits)
{
    if (b->count == b->cfg.window) {
        /* Full: the oldest outcome is where the next one goes. */
        unsigned old = b->ring[b->ring_next];

        b->failures -= (old & GW_BREAKER_CALL_FAILED) != 0;
        b->slow -= (old & GW_BREAKER_CALL_SLOW) != 0;
        b->count--;
    }
    b->ring[b->ring_next] = (uint8_t)bits;
    b->ring_next = (b->ring_next + 1) % b->cfg.window;
    b->count++;
    b->failures += (bits & GW_BREAKER_CALL_FAILED) != 0;
    b->slow += (bits & GW_BREAKER_CALL_SLOW) != 0;
    assert(b->failures >= 0 && b->failures <= b->count);
    assert(b->slow >= 0 && b->slow <= b->count);
}

static bool window_trips(const struct gw_breaker *b)
{
    if (b->count < b->cfg.min_calls)
        return false;
    return (double)b->failures / b->count >= b->cfg.failure_rate ||
           (double)b->slow / b->count >= b->cfg.slow_rate;
}

/* --- half-open: the probes ---------------------------------------------- */

static void probe_report(struct gw_breaker *b, int slot, bool failed, bool slow)
{
    if (slot < 0 || slot >= b->probes_issued || !b->probe_pending[slot])
        return; /* a second report of a probe already decided */
    b->probe_pending[slot] = false;

    if (failed) {
        enter_open(b, b->now_ms);
        return;
    }
    b->probes_ok++;
    b->probes_slow += slow;
    if (b->probes_ok < b->cfg.probes)
        return;
    if ((double)b->probes_slow / b->probes_ok >= b->cfg.slow_rate)
        enter_open(b, b->now_ms);
    else
        enter_closed(b);
}

/* --- the calls ---------------------------------------------------------- */

bool gw_breaker_allow(struct gw_breaker *b, int64_t now_ms,
                      struct gw_breaker_ticket *ticket, int64_t *retry_after_ms)
{
    int64_t wait_ms = 1;

    advance(b, now_ms);
    now_ms = b->now_ms;

    switch (b->state) {
    case GW_BREAKER_CLOSED:
        *ticket = (struct gw_breaker_ticket){b->generation, -1};
        return true;
    case GW_BREAKER_HALF_OPEN:
        if (b->probes_issued < b->cfg.probes) {
            int slot = b->probes_issued++;

            b->probe_pending[slot] = true;
            b->probe_started_ms[slot] = now_ms;
            *ticket = (struct gw_breaker_ticket){b->generation, slot};
            return true;
        }
        /* Every probe is out and, after advance(), none is past due. */
        wait_ms = probe_deadline(b, true) - now_ms;
        if (wait_ms > GW_BREAKER_BUSY_RETRY_MS)
            wait_ms = GW_BREAKER_BUSY_RETRY_MS;
        break;
    case GW_BREAKER_OPEN:
        wait_ms = b->opened_at_ms + b->cfg.open_ms - now_ms;
        break;
    }

    b->rejected_total++;
    if (wait_ms < 1)
        wait_ms = 1;
    if (retry_after_ms != NULL)
        *retry_after_ms = wait_ms;
    return false;
}

void gw_breaker_record(struct gw_breaker *b, const struct gw_breaker_ticket *t,
                       int64_t now_ms, bool failed, int64_t duration_ms)
{
    bool slow = duration_ms >= b->cfg.slow_call_ms;

    advance(b, now_ms);
    if (t->generation != b->generation)
        return; /* allowed before the last state change */

    switch (b->state) {
    case GW_BREAKER_CLOSED:
        /* A closed generation hands out no probe tickets. */
        assert(t->probe_slot == -1);
        window_push(b, (failed ? GW_BREAKER_CALL_FAILED : 0u) |
                           (slow ? GW_BREAKER_CALL_SLOW : 0u));
        if (window_trips(b))
            enter_open(b, b->now_ms);
        break;
    case GW_BREAKER_HALF_OPEN:
        probe_report(b, t->probe_slot, failed, slow);
        break;
    case GW_BREAKER_OPEN:
        /* An open generation lets nothing through, so no ticket matches. */
        assert(!"breaker: ticket of an open generation");
        break;
    }
}

enum gw_breaker_state gw_breaker_state(struct gw_breaker *b, int64_t now_ms)
{
    advance(b, now_ms);
    return b->state;
}
