/*
 * retry.c - retry eligibility, full-jitter backoff and the lock-free retry
 * budget (see retry.h).
 */
#include "gateway/retry.h"

#include <assert.h>
#include <math.h>
#include <string.h>

bool gw_retry_method_ok(const char *method, bool has_idempotency_key)
{
    static const char *const safe[] = {"GET", "HEAD"};
    static const char *const keyed[] = {"POST", "PUT", "PATCH", "DELETE"};

    if (method == NULL)
        return false;
    for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++)
        if (strcmp(method, safe[i]) == 0)
            return true;
    if (!has_idempotency_key)
        return false;
    for (size_t i = 0; i < sizeof(keyed) / sizeof(keyed[0]); i++)
        if (strcmp(method, keyed[i]) == 0)
            return true;
    return false;
}

bool gw_retry_status_ok(int status)
{
    return status == 502 || status == 503 || status == 504;
}

int64_t gw_retry_backoff_ms(int attempt, int64_t base_ms, int64_t cap_ms,
                            struct rand *r)
{
    assert(attempt >= 1);
    assert(base_ms >= 0 && cap_ms >= 0);

    /*
     * Double base_ms once per retry after the first, stopping at the cap
     * before the product could overflow; so the loop runs at most 63 times
     * whatever attempt is.
     */
    int64_t ceiling_ms = base_ms < cap_ms ? base_ms : cap_ms;
    for (int i = 1; i < attempt && ceiling_ms < cap_ms; i++) {
        if (ceiling_ms > cap_ms / 2)
            ceiling_ms = cap_ms;
        else
            ceiling_ms *= 2;
    }
    if (ceiling_ms <= 0)
        return 0;
    return (int64_t)rand_below(r, (uint64_t)ceiling_ms);
}

/* --- the budget --------------------------------------------------------- */

void gw_retry_budget_init(struct gw_retry_budget *b, double ratio,
                          int min_retries)
{
    assert(ratio >= 0.0 && ratio <= 1.0); /* NaN fails too */
    assert(min_retries >= 0);

    atomic_init(&b->requests, 0);
    atomic_init(&b->retries, 0);
    atomic_init(&b->exhausted_total, 0);
    b->ratio = ratio;
    b->min_retries = min_retries;
}

void gw_retry_budget_request_begin(struct gw_retry_budget *b)
{
    atomic_fetch_add_explicit(&b->requests, 1, memory_order_relaxed);
}

void gw_retry_budget_request_end(struct gw_retry_budget *b)
{
    int_fast64_t before =
        atomic_fetch_sub_explicit(&b->requests, 1, memory_order_relaxed);

    assert(before > 0); /* an end without its begin */
}

/* How many retries may be in flight with requests in flight. */
static int_fast64_t budget_limit(const struct gw_retry_budget *b,
                                 int_fast64_t requests)
{
    int_fast64_t share = 0;

    if (requests > 0)
        share = (int_fast64_t)floor(b->ratio * (double)requests);
    return share > b->min_retries ? share : b->min_retries;
}

bool gw_retry_budget_retry_begin(struct gw_retry_budget *b)
{
    int_fast64_t retries =
        atomic_load_explicit(&b->retries, memory_order_relaxed);

    /*
     * Take a place only if it is still below the limit when taken: a
     * compare-and-swap, so concurrent callers can never overshoot it.  A
     * failed swap means another thread moved the count; every such failure
     * is some other thread's progress.
     */
    for (;;) {
        int_fast64_t requests =
            atomic_load_explicit(&b->requests, memory_order_relaxed);

        if (retries >= budget_limit(b, requests)) {
            atomic_fetch_add_explicit(&b->exhausted_total, 1,
                                      memory_order_relaxed);
            return false;
        }
        if (atomic_compare_exchange_weak_explicit(
                &b->retries, &retries, retries + 1, memory_order_relaxed,
                memory_order_relaxed))
            return true;
    }
}

void gw_retry_budget_retry_end(struct gw_retry_budget *b)
{
    int_fast64_t before =
        atomic_fetch_sub_explicit(&b->retries, 1, memory_order_relaxed);

    assert(before > 0); /* an end without its begin */
}

int64_t gw_retry_budget_requests(const struct gw_retry_budget *b)
{
    return atomic_load_explicit(&b->requests, memory_order_relaxed);
}

int64_t gw_retry_budget_retries(const struct gw_retry_budget *b)
{
    return atomic_load_explicit(&b->retries, memory_order_relaxed);
}

uint64_t gw_retry_budget_exhausted(const struct gw_retry_budget *b)
{
    return atomic_load_explicit(&b->exhausted_total, memory_order_relaxed);
}
