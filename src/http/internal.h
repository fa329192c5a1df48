/*
 * internal.h - types shared by the files of src/http; h2o stays in here.
 */
#ifndef MARQUEE_HTTP_INTERNAL_H
#define MARQUEE_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#define H2O_USE_LIBUV 0
#define H2O_USE_EPOLL 1
#include <h2o.h>

#include "base/rand.h"
#include "http/http.h"
#include "metrics/metrics.h"

#define HTTP_SEGS_MAX       16   /* path segments per route pattern */
#define HTTP_CLOSE_GRACE_MS 1000 /* to close idle connections at stop */

struct http_task;
struct http_timer;
struct http_upstream_call;

/*
 * Timers (timer.c): a binary min-heap of deadlines per loop thread, woken
 * through h2o timeouts of fixed power-of-two durations.  h2o's timeouts
 * take one duration each; linking the one wake-up entry into the longest
 * bucket not past the earliest deadline, and again from there, reaches
 * any deadline in at most log2(delay) wake-ups with no per-timer h2o state.
 */
#define HTTP_TIMER_BUCKETS    27   /* 0 ms, then 2^0 .. 2^25 ms */
#define HTTP_TIMER_FIRE_BATCH 1024 /* timers run per wake-up at most */

struct http_timers {
    struct http_timer **heap;
    size_t n, cap;
    uint64_t seq; /* keeps timers due at the same ms in start order */
    h2o_timeout_t buckets[HTTP_TIMER_BUCKETS];
    h2o_timeout_entry_t waker;
    bool ready;  /* buckets exist: on the loop thread, before it stops */
    bool closed; /* the thread stopped: starts are refused */
};

/*
 * The upstream client's state of one loop thread (upstream.c): the idle
 * timeout of its pooled connections, and the calls in flight.
 */
struct http_upstream_thread {
    h2o_timeout_t idle_timeout; /* HTTP_UPSTREAM_IDLE_MS */
    h2o_linklist_t calls;
    bool ready;
    bool closed;
};

/* 1xx to 5xx: the code label of marquee_http_requests_total. */
#define HTTP_STATUS_CLASSES 5

/* The series one route's requests are counted in (observe.c). */
struct http_route_metrics {
    struct metrics_series *requests[HTTP_STATUS_CLASSES];
    struct metrics_series *duration;
};

struct http_route_compiled {
    char method[8];
    const char *segs[HTTP_SEGS_MAX]; /* NULL entries are {param} segments */
    size_t seg_lens[HTTP_SEGS_MAX];
    const char *param_names[HTTP_SEGS_MAX];
    size_t nsegs;
    http_handler_fn fn;
    char *storage; /* owned copy of the pattern the pointers point into */
    char *pattern; /* the pattern as given, for metrics labels */
    struct http_route_metrics metrics;
};

/* One accepted connection, tracked so the server can count and close it. */
struct http_conn {
    h2o_linklist_t link;
    struct http_thread *thread;
    int fd;
};

struct http_thread {
    h2o_context_t ctx; /* first: handlers find the thread from req->conn */
    struct http_server *server;
    int index;
    pthread_t tid;
    h2o_accept_ctx_t accept_ctx;
    int listen_fd;
    h2o_socket_t *listener;
    bool accept_paused;
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t async_receiver;
    h2o_multithread_receiver_t stop_receiver;
    h2o_multithread_receiver_t task_receiver;
    pthread_mutex_t task_lock; /* guards the three below against posters */
    bool tasks_ready;          /* queue set up on the loop thread */
    bool tasks_closed;         /* stopped: posts are refused */
    struct http_task *early_tasks;
    h2o_timeout_t tick_timeout;
    h2o_timeout_entry_t tick_entry;
    bool tick_armed;
    h2o_timeout_t lag_timeout; /* observe.c: the event-loop lag probe */
    h2o_timeout_entry_t lag_entry;
    bool lag_armed;
    int64_t lag_due_ns, lag_window_start_ns, lag_window_max_ns;
    struct metrics_series *lag;
    h2o_multithread_message_t stop_message;
    h2o_linklist_t conns;
    size_t nconns, max_conns;
    uint64_t inflight;
    bool started;
    bool stopping;
    uint64_t deadline_ms;
    void *data;
    struct rand rng;
    struct http_timers timers;
    struct http_upstream_thread upstream;
};

/*
 * The fault switch (faults.c), packed in one word so that every loop
 * thread reads a consistent set without a lock: status (10 bits),
 * delay_ms (16 bits), rate in millionths (20 bits).
 */
#define HTTP_FAULT_RATE_ONE  1000000
#define HTTP_FAULT_DELAY_MAX 60000
#define HTTP_FAULTS_PATH     "/internal/v1/faults"

struct http_server {
    struct http_server_config cfg;
    h2o_globalconf_t globalconf;
    struct http_route_compiled routes[HTTP_ROUTES_MAX];
    size_t nroutes;
    struct http_thread *threads;
    int nthreads;
    int port;
    pthread_barrier_t ready; /* every loop thread set up */
    atomic_bool stop_requested;
    atomic_int cut_off; /* set when work was abandoned at the deadline */
    /* Requests in flight, deferred answers, posted tasks and holds, over
     * all threads: shutdown waits for it to reach zero. */
    atomic_long work;
    struct http_route_metrics unmatched; /* requests no route took */
    struct metrics_series *inflight, *connections;
    atomic_uint_least64_t faults; /* packed, see HTTP_FAULT_* */
    /* Upstream instances made for this server (upstream.c): each loop
     * thread closes its pools of all of them when it stops. */
    pthread_mutex_t upstreams_lock;
    h2o_linklist_t upstreams;
};

struct http_req {
    h2o_req_t *h2o;
    struct http_thread *thread;
    const struct http_route_compiled *route;
    const char *params[HTTP_SEGS_MAX];
    const char *path;
    char request_id[HTTP_REQUEST_ID_MAX + 1];
    json_t *json; /* parsed body, released with the request */
    struct http_async *async;
    int64_t start_ms;
    int64_t start_ns;               /* monotonic, for the duration histogram */
    int64_t deadline_ms;            /* monotonic (http_loop_now_ms), 0: none */
    struct http_timer *delay;       /* an injected fault's delay, pending */
    struct http_header_kv *headers; /* http_req_headers(), made once */
    size_t nheaders;
    char *peer;
    int status;
    h2o_socket_t *watched; /* the client's socket while deferred */
    bool answered;
    bool deferred;
};

/* route.c */
int http_route_compile(struct http_route_compiled *out,
                       const struct http_route *in);
void http_route_free(struct http_route_compiled *r);
/*
 * A request path cut into its segments once, so that each route compares
 * lengths and bytes instead of scanning the path again.  usable is false
 * for a path no route can match: an empty segment ("//"), or more than
 * HTTP_SEGS_MAX of them.
 */
struct http_path {
    const char *seg[HTTP_SEGS_MAX];
    size_t len[HTTP_SEGS_MAX];
    size_t n;
    bool usable;
};

void http_path_split(struct http_path *out, const char *path, size_t len);
/* True when the path matches the pattern; fills params (pool copies). */
bool http_route_match_path(const struct http_route_compiled *r,
                           const struct http_path *path, h2o_mem_pool_t *pool,
                           const char **params);
/* The same, for a path not yet split. */
bool http_route_match(const struct http_route_compiled *r, h2o_mem_pool_t *pool,
                      const char *path, size_t len, const char **params);

/* observe.c */
int64_t http_now_ns(void);
void http_metrics_setup(struct http_server *s);
void http_metrics_request_start(struct http_req *req);
void http_metrics_request_end(struct http_req *req);
void http_handle_metrics(struct http_req *req, void *app);
void http_metrics_lag_start(struct http_thread *t);
void http_metrics_lag_stop(struct http_thread *t);

/* server.c: matches the request to a route and runs its handler (or
 * answers 404/405). */
void http_route_run(struct http_req *req);

/* timer.c */
int64_t http_mono_ms(void);
void http_timers_setup(struct http_thread *t);
void http_timers_refuse(struct http_thread *t);
void http_timers_stop(struct http_thread *t);
void http_timers_free(struct http_thread *t);

/* upstream.c */
void http_upstream_thread_setup(struct http_thread *t);
void http_upstream_thread_stop(struct http_thread *t);
void http_upstream_server_free(struct http_server *s);

/* faults.c: the fault switch, deadlines, and the dispatch they guard */
void http_dispatch(struct http_req *req);
void http_handle_faults_get(struct http_req *req, void *app);
void http_handle_faults_put(struct http_req *req, void *app);

/* respond.c */
void http_respond_iovec(struct http_req *req, int status,
                        const char *content_type, h2o_iovec_t body);
const char *http_reason(int status);
void http_respond_not_modified(struct http_req *req);

#endif
