/*
 * up_int.h - the state of `marquee up`, shared by its files: up.c (start,
 * stop, the admin port), supervise.c (instances: start, readiness, restart,
 * drain) and scale.c (the autoscaler's loop and the status document).
 *
 * One thread, the control thread, owns every field here except the three
 * marked otherwise; the admin server's threads only read the status text
 * under its lock, and the ready flag.
 */
#ifndef MARQUEE_CONTROL_UP_INT_H
#define MARQUEE_CONTROL_UP_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/rand.h"
#include "control/autoscale.h"
#include "control/backoff.h"
#include "control/proc.h"
#include "control/scrape.h"
#include "control/topology.h"

struct config;
struct http_server;
struct metrics_family;
struct metrics_series;

/* Named limits. */
#define UP_TICK_MS       100  /* the control loop's period */
#define UP_START_POLL_MS 100  /* readiness polls of a starting instance */
#define UP_POOLS_POLL_MS 1000 /* the gateway's /admin/pools */
#define UP_DECISIONS_MAX 32   /* scaling decisions kept for /status */
#define UP_PATH_MAX      1024
#define UP_DIR_MAX       512 /* up.data_dir, so that its paths fit */
#define UP_TOKEN_MAX     128
#define UP_NAME_MAX      32   /* "booking-12" */
#define UP_ATTEMPT_MAX   64   /* backoff attempts counted */
#define UP_STOP_GRACE_MS 2000 /* after SIGKILL, until the exit is seen */
#define UP_LEAVE_WAIT_MS 5000 /* most a restarted instance waits to rejoin */

enum up_state {
    UP_EMPTY,    /* slot unused */
    UP_STARTING, /* spawned, /readyz not yet 200 */
    UP_READY,    /* in the registry */
    UP_BACKOFF,  /* exited; restarts at restart_at_ms */
    UP_DRAINING, /* out of the registry, requests in flight finishing */
    UP_STOPPING, /* SIGTERM sent; SIGKILL at deadline_ms */
};

enum up_reason { UP_EXIT, UP_UNRESPONSIVE, UP_NOT_READY, UP_REASONS };

struct up_role;

struct up_instance {
    struct up_role *role;
    int slot; /* 1-based: the name's number */
    char name[UP_NAME_MAX];
    int port;
    pid_t pid; /* 0 when no process runs */
    enum up_state state;
    int64_t started_ms, ready_ms, restart_at_ms, deadline_ms, next_check_ms;
    int64_t drain_ms;   /* when draining began */
    unsigned attempt;   /* failures since the last stable run */
    int check_failures; /* failed readiness checks in a row */
    bool retiring;      /* scaled down: not restarted when it exits */
    bool reserved;      /* port chosen at start, process not yet made */
    bool left_gateway;  /* draining: the gateway lists it no more */
    bool must_leave;    /* died: joins only once the gateway dropped it */
    int64_t died_ms;
    bool killed; /* SIGKILL sent */
    enum up_reason kill_reason;
    bool crash_loop;
    uint64_t restarts;
    char last_exit[PROC_EXIT_TEXT];
    struct backoff_history history;
    struct scrape prev; /* the last /metrics read, for rates */
    bool has_prev;
    int64_t prev_ms;
};

struct up_role {
    struct topo_role *topo;
    bool routed;    /* a pool of the gateway's routes file */
    bool has_store; /* the role takes store.path */
    bool has_accounts, has_gateway_secret, has_token_secret;
    struct up_instance inst[TOPO_INSTANCES_MAX];
    struct as_state as;
    const char *last_reason;
    struct metrics_series *m_crash_loop, *m_ready, *m_desired;
    struct metrics_series *m_restarts[UP_REASONS];
    struct metrics_family *m_decisions;
};

struct up_decision {
    int64_t wall_ms;
    const char *role;
    struct as_decision d;
};

struct up {
    const struct config *cfg;
    struct topology *topo;
    struct up_role roles[TOPO_ROLES_MAX];
    size_t nroles;

    char bin[UP_PATH_MAX];
    char data_dir[UP_DIR_MAX];
    char routes_src[UP_PATH_MAX];
    char routes_out[UP_PATH_MAX];
    char registry[UP_PATH_MAX];
    char token[UP_TOKEN_MAX];
    char gateway_secret[UP_TOKEN_MAX]; /* http.gateway_secret of all */
    char token_secret[UP_TOKEN_MAX];   /* gateway.token_secret */
    const char *child_log_level;
    int gateway_port, port_base, port_count;
    int ready_timeout_ms, check_interval_ms, check_timeout_ms, check_failures;
    int64_t backoff_base_ms, backoff_cap_ms, backoff_reset_ms;
    int crash_loop_restarts;
    int64_t crash_loop_window_ms, drain_timeout_ms, stop_timeout_ms;
    int64_t scale_interval_ms;

    struct rand rng;
    struct http_server *server;
    pthread_t thread;
    atomic_bool stop;     /* any thread: set once to end */
    atomic_bool ready;    /* any thread: every role started once */
    atomic_bool stopping; /* read by any thread */
    int exit_code;

    pthread_mutex_t lock; /* guards status_text */
    char *status_text;    /* any thread, under lock: /status's body */

    json_t *pools; /* the gateway's last /admin/pools "pools", or NULL */
    int64_t pools_ms, next_pools_ms, next_scale_ms;
    bool registry_dirty;
    long long registry_size; /* of the last file written */

    struct up_decision decisions[UP_DECISIONS_MAX];
    size_t ndecisions, next_decision;
};

/* Monotonic milliseconds. */
int64_t up_now_ms(void);

/* supervise.c */
struct up_instance *up_instance_add(struct up *up, struct up_role *r,
                                    int64_t now_ms);
void up_reap(struct up *up, int64_t now_ms);
/* Chooses the ports of every role's first instances before any starts, so
 * that booking is told where the catalog will be. */
int up_ports_reserve(struct up *up);
void up_instance_tick(struct up *up, struct up_instance *in, int64_t now_ms);
void up_instance_retire(struct up *up, struct up_instance *in, int64_t now_ms);
void up_instance_stop(struct up *up, struct up_instance *in, int64_t now_ms);
bool up_in_registry(const struct up_instance *in);
int up_registry_write(struct up *up);
int up_routes_write(struct up *up);
void up_pools_poll(struct up *up, int64_t now_ms);
struct up_role *up_role_find(struct up *up, const char *name);
int up_role_count(const struct up_role *r); /* instances that count */
const char *up_state_name(enum up_state s);

/* scale.c */
void up_scale_tick(struct up *up, int64_t now_ms);
void up_status_render(struct up *up, int64_t now_ms);

#endif
