/*
 * shed.h - load shedding: a bound on requests in flight, with priority
 * classes that are shed in order as the bound nears.
 *
 * A gate counts requests in flight and has a bound.  Each class may take
 * a slot only while the count is under its share of the bound:
 * threshold(class) = ceil(bound x percent(class) / 100).  With the
 * default shares (anonymous reads 70%, signed-in reads 90%, critical
 * 100%) and a bound of 100, anonymous browsing is refused from 70 in
 * flight, signed-in reading from 90, and holds and checkouts only at
 * 100: the last 30% of the capacity is kept for the traffic that sells.
 * A request refused is answered at once (503 and Retry-After), never
 * queued: a queue in front of an overloaded upstream only adds waiting
 * to the failure.
 *
 * A request passes two gates, its route's and the gateway's; it takes a
 * slot of both or of neither.
 *
 * No I/O, no clock, no lock: the count is a C11 atomic, so the loop
 * threads share a gate without a mutex.  A gate's bound and shares do not
 * change once made.
 */
#ifndef MARQUEE_GATEWAY_SHED_H
#define MARQUEE_GATEWAY_SHED_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum gw_shed_class {
    GW_SHED_ANONYMOUS, /* a read with no identity: browsing */
    GW_SHED_SIGNED,    /* a read by a signed-in customer */
    GW_SHED_CRITICAL,  /* holds and checkouts, whoever asks */
    GW_SHED_CLASSES
};

/* The largest bound of a gate. */
#define GW_SHED_BOUND_MAX 1000000

struct gw_shed {
    atomic_int_fast64_t in_flight;
    int64_t bound;                      /* 0: no bound (every class passes) */
    int64_t threshold[GW_SHED_CLASSES]; /* from the bound and the shares */
    atomic_uint_fast64_t shed[GW_SHED_CLASSES]; /* refused, by class */
};

/*
 * Sets up a gate: bound 0..GW_SHED_BOUND_MAX (0: unbounded) and the share
 * of each class in percent, 1..100, not decreasing with the class.
 * ERR_OK or ERR_INVALID.
 */
int gw_shed_init(struct gw_shed *g, int64_t bound,
                 const int percent[GW_SHED_CLASSES]);

/* Takes a slot for class c; false (and counted as shed) when refused. */
bool gw_shed_enter(struct gw_shed *g, enum gw_shed_class c);

/* Gives back a slot that gw_shed_enter granted. */
void gw_shed_leave(struct gw_shed *g);

/*
 * Takes a slot of both gates, or of neither: false when either refuses
 * (the shed is counted by the gate that refused).  b may be NULL.
 */
bool gw_shed_enter2(struct gw_shed *a, struct gw_shed *b, enum gw_shed_class c);

/* The class's name for logs and metrics: "anonymous", "signed", ... */
const char *gw_shed_class_name(enum gw_shed_class c);

#endif
