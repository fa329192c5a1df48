#include "gateway/balance.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* The ring walk tracks the hosts it has seen in one 64-bit mask. */
static_assert(GW_BALANCE_HOSTS_MAX <= 64, "hosts must fit a uint64_t mask");
static_assert(GW_BALANCE_HOSTS_MAX * GW_RING_VNODES <= UINT32_MAX,
              "point counts fit 32 bits");

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME  0x100000001b3ULL

uint64_t gw_hash(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = FNV_OFFSET;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }

    /*
     * FNV-1a alone leaves the high bits weakly mixed for short keys that
     * differ at the end ("10:8080#158", "10:8080#159"), and the ring orders
     * by the high bits first; a finalizer spreads every input bit.
     */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static bool lb_eligible(const struct gw_lb_host *hosts, const bool *exclude,
                        size_t i)
{
    return hosts[i].available && (exclude == NULL || !exclude[i]);
}

/* The index of the k-th eligible host (k from 0); it must exist. */
static size_t lb_nth_eligible(const struct gw_lb_host *hosts, size_t n,
                              const bool *exclude, size_t k)
{
    for (size_t i = 0; i < n; i++) {
        if (!lb_eligible(hosts, exclude, i))
            continue;
        if (k == 0)
            return i;
        k--;
    }
    assert(!"fewer eligible hosts than counted");
    return 0;
}

static double lb_load(const struct gw_lb_host *h)
{
    double w = h->weight;

    /* The negated test also catches NaN. */
    if (!(w >= GW_LB_WEIGHT_MIN))
        w = GW_LB_WEIGHT_MIN;
    assert(h->in_flight >= 0);
    return (double)(h->in_flight + 1) / w;
}

int gw_balance_p2c(const struct gw_lb_host *hosts, size_t n,
                   const bool *exclude, struct rand *r)
{
    size_t eligible = 0;

    assert(n <= INT_MAX);
    for (size_t i = 0; i < n; i++)
        eligible += lb_eligible(hosts, exclude, i);
    if (eligible == 0)
        return -1;
    if (eligible == 1)
        return (int)lb_nth_eligible(hosts, n, exclude, 0);

    /* Two distinct draws: the second skips over the first. */
    uint64_t a = rand_below(r, eligible);
    uint64_t b = rand_below(r, eligible - 1);
    if (b >= a)
        b++;
    size_t ia = lb_nth_eligible(hosts, n, exclude, (size_t)a);
    size_t ib = lb_nth_eligible(hosts, n, exclude, (size_t)b);

    return (int)(lb_load(&hosts[ib]) < lb_load(&hosts[ia]) ? ib : ia);
}

static int ring_point_cmp(const void *pa, const void *pb)
{
    const struct gw_ring_point *a = pa, *b = pb;

    if (a->point != b->point)
        return a->point < b->point ? -1 : 1;
    return (a->host > b->host) - (a->host < b->host);
}

/* ERR_OK when every name can stand on the ring, else ERR_INVALID. */
static int ring_check_names(const struct gw_lb_host *hosts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *name = hosts[i].name;

        if (name == NULL || name[0] == '\0')
            return ERR_INVALID;
        if (strnlen(name, GW_LB_NAME_MAX + 1) > GW_LB_NAME_MAX)
            return ERR_INVALID;
        for (size_t j = 0; j < i; j++)
            if (strcmp(name, hosts[j].name) == 0)
                return ERR_INVALID;
    }
    return ERR_OK;
}

int gw_ring_build(struct gw_ring *ring, const struct gw_lb_host *hosts,
                  size_t n)
{
    /* "#" and up to 10 digits of the virtual node follow the name. */
    char key[GW_LB_NAME_MAX + 12];
    struct gw_ring_point *points;
    size_t npoints = n * GW_RING_VNODES;
    int rc;

    ring->points = NULL;
    ring->npoints = 0;
    ring->nhosts = 0;
    if (n > GW_BALANCE_HOSTS_MAX)
        return ERR_INVALID;
    rc = ring_check_names(hosts, n);
    if (rc != ERR_OK)
        return rc;
    if (n == 0)
        return ERR_OK;

    points = calloc(npoints, sizeof(*points));
    if (points == NULL)
        return ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        for (unsigned v = 0; v < GW_RING_VNODES; v++) {
            int len = snprintf(key, sizeof(key), "%s#%u", hosts[i].name, v);
            struct gw_ring_point *p = &points[i * GW_RING_VNODES + v];

            assert(len > 0 && (size_t)len < sizeof(key));
            p->point = gw_hash(key, (size_t)len);
            p->host = (uint32_t)i;
        }
    }
    qsort(points, npoints, sizeof(*points), ring_point_cmp);

    ring->points = points;
    ring->npoints = npoints;
    ring->nhosts = n;
    return ERR_OK;
}

void gw_ring_free(struct gw_ring *ring)
{
    if (ring == NULL)
        return;
    free(ring->points);
    ring->points = NULL;
    ring->npoints = 0;
    ring->nhosts = 0;
}

/* The first point >= key, or npoints when key is above them all. */
static size_t ring_lower_bound(const struct gw_ring *ring, uint64_t key)
{
    size_t lo = 0, hi = ring->npoints;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (ring->points[mid].point < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/*
 * The most in-flight requests a host may have before this one is added:
 * ceil(factor * (total + 1) / available), in doubles, which is exact for
 * the usual factors (1.25 and other short binary fractions).
 */
static int64_t ring_cap(const struct gw_lb_host *hosts, size_t n, double factor)
{
    int64_t total = 0;
    size_t available = 0;

    for (size_t i = 0; i < n; i++) {
        if (!hosts[i].available)
            continue;
        assert(hosts[i].in_flight >= 0);
        total += hosts[i].in_flight;
        available++;
    }
    if (available == 0)
        return 0;

    double cap = ceil(factor * (double)(total + 1) / (double)available);
    if (cap >= 0x1.0p62)
        return INT64_C(1) << 62;
    return (int64_t)cap;
}

int gw_ring_pick(const struct gw_ring *ring, const struct gw_lb_host *hosts,
                 size_t n, uint64_t key_hash, double factor,
                 const bool *exclude)
{
    assert(n == ring->nhosts);
    assert(factor >= 1.0);
    if (ring->npoints == 0)
        return -1;

    int64_t cap = ring_cap(hosts, n, factor);
    uint64_t all = n == 64 ? UINT64_MAX : (UINT64_C(1) << n) - 1;
    uint64_t seen = 0;
    size_t start = ring_lower_bound(ring, key_hash);
    int fallback = -1;

    /* Each host is judged at its first point after the key, once. */
    for (size_t k = 0; k < ring->npoints && seen != all; k++) {
        const struct gw_ring_point *p =
            &ring->points[(start + k) % ring->npoints];
        uint64_t bit = UINT64_C(1) << p->host;

        if (seen & bit)
            continue;
        seen |= bit;
        if (!lb_eligible(hosts, exclude, p->host))
            continue;
        if (fallback < 0)
            fallback = (int)p->host;
        if (hosts[p->host].in_flight + 1 <= cap)
            return (int)p->host;
    }
    return fallback;
}
