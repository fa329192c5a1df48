/*
 * test_backoff.c - restart delays: full jitter within [0, min(cap, base x
 * 2^attempt)], spread over that range, no overflow at huge attempts; and
 * the crash-loop window over a bounded history of restarts.
 */
#include "harness.h"

#include "base/rand.h"
#include "control/backoff.h"

TEST(backoff_bounds_grow_to_cap)
{
    struct rand r;
    static const struct {
        unsigned attempt;
        int64_t ceiling;
    } table[] = {{0, 100},  {1, 200},  {2, 400},   {3, 800},
                 {4, 1600}, {5, 2000}, {40, 2000}, {4000000000u, 2000}};

    rand_seed(&r, 7);
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        int64_t lo = table[i].ceiling, hi = 0;

        for (int k = 0; k < 2000; k++) {
            int64_t d = backoff_delay_ms(100, 2000, table[i].attempt, &r);

            CHECK(d >= 0 && d <= table[i].ceiling);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        /* Full jitter covers the whole range, both ends. */
        CHECK(lo < table[i].ceiling / 10);
        CHECK(hi > table[i].ceiling * 9 / 10);
    }
}

TEST(backoff_base_equals_cap)
{
    struct rand r;

    rand_seed(&r, 1);
    for (int k = 0; k < 100; k++)
        CHECK(backoff_delay_ms(5, 5, (unsigned)k, &r) <= 5);
}

TEST(backoff_history_window)
{
    struct backoff_history h = {0};

    for (int64_t t = 1000; t <= 5000; t += 1000)
        backoff_history_record(&h, t);
    CHECK_INT(backoff_history_count(&h, 5000, 10000), 5);
    /* (2000, 5000]: 3000, 4000, 5000. */
    CHECK_INT(backoff_history_count(&h, 5000, 3000), 3);
    CHECK(backoff_crash_loop(&h, 5000, 3000, 3));
    CHECK(!backoff_crash_loop(&h, 5000, 3000, 4));
    /* Time passes without restarts: the loop is over. */
    CHECK(!backoff_crash_loop(&h, 60000, 3000, 1));
}

TEST(backoff_history_is_bounded)
{
    struct backoff_history h = {0};

    for (int64_t t = 1; t <= 10 * BACKOFF_HISTORY_MAX; t++)
        backoff_history_record(&h, t);
    CHECK_INT(h.n, BACKOFF_HISTORY_MAX);
    CHECK_INT(backoff_history_count(&h, 10 * BACKOFF_HISTORY_MAX, 1000000),
              BACKOFF_HISTORY_MAX);
    CHECK(backoff_crash_loop(&h, 10 * BACKOFF_HISTORY_MAX, 1000000,
                             BACKOFF_HISTORY_MAX));
}

HARNESS_MAIN(T(backoff_bounds_grow_to_cap), T(backoff_base_equals_cap),
             T(backoff_history_window), T(backoff_history_is_bounded))
