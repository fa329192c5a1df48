/*
 * backoff.c - restart delays and crash-loop detection; see backoff.h.
 */
#include "control/backoff.h"

#include <assert.h>

#include "base/rand.h"

int64_t backoff_delay_ms(int64_t base_ms, int64_t cap_ms, unsigned attempt,
                         struct rand *r)
{
    int64_t ceiling = base_ms;

    assert(base_ms >= 1 && cap_ms >= base_ms);
    /* Doubling stops at the cap, so no attempt count can overflow. */
    for (unsigned i = 0; i < attempt && ceiling < cap_ms; i++)
        ceiling *= 2;
    if (ceiling > cap_ms)
        ceiling = cap_ms;
    return (int64_t)rand_below(r, (uint64_t)ceiling + 1);
}

void backoff_history_record(struct backoff_history *h, int64_t now_ms)
{
    h->at_ms[h->next] = now_ms;
    h->next = (h->next + 1) % BACKOFF_HISTORY_MAX;
    if (h->n < BACKOFF_HISTORY_MAX)
        h->n++;
}

size_t backoff_history_count(const struct backoff_history *h, int64_t now_ms,
                             int64_t window_ms)
{
    size_t count = 0;

    for (size_t i = 0; i < h->n; i++)
        if (h->at_ms[i] > now_ms - window_ms && h->at_ms[i] <= now_ms)
            count++;
    return count;
}

bool backoff_crash_loop(const struct backoff_history *h, int64_t now_ms,
                        int64_t window_ms, size_t restarts)
{
    assert(restarts >= 1 && restarts <= BACKOFF_HISTORY_MAX);
    return backoff_history_count(h, now_ms, window_ms) >= restarts;
}
