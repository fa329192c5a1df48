/*
 * test_gw_retry.c - which methods and statuses are retried, the bounds and
 * spread of the full-jitter backoff, and the retry budget: its limits with
 * the minimum and the ratio, and its counters under real concurrency.
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "base/rand.h"
#include "gateway/retry.h"

TEST(retry_method_table)
{
    static const struct {
        const char *method;
        bool key;
        bool want;
    } table[] = {
        {"GET", false, true},      {"GET", true, true},
        {"HEAD", false, true},     {"HEAD", true, true},
        {"POST", false, false},    {"POST", true, true},
        {"PUT", false, false},     {"PUT", true, true},
        {"PATCH", false, false},   {"PATCH", true, true},
        {"DELETE", false, false},  {"DELETE", true, true},
        {"OPTIONS", false, false}, {"OPTIONS", true, false},
        {"CONNECT", true, false},  {"TRACE", true, false},
        {"get", false, false},     {"Post", true, false},
        {"GETS", false, false},    {"GE", false, false},
        {"POSTX", true, false},    {"", true, false},
        {NULL, true, false},
    };

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (gw_retry_method_ok(table[i].method, table[i].key) != table[i].want)
            harness_fail(__FILE__, __LINE__, "method %s key %d: want %d",
                         table[i].method ? table[i].method : "(null)",
                         table[i].key, table[i].want);
}

TEST(retry_status_table)
{
    static const struct {
        int status;
        bool want;
    } table[] = {
        {200, false}, {204, false}, {304, false}, {400, false}, {404, false},
        {408, false}, {409, false}, {429, false}, {500, false}, {501, false},
        {502, true},  {503, true},  {504, true},  {505, false}, {599, false},
        {0, false},   {-1, false},
    };

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (gw_retry_status_ok(table[i].status) != table[i].want)
            harness_fail(__FILE__, __LINE__, "status %d: want %d",
                         table[i].status, table[i].want);
}

/* --- backoff ------------------------------------------------------------ */

#define DRAWS 200000

/*
 * For each attempt, many draws stay in [0, ceiling), reach both ends, and
 * spread evenly: every value gets close to its share.  With at least 800
 * draws expected per value, 20% off is more than 5 standard deviations.
 */
TEST(retry_backoff_bounds_and_spread)
{
    static const struct {
        int attempt;
        int64_t ceiling_ms;
    } table[] = {
        {1, 25}, {2, 50}, {3, 100}, {4, 200}, {5, 250}, {6, 250}, {40, 250},
    };
    struct rand r;

    rand_seed(&r, 20261204);
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        int64_t ceiling = table[i].ceiling_ms, lo = ceiling, hi = -1;
        uint64_t counts[GW_RETRY_BACKOFF_CAP_MS] = {0};
        double sum = 0;

        for (int k = 0; k < DRAWS; k++) {
            int64_t ms =
                gw_retry_backoff_ms(table[i].attempt, GW_RETRY_BACKOFF_BASE_MS,
                                    GW_RETRY_BACKOFF_CAP_MS, &r);
            if (ms < 0 || ms >= ceiling)
                harness_fail(__FILE__, __LINE__,
                             "attempt %d: %lld outside %lld", table[i].attempt,
                             (long long)ms, (long long)ceiling);
            lo = ms < lo ? ms : lo;
            hi = ms > hi ? ms : hi;
            sum += (double)ms;
            counts[ms]++;
        }
        CHECK_INT(lo, 0);
        CHECK_INT(hi, ceiling - 1);
        /* Uniform on 0..ceiling-1 has mean (ceiling - 1) / 2. */
        double mean = sum / DRAWS, want = (double)(ceiling - 1) / 2;
        CHECK(mean > want * 0.97 && mean < want * 1.03);
        double share = (double)DRAWS / (double)ceiling;
        for (int64_t v = 0; v < ceiling; v++)
            CHECK(counts[v] > share * 0.8 && counts[v] < share * 1.2);
    }
}

TEST(retry_backoff_edges)
{
    struct rand r;

    rand_seed(&r, 7);
    /* An empty range waits not at all. */
    CHECK_INT(gw_retry_backoff_ms(1, 0, 250, &r), 0);
    CHECK_INT(gw_retry_backoff_ms(3, 25, 0, &r), 0);
    CHECK_INT(gw_retry_backoff_ms(1, 1, 250, &r), 0);

    /* A base above the cap is cut to the cap from the first retry. */
    for (int k = 0; k < 1000; k++) {
        int64_t ms = gw_retry_backoff_ms(1, 1000, 250, &r);
        CHECK(ms >= 0 && ms < 250);
    }

    /* Huge numbers cannot overflow into a negative or oversized wait. */
    for (int k = 0; k < 1000; k++) {
        int64_t ms = gw_retry_backoff_ms(1000000, INT64_MAX / 3, INT64_MAX, &r);
        CHECK(ms >= 0);
        ms = gw_retry_backoff_ms(64, 3, INT64_MAX - 1, &r);
        CHECK(ms >= 0 && ms < INT64_MAX - 1);
    }

    /* The same seed gives the same waits: the caller's source is used. */
    struct rand a, b;
    rand_seed(&a, 99);
    rand_seed(&b, 99);
    for (int k = 0; k < 100; k++)
        CHECK_INT(gw_retry_backoff_ms(3, 25, 250, &a),
                  gw_retry_backoff_ms(3, 25, 250, &b));
}

/* --- the budget ---------------------------------------------------------- */

/* Starts retries until refused; returns how many started. */
static int take_all(struct gw_retry_budget *b)
{
    int n = 0;

    while (gw_retry_budget_retry_begin(b)) {
        n++;
        CHECK(n <= 1000); /* a budget that never says no */
    }
    return n;
}

static void give_back(struct gw_retry_budget *b, int n)
{
    for (int i = 0; i < n; i++)
        gw_retry_budget_retry_end(b);
}

TEST(retry_budget_minimum_and_ratio)
{
    static const struct {
        int requests;
        int want; /* retries that may be in flight together */
    } table[] = {
        {0, 3},  {1, 3},  {10, 3},  {15, 3},  {19, 3},   {20, 4},
        {24, 4}, {25, 5}, {50, 10}, {99, 19}, {100, 20}, {1000, 200},
    };
    struct gw_retry_budget b;
    uint64_t refused = 0;

    gw_retry_budget_init(&b, GW_RETRY_BUDGET_RATIO, GW_RETRY_BUDGET_MIN);
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        for (int k = 0; k < table[i].requests; k++)
            gw_retry_budget_request_begin(&b);
        CHECK_INT(gw_retry_budget_requests(&b), table[i].requests);

        int got = take_all(&b);
        if (got != table[i].want)
            harness_fail(__FILE__, __LINE__, "%d requests: %d retries, want %d",
                         table[i].requests, got, table[i].want);
        CHECK_INT(gw_retry_budget_retries(&b), got);
        refused++;
        CHECK_INT(gw_retry_budget_exhausted(&b), refused);

        /* One retry ends: exactly one more may start. */
        gw_retry_budget_retry_end(&b);
        CHECK(gw_retry_budget_retry_begin(&b));
        CHECK(!gw_retry_budget_retry_begin(&b));
        refused++;

        give_back(&b, got);
        for (int k = 0; k < table[i].requests; k++)
            gw_retry_budget_request_end(&b);
        CHECK_INT(gw_retry_budget_requests(&b), 0);
        CHECK_INT(gw_retry_budget_retries(&b), 0);
    }
}

TEST(retry_budget_follows_requests_in_flight)
{
    struct gw_retry_budget b;

    gw_retry_budget_init(&b, 0.5, 1);
    CHECK_INT(take_all(&b), 1); /* the minimum, with nothing in flight */
    for (int k = 0; k < 10; k++)
        gw_retry_budget_request_begin(&b);
    CHECK_INT(take_all(&b), 4); /* 5 in flight now, 1 of them before */

    /* Requests end while retries run: nothing more may start. */
    for (int k = 0; k < 8; k++)
        gw_retry_budget_request_end(&b);
    give_back(&b, 3);
    CHECK_INT(gw_retry_budget_retries(&b), 2);
    CHECK(!gw_retry_budget_retry_begin(&b)); /* 2 >= max(1, 0.5 * 2) */
    give_back(&b, 1);
    CHECK(!gw_retry_budget_retry_begin(&b)); /* 1 >= 1 */
    give_back(&b, 1);
    CHECK(gw_retry_budget_retry_begin(&b));
    give_back(&b, 1);
    for (int k = 0; k < 2; k++)
        gw_retry_budget_request_end(&b);
    CHECK_INT(gw_retry_budget_requests(&b), 0);
    CHECK_INT(gw_retry_budget_retries(&b), 0);
    CHECK_INT(gw_retry_budget_exhausted(&b), 4);
}

TEST(retry_budget_zero_allows_none)
{
    struct gw_retry_budget b;

    gw_retry_budget_init(&b, 0.0, 0);
    for (int k = 0; k < 100; k++)
        gw_retry_budget_request_begin(&b);
    CHECK(!gw_retry_budget_retry_begin(&b));
    CHECK_INT(gw_retry_budget_retries(&b), 0);
    CHECK_INT(gw_retry_budget_exhausted(&b), 1);
    for (int k = 0; k < 100; k++)
        gw_retry_budget_request_end(&b);
}

/* --- the budget under concurrency --------------------------------------- */

#define THREADS    8
#define ITERATIONS 200000

struct hammer {
    struct gw_retry_budget *budget;
    atomic_int *active;     /* retries this test believes are running */
    atomic_int *active_max; /* the most seen at once */
    uint64_t granted, refused;
};

static void *hammer_run(void *arg)
{
    struct hammer *h = arg;

    for (int i = 0; i < ITERATIONS; i++) {
        gw_retry_budget_request_begin(h->budget);
        if (gw_retry_budget_retry_begin(h->budget)) {
            int now = atomic_fetch_add(h->active, 1) + 1;
            int seen = atomic_load(h->active_max);

            while (now > seen &&
                   !atomic_compare_exchange_weak(h->active_max, &seen, now))
                ;
            atomic_fetch_sub(h->active, 1);
            gw_retry_budget_retry_end(h->budget);
            h->granted++;
        } else {
            h->refused++;
        }
        gw_retry_budget_request_end(h->budget);
    }
    return NULL;
}

/*
 * With at most THREADS requests in flight, 20% of them is below the
 * minimum of 3, so no more than 3 retries may ever run at once, however
 * the threads interleave; and every begin is matched, so the counters come
 * back to zero and every refusal is counted.
 */
TEST(retry_budget_concurrent_threads)
{
    struct gw_retry_budget budget;
    atomic_int active = 0, active_max = 0;
    struct hammer h[THREADS];
    pthread_t th[THREADS];
    uint64_t granted = 0, refused = 0;

    gw_retry_budget_init(&budget, GW_RETRY_BUDGET_RATIO, GW_RETRY_BUDGET_MIN);
    for (int i = 0; i < THREADS; i++) {
        h[i] = (struct hammer){&budget, &active, &active_max, 0, 0};
        CHECK_INT(pthread_create(&th[i], NULL, hammer_run, &h[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        CHECK_INT(pthread_join(th[i], NULL), 0);
        granted += h[i].granted;
        refused += h[i].refused;
    }

    CHECK_INT(granted + refused, (uint64_t)THREADS * ITERATIONS);
    CHECK(granted > 0);
    CHECK_INT(gw_retry_budget_exhausted(&budget), refused);
    CHECK_INT(gw_retry_budget_requests(&budget), 0);
    CHECK_INT(gw_retry_budget_retries(&budget), 0);
    CHECK(atomic_load(&active_max) >= 1);
    CHECK(atomic_load(&active_max) <= GW_RETRY_BUDGET_MIN);
}

HARNESS_MAIN(T(retry_method_table), T(retry_status_table),
             T(retry_backoff_bounds_and_spread), T(retry_backoff_edges),
             T(retry_budget_minimum_and_ratio),
             T(retry_budget_follows_requests_in_flight),
             T(retry_budget_zero_allows_none),
             T(retry_budget_concurrent_threads))
