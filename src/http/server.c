/*
 * server.c - the event-loop threads: listening, accepting, dispatching to
 * routes, deferred answers, and graceful shutdown.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "http/internal.h"

/* Listen backlog: connections past max_connections wait here. */
#define HTTP_LISTEN_BACKLOG 1024
/* Longest a stopping loop sleeps before re-checking its deadline. */
#define HTTP_STOP_POLL_MS 50

struct http_async {
    h2o_multithread_message_t msg; /* first: received as a message */
    struct http_thread *thread;
    struct http_req *req; /* NULL once the client is gone */
    void (*fn)(struct http_req *req, void *arg);
    void *arg;
};

void http_server_config_from(struct http_server_config *out,
                             const struct config *cfg, const char *name)
{
    memset(out, 0, sizeof(*out));
    out->name = name;
    out->host = config_str(cfg, "http.host");
    out->port = (int)config_int(cfg, "http.port");
    out->threads = (int)config_int(cfg, "http.threads");
    out->max_connections = (int)config_int(cfg, "http.max_connections");
    out->max_body_bytes = (size_t)config_int(cfg, "http.max_body_bytes");
    out->max_header_bytes = (size_t)config_int(cfg, "http.max_header_bytes");
    out->request_timeout_ms = (int)config_int(cfg, "http.request_timeout_ms");
    out->shutdown_timeout_ms = (int)config_int(cfg, "http.shutdown_timeout_ms");
    out->access_log = config_bool(cfg, "http.access_log");
    out->faults = config_bool(cfg, "http.faults");
    out->gateway_secret = config_str(cfg, "http.gateway_secret");
}

/* --- requests ---------------------------------------------------------- */

static void on_req_dispose(void *p)
{
    struct http_req *req = p;
    struct http_thread *t = req->thread;

    assert(t->inflight > 0);
    t->inflight--;
    atomic_fetch_sub(&t->server->work, 1);
    http_metrics_request_end(req);
    if (req->async != NULL)
        req->async->req = NULL;
    if (req->delay != NULL)
        http_timer_cancel(req->delay);
    json_decref(req->json);
    if (t->server->cfg.access_log && log_enabled(LOG_DEBUG))
        log_debug("http",
                  "request method=%.*s path=%s status=%d ms=%llu "
                  "id=%s",
                  (int)req->h2o->method.len, req->h2o->method.base, req->path,
                  req->status,
                  (unsigned long long)(http_mono_ms() - req->start_ms),
                  req->request_id);
}

static bool request_id_ok(h2o_iovec_t v)
{
    if (v.len == 0 || v.len > HTTP_REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        char c = v.base[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

static void set_request_id(struct http_req *req)
{
    h2o_req_t *h = req->h2o;
    ssize_t i =
        h2o_find_header_by_str(&h->headers, H2O_STRLIT("x-request-id"), -1);

    if (i >= 0 && request_id_ok(h->headers.entries[i].value)) {
        h2o_iovec_t v = h->headers.entries[i].value;
        memcpy(req->request_id, v.base, v.len);
        req->request_id[v.len] = '\0';
    } else {
        static const char hex[] = "0123456789abcdef";
        uint64_t r = rand_next(&req->thread->rng);

        /* 16 hex digits, as "%016llx" would, made for every request. */
        for (int k = 15; k >= 0; k--, r >>= 4)
            req->request_id[k] = hex[r & 0xf];
        req->request_id[16] = '\0';
    }
    h2o_add_header_by_str(&h->pool, &h->res.headers, H2O_STRLIT("x-request-id"),
                          0, "X-Request-Id", req->request_id,
                          strlen(req->request_id));
}

static bool method_is(const struct http_route_compiled *r, h2o_iovec_t m)
{
    /* HEAD is served by the GET route; the body is left out when sent. */
    if (h2o_memis(m.base, m.len, H2O_STRLIT("HEAD")))
        return strcmp(r->method, "GET") == 0;
    return strlen(r->method) == m.len && memcmp(r->method, m.base, m.len) == 0;
}

static void answer_unrouted(struct http_req *req, const char *allow)
{
    if (allow[0] == '\0') {
        http_respond_problem(req, 404, "not-found", "Not found",
                             "no route for %s", req->path);
        return;
    }
    http_set_header(req, "Allow", allow);
    http_respond_problem(req, 405, "method-not-allowed", "Method not allowed",
                         "%s allows %s", req->path, allow);
}

static int on_req(h2o_handler_t *self, h2o_req_t *h)
{
    struct http_thread *t = (struct http_thread *)h->conn->ctx;
    struct http_server *s = t->server;
    struct http_req *req;

    (void)self;
    req = h2o_mem_alloc_shared(&h->pool, sizeof(*req), on_req_dispose);
    memset(req, 0, sizeof(*req));
    req->h2o = h;
    req->thread = t;
    req->start_ms = http_mono_ms();
    http_metrics_request_start(req);
    t->inflight++;
    atomic_fetch_add(&s->work, 1);
    if (t->stopping)
        h->http1_is_persistent = 0;

    char *path = h2o_mem_alloc_pool(&h->pool, h->path_normalized.len + 1);
    memcpy(path, h->path_normalized.base, h->path_normalized.len);
    path[h->path_normalized.len] = '\0';
    req->path = path;
    set_request_id(req);

    size_t header_bytes = 0;
    for (size_t i = 0; i < h->headers.size; i++)
        header_bytes += h->headers.entries[i].name->len +
                        h->headers.entries[i].value.len + 4;
    if (header_bytes > s->cfg.max_header_bytes) {
        h->http1_is_persistent = 0;
        http_respond_problem(req, 431, "headers-too-large",
                             "Request header fields too large",
                             "the request's headers take %zu bytes; at most "
                             "%zu are accepted",
                             header_bytes, s->cfg.max_header_bytes);
        return 0;
    }

    http_dispatch(req);
    return 0;
}

void http_route_run(struct http_req *req)
{
    struct http_server *s = req->thread->server;
    h2o_req_t *h = req->h2o;
    char allow[64] = "";
    struct http_path path;

    http_path_split(&path, req->path, h->path_normalized.len);
    for (size_t i = 0; i < s->nroutes; i++) {
        const struct http_route_compiled *r = &s->routes[i];

        if (!http_route_match_path(r, &path, NULL, NULL))
            continue;
        if (!method_is(r, h->method)) {
            size_t n = strlen(allow);
            snprintf(allow + n, sizeof(allow) - n, "%s%s", n ? ", " : "",
                     r->method);
            continue;
        }
        http_route_match_path(r, &path, &h->pool, req->params);
        req->route = r;
        r->fn(req, s->cfg.app);
        assert(http_req_answered(req) && "handler neither answered nor "
                                         "deferred");
        return;
    }
    answer_unrouted(req, allow);
}

static void handle_healthz(struct http_req *req, void *app)
{
    (void)app;
    http_respond_json(req, 200, json_pack("{s:s}", "status", "alive"));
}

static void handle_readyz(struct http_req *req, void *app)
{
    struct http_server *s = req->thread->server;

    if (req->thread->stopping) {
        http_respond_unavailable(req, 1, "the service is shutting down");
        return;
    }
    if (s->cfg.ready != NULL && !s->cfg.ready(app)) {
        http_respond_unavailable(req, 1, "the service is not ready");
        return;
    }
    http_respond_json(req, 200, json_pack("{s:s}", "status", "ready"));
}

/* --- deferred answers -------------------------------------------------- */

/*
 * The client's socket while its request is deferred.
 *
 * h2o's HTTP/1 connection stops reading once it has a request and starts
 * again once the answer is written: the request's fields point into the
 * socket's input buffer, which more reading could move.  For an answer
 * given in the same turn of the loop that costs nothing, but a deferred
 * answer (a proxied call, a worker's write) comes in a later turn, and the
 * stop and the start each become an epoll_ctl(2): about 8% of the
 * gateway's CPU time per proxied request, measured with perf.
 *
 * So a deferred request's socket is watched instead: reading stays on, as
 * the kernel's epoll set has it, with h2o_socket_dont_read() so that h2o
 * only tells us the socket is readable and reads nothing.  Just before the
 * answer, reading is stopped as h2o had it; h2o starts it again in the
 * same turn once the answer is written, and the epoll set never changes.
 * Should the client send anything (pipelined bytes, its FIN) while the
 * request is out, watching ends at once and h2o's own way takes over: the
 * bytes wait in the kernel until h2o reads them after the answer.
 */
static void on_deferred_readable(h2o_socket_t *sock, const char *err)
{
    (void)err; /* nothing was read: h2o reads, and sees errors, later */
    h2o_socket_dont_read(sock, 0);
    h2o_socket_read_stop(sock);
}

static void watch_start(struct http_req *req)
{
    h2o_req_t *h = req->h2o;
    h2o_socket_t *sock;

    /* Only HTTP/1 stops reading per request (HTTP/2 always reads). */
    if (h->version >= 0x200 || h->conn->callbacks->get_socket == NULL)
        return;
    sock = h->conn->callbacks->get_socket(h->conn);
    if (sock == NULL || h2o_socket_is_reading(sock))
        return;
    h2o_socket_dont_read(sock, 1);
    h2o_socket_read_start(sock, on_deferred_readable);
    req->watched = sock;
}

/* Puts the socket back as h2o left it: not reading, reading enabled. */
static void watch_stop(struct http_req *req)
{
    h2o_socket_t *sock = req->watched;

    req->watched = NULL;
    if (sock != NULL && h2o_socket_is_reading(sock))
        on_deferred_readable(sock, NULL);
}

struct http_async *http_req_defer(struct http_req *req)
{
    struct http_async *a = calloc(1, sizeof(*a));

    assert(a != NULL && "out of memory deferring a request");
    assert(!req->answered && !req->deferred);
    a->thread = req->thread;
    a->req = req;
    req->async = a;
    req->deferred = true;
    watch_start(req);
    /* Counted apart from requests: the client may leave before we answer. */
    req->thread->inflight++;
    atomic_fetch_add(&req->thread->server->work, 1);
    return a;
}

/* The loop thread the caller runs on, or NULL on any other thread. */
static _Thread_local struct http_thread *current_thread;

bool http_server_on_thread(const struct http_server *s, int thread)
{
    return current_thread != NULL && current_thread->server == s &&
           current_thread->index == thread;
}

static void async_deliver(struct http_async *a)
{
    struct http_req *req = a->req;

    if (req != NULL) {
        req->async = NULL;
        req->deferred = false;
        watch_stop(req);
    }
    a->fn(req, a->arg);
    if (req != NULL)
        assert(req->answered && "deferred request left unanswered");
    a->thread->inflight--;
    atomic_fetch_sub(&a->thread->server->work, 1);
    free(a);
}

void http_async_post(struct http_async *a,
                     void (*fn)(struct http_req *req, void *arg), void *arg)
{
    a->fn = fn;
    a->arg = arg;
    /* Already on the request's thread: answer now, no queue round trip. */
    if (current_thread == a->thread) {
        async_deliver(a);
        return;
    }
    h2o_multithread_send_message(&a->thread->async_receiver, &a->msg);
}

static void on_async_messages(h2o_multithread_receiver_t *receiver,
                              h2o_linklist_t *messages)
{
    (void)receiver;
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *m = H2O_STRUCT_FROM_MEMBER(
            h2o_multithread_message_t, link, messages->next);

        h2o_linklist_unlink(&m->link);
        async_deliver((struct http_async *)m);
    }
}

/* --- tasks for another loop thread -------------------------------------- */

struct http_task {
    h2o_multithread_message_t msg; /* first: received as a message */
    void (*fn)(void *thread_data, void *arg);
    void *arg;
    struct http_task *next_early; /* posted before the thread was set up */
};

bool http_server_post(struct http_server *s, int thread,
                      void (*fn)(void *thread_data, void *arg), void *arg)
{
    struct http_thread *t = &s->threads[thread];
    struct http_task *task;

    assert(thread >= 0 && thread < s->nthreads);
    task = calloc(1, sizeof(*task));
    assert(task != NULL && "out of memory posting a task");
    task->fn = fn;
    task->arg = arg;
    pthread_mutex_lock(&t->task_lock);
    if (t->tasks_closed) {
        pthread_mutex_unlock(&t->task_lock);
        free(task);
        return false;
    }
    atomic_fetch_add(&s->work, 1);
    if (t->tasks_ready) {
        h2o_multithread_send_message(&t->task_receiver, &task->msg);
    } else {
        /* The thread has no queue yet: it sends these to itself once set
         * up, in the order they came. */
        struct http_task **p = &t->early_tasks;
        while (*p != NULL)
            p = &(*p)->next_early;
        *p = task;
    }
    pthread_mutex_unlock(&t->task_lock);
    return true;
}

/* On the loop thread, once its queue exists: opens it to posters. */
static void tasks_open(struct http_thread *t)
{
    pthread_mutex_lock(&t->task_lock);
    t->tasks_ready = true;
    while (t->early_tasks != NULL) {
        struct http_task *task = t->early_tasks;
        t->early_tasks = task->next_early;
        h2o_multithread_send_message(&t->task_receiver, &task->msg);
    }
    pthread_mutex_unlock(&t->task_lock);
}

static void on_task_messages(h2o_multithread_receiver_t *receiver,
                             h2o_linklist_t *messages)
{
    struct http_thread *t =
        H2O_STRUCT_FROM_MEMBER(struct http_thread, task_receiver, receiver);

    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *m = H2O_STRUCT_FROM_MEMBER(
            h2o_multithread_message_t, link, messages->next);
        struct http_task *task = (struct http_task *)m;

        h2o_linklist_unlink(&m->link);
        task->fn(t->data, task->arg);
        free(task);
        atomic_fetch_sub(&t->server->work, 1);
    }
}

void http_server_hold(struct http_server *s)
{
    atomic_fetch_add(&s->work, 1);
}

void http_server_release(struct http_server *s)
{
    long before = (long)atomic_fetch_sub(&s->work, 1);

    assert(before > 0);
    (void)before;
}

int http_server_threads(const struct http_server *s)
{
    return s->nthreads;
}

struct http_server *http_req_server(struct http_req *req)
{
    return req->thread->server;
}

int http_req_thread_index(struct http_req *req)
{
    return req->thread->index;
}

/* --- connections ------------------------------------------------------- */

static void on_accept(h2o_socket_t *listener, const char *err);

static void on_conn_close(void *data)
{
    struct http_conn *c = data;
    struct http_thread *t = c->thread;

    h2o_linklist_unlink(&c->link);
    free(c);
    t->nconns--;
    metrics_gauge_add(t->server->connections, -1);
    if (t->accept_paused && !t->stopping && t->nconns < t->max_conns) {
        t->accept_paused = false;
        h2o_socket_read_start(t->listener, on_accept);
    }
}

static void accept_one(struct http_thread *t, int fd)
{
    struct http_conn *c = calloc(1, sizeof(*c));
    int one = 1;

    if (c == NULL) {
        log_error("http", "accept_nomem fd=%d", fd);
        close(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    h2o_socket_t *sock = h2o_evloop_socket_create(t->ctx.loop, fd, 0);
    c->thread = t;
    c->fd = fd;
    h2o_linklist_insert(&t->conns, &c->link);
    t->nconns++;
    metrics_gauge_add(t->server->connections, 1);
    sock->on_close.cb = on_conn_close;
    sock->on_close.data = c;
    h2o_accept(&t->accept_ctx, sock);
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    struct http_thread *t = listener->data;

    if (err != NULL)
        return;
    for (int i = 0; i < HTTP_ACCEPT_BATCH; i++) {
        if (t->nconns >= t->max_conns) {
            /* Leave the rest in the backlog until a connection closes. */
            h2o_socket_read_stop(listener);
            t->accept_paused = true;
            return;
        }
        int fd =
            accept4(t->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                log_warn("http", "accept_failed errno=%d (%s)", errno,
                         strerror(errno));
            return;
        }
        accept_one(t, fd);
    }
}

static int listen_on(const char *host, int port, int *out_fd)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai;
    char portstr[8];
    int one = 1, fd, rc;

    snprintf(portstr, sizeof(portstr), "%d", port);
    if ((rc = getaddrinfo(host, portstr, &hints, &ai)) != 0) {
        log_error("http", "resolve_failed host=%s error=\"%s\"", host,
                  gai_strerror(rc));
        return ERR_CONFIG;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto out_errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        listen(fd, HTTP_LISTEN_BACKLOG) != 0)
        goto out_close;
    freeaddrinfo(ai);
    *out_fd = fd;
    return ERR_OK;

out_close:
    close(fd);
out_errno:
    log_error("http", "listen_failed host=%s port=%d errno=%d (%s)", host, port,
              errno, strerror(errno));
    freeaddrinfo(ai);
    return ERR_SYS;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* --- threads and shutdown ---------------------------------------------- */

static void on_stop_message(h2o_multithread_receiver_t *receiver,
                            h2o_linklist_t *messages)
{
    struct http_thread *t =
        H2O_STRUCT_FROM_MEMBER(struct http_thread, stop_receiver, receiver);

    while (!h2o_linklist_is_empty(messages))
        h2o_linklist_unlink(messages->next);
    if (t->stopping)
        return;
    t->stopping = true;
    t->deadline_ms =
        h2o_now(t->ctx.loop) + (uint64_t)t->server->cfg.shutdown_timeout_ms;
    h2o_socket_read_stop(t->listener);
    h2o_socket_close(t->listener);
    t->listener = NULL;
    /* Not h2o_context_request_shutdown(): it only arms an HTTP/2 timer,
     * which is off here, and would keep the context from being freed.
     * Requests that arrive from now on close their connection instead. */
}

/* Idle keep-alive connections see EOF and close through h2o itself. */
static void close_remaining_conns(struct http_thread *t)
{
    for (h2o_linklist_t *l = t->conns.next; l != &t->conns; l = l->next) {
        struct http_conn *c = H2O_STRUCT_FROM_MEMBER(struct http_conn, link, l);
        shutdown(c->fd, SHUT_RDWR);
    }
    uint64_t until = h2o_now(t->ctx.loop) + HTTP_CLOSE_GRACE_MS;
    while (t->nconns > 0 && h2o_now(t->ctx.loop) < until)
        h2o_evloop_run(t->ctx.loop, HTTP_STOP_POLL_MS);
}

/*
 * Work of one thread may finish on another (a task posted to the owner of
 * a show, whose answer comes back), so a stopping thread keeps running
 * until the whole server has no work left, not only itself.  Then it
 * closes its task queue: a later post is refused and answered 503.
 */
static void run_loop(struct http_thread *t)
{
    struct http_server *s = t->server;
    h2o_evloop_t *loop = t->ctx.loop;

    while (!t->stopping)
        h2o_evloop_run(loop, INT32_MAX);
    while (atomic_load(&s->work) > 0 && h2o_now(loop) < t->deadline_ms)
        h2o_evloop_run(loop, HTTP_STOP_POLL_MS);
    /* Work that came after the count reached zero (a request on another
     * thread's keep-alive connection) is not cut off: only the deadline
     * cuts. */
    long left = (long)atomic_load(&s->work);
    if (left > 0 && h2o_now(loop) >= t->deadline_ms) {
        log_warn("http", "shutdown_deadline thread=%d work_left=%ld", t->index,
                 left);
        atomic_store(&s->cut_off, 1);
    }

    pthread_mutex_lock(&t->task_lock);
    t->tasks_closed = true;
    pthread_mutex_unlock(&t->task_lock);
    h2o_evloop_run(loop, 0); /* tasks queued just before the close */
    /* Upstream calls still in flight end, and their callers learn it;
     * what those callers would start (a timer, another call) is refused,
     * so nothing is left waiting on a loop that no longer runs. */
    http_timers_refuse(t);
    http_upstream_thread_stop(t);
    http_timers_stop(t);
    close_remaining_conns(t);
}

/* Frees the thread's h2o state; only valid with no connection left. */
static void thread_dispose(struct http_thread *t)
{
    h2o_evloop_t *loop = t->ctx.loop;

    if (t->listener != NULL) {
        h2o_socket_close(t->listener);
        t->listener = NULL;
    }
    if (t->tick_armed) {
        h2o_timeout_unlink(&t->tick_entry);
        h2o_timeout_dispose(loop, &t->tick_timeout);
        t->tick_armed = false;
    }
    http_metrics_lag_stop(t);
    h2o_multithread_unregister_receiver(t->queue, &t->async_receiver);
    h2o_multithread_unregister_receiver(t->queue, &t->stop_receiver);
    h2o_multithread_unregister_receiver(t->queue, &t->task_receiver);
    pthread_mutex_destroy(&t->task_lock);
    /* h2o 2.2.5's evloop build destroys a queue without freeing it, the
     * context's own queue included: free both here. */
    h2o_multithread_queue_t *ctx_queue = t->ctx.queue;
    h2o_multithread_destroy_queue(t->queue);
    free(t->queue);
    t->queue = NULL;
    h2o_context_dispose(&t->ctx);
    free(ctx_queue);
    /* Closed evloop sockets are freed by the loop's next turn. */
    h2o_evloop_run(loop, 0);
    h2o_evloop_destroy(loop);
}

static void thread_init(struct http_server *s, struct http_thread *t, int i,
                        int listen_fd)
{
    t->server = s;
    t->index = i;
    t->listen_fd = listen_fd;
    t->max_conns = (size_t)(s->cfg.max_connections / s->nthreads);
    if (t->max_conns == 0)
        t->max_conns = 1;
    h2o_linklist_init_anchor(&t->conns);
    rand_seed_secure(&t->rng);
    pthread_mutex_init(&t->task_lock, NULL);
}

/*
 * Makes the thread's loop, context, queue and sockets.  It must run on the
 * loop thread itself: h2o's sockets take their buffers from the creating
 * thread's allocator (thread-local, unlocked), so a socket made on another
 * thread would share that thread's free lists with this one.
 */
static void thread_setup(struct http_thread *t)
{
    struct http_server *s = t->server;

    h2o_context_init(&t->ctx, h2o_evloop_create(), &s->globalconf);
    t->accept_ctx.ctx = &t->ctx;
    t->accept_ctx.hosts = s->globalconf.hosts;
    t->queue = h2o_multithread_create_queue(t->ctx.loop);
    h2o_multithread_register_receiver(t->queue, &t->async_receiver,
                                      on_async_messages);
    h2o_multithread_register_receiver(t->queue, &t->stop_receiver,
                                      on_stop_message);
    h2o_multithread_register_receiver(t->queue, &t->task_receiver,
                                      on_task_messages);
    t->listener = h2o_evloop_socket_create(t->ctx.loop, t->listen_fd,
                                           H2O_SOCKET_FLAG_DONT_READ);
    t->listener->data = t;
    http_timers_setup(t);
    http_upstream_thread_setup(t);
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    struct http_thread *t =
        H2O_STRUCT_FROM_MEMBER(struct http_thread, tick_entry, entry);
    struct http_server *s = t->server;

    s->cfg.tick(s->cfg.app, t->data, t->index);
    h2o_timeout_link(t->ctx.loop, &t->tick_timeout, &t->tick_entry);
}

static void *thread_main(void *arg)
{
    struct http_thread *t = arg;
    struct http_server *s = t->server;

    thread_setup(t);
    current_thread = t;
    tasks_open(t);
    if (s->cfg.thread_start != NULL)
        t->data = s->cfg.thread_start(s->cfg.app, t->index);
    /* No thread takes requests (which may post tasks to the others)
     * before every thread can receive them. */
    pthread_barrier_wait(&s->ready);
    if (s->cfg.tick != NULL && s->cfg.tick_ms > 0) {
        h2o_timeout_init(t->ctx.loop, &t->tick_timeout,
                         (uint64_t)s->cfg.tick_ms);
        t->tick_entry.cb = on_tick;
        h2o_timeout_link(t->ctx.loop, &t->tick_timeout, &t->tick_entry);
        t->tick_armed = true;
    }
    http_metrics_lag_start(t);
    h2o_socket_read_start(t->listener, on_accept);
    run_loop(t);
    if (s->cfg.thread_stop != NULL)
        s->cfg.thread_stop(s->cfg.app, t->data);

    /* h2o can free a context only once every connection and deferred
     * answer is gone; otherwise the process exit reclaims it. */
    if (t->nconns == 0 && t->inflight == 0) {
        thread_dispose(t);
    } else {
        log_warn("http", "thread_left_busy thread=%d conns=%zu inflight=%llu",
                 t->index, t->nconns, (unsigned long long)t->inflight);
    }
    return NULL;
}

/*
 * h2o answers some errors itself before a handler runs (a body over
 * max_body_bytes is 413, a malformed request 400), in text/plain and on the
 * host's fallback path.  This filter sits on that path only and rewrites
 * those answers into problem documents, keeping h2o's text as the detail.
 */
struct problem_ostream {
    h2o_ostream_t super;
};

static const char *slug_for_status(int status)
{
    switch (status) {
    case 400: return "bad-request";
    case 408: return "request-timeout";
    case 413: return "payload-too-large";
    case 431: return "headers-too-large";
    default: return "http-error";
    }
}

static void problem_do_send(h2o_ostream_t *self, h2o_req_t *req,
                            h2o_iovec_t *bufs, size_t bufcnt,
                            h2o_send_state_t state)
{
    char detail[256] = "";
    size_t n = 0;

    for (size_t i = 0; i < bufcnt && n + 1 < sizeof(detail); i++) {
        size_t take = bufs[i].len;
        if (take > sizeof(detail) - 1 - n)
            take = sizeof(detail) - 1 - n;
        memcpy(detail + n, bufs[i].base, take);
        n += take;
    }
    detail[n] = '\0';

    char type[64];
    snprintf(type, sizeof(type), "/problems/%s",
             slug_for_status(req->res.status));
    json_t *doc =
        json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title",
                  req->res.reason, "status", req->res.status, "detail", detail);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    h2o_iovec_t body = h2o_strdup(&req->pool, text, strlen(text));
    free(text);

    req->res.content_length = body.len;
    h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE,
                   H2O_STRLIT("application/problem+json"), 1);
    h2o_ostream_send_next(self, req, &body, 1, state);
}

static void problem_setup_ostream(h2o_filter_t *self, h2o_req_t *req,
                                  h2o_ostream_t **slot)
{
    (void)self;
    if (req->res.status >= 400) {
        struct problem_ostream *o =
            (struct problem_ostream *)h2o_add_ostream(req, sizeof(*o), slot);
        o->super.do_send = problem_do_send;
        slot = &o->super.next;
    }
    h2o_setup_next_ostream(req, slot);
}

static int add_route(struct http_server *s, const struct http_route *r)
{
    if (s->nroutes == HTTP_ROUTES_MAX) {
        log_error("http", "too_many_routes max=%d", HTTP_ROUTES_MAX);
        return ERR_INVALID;
    }
    int rc = http_route_compile(&s->routes[s->nroutes], r);
    if (rc == ERR_OK)
        s->nroutes++;
    return rc;
}

static void configure_h2o(struct http_server *s)
{
    h2o_globalconf_t *g = &s->globalconf;

    h2o_config_init(g);
    g->server_name = h2o_iovec_init(H2O_STRLIT("marquee"));
    g->max_request_entity_size = s->cfg.max_body_bytes;
    g->http1.req_timeout = (uint64_t)s->cfg.request_timeout_ms;
    g->http1.upgrade_to_http2 = 0;
    h2o_hostconf_t *host = h2o_config_register_host(
        g, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(path, sizeof(*handler));
    handler->on_req = on_req;
    h2o_filter_t *filter =
        h2o_create_filter(&host->fallback_path, sizeof(*filter));
    filter->on_setup_ostream = problem_setup_ostream;
}

int http_server_create(const struct http_server_config *cfg,
                       const struct http_route *routes, size_t nroutes,
                       struct http_server **out)
{
    static const struct http_route builtin[] = {
        {"GET", "/healthz", handle_healthz},
        {"GET", "/readyz", handle_readyz},
        {"GET", "/metrics", http_handle_metrics},
    };
    static const struct http_route faults[] = {
        {"GET", HTTP_FAULTS_PATH, http_handle_faults_get},
        {"PUT", HTTP_FAULTS_PATH, http_handle_faults_put},
    };
    struct http_server *s = calloc(1, sizeof(*s));
    int rc = ERR_OK;

    if (s == NULL)
        return ERR_NOMEM;
    if (!http_gateway_secret_ok(cfg->gateway_secret)) {
        free(s);
        return ERR_CONFIG;
    }
    s->cfg = *cfg;
    pthread_mutex_init(&s->upstreams_lock, NULL);
    h2o_linklist_init_anchor(&s->upstreams);
    s->nthreads =
        cfg->threads > 0 ? cfg->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (s->nthreads < 1)
        s->nthreads = 1;
    if (s->nthreads > HTTP_THREADS_MAX)
        s->nthreads = HTTP_THREADS_MAX;

    for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]) && rc == ERR_OK;
         i++)
        rc = add_route(s, &builtin[i]);
    for (size_t i = 0; cfg->faults && i < 2 && rc == ERR_OK; i++)
        rc = add_route(s, &faults[i]);
    for (size_t i = 0; i < nroutes && rc == ERR_OK; i++)
        rc = add_route(s, &routes[i]);
    if (rc != ERR_OK)
        goto out_free;

    configure_h2o(s);
    http_metrics_setup(s);
    s->threads = calloc((size_t)s->nthreads, sizeof(*s->threads));
    if (s->threads == NULL) {
        rc = ERR_NOMEM;
        goto out_free;
    }
    /* The first bind picks the port when 0 is asked; the others join it. */
    s->port = cfg->port;
    for (int i = 0; i < s->nthreads; i++) {
        int fd;
        rc = listen_on(cfg->host, s->port, &fd);
        if (rc != ERR_OK) {
            s->nthreads = i;
            goto out_free;
        }
        if (i == 0)
            s->port = bound_port(fd);
        thread_init(s, &s->threads[i], i, fd);
    }
    *out = s;
    return ERR_OK;

out_free:
    http_server_free(s);
    return rc;
}

void http_block_stop_signals(void)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int http_server_run(struct http_server *s)
{
    sigset_t set;
    struct timespec poll = {0, 100 * 1000000};

    http_block_stop_signals();
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    /* The loop threads and this one: messages go out only once every
     * thread has its queue. */
    pthread_barrier_init(&s->ready, NULL, (unsigned)s->nthreads + 1);
    for (int i = 0; i < s->nthreads; i++) {
        s->threads[i].started = true;
        pthread_create(&s->threads[i].tid, NULL, thread_main, &s->threads[i]);
    }
    pthread_barrier_wait(&s->ready);
    log_info("http", "listening service=%s host=%s port=%d threads=%d",
             s->cfg.name, s->cfg.host, s->port, s->nthreads);

    while (!atomic_load(&s->stop_requested)) {
        int sig = sigtimedwait(&set, NULL, &poll);
        if (sig == SIGTERM || sig == SIGINT) {
            log_info("http", "stopping service=%s signal=%d deadline_ms=%d",
                     s->cfg.name, sig, s->cfg.shutdown_timeout_ms);
            break;
        }
    }
    for (int i = 0; i < s->nthreads; i++)
        h2o_multithread_send_message(&s->threads[i].stop_receiver,
                                     &s->threads[i].stop_message);
    for (int i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i].tid, NULL);
    pthread_barrier_destroy(&s->ready);

    int cut = atomic_load(&s->cut_off);
    log_info("http", "stopped service=%s cut_off=%d", s->cfg.name, cut);
    return cut == 0 ? ERR_OK : ERR_TIMEOUT;
}

void http_server_stop(struct http_server *s)
{
    atomic_store(&s->stop_requested, true);
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}

void http_server_free(struct http_server *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nroutes; i++)
        http_route_free(&s->routes[i]);
    if (s->threads != NULL)
        http_upstream_server_free(s);
    for (int i = 0; s->threads != NULL && i < s->nthreads; i++) {
        if (!s->threads[i].started) {
            while (s->threads[i].early_tasks != NULL) {
                struct http_task *task = s->threads[i].early_tasks;
                s->threads[i].early_tasks = task->next_early;
                free(task);
            }
            close(s->threads[i].listen_fd);
            pthread_mutex_destroy(&s->threads[i].task_lock);
            continue;
        }
        /* A thread that stopped busy keeps its h2o state (see thread_main):
         * it stays reachable until the process exits. */
        if (s->threads[i].queue != NULL)
            return;
    }
    for (int i = 0; s->threads != NULL && i < s->nthreads; i++)
        http_timers_free(&s->threads[i]);
    if (s->globalconf.hosts != NULL)
        h2o_config_dispose(&s->globalconf);
    pthread_mutex_destroy(&s->upstreams_lock);
    free(s->threads);
    free(s);
}
