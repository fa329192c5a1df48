/*
 * health.h - whether an instance should get traffic: active health checks
 * and passive outlier ejection.
 *
 * Active: the gateway asks every instance `GET /readyz` now and then and
 * feeds each outcome to gw_health_record().  An instance goes up after
 * `rise` passes in a row and down after `fall` failures in a row; while an
 * outcome contradicts the current state it is checked faster, so a change
 * is confirmed (or dismissed) quickly.  An instance that has just come up
 * gets a weight that ramps from 10% to 100% (slow start), so a cold cache
 * or pool is not flooded at once.
 *
 * Passive: every proxied answer is fed to gw_outlier_record().  A run of
 * `consecutive` failures ejects the instance for a time that grows with the
 * number of times it was ejected, but never more than a share of a pool at
 * once.
 *
 * An instance is available when it is up and not ejected; the pool decides
 * that from gw_health_up() and gw_outlier_ejected().  Nothing here does
 * I/O, reads a clock or takes a lock: every call gets now_ms, a monotonic
 * millisecond reading.  Semantics: docs/internals/gateway.md, "Active
 * health checks" and "Outlier ejection".
 */
#ifndef MARQUEE_GATEWAY_HEALTH_H
#define MARQUEE_GATEWAY_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/rand.h"

/* Active checks.  Defaults are set by gw_health_config_default(). */
struct gw_health_config {
    int64_t interval_ms;      /* 2000, while the state is stable */
    int64_t fast_interval_ms; /* 500, while the state is changing */
    int64_t timeout_ms;       /* 1000, of a check (the caller applies it) */
    int rise;                 /* 2 passes in a row: up */
    int fall;                 /* 3 failures in a row: down */
    int64_t slow_start_ms;    /* 10000; 0 disables */
};

#define GW_HEALTH_SLOW_START_FLOOR 0.1 /* weight at the start of the ramp */

/*
 * The active-check state of one instance.  Read the fields freely; change
 * them only through the functions below.
 */
struct gw_health {
    bool up;
    bool ramping;          /* came up through checks: slow start applies */
    int passes;            /* passes in a row, saturating */
    int failures;          /* failures in a row, saturating */
    int64_t up_since_ms;   /* when it last came up through checks */
    int64_t next_check_ms; /* when the next check is due */
};

/* Fills c with the defaults above. */
void gw_health_config_default(struct gw_health_config *c);

/*
 * ERR_OK when c is usable: intervals and timeout > 0, rise and fall >= 1,
 * slow_start_ms >= 0.  Otherwise ERR_CONFIG.  The other functions assert
 * what this checks.
 */
int gw_health_config_check(const struct gw_health_config *c);

/*
 * A new instance: down until `rise` checks pass, or up at once if start_up
 * (for instances known to be serving, say when the gateway itself starts:
 * those get full weight at once, no slow start).  Its first check is due at
 * now_ms.
 */
void gw_health_init(struct gw_health *h, const struct gw_health_config *c,
                    int64_t now_ms, bool start_up);

/* Whether a check is due: now_ms >= next_check_ms. */
bool gw_health_due(const struct gw_health *h, int64_t now_ms);

/*
 * Records a check's outcome at now_ms.  A pass clears the failure run, a
 * failure clears the pass run.  Down with `rise` passes in a row: up (and
 * slow start begins at now_ms).  Up with `fall` failures in a row: down.
 *
 * Schedules the next check: now_ms + fast_interval_ms while the state is
 * changing (down with a pass run, or up with a failure run), else
 * now_ms + interval_ms.  Returns true when up/down changed.
 */
bool gw_health_record(struct gw_health *h, const struct gw_health_config *c,
                      int64_t now_ms, bool passed);

bool gw_health_up(const struct gw_health *h);

/*
 * The balancing weight at now_ms: 0 when down; during slow start (within
 * slow_start_ms of coming up through checks) linear from
 * GW_HEALTH_SLOW_START_FLOOR at up_since_ms to 1 at up_since_ms +
 * slow_start_ms; else 1.
 */
double gw_health_weight(const struct gw_health *h,
                        const struct gw_health_config *c, int64_t now_ms);

/* Passive outlier ejection.  Defaults by gw_outlier_config_default(). */
struct gw_outlier_config {
    int consecutive;          /* 5 failures in a row eject */
    int64_t base_ejection_ms; /* 30000, times the number of ejections */
    int64_t max_ejection_ms;  /* 300000, before jitter */
    int max_ejected_percent;  /* 50; one instance may always be ejected */
    double jitter;            /* 0.1: up to 10% more */
};

/*
 * The outlier state of one instance.  Read the fields freely; change them
 * only through the functions below.
 */
struct gw_outlier {
    int failures;      /* failures in a row, at most consecutive */
    int times_ejected; /* recent ejections: the next lasts one more base */
    /* End of the latest ejection; INT64_MIN when never ejected. */
    int64_t ejected_until_ms;
    uint64_t ejections_total; /* ejections ever, for metrics */
};

/* Fills c with the defaults above. */
void gw_outlier_config_default(struct gw_outlier_config *c);

/*
 * ERR_OK when c is usable: consecutive >= 1, 0 < base_ejection_ms <=
 * max_ejection_ms, max_ejected_percent in [0, 100], jitter in [0, 1].
 * Otherwise ERR_CONFIG.  The other functions assert what this checks.
 */
int gw_outlier_config_check(const struct gw_outlier_config *c);

/* A new instance: not ejected, no failures, never ejected. */
void gw_outlier_init(struct gw_outlier *o);

/*
 * Records one upstream outcome at now_ms (failed = connect failure or
 * 5xx).  pool_size is the number of instances in the pool, pool_ejected
 * how many of the others are ejected at now_ms.
 *
 * Decay first: once an instance has been back for max_ejection_ms (now_ms
 * >= ejected_until_ms + max_ejection_ms) its times_ejected returns to 0,
 * so its next ejection is a first one again (base_ejection_ms).
 *
 * While the instance is ejected, outcomes (of requests sent before) are
 * ignored.  A success clears the failure run.  A failure extends it; when
 * the run reaches `consecutive` and (pool_ejected + 1) <= max(1, pool_size
 * * max_ejected_percent / 100) (integer division), the instance is ejected
 * for d + floor(d * jitter * u) ms, where d = min(base_ejection_ms *
 * times ejected (this one included), max_ejection_ms) and u is
 * rand_unit(r) (u = 0 when r is NULL), and the run starts over.  When the
 * share is used up the run stays at `consecutive`, so the next failure
 * tries again.
 *
 * Returns true when this outcome ejects the instance.
 */
bool gw_outlier_record(struct gw_outlier *o, const struct gw_outlier_config *c,
                       int64_t now_ms, bool failed, size_t pool_size,
                       size_t pool_ejected, struct rand *r);

/* Whether the instance is ejected at now_ms: now_ms < ejected_until_ms. */
bool gw_outlier_ejected(const struct gw_outlier *o, int64_t now_ms);

#endif
