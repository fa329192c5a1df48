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
};

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
    int64_t start_ns; /* monotonic, for the duration histogram */
    int status;
    bool answered;
    bool deferred;
};

/* route.c */
int http_route_compile(struct http_route_compiled *out,
                       const struct http_route *in);
void http_route_free(struct http_route_compiled *r);
/* True when the path matches the pattern; fills params (pool copies). */
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

/* respond.c */
void http_respond_iovec(struct http_req *req, int status,
                        const char *content_type, h2o_iovec_t body);
const char *http_reason(int status);
void http_respond_not_modified(struct http_req *req);

#endif
