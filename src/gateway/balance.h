/*
 * balance.h - which instance of a pool gets a request.
 *
 * Two policies, both pure functions over a caller-owned array of hosts:
 *
 *   - power of two choices (P2C): two distinct eligible hosts at random,
 *     the one with the lower load wins.  Cheap, needs no shared state, and
 *     avoids the herd that "always the least loaded" causes when many
 *     threads see the same counters.
 *   - a consistent-hash ring with bounded load: a key (a show id) lands on
 *     a point of a 64-bit ring and walks clockwise to the first eligible
 *     host that is not above its share of the load.  The same key reaches
 *     the same host while the pool is stable, and a host that leaves moves
 *     only its own keys.
 *
 * Nothing here does I/O, reads a clock or takes a lock; the pool that owns
 * the hosts holds its mutex around these calls.  The semantics are in
 * docs/internals/gateway.md, "Balancing".
 */
#ifndef MARQUEE_GATEWAY_BALANCE_H
#define MARQUEE_GATEWAY_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/rand.h"

#define GW_RING_VNODES       160  /* points per instance on the ring */
#define GW_BALANCE_HOSTS_MAX 64   /* instances per pool */
#define GW_LB_NAME_MAX       255  /* bytes of a host name, NUL not counted */
#define GW_LB_WEIGHT_MIN     0.01 /* smaller weights count as this */
#define GW_RING_FACTOR       1.25 /* default bounded-load factor */

/* One instance as the balancer sees it; the pool owns the array. */
struct gw_lb_host {
    const char *name;  /* "host:port", stable identity on the ring */
    int64_t in_flight; /* requests outstanding, >= 0 */
    double weight;     /* (0,1], slow start; 1 normally */
    bool available;    /* up, not ejected */
};

/*
 * A 64-bit hash, the same on every run and machine (no random seed, bytes
 * read one at a time so endianness does not matter).  FNV-1a, then a
 * 64-bit finalizer so that keys differing in their last byte spread over
 * the whole ring.  Not for untrusted input where collisions would matter.
 */
uint64_t gw_hash(const void *data, size_t len);

/*
 * Power of two choices.  The eligible hosts are hosts[i] with available
 * set and, when exclude is not NULL, exclude[i] false (exclude has n
 * flags).  Two distinct eligible hosts are drawn at random with r; the
 * one with the lower (in_flight + 1) / weight wins, the first drawn on a
 * tie.  The "+ 1" counts the request being placed, so an idle host in slow
 * start (weight 0.1) weighs more than an idle one at full weight.  Weights
 * below GW_LB_WEIGHT_MIN (or NaN) count as GW_LB_WEIGHT_MIN.
 *
 * Returns the index of the chosen host: the only eligible one when there
 * is one, -1 when there is none.  Draws from r only when there are two or
 * more eligible hosts.
 */
int gw_balance_p2c(const struct gw_lb_host *hosts, size_t n,
                   const bool *exclude, struct rand *r);

/* One point on the ring. */
struct gw_ring_point {
    uint64_t point;
    uint32_t host; /* index into the hosts array the ring was built from */
};

/*
 * A consistent-hash ring: GW_RING_VNODES points per host, sorted by point
 * (ties, which need a 64-bit collision, by host index).  The point of
 * virtual node i of a host is gw_hash("<name>#<i>"), i from 0, so a host
 * keeps its points whatever else is in the pool.  Owns its points.
 */
struct gw_ring {
    struct gw_ring_point *points; /* npoints, sorted; NULL when empty */
    size_t npoints;
    size_t nhosts; /* the n it was built for */
};

/*
 * Builds the ring for hosts[0..n) by name (only the names are read; the
 * ring keeps no pointer into hosts).  ring's previous content is
 * overwritten, not freed.  n may be 0: an empty ring whose picks are -1.
 *
 * Returns ERR_OK; ERR_NOMEM; ERR_INVALID when n > GW_BALANCE_HOSTS_MAX, or
 * a name is NULL, empty, longer than GW_LB_NAME_MAX, or given to two hosts
 * (two identical names would share every point).  On failure the ring is
 * empty and gw_ring_free() on it is harmless.
 */
int gw_ring_build(struct gw_ring *ring, const struct gw_lb_host *hosts,
                  size_t n);

/* Frees the points and leaves an empty ring; NULL or empty is fine. */
void gw_ring_free(struct gw_ring *ring);

/*
 * The host for key_hash (gw_hash of the key).  hosts[0..n) is the same
 * array, in the same order, as the ring was built from (n == nhosts);
 * their in_flight and available may have changed since.
 *
 * Walks clockwise from key_hash (the first point >= key_hash, wrapping
 * past the top) to the first host that is available, not excluded
 * (exclude may be NULL; else n flags) and whose in_flight + 1 <= cap,
 * where
 *     cap = ceil(factor * (total in_flight of available hosts + 1)
 *                / available hosts).
 * If every such host is at its cap (possible only when some available
 * hosts are excluded), the first available, not excluded one clockwise.
 * Weights are ignored: a show's owner should not change with slow start.
 * factor >= 1 (GW_RING_FACTOR by default).
 *
 * Returns the index of the host, or -1 when no host is available and not
 * excluded.  Costs at most one pass over the points.
 */
int gw_ring_pick(const struct gw_ring *ring, const struct gw_lb_host *hosts,
                 size_t n, uint64_t key_hash, double factor,
                 const bool *exclude);

#endif
