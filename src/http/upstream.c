/*
 * upstream.c - the asynchronous HTTP/1.1 upstream client (upstream.h).
 *
 * A call is driven by h2o's http1client through three callbacks (connected,
 * head, body) and by one timer of our own for its current phase: to have a
 * connection, then to the first byte of the answer, then to the end of the
 * whole call.  h2o's own I/O timeout is set far beyond any of them, so
 * that every timeout a caller sees is one it asked for.
 *
 * Reuse.  Each instance has one h2o socketpool per loop thread, made on
 * that thread at its first call.  A pooled connection is handed over
 * synchronously, inside the connect call, and a new one only after the
 * kernel has connected; that is how a call knows that it got a reused
 * connection.  A reused connection that fails before any byte of an
 * answer is tried once more on a fresh, unpooled connection.  h2o 2.2's
 * socketpool ignores its capacity, so the number of idle connections is
 * bounded here: when a call completes and max_idle are idle already, its
 * connection is closed instead of returned.
 *
 * Life of an instance.  It lives while referenced and while any of its
 * per-thread pools is open, since a pool can only be closed on its own
 * thread: `life` counts one for the references plus one per open pool.
 * The last release posts a closing task to every thread; a thread that
 * has stopped taking tasks closes the pools of every instance itself as it
 * stops.  Whoever brings `life` to zero frees the instance.
 */
#include "http/upstream.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/log.h"
#include "http/internal.h"

/* h2o's own I/O timeout; ours always come first. */
#define UPSTREAM_IO_TIMEOUT_MS (HTTP_UPSTREAM_TIMEOUT_MAX_MS + 60000)
/* First allocation of a body of unknown length. */
#define UPSTREAM_BODY_START 4096

struct upstream_pool {
    h2o_socketpool_t sockpool;
    struct http_upstream *u;
    int index;
    bool ready;  /* initialized, on its thread */
    bool closed; /* disposed, or never to be used */
};

struct http_upstream {
    struct http_server *server;
    atomic_int refs;
    atomic_int life;     /* 1 while referenced, plus one per open pool */
    h2o_linklist_t link; /* server->upstreams, under upstreams_lock */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char host[INET6_ADDRSTRLEN];
    int port;
    char name[INET6_ADDRSTRLEN + 8]; /* "host:port", the Host header too */
    int max_idle;
    int npools;
    struct upstream_pool pools[];
};

enum call_phase {
    CALL_CONNECTING, /* no connection yet: nothing sent */
    CALL_WAITING,    /* request sent or being sent, no head yet */
    CALL_READING,    /* answer started */
    CALL_FINISHING,  /* a result waits for its 0 ms timer */
};

struct http_upstream_call {
    h2o_linklist_t link; /* the thread's calls in flight */
    struct http_upstream *u;
    struct http_thread *thread;
    struct upstream_pool *pool;
    h2o_http1client_t *client;
    struct http_timer *timer;
    http_upstream_done_fn done;
    void *arg;

    enum call_phase phase;
    int connect_ms, first_byte_ms;
    int64_t total_due_ms;
    size_t max_bytes;
    h2o_iovec_t request; /* head and body, malloc'd */
    bool head_method;

    bool starting;   /* inside an h2o connect call */
    bool pooled;     /* this attempt asked the pool */
    bool reused;     /* and got an idle connection */
    bool retried;    /* the one retry on a fresh connection is spent */
    bool first_byte; /* some byte of an answer arrived */
    bool pending;    /* a failure came while starting */
    enum http_upstream_result pending_result;

    int status;
    struct http_header_kv *headers;
    size_t nheaders;
    char *body;
    size_t body_len, body_cap;
};

/* --- metrics ------------------------------------------------------------- */

static const char *const result_names[HTTP_UPSTREAM_RESULTS] = {
    "ok", "connect", "timeout", "io", "toobig",
};

static struct metrics_series *result_series[HTTP_UPSTREAM_RESULTS];
static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;

static void metrics_setup(void)
{
    static const char *const labels[] = {"result"};
    struct metrics_family *f = metrics_family(
        metrics_process(), METRICS_COUNTER, "marquee_http_upstream_calls_total",
        "Upstream HTTP calls finished, by result (ok is any HTTP status).", 1,
        labels, NULL, 0);

    for (int i = 0; i < HTTP_UPSTREAM_RESULTS; i++) {
        const char *values[] = {result_names[i]};
        result_series[i] = metrics_series(f, values);
    }
}

const char *http_upstream_result_name(enum http_upstream_result r)
{
    if ((int)r < 0 || (int)r >= HTTP_UPSTREAM_RESULTS)
        return "unknown";
    return result_names[r];
}

/* --- instances ----------------------------------------------------------- */

static int parse_host(const char *host, int port, struct http_upstream *u)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&u->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&u->addr;

    if (strlen(host) >= sizeof(u->host))
        return ERR_INVALID;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        u->addrlen = sizeof(*sin);
        snprintf(u->name, sizeof(u->name), "%s:%d", host, port);
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        u->addrlen = sizeof(*sin6);
        snprintf(u->name, sizeof(u->name), "[%s]:%d", host, port);
    } else {
        return ERR_INVALID;
    }
    snprintf(u->host, sizeof(u->host), "%s", host);
    u->port = port;
    return ERR_OK;
}

int http_upstream_create(struct http_server *s, const char *host, int port,
                         int max_idle, struct http_upstream **out)
{
    struct http_upstream *u;
    int n = s->nthreads;

    *out = NULL;
    if (host == NULL || port < 1 || port > 65535 || max_idle < 1 ||
        max_idle > HTTP_UPSTREAM_IDLE_MAX)
        return ERR_INVALID;
    u = calloc(1, sizeof(*u) + (size_t)n * sizeof(u->pools[0]));
    if (u == NULL)
        return ERR_NOMEM;
    if (parse_host(host, port, u) != ERR_OK) {
        log_warn("http", "upstream_bad_host host=%.64s", host);
        free(u);
        return ERR_INVALID;
    }
    pthread_once(&metrics_once, metrics_setup);
    u->server = s;
    u->max_idle = max_idle;
    u->npools = n;
    atomic_init(&u->refs, 1);
    atomic_init(&u->life, n + 1);
    for (int i = 0; i < n; i++) {
        u->pools[i].u = u;
        u->pools[i].index = i;
    }

    /* Threads that have stopped will never open, nor close, a pool. */
    pthread_mutex_lock(&s->upstreams_lock);
    for (int i = 0; i < n; i++) {
        if (s->threads[i].upstream.closed) {
            u->pools[i].closed = true;
            atomic_fetch_sub(&u->life, 1);
        }
    }
    h2o_linklist_insert(&s->upstreams, &u->link);
    pthread_mutex_unlock(&s->upstreams_lock);
    *out = u;
    return ERR_OK;
}

const char *http_upstream_name(const struct http_upstream *u)
{
    return u->name;
}

void http_upstream_retain(struct http_upstream *u)
{
    int before = atomic_fetch_add(&u->refs, 1);

    assert(before > 0 && "retain of a released upstream");
    (void)before;
}

/* Frees an instance whose life has ended; the caller holds the lock or
 * not, as `locked` says. */
static void upstream_destroy(struct http_upstream *u, bool locked)
{
    struct http_server *s = u->server;

    if (!locked)
        pthread_mutex_lock(&s->upstreams_lock);
    h2o_linklist_unlink(&u->link);
    if (!locked)
        pthread_mutex_unlock(&s->upstreams_lock);
    free(u);
}

/* On the pool's thread.  True when this ended the instance's life. */
static bool pool_close(struct upstream_pool *p)
{
    if (p->closed)
        return false;
    if (p->ready)
        h2o_socketpool_dispose(&p->sockpool);
    p->ready = false;
    p->closed = true;
    return atomic_fetch_sub(&p->u->life, 1) == 1;
}

static void pool_close_task(void *thread_data, void *arg)
{
    struct upstream_pool *p = arg;

    (void)thread_data;
    if (pool_close(p))
        upstream_destroy(p->u, false);
}

void http_upstream_release(struct http_upstream *u)
{
    int before = atomic_fetch_sub(&u->refs, 1);

    assert(before > 0 && "upstream released too often");
    if (before != 1)
        return;
    /* A refused post means the thread has stopped: it closes its pools
     * itself (http_upstream_thread_stop). */
    for (int i = 0; i < u->npools; i++)
        http_server_post(u->server, i, pool_close_task, &u->pools[i]);
    if (atomic_fetch_sub(&u->life, 1) == 1)
        upstream_destroy(u, false);
}

/* On the pool's thread, at its first call. */
static struct upstream_pool *pool_open(struct http_upstream *u,
                                       struct http_thread *t)
{
    struct upstream_pool *p = &u->pools[t->index];

    if (p->closed)
        return NULL;
    if (!p->ready) {
        h2o_socketpool_init_by_address(&p->sockpool,
                                       (struct sockaddr *)&u->addr, u->addrlen,
                                       0, (size_t)u->max_idle);
        h2o_socketpool_set_timeout(&p->sockpool, t->ctx.loop,
                                   HTTP_UPSTREAM_IDLE_MS);
        p->ready = true;
    }
    return p;
}

/* Idle connections in a pool now (at most HTTP_UPSTREAM_IDLE_MAX + 1). */
static size_t pool_idle(h2o_socketpool_t *sp)
{
    size_t n = 0;

    pthread_mutex_lock(&sp->_shared.mutex);
    for (h2o_linklist_t *l = sp->_shared.sockets.next;
         l != &sp->_shared.sockets; l = l->next)
        n++;
    pthread_mutex_unlock(&sp->_shared.mutex);
    return n;
}

/* --- the request bytes --------------------------------------------------- */

static bool name_is(const char *name, size_t len, const char *lit)
{
    return strlen(lit) == len && strncasecmp(name, lit, len) == 0;
}

/* Fields the client writes itself, or that could split the request. */
static bool header_skipped(const struct http_header_kv *h)
{
    if (h->name_len == 0)
        return true;
    for (size_t i = 0; i < h->name_len; i++) {
        unsigned char c = (unsigned char)h->name[i];
        if (c <= ' ' || c == ':' || c >= 0x7f)
            return true;
    }
    for (size_t i = 0; i < h->value_len; i++) {
        char c = h->value[i];
        if (c == '\r' || c == '\n' || c == '\0')
            return true;
    }
    return name_is(h->name, h->name_len, "host") ||
           name_is(h->name, h->name_len, "content-length") ||
           name_is(h->name, h->name_len, "connection") ||
           name_is(h->name, h->name_len, "keep-alive") ||
           name_is(h->name, h->name_len, "transfer-encoding");
}

static bool method_has_body(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
           strcmp(m, "PATCH") == 0;
}

static void check_request(const struct http_upstream_request *rq)
{
    assert(rq->method != NULL && rq->method[0] != '\0');
    for (const char *p = rq->method; *p != '\0'; p++)
        assert(*p >= 'A' && *p <= 'Z' && "method must be upper-case letters");
    assert(rq->target != NULL && rq->target[0] == '/');
    for (const char *p = rq->target; *p != '\0'; p++)
        assert((unsigned char)*p > ' ' && *p != 0x7f &&
               "target with a space or control character");
    assert(rq->body_len == 0 || rq->body != NULL);
}

/* The whole request in one buffer, or a NULL base when out of memory. */
static h2o_iovec_t build_request(const struct http_upstream *u,
                                 const struct http_upstream_request *rq)
{
    bool length = rq->body_len > 0 || method_has_body(rq->method);
    char cl[48] = "";
    size_t size, n = 0;
    char *buf;

    if (length)
        snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", rq->body_len);
    size = strlen(rq->method) + 1 + strlen(rq->target) +
           sizeof(" HTTP/1.1\r\nHost: \r\n") - 1 + strlen(u->name) +
           strlen(cl) + sizeof("Connection: keep-alive\r\n") - 1 + 2 +
           rq->body_len;
    for (size_t i = 0; i < rq->nheaders; i++)
        if (!header_skipped(&rq->headers[i]))
            size += rq->headers[i].name_len + rq->headers[i].value_len + 4;
    buf = malloc(size + 1);
    if (buf == NULL)
        return h2o_iovec_init(NULL, 0);

    n += (size_t)snprintf(buf + n, size + 1 - n,
                          "%s %s HTTP/1.1\r\nHost: %s\r\n%s"
                          "Connection: keep-alive\r\n",
                          rq->method, rq->target, u->name, cl);
    for (size_t i = 0; i < rq->nheaders; i++) {
        const struct http_header_kv *h = &rq->headers[i];
        if (header_skipped(h))
            continue;
        memcpy(buf + n, h->name, h->name_len);
        n += h->name_len;
        memcpy(buf + n, ": ", 2);
        n += 2;
        memcpy(buf + n, h->value, h->value_len);
        n += h->value_len;
        memcpy(buf + n, "\r\n", 2);
        n += 2;
    }
    memcpy(buf + n, "\r\n", 2);
    n += 2;
    if (rq->body_len > 0)
        memcpy(buf + n, rq->body, rq->body_len);
    n += rq->body_len;
    assert(n == size);
    return h2o_iovec_init(buf, n);
}

/* --- finishing a call ---------------------------------------------------- */

static void call_free(struct http_upstream_call *c)
{
    if (c->timer != NULL)
        http_timer_cancel(c->timer);
    if (h2o_linklist_is_linked(&c->link))
        h2o_linklist_unlink(&c->link);
    free(c->request.base);
    free(c->headers);
    free(c->body);
    http_upstream_release(c->u);
    free(c);
}

/* Ends the call: its client is gone or going (h2o closes it after the
 * callback we are in), and done runs last. */
static void call_finish(struct http_upstream_call *c,
                        enum http_upstream_result result, bool with_response)
{
    struct http_upstream_response resp = {0};
    http_upstream_done_fn done = c->done;
    void *arg = c->arg;
    bool first_byte = c->first_byte;

    c->client = NULL;
    if (c->timer != NULL) {
        http_timer_cancel(c->timer);
        c->timer = NULL;
    }
    h2o_linklist_unlink(&c->link);
    metrics_inc(result_series[result]);
    if (with_response) {
        resp.status = c->status;
        resp.headers = c->headers;
        resp.nheaders = c->nheaders;
        resp.body = c->body != NULL ? c->body : "";
        resp.body_len = c->body_len;
    }
    done(arg, result, with_response ? &resp : NULL, first_byte);
    call_free(c);
}

/* Our own code closes h2o's client (a timeout, a cancel). */
static void call_abort_client(struct http_upstream_call *c)
{
    if (c->client != NULL) {
        h2o_http1client_cancel(c->client);
        c->client = NULL;
    }
}

static void on_call_timer(void *arg);

static bool call_arm(struct http_upstream_call *c, int64_t due_ms)
{
    int64_t now = http_mono_ms();

    if (c->timer != NULL)
        http_timer_cancel(c->timer);
    c->timer = http_timer_start(c->thread->server, c->thread->index,
                                due_ms > now ? (int)(due_ms - now) : 0,
                                on_call_timer, c);
    return c->timer != NULL;
}

static int64_t phase_due(const struct http_upstream_call *c, int ms)
{
    int64_t due = http_mono_ms() + ms;

    return due < c->total_due_ms ? due : c->total_due_ms;
}

/* A failure reported while h2o is still inside our connect call: it is
 * finished once that call has returned. */
static void call_fail(struct http_upstream_call *c,
                      enum http_upstream_result result)
{
    if (c->starting) {
        c->client = NULL;
        c->pending = true;
        c->pending_result = result;
        return;
    }
    call_finish(c, result, false);
}

static bool input_has_bytes(const h2o_http1client_t *client)
{
    return client != NULL && client->sock != NULL &&
           client->sock->input != NULL && client->sock->input->size > 0;
}

static void on_call_timer(void *arg)
{
    struct http_upstream_call *c = arg;

    c->timer = NULL;
    switch (c->phase) {
    case CALL_CONNECTING:
        call_abort_client(c);
        call_finish(c, HTTP_UPSTREAM_CONNECT, false);
        return;
    case CALL_WAITING:
        /* Part of a head arrived: the first byte is in, the rest of the
         * call has until the total deadline. */
        if (input_has_bytes(c->client) && http_mono_ms() < c->total_due_ms) {
            c->first_byte = true;
            c->phase = CALL_READING;
            if (call_arm(c, c->total_due_ms))
                return;
        }
        c->first_byte = c->first_byte || input_has_bytes(c->client);
        call_abort_client(c);
        call_finish(c, HTTP_UPSTREAM_TIMEOUT, false);
        return;
    case CALL_READING:
        call_abort_client(c);
        call_finish(c, HTTP_UPSTREAM_TIMEOUT, false);
        return;
    case CALL_FINISHING: call_finish(c, c->pending_result, false); return;
    }
}

/* --- h2o's callbacks ----------------------------------------------------- */

static h2o_http1client_head_cb
on_connect(h2o_http1client_t *client, const char *errstr, h2o_iovec_t **reqbufs,
           size_t *reqbufcnt, int *method_is_head);
static h2o_http1client_body_cb on_head(h2o_http1client_t *client,
                                       const char *errstr, int minor_version,
                                       int status, h2o_iovec_t msg,
                                       h2o_header_t *headers,
                                       size_t num_headers, int rlen);

static void call_start_connect(struct http_upstream_call *c, bool pooled)
{
    h2o_http1client_ctx_t *ctx = &c->thread->upstream.ctx;

    c->phase = CALL_CONNECTING;
    c->pooled = pooled;
    c->reused = false;
    c->pending = false;
    c->starting = true;
    if (pooled)
        h2o_http1client_connect_with_pool(&c->client, c, ctx,
                                          &c->pool->sockpool, on_connect);
    else
        h2o_http1client_connect(&c->client, c, ctx,
                                h2o_iovec_init(c->u->host, strlen(c->u->host)),
                                (uint16_t)c->u->port, 0, on_connect);
    c->starting = false;
}

static h2o_http1client_head_cb
on_connect(h2o_http1client_t *client, const char *errstr, h2o_iovec_t **reqbufs,
           size_t *reqbufcnt, int *method_is_head)
{
    struct http_upstream_call *c = client->data;

    if (errstr != NULL) {
        call_fail(c, HTTP_UPSTREAM_CONNECT);
        return NULL;
    }
    /* Only a pooled connection is handed over inside the connect call. */
    c->reused = c->starting && c->pooled;
    *reqbufs = &c->request;
    *reqbufcnt = 1;
    *method_is_head = c->head_method;
    c->phase = CALL_WAITING;
    if (!c->starting && !call_arm(c, phase_due(c, c->first_byte_ms))) {
        call_fail(c, HTTP_UPSTREAM_IO);
        return NULL;
    }
    return on_head;
}

/* Copies the head, for the answer outlives h2o's buffers. */
static bool copy_headers(struct http_upstream_call *c, h2o_header_t *headers,
                         size_t n)
{
    size_t bytes = n * sizeof(struct http_header_kv);
    char *p;

    for (size_t i = 0; i < n; i++)
        bytes += headers[i].name->len + headers[i].value.len + 2;
    c->headers = malloc(bytes > 0 ? bytes : 1);
    if (c->headers == NULL)
        return false;
    p = (char *)(c->headers + n);
    for (size_t i = 0; i < n; i++) {
        struct http_header_kv *kv = &c->headers[i];
        memcpy(p, headers[i].name->base, headers[i].name->len);
        p[headers[i].name->len] = '\0';
        kv->name = p;
        kv->name_len = headers[i].name->len;
        p += kv->name_len + 1;
        memcpy(p, headers[i].value.base, headers[i].value.len);
        p[headers[i].value.len] = '\0';
        kv->value = p;
        kv->value_len = headers[i].value.len;
        p += kv->value_len + 1;
    }
    c->nheaders = n;
    return true;
}

/* The announced length, or SIZE_MAX when none or unreadable. */
static size_t content_length_of(const struct http_upstream_call *c)
{
    for (size_t i = 0; i < c->nheaders; i++) {
        const struct http_header_kv *h = &c->headers[i];
        if (!name_is(h->name, h->name_len, "content-length"))
            continue;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(h->value, &end, 10);
        if (errno != 0 || end == h->value)
            return SIZE_MAX;
        return v > SIZE_MAX - 1 ? SIZE_MAX - 1 : (size_t)v;
    }
    return SIZE_MAX;
}

static bool body_reserve(struct http_upstream_call *c, size_t want)
{
    size_t cap = c->body_cap != 0 ? c->body_cap : UPSTREAM_BODY_START;
    char *body;

    if (want + 1 <= c->body_cap)
        return true;
    while (cap < want + 1)
        cap *= 2;
    if (cap > c->max_bytes + 1 && want <= c->max_bytes)
        cap = c->max_bytes + 1;
    body = realloc(c->body, cap);
    if (body == NULL)
        return false;
    c->body = body;
    c->body_cap = cap;
    return true;
}

/* Past max_idle idle connections, this one is closed instead of kept. */
static void keep_or_close(struct http_upstream_call *c,
                          h2o_http1client_t *client)
{
    h2o_socketpool_t *sp = client->sockpool.pool;

    if (sp != NULL && pool_idle(sp) >= (size_t)c->u->max_idle)
        client->sockpool.pool = NULL;
}

static int on_body(h2o_http1client_t *client, const char *errstr)
{
    struct http_upstream_call *c = client->data;
    h2o_buffer_t *in = client->sock->input;

    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        call_finish(c, HTTP_UPSTREAM_IO, false);
        return -1;
    }
    if (in->size > 0) {
        if (c->body_len + in->size > c->max_bytes) {
            call_finish(c, HTTP_UPSTREAM_TOOBIG, false);
            return -1;
        }
        if (!body_reserve(c, c->body_len + in->size)) {
            log_error("http", "upstream_nomem upstream=%s bytes=%zu",
                      c->u->name, c->body_len + in->size);
            call_finish(c, HTTP_UPSTREAM_IO, false);
            return -1;
        }
        memcpy(c->body + c->body_len, in->bytes, in->size);
        c->body_len += in->size;
        c->body[c->body_len] = '\0';
        h2o_buffer_consume(&client->sock->input, in->size);
    }
    if (errstr == h2o_http1client_error_is_eos) {
        keep_or_close(c, client);
        call_finish(c, HTTP_UPSTREAM_OK, true);
    }
    return 0;
}

static h2o_http1client_body_cb on_head(h2o_http1client_t *client,
                                       const char *errstr, int minor_version,
                                       int status, h2o_iovec_t msg,
                                       h2o_header_t *headers,
                                       size_t num_headers, int rlen)
{
    struct http_upstream_call *c = client->data;

    (void)minor_version;
    (void)msg;
    (void)rlen;
    if (errstr != NULL && errstr != h2o_http1client_error_is_eos) {
        c->first_byte = input_has_bytes(client);
        if (!c->first_byte && c->reused && !c->retried) {
            /* The peer closed an idle connection as we reused it. */
            c->retried = true;
            c->client = NULL;
            call_start_connect(c, false);
            if (c->pending)
                call_finish(c, c->pending_result, false);
            else if (!call_arm(c, phase_due(c, c->connect_ms)))
                call_finish(c, HTTP_UPSTREAM_IO, false);
            return NULL;
        }
        call_finish(c, HTTP_UPSTREAM_IO, false);
        return NULL;
    }

    c->first_byte = true;
    c->phase = CALL_READING;
    c->status = status;
    if (!copy_headers(c, headers, num_headers)) {
        log_error("http", "upstream_nomem upstream=%s headers=%zu", c->u->name,
                  num_headers);
        call_finish(c, HTTP_UPSTREAM_IO, false);
        return NULL;
    }
    if (errstr == h2o_http1client_error_is_eos) {
        keep_or_close(c, client);
        call_finish(c, HTTP_UPSTREAM_OK, true);
        return NULL;
    }
    size_t length = content_length_of(c);
    if (length != SIZE_MAX && length > c->max_bytes) {
        call_finish(c, HTTP_UPSTREAM_TOOBIG, false);
        return NULL;
    }
    if (!body_reserve(c, length != SIZE_MAX ? length : 0)) {
        call_finish(c, HTTP_UPSTREAM_IO, false);
        return NULL;
    }
    c->body[0] = '\0';
    if (!call_arm(c, c->total_due_ms)) {
        call_finish(c, HTTP_UPSTREAM_IO, false);
        return NULL;
    }
    return on_body;
}

/* --- the API ------------------------------------------------------------- */

static int clamp_ms(int ms)
{
    if (ms < 1)
        return 1;
    return ms > HTTP_UPSTREAM_TIMEOUT_MAX_MS ? HTTP_UPSTREAM_TIMEOUT_MAX_MS
                                             : ms;
}

struct http_upstream_call *
http_upstream_send(struct http_upstream *u, int thread,
                   const struct http_upstream_request *rq,
                   http_upstream_done_fn done, void *arg)
{
    struct http_server *s = u->server;
    struct http_thread *t;
    struct http_upstream_call *c;

    assert(thread >= 0 && thread < s->nthreads);
    assert(http_server_on_thread(s, thread) && "upstream call off its thread");
    check_request(rq);
    t = &s->threads[thread];
    if (!t->upstream.ready || t->upstream.closed)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->pool = pool_open(u, t);
    c->request = build_request(u, rq);
    if (c->pool == NULL || c->request.base == NULL)
        goto out_free;
    http_upstream_retain(u);
    c->u = u;
    c->thread = t;
    c->done = done;
    c->arg = arg;
    c->connect_ms = clamp_ms(rq->connect_timeout_ms);
    c->first_byte_ms = clamp_ms(rq->first_byte_timeout_ms);
    c->total_due_ms = http_mono_ms() + clamp_ms(rq->total_timeout_ms);
    /* Bounded so that max_bytes + 1 (room for the NUL) cannot wrap. */
    c->max_bytes = rq->max_response_bytes < SIZE_MAX / 4
                       ? rq->max_response_bytes
                       : SIZE_MAX / 4;
    c->head_method = strcmp(rq->method, "HEAD") == 0;
    h2o_linklist_insert(&t->upstream.calls, &c->link);

    call_start_connect(c, true);
    if (c->pending) {
        /* Failed at once (a refused connect can be): done must still run
         * after this call returns. */
        c->phase = CALL_FINISHING;
        if (call_arm(c, 0))
            return c;
        call_free(c);
        return NULL;
    }
    bool armed = c->phase == CALL_CONNECTING
                     ? call_arm(c, phase_due(c, c->connect_ms))
                     : call_arm(c, phase_due(c, c->first_byte_ms));
    if (!armed) {
        call_abort_client(c);
        call_free(c);
        return NULL;
    }
    return c;

out_free:
    free(c->request.base);
    free(c);
    return NULL;
}

void http_upstream_cancel(struct http_upstream_call *c)
{
    if (c == NULL)
        return;
    assert(!c->starting);
    call_abort_client(c);
    call_free(c);
}

/* --- thread life --------------------------------------------------------- */

void http_upstream_thread_setup(struct http_thread *t)
{
    struct http_upstream_thread *ut = &t->upstream;

    h2o_timeout_init(t->ctx.loop, &ut->io_timeout, UPSTREAM_IO_TIMEOUT_MS);
    ut->ctx.loop = t->ctx.loop;
    ut->ctx.getaddr_receiver = &t->ctx.receivers.hostinfo_getaddr;
    ut->ctx.io_timeout = &ut->io_timeout;
    ut->ctx.websocket_timeout = NULL;
    ut->ctx.ssl_ctx = NULL;
    h2o_linklist_init_anchor(&ut->calls);
    ut->ready = true;
}

/*
 * The thread stops: calls still in flight end as IO (their callers can
 * free what they hold; a new send is refused), then this thread's pools
 * of every instance close.
 */
void http_upstream_thread_stop(struct http_thread *t)
{
    struct http_upstream_thread *ut = &t->upstream;
    struct http_server *s = t->server;

    if (!ut->ready)
        return;
    pthread_mutex_lock(&s->upstreams_lock);
    ut->closed = true;
    pthread_mutex_unlock(&s->upstreams_lock);

    while (!h2o_linklist_is_empty(&ut->calls)) {
        struct http_upstream_call *c = H2O_STRUCT_FROM_MEMBER(
            struct http_upstream_call, link, ut->calls.next);
        call_abort_client(c);
        call_finish(c, HTTP_UPSTREAM_IO, false);
    }

    pthread_mutex_lock(&s->upstreams_lock);
    h2o_linklist_t *l = s->upstreams.next;
    while (l != &s->upstreams) {
        struct http_upstream *u =
            H2O_STRUCT_FROM_MEMBER(struct http_upstream, link, l);
        l = l->next;
        if (pool_close(&u->pools[t->index]))
            upstream_destroy(u, true);
    }
    pthread_mutex_unlock(&s->upstreams_lock);

    h2o_timeout_dispose(t->ctx.loop, &ut->io_timeout);
    ut->ready = false;
}

/*
 * The server is freed: threads that never ran never opened a pool, and
 * nothing will close theirs, so they are closed here (posted closing
 * tasks never run; the server frees them).
 */
void http_upstream_server_free(struct http_server *s)
{
    pthread_mutex_lock(&s->upstreams_lock);
    for (int i = 0; i < s->nthreads; i++) {
        if (s->threads[i].started)
            continue;
        h2o_linklist_t *l = s->upstreams.next;
        while (l != &s->upstreams) {
            struct http_upstream *u =
                H2O_STRUCT_FROM_MEMBER(struct http_upstream, link, l);
            l = l->next;
            assert(!u->pools[i].ready);
            if (pool_close(&u->pools[i]))
                upstream_destroy(u, true);
        }
    }
    pthread_mutex_unlock(&s->upstreams_lock);
}
