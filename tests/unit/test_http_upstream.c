/*
 * test_http_upstream.c - the asynchronous upstream client against real
 * sockets on loopback: calls are made on the loop threads of a real
 * http_server, to a hand-written upstream whose behaviour each test picks
 * (answer, stay silent, answer too much, drop a reused connection...).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/err.h"
#include "harness.h"
#include "http/internal.h"
#include "http/upstream.h"

/* --- a scripted upstream ------------------------------------------------- */

enum fake_mode {
    FAKE_ECHO,        /* 200, the request's body (or "hello") and facts */
    FAKE_SILENT,      /* reads, never answers */
    FAKE_BIG,         /* Content-Length: FAKE_BIG_LEN */
    FAKE_BIG_CHUNKED, /* FAKE_BIG_LEN bytes in chunks, no length */
    FAKE_CHUNKED,     /* "hello" in two chunks */
    FAKE_DROP_SECOND, /* closes a connection at its second request */
    FAKE_PARTIAL,     /* half a status line, then silence */
    FAKE_SCRIPT,      /* f->script as given; closes after it if script_close */
    FAKE_ECHO_CLOSE,  /* as FAKE_ECHO, then closes the connection at once */
};

#define FAKE_CONNS   256
#define FAKE_BUF     16384
#define FAKE_BIG_LEN 100000

struct fake_conn {
    int fd;
    size_t len;
    int requests;
    char buf[FAKE_BUF];
};

struct fake {
    int listen_fd;
    int port;
    pthread_t tid;
    atomic_bool stop;
    atomic_int mode;
    atomic_int accepts, closes, requests;
    pthread_mutex_t lock;
    char last_head[FAKE_BUF]; /* the last request's head, under lock */
    const char *script;       /* FAKE_SCRIPT's answer, set before a call */
    bool script_close;
    struct fake_conn conns[FAKE_CONNS];
};

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        /* The client went away (a cancel, a limit): drop the rest. */
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* The value of header name (with ": ") in head, copied into out. */
static void head_value(const char *head, const char *name, char *out,
                       size_t cap)
{
    const char *p = strcasestr(head, name);

    out[0] = '\0';
    if (p == NULL)
        return;
    p += strlen(name);
    size_t n = strcspn(p, "\r");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

static void fake_answer(struct fake *f, struct fake_conn *c, const char *head,
                        const char *body, size_t body_len)
{
    char out[FAKE_BUF], method[16] = "", target[256] = "", host[128],
                        custom[128];
    int mode = atomic_load(&f->mode);
    size_t n;

    sscanf(head, "%15s %255s", method, target);
    head_value(head, "\r\nhost: ", host, sizeof(host));
    head_value(head, "\r\nx-custom: ", custom, sizeof(custom));
    switch (mode) {
    case FAKE_ECHO:
    case FAKE_ECHO_CLOSE:
    case FAKE_DROP_SECOND:
        if (body_len == 0) {
            body = "hello";
            body_len = 5;
        }
        n = (size_t)snprintf(out, sizeof(out),
                             "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             "X-Method: %s\r\nX-Target: %s\r\nX-Host: %s\r\n"
                             "X-Custom: %s\r\nContent-Length: %zu\r\n\r\n",
                             method, target, host, custom, body_len);
        write_all(c->fd, out, n);
        write_all(c->fd, body, body_len);
        return;
    case FAKE_BIG:
    case FAKE_BIG_CHUNKED: {
        static char big[FAKE_BIG_LEN];
        memset(big, 'x', sizeof(big));
        if (mode == FAKE_BIG) {
            n = (size_t)snprintf(
                out, sizeof(out),
                "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", FAKE_BIG_LEN);
            write_all(c->fd, out, n);
            write_all(c->fd, big, sizeof(big));
            return;
        }
        const char *h = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        write_all(c->fd, h, strlen(h));
        for (int i = 0; i < 10; i++) {
            n = (size_t)snprintf(out, sizeof(out), "%x\r\n", FAKE_BIG_LEN / 10);
            write_all(c->fd, out, n);
            write_all(c->fd, big, FAKE_BIG_LEN / 10);
            write_all(c->fd, "\r\n", 2);
        }
        write_all(c->fd, "0\r\n\r\n", 5);
        return;
    }
    case FAKE_CHUNKED: {
        const char *a = "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n"
                        "\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
        write_all(c->fd, a, strlen(a));
        return;
    }
    case FAKE_PARTIAL: write_all(c->fd, "HTTP/1.1 200 O", 14); return;
    case FAKE_SCRIPT: write_all(c->fd, f->script, strlen(f->script)); return;
    default: return;
    }
}

/* One whole request at the start of c->buf: handles and consumes it. */
static bool fake_take_request(struct fake *f, struct fake_conn *c)
{
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    char head[FAKE_BUF], cl[32];

    if (end == NULL)
        return false;
    size_t head_len = (size_t)(end + 4 - c->buf);
    memcpy(head, c->buf, head_len);
    head[head_len] = '\0';
    head_value(head, "\r\ncontent-length: ", cl, sizeof(cl));
    size_t body_len = cl[0] != '\0' ? strtoul(cl, NULL, 10) : 0;
    if (c->len < head_len + body_len)
        return false;

    c->requests++;
    atomic_fetch_add(&f->requests, 1);
    pthread_mutex_lock(&f->lock);
    memcpy(f->last_head, head, head_len + 1);
    pthread_mutex_unlock(&f->lock);
    if (atomic_load(&f->mode) == FAKE_DROP_SECOND && c->requests == 2) {
        close(c->fd);
        c->fd = -1;
        atomic_fetch_add(&f->closes, 1);
        return false;
    }
    char body[FAKE_BUF];
    memcpy(body, c->buf + head_len, body_len);
    fake_answer(f, c, head, body, body_len);
    int mode = atomic_load(&f->mode);
    if (mode == FAKE_ECHO_CLOSE || (mode == FAKE_SCRIPT && f->script_close)) {
        close(c->fd);
        c->fd = -1;
        atomic_fetch_add(&f->closes, 1);
        return false;
    }
    memmove(c->buf, c->buf + head_len + body_len, c->len - head_len - body_len);
    c->len -= head_len + body_len;
    return true;
}

static void fake_accept(struct fake *f)
{
    int fd = accept(f->listen_fd, NULL, NULL);

    if (fd < 0)
        return;
    atomic_fetch_add(&f->accepts, 1);
    for (int i = 0; i < FAKE_CONNS; i++) {
        if (f->conns[i].fd < 0) {
            f->conns[i].fd = fd;
            f->conns[i].len = 0;
            f->conns[i].requests = 0;
            return;
        }
    }
    close(fd);
}

static void fake_read(struct fake *f, struct fake_conn *c)
{
    ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);

    if (r <= 0) {
        close(c->fd);
        c->fd = -1;
        atomic_fetch_add(&f->closes, 1);
        return;
    }
    c->len += (size_t)r;
    while (c->fd >= 0 && fake_take_request(f, c))
        ;
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    struct pollfd pfds[FAKE_CONNS + 1];
    int idx[FAKE_CONNS + 1];

    while (!atomic_load(&f->stop)) {
        int n = 0;
        pfds[n++] = (struct pollfd){f->listen_fd, POLLIN, 0};
        for (int i = 0; i < FAKE_CONNS; i++) {
            if (f->conns[i].fd >= 0) {
                idx[n] = i;
                pfds[n++] = (struct pollfd){f->conns[i].fd, POLLIN, 0};
            }
        }
        if (poll(pfds, (nfds_t)n, 20) <= 0)
            continue;
        if (pfds[0].revents & POLLIN)
            fake_accept(f);
        for (int k = 1; k < n; k++)
            if (pfds[k].revents & (POLLIN | POLLHUP | POLLERR))
                fake_read(f, &f->conns[idx[k]]);
    }
    for (int i = 0; i < FAKE_CONNS; i++)
        if (f->conns[i].fd >= 0)
            close(f->conns[i].fd);
    close(f->listen_fd);
    return NULL;
}

/* Listens on ::1 when ipv6, else 127.0.0.1; NULL when ::1 is missing. */
static struct fake *fake_start_on(enum fake_mode mode, bool ipv6)
{
    struct fake *f = calloc(1, sizeof(*f));
    struct sockaddr_in a = {.sin_family = AF_INET};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    struct sockaddr *sa = ipv6 ? (struct sockaddr *)&a6 : (struct sockaddr *)&a;
    socklen_t len = ipv6 ? sizeof(a6) : sizeof(a);
    int one = 1;

    f->listen_fd = socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    setsockopt(f->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    inet_pton(AF_INET6, "::1", &a6.sin6_addr);
    if (bind(f->listen_fd, sa, len) != 0) {
        CHECK(ipv6);
        close(f->listen_fd);
        free(f);
        return NULL;
    }
    CHECK(listen(f->listen_fd, 512) == 0);
    getsockname(f->listen_fd, sa, &len);
    f->port = ntohs(ipv6 ? a6.sin6_port : a.sin_port);
    atomic_store(&f->mode, mode);
    pthread_mutex_init(&f->lock, NULL);
    for (int i = 0; i < FAKE_CONNS; i++)
        f->conns[i].fd = -1;
    pthread_create(&f->tid, NULL, fake_main, f);
    return f;
}

static struct fake *fake_start(enum fake_mode mode)
{
    return fake_start_on(mode, false);
}

static void fake_stop(struct fake *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->tid, NULL);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

/* A port nothing listens on. */
static int dead_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* --- the client side: a real server whose loop threads make the calls ---- */

struct loops {
    struct http_server *server;
    pthread_t tid;
};

static void *loops_run(void *arg)
{
    struct loops *l = arg;

    http_server_run(l->server);
    return NULL;
}

static void loops_start(struct loops *l, int threads)
{
    struct http_server_config cfg = {
        .name = "upstream-test",
        .host = "127.0.0.1",
        .port = 0,
        .threads = threads,
        .max_connections = 100,
        .max_body_bytes = 1024,
        .max_header_bytes = 4096,
        .request_timeout_ms = 5000,
        .shutdown_timeout_ms = 2000,
    };

    CHECK_INT(http_server_create(&cfg, NULL, 0, &l->server), ERR_OK);
    pthread_create(&l->tid, NULL, loops_run, l);
}

static void loops_stop(struct loops *l)
{
    http_server_stop(l->server);
    pthread_join(l->tid, NULL);
    http_server_free(l->server);
}

/* One call: what to send, and what came back. */
struct job {
    struct http_upstream *u;
    int thread;
    const char *method;
    char target[64];
    const char *body;
    int connect_ms, first_byte_ms, total_ms;
    size_t max_bytes;
    bool cancel;  /* cancel at once, after sending */
    bool refused; /* send returned NULL */
    /* In done, try a timer and another call (both refused at stop). */
    struct http_server *probe;
    bool probe_timer_refused, probe_send_refused;

    atomic_int done; /* times done ran */
    enum http_upstream_result result;
    int status;
    bool first_byte;
    char body_got[256];
    size_t body_len;
    char headers[1024]; /* "name=value;" ... */
    int64_t sent_ms, done_ms;
};

static void probe_noop(void *arg)
{
    (void)arg;
}

static void job_done(void *arg, enum http_upstream_result result,
                     const struct http_upstream_response *resp, bool first_byte)
{
    struct job *j = arg;

    j->result = result;
    j->first_byte = first_byte;
    j->done_ms = http_mono_ms();
    if (resp != NULL) {
        j->status = resp->status;
        j->body_len = resp->body_len;
        snprintf(j->body_got, sizeof(j->body_got), "%.*s",
                 (int)(resp->body_len < 200 ? resp->body_len : 200),
                 resp->body);
        size_t n = 0;
        for (size_t i = 0; i < resp->nheaders && n < sizeof(j->headers); i++)
            n += (size_t)snprintf(
                j->headers + n, sizeof(j->headers) - n, "%.*s=%.*s;",
                (int)resp->headers[i].name_len, resp->headers[i].name,
                (int)resp->headers[i].value_len, resp->headers[i].value);
    }
    if (j->probe != NULL) {
        struct http_upstream_request rq = {
            .method = "GET",
            .target = "/again",
            .connect_timeout_ms = 100,
            .first_byte_timeout_ms = 100,
            .total_timeout_ms = 100,
        };
        j->probe_timer_refused =
            http_timer_start(j->probe, j->thread, 0, probe_noop, NULL) == NULL;
        j->probe_send_refused =
            http_upstream_send(j->u, j->thread, &rq, job_done, NULL) == NULL;
    }
    atomic_fetch_add(&j->done, 1);
}

static void job_send(void *thread_data, void *arg)
{
    struct job *j = arg;
    static const struct http_header_kv hs[] = {
        {"X-Custom", 8, "abc", 3},
        {"Host", 4, "evil.example", 12},
        {"Connection", 10, "close", 5},
        {"X-Bad", 5, "a\r\nInjected: 1", 14},
    };
    struct http_upstream_request rq = {
        .method = j->method,
        .target = j->target,
        .headers = hs,
        .nheaders = sizeof(hs) / sizeof(hs[0]),
        .body = j->body,
        .body_len = j->body != NULL ? strlen(j->body) : 0,
        .connect_timeout_ms = j->connect_ms,
        .first_byte_timeout_ms = j->first_byte_ms,
        .total_timeout_ms = j->total_ms,
        .max_response_bytes = j->max_bytes,
    };

    (void)thread_data;
    j->sent_ms = http_mono_ms();
    struct http_upstream_call *c =
        http_upstream_send(j->u, j->thread, &rq, job_done, j);
    if (c == NULL) {
        j->refused = true;
        return;
    }
    /* done never runs inside send. */
    CHECK_INT(atomic_load(&j->done), 0);
    if (j->cancel)
        http_upstream_cancel(c);
}

static void job_init(struct job *j, struct http_upstream *u, int thread,
                     const char *method, const char *target)
{
    memset(j, 0, sizeof(*j));
    j->u = u;
    j->thread = thread;
    j->method = method;
    snprintf(j->target, sizeof(j->target), "%s", target);
    j->connect_ms = 1000;
    j->first_byte_ms = 2000;
    j->total_ms = 5000;
    j->max_bytes = 1 << 20;
    j->result = -1;
}

static bool wait_done(struct job *j, int ms)
{
    for (int i = 0; i < ms / 5; i++) {
        if (atomic_load(&j->done) > 0)
            return true;
        usleep(5000);
    }
    return atomic_load(&j->done) > 0;
}

static void run_job(struct loops *l, struct job *j)
{
    CHECK(http_server_post(l->server, j->thread, job_send, j));
    CHECK(wait_done(j, 10000));
}

/* --- tests --------------------------------------------------------------- */

TEST(create_validates)
{
    struct loops l;
    struct http_upstream *u;

    loops_start(&l, 1);
    CHECK_INT(http_upstream_create(l.server, "localhost", 80, 4, &u),
              ERR_INVALID);
    CHECK_INT(http_upstream_create(l.server, "127.0.0.1", 0, 4, &u),
              ERR_INVALID);
    CHECK_INT(http_upstream_create(l.server, "127.0.0.1", 65536, 4, &u),
              ERR_INVALID);
    CHECK_INT(http_upstream_create(l.server, "127.0.0.1", 80, 0, &u),
              ERR_INVALID);
    CHECK_INT(http_upstream_create(l.server, "127.0.0.1", 80,
                                   HTTP_UPSTREAM_IDLE_MAX + 1, &u),
              ERR_INVALID);
    CHECK_INT(http_upstream_create(l.server, "::1", 8080, 4, &u), ERR_OK);
    CHECK_STR(http_upstream_name(u), "[::1]:8080");
    http_upstream_release(u);
    CHECK_INT(http_upstream_create(l.server, "10.0.0.1", 80, 1, &u), ERR_OK);
    CHECK_STR(http_upstream_name(u), "10.0.0.1:80");
    http_upstream_retain(u);
    http_upstream_release(u);
    http_upstream_release(u);
    loops_stop(&l);
}

TEST(instance_of_a_server_that_never_ran_is_freed)
{
    struct http_server_config cfg = {
        .name = "never-ran",
        .host = "127.0.0.1",
        .threads = 2,
        .max_connections = 10,
        .max_body_bytes = 1024,
        .max_header_bytes = 4096,
        .request_timeout_ms = 1000,
    };
    struct http_server *s;
    struct http_upstream *u;

    /* LeakSanitizer tells whether the instance was freed. */
    CHECK_INT(http_server_create(&cfg, NULL, 0, &s), ERR_OK);
    CHECK_INT(http_upstream_create(s, "127.0.0.1", 9, 2, &u), ERR_OK);
    http_upstream_release(u);
    http_server_free(s);
}

TEST(get_and_post_round_trip)
{
    struct fake *f = fake_start(FAKE_ECHO);
    struct loops l;
    struct http_upstream *u;
    struct job j;
    char host[64];

    loops_start(&l, 2);
    CHECK_INT(http_upstream_create(l.server, "127.0.0.1", f->port, 8, &u),
              ERR_OK);
    snprintf(host, sizeof(host), "x-host=127.0.0.1:%d;", f->port);

    job_init(&j, u, 0, "GET", "/v1/shows/7?x=1");
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_OK);
    CHECK(j.first_byte);
    CHECK_INT(j.status, 200);
    CHECK_STR(j.body_got, "hello");
    CHECK_INT(j.body_len, 5);
    CHECK(strstr(j.headers, "content-type=text/plain;") != NULL);
    CHECK(strstr(j.headers, "x-method=GET;") != NULL);
    CHECK(strstr(j.headers, "x-target=/v1/shows/7?x=1;") != NULL);
    /* The client's own Host; the caller's custom header as given. */
    CHECK(strstr(j.headers, host) != NULL);
    CHECK(strstr(j.headers, "x-custom=abc;") != NULL);
    pthread_mutex_lock(&f->lock);
    CHECK(strcasestr(f->last_head, "connection: keep-alive\r\n") != NULL);
    CHECK(strcasestr(f->last_head, "connection: close") == NULL);
    CHECK(strcasestr(f->last_head, "evil") == NULL);
    CHECK(strcasestr(f->last_head, "injected") == NULL);
    CHECK(strcasestr(f->last_head, "content-length") == NULL);
    pthread_mutex_unlock(&f->lock);

    job_init(&j, u, 1, "POST", "/echo");
    j.body = "{\"seats\":[\"A1\"]}";
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_OK);
    CHECK_INT(j.status, 200);
    CHECK_STR(j.body_got, "{\"seats\":[\"A1\"]}");
    CHECK(strstr(j.headers, "x-method=POST;") != NULL);
    pthread_mutex_lock(&f->lock);
    CHECK(strcasestr(f->last_head, "content-length: 16\r\n") != NULL);
    pthread_mutex_unlock(&f->lock);

    /* Chunked answers are read whole. */
    atomic_store(&f->mode, FAKE_CHUNKED);
    job_init(&j, u, 0, "GET", "/chunks");
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_OK);
    CHECK_INT(j.status, 201);
    CHECK_STR(j.body_got, "hello");

    http_upstream_release(u);
    loops_stop(&l);
    fake_stop(f);
}

TEST(keep_alive_reuses_one_connection)
{
    struct fake *f = fake_start(FAKE_ECHO);
    struct loops l;
    struct http_upstream *u;
    struct job j;

    loops_start(&l, 1);
    CHECK_INT(http_upstream_create(l.server, "127.0.0.1", f->port, 4, &u),
              ERR_OK);
    for (int i = 0; i < 3; i++) {
        job_init(&j, u, 0, "GET", "/again");
        run_job(&l, &j);
        CHECK_INT(j.result, HTTP_UPSTREAM_OK);
    }
    CHECK_INT(atomic_load(&f->requests), 3);
    CHECK_INT(atomic_load(&f->accepts), 1);
    http_upstream_release(u);
    loops_stop(&l);
    fake_stop(f);
}

TEST(idle_connections_are_bounded)
{
    struct fake *f = fake_start(FAKE_ECHO);
    struct loops l;
    struct http_upstream *u;
    static struct job js[4];

    loops_start(&l, 1);
    CHECK_INT(http_upstream_create(l.server, "127.0.0.1", f->port, 1, &u),
              ERR_OK);
    /* Four at once need four connections; only one may stay idle. */
    for (int i = 0; i < 4; i++) {
        job_init(&js[i], u, 0, "GET", "/many");
        CHECK(http_server_post(l.server, 0, job_send, &js[i]));
    }
    for (int i = 0; i < 4; i++) {
        CHECK(wait_done(&js[i], 5000));
        CHECK_INT(js[i].result, HTTP_UPSTREAM_OK);
    }
    CHECK_INT(atomic_load(&f->accepts), 4);
    for (int i = 0; i < 100 && atomic_load(&f->closes) < 3; i++)
        usleep(10000);
    CHECK_INT(atomic_load(&f->closes), 3);
    job_init(&js[0], u, 0, "GET", "/kept");
    run_job(&l, &js[0]);
    CHECK_INT(js[0].result, HTTP_UPSTREAM_OK);
    CHECK_INT(atomic_load(&f->accepts), 4);
    http_upstream_release(u);
    loops_stop(&l);
    fake_stop(f);
}

TEST(reused_connection_closed_by_peer_is_retried_once)
{
    struct fake *f = fake_start(FAKE_DROP_SECOND);
    struct loops l;
    struct http_upstream *u;
    struct job j;

    loops_start(&l, 1);
    CHECK_INT(http_upstream_create(l.server, "127.0.0.1", f->port, 4, &u),
              ERR_OK);
    job_init(&j, u, 0, "GET", "/first");
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_OK);
    /* The pooled connection is dropped at the second request: the call
     * goes again on a new connection and succeeds. */
    job_init(&j, u, 0, "POST", "/second");
    j.body = "once";
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_OK);
    CHECK_STR(j.body_got, "once");
    CHECK_INT(atomic_load(&f->accepts), 2);
    CHECK_INT(atomic_load(&f->requests), 3);
    http_upstream_release(u);
    loops_stop(&l);
    fake_stop(f);
}

TEST(ipv6_round_trip_and_retry)
{
    struct fake *f = fake_start_on(FAKE_DROP_SECOND, true);
    struct loops l;
    struct http_upstream *u;
    struct job j;
    char host[64];

    if (f == NULL) {
        fprintf(stderr, "  (no ::1 here: IPv6 not tested)\n");
        return;
    }
    loops_start(&l, 1);
    CHECK_INT(http_upstream_create(l.server, "::1", f->port, 4, &u), ERR_OK);
    snprintf(host, sizeof(host), "x-host=[::1]:%d;", f->port);
    job_init(&j, u, 0, "GET", "/six");
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_OK);
    CHECK(strstr(j.headers, host) != NULL);
    /* The retry's fresh connection is made to the IPv6 address too. */
    job_init(&j, u, 0, "GET", "/six-again");
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_OK);
    CHECK_INT(atomic_load(&f->accepts), 2);
    http_upstream_release(u);
    loops_stop(&l);
    fake_stop(f);
}

TEST(head_answer_has_no_body)
{
    struct fake *f = fake_start(FAKE_ECHO);
    struct loops l;
    struct http_upstream *u;
    struct job j;

    loops_start(&l, 1);
    CHECK_INT(http_upstream_create(l.server, "127.0.0.1", f->port, 4, &u),
              ERR_OK);
    /* The fake wrongly sends a body to HEAD too: the answer ends at its
     * head all the same (the stray bytes make the client close the
     * connection rather than keep it). */
    job_init(&j, u, 0, "HEAD", "/head");
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_OK);
    CHECK_INT(j.status, 200);
    CHECK_INT(j.body_len, 0);
    CHECK(strstr(j.headers, "content-length=5;") != NULL);
    http_upstream_release(u);
    loops_stop(&l);
    fake_stop(f);
}

TEST(connect_refused)
{
    struct loops l;
    struct http_upstream *u;
    struct job j;

    loops_start(&l, 1);
    CHECK_INT(http_upstream_create(l.server, "127.0.0.1", dead_port(), 4, &u),
              ERR_OK);
    job_init(&j, u, 0, "GET", "/nobody");
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_CONNECT);
    CHECK(!j.first_byte);
    CHECK_INT(atomic_load(&j.done), 1);
    http_upstream_release(u);
    loops_stop(&l);
}

TEST(connect_that_hangs_fails_within_its_timeout)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    int lfd = socket(AF_INET, SOCK_STREAM, 0), fill[3];
    struct loops l;
    struct http_upstream *u;
    struct job j;

    /* A listener whose accept queue is full drops new SYNs, so a
     * connect to it neither succeeds nor fails. */
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    CHECK(bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0);
    CHECK(listen(lfd, 0) == 0);
    getsockname(lfd, (struct sockaddr *)&a, &len);
    for (int i = 0; i < 3; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof(a));
    }
    usleep(50 * 1000);

    loops_start(&l, 1);
    CHECK_INT(
        http_upstream_create(l.server, "127.0.0.1", ntohs(a.sin_port), 4, &u),
        ERR_OK);
    job_init(&j, u, 0, "POST", "/nowhere");
    j.body = "x";
    j.connect_ms = 200;
    j.total_ms = 5000;
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_CONNECT);
    CHECK(!j.first_byte);
    CHECK(j.done_ms - j.sent_ms >= 200);
    CHECK(j.done_ms - j.sent_ms < 3000);
    http_upstream_release(u);
    loops_stop(&l);
    for (int i = 0; i < 3; i++)
        close(fill[i]);
    close(lfd);
}

TEST(silent_upstream_times_out_before_first_byte)
{
    struct fake *f = fake_start(FAKE_SILENT);
    struct loops l;
    struct http_upstream *u;
    struct job j;

    loops_start(&l, 1);
    CHECK_INT(http_upstream_create(l.server, "127.0.0.1", f->port, 4, &u),
              ERR_OK);
    job_init(&j, u, 0, "GET", "/silence");
    j.first_byte_ms = 300;
    j.total_ms = 3000;
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_TIMEOUT);
    CHECK(!j.first_byte);
    CHECK(j.done_ms - j.sent_ms >= 300);
    CHECK(j.done_ms - j.sent_ms < 3000);

    /* Half a status line counts as a first byte; then the total limit. */
    atomic_store(&f->mode, FAKE_PARTIAL);
    job_init(&j, u, 0, "GET", "/partial");
    j.first_byte_ms = 200;
    j.total_ms = 600;
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_TIMEOUT);
    CHECK(j.first_byte);
    CHECK(j.done_ms - j.sent_ms >= 600);
    CHECK(j.done_ms - j.sent_ms < 3000);
    CHECK_INT(atomic_load(&j.done), 1);
    http_upstream_release(u);
    loops_stop(&l);
    fake_stop(f);
}

TEST(answer_over_the_limit_is_toobig)
{
    struct fake *f = fake_start(FAKE_BIG);
    struct loops l;
    struct http_upstream *u;
    struct job j;

    loops_start(&l, 1);
    CHECK_INT(http_upstream_create(l.server, "127.0.0.1", f->port, 4, &u),
              ERR_OK);
    job_init(&j, u, 0, "GET", "/big");
    j.max_bytes = 1000;
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_TOOBIG);
    CHECK(j.first_byte);

    /* Without a length, counted as it streams. */
    atomic_store(&f->mode, FAKE_BIG_CHUNKED);
    job_init(&j, u, 0, "GET", "/big-chunked");
    j.max_bytes = 1000;
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_TOOBIG);

    /* At the limit exactly, it passes. */
    atomic_store(&f->mode, FAKE_BIG);
    job_init(&j, u, 0, "GET", "/big");
    j.max_bytes = FAKE_BIG_LEN;
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_OK);
    CHECK_INT(j.body_len, FAKE_BIG_LEN);
    http_upstream_release(u);
    loops_stop(&l);
    fake_stop(f);
}

TEST(cancelled_call_never_reports)
{
    struct fake *f = fake_start(FAKE_ECHO);
    struct loops l;
    struct http_upstream *u;
    struct job j;

    loops_start(&l, 1);
    CHECK_INT(http_upstream_create(l.server, "127.0.0.1", f->port, 4, &u),
              ERR_OK);
    /* Once with a new connection, once with a pooled one. */
    for (int i = 0; i < 2; i++) {
        job_init(&j, u, 0, "GET", "/cancelled");
        j.cancel = true;
        CHECK(http_server_post(l.server, 0, job_send, &j));
        usleep(300 * 1000);
        CHECK_INT(atomic_load(&j.done), 0);
        CHECK(!j.refused);
        job_init(&j, u, 0, "GET", "/after");
        run_job(&l, &j);
        CHECK_INT(j.result, HTTP_UPSTREAM_OK);
    }
    http_upstream_release(u);
    loops_stop(&l);
    fake_stop(f);
}

#define MANY 200

TEST(many_concurrent_calls_on_two_threads)
{
    struct fake *f = fake_start(FAKE_ECHO);
    struct loops l;
    struct http_upstream *u;
    static struct job js[MANY];
    static char bodies[MANY][32];

    loops_start(&l, 2);
    CHECK_INT(http_upstream_create(l.server, "127.0.0.1", f->port, 16, &u),
              ERR_OK);
    for (int i = 0; i < MANY; i++) {
        job_init(&js[i], u, i % 2, "POST", "/many");
        snprintf(bodies[i], sizeof(bodies[i]), "call-%d", i);
        js[i].body = bodies[i];
        CHECK(http_server_post(l.server, i % 2, job_send, &js[i]));
    }
    for (int i = 0; i < MANY; i++) {
        CHECK(wait_done(&js[i], 10000));
        CHECK_INT(js[i].result, HTTP_UPSTREAM_OK);
        CHECK_STR(js[i].body_got, bodies[i]);
        CHECK_INT(atomic_load(&js[i].done), 1);
    }
    CHECK_INT(atomic_load(&f->requests), MANY);
    CHECK(atomic_load(&f->accepts) <= MANY);
    http_upstream_release(u);
    loops_stop(&l);
    fake_stop(f);
}

TEST(release_during_call_and_stop_ends_calls)
{
    struct fake *f = fake_start(FAKE_SILENT);
    struct loops l;
    struct http_upstream *u;
    struct job j;

    loops_start(&l, 2);
    CHECK_INT(http_upstream_create(l.server, "127.0.0.1", f->port, 4, &u),
              ERR_OK);
    job_init(&j, u, 1, "GET", "/forever");
    j.first_byte_ms = 60000;
    j.total_ms = 60000;
    j.probe = l.server;
    CHECK(http_server_post(l.server, 1, job_send, &j));
    usleep(100 * 1000);
    /* The call holds its own reference. */
    http_upstream_release(u);
    usleep(100 * 1000);
    CHECK_INT(atomic_load(&j.done), 0);
    /* Stopping the loops ends the call; its caller hears of it once. */
    loops_stop(&l);
    CHECK_INT(atomic_load(&j.done), 1);
    CHECK_INT(j.result, HTTP_UPSTREAM_IO);
    /* What its caller tries then is refused, not left hanging. */
    CHECK(j.probe_timer_refused);
    CHECK(j.probe_send_refused);
    fake_stop(f);
}

/* Open file descriptors of this process: a connection either side holds
 * open shows up here. */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;

    CHECK(d != NULL);
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

static void note_ran(void *thread_data, void *arg)
{
    (void)thread_data;
    atomic_store((atomic_bool *)arg, true);
}

/* Returns once loop thread 0 runs tasks, that is, once it is set up. */
static void loops_wait_ready(struct loops *l)
{
    atomic_bool ran = false;

    CHECK(http_server_post(l->server, 0, note_ran, &ran));
    for (int i = 0; i < 1000 && !atomic_load(&ran); i++)
        usleep(5000);
    CHECK(atomic_load(&ran));
}

struct framing_case {
    const char *script;
    bool close_after;
    enum http_upstream_result result;
    int status;
    const char *body;
    bool kept; /* the connection serves the next call */
};

TEST(answers_are_framed_every_way)
{
    static const struct framing_case cases[] = {
        {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
         "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
         false, HTTP_UPSTREAM_OK, 200, "hello", true},
        {"HTTP/1.1 204 No Content\r\n\r\n", false, HTTP_UPSTREAM_OK, 204, "",
         true},
        {"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false,
         HTTP_UPSTREAM_OK, 304, "", true},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         "3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\nX-Trailer: 1\r\n\r\n",
         false, HTTP_UPSTREAM_OK, 200, "hello", true},
        {"HTTP/1.0 200 OK\r\n\r\nuntil the close", true, HTTP_UPSTREAM_OK, 200,
         "until the close", false},
        {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
         false, HTTP_UPSTREAM_OK, 200, "ok", false},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n"
         "\r\nok",
         false, HTTP_UPSTREAM_OK, 200, "ok", true},
        /* Bytes past the end of the answer: the connection is not reused. */
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokSTRAY", false,
         HTTP_UPSTREAM_OK, 200, "ok", false},
        {"HTTP/1.1 2x0 OK\r\n\r\n", false, HTTP_UPSTREAM_IO, 0, NULL, false},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello", false,
         HTTP_UPSTREAM_IO, 0, NULL, false},
        {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
         "hello!",
         false, HTTP_UPSTREAM_IO, 0, NULL, false},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false,
         HTTP_UPSTREAM_IO, 0, NULL, false},
        /* Closed in the middle of a body of known length. */
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", true,
         HTTP_UPSTREAM_IO, 0, NULL, false},
    };
    struct fake *f = fake_start(FAKE_SCRIPT);
    struct loops l;
    struct job j;

    loops_start(&l, 1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct framing_case *fc = &cases[i];
        struct http_upstream *u;
        int accepts = atomic_load(&f->accepts);

        /* A fresh instance: its first call opens a connection. */
        CHECK_INT(http_upstream_create(l.server, "127.0.0.1", f->port, 4, &u),
                  ERR_OK);
        atomic_store(&f->mode, FAKE_SCRIPT);
        f->script = fc->script;
        f->script_close = fc->close_after;
        job_init(&j, u, 0, "GET", "/framed");
        run_job(&l, &j);
        if ((int)j.result != (int)fc->result)
            fprintf(stderr, "  case %zu: result %d\n", i, (int)j.result);
        CHECK_INT(j.result, fc->result);
        CHECK(j.first_byte);
        if (fc->result == HTTP_UPSTREAM_OK) {
            CHECK_INT(j.status, fc->status);
            CHECK_STR(j.body_got, fc->body);
        }

        /* The next call reuses the connection only when it was kept. */
        atomic_store(&f->mode, FAKE_ECHO);
        job_init(&j, u, 0, "GET", "/next");
        run_job(&l, &j);
        CHECK_INT(j.result, HTTP_UPSTREAM_OK);
        CHECK_STR(j.body_got, "hello");
        if (atomic_load(&f->accepts) - accepts != (fc->kept ? 1 : 2))
            fprintf(stderr, "  case %zu: kept is wrong\n", i);
        CHECK_INT(atomic_load(&f->accepts) - accepts, fc->kept ? 1 : 2);
        http_upstream_release(u);
    }
    loops_stop(&l);
    fake_stop(f);
}

TEST(idle_connections_closed_by_peer_or_by_age_are_dropped)
{
    struct fake *f = fake_start(FAKE_ECHO_CLOSE);
    struct loops l;
    struct http_upstream *u;
    struct job j;
    int fds;

    loops_start(&l, 1);
    CHECK_INT(http_upstream_create(l.server, "127.0.0.1", f->port, 4, &u),
              ERR_OK);
    loops_wait_ready(&l);
    fds = count_fds();

    /* The peer closes an idle connection: the client hears it while the
     * connection sits in its pool, and closes its end at once. */
    job_init(&j, u, 0, "GET", "/then-close");
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_OK);
    for (int i = 0; i < 100 && count_fds() != fds; i++)
        usleep(10000);
    CHECK_INT(count_fds(), fds);
    /* The next call needs no retry: it opens a new connection. */
    job_init(&j, u, 0, "GET", "/fresh");
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_OK);
    CHECK_INT(atomic_load(&f->accepts), 2);
    CHECK_INT(atomic_load(&f->requests), 2);

    /* An idle connection is closed after HTTP_UPSTREAM_IDLE_MS. */
    atomic_store(&f->mode, FAKE_ECHO);
    for (int i = 0; i < 100 && count_fds() != fds; i++)
        usleep(10000);
    job_init(&j, u, 0, "GET", "/kept");
    run_job(&l, &j);
    CHECK_INT(j.result, HTTP_UPSTREAM_OK);
    usleep(200 * 1000);
    CHECK_INT(count_fds(), fds + 2); /* both ends, client and fake */
    usleep((HTTP_UPSTREAM_IDLE_MS + 1000) * 1000);
    CHECK_INT(count_fds(), fds);
    CHECK_INT(atomic_load(&f->closes), 3);
    http_upstream_release(u);
    loops_stop(&l);
    fake_stop(f);
}

TEST(calls_are_counted_by_result)
{
    char *text = NULL;
    size_t len = 0;

    /* Earlier tests of this binary made calls of every kind. */
    CHECK_INT(metrics_render(metrics_process(), &text, &len), ERR_OK);
    CHECK(strstr(text, "marquee_http_upstream_calls_total{result=\"ok\"} ") !=
          NULL);
    CHECK(strstr(text, "marquee_http_upstream_calls_total{result=\"connect\"} "
                       "2\n") != NULL);
    CHECK(strstr(text, "marquee_http_upstream_calls_total{result=\"toobig\"} "
                       "2\n") != NULL);
    free(text);
}

HARNESS_MAIN(T(create_validates),
             T(instance_of_a_server_that_never_ran_is_freed),
             T(get_and_post_round_trip), T(keep_alive_reuses_one_connection),
             T(idle_connections_are_bounded),
             T(reused_connection_closed_by_peer_is_retried_once),
             T(ipv6_round_trip_and_retry), T(head_answer_has_no_body),
             T(connect_refused), T(connect_that_hangs_fails_within_its_timeout),
             T(silent_upstream_times_out_before_first_byte),
             T(answer_over_the_limit_is_toobig),
             T(cancelled_call_never_reports),
             T(many_concurrent_calls_on_two_threads),
             T(release_during_call_and_stop_ends_calls),
             T(answers_are_framed_every_way),
             T(idle_connections_closed_by_peer_or_by_age_are_dropped),
             T(calls_are_counted_by_result))
