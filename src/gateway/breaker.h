/*
 * breaker.h - a circuit breaker for one upstream pool.
 *
 * Three states.  Closed: calls pass, and the outcomes of the last `window`
 * calls are kept in a ring.  Once at least `min_calls` are in the ring and
 * the share of failed calls reaches `failure_rate`, or the share of calls
 * that took `slow_call_ms` or longer reaches `slow_rate`, it opens.  A
 * failed call that was also slow counts in both shares.
 *
 * Open: every call is refused, with the time left, for `open_ms`.  Then
 * half-open: exactly `probes` calls are let through.  The first probe that
 * fails, or that has not reported `probe_deadline_ms` after it was let
 * through, opens the breaker again for `open_ms`.  When every probe has
 * reported success it closes with an empty ring, unless the share of slow
 * probes reaches `slow_rate`: an upstream that answers but still too slowly
 * would open the breaker again as soon as `min_calls` were recorded, so it
 * opens again at once instead.
 *
 * Time-driven moves (open -> half-open, a probe past its deadline) take
 * effect at the moment they fall due, not when somebody next looks: the
 * state at a given now_ms does not depend on how often it was asked.
 *
 * Each state change starts a new generation.  A call's ticket carries the
 * generation it was let through in; an outcome from another generation is
 * ignored, so a slow call allowed long ago cannot reopen a breaker that
 * has since closed, nor close one that has since opened.
 *
 * Plain data: no I/O, no clock reads, no lock.  Every call passes now_ms, a
 * monotonic millisecond reading.  The owner serializes every call (the
 * gateway's pool mutex).  A now_ms older than one already seen is taken as
 * the newest seen, so two threads that read the clock in one order and
 * take the lock in the other cannot move the breaker backwards in time.
 */
#ifndef MARQUEE_GATEWAY_BREAKER_H
#define MARQUEE_GATEWAY_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

/* The largest `window` a breaker can remember (its ring is this long). */
#define GW_BREAKER_WINDOW_MAX 1024
/* The largest `probes` a half-open breaker can let through. */
#define GW_BREAKER_PROBES_MAX 16
/* The longest slow_call_ms, open_ms or probe_deadline_ms: a day. */
#define GW_BREAKER_TIME_MAX_MS (24 * 3600 * 1000LL)
/* The longest retry_after a half-open breaker with every probe out gives. */
#define GW_BREAKER_BUSY_RETRY_MS 1000

struct gw_breaker_config {
    int window;                /* calls remembered, 1..GW_BREAKER_WINDOW_MAX;
                                  default 100 */
    int min_calls;             /* recorded calls before the rates count,
                                  1..window; default 20 */
    double failure_rate;       /* (0,1]; default 0.5 */
    double slow_rate;          /* (0,1]; default 0.8 */
    int64_t slow_call_ms;      /* a call this slow or slower is slow,
                                  1..GW_BREAKER_TIME_MAX_MS; default 2000 */
    int64_t open_ms;           /* time open before half-open,
                                  1..GW_BREAKER_TIME_MAX_MS; default 5000 */
    int probes;                /* calls let through half-open,
                                  1..GW_BREAKER_PROBES_MAX; default 3 */
    int64_t probe_deadline_ms; /* a probe not reported by then failed,
                                  1..GW_BREAKER_TIME_MAX_MS; default 5000 */
};

enum gw_breaker_state {
    GW_BREAKER_CLOSED,
    GW_BREAKER_OPEN,
    GW_BREAKER_HALF_OPEN,
};

/* What gw_breaker_allow hands out; give it back to gw_breaker_record. */
struct gw_breaker_ticket {
    uint64_t generation;
    int probe_slot; /* 0..probes-1 for a half-open probe, -1 otherwise */
};

/* Bits of one ring entry. */
#define GW_BREAKER_CALL_FAILED 1u
#define GW_BREAKER_CALL_SLOW   2u

/*
 * The fields are public so that the owner can read them for metrics
 * (state, counts, *_total) under its lock; only the functions below may
 * change them.
 */
struct gw_breaker {
    struct gw_breaker_config cfg;
    enum gw_breaker_state state;
    uint64_t generation; /* starts at 1, +1 on every state change */
    int64_t now_ms;      /* the newest now_ms seen; INT64_MIN at first */

    /* Closed: the outcomes of the last cfg.window calls. */
    uint8_t ring[GW_BREAKER_WINDOW_MAX]; /* GW_BREAKER_CALL_* bits */
    int ring_next;                       /* where the next outcome goes */
    int count;                           /* outcomes in the ring */
    int failures;                        /* of them failed */
    int slow;                            /* of them slow */

    /* Open: since when; half-open begins at opened_at_ms + cfg.open_ms. */
    int64_t opened_at_ms;

    /* Half-open: probes let through, their start times and results. */
    int probes_issued;
    int probes_ok;
    int probes_slow; /* of probes_ok, how many were slow */
    bool probe_pending[GW_BREAKER_PROBES_MAX];
    int64_t probe_started_ms[GW_BREAKER_PROBES_MAX];

    uint64_t opened_total;   /* times it opened (from closed or half-open) */
    uint64_t rejected_total; /* calls refused by gw_breaker_allow */
};

/* Fills c with the defaults written beside each field above. */
void gw_breaker_config_default(struct gw_breaker_config *c);

/*
 * Starts b closed with an empty ring and counters at zero, keeping a copy
 * of c.  Returns ERR_OK, or ERR_INVALID (b untouched) for a config out of
 * the ranges above.
 */
int gw_breaker_init(struct gw_breaker *b, const struct gw_breaker_config *c);

/*
 * May one call go at now_ms?  true: go, and report it exactly once with
 * gw_breaker_record(..., ticket, ...).  false: refused (counted in
 * rejected_total); *retry_after_ms is the time until the breaker may let a
 * call through, >= 1: when open, the time left until half-open; when
 * half-open with every probe out, the time until the last probe out is
 * decided by its deadline, at most GW_BREAKER_BUSY_RETRY_MS, since probes
 * usually answer within one call's time.  retry_after_ms may be NULL.
 */
bool gw_breaker_allow(struct gw_breaker *b, int64_t now_ms,
                      struct gw_breaker_ticket *ticket,
                      int64_t *retry_after_ms);

/*
 * The outcome of an allowed call: failed or not, and how long it took
 * (duration_ms >= slow_call_ms makes it slow).  Outcomes from an older
 * generation (the state changed since the call was allowed) are ignored
 * and corrupt nothing; so are a second report of the same probe and a
 * zeroed ticket (generations start at 1).
 */
void gw_breaker_record(struct gw_breaker *b, const struct gw_breaker_ticket *t,
                       int64_t now_ms, bool failed, int64_t duration_ms);

/*
 * The state at now_ms, after time-driven moves (open -> half-open when
 * open_ms passed; a half-open probe past its deadline counts failed).
 */
enum gw_breaker_state gw_breaker_state(struct gw_breaker *b, int64_t now_ms);

/* "closed", "open", "half_open"; "unknown" for anything else. */
const char *gw_breaker_state_name(enum gw_breaker_state s);

#endif
