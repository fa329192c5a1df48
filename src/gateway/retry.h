/*
 * retry.h - which requests the gateway may retry, how long it waits before
 * a retry, and the budget that keeps retries from multiplying the load on
 * an upstream that is already failing.
 *
 * A request may be tried again only when sending it twice cannot do twice
 * the work: GET and HEAD, or a POST, PUT, PATCH or DELETE that carries an
 * Idempotency-Key the upstream deduplicates by.  Only answers that say the
 * upstream side failed before doing the work are worth another instance:
 * 502, 503 and 504 (connect failures and timeouts before any response byte
 * are the caller's to classify).  At most GW_RETRY_MAX retries follow the
 * first try, each after a full-jitter backoff so that clients which failed
 * together do not come back together.
 *
 * The predicates and the backoff are pure.  The budget is shared by every
 * loop thread and uses C11 atomics only: no lock, no allocation.
 */
#ifndef MARQUEE_GATEWAY_RETRY_H
#define MARQUEE_GATEWAY_RETRY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/rand.h"

#define GW_RETRY_MAX             2 /* retries after the first try */
#define GW_RETRY_BACKOFF_BASE_MS 25
#define GW_RETRY_BACKOFF_CAP_MS  250

/* The budget's defaults: 20% of requests in flight, at least 3 retries. */
#define GW_RETRY_BUDGET_RATIO 0.2
#define GW_RETRY_BUDGET_MIN   3

/*
 * GET and HEAD always; POST, PUT, PATCH, DELETE only with an
 * Idempotency-Key; any other method, or NULL, never.  Methods are
 * case-sensitive (RFC 9110), so "get" is not GET.
 */
bool gw_retry_method_ok(const char *method, bool has_idempotency_key);

/* Upstream answers worth another instance: 502, 503, 504. */
bool gw_retry_status_ok(int status);

/*
 * Full jitter: uniform in [0, min(cap_ms, base_ms * 2^(attempt-1))), where
 * attempt is the number of the retry about to start (1 for the first).
 * attempt must be >= 1 and base_ms, cap_ms >= 0 (a bug otherwise: asserts).
 * Returns 0 when that range is empty (base_ms or cap_ms 0).  Never
 * overflows, whatever attempt.  Draws from r, which the caller owns.
 */
int64_t gw_retry_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms,
                            struct rand *r);

/*
 * The retry budget, shared by every loop thread: C11 atomics, no lock.
 * Read the counters with the accessors below.
 */
struct gw_retry_budget {
    atomic_int_fast64_t requests;         /* requests in flight */
    atomic_int_fast64_t retries;          /* retries in flight */
    atomic_uint_fast64_t exhausted_total; /* retries refused */
    double ratio;                         /* set at init, then read-only */
    int min_retries;                      /* set at init, then read-only */
};

/*
 * Starts b with every counter at zero.  ratio is in [0, 1] (default
 * GW_RETRY_BUDGET_RATIO) and min_retries >= 0 (default GW_RETRY_BUDGET_MIN);
 * other values are a bug and assert.  Not thread-safe: before sharing b.
 */
void gw_retry_budget_init(struct gw_retry_budget *b, double ratio,
                          int min_retries);

/* A request started / ended; every begin is paired with one end. */
void gw_retry_budget_request_begin(struct gw_retry_budget *b);
void gw_retry_budget_request_end(struct gw_retry_budget *b);

/*
 * true: one retry may start now, and is counted in flight; pair it with
 * gw_retry_budget_retry_end.  It may start while retries in flight are
 * below max(min_retries, floor(ratio * requests in flight)): so retries in
 * flight never exceed that share, even when it is a fraction.  false:
 * budget exhausted, counted in exhausted_total.  The retrying request is
 * itself one of the requests in flight.
 */
bool gw_retry_budget_retry_begin(struct gw_retry_budget *b);
void gw_retry_budget_retry_end(struct gw_retry_budget *b);

/* The counters now; each is read alone, so together they may be skewed. */
int64_t gw_retry_budget_requests(const struct gw_retry_budget *b);
int64_t gw_retry_budget_retries(const struct gw_retry_budget *b);
uint64_t gw_retry_budget_exhausted(const struct gw_retry_budget *b);

#endif
