/*
 * limit.h - rate limiting by GCRA (the generic cell rate algorithm), one
 * limiter per policy, one theoretical arrival time (TAT) per key.
 *
 * A policy lets `rate` requests per `period_ms` through, with bursts of up
 * to `burst` requests at once.  The emission interval is T = period / rate
 * and the tolerance tau = T x burst.  A request at now is allowed when
 * max(TAT, now) + T - tau <= now; it then moves TAT to max(TAT, now) + T.
 * A refused request leaves TAT alone and must wait until that inequality
 * holds: retry_after = max(TAT, now) + T - tau - now.  So a fresh key gets
 * `burst` requests at once, then one every T; an idle key regains one
 * request of its burst every T.
 *
 * Times are kept in microseconds, so that T is exact enough for rates that
 * do not divide a second (3 per second: T = 333,333 us); T is rounded
 * down, which lets a key through at most a millionth of a second early.
 *
 * Keys live in a table of fixed capacity.  A key whose TAT is not after
 * now is exactly as a key never seen (a full burst), so it is dropped
 * first and nothing is lost.  When the table is full and the
 * GW_LIMIT_EVICT_SCAN least recently used keys are all still live, the
 * least recently used of them is dropped anyway: that key starts again
 * with a full burst.  The limiter fails open, not closed: a table too
 * small for the live keys lets a few more requests through rather than
 * refusing customers it cannot tell apart.  Such drops are counted
 * (evicted_live), so an operator sees the table is too small.
 *
 * Plain data: no I/O, no clock read, no lock.  Every call gets now_ms, a
 * monotonic millisecond reading; the owner serializes the calls.
 */
#ifndef MARQUEE_GATEWAY_LIMIT_H
#define MARQUEE_GATEWAY_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest key (customer id, API key id, client address), with NUL. */
#define GW_LIMIT_KEY_MAX 72
/* Keys one limiter may hold at most. */
#define GW_LIMIT_KEYS_MAX (1u << 22)
/* Least recently used keys looked at for an idle one when full. */
#define GW_LIMIT_EVICT_SCAN 8
/* The largest rate and burst of a policy, and its longest period. */
#define GW_LIMIT_RATE_MAX      1000000
#define GW_LIMIT_BURST_MAX     1000000
#define GW_LIMIT_PERIOD_MAX_MS (24 * 3600 * 1000LL)

struct gw_limit_policy {
    int64_t rate;      /* requests per period, 1..GW_LIMIT_RATE_MAX */
    int64_t period_ms; /* 1000 (per second) or 60000 (per minute), or any
                          1..GW_LIMIT_PERIOD_MAX_MS */
    int64_t burst;     /* requests at once, 1..GW_LIMIT_BURST_MAX */
};

/* What one request got. */
struct gw_limit_result {
    bool allowed;
    /* Refused: time until the same request would be allowed (> 0). */
    int64_t retry_after_ms;
    /* Requests a burst at this moment could still make, after this one. */
    int64_t remaining;
    /* Time until the key's burst is whole again (0 when it is). */
    int64_t reset_ms;
};

struct gw_limiter;

/*
 * Whether a policy is usable: fields in range and period_ms x 1000 >=
 * rate (T of at least a microsecond).  ERR_OK or ERR_INVALID.
 */
int gw_limit_policy_check(const struct gw_limit_policy *p);

/*
 * A limiter for policy p (copied) holding at most capacity keys
 * (1..GW_LIMIT_KEYS_MAX).  ERR_OK with *out set, ERR_INVALID (bad policy
 * or capacity) or ERR_NOMEM.  The table is allocated whole here, so a
 * running limiter never allocates.
 */
int gw_limiter_new(const struct gw_limit_policy *p, size_t capacity,
                   struct gw_limiter **out);

void gw_limiter_free(struct gw_limiter *l);

/*
 * Counts one request of key (len bytes, cut to GW_LIMIT_KEY_MAX - 1) at
 * now_ms and says whether it may pass.  A refused request changes nothing
 * of the key's state.  The caller answers; a dry run just ignores
 * `allowed`.
 */
void gw_limiter_take(struct gw_limiter *l, const char *key, size_t len,
                     int64_t now_ms, struct gw_limit_result *out);

/* Keys held now. */
size_t gw_limiter_keys(const struct gw_limiter *l);

/* Keys dropped while still live (the table was too small), since start. */
uint64_t gw_limiter_evicted_live(const struct gw_limiter *l);

/*
 * The policy's figures for the RateLimit-Policy header: the quota (burst)
 * and the window in whole seconds (the time to regain a whole burst,
 * T x burst, rounded up, at least 1).
 */
int64_t gw_limit_window_s(const struct gw_limit_policy *p);

#endif
