/*
 * http.h - marquee's HTTP server, a thin layer over h2o (libh2o-evloop).
 *
 * Nothing outside src/http includes an h2o header; services see only the
 * types below.  A server runs `threads` event loops, each with its own
 * listening socket bound to the same port (SO_REUSEPORT), so the kernel
 * spreads connections over them and no lock is shared on the request path.
 *
 * A handler runs on an event-loop thread and must not block.  It answers at
 * once with one of the http_respond_* calls, or defers (http_req_defer) and
 * answers later from the same thread after work done elsewhere.  Every
 * request gets exactly one answer; a handler that returns without answering
 * or deferring is a bug and asserts.
 *
 * Errors go out as RFC 9457 problem documents (application/problem+json)
 * whose `type` is "/problems/<slug>", one slug per kind of error, listed in
 * docs/api/problems.md.
 */
#ifndef MARQUEE_HTTP_HTTP_H
#define MARQUEE_HTTP_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_server;
struct http_req;
struct http_async;
struct config;
struct config_key;

/* Named limits. */
#define HTTP_THREADS_MAX     64
#define HTTP_ROUTES_MAX      128
#define HTTP_PARAMS_MAX      8   /* {name} segments per pattern */
#define HTTP_REQUEST_ID_MAX  64  /* accepted X-Request-Id length */
#define HTTP_ACCEPT_BATCH    64  /* connections accepted per wake-up */
#define HTTP_QUERY_VALUE_MAX 512 /* decoded query parameter length */

typedef void (*http_handler_fn)(struct http_req *req, void *app);

/*
 * One header field, as pointers into storage owned by whoever hands it out
 * (not NUL-terminated).  Used for request headers (http_req_headers), for
 * proxied answers (http_respond_proxied) and by the upstream client.
 */
struct http_header_kv {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct http_route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/v1/shows/{id}": {name} is one path segment */
    http_handler_fn fn;
};

struct http_server_config {
    const char *name; /* service name, for logs */
    const char *host;
    int port;
    int threads;
    int max_connections;     /* per process, split evenly over threads */
    size_t max_body_bytes;   /* larger bodies get 413 */
    size_t max_header_bytes; /* larger header sections get 431 */
    int request_timeout_ms;  /* to receive a whole request, and idle time */
    int shutdown_timeout_ms; /* in-flight requests get this long on SIGTERM */
    bool access_log;         /* one debug line per request */

    void *app; /* passed to handlers and callbacks */
    /* Readiness for GET /readyz; NULL means always ready. */
    bool (*ready)(void *app);
    /* Per-thread state, made and freed on the loop thread (may be NULL). */
    void *(*thread_start)(void *app, int index);
    void (*thread_stop)(void *app, void *thread_data);
    /* Called on every loop thread every tick_ms, if set. */
    void (*tick)(void *app, void *thread_data, int index);
    int tick_ms;
    /* The fault switch for resilience tests (http.faults): adds
     * PUT/GET /internal/v1/faults; see docs/internals/http.md. */
    bool faults;
    /* http.gateway_secret: when set (non-empty), http_req_customer()
     * trusts X-Customer-Id only from a request that carries it in
     * X-Gateway-Secret; see docs/internals/http.md.  Not owned. */
    const char *gateway_secret;
};

/*
 * The http.* configuration keys and a reader for them.  Programs put
 * HTTP_CONFIG_KEYS(port) into their key table.
 */
#define HTTP_CONFIG_KEYS(default_port)                                           \
    {"http.host", CONFIG_STRING, "127.0.0.1", 0, 0, "address to listen on"},     \
        {"http.port", CONFIG_INT, #default_port, 1, 65535, "port to listen on"}, \
        {"http.threads",                                                         \
         CONFIG_INT,                                                             \
         "0",                                                                    \
         0,                                                                      \
         HTTP_THREADS_MAX,                                                       \
         "event-loop threads; 0 = one per core"},                                \
        {"http.max_connections",                                                 \
         CONFIG_INT,                                                             \
         "4096",                                                                 \
         1,                                                                      \
         1000000,                                                                \
         "open connections at most; more wait in the listen backlog"},           \
        {"http.max_body_bytes",                                                  \
         CONFIG_INT,                                                             \
         "65536",                                                                \
         1,                                                                      \
         16777216,                                                               \
         "largest request body; larger gets 413"},                               \
        {"http.max_header_bytes",                                                \
         CONFIG_INT,                                                             \
         "16384",                                                                \
         1024,                                                                   \
         1048576,                                                                \
         "largest request header section; larger gets 431"},                     \
        {"http.request_timeout_ms",                                              \
         CONFIG_INT,                                                             \
         "10000",                                                                \
         100,                                                                    \
         3600000,                                                                \
         "time to receive a whole request, also the idle keep-alive limit"},     \
        {"http.shutdown_timeout_ms",                                             \
         CONFIG_INT,                                                             \
         "10000",                                                                \
         0,                                                                      \
         600000,                                                                 \
         "time in-flight requests get to finish after SIGTERM"},                 \
        {"http.access_log",                                                      \
         CONFIG_BOOL,                                                            \
         "false",                                                                \
         0,                                                                      \
         0,                                                                      \
         "log one line per request at debug level"},                             \
        {"http.gateway_secret",                                                  \
         CONFIG_STRING,                                                          \
         "",                                                                     \
         0,                                                                      \
         0,                                                                      \
         "shared with the gateway: X-Customer-Id is trusted only with it in "    \
         "X-Gateway-Secret; empty trusts the header as is"},                     \
    {                                                                            \
        "http.faults", CONFIG_BOOL, "false", 0, 0,                               \
            "offer PUT /internal/v1/faults to inject failures (tests only)"      \
    }

void http_server_config_from(struct http_server_config *out,
                             const struct config *cfg, const char *name);

/*
 * Creates the server and binds its sockets (so a port clash fails here).
 * routes is copied.  GET /healthz and GET /readyz are added.  ERR_OK, or
 * ERR_INVALID (bad pattern, too many routes), ERR_SYS (bind failed),
 * ERR_CONFIG (a gateway_secret shorter than HTTP_GATEWAY_SECRET_MIN).
 */
int http_server_create(const struct http_server_config *cfg,
                       const struct http_route *routes, size_t nroutes,
                       struct http_server **out);

/*
 * Runs until SIGTERM or SIGINT (or http_server_stop), then shuts down
 * gracefully: stop accepting, let in-flight requests finish until the
 * deadline, close idle connections.  Must be called from the main thread
 * before any other thread of the program blocks the signals.  Returns ERR_OK
 * after a clean drain, ERR_TIMEOUT if requests were cut off.
 */
int http_server_run(struct http_server *s);

/*
 * Blocks SIGTERM and SIGINT in the calling thread and ignores SIGPIPE.  Call
 * it first in main(), before any thread starts, so that every thread
 * inherits the mask and only http_server_run() receives the signals.
 */
void http_block_stop_signals(void);

/* Asks a running server to stop, from any thread. */
void http_server_stop(struct http_server *s);

void http_server_free(struct http_server *s);

/* The port actually bound (useful with port 0 in tests). */
int http_server_port(const struct http_server *s);

/* The number of event-loop threads, fixed once created. */
int http_server_threads(const struct http_server *s);

/*
 * Runs fn(thread_data, arg) on event-loop thread `thread` (0 to threads-1);
 * callable from any thread, never blocks.  This is how work moves to the
 * thread that owns it.  Returns false, without running fn, once that
 * thread has stopped taking tasks at shutdown: the caller answers 503.
 */
bool http_server_post(struct http_server *s, int thread,
                      void (*fn)(void *thread_data, void *arg), void *arg);

/* Whether the caller runs on event-loop thread `thread` of s. */
bool http_server_on_thread(const struct http_server *s, int thread);

/*
 * Marks work in progress outside any request (a database write whose
 * completion will be posted back), so a graceful shutdown waits for it.
 * Every hold is matched by one release, from any thread.
 */
void http_server_hold(struct http_server *s);
void http_server_release(struct http_server *s);

/* --- the request ---------------------------------------------------- */

/* Per-thread state from thread_start(). */
void *http_req_thread_data(struct http_req *req);

/* The server and the index of the loop thread the request arrived on. */
struct http_server *http_req_server(struct http_req *req);
int http_req_thread_index(struct http_req *req);

/* Upper-case method, e.g. "GET". */
const char *http_req_method(struct http_req *req);

/* The path without the query, e.g. "/v1/shows/7". */
const char *http_req_path(struct http_req *req);

/* The request target as sent: path and query, "/v1/cities?limit=5". */
const char *http_req_target(struct http_req *req);

/* The value of a {name} segment, or NULL. */
const char *http_req_param(struct http_req *req, const char *name);

/*
 * A {name} segment as a positive integer id.  On failure it answers 404
 * (no such resource can exist) and returns false.
 */
bool http_req_param_id(struct http_req *req, const char *name, int64_t *out);

/*
 * A query parameter, percent-decoded, or NULL when absent.  A present but
 * undecodable or over-long value is answered with 400 and *bad set.
 */
const char *http_req_query(struct http_req *req, const char *name, bool *bad);

/* A request header (name in lower case), NUL-terminated copy, or NULL. */
const char *http_req_header(struct http_req *req, const char *name);

/* The raw body; len 0 when none. */
const char *http_req_body(struct http_req *req, size_t *len);

/*
 * The body as a JSON object.  On a missing or non-JSON content type (415),
 * invalid JSON (400, with line and column) or a non-object (400) it answers
 * with a problem and returns NULL.  The result is owned by the request.
 */
json_t *http_req_json(struct http_req *req);

/* The request id: the client's X-Request-Id if sane, else a generated one. */
const char *http_req_id(struct http_req *req);

/* When the request arrived, in ms of the clock of http_loop_now_ms(). */
int64_t http_req_start_ms(struct http_req *req);

/*
 * Every request header as received, in order, names in lower case; Host
 * comes first (h2o keeps it apart), and the body's framing headers
 * (Content-Length, Transfer-Encoding) are not listed.  *out points into
 * the request's memory, valid until the request is answered; the count is
 * returned.  Callable on the request's loop thread.
 */
size_t http_req_headers(struct http_req *req,
                        const struct http_header_kv **out);

/*
 * The client's address as text ("127.0.0.1", "::1"), owned by the
 * request; "" when the socket cannot tell (it is already closing).
 */
const char *http_req_peer(struct http_req *req);

/*
 * X-Deadline-Ms: the client's remaining budget in milliseconds when the
 * request arrived (0 to HTTP_DEADLINE_MAX_MS decimal digits).  Requests that
 * arrive with a budget of 0, or whose deadline has passed when their
 * handler would run, are answered 504 (deadline-exceeded) without running
 * it; a malformed value is answered 400 (bad-deadline).  /healthz, /readyz
 * and /metrics ignore the header.
 */
#define HTTP_DEADLINE_MAX_MS 86400000

/*
 * The request's deadline on the monotonic clock of http_loop_now_ms(), in
 * milliseconds (arrival + X-Deadline-Ms), or 0 when it carried none.
 */
int64_t http_req_deadline_ms(struct http_req *req);

/* Whether that deadline has passed; false without one. */
bool http_req_deadline_passed(struct http_req *req);

/* Monotonic milliseconds, the clock of deadlines and timers (cheap). */
int64_t http_loop_now_ms(struct http_server *s, int thread);

/* --- answering ------------------------------------------------------ */

/* Adds a response header; name and value are copied. */
void http_set_header(struct http_req *req, const char *name, const char *value);

/* Answers with a JSON body; takes the reference to body. */
void http_respond_json(struct http_req *req, int status, json_t *body);

/*
 * Answers 200 with a JSON body that can be cached: sets ETag (a hash of
 * the bytes) and cache_control, and answers 304 with no body when the
 * request's If-None-Match matches.  Takes the reference to body.
 */
void http_respond_cacheable(struct http_req *req, json_t *body,
                            const char *cache_control);

/* An entity tag for body: a quoted 16-digit hex hash, NUL-terminated. */
#define HTTP_ETAG_LEN 24
void http_etag_of(const void *body, size_t len, char out[HTTP_ETAG_LEN]);

/*
 * Like http_respond_cacheable for a JSON body already serialized, with
 * its ETag computed beforehand (by http_etag_of); the body is copied.
 */
void http_respond_etagged(struct http_req *req, const char *body, size_t len,
                          const char *etag, const char *cache_control);

/* Answers with bytes as they are; the body is copied. */
void http_respond_bytes(struct http_req *req, int status,
                        const char *content_type, const void *body, size_t len);

/*
 * Answers with an RFC 9457 problem: type "/problems/<slug>", title, status,
 * detail (printf-style), instance (the request path) and request_id.
 */
void http_respond_problem(struct http_req *req, int status, const char *slug,
                          const char *title, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * The same with extension members: every member of ext is added to the
 * document (e.g. "errors": [...]).  Takes the reference to ext.
 */
void http_respond_problem_ext(struct http_req *req, int status,
                              const char *slug, const char *title,
                              const char *detail, json_t *ext);

/* 503 with Retry-After: the answer to every bounded queue that is full. */
void http_respond_unavailable(struct http_req *req, int retry_after_s,
                              const char *detail);

/*
 * Answers with an upstream's status, headers and body, all copied.  Left
 * out: hop-by-hop headers (Connection, Keep-Alive, Proxy-Connection, TE,
 * Trailer, Transfer-Encoding, Upgrade, and every header named in
 * Connection), Content-Length (set from len; none on 204 and 304), Date
 * and Server (h2o writes its own) and X-Request-Id (this request's own is
 * already set).  status is 100..999.  A HEAD request gets the headers
 * only, with the upstream's Content-Length when body is empty.
 */
void http_respond_proxied(struct http_req *req, int status,
                          const struct http_header_kv *headers, size_t n,
                          const void *body, size_t len);

/*
 * Whether the request carries `Authorization: Bearer <token>` with the
 * role's admin token.  When not, it answers 403 admin-disabled (token NULL
 * or empty: admin routes are off) or 401 unauthorized with
 * WWW-Authenticate, and returns false.  The comparison takes the same time
 * whatever the token given.
 */
bool http_req_admin_ok(struct http_req *req, const char *token);

/* The longest customer id a service accepts. */
#define HTTP_CUSTOMER_MAX 64

/* Whether s is a customer id: 1..HTTP_CUSTOMER_MAX of [A-Za-z0-9._-]. */
bool http_customer_ok(const char *s);

/* The header that proves a request came through the gateway. */
#define HTTP_GATEWAY_SECRET_HEADER "x-gateway-secret"
/* The shortest http.gateway_secret a server accepts. */
#define HTTP_GATEWAY_SECRET_MIN 16

/*
 * Whether secret is usable as a gateway_secret: NULL or empty (trust off),
 * or at least HTTP_GATEWAY_SECRET_MIN bytes.  Logs the reason when not.
 */
bool http_gateway_secret_ok(const char *secret);

/*
 * The customer the request acts for, from X-Customer-Id (the gateway sets
 * it for signed-in customers).  Returns it (valid until the request ends),
 * or NULL after answering.  When the server has a gateway_secret, the
 * request must carry it in X-Gateway-Secret (compared in constant time),
 * else 403 untrusted-customer; then the id must be well formed, else 400
 * invalid-customer.  Without a secret the header is trusted as is (the
 * services listen on loopback by default).  Every service reads the
 * customer through here, so how far the header is trusted is decided in
 * one place.
 */
const char *http_req_customer(struct http_req *req);

/* Whether the request has been answered (or deferred). */
bool http_req_answered(struct http_req *req);

/* --- deferring -------------------------------------------------------- */

/*
 * Defers the answer.  The returned handle lets another thread run fn on
 * the request's loop thread later; fn then answers.  If the client went
 * away meanwhile, fn gets req == NULL and must only free its arg.
 */
struct http_async *http_req_defer(struct http_req *req);

/*
 * Runs fn(req, arg) on the request's loop thread; callable from any
 * thread, exactly once per handle, which it consumes.  Called on that
 * thread already, it runs fn at once, before returning.
 */
void http_async_post(struct http_async *a,
                     void (*fn)(struct http_req *req, void *arg), void *arg);

/* --- timers ------------------------------------------------------------ */

/*
 * One-shot timers on a loop thread, for work that must happen later
 * without blocking the loop (backoffs, health-check intervals, delays).
 * Their clock is http_loop_now_ms().  At most HTTP_TIMERS_MAX are pending
 * per thread.
 */
#define HTTP_TIMERS_MAX (1 << 20)
struct http_timer;

/*
 * Runs fn(arg) once on loop thread `thread` of s, delay_ms (0 to
 * HTTP_TIMER_DELAY_MAX_MS, clamped) after now, never inside this call.
 * Must be called on that thread (thread_start included).  Returns the
 * handle, valid until fn returns or the timer is cancelled, or NULL (fn
 * never runs) when out of memory, past HTTP_TIMERS_MAX, or once the
 * thread has finished its shutdown drain (timers work during the drain).
 * Timers still pending when their thread stops never run; they are freed
 * with the server.
 */
#define HTTP_TIMER_DELAY_MAX_MS (7 * 86400000)
struct http_timer *http_timer_start(struct http_server *s, int thread,
                                    int delay_ms, void (*fn)(void *arg),
                                    void *arg);

/*
 * Cancels a pending timer and frees it: fn will not run.  Must be called
 * on the timer's thread (or, once http_server_run() has returned, on the
 * thread that frees the server).  Called from inside the timer's own fn,
 * it does nothing.
 */
void http_timer_cancel(struct http_timer *t);

#endif
