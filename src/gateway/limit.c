/*
 * limit.c - GCRA rate limiting over a bounded table of keys.
 *
 * The table is an array of entries allocated at creation, a chained hash
 * index of them (bucket heads and next links as indices) and a doubly
 * linked list in order of last use.  Nothing allocates after creation.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "gateway/balance.h"
#include "gateway/limit.h"

#define NIL       UINT32_MAX
#define US_PER_MS 1000

struct entry {
    char key[GW_LIMIT_KEY_MAX];
    uint8_t key_len;
    uint64_t hash;
    int64_t tat_us;
    uint32_t next;         /* hash chain */
    uint32_t newer, older; /* use order */
};

struct gw_limiter {
    struct gw_limit_policy policy;
    int64_t t_us, tau_us;
    size_t capacity, used;
    uint32_t nbuckets; /* a power of two */
    uint32_t *bucket;
    struct entry *e;
    uint32_t free_head; /* chained through next */
    uint32_t newest, oldest;
    uint64_t evicted_live;
};

int gw_limit_policy_check(const struct gw_limit_policy *p)
{
    if (p->rate < 1 || p->rate > GW_LIMIT_RATE_MAX || p->burst < 1 ||
        p->burst > GW_LIMIT_BURST_MAX || p->period_ms < 1 ||
        p->period_ms > GW_LIMIT_PERIOD_MAX_MS ||
        p->period_ms * US_PER_MS < p->rate)
        return ERR_INVALID;
    return ERR_OK;
}

int64_t gw_limit_window_s(const struct gw_limit_policy *p)
{
    int64_t t_us = p->period_ms * US_PER_MS / p->rate;
    int64_t s = (t_us * p->burst + 999999) / 1000000;

    return s < 1 ? 1 : s;
}

int gw_limiter_new(const struct gw_limit_policy *p, size_t capacity,
                   struct gw_limiter **out)
{
    struct gw_limiter *l;

    if (gw_limit_policy_check(p) != ERR_OK || capacity < 1 ||
        capacity > GW_LIMIT_KEYS_MAX)
        return ERR_INVALID;
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return ERR_NOMEM;
    l->policy = *p;
    l->t_us = p->period_ms * US_PER_MS / p->rate;
    l->tau_us = l->t_us * p->burst;
    l->capacity = capacity;
    /* At least two buckets per key keeps chains short. */
    l->nbuckets = 2;
    while (l->nbuckets < 2 * capacity)
        l->nbuckets *= 2;
    l->bucket = malloc(l->nbuckets * sizeof(*l->bucket));
    l->e = calloc(capacity, sizeof(*l->e));
    if (l->bucket == NULL || l->e == NULL) {
        gw_limiter_free(l);
        return ERR_NOMEM;
    }
    for (uint32_t b = 0; b < l->nbuckets; b++)
        l->bucket[b] = NIL;
    for (size_t k = 0; k < capacity; k++)
        l->e[k].next = k + 1 < capacity ? (uint32_t)(k + 1) : NIL;
    l->free_head = 0;
    l->newest = l->oldest = NIL;
    *out = l;
    return ERR_OK;
}

void gw_limiter_free(struct gw_limiter *l)
{
    if (l == NULL)
        return;
    free(l->bucket);
    free(l->e);
    free(l);
}

size_t gw_limiter_keys(const struct gw_limiter *l)
{
    return l->used;
}

uint64_t gw_limiter_evicted_live(const struct gw_limiter *l)
{
    return l->evicted_live;
}

/* --- the use list --------------------------------------------------------- */

static void use_unlink(struct gw_limiter *l, uint32_t i)
{
    struct entry *e = &l->e[i];

    if (e->newer != NIL)
        l->e[e->newer].older = e->older;
    else
        l->newest = e->older;
    if (e->older != NIL)
        l->e[e->older].newer = e->newer;
    else
        l->oldest = e->newer;
}

static void use_push(struct gw_limiter *l, uint32_t i)
{
    struct entry *e = &l->e[i];

    e->newer = NIL;
    e->older = l->newest;
    if (l->newest != NIL)
        l->e[l->newest].newer = i;
    l->newest = i;
    if (l->oldest == NIL)
        l->oldest = i;
}

/* --- the index ------------------------------------------------------------ */

static uint32_t find(const struct gw_limiter *l, const char *key, size_t len,
                     uint64_t hash)
{
    uint32_t i = l->bucket[hash & (l->nbuckets - 1)];

    for (; i != NIL; i = l->e[i].next)
        if (l->e[i].hash == hash && l->e[i].key_len == len &&
            memcmp(l->e[i].key, key, len) == 0)
            return i;
    return NIL;
}

static void drop(struct gw_limiter *l, uint32_t i)
{
    uint32_t *at = &l->bucket[l->e[i].hash & (l->nbuckets - 1)];

    while (*at != i) {
        assert(*at != NIL);
        at = &l->e[*at].next;
    }
    *at = l->e[i].next;
    use_unlink(l, i);
    l->e[i].next = l->free_head;
    l->free_head = i;
    l->used--;
}

/* Makes room for one key: an idle key if one is near the old end. */
static void evict_one(struct gw_limiter *l, int64_t now_us)
{
    uint32_t i = l->oldest;

    for (int k = 0; k < GW_LIMIT_EVICT_SCAN && i != NIL; k++) {
        if (l->e[i].tat_us <= now_us) {
            drop(l, i);
            return;
        }
        i = l->e[i].newer;
    }
    l->evicted_live++;
    drop(l, l->oldest);
}

static uint32_t add(struct gw_limiter *l, const char *key, size_t len,
                    uint64_t hash, int64_t now_us)
{
    uint32_t i, b = (uint32_t)(hash & (l->nbuckets - 1));

    if (l->used == l->capacity)
        evict_one(l, now_us);
    i = l->free_head;
    assert(i != NIL);
    l->free_head = l->e[i].next;
    memcpy(l->e[i].key, key, len);
    l->e[i].key_len = (uint8_t)len;
    l->e[i].hash = hash;
    l->e[i].tat_us = now_us;
    l->e[i].next = l->bucket[b];
    l->bucket[b] = i;
    use_push(l, i);
    l->used++;
    return i;
}

/* --- taking --------------------------------------------------------------- */

void gw_limiter_take(struct gw_limiter *l, const char *key, size_t len,
                     int64_t now_ms, struct gw_limit_result *out)
{
    int64_t now = now_ms * US_PER_MS, tat, new_tat, left;
    uint64_t hash;
    uint32_t i;

    if (len > GW_LIMIT_KEY_MAX - 1)
        len = GW_LIMIT_KEY_MAX - 1;
    hash = gw_hash(key, len);
    i = find(l, key, len, hash);
    if (i == NIL)
        i = add(l, key, len, hash, now);
    else {
        use_unlink(l, i);
        use_push(l, i);
    }

    tat = l->e[i].tat_us > now ? l->e[i].tat_us : now;
    new_tat = tat + l->t_us;
    out->allowed = new_tat - l->tau_us <= now;
    if (out->allowed) {
        l->e[i].tat_us = new_tat;
        tat = new_tat;
    }
    out->retry_after_ms =
        out->allowed ? 0 : (new_tat - l->tau_us - now + 999) / US_PER_MS;
    /* What is left of the burst: the room between TAT and now + tau. */
    left = now + l->tau_us - tat;
    out->remaining = left > 0 ? left / l->t_us : 0;
    assert(out->remaining <= l->policy.burst);
    out->reset_ms = tat > now ? (tat - now + 999) / US_PER_MS : 0;
}
