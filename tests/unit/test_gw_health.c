/*
 * test_gw_health.c - active health state and passive outlier ejection of a
 * gateway instance, driven by explicit millisecond readings.
 */
#include "harness.h"

#include <math.h>
#include <stdbool.h>

#include "base/err.h"
#include "base/rand.h"
#include "gateway/health.h"

static bool near(double a, double b)
{
    return fabs(a - b) < 1e-9;
}

TEST(health_defaults_and_config_check)
{
    struct gw_health_config c;

    gw_health_config_default(&c);
    CHECK_INT(c.interval_ms, 2000);
    CHECK_INT(c.fast_interval_ms, 500);
    CHECK_INT(c.timeout_ms, 1000);
    CHECK_INT(c.rise, 2);
    CHECK_INT(c.fall, 3);
    CHECK_INT(c.slow_start_ms, 10000);
    CHECK_INT(gw_health_config_check(&c), ERR_OK);

    c.slow_start_ms = 0;
    CHECK_INT(gw_health_config_check(&c), ERR_OK);
    c.slow_start_ms = -1;
    CHECK_INT(gw_health_config_check(&c), ERR_CONFIG);
    gw_health_config_default(&c);
    c.rise = 0;
    CHECK_INT(gw_health_config_check(&c), ERR_CONFIG);
    gw_health_config_default(&c);
    c.fall = 0;
    CHECK_INT(gw_health_config_check(&c), ERR_CONFIG);
    gw_health_config_default(&c);
    c.interval_ms = 0;
    CHECK_INT(gw_health_config_check(&c), ERR_CONFIG);
    gw_health_config_default(&c);
    c.fast_interval_ms = -5;
    CHECK_INT(gw_health_config_check(&c), ERR_CONFIG);
    gw_health_config_default(&c);
    c.timeout_ms = 0;
    CHECK_INT(gw_health_config_check(&c), ERR_CONFIG);
}

TEST(health_new_instance_starts_down_and_due)
{
    struct gw_health_config c;
    struct gw_health h;

    gw_health_config_default(&c);
    gw_health_init(&h, &c, 1000, false);
    CHECK(!gw_health_up(&h));
    CHECK(near(gw_health_weight(&h, &c, 1000), 0.0));
    CHECK(!gw_health_due(&h, 999));
    CHECK(gw_health_due(&h, 1000));

    /* Known to be serving: up at once, at full weight, still checked. */
    gw_health_init(&h, &c, 1000, true);
    CHECK(gw_health_up(&h));
    CHECK(near(gw_health_weight(&h, &c, 1000), 1.0));
    CHECK(gw_health_due(&h, 1000));
}

/* One check: when it runs, its outcome, and what must follow. */
struct health_step {
    int64_t now_ms;
    bool passed;
    bool changed;
    bool up;
    int64_t next_check_ms;
};

static void health_run(const struct health_step *steps, size_t n,
                       const struct gw_health_config *c, struct gw_health *h)
{
    for (size_t i = 0; i < n; i++) {
        const struct health_step *s = &steps[i];

        /* Every step runs exactly when its check is due. */
        CHECK(!gw_health_due(h, s->now_ms - 1));
        CHECK(gw_health_due(h, s->now_ms));
        CHECK_INT(gw_health_record(h, c, s->now_ms, s->passed), s->changed);
        CHECK_INT(gw_health_up(h), s->up);
        CHECK_INT(h->next_check_ms, s->next_check_ms);
    }
}

TEST(health_transitions_table)
{
    /* rise 2, fall 3, every 2000 ms when stable, 500 ms when changing. */
    static const struct health_step steps[] = {
        {0, false, false, false, 2000},     /* down and failing: stable */
        {2000, true, false, false, 2500},   /* a pass while down: fast */
        {2500, false, false, false, 4500},  /* the run is broken */
        {4500, true, false, false, 5000},   /* one pass */
        {5000, true, true, true, 7000},     /* two: up, stable again */
        {7000, true, false, true, 9000},    /* up and passing */
        {9000, false, false, true, 9500},   /* a failure while up: fast */
        {9500, true, false, true, 11500},   /* dismissed */
        {11500, false, false, true, 12000}, /* one failure */
        {12000, false, false, true, 12500}, /* two */
        {12500, false, true, false, 14500}, /* three: down, stable */
        {14500, false, false, false, 16500}, {16500, true, false, false, 17000},
        {17000, true, true, true, 19000}, /* back up */
    };
    struct gw_health_config c;
    struct gw_health h;

    gw_health_config_default(&c);
    gw_health_init(&h, &c, 0, false);
    health_run(steps, sizeof(steps) / sizeof(steps[0]), &c, &h);
}

TEST(health_transitions_rise_and_fall_of_one)
{
    static const struct health_step steps[] = {
        {100, true, true, true, 1100}, /* one pass is enough */
        {1100, true, false, true, 2100},
        {2100, false, true, false, 3100}, /* one failure is enough */
        {3100, false, false, false, 4100},
        {4100, true, true, true, 5100},
    };
    struct gw_health_config c;
    struct gw_health h;

    gw_health_config_default(&c);
    c.rise = 1;
    c.fall = 1;
    c.interval_ms = 1000;
    c.fast_interval_ms = 100;
    gw_health_init(&h, &c, 100, false);
    health_run(steps, sizeof(steps) / sizeof(steps[0]), &c, &h);
}

TEST(health_starts_up_goes_down_after_fall)
{
    static const struct health_step steps[] = {
        {0, false, false, true, 500},
        {500, false, false, true, 1000},
        {1000, false, true, false, 3000},
    };
    struct gw_health_config c;
    struct gw_health h;

    gw_health_config_default(&c);
    gw_health_init(&h, &c, 0, true);
    health_run(steps, sizeof(steps) / sizeof(steps[0]), &c, &h);
    CHECK(near(gw_health_weight(&h, &c, 1000), 0.0));
}

TEST(health_slow_start_ramp)
{
    struct gw_health_config c;
    struct gw_health h;

    gw_health_config_default(&c);
    gw_health_init(&h, &c, 0, false);
    CHECK(!gw_health_record(&h, &c, 0, true));
    CHECK(gw_health_record(&h, &c, 500, true));

    /* Up at 500: 10% then linear to 100% at 500 + 10000. */
    CHECK(near(gw_health_weight(&h, &c, 500), 0.1));
    CHECK(near(gw_health_weight(&h, &c, 3000), 0.1 + 0.9 * 0.25));
    CHECK(near(gw_health_weight(&h, &c, 5500), 0.55));
    CHECK(near(gw_health_weight(&h, &c, 10499), 0.1 + 0.9 * 9999 / 10000.0));
    CHECK(near(gw_health_weight(&h, &c, 10500), 1.0));
    CHECK(near(gw_health_weight(&h, &c, 99999), 1.0));
    /* A reading from before it came up does not go below the floor. */
    CHECK(near(gw_health_weight(&h, &c, 0), 0.1));

    /* Slow start disabled: full weight at once. */
    c.slow_start_ms = 0;
    CHECK(near(gw_health_weight(&h, &c, 500), 1.0));
    c.slow_start_ms = 10000;

    /* Down and up again: the ramp starts over from the new time. */
    CHECK(!gw_health_record(&h, &c, 20000, false));
    CHECK(!gw_health_record(&h, &c, 20500, false));
    CHECK(gw_health_record(&h, &c, 21000, false));
    CHECK(near(gw_health_weight(&h, &c, 21000), 0.0));
    CHECK(!gw_health_record(&h, &c, 23000, true));
    CHECK(gw_health_record(&h, &c, 23500, true));
    CHECK_INT(h.up_since_ms, 23500);
    CHECK(near(gw_health_weight(&h, &c, 23500), 0.1));
    CHECK(near(gw_health_weight(&h, &c, 28500), 0.55));
    CHECK(near(gw_health_weight(&h, &c, 33500), 1.0));

    /* A failure while up does not restart or stop the ramp. */
    CHECK(!gw_health_record(&h, &c, 24000, false));
    CHECK(near(gw_health_weight(&h, &c, 28500), 0.55));
}

TEST(outlier_defaults_and_config_check)
{
    struct gw_outlier_config c;

    gw_outlier_config_default(&c);
    CHECK_INT(c.consecutive, 5);
    CHECK_INT(c.base_ejection_ms, 30000);
    CHECK_INT(c.max_ejection_ms, 300000);
    CHECK_INT(c.max_ejected_percent, 50);
    CHECK(near(c.jitter, 0.1));
    CHECK_INT(gw_outlier_config_check(&c), ERR_OK);

    c.consecutive = 0;
    CHECK_INT(gw_outlier_config_check(&c), ERR_CONFIG);
    gw_outlier_config_default(&c);
    c.base_ejection_ms = 0;
    CHECK_INT(gw_outlier_config_check(&c), ERR_CONFIG);
    gw_outlier_config_default(&c);
    c.max_ejection_ms = 29999;
    CHECK_INT(gw_outlier_config_check(&c), ERR_CONFIG);
    gw_outlier_config_default(&c);
    c.max_ejected_percent = 101;
    CHECK_INT(gw_outlier_config_check(&c), ERR_CONFIG);
    c.max_ejected_percent = -1;
    CHECK_INT(gw_outlier_config_check(&c), ERR_CONFIG);
    gw_outlier_config_default(&c);
    c.jitter = -0.1;
    CHECK_INT(gw_outlier_config_check(&c), ERR_CONFIG);
    c.jitter = NAN;
    CHECK_INT(gw_outlier_config_check(&c), ERR_CONFIG);
}

/*
 * Feeds `count` failures at now_ms to o in a pool of 10 with none ejected;
 * returns how many of them ejected it.
 */
static int outlier_fail(struct gw_outlier *o, const struct gw_outlier_config *c,
                        int64_t now_ms, int count, struct rand *r)
{
    int ejections = 0;

    for (int i = 0; i < count; i++)
        ejections += gw_outlier_record(o, c, now_ms, true, 10, 0, r);
    return ejections;
}

TEST(outlier_ejects_after_exactly_consecutive)
{
    struct gw_outlier_config c;
    struct gw_outlier o;

    gw_outlier_config_default(&c);
    gw_outlier_init(&o);
    CHECK(!gw_outlier_ejected(&o, 0));
    CHECK(!gw_outlier_ejected(&o, -1000000));

    for (int i = 1; i < 5; i++) {
        CHECK(!gw_outlier_record(&o, &c, 1000, true, 10, 0, NULL));
        CHECK_INT(o.failures, i);
        CHECK(!gw_outlier_ejected(&o, 1000));
    }
    CHECK(gw_outlier_record(&o, &c, 1000, true, 10, 0, NULL));
    CHECK_INT(o.failures, 0);
    CHECK_INT(o.ejections_total, 1);

    /* Re-admitted exactly when its 30 s end. */
    CHECK(gw_outlier_ejected(&o, 1000));
    CHECK(gw_outlier_ejected(&o, 30999));
    CHECK(!gw_outlier_ejected(&o, 31000));
    CHECK_INT(o.ejected_until_ms, 31000);
}

TEST(outlier_success_resets_the_run)
{
    struct gw_outlier_config c;
    struct gw_outlier o;

    gw_outlier_config_default(&c);
    gw_outlier_init(&o);
    CHECK_INT(outlier_fail(&o, &c, 0, 4, NULL), 0);
    CHECK(!gw_outlier_record(&o, &c, 0, false, 10, 0, NULL));
    CHECK_INT(o.failures, 0);
    CHECK_INT(outlier_fail(&o, &c, 0, 4, NULL), 0);
    CHECK(!gw_outlier_ejected(&o, 0));
    CHECK_INT(outlier_fail(&o, &c, 0, 1, NULL), 1);
    CHECK(gw_outlier_ejected(&o, 0));
}

TEST(outlier_ignores_outcomes_while_ejected)
{
    struct gw_outlier_config c;
    struct gw_outlier o;

    gw_outlier_config_default(&c);
    gw_outlier_init(&o);
    CHECK_INT(outlier_fail(&o, &c, 0, 5, NULL), 1);

    /* Late answers of requests sent before: no count, no new ejection. */
    CHECK_INT(outlier_fail(&o, &c, 10000, 20, NULL), 0);
    CHECK_INT(o.failures, 0);
    CHECK_INT(o.ejected_until_ms, 30000);
    CHECK_INT(o.ejections_total, 1);

    /* Back at 30 s: a whole new run is needed, and the time doubles. */
    CHECK_INT(outlier_fail(&o, &c, 30000, 4, NULL), 0);
    CHECK(!gw_outlier_ejected(&o, 30000));
    CHECK_INT(outlier_fail(&o, &c, 30000, 1, NULL), 1);
    CHECK_INT(o.ejected_until_ms, 30000 + 60000);
}

TEST(outlier_ejection_time_grows_and_caps)
{
    struct gw_outlier_config c;
    struct gw_outlier o;
    int64_t now = 5000;

    gw_outlier_config_default(&c);
    gw_outlier_init(&o);

    /* No jitter without a random source: exactly 30 s x n, at most 300 s. */
    for (int n = 1; n <= 14; n++) {
        int64_t want = n <= 10 ? 30000 * (int64_t)n : 300000;

        CHECK_INT(outlier_fail(&o, &c, now, 5, NULL), 1);
        CHECK_INT(o.ejected_until_ms - now, want);
        CHECK_INT(o.ejections_total, n);
        /* Fails again as soon as it is back: no time to decay. */
        now = o.ejected_until_ms;
    }
}

TEST(outlier_jitter_adds_at_most_ten_percent)
{
    struct gw_outlier_config c;
    struct rand r;
    int64_t min_extra[11], max_extra[11];

    gw_outlier_config_default(&c);
    rand_seed(&r, 77);
    for (int n = 1; n <= 10; n++) {
        min_extra[n] = INT64_MAX;
        max_extra[n] = 0;
    }

    /* Many instances, each ejected ten times in a row. */
    for (int trial = 0; trial < 200; trial++) {
        struct gw_outlier o;
        int64_t now = 0;

        gw_outlier_init(&o);
        for (int n = 1; n <= 10; n++) {
            int64_t base = 30000 * (int64_t)n;

            CHECK_INT(outlier_fail(&o, &c, now, 5, &r), 1);
            int64_t extra = o.ejected_until_ms - now - base;

            CHECK(extra >= 0 && extra < base / 10);
            min_extra[n] = extra < min_extra[n] ? extra : min_extra[n];
            max_extra[n] = extra > max_extra[n] ? extra : max_extra[n];
            now = o.ejected_until_ms;
        }
    }

    /* The jitter covers its whole range, not a constant. */
    for (int n = 1; n <= 10; n++) {
        int64_t base = 30000 * (int64_t)n;

        CHECK(min_extra[n] < base / 100);
        CHECK(max_extra[n] > base / 10 - base / 100);
    }

    /* Past the cap, the jitter is on top of 300 s, under 330 s. */
    struct gw_outlier o;
    int64_t now = 0;

    gw_outlier_init(&o);
    for (int n = 1; n <= 20; n++) {
        CHECK_INT(outlier_fail(&o, &c, now, 5, &r), 1);
        int64_t d = o.ejected_until_ms - now;

        if (n >= 10)
            CHECK(d >= 300000 && d < 330000);
        now = o.ejected_until_ms;
    }
}

TEST(outlier_max_ejected_share)
{
    /* Pool size, share, others ejected; whether the run may eject. */
    static const struct {
        size_t pool_size;
        int percent;
        size_t ejected;
        bool ejects;
    } cases[] = {
        {10, 50, 0, true},
        {10, 50, 4, true},
        {10, 50, 5, false},
        {10, 50, 9, false},
        {3, 50, 0, true},
        {3, 50, 1, false},
        {4, 50, 1, true},
        {4, 50, 2, false},
        {10, 20, 1, true},
        {10, 20, 2, false},
        {10, 100, 9, true},
        /* One instance may always be ejected, even alone in its pool. */
        {1, 50, 0, true},
        {2, 10, 0, true},
        {2, 10, 1, false},
        {5, 0, 0, true},
        {5, 0, 1, false},
    };
    struct gw_outlier_config c;

    gw_outlier_config_default(&c);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gw_outlier o;
        bool ejected = false;

        c.max_ejected_percent = cases[i].percent;
        gw_outlier_init(&o);
        for (int k = 0; k < 5; k++)
            ejected |= gw_outlier_record(&o, &c, 0, true, cases[i].pool_size,
                                         cases[i].ejected, NULL);
        CHECK_INT(ejected, cases[i].ejects);
        CHECK_INT(gw_outlier_ejected(&o, 0), cases[i].ejects);
    }
}

TEST(outlier_refused_run_ejects_when_room_appears)
{
    struct gw_outlier_config c;
    struct gw_outlier o;

    gw_outlier_config_default(&c);
    gw_outlier_init(&o);

    /* Half of a pool of 4 is out: the run reaches 5 but cannot eject. */
    for (int i = 0; i < 7; i++)
        CHECK(!gw_outlier_record(&o, &c, 0, true, 4, 2, NULL));
    CHECK(!gw_outlier_ejected(&o, 0));
    CHECK_INT(o.failures, 5);
    CHECK_INT(o.ejections_total, 0);

    /* One came back: the next failure ejects at once. */
    CHECK(gw_outlier_record(&o, &c, 100, true, 4, 1, NULL));
    CHECK_INT(o.ejected_until_ms, 100 + 30000);

    /* A success in between would have cleared the waiting run. */
    gw_outlier_init(&o);
    for (int i = 0; i < 5; i++)
        CHECK(!gw_outlier_record(&o, &c, 0, true, 4, 2, NULL));
    CHECK(!gw_outlier_record(&o, &c, 0, false, 4, 2, NULL));
    CHECK(!gw_outlier_record(&o, &c, 100, true, 4, 1, NULL));
    CHECK_INT(o.failures, 1);
}

TEST(outlier_times_ejected_decays)
{
    struct gw_outlier_config c;
    struct gw_outlier a, b;

    gw_outlier_config_default(&c);

    /* Two ejections, 30 s then 60 s; the second ends at 90 s. */
    gw_outlier_init(&a);
    CHECK_INT(outlier_fail(&a, &c, 0, 5, NULL), 1);
    CHECK_INT(outlier_fail(&a, &c, 30000, 5, NULL), 1);
    CHECK_INT(a.ejected_until_ms, 90000);
    CHECK_INT(a.times_ejected, 2);
    b = a;

    /* Back for just under max_ejection_ms: the third is 90 s. */
    CHECK_INT(outlier_fail(&a, &c, 90000 + 299999, 5, NULL), 1);
    CHECK_INT(a.ejected_until_ms - (90000 + 299999), 90000);
    CHECK_INT(a.times_ejected, 3);

    /* Back for max_ejection_ms: a first ejection again, 30 s. */
    CHECK_INT(outlier_fail(&b, &c, 90000 + 300000, 5, NULL), 1);
    CHECK_INT(b.ejected_until_ms - (90000 + 300000), 30000);
    CHECK_INT(b.times_ejected, 1);
    CHECK_INT(b.ejections_total, 3);

    /* Any outcome applies the decay, a success too. */
    gw_outlier_init(&a);
    CHECK_INT(outlier_fail(&a, &c, 0, 5, NULL), 1);
    CHECK(!gw_outlier_record(&a, &c, 30000 + 299999, false, 10, 0, NULL));
    CHECK_INT(a.times_ejected, 1);
    CHECK(!gw_outlier_record(&a, &c, 30000 + 300000, false, 10, 0, NULL));
    CHECK_INT(a.times_ejected, 0);
}

HARNESS_MAIN(T(health_defaults_and_config_check),
             T(health_new_instance_starts_down_and_due),
             T(health_transitions_table),
             T(health_transitions_rise_and_fall_of_one),
             T(health_starts_up_goes_down_after_fall),
             T(health_slow_start_ramp), T(outlier_defaults_and_config_check),
             T(outlier_ejects_after_exactly_consecutive),
             T(outlier_success_resets_the_run),
             T(outlier_ignores_outcomes_while_ejected),
             T(outlier_ejection_time_grows_and_caps),
             T(outlier_jitter_adds_at_most_ten_percent),
             T(outlier_max_ejected_share),
             T(outlier_refused_run_ejects_when_room_appears),
             T(outlier_times_ejected_decays))
