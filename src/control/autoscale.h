/*
 * autoscale.h - how many instances a role should run, from its metrics.
 *
 * A pure function in the manner of Kubernetes' horizontal pod autoscaler:
 * no I/O, no clock reading (now_ms is passed in), no lock.  The caller
 * (src/control/up.c) scrapes each instance's /metrics, turns the numbers
 * into one struct as_sample per instance and asks as_decide() for the
 * count; tests drive it from tables with a hand-moved clock.
 *
 * For each metric the policy sets a target for (a target of 0 leaves the
 * metric out), the recommendation is ceil(current x average / target),
 * where the average is over the instances that reported it; the largest
 * recommendation of all metrics wins.  Then:
 *   - a usage ratio (average / target) within policy tolerance of 1
 *     recommends the current count: small noise moves nothing;
 *   - instances that are unready or reported nothing count
 *     conservatively: as using 0 of the metric when the others would
 *     scale up, as using exactly the target when they would scale down,
 *     and a recommendation whose direction that flips is dropped;
 *   - a queue depth is external: every instance reports the same queue,
 *     so the recommendation is ceil(largest depth reported / target);
 *   - scaling up happens at once, by at most max_up_factor x current and
 *     at most max_up_step more instances per decision;
 *   - scaling down goes only to the largest recommendation recorded in the
 *     last down_window_ms (the stabilisation window), so a short lull
 *     between two peaks does not remove instances the next peak needs;
 *   - the result stays within [min, max].
 */
#ifndef MARQUEE_CONTROL_AUTOSCALE_H
#define MARQUEE_CONTROL_AUTOSCALE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum as_metric {
    AS_CPU,       /* CPU cores used per instance */
    AS_IN_FLIGHT, /* requests in flight per instance */
    AS_P99,       /* p99 request latency per instance, seconds */
    AS_QUEUE,     /* messages ready in the role's queue (external) */
    AS_METRICS
};

/* Named limits. */
#define AS_INSTANCES_MAX 32  /* samples one decision takes */
#define AS_SLOTS         128 /* ring of the stabilisation window */
#define AS_WINDOW_STEPS  64  /* slots the window is cut into */

struct as_policy {
    int min, max;           /* 1 <= min <= max <= AS_INSTANCES_MAX */
    double tolerance;       /* e.g. 0.1: ratios in [0.9, 1.1] change nothing */
    double max_up_factor;   /* >= 1: at most this x current per step */
    int max_up_step;        /* >= 1: at most this many more per step */
    int64_t down_window_ms; /* >= 0 */
    double target[AS_METRICS]; /* > 0 to use the metric, 0 to leave it out */
};

/* What one instance reported; has[m] false when it did not report m. */
struct as_sample {
    bool ready;
    bool has[AS_METRICS];
    double value[AS_METRICS];
};

/*
 * The stabilisation window: the largest recommendation of each slot of
 * down_window_ms / AS_WINDOW_STEPS.  A slot only partly inside the window
 * still counts whole, so the window is at most one slot longer than asked:
 * the conservative side.  Zero it (as_state_init) before the first use.
 */
struct as_state {
    int64_t slot[AS_SLOTS]; /* slot number, -1 when empty */
    int rec[AS_SLOTS];
};

struct as_decision {
    int current;
    int desired;                /* what to run now */
    int recommended;            /* before the window and step limits */
    int per_metric[AS_METRICS]; /* -1 for a metric left out or unknown */
    double ratio[AS_METRICS];   /* usage over target, 0 when unknown */
    enum as_metric metric;      /* the one that won; AS_METRICS for none */
    const char *reason;         /* a static word, see as_decide */
};

void as_state_init(struct as_state *st);

/*
 * Whether p is usable; on false *why names the field (a static string).
 */
bool as_policy_valid(const struct as_policy *p, const char **why);

/*
 * The count to run.  current is the number of instances the role runs
 * now (>= 0), samples one per instance (n <= AS_INSTANCES_MAX; fewer than
 * current means the rest reported nothing).  Records this decision's
 * recommendation in st.  out->reason is one of "no_data" (no metric was
 * reported: current kept, within min and max), "steady" (desired ==
 * current), "scale_up", "scale_down", "stabilising" (a lower count was
 * recommended and the window holds a higher one).  Returns out->desired.
 */
int as_decide(const struct as_policy *p, struct as_state *st, int64_t now_ms,
              int current, const struct as_sample *samples, size_t n,
              struct as_decision *out);

/* "cpu", "in_flight", "p99", "queue"; "none" for AS_METRICS. */
const char *as_metric_name(enum as_metric m);

#endif
