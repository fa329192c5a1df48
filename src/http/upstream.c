/*
 * upstream.c - the asynchronous HTTP/1.1 upstream client (upstream.h).
 *
 * A call owns one h2o socket at a time, on its loop thread: it writes the
 * request with one h2o_socket_write and parses the answer itself, from the
 * socket's input buffer, with picohttpparser (bundled in libh2o-evloop).
 * One timer of our own covers the call's current phase: to have a
 * connection, then to the first byte of the answer, then to the end of the
 * whole call.  h2o has no I/O timeout of its own on these sockets, so every
 * timeout a caller sees is one it asked for.
 *
 * Reuse.  Each instance keeps, per loop thread, a list of idle connections
 * that stay attached to the loop with reading on: a pooled connection
 * costs no system call to park or to take, and the kernel's epoll set is
 * not touched per request.  A read event on an idle connection can only
 * mean that the peer closed it or sent bytes nobody asked for, so it is
 * closed there and then; no liveness probe is needed when one is taken.
 * The peer may still close it just as a request goes out: a reused
 * connection that fails before any byte of an answer is tried once more on
 * a new connection.  At most max_idle are idle, each closed after
 * HTTP_UPSTREAM_IDLE_MS through one h2o timeout of that duration per
 * thread (entries of one duration expire in the order they were linked).
 *
 * Life of an instance.  It lives while referenced and while any of its
 * per-thread pools is open, since a pool's connections can only be closed
 * on its own thread: `life` counts one for the references plus one per
 * open pool.  The last release posts a closing task to every thread; a
 * thread that has stopped taking tasks closes the pools of every instance
 * itself as it stops.  Whoever brings `life` to zero frees the instance.
 */
#include "http/upstream.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "base/err.h"
#include "base/log.h"
#include "http/internal.h"

/*
 * picohttpparser as libh2o-evloop 2.2 exports it; Debian installs no
 * header for it, so its declarations are repeated here.
 */
struct phr_header {
    const char *name; /* NULL for a continuation line */
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct phr_chunked_decoder {
    size_t bytes_left_in_chunk;
    char consume_trailer;
    char hex_count_;
    char state_;
};

int phr_parse_response(const char *buf, size_t len, int *minor_version,
                       int *status, const char **msg, size_t *msg_len,
                       struct phr_header *headers, size_t *num_headers,
                       size_t last_len);
ssize_t phr_decode_chunked(struct phr_chunked_decoder *decoder, char *buf,
                           size_t *bufsz);

/* A response head (status line and fields) longer than this is refused. */
#define UPSTREAM_HEAD_MAX 65536
/* Interim (1xx) answers skipped per call at most. */
#define UPSTREAM_INTERIM_MAX 8
/* First allocation of a body of unknown length. */
#define UPSTREAM_BODY_START 4096

struct upstream_pool {
    struct http_upstream *u;
    struct http_thread *thread;
    h2o_linklist_t idle; /* struct upstream_conn, least recently used first */
    size_t nidle;
    bool closed; /* closed, or never to be used */
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

/*
 * One connection to an instance.  A call owns it while connecting and
 * while in use; the pool owns it while idle (call is NULL then).
 */
struct upstream_conn {
    h2o_socket_t *sock;
    struct upstream_pool *pool;
    struct http_upstream_call *call;
    h2o_linklist_t link; /* pool->idle, while idle */
    h2o_timeout_entry_t idle_entry;
    bool writing; /* a request is still being written */
};

enum call_phase {
    CALL_CONNECTING, /* no connection yet: nothing sent */
    CALL_WAITING,    /* request sent or being sent, no byte of an answer */
    CALL_READING,    /* answer started */
    CALL_FINISHING,  /* a result waits for its 0 ms timer */
};

/* How the body of an answer ends. */
enum body_framing {
    BODY_NONE,    /* HEAD, 1xx, 204, 304: at the end of the head */
    BODY_LENGTH,  /* after Content-Length bytes */
    BODY_CHUNKED, /* at the last chunk */
    BODY_CLOSE,   /* when the peer closes */
};

/* What parsing the bytes received so far came to. */
enum parse_step {
    STEP_MORE,   /* the answer goes on */
    STEP_DONE,   /* the head (parse_head) or the answer is complete */
    STEP_IO,     /* malformed, or out of memory */
    STEP_TOOBIG, /* over max_response_bytes */
};

struct http_upstream_call {
    h2o_linklist_t link; /* the thread's calls in flight */
    struct http_upstream *u;
    struct http_thread *thread;
    struct upstream_pool *pool;
    struct upstream_conn *conn;
    struct http_timer *timer;
    http_upstream_done_fn done;
    void *arg;

    enum call_phase phase;
    int connect_ms, first_byte_ms;
    int64_t total_due_ms;
    size_t max_bytes;
    h2o_iovec_t request; /* head and body, malloc'd */
    h2o_iovec_t wbuf;    /* what h2o writes from: a copy it may advance */
    bool head_method;

    bool reused;     /* this attempt took an idle connection */
    bool retried;    /* the one retry on a new connection is spent */
    bool first_byte; /* some byte of an answer arrived */
    enum http_upstream_result pending_result;

    /* The answer, as parsed so far. */
    bool have_head;
    int interim; /* 1xx answers skipped */
    int status;
    bool keep_alive;
    bool leftover; /* bytes after the end of the answer */
    enum body_framing framing;
    size_t remaining; /* BODY_LENGTH: bytes still to come */
    struct phr_chunked_decoder chunked;
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
        u->pools[i].thread = &s->threads[i];
        h2o_linklist_init_anchor(&u->pools[i].idle);
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

static void conn_close(struct upstream_conn *k);

/* On the pool's thread.  True when this ended the instance's life. */
static bool pool_close(struct upstream_pool *p)
{
    if (p->closed)
        return false;
    while (!h2o_linklist_is_empty(&p->idle))
        conn_close(
            H2O_STRUCT_FROM_MEMBER(struct upstream_conn, link, p->idle.next));
    assert(p->nidle == 0);
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

/* --- connections --------------------------------------------------------- */

static void on_idle_timeout(h2o_timeout_entry_t *entry);

static struct upstream_conn *conn_new(struct upstream_pool *p)
{
    struct upstream_conn *k = calloc(1, sizeof(*k));

    if (k == NULL)
        return NULL;
    k->pool = p;
    k->idle_entry.cb = on_idle_timeout;
    return k;
}

/* Closes the socket (h2o frees it at the loop's next turn) and frees k,
 * idle or not. */
static void conn_close(struct upstream_conn *k)
{
    if (h2o_linklist_is_linked(&k->link)) {
        h2o_linklist_unlink(&k->link);
        k->pool->nidle--;
    }
    if (h2o_timeout_is_linked(&k->idle_entry))
        h2o_timeout_unlink(&k->idle_entry);
    if (k->sock != NULL)
        h2o_socket_close(k->sock);
    free(k);
}

/* The pool keeps k, idle, with reading left on. */
static void conn_park(struct upstream_conn *k)
{
    struct upstream_pool *p = k->pool;
    struct http_thread *t = p->thread;

    assert(!k->writing && k->sock->input->size == 0);
    k->call = NULL;
    h2o_linklist_insert(&p->idle, &k->link);
    p->nidle++;
    h2o_timeout_link(t->ctx.loop, &t->upstream.idle_timeout, &k->idle_entry);
}

/* The most recently parked connection, or NULL: the older ones are left
 * to time out when traffic drops. */
static struct upstream_conn *pool_take(struct upstream_pool *p)
{
    struct upstream_conn *k;

    if (h2o_linklist_is_empty(&p->idle))
        return NULL;
    k = H2O_STRUCT_FROM_MEMBER(struct upstream_conn, link, p->idle.prev);
    h2o_linklist_unlink(&k->link);
    p->nidle--;
    h2o_timeout_unlink(&k->idle_entry);
    return k;
}

static void on_idle_timeout(h2o_timeout_entry_t *entry)
{
    struct upstream_conn *k =
        H2O_STRUCT_FROM_MEMBER(struct upstream_conn, idle_entry, entry);

    conn_close(k);
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

/* Copies len bytes to *at and moves *at past them. */
static void put(char **at, const char *s, size_t len)
{
    memcpy(*at, s, len);
    *at += len;
}

#define PUT_LIT(at, lit) put((at), (lit), sizeof(lit) - 1)

/*
 * The whole request in one buffer, or a NULL base when out of memory.
 * Written with memcpy, not printf: it is built for every proxied request.
 */
static h2o_iovec_t build_request(const struct http_upstream *u,
                                 const struct http_upstream_request *rq)
{
    bool length = rq->body_len > 0 || method_has_body(rq->method);
    char cl[24];
    size_t cl_len = 0, method_len = strlen(rq->method);
    size_t target_len = strlen(rq->target), name_len = strlen(u->name);
    size_t size;
    char *buf, *at;

    if (length)
        cl_len = (size_t)snprintf(cl, sizeof(cl), "%zu", rq->body_len);
    size = method_len + 1 + target_len + sizeof(" HTTP/1.1\r\nHost: \r\n") - 1 +
           name_len + sizeof("Connection: keep-alive\r\n") - 1 + 2 +
           rq->body_len;
    if (length)
        size += sizeof("Content-Length: \r\n") - 1 + cl_len;
    for (size_t i = 0; i < rq->nheaders; i++)
        if (!header_skipped(&rq->headers[i]))
            size += rq->headers[i].name_len + rq->headers[i].value_len + 4;
    buf = malloc(size + 1);
    if (buf == NULL)
        return h2o_iovec_init(NULL, 0);

    at = buf;
    put(&at, rq->method, method_len);
    PUT_LIT(&at, " ");
    put(&at, rq->target, target_len);
    PUT_LIT(&at, " HTTP/1.1\r\nHost: ");
    put(&at, u->name, name_len);
    PUT_LIT(&at, "\r\n");
    if (length) {
        PUT_LIT(&at, "Content-Length: ");
        put(&at, cl, cl_len);
        PUT_LIT(&at, "\r\n");
    }
    PUT_LIT(&at, "Connection: keep-alive\r\n");
    for (size_t i = 0; i < rq->nheaders; i++) {
        const struct http_header_kv *h = &rq->headers[i];
        if (header_skipped(h))
            continue;
        put(&at, h->name, h->name_len);
        PUT_LIT(&at, ": ");
        put(&at, h->value, h->value_len);
        PUT_LIT(&at, "\r\n");
    }
    PUT_LIT(&at, "\r\n");
    if (rq->body_len > 0)
        put(&at, rq->body, rq->body_len);
    assert((size_t)(at - buf) == size);
    return h2o_iovec_init(buf, size);
}

/* --- finishing a call ---------------------------------------------------- */

static void call_free(struct http_upstream_call *c)
{
    if (c->timer != NULL)
        http_timer_cancel(c->timer);
    if (c->conn != NULL)
        conn_close(c->conn);
    if (h2o_linklist_is_linked(&c->link))
        h2o_linklist_unlink(&c->link);
    free(c->request.base);
    free(c->headers);
    free(c->body);
    http_upstream_release(c->u);
    free(c);
}

/* Ends the call: a connection it still holds is closed (a connection to
 * keep was parked before), and done runs last. */
static void call_finish(struct http_upstream_call *c,
                        enum http_upstream_result result, bool with_response)
{
    struct http_upstream_response resp = {0};
    http_upstream_done_fn done = c->done;
    void *arg = c->arg;
    bool first_byte = c->first_byte;

    if (c->timer != NULL) {
        http_timer_cancel(c->timer);
        c->timer = NULL;
    }
    if (c->conn != NULL) {
        conn_close(c->conn);
        c->conn = NULL;
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

static void on_call_timer(void *arg)
{
    struct http_upstream_call *c = arg;

    c->timer = NULL;
    switch (c->phase) {
    case CALL_CONNECTING: call_finish(c, HTTP_UPSTREAM_CONNECT, false); return;
    case CALL_WAITING:
    case CALL_READING: call_finish(c, HTTP_UPSTREAM_TIMEOUT, false); return;
    case CALL_FINISHING: call_finish(c, c->pending_result, false); return;
    }
}

/* --- sending ------------------------------------------------------------- */

static void on_connect(h2o_socket_t *sock, const char *err);
static void on_conn_read(h2o_socket_t *sock, const char *err);
static void on_write(h2o_socket_t *sock, const char *err);

/* Starts a new connection for c.  False when that failed at once (the
 * kernel may refuse a connect to a local port straight away). */
static bool call_connect(struct http_upstream_call *c)
{
    struct http_upstream *u = c->u;
    struct upstream_conn *k = conn_new(c->pool);

    c->phase = CALL_CONNECTING;
    c->reused = false;
    if (k == NULL)
        return false;
    k->sock =
        h2o_socket_connect(c->thread->ctx.loop, (struct sockaddr *)&u->addr,
                           u->addrlen, on_connect);
    if (k->sock == NULL) {
        log_debug("http", "upstream_connect_failed upstream=%s errno=%d",
                  u->name, errno);
        free(k);
        return false;
    }
    k->sock->data = k;
    k->call = c;
    c->conn = k;
    return true;
}

/* Writes the request on c's connection and waits for the first byte. */
static bool call_write(struct http_upstream_call *c)
{
    struct upstream_conn *k = c->conn;

    c->phase = CALL_WAITING;
    c->wbuf = c->request;
    k->writing = true;
    h2o_socket_write(k->sock, &c->wbuf, 1, on_write);
    return call_arm(c, phase_due(c, c->first_byte_ms));
}

/* The one retry: the reused connection is dropped, a new one made. */
static void call_retry(struct http_upstream_call *c)
{
    conn_close(c->conn);
    c->conn = NULL;
    c->retried = true;
    if (!call_connect(c)) {
        call_finish(c, HTTP_UPSTREAM_CONNECT, false);
        return;
    }
    if (!call_arm(c, phase_due(c, c->connect_ms)))
        call_finish(c, HTTP_UPSTREAM_IO, false);
}

/* The connection failed (reset, closed, malformed answer...). */
static void call_fail(struct http_upstream_call *c)
{
    /* The peer closed an idle connection as we reused it: it cannot have
     * acted on a request it answered nothing to. */
    if (c->reused && !c->retried && !c->first_byte) {
        call_retry(c);
        return;
    }
    call_finish(c, HTTP_UPSTREAM_IO, false);
}

static void on_connect(h2o_socket_t *sock, const char *err)
{
    struct upstream_conn *k = sock->data;
    struct http_upstream_call *c = k->call;

    assert(c != NULL && c->conn == k);
    if (err != NULL) {
        call_finish(c, HTTP_UPSTREAM_CONNECT, false);
        return;
    }
    /* Reading stays on from here to the close, idle or not: no epoll
     * change per request. */
    h2o_socket_read_start(sock, on_conn_read);
    if (!call_write(c))
        call_finish(c, HTTP_UPSTREAM_IO, false);
}

static void on_write(h2o_socket_t *sock, const char *err)
{
    struct upstream_conn *k = sock->data;
    struct http_upstream_call *c = k->call;

    k->writing = false;
    /* A connection is parked only once its write is complete. */
    assert(c != NULL && c->conn == k);
    if (err != NULL)
        call_fail(c);
}

/* --- parsing the answer -------------------------------------------------- */

/* Copies the head with names in lower case, for the answer outlives the
 * socket's buffer. */
static bool copy_headers(struct http_upstream_call *c,
                         const struct phr_header *hs, size_t n)
{
    size_t bytes = n * sizeof(struct http_header_kv);
    char *p;

    for (size_t i = 0; i < n; i++)
        bytes += hs[i].name_len + hs[i].value_len + 2;
    free(c->headers);
    c->headers = malloc(bytes > 0 ? bytes : 1);
    if (c->headers == NULL)
        return false;
    p = (char *)(c->headers + n);
    for (size_t i = 0; i < n; i++) {
        struct http_header_kv *kv = &c->headers[i];
        for (size_t j = 0; j < hs[i].name_len; j++)
            p[j] = (char)tolower((unsigned char)hs[i].name[j]);
        p[hs[i].name_len] = '\0';
        kv->name = p;
        kv->name_len = hs[i].name_len;
        p += kv->name_len + 1;
        memcpy(p, hs[i].value, hs[i].value_len);
        p[hs[i].value_len] = '\0';
        kv->value = p;
        kv->value_len = hs[i].value_len;
        p += kv->value_len + 1;
    }
    c->nheaders = n;
    return true;
}

/* Whether the comma-separated list (v, n) holds token tok. */
static bool list_has(const char *v, size_t n, const char *tok)
{
    size_t i = 0;

    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < n && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end > start && name_is(v + start, end - start, tok))
            return true;
    }
    return false;
}

/* Whether the last coding of a Transfer-Encoding list is chunked. */
static bool ends_chunked(const char *v, size_t n)
{
    size_t end = n, start;

    while (end > 0 && (v[end - 1] == ' ' || v[end - 1] == '\t'))
        end--;
    start = end;
    while (start > 0 && v[start - 1] != ',' && v[start - 1] != ' ' &&
           v[start - 1] != '\t')
        start--;
    return name_is(v + start, end - start, "chunked");
}

/* A Content-Length value: digits only.  False when malformed. */
static bool parse_length(const char *v, size_t n, size_t *out)
{
    size_t len = 0;

    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9' || len > (SIZE_MAX - 9) / 10)
            return false;
        len = len * 10 + (size_t)(v[i] - '0');
    }
    *out = len;
    return true;
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
    if (body == NULL) {
        log_error("http", "upstream_nomem upstream=%s bytes=%zu", c->u->name,
                  want);
        return false;
    }
    c->body = body;
    c->body_cap = cap;
    return true;
}

static enum parse_step body_append(struct http_upstream_call *c, const char *p,
                                   size_t n)
{
    if (n == 0)
        return STEP_MORE; /* p may be NULL: an empty h2o buffer has no bytes */
    if (n > c->max_bytes - c->body_len)
        return STEP_TOOBIG;
    if (!body_reserve(c, c->body_len + n))
        return STEP_IO;
    memcpy(c->body + c->body_len, p, n);
    c->body_len += n;
    c->body[c->body_len] = '\0';
    return STEP_MORE;
}

/* Whether a parsed field (its name in lower case) is the one named lit. */
#define FIELD_IS(h, lit)                                                       \
    ((h)->name_len == sizeof(lit) - 1 &&                                       \
     memcmp((h)->name, lit, sizeof(lit) - 1) == 0)

/* Reads the framing of the final answer from its head. */
static enum parse_step head_framing(struct http_upstream_call *c, int minor)
{
    bool te = false, chunked = false, close = false, keep = false;
    size_t length = SIZE_MAX;

    for (size_t i = 0; i < c->nheaders; i++) {
        const struct http_header_kv *h = &c->headers[i];
        size_t v;
        if (FIELD_IS(h, "content-length")) {
            /* Two different lengths: no way to tell where it ends. */
            if (!parse_length(h->value, h->value_len, &v) ||
                (length != SIZE_MAX && v != length))
                return STEP_IO;
            length = v;
        } else if (FIELD_IS(h, "transfer-encoding")) {
            te = true;
            chunked = ends_chunked(h->value, h->value_len);
        } else if (FIELD_IS(h, "connection")) {
            close = close || list_has(h->value, h->value_len, "close");
            keep = keep || list_has(h->value, h->value_len, "keep-alive");
        }
    }
    c->keep_alive = minor >= 1 ? !close : keep && !close;

    if (c->head_method || c->status == 204 || c->status == 304 ||
        c->status < 200) {
        /* A 101 switches protocols: the connection is no longer ours. */
        c->keep_alive = c->keep_alive && c->status >= 200;
        c->framing = BODY_NONE;
        return STEP_DONE;
    }
    if (te) {
        c->framing = chunked ? BODY_CHUNKED : BODY_CLOSE;
        c->keep_alive = c->keep_alive && chunked;
        /* Trailers are read and dropped, so that nothing is left over. */
        memset(&c->chunked, 0, sizeof(c->chunked));
        c->chunked.consume_trailer = 1;
    } else if (length != SIZE_MAX) {
        if (length > c->max_bytes)
            return STEP_TOOBIG;
        c->framing = BODY_LENGTH;
        c->remaining = length;
    } else {
        c->framing = BODY_CLOSE;
        c->keep_alive = false;
        length = 0;
    }
    if (!body_reserve(c, length != SIZE_MAX ? length : 0))
        return STEP_IO;
    c->body[0] = '\0';
    return STEP_DONE;
}

/* Parses the head of the answer from in, skipping interim (1xx) ones. */
static enum parse_step parse_head(struct http_upstream_call *c,
                                  h2o_buffer_t **in)
{
    struct phr_header hs[HTTP_UPSTREAM_HEADERS_MAX];

    for (;;) {
        size_t nh = HTTP_UPSTREAM_HEADERS_MAX, msg_len;
        int minor, status, r;
        const char *msg;

        r = phr_parse_response((*in)->bytes, (*in)->size, &minor, &status, &msg,
                               &msg_len, hs, &nh, 0);
        if (r == -2)
            return (*in)->size > UPSTREAM_HEAD_MAX ? STEP_IO : STEP_MORE;
        if (r < 0)
            return STEP_IO;
        h2o_buffer_consume(in, (size_t)r);
        if (status >= 100 && status < 200 && status != 101) {
            if (++c->interim > UPSTREAM_INTERIM_MAX)
                return STEP_IO;
            continue;
        }
        c->status = status;
        if (!copy_headers(c, hs, nh)) {
            log_error("http", "upstream_nomem upstream=%s headers=%zu",
                      c->u->name, nh);
            return STEP_IO;
        }
        c->have_head = true;
        return head_framing(c, minor);
    }
}

/* Takes the body bytes in `in`; STEP_DONE when the body is complete. */
static enum parse_step parse_body(struct http_upstream_call *c,
                                  h2o_buffer_t **in)
{
    enum parse_step step = STEP_MORE;
    size_t n = (*in)->size;
    ssize_t r;

    switch (c->framing) {
    case BODY_NONE: return STEP_DONE;
    case BODY_LENGTH:
        if (n > c->remaining)
            n = c->remaining;
        step = body_append(c, (*in)->bytes, n);
        h2o_buffer_consume(in, n);
        c->remaining -= n;
        if (step == STEP_MORE && c->remaining == 0)
            step = STEP_DONE;
        return step;
    case BODY_CHUNKED:
        /* Decoded in place: the data moves to the buffer's start. */
        r = phr_decode_chunked(&c->chunked, (*in)->bytes, &n);
        if (r == -1)
            return STEP_IO;
        step = body_append(c, (*in)->bytes, n);
        c->leftover = r > 0;
        h2o_buffer_consume(in, (*in)->size);
        if (step == STEP_MORE && r >= 0)
            step = STEP_DONE;
        return step;
    case BODY_CLOSE:
        step = body_append(c, (*in)->bytes, n);
        h2o_buffer_consume(in, n);
        return step;
    }
    return STEP_IO;
}

/* Whether c's connection can serve another call once its answer is in. */
static bool call_can_park(const struct http_upstream_call *c)
{
    const struct upstream_conn *k = c->conn;
    const struct upstream_pool *p = c->pool;

    return c->keep_alive && !c->leftover && k->sock->input->size == 0 &&
           !k->writing && !p->closed && p->nidle < (size_t)c->u->max_idle;
}

/* The whole answer is in. */
static void call_complete(struct http_upstream_call *c)
{
    if (call_can_park(c)) {
        conn_park(c->conn);
        c->conn = NULL;
    }
    call_finish(c, HTTP_UPSTREAM_OK, true);
}

static void call_read(struct http_upstream_call *c, const char *err)
{
    h2o_socket_t *sock = c->conn->sock;
    enum parse_step step = STEP_MORE;

    if (sock->input->size > 0 && !c->first_byte) {
        /* From the first byte, even of a status line, the rest of the call
         * has until the total deadline. */
        c->first_byte = true;
        c->phase = CALL_READING;
        if (!call_arm(c, c->total_due_ms)) {
            call_finish(c, HTTP_UPSTREAM_IO, false);
            return;
        }
    }
    if (!c->have_head)
        step = parse_head(c, &sock->input);
    if (c->have_head && (step == STEP_MORE || step == STEP_DONE))
        step = parse_body(c, &sock->input);

    switch (step) {
    case STEP_DONE: call_complete(c); return;
    case STEP_IO: call_finish(c, HTTP_UPSTREAM_IO, false); return;
    case STEP_TOOBIG: call_finish(c, HTTP_UPSTREAM_TOOBIG, false); return;
    case STEP_MORE: break;
    }
    if (err == NULL)
        return;
    /* A body without framing ends when the peer closes. */
    if (c->have_head && c->framing == BODY_CLOSE &&
        err == h2o_socket_error_closed) {
        c->keep_alive = false;
        call_complete(c);
        return;
    }
    call_fail(c);
}

static void on_conn_read(h2o_socket_t *sock, const char *err)
{
    struct upstream_conn *k = sock->data;

    /* Idle: the peer closed, or sent what nobody asked for. */
    if (k->call == NULL) {
        conn_close(k);
        return;
    }
    call_read(k->call, err);
}

/* --- the API ------------------------------------------------------------- */

static int clamp_ms(int ms)
{
    if (ms < 1)
        return 1;
    return ms > HTTP_UPSTREAM_TIMEOUT_MAX_MS ? HTTP_UPSTREAM_TIMEOUT_MAX_MS
                                             : ms;
}

/* On the pool's thread; NULL once it is closed. */
static struct upstream_pool *pool_open(struct http_upstream *u,
                                       struct http_thread *t)
{
    struct upstream_pool *p = &u->pools[t->index];

    return p->closed ? NULL : p;
}

/* Starts c on an idle connection, else on a new one.  False when no timer
 * could be had (the thread is stopping). */
static bool call_start(struct http_upstream_call *c)
{
    struct upstream_conn *k = pool_take(c->pool);

    if (k != NULL) {
        k->call = c;
        c->conn = k;
        c->reused = true;
        return call_write(c);
    }
    if (call_connect(c))
        return call_arm(c, phase_due(c, c->connect_ms));
    /* Failed at once: done must still run after send returns. */
    c->phase = CALL_FINISHING;
    c->pending_result = HTTP_UPSTREAM_CONNECT;
    return call_arm(c, 0);
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
        goto out_free_call;
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

    if (!call_start(c)) {
        call_free(c);
        return NULL;
    }
    return c;

out_free_call:
    free(c->request.base);
    free(c);
    return NULL;
}

void http_upstream_cancel(struct http_upstream_call *c)
{
    if (c == NULL)
        return;
    /* Its connection may be mid-answer: call_free closes it. */
    call_free(c);
}

/* --- thread life --------------------------------------------------------- */

void http_upstream_thread_setup(struct http_thread *t)
{
    struct http_upstream_thread *ut = &t->upstream;

    h2o_timeout_init(t->ctx.loop, &ut->idle_timeout, HTTP_UPSTREAM_IDLE_MS);
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

    /* Every idle connection of this thread was in one of those pools. */
    h2o_timeout_dispose(t->ctx.loop, &ut->idle_timeout);
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
            assert(h2o_linklist_is_empty(&u->pools[i].idle));
            if (pool_close(&u->pools[i]))
                upstream_destroy(u, true);
        }
    }
    pthread_mutex_unlock(&s->upstreams_lock);
}
