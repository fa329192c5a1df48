/*
 * test_autoscale.c - the desired count of a role against tables: the
 * formula per metric and the largest winning, the tolerance, missing and
 * unready instances counted conservatively both ways, the external queue,
 * the per-step limits, min and max, and the stabilisation window driven by
 * a hand-moved clock (no flapping, scale-down only once the window has
 * passed).
 */
#include "harness.h"

#include <stdbool.h>

#include "control/autoscale.h"

static struct as_policy policy(void)
{
    struct as_policy p = {
        .min = 1,
        .max = 10,
        .tolerance = 0.1,
        .max_up_factor = 2.0,
        .max_up_step = 4,
        .down_window_ms = 60000,
    };
    p.target[AS_CPU] = 0.5;
    return p;
}

/* n ready instances reporting metric m with the values given. */
static void fill(struct as_sample *s, size_t n, enum as_metric m,
                 const double *values)
{
    for (size_t i = 0; i < n; i++) {
        s[i] = (struct as_sample){.ready = true};
        s[i].has[m] = true;
        s[i].value[m] = values[i];
    }
}

TEST(autoscale_formula_table)
{
    static const struct {
        int current;
        double cpu[4];
        int want;
        const char *reason;
    } table[] = {
        /* ceil(2 x 0.75 / 0.5) = 3 */
        {2, {0.75, 0.75}, 3, "scale_up"},
        /* average 0.5: exactly on target */
        {2, {0.5, 0.5}, 2, "steady"},
        /* ratio 1.08 and 0.92: inside the tolerance */
        {2, {0.54, 0.54}, 2, "steady"},
        {2, {0.46, 0.46}, 2, "steady"},
        /* ratio 1.2: just outside, ceil(2 x 1.2) = 3 */
        {2, {0.6, 0.6}, 3, "scale_up"},
        /* uneven load averages: (1.0 + 0.2) / 2 = 0.6 */
        {2, {1.0, 0.2}, 3, "scale_up"},
        /* at most double: 4 x 4 = 16 wanted, 8 allowed, +4 allowed: 5 */
        {1, {2.0}, 2, "scale_up"},
        {4, {2.0, 2.0, 2.0, 2.0}, 8, "scale_up"},
        /* nearly idle: ceil(4 x 0.1) = 1, first decision, empty window */
        {4, {0.05, 0.05, 0.05, 0.05}, 1, "scale_down"},
    };

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        struct as_policy p = policy();
        struct as_state st;
        struct as_sample s[4];
        struct as_decision d;

        p.max_up_step = 4;
        as_state_init(&st);
        fill(s, (size_t)table[i].current, AS_CPU, table[i].cpu);
        CHECK_INT(as_decide(&p, &st, 1000, table[i].current, s,
                            (size_t)table[i].current, &d),
                  table[i].want);
        CHECK_STR(d.reason, table[i].reason);
        CHECK_INT(d.current, table[i].current);
    }
}

TEST(autoscale_step_limits)
{
    struct as_policy p = policy();
    struct as_state st;
    struct as_sample s[8];
    struct as_decision d;
    double hot[8] = {5, 5, 5, 5, 5, 5, 5, 5};

    p.max = 30;
    as_state_init(&st);
    fill(s, 8, AS_CPU, hot);
    /* 80 wanted, max 30, double = 16, +4 = 12: the smaller wins. */
    CHECK_INT(as_decide(&p, &st, 0, 8, s, 8, &d), 12);
    CHECK_INT(d.recommended, 30);
    p.max_up_step = 100;
    CHECK_INT(as_decide(&p, &st, 0, 8, s, 8, &d), 16);
}

TEST(autoscale_largest_metric_wins)
{
    struct as_policy p = policy();
    struct as_state st;
    struct as_sample s[2];
    struct as_decision d;

    p.target[AS_IN_FLIGHT] = 10;
    p.target[AS_P99] = 0.25;
    as_state_init(&st);
    for (int i = 0; i < 2; i++) {
        s[i] = (struct as_sample){.ready = true};
        s[i].has[AS_CPU] = s[i].has[AS_IN_FLIGHT] = s[i].has[AS_P99] = true;
        s[i].value[AS_CPU] = 0.5;      /* steady: 2 */
        s[i].value[AS_IN_FLIGHT] = 15; /* ceil(2 x 1.5) = 3 */
        s[i].value[AS_P99] = 0.5;      /* ceil(2 x 2) = 4 */
    }
    CHECK_INT(as_decide(&p, &st, 0, 2, s, 2, &d), 4);
    CHECK_INT(d.metric, AS_P99);
    CHECK_INT(d.per_metric[AS_CPU], 2);
    CHECK_INT(d.per_metric[AS_IN_FLIGHT], 3);
    CHECK_INT(d.per_metric[AS_P99], 4);
    CHECK_INT(d.per_metric[AS_QUEUE], -1);
    CHECK_STR(as_metric_name(d.metric), "p99");
}

TEST(autoscale_missing_counted_conservatively)
{
    struct as_policy p = policy();
    struct as_state st;
    struct as_sample s[4];
    struct as_decision d;
    double v[4] = {1.0, 1.0, 0, 0};

    /* Scale-up: 2 of 4 report 1.0 (ratio 2); the silent two count as 0,
     * so the ratio is (1 + 1) / (4 x 0.5) = 1: no change. */
    as_state_init(&st);
    fill(s, 2, AS_CPU, v);
    CHECK_INT(as_decide(&p, &st, 0, 4, s, 2, &d), 4);
    CHECK_STR(d.reason, "steady");

    /* Two unready ones count the same way as silent ones. */
    fill(s, 4, AS_CPU, v);
    s[2].ready = s[3].ready = false;
    CHECK_INT(as_decide(&p, &st, 0, 4, s, 4, &d), 4);

    /* 1.5 each on two of four: (3) / 2 = 1.5 ratio with zeros: 6. */
    v[0] = v[1] = 1.5;
    fill(s, 2, AS_CPU, v);
    CHECK_INT(as_decide(&p, &st, 0, 4, s, 2, &d), 6);
    CHECK_STR(d.reason, "scale_up");

    /* Scale-down: one of 4 reports 0 (would go to 1); the silent three
     * count as at target: (0 + 3 x 0.5) / (4 x 0.5) = 0.75, ceil(3). */
    as_state_init(&st);
    v[0] = 0;
    fill(s, 1, AS_CPU, v);
    CHECK_INT(as_decide(&p, &st, 0, 4, s, 1, &d), 3);
    CHECK_STR(d.reason, "scale_down");

    /* One at 0.4 of 2: filled in, (0.4 + 0.5) / 1.0 = 0.9: tolerance. */
    as_state_init(&st);
    v[0] = 0.4;
    fill(s, 1, AS_CPU, v);
    CHECK_INT(as_decide(&p, &st, 0, 2, s, 1, &d), 2);
    CHECK_STR(d.reason, "steady");
}

TEST(autoscale_no_data_keeps_count)
{
    struct as_policy p = policy();
    struct as_state st;
    struct as_sample s[3] = {{.ready = false}, {.ready = true}, {0}};
    struct as_decision d;

    as_state_init(&st);
    CHECK_INT(as_decide(&p, &st, 0, 3, s, 3, &d), 3);
    CHECK_STR(d.reason, "no_data");
    CHECK_INT(d.metric, AS_METRICS);
    /* Still within min and max. */
    CHECK_INT(as_decide(&p, &st, 0, 12, s, 3, &d), 10);
    CHECK_INT(as_decide(&p, &st, 0, 0, s, 0, &d), 1);
}

TEST(autoscale_queue_is_external)
{
    struct as_policy p = policy();
    struct as_state st;
    struct as_sample s[3];
    struct as_decision d;
    double depth[3] = {350, 340, 0};

    p.target[AS_CPU] = 0;
    p.target[AS_QUEUE] = 100;
    as_state_init(&st);
    /* Every instance sees the same queue: the largest depth, 350 / 100. */
    fill(s, 3, AS_QUEUE, depth);
    s[2].has[AS_QUEUE] = false;
    CHECK_INT(as_decide(&p, &st, 0, 1, s, 3, &d), 2); /* at most double */
    CHECK_INT(d.recommended, 4);
    CHECK_INT(as_decide(&p, &st, 0, 2, s, 3, &d), 4);
    /* 320 over 3 instances x 100: ratio 1.07, within tolerance. */
    depth[0] = 320;
    fill(s, 1, AS_QUEUE, depth);
    CHECK_INT(as_decide(&p, &st, 0, 3, s, 1, &d), 3);
    CHECK_STR(d.reason, "steady");
}

TEST(autoscale_min_max)
{
    struct as_policy p = policy();
    struct as_state st;
    struct as_sample s[2];
    struct as_decision d;
    double idle[2] = {0, 0}, hot[2] = {9, 9};

    p.min = 2;
    p.max = 3;
    as_state_init(&st);
    fill(s, 2, AS_CPU, idle);
    CHECK_INT(as_decide(&p, &st, 0, 2, s, 2, &d), 2);
    CHECK_STR(d.reason, "steady");
    fill(s, 2, AS_CPU, hot);
    CHECK_INT(as_decide(&p, &st, 0, 2, s, 2, &d), 3);
    /* Below min goes to min at once, whatever the step allows. */
    p.min = 5;
    p.max = 8;
    p.max_up_step = 1;
    as_state_init(&st);
    fill(s, 1, AS_CPU, idle);
    CHECK_INT(as_decide(&p, &st, 0, 1, s, 1, &d), 5);
}

/* Load rises, falls, rises again within the window, then stops: the count
 * follows a rise at once and falls only once the window has passed since
 * the last higher recommendation, one move down, no flapping. */
TEST(autoscale_window_stabilises_scale_down)
{
    struct as_policy p = policy();
    struct as_state st;
    struct as_sample s[10];
    struct as_decision d;
    double v[10];
    int current = 2, changes = 0;
    int64_t t = 100000;

    as_state_init(&st);
    for (int i = 0; i < 10; i++)
        v[i] = 1.0;
    fill(s, 2, AS_CPU, v);
    current = as_decide(&p, &st, t, current, s, 2, &d); /* ratio 2: 4 */
    CHECK_INT(current, 4);

    /* The load stops: every 5 s for 55 s, the decision stays 4. */
    for (int i = 0; i < 10; i++)
        v[i] = 0.0;
    for (int step = 1; step <= 11; step++) {
        int next;

        fill(s, (size_t)current, AS_CPU, v);
        next = as_decide(&p, &st, t + step * 5000, current, s, (size_t)current,
                         &d);
        changes += next != current;
        CHECK_INT(next, 4);
        CHECK_STR(d.reason, "stabilising");
        CHECK_INT(d.recommended, 1);
    }
    CHECK_INT(changes, 0);

    /* A second peak at 30 s into the lull would have restarted the window:
     * check that with a copy of the state. */
    {
        struct as_state again = st;
        struct as_decision d2;
        double half[4] = {0.5, 0.5, 0.5, 0.5};

        fill(s, 4, AS_CPU, half);
        CHECK_INT(as_decide(&p, &again, t + 56000, 4, s, 4, &d2), 4);
        fill(s, 4, AS_CPU, v);
        CHECK_INT(as_decide(&p, &again, t + 61000, 4, s, 4, &d2), 4);
        CHECK_INT(as_decide(&p, &again, t + 115000, 4, s, 4, &d2), 4);
        CHECK_INT(as_decide(&p, &again, t + 118000, 4, s, 4, &d2), 1);
    }

    /* Past the window (plus at most one slot) since the peak: down to 1. */
    fill(s, 4, AS_CPU, v);
    CHECK_INT(as_decide(&p, &st, t + 61000 + p.down_window_ms / AS_WINDOW_STEPS,
                        4, s, 4, &d),
              1);
    CHECK_STR(d.reason, "scale_down");
}

TEST(autoscale_zero_window_follows_at_once)
{
    struct as_policy p = policy();
    struct as_state st;
    struct as_sample s[8];
    struct as_decision d;
    double hot[8] = {1, 1, 1, 1}, idle[8] = {0};

    p.down_window_ms = 0;
    as_state_init(&st);
    fill(s, 4, AS_CPU, hot);
    CHECK_INT(as_decide(&p, &st, 10, 4, s, 4, &d), 8);
    fill(s, 8, AS_CPU, idle);
    CHECK_INT(as_decide(&p, &st, 11, 8, s, 8, &d), 1);
}

TEST(autoscale_policy_checks)
{
    struct as_policy p = policy();
    const char *why = NULL;

    CHECK(as_policy_valid(&p, &why));
    p.min = 0;
    CHECK(!as_policy_valid(&p, &why));
    CHECK(why != NULL);
    p = policy();
    p.max = AS_INSTANCES_MAX + 1;
    CHECK(!as_policy_valid(&p, &why));
    p = policy();
    p.target[AS_CPU] = 0;
    CHECK(!as_policy_valid(&p, &why));
    p = policy();
    p.tolerance = 1.0;
    CHECK(!as_policy_valid(&p, &why));
    p = policy();
    p.max_up_factor = 0.5;
    CHECK(!as_policy_valid(&p, &why));
}

HARNESS_MAIN(T(autoscale_formula_table), T(autoscale_step_limits),
             T(autoscale_largest_metric_wins),
             T(autoscale_missing_counted_conservatively),
             T(autoscale_no_data_keeps_count), T(autoscale_queue_is_external),
             T(autoscale_min_max), T(autoscale_window_stabilises_scale_down),
             T(autoscale_zero_window_follows_at_once),
             T(autoscale_policy_checks))
