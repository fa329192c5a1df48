/*
 * topology.h - what `marquee up` runs: which roles, how many instances of
 * each, the flags each gets, and how each scales.  Read from a JSON file
 * (the files of deploy/topology/, docs/internals/control.md) or the defaults.
 *
 *   {"roles": {
 *      "catalog": {"instances": 1, "flags": {"catalog.demo": true}},
 *      "booking": {"instances": 2,
 *                  "autoscale": {"min": 1, "max": 4, "cpu": 0.5,
 *                                "in_flight": 32, "p99_ms": 250}},
 *      "payment": {"instances": 1, "port": 8083},
 *      "notify":  {"instances": 1,
 *                  "autoscale": {"min": 1, "max": 3,
 *                                "queue": "notify.bookings",
 *                                "queue_depth": 100}},
 *      "gateway": {"flags": {"gateway.static_dir": "web"}}}}
 *
 * Roles are started in the fixed order of TOPO_ORDER (each one's
 * dependencies first) whatever the order of the file; a role the file
 * leaves out does not run, except the gateway, which always runs.
 */
#ifndef MARQUEE_CONTROL_TOPOLOGY_H
#define MARQUEE_CONTROL_TOPOLOGY_H

#include <stdbool.h>
#include <stddef.h>

#include "control/autoscale.h"

/* Named limits. */
#define TOPO_ROLES_MAX     5    /* payment, notify, booking, catalog, gateway */
#define TOPO_FLAGS_MAX     32   /* flags of one role */
#define TOPO_FLAG_MAX      1100 /* "--key=value", with the NUL */
#define TOPO_NAME_MAX      16
#define TOPO_QUEUE_MAX     64
#define TOPO_FILE_MAX      (256u << 10)
#define TOPO_INSTANCES_MAX AS_INSTANCES_MAX

/* Start order: payment before booking checks out, notify's queue before
 * booking publishes, booking's queue before the catalog publishes, the
 * gateway once there is something behind it.  Stop is the reverse. */
#define TOPO_ORDER                                                             \
    {                                                                          \
        "payment", "notify", "booking", "catalog", "gateway"                   \
    }

struct topo_role {
    char name[TOPO_NAME_MAX];
    int instances;  /* at start */
    int port;       /* of the first instance; 0: from up's range */
    bool autoscale; /* policy below is used */
    struct as_policy policy;
    bool window_given;          /* down_window_ms came from the file */
    char queue[TOPO_QUEUE_MAX]; /* the queue whose depth AS_QUEUE reads */
    size_t nflags;
    char flags[TOPO_FLAGS_MAX][TOPO_FLAG_MAX]; /* "--key=value" */
};

struct topology {
    size_t nroles; /* in start order */
    struct topo_role roles[TOPO_ROLES_MAX];
};

/*
 * The defaults: catalog 1 (with demo data off), booking 2 (autoscaled 2
 * to 4 on CPU, requests in flight and p99), payment 1, notify 1 when
 * with_notify (autoscaled 1 to 3 on its queue), gateway.
 */
void topo_defaults(struct topology *t, bool with_notify);

/*
 * Reads the topology file at path into *t.  ERR_OK, or ERR_CONFIG with a
 * message naming the file and the field in err (cap bytes), or ERR_IO
 * when the file cannot be read.  *t owns no memory either way.
 */
int topo_load(const char *path, struct topology *t, char *err, size_t cap);

/* The role named name, or NULL. */
struct topo_role *topo_find(struct topology *t, const char *name);

#endif
