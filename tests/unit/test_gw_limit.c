/*
 * test_gw_limit.c - GCRA rate limiting (src/gateway/limit.c): tables of
 * requests at given times with the exact answers expected, key
 * independence, the table's eviction, and the policy's ranges.
 */
#include "harness.h"

#include <stdio.h>

#include "base/err.h"
#include "gateway/limit.h"

struct step {
    int64_t now;
    const char *key;
    int n; /* this many requests at now, each checked alike */
    bool allowed;
    int64_t retry_after_ms, remaining, reset_ms; /* of the last of them */
};

#define STEPS_MAX 16

struct scenario {
    const char *name;
    struct gw_limit_policy policy;
    size_t capacity;
    struct step steps[STEPS_MAX];
};

/* clang-format off */
#define OK(t, k, cnt, rem, reset)                                              \
    {.now = (t), .key = (k), .n = (cnt), .allowed = true,                      \
     .remaining = (rem), .reset_ms = (reset)}
#define NO(t, k, after, reset)                                                 \
    {.now = (t), .key = (k), .n = 1, .allowed = false,                         \
     .retry_after_ms = (after), .remaining = 0, .reset_ms = (reset)}
/* clang-format on */

/* One request (or burst) per line reads as a table. */
/* clang-format off */
static const struct scenario scenarios[] = {
    /* 5 per second, bursts of 10: T = 200 ms, tau = 2 s. */
    {"burst then steady rate",
     {.rate = 5, .period_ms = 1000, .burst = 10},
     16,
     {
         OK(0, "a", 1, 9, 200),  /* one of ten taken */
         OK(0, "a", 9, 0, 2000), /* the whole burst at once */
         NO(0, "a", 200, 2000),  /* the 11th waits one interval */
         NO(199, "a", 1, 1801),  /* a millisecond short */
         OK(200, "a", 1, 0, 2000),
         NO(200, "a", 200, 2000),
         OK(400, "a", 1, 0, 2000), /* steady: one per 200 ms */
         OK(600, "a", 1, 0, 2000),
         OK(2600, "a", 1, 9, 200), /* idle 2 s: the burst is whole again */
     }},
    /* Key independence: b's burst is its own. */
    {"keys are independent",
     {.rate = 5, .period_ms = 1000, .burst = 2},
     16,
     {
         OK(0, "a", 2, 0, 400),
         NO(0, "a", 200, 400),
         OK(0, "b", 2, 0, 400),
         NO(0, "b", 200, 400),
         NO(100, "a", 100, 300),
         OK(200, "b", 1, 0, 400),
     }},
    /* 1 per minute, bursts of 2: Retry-After of a minute. */
    {"per minute",
     {.rate = 1, .period_ms = 60000, .burst = 2},
     16,
     {
         OK(0, "c", 2, 0, 120000),
         NO(0, "c", 60000, 120000),
         NO(59999, "c", 1, 60001),
         OK(60000, "c", 1, 0, 120000),
     }},
    /* 3 per second: T = 333,333 us, exact to the microsecond. */
    {"rate that does not divide a second",
     {.rate = 3, .period_ms = 1000, .burst = 1},
     16,
     {
         OK(0, "d", 1, 0, 334),
         NO(0, "d", 334, 334),
         NO(333, "d", 1, 1),
         OK(334, "d", 1, 0, 334), /* TAT 667.333 ms */
         NO(667, "d", 1, 1),
         OK(668, "d", 1, 0, 334), /* TAT 1001.333 ms */
         NO(1001, "d", 1, 1),
         OK(1002, "d", 1, 0, 334),
     }},
};
/* clang-format on */

static void run(const struct scenario *s)
{
    struct gw_limiter *l;
    struct gw_limit_result r = {0};

    CHECK_INT(gw_limiter_new(&s->policy, s->capacity, &l), ERR_OK);
    for (size_t i = 0; i < STEPS_MAX && s->steps[i].key != NULL; i++) {
        const struct step *st = &s->steps[i];

        for (int k = 0; k < st->n; k++) {
            gw_limiter_take(l, st->key, strlen(st->key), st->now, &r);
            if (r.allowed != st->allowed)
                harness_fail(__FILE__, __LINE__,
                             "%s: step %zu, request %d: "
                             "allowed %d",
                             s->name, i, k, r.allowed);
        }
        if (r.retry_after_ms != st->retry_after_ms ||
            r.remaining != st->remaining || r.reset_ms != st->reset_ms)
            harness_fail(__FILE__, __LINE__,
                         "%s: step %zu: retry_after %lld remaining %lld "
                         "reset %lld, want %lld %lld %lld",
                         s->name, i, (long long)r.retry_after_ms,
                         (long long)r.remaining, (long long)r.reset_ms,
                         (long long)st->retry_after_ms,
                         (long long)st->remaining, (long long)st->reset_ms);
    }
    gw_limiter_free(l);
}

TEST(test_scenarios)
{
    for (size_t k = 0; k < sizeof(scenarios) / sizeof(scenarios[0]); k++)
        run(&scenarios[k]);
}

/* Over a long run the allowed count is the burst plus the rate. */
TEST(test_long_run_rate)
{
    struct gw_limit_policy p = {.rate = 5, .period_ms = 1000, .burst = 10};
    struct gw_limiter *l;
    struct gw_limit_result r;
    int allowed = 0;

    CHECK_INT(gw_limiter_new(&p, 4, &l), ERR_OK);
    /* A request every 10 ms for 60 s. */
    for (int64_t t = 0; t < 60000; t += 10) {
        gw_limiter_take(l, "k", 1, t, &r);
        allowed += r.allowed;
    }
    /* 10 at once, then one per 200 ms over the 59.99 s after. */
    CHECK_INT(allowed, 10 + 299);
    gw_limiter_free(l);
}

/* A full table drops an idle key first: nothing is lost. */
TEST(test_eviction_prefers_idle_keys)
{
    struct gw_limit_policy p = {.rate = 1, .period_ms = 1000, .burst = 1};
    struct gw_limiter *l;
    struct gw_limit_result r;

    CHECK_INT(gw_limiter_new(&p, 2, &l), ERR_OK);
    gw_limiter_take(l, "idle", 4, 0, &r);    /* TAT 1000 */
    gw_limiter_take(l, "busy", 4, 1500, &r); /* TAT 2500 */
    CHECK(r.allowed);
    /* At 1600 "idle" is older in use and its TAT is past: it goes. */
    gw_limiter_take(l, "new", 3, 1600, &r);
    CHECK(r.allowed);
    CHECK_INT(gw_limiter_keys(l), 2);
    CHECK_INT(gw_limiter_evicted_live(l), 0);
    /* "busy" was kept: still limited. */
    gw_limiter_take(l, "busy", 4, 1600, &r);
    CHECK(!r.allowed);
    CHECK_INT(r.retry_after_ms, 900);
    gw_limiter_free(l);
}

/* When every key is live the least recently used goes (fail open). */
TEST(test_eviction_of_live_keys_fails_open)
{
    struct gw_limit_policy p = {.rate = 1, .period_ms = 60000, .burst = 1};
    struct gw_limiter *l;
    struct gw_limit_result r;

    CHECK_INT(gw_limiter_new(&p, 2, &l), ERR_OK);
    gw_limiter_take(l, "a", 1, 0, &r);
    gw_limiter_take(l, "b", 1, 0, &r);
    gw_limiter_take(l, "a", 1, 1, &r); /* refused; a is now the newest */
    CHECK(!r.allowed);
    gw_limiter_take(l, "c", 1, 2, &r); /* b, live, is dropped */
    CHECK(r.allowed);
    CHECK_INT(gw_limiter_evicted_live(l), 1);
    gw_limiter_take(l, "a", 1, 3, &r); /* a kept its state */
    CHECK(!r.allowed);
    gw_limiter_take(l, "b", 1, 4, &r); /* b starts again with a burst */
    CHECK(r.allowed);
    gw_limiter_free(l);
}

/* Many keys through a small table: the index stays consistent. */
TEST(test_churn)
{
    struct gw_limit_policy p = {.rate = 10, .period_ms = 1000, .burst = 3};
    struct gw_limiter *l;
    struct gw_limit_result r;
    char key[32];

    CHECK_INT(gw_limiter_new(&p, 64, &l), ERR_OK);
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(key, sizeof(key), "customer-%d", (i * 7919) % 500);
        gw_limiter_take(l, key, (size_t)n, i, &r);
        CHECK(gw_limiter_keys(l) <= 64);
    }
    CHECK_INT(gw_limiter_keys(l), 64);
    gw_limiter_free(l);
}

TEST(test_policy_ranges)
{
    struct gw_limit_policy p = {.rate = 5, .period_ms = 1000, .burst = 10};
    struct gw_limiter *l;

    CHECK_INT(gw_limit_policy_check(&p), ERR_OK);
    CHECK_INT(gw_limit_window_s(&p), 2);
    p.rate = 0;
    CHECK_INT(gw_limit_policy_check(&p), ERR_INVALID);
    p.rate = 5;
    p.burst = 0;
    CHECK_INT(gw_limit_policy_check(&p), ERR_INVALID);
    p.burst = 1;
    CHECK_INT(gw_limit_window_s(&p), 1); /* 200 ms rounds up to 1 s */
    p.period_ms = 1;
    p.rate = 1001; /* T under a microsecond */
    CHECK_INT(gw_limit_policy_check(&p), ERR_INVALID);
    p.rate = 5;
    p.period_ms = 1000;
    CHECK_INT(gw_limiter_new(&p, 0, &l), ERR_INVALID);
}

HARNESS_MAIN(T(test_scenarios), T(test_long_run_rate),
             T(test_eviction_prefers_idle_keys),
             T(test_eviction_of_live_keys_fails_open), T(test_churn),
             T(test_policy_ranges))
