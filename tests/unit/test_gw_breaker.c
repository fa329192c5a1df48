/*
 * test_gw_breaker.c - the circuit breaker's transitions, driven by tables
 * of steps with an explicit now_ms, a check of the closed window against a
 * reference model on random outcomes, and the config's ranges.
 */
#include "harness.h"

#include <math.h>
#include <stdbool.h>

#include "base/err.h"
#include "base/rand.h"
#include "gateway/breaker.h"

/* --- the step interpreter ----------------------------------------------- */

enum op {
    OP_END,
    OP_ALLOW,    /* allow at now must say yes; ticket into tk; slot == want */
    OP_REFUSE,   /* allow at now must say no, with retry_after == want */
    OP_RECORD,   /* report ticket tk at now: failed, dur */
    OP_STATE,    /* the state at now == want */
    OP_FILL,     /* n calls at now, each allowed (closed) and reported */
    OP_OPENED,   /* opened_total == want */
    OP_REJECTED, /* rejected_total == want */
};

struct step {
    enum op op;
    int64_t now;
    int tk;
    bool failed;
    int64_t dur;
    int n;
    int64_t want;
};

/* One step per line reads as a table; the formatter would break each up. */
/* clang-format off */
#define ALLOW(t, k, slot) {.op = OP_ALLOW, .now = (t), .tk = (k), .want = (slot)}
#define REFUSE(t, after)  {.op = OP_REFUSE, .now = (t), .want = (after)}
#define OK(t, k, d)       {.op = OP_RECORD, .now = (t), .tk = (k), .dur = (d)}
#define FAIL(t, k, d)                                                          \
    {.op = OP_RECORD, .now = (t), .tk = (k), .failed = true, .dur = (d)}
#define STATE(t, s)       {.op = OP_STATE, .now = (t), .want = (s)}
#define FILL(t, count, f, d)                                                   \
    {.op = OP_FILL, .now = (t), .n = (count), .failed = (f), .dur = (d)}
#define OPENED(k)         {.op = OP_OPENED, .want = (k)}
#define REJECTED(k)       {.op = OP_REJECTED, .want = (k)}
#define END               {.op = OP_END}
/* clang-format on */

#define TICKETS_MAX 16
#define STEPS_MAX   48

struct scenario {
    const char *name;
    struct gw_breaker_config cfg;
    struct step steps[STEPS_MAX];
};

/* A small config: slow at 100 ms, open for 1000 ms, 3 probes. */
/* clang-format off */
#define CFG(win, min, fr, sr, deadline)                                        \
    {.window = (win), .min_calls = (min), .failure_rate = (fr),                \
     .slow_rate = (sr), .slow_call_ms = 100, .open_ms = 1000, .probes = 3,    \
     .probe_deadline_ms = (deadline)}
/* clang-format on */
/*
 * The one most scenarios use: window 10, min_calls 4, failure rate 0.5,
 * slow rate 0.8, probe deadline 500 ms.
 */
#define BASE CFG(10, 4, 0.5, 0.8, 500)

#define S_CLOSED GW_BREAKER_CLOSED
#define S_OPEN   GW_BREAKER_OPEN
#define S_HALF   GW_BREAKER_HALF_OPEN

static const struct scenario scenarios[] = {
    {"failure rate opens only once min_calls are recorded",
     BASE,
     {
         FILL(0, 3, true, 10),
         STATE(0, S_CLOSED), /* 3 of 3 failed, but only 3 calls */
         FILL(1, 1, false, 10),
         STATE(1, S_OPEN), /* 3 of 4 */
         OPENED(1),
         END,
     }},
    {"failure rate opens exactly at the threshold",
     BASE,
     {
         FILL(0, 3, false, 10),
         FILL(0, 2, true, 10),
         STATE(0, S_CLOSED), /* 2 of 5 */
         FILL(0, 1, true, 10),
         STATE(0, S_OPEN), /* 3 of 6 = 0.5 */
         END,
     }},
    {"slow rate opens; slow_call_ms itself is slow",
     BASE,
     {
         FILL(0, 1, false, 99),
         FILL(0, 3, false, 100),
         STATE(0, S_CLOSED), /* 3 of 4 slow < 0.8 */
         FILL(0, 1, false, 150),
         STATE(0, S_OPEN), /* 4 of 5 slow, no failure */
         END,
     }},
    {"a failed call that is slow counts as slow too",
     CFG(10, 4, 1.0, 0.5, 500),
     {
         FILL(0, 2, false, 10),
         FILL(0, 1, true, 100),
         STATE(0, S_CLOSED),
         FILL(0, 1, true, 200),
         STATE(0, S_OPEN), /* 2 of 4 slow; 2 of 4 failed < 1.0 */
         END,
     }},
    {"a failed call that is slow counts as failed too",
     CFG(10, 4, 0.5, 1.0, 500),
     {
         FILL(0, 2, false, 10),
         FILL(0, 1, true, 100),
         STATE(0, S_CLOSED),
         FILL(0, 1, true, 200),
         STATE(0, S_OPEN), /* 2 of 4 failed; 2 of 4 slow < 1.0 */
         END,
     }},
    {"open refuses with the time left, then turns half-open",
     BASE,
     {
         FILL(1000, 4, true, 10),
         REFUSE(1000, 1000),
         REFUSE(1500, 500),
         REFUSE(1999, 1),
         STATE(1999, S_OPEN),
         STATE(2000, S_HALF),
         REJECTED(3),
         OPENED(1),
         END,
     }},
    {"half-open admits exactly the probes; all succeed: closed, empty",
     BASE,
     {
         FILL(0, 4, true, 10),
         ALLOW(1000, 0, 0),
         ALLOW(1000, 1, 1),
         ALLOW(1010, 2, 2),
         REFUSE(1010, 500), /* the last probe's deadline is 1510 */
         STATE(1010, S_HALF),
         OK(1100, 0, 10),
         OK(1100, 1, 10),
         STATE(1100, S_HALF),
         REFUSE(1100, 410), /* a decided probe is not let through again */
         OK(1200, 2, 10),
         STATE(1200, S_CLOSED),
         /* The 4 old failures are gone: 3 new ones are below min_calls. */
         FILL(1200, 3, true, 10),
         STATE(1200, S_CLOSED),
         FILL(1200, 1, true, 10),
         STATE(1200, S_OPEN),
         OPENED(2),
         REJECTED(2),
         END,
     }},
    {"half-open with every probe out asks for at most a second",
     CFG(10, 4, 0.5, 0.8, 5000),
     {
         FILL(0, 4, true, 10),
         ALLOW(1000, 0, 0),
         ALLOW(1000, 1, 1),
         ALLOW(1000, 2, 2),
         REFUSE(1000, GW_BREAKER_BUSY_RETRY_MS),
         REFUSE(5500, 500),
         END,
     }},
    {"one probe failure opens again; later probe reports are ignored",
     BASE,
     {
         FILL(0, 4, true, 10),
         ALLOW(1000, 0, 0),
         ALLOW(1000, 1, 1),
         ALLOW(1000, 2, 2),
         OK(1050, 0, 10),
         FAIL(1060, 1, 10),
         STATE(1060, S_OPEN),
         REFUSE(1060, 1000),
         OK(1070, 2, 10), /* would have been the last success */
         STATE(1070, S_OPEN),
         REFUSE(2059, 1),
         ALLOW(2060, 3, 0), /* a new round of probes */
         OPENED(2),
         END,
     }},
    {"a stuck probe opens it at its deadline; probes pass again later",
     BASE,
     {
         FILL(0, 4, true, 10),
         ALLOW(1000, 0, 0),
         ALLOW(1000, 1, 1),
         OK(1100, 0, 10),
         OK(1100, 1, 10),
         ALLOW(1200, 2, 2),
         STATE(1699, S_HALF),
         REFUSE(1699, 1),
         STATE(1700, S_OPEN), /* probe 2 was due at 1200 + 500 */
         REFUSE(1700, 1000),
         OK(1800, 2, 10), /* too late: ignored, does not close */
         STATE(1800, S_OPEN),
         STATE(2700, S_HALF),
         ALLOW(2700, 3, 0),
         ALLOW(2700, 4, 1),
         ALLOW(2700, 5, 2),
         OK(2750, 3, 10),
         OK(2750, 4, 10),
         OK(2750, 5, 10),
         STATE(2750, S_CLOSED),
         OPENED(2),
         END,
     }},
    {"a stuck probe is judged at its deadline even when nobody looked",
     BASE,
     {
         FILL(0, 4, true, 10),
         ALLOW(1000, 0, 0),
         /* Due at 1500, so open 1500..2500, then half-open again. */
         ALLOW(2600, 1, 0),
         STATE(2600, S_HALF),
         OPENED(2),
         END,
     }},
    {"record checks probe deadlines before it counts the outcome",
     BASE,
     {
         FILL(0, 4, true, 10),
         ALLOW(1000, 0, 0),
         ALLOW(1000, 1, 1),
         ALLOW(1000, 2, 2),
         OK(1600, 0, 10), /* every probe was due at 1500 */
         STATE(1600, S_OPEN),
         REFUSE(1600, 900), /* open since 1500, not since 1600 */
         END,
     }},
    {"outcomes of an older generation are ignored",
     CFG(10, 1, 1.0, 1.0, 500),
     {
         ALLOW(0, 0, -1),
         ALLOW(0, 1, -1),
         ALLOW(0, 2, -1),
         ALLOW(0, 3, -1),
         FAIL(10, 1, 10),
         STATE(10, S_OPEN),
         FAIL(20, 0, 10), /* reported while open */
         STATE(20, S_OPEN),
         REFUSE(20, 990),
         ALLOW(1010, 4, 0),
         ALLOW(1010, 5, 1),
         ALLOW(1010, 6, 2),
         OK(1015, 4, 10),
         OK(1015, 5, 10),
         OK(1015, 3, 10), /* not a probe: must not close it */
         STATE(1015, S_HALF),
         OK(1020, 6, 10),
         STATE(1020, S_CLOSED),
         FAIL(1030, 2, 10), /* one failure opens now, but not this one */
         STATE(1030, S_CLOSED),
         OPENED(1),
         FILL(1030, 1, true, 10),
         STATE(1030, S_OPEN),
         END,
     }},
    {"the window slides: old failures leave it",
     CFG(4, 4, 0.5, 0.8, 500),
     {
         FILL(0, 3, false, 10),
         FILL(0, 1, true, 10),
         STATE(0, S_CLOSED), /* 1 of 4 */
         FILL(0, 4, false, 10),
         FILL(0, 1, true, 10),
         STATE(0, S_CLOSED), /* 1 of 4: the first failure has left */
         FILL(0, 1, true, 10),
         STATE(0, S_OPEN), /* 2 of 4 */
         END,
     }},
    {"slow calls leave the window too",
     CFG(4, 4, 1.0, 0.5, 500),
     {
         FILL(0, 1, false, 500),
         FILL(0, 3, false, 10),
         FILL(0, 3, false, 10),
         FILL(0, 1, false, 500),
         STATE(0, S_CLOSED), /* 1 of 4 slow, the first left */
         FILL(0, 1, false, 500),
         STATE(0, S_OPEN),
         END,
     }},
    {"probes that all succeed but too slowly open it again",
     BASE,
     {
         FILL(0, 4, true, 10),
         ALLOW(1000, 0, 0),
         ALLOW(1000, 1, 1),
         ALLOW(1000, 2, 2),
         OK(1100, 0, 100),
         OK(1100, 1, 100),
         OK(1100, 2, 100),
         STATE(1100, S_OPEN), /* 3 of 3 slow >= 0.8 */
         OPENED(2),
         END,
     }},
    {"probes with a few slow ones still close it",
     BASE,
     {
         FILL(0, 4, true, 10),
         ALLOW(1000, 0, 0),
         ALLOW(1000, 1, 1),
         ALLOW(1000, 2, 2),
         OK(1100, 0, 100),
         OK(1100, 1, 100),
         OK(1100, 2, 10),
         STATE(1100, S_CLOSED), /* 2 of 3 slow < 0.8 */
         END,
     }},
    {"a clock read late by another thread does not move it back",
     BASE,
     {
         FILL(1000, 4, true, 10),
         REFUSE(900, 1000), /* taken as 1000, the newest seen */
         STATE(1999, S_OPEN),
         STATE(1500, S_OPEN),
         STATE(2000, S_HALF),
         STATE(1000, S_HALF),
         END,
     }},
};

static void fail_step(const struct scenario *sc, int i, const char *what,
                      long long got, long long want)
{
    harness_fail(__FILE__, __LINE__, "\"%s\" step %d: %s: got %lld, want %lld",
                 sc->name, i, what, got, want);
}

static void run_scenario(const struct scenario *sc)
{
    struct gw_breaker b;
    struct gw_breaker_ticket tickets[TICKETS_MAX], t;
    int64_t after;

    CHECK_INT(gw_breaker_init(&b, &sc->cfg), ERR_OK);
    for (int i = 0; sc->steps[i].op != OP_END; i++) {
        const struct step *s = &sc->steps[i];

        CHECK(i < STEPS_MAX - 1);
        switch (s->op) {
        case OP_ALLOW:
            if (!gw_breaker_allow(&b, s->now, &tickets[s->tk], &after))
                fail_step(sc, i, "allowed", 0, 1);
            if (tickets[s->tk].probe_slot != s->want)
                fail_step(sc, i, "probe slot", tickets[s->tk].probe_slot,
                          s->want);
            break;
        case OP_REFUSE:
            after = -1;
            if (gw_breaker_allow(&b, s->now, &t, &after))
                fail_step(sc, i, "allowed", 1, 0);
            if (after != s->want)
                fail_step(sc, i, "retry_after", after, s->want);
            break;
        case OP_RECORD:
            gw_breaker_record(&b, &tickets[s->tk], s->now, s->failed, s->dur);
            break;
        case OP_STATE:
            if ((int64_t)gw_breaker_state(&b, s->now) != s->want)
                fail_step(sc, i, "state", b.state, s->want);
            break;
        case OP_FILL:
            for (int k = 0; k < s->n; k++) {
                if (!gw_breaker_allow(&b, s->now, &t, &after))
                    fail_step(sc, i, "allowed", 0, 1);
                if (t.probe_slot != -1)
                    fail_step(sc, i, "probe slot", t.probe_slot, -1);
                gw_breaker_record(&b, &t, s->now, s->failed, s->dur);
            }
            break;
        case OP_OPENED:
            if ((int64_t)b.opened_total != s->want)
                fail_step(sc, i, "opened_total", (long long)b.opened_total,
                          s->want);
            break;
        case OP_REJECTED:
            if ((int64_t)b.rejected_total != s->want)
                fail_step(sc, i, "rejected_total", (long long)b.rejected_total,
                          s->want);
            break;
        case OP_END: break;
        }
    }
}

TEST(breaker_transition_table)
{
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
        run_scenario(&scenarios[i]);
}

/* --- the closed window against a reference model ----------------------- */

/*
 * The reference keeps every outcome and recomputes the rates over the last
 * `window` of them from scratch, the slow obvious way.  The breaker must be
 * open exactly when the reference says it should be.
 */
struct model {
    unsigned outcomes[4096]; /* GW_BREAKER_CALL_* bits, oldest first */
    int n;
};

static bool model_trips(const struct model *m,
                        const struct gw_breaker_config *c)
{
    int from = m->n > c->window ? m->n - c->window : 0;
    int count = m->n - from, failures = 0, slow = 0;

    for (int i = from; i < m->n; i++) {
        failures += (m->outcomes[i] & GW_BREAKER_CALL_FAILED) != 0;
        slow += (m->outcomes[i] & GW_BREAKER_CALL_SLOW) != 0;
    }
    return count >= c->min_calls &&
           ((double)failures / count >= c->failure_rate ||
            (double)slow / count >= c->slow_rate);
}

static int model_run(uint64_t seed, int window)
{
    static const double rates[] = {0.1, 0.25, 0.5, 0.8, 1.0};
    struct gw_breaker_config c;
    struct gw_breaker b;
    struct model m = {.n = 0};
    struct rand r;
    int64_t after, now = 0;
    int opened = 0;

    rand_seed(&r, seed);
    gw_breaker_config_default(&c);
    c.window = window;
    c.min_calls = 1 + (int)rand_below(&r, (uint64_t)window);
    c.failure_rate = rates[rand_below(&r, 5)];
    c.slow_rate = rates[rand_below(&r, 5)];
    /* Outcomes lean healthy so that windows fill before they trip. */
    uint64_t fail_pct = rand_below(&r, 40), slow_pct = rand_below(&r, 40);
    CHECK_INT(gw_breaker_init(&b, &c), ERR_OK);

    for (int i = 0; i < 4000; i++) {
        struct gw_breaker_ticket t;
        bool failed = rand_below(&r, 100) < fail_pct;
        int64_t dur = rand_below(&r, 100) < slow_pct ? c.slow_call_ms : 1;

        CHECK(gw_breaker_allow(&b, now, &t, &after));
        gw_breaker_record(&b, &t, now, failed, dur);
        m.outcomes[m.n++] = (failed ? GW_BREAKER_CALL_FAILED : 0u) |
                            (dur >= c.slow_call_ms ? GW_BREAKER_CALL_SLOW : 0u);

        bool want_open = model_trips(&m, &c);
        CHECK_INT(gw_breaker_state(&b, now), want_open ? S_OPEN : S_CLOSED);
        CHECK(b.count == (m.n < window ? m.n : window));
        if (want_open) {
            opened++;
            CHECK(gw_breaker_init(&b, &c) == ERR_OK);
            m.n = 0;
        }
        now++;
    }
    return opened;
}

TEST(breaker_window_matches_reference_model)
{
    static const int windows[] = {
        1, 2, 3, 7, 10, 64, 100, 1000, GW_BREAKER_WINDOW_MAX};

    int opened = 0;

    for (uint64_t seed = 1; seed <= 40; seed++)
        for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++)
            opened += model_run(seed * 1000 + w, windows[w]);
    /* The runs must have tripped often, or they proved little. */
    CHECK(opened > 1000);
}

/* A window that really slides over its whole ring many times. */
TEST(breaker_long_healthy_run_stays_closed)
{
    struct gw_breaker_config c;
    struct gw_breaker b;
    struct gw_breaker_ticket t;
    int64_t after;

    gw_breaker_config_default(&c);
    CHECK_INT(gw_breaker_init(&b, &c), ERR_OK);
    /* 40% failures: under the 50% threshold, whatever the alignment. */
    for (int i = 0; i < 100000; i++) {
        CHECK(gw_breaker_allow(&b, i, &t, &after));
        gw_breaker_record(&b, &t, i, i % 5 < 2, 10);
    }
    CHECK_INT(gw_breaker_state(&b, 100000), S_CLOSED);
    CHECK_INT(b.count, 100);
    CHECK_INT(b.failures, 40);
    CHECK_INT(b.opened_total, 0);
}

/* --- config, names, odd tickets ------------------------------------------ */

TEST(breaker_config_defaults)
{
    struct gw_breaker_config c;
    struct gw_breaker b;

    gw_breaker_config_default(&c);
    CHECK_INT(c.window, 100);
    CHECK_INT(c.min_calls, 20);
    CHECK(c.failure_rate == 0.5);
    CHECK(c.slow_rate == 0.8);
    CHECK_INT(c.slow_call_ms, 2000);
    CHECK_INT(c.open_ms, 5000);
    CHECK_INT(c.probes, 3);
    CHECK_INT(c.probe_deadline_ms, 5000);
    CHECK_INT(gw_breaker_init(&b, &c), ERR_OK);
    CHECK_INT(gw_breaker_state(&b, 0), S_CLOSED);
    CHECK_INT(b.opened_total, 0);
    CHECK_INT(b.rejected_total, 0);
}

TEST(breaker_config_out_of_range_refused)
{
    struct {
        const char *what;
        struct gw_breaker_config c;
    } bad[16];
    size_t n = 0;
    struct gw_breaker_config d;

    gw_breaker_config_default(&d);
#define BAD(field, value)                                                      \
    do {                                                                       \
        bad[n].what = #field " = " #value;                                     \
        bad[n].c = d;                                                          \
        bad[n].c.field = (value);                                              \
        n++;                                                                   \
    } while (0)
    BAD(window, 0);
    BAD(window, GW_BREAKER_WINDOW_MAX + 1);
    BAD(min_calls, 0);
    BAD(min_calls, 101); /* more than the window can hold */
    BAD(failure_rate, 0.0);
    BAD(failure_rate, 1.01);
    BAD(failure_rate, NAN);
    BAD(slow_rate, -0.5);
    BAD(slow_rate, NAN);
    BAD(slow_call_ms, 0);
    BAD(open_ms, 0);
    BAD(open_ms, GW_BREAKER_TIME_MAX_MS + 1);
    BAD(probes, 0);
    BAD(probes, GW_BREAKER_PROBES_MAX + 1);
    BAD(probe_deadline_ms, -1);
#undef BAD

    for (size_t i = 0; i < n; i++) {
        struct gw_breaker b, before;

        memset(&b, 0x5a, sizeof(b));
        before = b;
        if (gw_breaker_init(&b, &bad[i].c) != ERR_INVALID)
            harness_fail(__FILE__, __LINE__, "accepted %s", bad[i].what);
        CHECK(memcmp(&b, &before, sizeof(b)) == 0);
    }

    /* The edges themselves are accepted. */
    struct gw_breaker b;
    d.window = GW_BREAKER_WINDOW_MAX;
    d.min_calls = GW_BREAKER_WINDOW_MAX;
    d.failure_rate = 1.0;
    d.slow_rate = 1.0;
    d.probes = GW_BREAKER_PROBES_MAX;
    d.open_ms = GW_BREAKER_TIME_MAX_MS;
    CHECK_INT(gw_breaker_init(&b, &d), ERR_OK);
    d.window = 1;
    d.min_calls = 1;
    d.probes = 1;
    d.slow_call_ms = 1;
    d.open_ms = 1;
    d.probe_deadline_ms = 1;
    CHECK_INT(gw_breaker_init(&b, &d), ERR_OK);
}

TEST(breaker_state_names)
{
    CHECK_STR(gw_breaker_state_name(GW_BREAKER_CLOSED), "closed");
    CHECK_STR(gw_breaker_state_name(GW_BREAKER_OPEN), "open");
    CHECK_STR(gw_breaker_state_name(GW_BREAKER_HALF_OPEN), "half_open");
    CHECK_STR(gw_breaker_state_name((enum gw_breaker_state)42), "unknown");
}

TEST(breaker_never_allowed_and_repeated_tickets_are_harmless)
{
    struct gw_breaker_config c = BASE;
    struct gw_breaker b;
    struct gw_breaker_ticket zero = {0, -1}, probe, t;
    int64_t after;

    CHECK_INT(gw_breaker_init(&b, &c), ERR_OK);

    /* A zeroed ticket was never handed out: its outcome is not counted. */
    for (int i = 0; i < 10; i++)
        gw_breaker_record(&b, &zero, 0, true, 10);
    CHECK_INT(b.count, 0);
    CHECK_INT(gw_breaker_state(&b, 0), S_CLOSED);

    /* A probe reported twice counts once. */
    for (int i = 0; i < 4; i++) {
        CHECK(gw_breaker_allow(&b, 0, &t, &after));
        gw_breaker_record(&b, &t, 0, true, 10);
    }
    CHECK(gw_breaker_allow(&b, 1000, &probe, &after));
    CHECK_INT(probe.probe_slot, 0);
    gw_breaker_record(&b, &probe, 1001, false, 10);
    gw_breaker_record(&b, &probe, 1001, false, 10);
    gw_breaker_record(&b, &probe, 1001, false, 10);
    CHECK_INT(b.probes_ok, 1);
    CHECK_INT(gw_breaker_state(&b, 1001), S_HALF);

    /* A refusal may leave retry_after unasked. */
    CHECK(gw_breaker_allow(&b, 1001, &t, &after));
    CHECK(gw_breaker_allow(&b, 1001, &t, &after));
    CHECK(!gw_breaker_allow(&b, 1001, &t, NULL));
}

HARNESS_MAIN(T(breaker_transition_table),
             T(breaker_window_matches_reference_model),
             T(breaker_long_healthy_run_stays_closed),
             T(breaker_config_defaults), T(breaker_config_out_of_range_refused),
             T(breaker_state_names),
             T(breaker_never_allowed_and_repeated_tickets_are_harmless))
