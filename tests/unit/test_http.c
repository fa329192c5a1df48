/*
 * test_http.c - the HTTP layer, in process: route patterns, then a real
 * server on a loopback port spoken to over raw sockets.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "harness.h"
#include "http/internal.h"

/* --- route patterns ------------------------------------------------------ */

TEST(route_literal_and_params)
{
    struct http_route in = {"GET", "/v1/shows/{id}/seats/{seat}", NULL};
    struct http_route_compiled r;
    const char *params[HTTP_SEGS_MAX] = {0};
    h2o_mem_pool_t pool;

    h2o_mem_init_pool(&pool);
    CHECK_INT(http_route_compile(&r, &in), ERR_OK);
    CHECK_INT(r.nsegs, 5);
    CHECK(http_route_match(&r, &pool, "/v1/shows/7/seats/A3", 20, params));
    CHECK_STR(params[2], "7");
    CHECK_STR(params[4], "A3");
    CHECK(http_route_match(&r, NULL, "/v1/shows/7/seats/A3/", 21, NULL));
    CHECK(!http_route_match(&r, NULL, "/v1/shows/7/seats", 17, NULL));
    CHECK(!http_route_match(&r, NULL, "/v1/shows//seats/A3", 19, NULL));
    CHECK(!http_route_match(&r, NULL, "/v1/shows/7/seat/A3", 19, NULL));
    CHECK(!http_route_match(&r, NULL, "/v1/shows/7/seats/A3/x", 22, NULL));
    http_route_free(&r);
    h2o_mem_clear_pool(&pool);
}

TEST(route_bad_patterns_refused)
{
    struct http_route_compiled r;
    struct http_route bad[] = {
        {"GET", "v1/no-slash", NULL},
        {"GET", "/v1//double", NULL},
        {"GET", "/v1/{open", NULL},
        {"GET", "/v1/{}", NULL},
        {"", "/v1", NULL},
        {"TOOLONGMETHOD", "/v1", NULL},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_INT(http_route_compile(&r, &bad[i]), ERR_INVALID);
}

TEST(route_root_has_no_segment)
{
    struct http_route in = {"GET", "/", NULL};
    struct http_route_compiled r;

    CHECK_INT(http_route_compile(&r, &in), ERR_OK);
    CHECK_INT(r.nsegs, 0);
    CHECK(http_route_match(&r, NULL, "/", 1, NULL));
    CHECK(!http_route_match(&r, NULL, "/x", 2, NULL));
    http_route_free(&r);
}

/* --- a live server ------------------------------------------------------- */

static void h_thing(struct http_req *req, void *app)
{
    int64_t id;

    (void)app;
    if (!http_req_param_id(req, "id", &id))
        return;
    bool bad = false;
    const char *q = http_req_query(req, "q", &bad);
    if (bad)
        return;
    http_respond_json(
        req, 200,
        json_pack("{s:I, s:s}", "id", (json_int_t)id, "q", q ? q : ""));
}

static void h_echo(struct http_req *req, void *app)
{
    json_t *body = http_req_json(req);

    (void)app;
    if (body != NULL)
        http_respond_json(req, 201, json_incref(body));
}

static void h_cached(struct http_req *req, void *app)
{
    (void)app;
    http_respond_cacheable(req, json_pack("{s:s}", "v", "cached"),
                           "public, max-age=5");
}

static atomic_int gone_seen;

static void finish_late(struct http_req *req, void *arg)
{
    if (req == NULL) {
        atomic_fetch_add(&gone_seen, 1);
        return;
    }
    http_respond_json(req, 200, json_pack("{s:s}", "late", (char *)arg));
}

static void *late_worker(void *arg)
{
    struct timespec ts = {0, 300 * 1000000};

    nanosleep(&ts, NULL);
    static char yes[] = "yes";

    http_async_post(arg, finish_late, yes);
    return NULL;
}

static void h_late(struct http_req *req, void *app)
{
    pthread_t t;

    (void)app;
    pthread_create(&t, NULL, late_worker, http_req_defer(req));
    pthread_detach(t);
}

/* Blocks its loop on purpose, for the event-loop lag probe to see. */
static void h_stall(struct http_req *req, void *app)
{
    (void)app;
    usleep(300 * 1000);
    http_respond_json(req, 200, json_pack("{s:b}", "stalled", 1));
}

/* Every request header and the peer, as JSON, for the accessors. */
static void h_headers(struct http_req *req, void *app)
{
    const struct http_header_kv *kv;
    size_t n = http_req_headers(req, &kv);
    json_t *list = json_array();

    (void)app;
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_pack("[s#, s#]", kv[i].name,
                                              (int)kv[i].name_len, kv[i].value,
                                              (int)kv[i].value_len));
    http_respond_json(
        req, 200,
        json_pack(
            "{s:o, s:s, s:I, s:b}", "headers", list, "peer", http_req_peer(req),
            "budget",
            (json_int_t)(http_req_deadline_ms(req) == 0
                             ? -1
                             : http_req_deadline_ms(req) -
                                   http_loop_now_ms(http_req_server(req), 0)),
            "passed", http_req_deadline_passed(req)));
}

/* An upstream's answer, hop-by-hop headers and all, passed through. */
static void h_proxied(struct http_req *req, void *app)
{
    static const struct http_header_kv hs[] = {
        {"Content-Type", 12, "text/plain", 10},
        {"Connection", 10, "keep-alive, X-Hop", 17},
        {"Keep-Alive", 10, "timeout=5", 9},
        {"Transfer-Encoding", 17, "chunked", 7},
        {"X-Hop", 5, "secret", 6},
        {"Content-Length", 14, "999", 3},
        {"Upgrade", 7, "h2c", 3},
        {"Proxy-Connection", 16, "close", 5},
        {"TE", 2, "trailers", 8},
        {"Trailer", 7, "X-T", 3},
        {"Date", 4, "Thu, 01 Jan 1970 00:00:00 GMT", 29},
        {"Server", 6, "upstream/1", 10},
        {"X-Kept", 6, "yes", 3},
        {"ETag", 4, "\"abc\"", 5},
    };
    const char *st = http_req_query(req, "status", &(bool){false});
    int status = st != NULL ? (int)strtol(st, NULL, 10) : 207;
    bool empty = http_req_query(req, "empty", &(bool){false}) != NULL;

    (void)app;
    http_respond_proxied(req, status, hs, sizeof(hs) / sizeof(hs[0]),
                         empty ? "" : "hello", empty ? 0 : 5);
}

/* --- timers: a deferred request answered by the last of its timers ------- */

struct timer_probe {
    struct http_async *async;
    struct http_server *server;
    int thread;
    char order[8];
    size_t n;
    int64_t started_ms;
    struct http_timer *last;
};

static atomic_int timer_fires;

static void probe_answer(struct http_req *req, void *arg)
{
    struct timer_probe *p = arg;

    if (req != NULL)
        http_respond_json(
            req, 200,
            json_pack("{s:s, s:I}", "order", p->order, "waited",
                      (json_int_t)(http_loop_now_ms(p->server, p->thread) -
                                   p->started_ms)));
    free(p);
}

static void probe_mark(struct timer_probe *p, char c)
{
    atomic_fetch_add(&timer_fires, 1);
    if (p->n + 1 < sizeof(p->order))
        p->order[p->n++] = c;
}

static void fire_0(void *arg)
{
    probe_mark(arg, '0');
}

static void fire_2(void *arg)
{
    probe_mark(arg, '2');
}

static void fire_never(void *arg)
{
    probe_mark(arg, 'X');
}

static void fire_last(void *arg)
{
    struct timer_probe *p = arg;

    probe_mark(p, '5');
    /* Cancelling itself from inside is harmless. */
    http_timer_cancel(p->last);
    http_async_post(p->async, probe_answer, p);
}

static void h_timers(struct http_req *req, void *app)
{
    struct timer_probe *p = calloc(1, sizeof(*p));
    struct http_server *s = http_req_server(req);
    int th = http_req_thread_index(req);

    (void)app;
    p->server = s;
    p->thread = th;
    p->started_ms = http_loop_now_ms(s, th);
    p->async = http_req_defer(req);
    /* Started out of order; they must run in order of their delays. */
    p->last = http_timer_start(s, th, 50, fire_last, p);
    CHECK(http_timer_start(s, th, 20, fire_2, p) != NULL);
    struct http_timer *gone = http_timer_start(s, th, 10, fire_never, p);
    CHECK(http_timer_start(s, th, 0, fire_0, p) != NULL);
    CHECK(p->last != NULL && gone != NULL);
    http_timer_cancel(gone);
}

static const struct http_route test_routes[] = {
    {"GET", "/things/{id}", h_thing}, {"GET", "/stall", h_stall},
    {"POST", "/echo", h_echo},        {"GET", "/cached", h_cached},
    {"GET", "/late", h_late},         {"GET", "/headers", h_headers},
    {"GET", "/proxied", h_proxied},   {"GET", "/timers", h_timers},
};

struct live {
    struct http_server *server;
    pthread_t tid;
    int port;
    int rc;
};

static void *run_server(void *arg)
{
    struct live *l = arg;

    l->rc = http_server_run(l->server);
    return NULL;
}

static bool live_faults; /* the next live server has the fault switch */

static void live_start_n(struct live *l, int threads, int max_conns,
                         int timeout_ms)
{
    struct http_server_config cfg = {
        .name = "test",
        .host = "127.0.0.1",
        .port = 0,
        .threads = threads,
        .max_connections = max_conns,
        .max_body_bytes = 256,
        .max_header_bytes = 2048,
        .request_timeout_ms = timeout_ms,
        .shutdown_timeout_ms = 3000,
        .faults = live_faults,
    };

    memset(l, 0, sizeof(*l));
    CHECK_INT(http_server_create(&cfg, test_routes,
                                 sizeof(test_routes) / sizeof(test_routes[0]),
                                 &l->server),
              ERR_OK);
    l->port = http_server_port(l->server);
    CHECK(l->port > 0);
    pthread_create(&l->tid, NULL, run_server, l);
}

static void live_start(struct live *l, int max_conns, int timeout_ms)
{
    live_start_n(l, 2, max_conns, timeout_ms);
}

static int live_stop(struct live *l)
{
    http_server_stop(l->server);
    pthread_join(l->tid, NULL);
    http_server_free(l->server);
    return l->rc;
}

static int connect_to(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    return fd;
}

/* Reads one response (headers + Content-Length body); "" on EOF/timeout. */
static char *read_response(int fd, int timeout_ms)
{
    static char buf[65536];
    size_t n = 0;

    buf[0] = '\0';
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) <= 0)
            return buf;
        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r <= 0)
            return buf;
        n += (size_t)r;
        buf[n] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end == NULL)
            continue;
        const char *cl = strcasestr(buf, "content-length:");
        size_t want = cl != NULL ? (size_t)strtoul(cl + 15, NULL, 10) : 0;
        if (n >= (size_t)(end + 4 - buf) + want)
            return buf;
    }
}

static char *roundtrip(int port, const char *request)
{
    int fd = connect_to(port);
    size_t len = strlen(request);

    CHECK(write(fd, request, len) == (ssize_t)len);
    char *resp = read_response(fd, 3000);
    close(fd);
    return resp;
}

TEST(live_routes_params_and_problems)
{
    struct live l;
    char *r;

    live_start(&l, 100, 5000);
    r = roundtrip(l.port, "GET /things/42?q=a%20b HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
    CHECK(strstr(r, "{\"id\":42,\"q\":\"a b\"}") != NULL);
    CHECK(strcasestr(r, "x-request-id: ") != NULL);

    r = roundtrip(l.port, "GET /things/abc HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 404", 12) == 0);
    CHECK(strcasestr(r, "content-type: application/problem+json") != NULL);
    CHECK(strstr(r, "\"type\":\"/problems/not-found\"") != NULL);

    r = roundtrip(l.port, "GET /things/1?q=%zz HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 400", 12) == 0);
    CHECK(strstr(r, "/problems/invalid-query") != NULL);

    r = roundtrip(l.port, "DELETE /things/1 HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 405", 12) == 0);
    CHECK(strcasestr(r, "allow: GET") != NULL);

    r = roundtrip(l.port, "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 404", 12) == 0);

    r = roundtrip(l.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(strstr(r, "{\"status\":\"alive\"}") != NULL);
    r = roundtrip(l.port, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(strstr(r, "{\"status\":\"ready\"}") != NULL);
    CHECK_INT(live_stop(&l), ERR_OK);
}

TEST(live_request_id_kept_or_made)
{
    struct live l;
    char *r;

    live_start(&l, 100, 5000);
    r = roundtrip(l.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                          "X-Request-Id: abc-123.Z\r\n\r\n");
    CHECK(strcasestr(r, "x-request-id: abc-123.Z\r\n") != NULL);
    /* Unsafe ids are replaced, so logs cannot be forged through them. */
    r = roundtrip(l.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                          "X-Request-Id: a b;c\r\n\r\n");
    CHECK(strcasestr(r, "x-request-id: a b") == NULL);
    CHECK(strcasestr(r, "x-request-id: ") != NULL);
    CHECK_INT(live_stop(&l), ERR_OK);
}

TEST(live_json_bodies)
{
    struct live l;
    char *r;

    live_start(&l, 100, 5000);
    r = roundtrip(l.port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          "application/json\r\nContent-Length: 7\r\n\r\n"
                          "{\"a\":1}");
    CHECK(strncmp(r, "HTTP/1.1 201", 12) == 0);
    CHECK(strstr(r, "{\"a\":1}") != NULL);

    r = roundtrip(l.port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          "application/json\r\nContent-Length: 6\r\n\r\n"
                          "{\"a\":1");
    CHECK(strncmp(r, "HTTP/1.1 400", 12) == 0);
    CHECK(strstr(r, "/problems/malformed-json") != NULL);

    r = roundtrip(l.port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          "application/json\r\nContent-Length: 3\r\n\r\n"
                          "[1]");
    CHECK(strstr(r, "/problems/malformed-json") != NULL);

    r = roundtrip(l.port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          "text/plain\r\nContent-Length: 2\r\n\r\n{}");
    CHECK(strncmp(r, "HTTP/1.1 415", 12) == 0);

    r = roundtrip(l.port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          "application/json\r\nContent-Length: 15\r\n\r\n"
                          "{\"a\":1,\"a\":2}  ");
    CHECK(strncmp(r, "HTTP/1.1 400", 12) == 0);
    CHECK_INT(live_stop(&l), ERR_OK);
}

TEST(live_size_limits)
{
    struct live l;
    char req[8192], *r;

    live_start(&l, 100, 5000);
    snprintf(req, sizeof(req),
             "POST /echo HTTP/1.1\r\nHost: x\r\n"
             "Content-Type: application/json\r\nContent-Length: 300\r\n\r\n"
             "%0300d",
             0);
    r = roundtrip(l.port, req);
    CHECK(strncmp(r, "HTTP/1.1 413", 12) == 0);
    CHECK(strcasestr(r, "content-type: application/problem+json") != NULL);
    CHECK(strstr(r, "/problems/payload-too-large") != NULL);

    snprintf(req, sizeof(req),
             "GET /healthz HTTP/1.1\r\nHost: x\r\n"
             "X-Big: %03000d\r\n\r\n",
             0);
    r = roundtrip(l.port, req);
    CHECK(strncmp(r, "HTTP/1.1 431", 12) == 0);
    CHECK(strstr(r, "/problems/headers-too-large") != NULL);
    CHECK_INT(live_stop(&l), ERR_OK);
}

TEST(live_etag_and_304)
{
    struct live l;
    char etag[64] = "", req[256], *r;

    live_start(&l, 100, 5000);
    r = roundtrip(l.port, "GET /cached HTTP/1.1\r\nHost: x\r\n\r\n");
    const char *e = strcasestr(r, "etag: ");
    CHECK(e != NULL);
    sscanf(e + 6, "%63[^\r]", etag);
    CHECK(etag[0] == '"');
    CHECK(strcasestr(r, "cache-control: public, max-age=5") != NULL);

    snprintf(req, sizeof(req),
             "GET /cached HTTP/1.1\r\nHost: x\r\n"
             "If-None-Match: \"nope\", W/%s\r\n\r\n",
             etag);
    r = roundtrip(l.port, req);
    CHECK(strncmp(r, "HTTP/1.1 304", 12) == 0);
    CHECK(strstr(r, "cached") == NULL);

    r = roundtrip(l.port, "GET /cached HTTP/1.1\r\nHost: x\r\n"
                          "If-None-Match: \"other\"\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
    CHECK_INT(live_stop(&l), ERR_OK);
}

TEST(live_deferred_answer_and_gone_client)
{
    struct live l;
    char *r;

    atomic_store(&gone_seen, 0);
    live_start(&l, 100, 5000);
    r = roundtrip(l.port, "GET /late HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(strstr(r, "{\"late\":\"yes\"}") != NULL);

    int fd = connect_to(l.port);
    const char *req = "GET /late HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
    usleep(50 * 1000);
    close(fd);
    /* The answer arrives after the client left: h2o notices at the write,
     * or the request is already gone; either way nothing may crash. */
    usleep(600 * 1000);
    r = roundtrip(l.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(strstr(r, "alive") != NULL);
    CHECK_INT(live_stop(&l), ERR_OK);
}

/* Reads from fd until `want` copies of needle came, or 3 s passed. */
static int read_count(int fd, const char *needle, int want)
{
    static char buf[8192];
    size_t n = 0;
    int seen = 0;

    while (seen < want && n + 1 < sizeof(buf)) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 3000) <= 0)
            break;
        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        buf[n] = '\0';
        seen = 0;
        for (const char *at = buf; (at = strstr(at, needle)) != NULL;
             at += strlen(needle))
            seen++;
    }
    return seen;
}

/*
 * While a request is deferred the server keeps its socket in the epoll
 * set without reading it.  Bytes the client sends meanwhile (a pipelined
 * request, sent in the same write or while the first is out) must wait
 * and be served, in order, once the first answer is written.
 */
TEST(live_deferred_then_pipelined_requests_served_in_order)
{
    const char *one = "GET /late HTTP/1.1\r\nHost: x\r\n\r\n";
    const char *two = "GET /late HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    struct live l;
    int fd;

    live_start(&l, 100, 5000);

    /* Both in one write: h2o has the second in its buffer already. */
    fd = connect_to(l.port);
    CHECK(write(fd, two, strlen(two)) == (ssize_t)strlen(two));
    CHECK_INT(read_count(fd, "HTTP/1.1 200", 2), 2);
    close(fd);

    /* The second comes while the first is deferred. */
    fd = connect_to(l.port);
    CHECK(write(fd, one, strlen(one)) == (ssize_t)strlen(one));
    usleep(100 * 1000);
    CHECK(write(fd, one, strlen(one)) == (ssize_t)strlen(one));
    CHECK_INT(read_count(fd, "{\"late\":\"yes\"}", 2), 2);
    /* The connection still serves, and an answer at once comes at once. */
    const char *health = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(write(fd, health, strlen(health)) == (ssize_t)strlen(health));
    CHECK_INT(read_count(fd, "HTTP/1.1 200", 1), 1);
    close(fd);
    CHECK_INT(live_stop(&l), ERR_OK);
}

TEST(live_max_connections_waits_in_backlog)
{
    struct live l;
    int fds[2];

    /* One thread (the kernel spreads connections over threads by hash, so
     * with several a slot could be free elsewhere): two connections fill
     * it, and a third waits in the backlog until one closes. */
    live_start_n(&l, 1, 2, 5000);
    fds[0] = connect_to(l.port);
    fds[1] = connect_to(l.port);
    usleep(100 * 1000);
    int third = connect_to(l.port);
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(write(third, req, strlen(req)) == (ssize_t)strlen(req));
    char *r = read_response(third, 300);
    CHECK(r[0] == '\0');
    close(fds[0]);
    close(fds[1]);
    r = read_response(third, 3000);
    CHECK(strstr(r, "alive") != NULL);
    close(third);
    CHECK_INT(live_stop(&l), ERR_OK);
}

TEST(live_slow_client_cut_off_others_served)
{
    struct live l;

    live_start(&l, 100, 400);
    int slow = connect_to(l.port);
    const char *part = "GET /healthz HTTP/1.1\r\nHo";
    CHECK(write(slow, part, strlen(part)) == (ssize_t)strlen(part));
    char *r = roundtrip(l.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(strstr(r, "alive") != NULL);

    /* After the request timeout the server closes the slow connection. */
    char buf[64];
    struct pollfd p = {slow, POLLIN, 0};
    CHECK(poll(&p, 1, 3000) == 1);
    CHECK(read(slow, buf, sizeof(buf)) <= 0);
    close(slow);
    CHECK_INT(live_stop(&l), ERR_OK);
}

struct late_client {
    int port;
    char response[512];
};

static void *late_client_main(void *arg)
{
    struct late_client *c = arg;
    int fd = connect_to(c->port);
    const char *req = "GET /late HTTP/1.1\r\nHost: x\r\n\r\n";

    if (write(fd, req, strlen(req)) == (ssize_t)strlen(req))
        snprintf(c->response, sizeof(c->response), "%s",
                 read_response(fd, 3000));
    close(fd);
    return NULL;
}

TEST(live_graceful_stop_finishes_in_flight)
{
    struct live l;
    struct late_client c = {0};
    pthread_t t;

    live_start(&l, 100, 5000);
    c.port = l.port;
    pthread_create(&t, NULL, late_client_main, &c);
    usleep(100 * 1000);
    /* Stop while /late is in flight: it must still get its answer. */
    int rc = live_stop(&l);
    pthread_join(t, NULL);
    CHECK_INT(rc, ERR_OK);
    CHECK(strstr(c.response, "{\"late\":\"yes\"}") != NULL);

    /* And the port no longer accepts. */
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)c.port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0);
    close(fd);
}

/* --- tasks, ticks and holds ---------------------------------------------- */

static int thread_ids[HTTP_THREADS_MAX];
static atomic_int ticks[2];
static atomic_int task_ran_on[4];

static void *start_record_index(void *app, int index)
{
    (void)app;
    thread_ids[index] = index;
    return &thread_ids[index];
}

static void tick_count(void *app, void *data, int index)
{
    (void)app;
    CHECK(data == &thread_ids[index]);
    atomic_fetch_add(&ticks[index], 1);
}

static void task_note_thread(void *thread_data, void *arg)
{
    int slot = (int)(intptr_t)arg;

    atomic_store(&task_ran_on[slot], *(int *)thread_data + 1);
}

struct releaser {
    struct http_server *server;
    atomic_bool released;
};

static void *release_later(void *arg)
{
    struct releaser *r = arg;

    usleep(300 * 1000);
    atomic_store(&r->released, true);
    http_server_release(r->server);
    return NULL;
}

TEST(tasks_run_on_their_thread_ticks_and_holds)
{
    struct http_server_config cfg = {
        .name = "test",
        .host = "127.0.0.1",
        .port = 0,
        .threads = 2,
        .max_connections = 10,
        .max_body_bytes = 256,
        .max_header_bytes = 2048,
        .request_timeout_ms = 5000,
        .shutdown_timeout_ms = 5000,
        .thread_start = start_record_index,
        .tick = tick_count,
        .tick_ms = 20,
    };
    struct live l = {0};
    struct releaser r = {0};
    pthread_t rel;

    for (int i = 0; i < 4; i++)
        atomic_store(&task_ran_on[i], 0);
    atomic_store(&ticks[0], 0);
    atomic_store(&ticks[1], 0);
    CHECK_INT(http_server_create(&cfg, test_routes, 1, &l.server), ERR_OK);
    CHECK_INT(http_server_threads(l.server), 2);
    pthread_create(&l.tid, NULL, run_server, &l);

    /* Posted before or after the threads are up: each runs where sent. */
    for (int i = 0; i < 4; i++)
        CHECK(http_server_post(l.server, i % 2, task_note_thread,
                               (void *)(intptr_t)i));
    for (int tries = 0; tries < 200; tries++) {
        bool all = true;
        for (int i = 0; i < 4; i++)
            all = all && atomic_load(&task_ran_on[i]) != 0;
        if (all && atomic_load(&ticks[0]) >= 3 && atomic_load(&ticks[1]) >= 3)
            break;
        usleep(10 * 1000);
    }
    for (int i = 0; i < 4; i++)
        CHECK_INT(atomic_load(&task_ran_on[i]), i % 2 + 1);
    CHECK(atomic_load(&ticks[0]) >= 3);
    CHECK(atomic_load(&ticks[1]) >= 3);

    /* A hold keeps the server running past the stop until released. */
    r.server = l.server;
    http_server_hold(l.server);
    pthread_create(&rel, NULL, release_later, &r);
    http_server_stop(l.server);
    pthread_join(l.tid, NULL);
    CHECK(atomic_load(&r.released));
    pthread_join(rel, NULL);
    CHECK_INT(l.rc, ERR_OK);
    /* Stopped threads take no more tasks. */
    CHECK(!http_server_post(l.server, 0, task_note_thread, (void *)0));
    http_server_free(l.server);
}

/* The value of the sample line `series` (name and labels) in text; -1. */
static double sample_of(const char *text, const char *series)
{
    size_t n = strlen(series);

    for (const char *p = text; (p = strstr(p, series)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static double scrape(int port, const char *series)
{
    char *r = roundtrip(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");

    CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
    CHECK(strcasestr(r, "content-type: text/plain; version=0.0.4") != NULL);
    return sample_of(r, series);
}

TEST(live_metrics_count_requests_by_route_and_class)
{
    static const char ok[] = "marquee_http_requests_total{route=\"/things/"
                             "{id}\",method=\"GET\",code=\"2xx\"}";
    static const char bad[] = "marquee_http_requests_total{route=\"/things/"
                              "{id}\",method=\"GET\",code=\"4xx\"}";
    static const char none[] = "marquee_http_requests_total{route="
                               "\"unmatched\",method=\"other\",code=\"4xx\"}";
    static const char took[] = "marquee_http_request_duration_seconds_count"
                               "{route=\"/things/{id}\",method=\"GET\"}";
    struct live l;

    live_start(&l, 100, 5000);
    /* Other tests of this binary share the process's registry: count
     * from what is there now. */
    double ok0 = scrape(l.port, ok), bad0 = scrape(l.port, bad);
    double none0 = scrape(l.port, none), took0 = scrape(l.port, took);
    CHECK(ok0 >= 0 && bad0 >= 0 && none0 >= 0 && took0 >= 0);
    for (int i = 0; i < 3; i++)
        roundtrip(l.port, "GET /things/7 HTTP/1.1\r\nHost: x\r\n\r\n");
    roundtrip(l.port, "GET /things/x HTTP/1.1\r\nHost: x\r\n\r\n");
    roundtrip(l.port, "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(scrape(l.port, ok) == ok0 + 3);
    CHECK(scrape(l.port, bad) == bad0 + 1);
    CHECK(scrape(l.port, none) == none0 + 1);
    CHECK(scrape(l.port, took) == took0 + 4);
    /* The scrape itself is in flight while it renders. */
    CHECK(scrape(l.port, "marquee_http_requests_in_flight") >= 1);
    CHECK(scrape(l.port, "marquee_http_connections") >= 1);
    CHECK(scrape(l.port, "process_open_fds") > 0);
    CHECK_INT(live_stop(&l), ERR_OK);
}

TEST(live_metrics_see_a_stalled_event_loop)
{
    static const char lag[] = "marquee_event_loop_lag_seconds{thread=\"0\"}";
    struct live l;
    double seen = 0;

    live_start_n(&l, 1, 100, 5000);
    CHECK(scrape(l.port, lag) < 0.2);
    char *r = roundtrip(l.port, "GET /stall HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
    /* The gauge shows the worst of the last whole second once it ends. */
    for (int i = 0; i < 30 && seen < 0.2; i++) {
        usleep(100 * 1000);
        seen = scrape(l.port, lag);
    }
    CHECK(seen >= 0.2 && seen < 5);
    CHECK_INT(live_stop(&l), ERR_OK);
}

/* --- request accessors, proxied answers, timers -------------------------- */

TEST(live_request_headers_and_peer)
{
    struct live l;
    char *r;

    live_start(&l, 100, 5000);
    r = roundtrip(l.port, "GET /headers HTTP/1.1\r\nHost: x\r\n"
                          "X-One: 1\r\nx-two: a b\r\nX-One: again\r\n"
                          "Content-Length: 0\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
    /* In order, names in lower case, repeats kept, Host first. */
    CHECK(strstr(r, "[\"host\",\"x\"],[\"x-one\",\"1\"],"
                    "[\"x-two\",\"a b\"],[\"x-one\",\"again\"]") != NULL);
    CHECK(strstr(r, "content-length\",") == NULL);
    CHECK(strstr(r, "\"peer\":\"127.0.0.1\"") != NULL);
    CHECK(strstr(r, "\"budget\":-1") != NULL);
    CHECK_INT(live_stop(&l), ERR_OK);
}

/* The peer's text for octets of one, two and three digits, and zeros:
 * the whole of 127/8 is this machine's, so the client binds to one. */
TEST(live_peer_of_another_loopback_address)
{
    struct live l;
    struct sockaddr_in from = {.sin_family = AF_INET};
    struct sockaddr_in to = {.sin_family = AF_INET};
    const char *get = "GET /headers HTTP/1.1\r\nHost: x\r\n\r\n";

    live_start(&l, 100, 5000);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    inet_pton(AF_INET, "127.10.0.255", &from.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    to.sin_port = htons((uint16_t)l.port);
    CHECK(bind(fd, (struct sockaddr *)&from, sizeof(from)) == 0);
    CHECK(connect(fd, (struct sockaddr *)&to, sizeof(to)) == 0);
    CHECK(write(fd, get, strlen(get)) == (ssize_t)strlen(get));
    char *r = read_response(fd, 3000);
    close(fd);
    CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
    CHECK(strstr(r, "\"peer\":\"127.10.0.255\"") != NULL);
    CHECK_INT(live_stop(&l), ERR_OK);
}

TEST(live_proxied_answer_drops_hop_by_hop)
{
    struct live l;
    char *r;

    live_start(&l, 100, 5000);
    r = roundtrip(l.port, "GET /proxied HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 207", 12) == 0);
    CHECK(strcasestr(r, "content-type: text/plain\r\n") != NULL);
    CHECK(strcasestr(r, "x-kept: yes\r\n") != NULL);
    CHECK(strcasestr(r, "etag: \"abc\"\r\n") != NULL);
    CHECK(strcasestr(r, "content-length: 5\r\n") != NULL);
    CHECK(strcasestr(r, "content-length: 999") == NULL);
    CHECK(strcasestr(r, "x-hop") == NULL);
    CHECK(strcasestr(r, "timeout=5") == NULL);
    CHECK(strcasestr(r, "transfer-encoding") == NULL);
    CHECK(strcasestr(r, "upgrade") == NULL);
    CHECK(strcasestr(r, "proxy-connection") == NULL);
    CHECK(strcasestr(r, "\r\nte:") == NULL);
    CHECK(strcasestr(r, "trailer") == NULL);
    CHECK(strcasestr(r, "upstream/1") == NULL);
    CHECK(strstr(r, "1970") == NULL);
    CHECK(strstr(r, "\r\n\r\nhello") != NULL);

    /* HEAD: no body; the upstream's length when it sent none either. */
    r = roundtrip(l.port, "HEAD /proxied HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 207", 12) == 0);
    CHECK(strcasestr(r, "content-length: 5\r\n") != NULL);
    CHECK(strstr(r, "hello") == NULL);
    int fd = connect_to(l.port);
    const char *head = "HEAD /proxied?empty=1 HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(write(fd, head, strlen(head)) == (ssize_t)strlen(head));
    r = read_response(fd, 300);
    close(fd);
    CHECK(strncmp(r, "HTTP/1.1 207", 12) == 0);
    CHECK(strcasestr(r, "content-length: 999\r\n") != NULL);

    /* 204 and 304 carry neither a body nor a length. */
    r = roundtrip(l.port,
                  "GET /proxied?status=304 HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 304", 12) == 0);
    CHECK(strcasestr(r, "content-length") == NULL);
    CHECK(strstr(r, "hello") == NULL);
    CHECK_INT(live_stop(&l), ERR_OK);
}

TEST(live_timers_fire_once_in_order_and_cancel)
{
    struct live l;
    char *r;

    atomic_store(&timer_fires, 0);
    live_start(&l, 100, 5000);
    r = roundtrip(l.port, "GET /timers HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
    CHECK(strstr(r, "\"order\":\"025\"") != NULL);
    const char *w = strstr(r, "\"waited\":");
    CHECK(w != NULL && strtol(w + 9, NULL, 10) >= 50);
    /* Nothing fires twice, and the cancelled one never. */
    usleep(150 * 1000);
    CHECK_INT(atomic_load(&timer_fires), 3);
    CHECK_INT(live_stop(&l), ERR_OK);
}

/* --- deadlines and the fault switch -------------------------------------- */

/* Many timers at random delays, half cancelled: the heap's ordering. */
#define SWARM 2000

struct swarm {
    struct http_server *server;
    struct http_timer *timers[SWARM];
    int64_t due[SWARM];
    atomic_int fired[SWARM];
    int order[SWARM];
    atomic_int nfired;
    atomic_bool started;
    bool in_order;
};

struct swarm_timer {
    struct swarm *w;
    int i;
};

static struct swarm_timer swarm_args[SWARM];

static void swarm_fire(void *arg)
{
    struct swarm_timer *st = arg;
    struct swarm *w = st->w;
    int n = atomic_fetch_add(&w->nfired, 1);

    atomic_fetch_add(&w->fired[st->i], 1);
    w->timers[st->i] = NULL;
    w->order[n] = st->i;
    /* Deadlines are met in order (due[] is read just before each start,
     * so it may be 1 ms behind the timer's own); late, never early. */
    if (n > 0 && w->due[w->order[n - 1]] > w->due[st->i] + 1)
        w->in_order = false;
    if (http_loop_now_ms(w->server, 0) < w->due[st->i])
        w->in_order = false;
}

static void swarm_start(void *thread_data, void *arg)
{
    struct swarm *w = arg;
    struct rand r;

    (void)thread_data;
    rand_seed(&r, 42);
    for (int i = 0; i < SWARM; i++) {
        int delay = (int)rand_below(&r, 200);
        swarm_args[i] = (struct swarm_timer){w, i};
        w->due[i] = http_loop_now_ms(w->server, 0) + delay;
        w->timers[i] =
            http_timer_start(w->server, 0, delay, swarm_fire, &swarm_args[i]);
        CHECK(w->timers[i] != NULL);
    }
    for (int i = 0; i < SWARM; i += 2) {
        http_timer_cancel(w->timers[i]);
        w->timers[i] = NULL;
    }
    atomic_store(&w->started, true);
}

TEST(live_timers_many_in_deadline_order)
{
    static struct swarm w;
    struct live l;

    memset(&w, 0, sizeof(w));
    w.in_order = true;
    live_start_n(&l, 1, 100, 5000);
    w.server = l.server;
    CHECK(http_server_post(l.server, 0, swarm_start, &w));
    for (int i = 0; i < 300 && atomic_load(&w.nfired) < SWARM / 2; i++)
        usleep(10 * 1000);
    usleep(100 * 1000);
    CHECK(atomic_load(&w.started));
    CHECK_INT(atomic_load(&w.nfired), SWARM / 2);
    for (int i = 0; i < SWARM; i++)
        CHECK_INT(atomic_load(&w.fired[i]), i % 2);
    CHECK(w.in_order);
    CHECK_INT(live_stop(&l), ERR_OK);
}

TEST(live_deadlines)
{
    struct live l;
    char *r;

    live_start(&l, 100, 5000);
    r = roundtrip(l.port, "GET /things/1 HTTP/1.1\r\nHost: x\r\n"
                          "X-Deadline-Ms: 0\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 504", 12) == 0);
    CHECK(strstr(r, "\"type\":\"/problems/deadline-exceeded\"") != NULL);
    CHECK(strstr(r, "\"title\":\"Deadline exceeded\"") != NULL);

    const char *bad[] = {"abc", "-1", "86400001", "1.5", "", "123456789"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req),
                 "GET /things/1 HTTP/1.1\r\nHost: x\r\n"
                 "X-Deadline-Ms: %s\r\n\r\n",
                 bad[i]);
        r = roundtrip(l.port, req);
        CHECK(strncmp(r, "HTTP/1.1 400", 12) == 0);
        CHECK(strstr(r, "/problems/bad-deadline") != NULL);
    }

    r = roundtrip(l.port, "GET /headers HTTP/1.1\r\nHost: x\r\n"
                          "X-Deadline-Ms: 5000\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
    const char *b = strstr(r, "\"budget\":");
    CHECK(b != NULL);
    long budget = strtol(b + 9, NULL, 10);
    CHECK(budget > 4000 && budget <= 5000);
    CHECK(strstr(r, "\"passed\":false") != NULL);

    /* Health, readiness and metrics ignore the header. */
    r = roundtrip(l.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                          "X-Deadline-Ms: 0\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
    r = roundtrip(l.port, "GET /readyz HTTP/1.1\r\nHost: x\r\n"
                          "X-Deadline-Ms: x\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
    CHECK_INT(live_stop(&l), ERR_OK);
}

static char *put_faults(int port, const char *json)
{
    char req[512];

    snprintf(req, sizeof(req),
             "PUT /internal/v1/faults HTTP/1.1\r\nHost: x\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n"
             "%s",
             strlen(json), json);
    return roundtrip(port, req);
}

static int status_of(const char *r)
{
    return strncmp(r, "HTTP/1.1 ", 9) == 0 ? (int)strtol(r + 9, NULL, 10) : -1;
}

TEST(live_fault_switch)
{
    struct live l;
    char *r;

    /* Off: the endpoint does not exist. */
    live_start(&l, 100, 5000);
    r = put_faults(l.port, "{\"status\":500}");
    CHECK_INT(status_of(r), 404);
    CHECK_INT(live_stop(&l), ERR_OK);

    live_faults = true;
    live_start(&l, 100, 5000);
    live_faults = false;
    r = roundtrip(l.port,
                  "GET /internal/v1/faults HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_INT(status_of(r), 200);
    CHECK(strstr(r, "{\"status\":0,") != NULL);

    r = put_faults(l.port, "{\"status\":503,\"rate\":1.0,\"delay_ms\":0}");
    CHECK_INT(status_of(r), 200);
    for (int i = 0; i < 5; i++) {
        r = roundtrip(l.port, "GET /things/1 HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK_INT(status_of(r), 503);
        CHECK(strstr(r, "/problems/injected-fault") != NULL);
    }
    r = roundtrip(l.port, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_INT(status_of(r), 503);
    r = roundtrip(l.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_INT(status_of(r), 200);
    r = roundtrip(l.port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_INT(status_of(r), 200);
    r = roundtrip(l.port,
                  "GET /internal/v1/faults HTTP/1.1\r\nHost: x\r\n\r\n");
    /* The endpoint itself is never hit by the fault. */
    CHECK_INT(status_of(r), 200);
    CHECK(strstr(r, "\"status\":503,\"rate\":1") != NULL);

    /* Rate 0: the fault is set but never hits. */
    r = put_faults(l.port, "{\"status\":500,\"rate\":0}");
    CHECK_INT(status_of(r), 200);
    for (int i = 0; i < 5; i++) {
        r = roundtrip(l.port, "GET /things/1 HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK_INT(status_of(r), 200);
    }

    /* A delay alone slows answers without failing them. */
    r = put_faults(l.port, "{\"status\":0,\"rate\":1,\"delay_ms\":300}");
    CHECK_INT(status_of(r), 200);
    int64_t t0 = http_mono_ms();
    r = roundtrip(l.port, "GET /things/1 HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_INT(status_of(r), 200);
    CHECK(http_mono_ms() - t0 >= 300);
    /* ... and the deadline is checked when the delay ends. */
    r = roundtrip(l.port, "GET /things/1 HTTP/1.1\r\nHost: x\r\n"
                          "X-Deadline-Ms: 100\r\n\r\n");
    CHECK_INT(status_of(r), 504);
    /* A delayed fault whose client leaves meanwhile harms nothing. */
    r = put_faults(l.port, "{\"status\":500,\"rate\":1,\"delay_ms\":200}");
    int fd = connect_to(l.port);
    const char *q = "GET /things/1 HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(write(fd, q, strlen(q)) == (ssize_t)strlen(q));
    usleep(50 * 1000);
    close(fd);
    t0 = http_mono_ms();
    r = roundtrip(l.port, q);
    CHECK_INT(status_of(r), 500);
    CHECK(http_mono_ms() - t0 >= 200);

    /* Strict validation. */
    r = put_faults(l.port, "{\"status\":99,\"rate\":2,\"delay_ms\":-1,"
                           "\"x\":1}");
    CHECK_INT(status_of(r), 422);
    CHECK(strstr(r, "/problems/validation-failed") != NULL);
    CHECK(strstr(r, "\"field\":\"x\",\"code\":\"unknown-field\"") != NULL);
    CHECK(strstr(r, "\"field\":\"rate\",\"code\":\"out-of-range\"") != NULL);
    CHECK(strstr(r, "\"field\":\"delay_ms\",\"code\":\"out-of-range\"") !=
          NULL);
    CHECK(strstr(r, "\"field\":\"status\",\"code\":\"out-of-range\"") != NULL);
    r = put_faults(l.port, "{\"rate\":\"1\"}");
    CHECK_INT(status_of(r), 422);
    CHECK(strstr(r, "\"code\":\"required\"") != NULL);
    CHECK(strstr(r, "\"code\":\"wrong-type\"") != NULL);
    /* The last good setting stays. */
    r = roundtrip(l.port,
                  "GET /internal/v1/faults HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(strstr(r, "\"status\":500") != NULL);
    CHECK(strstr(r, "\"delay_ms\":200") != NULL);

    r = put_faults(l.port, "{\"status\":0}");
    CHECK_INT(status_of(r), 200);
    r = roundtrip(l.port, "GET /things/1 HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_INT(status_of(r), 200);
    CHECK_INT(live_stop(&l), ERR_OK);
}

HARNESS_MAIN(T(route_literal_and_params), T(route_bad_patterns_refused),
             T(route_root_has_no_segment), T(live_routes_params_and_problems),
             T(live_request_id_kept_or_made), T(live_json_bodies),
             T(live_size_limits), T(live_etag_and_304),
             T(live_deferred_answer_and_gone_client),
             T(live_deferred_then_pipelined_requests_served_in_order),
             T(live_max_connections_waits_in_backlog),
             T(live_slow_client_cut_off_others_served),
             T(live_graceful_stop_finishes_in_flight),
             T(tasks_run_on_their_thread_ticks_and_holds),
             T(live_metrics_count_requests_by_route_and_class),
             T(live_metrics_see_a_stalled_event_loop),
             T(live_request_headers_and_peer),
             T(live_peer_of_another_loopback_address),
             T(live_proxied_answer_drops_hop_by_hop),
             T(live_timers_fire_once_in_order_and_cancel),
             T(live_timers_many_in_deadline_order), T(live_deadlines),
             T(live_fault_switch))
