/*
 * test_http_client.c - the blocking HTTP client against a scripted server:
 * a thread on a loopback socket that reads one request, keeps its bytes
 * for the test to check, and answers with exactly the bytes it is given
 * (or never answers), so framing, limits and failures can each be forced.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "harness.h"
#include "http/client.h"

/* How long the scripted server waits for anything before giving up. */
#define SRV_WAIT_MS 5000
#define SRV_REQ_MAX 8192

struct srv {
    int lfd, port, family;
    pthread_t tid;
    /* The script. */
    const char *reply;
    size_t reply_len;
    size_t split;     /* send reply[0..split), pause, then the rest */
    size_t filler;    /* bytes of 'x' sent after the reply */
    bool silent;      /* read the request, never answer */
    bool close_after; /* close after the reply, else wait for the client */
    /* What the client sent. */
    char req[SRV_REQ_MAX + 1];
    size_t req_len;
};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

static long long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool wait_readable(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};

    return poll(&pfd, 1, SRV_WAIT_MS) == 1;
}

/* Reads the head and, if it has a Content-Length, the body. */
static void srv_read_request(struct srv *s, int fd)
{
    size_t want = 0;
    bool have_head = false;

    while (s->req_len < SRV_REQ_MAX && wait_readable(fd)) {
        ssize_t n = recv(fd, s->req + s->req_len, SRV_REQ_MAX - s->req_len, 0);
        if (n <= 0)
            break;
        s->req_len += (size_t)n;
        s->req[s->req_len] = '\0';
        char *end = strstr(s->req, "\r\n\r\n");
        if (end != NULL && !have_head) {
            const char *cl = strstr(s->req, "Content-Length: ");
            have_head = true;
            want = (size_t)(end + 4 - s->req);
            if (cl != NULL && cl < end)
                want += strtoul(cl + 16, NULL, 10);
        }
        if (have_head && s->req_len >= want)
            break;
    }
}

static void srv_send(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void srv_send_filler(int fd, size_t n)
{
    static char xs[65536];

    memset(xs, 'x', sizeof(xs));
    while (n > 0) {
        size_t k = n < sizeof(xs) ? n : sizeof(xs);
        ssize_t w = send(fd, xs, k, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        n -= (size_t)w;
    }
}

/* Waits until the client closes its end, or SRV_WAIT_MS passes. */
static void srv_wait_close(int fd)
{
    char sink[4096];

    while (wait_readable(fd) && recv(fd, sink, sizeof(sink), 0) > 0)
        continue;
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    int fd = accept(s->lfd, NULL, NULL);

    if (fd < 0)
        return NULL;
    srv_read_request(s, fd);
    if (!s->silent && s->reply != NULL) {
        size_t first = s->split > 0 ? s->split : s->reply_len;
        srv_send(fd, s->reply, first);
        if (first < s->reply_len) {
            sleep_ms(30);
            srv_send(fd, s->reply + first, s->reply_len - first);
        }
        srv_send_filler(fd, s->filler);
    }
    if (s->silent || !s->close_after)
        srv_wait_close(fd);
    close(fd);
    return NULL;
}

/* Listens on a loopback port of family; false when that is impossible. */
static bool srv_start(struct srv *s, int family)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    int one = 1;

    s->family = family;
    s->lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->lfd < 0)
        return false;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (family == AF_INET6) {
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6,
                                  .sin6_addr = in6addr_loopback};
        memcpy(&ss, &a6, sizeof(a6));
        len = sizeof(a6);
    } else {
        struct sockaddr_in a4 = {.sin_family = AF_INET};
        a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        memcpy(&ss, &a4, sizeof(a4));
        len = sizeof(a4);
    }
    if (bind(s->lfd, (struct sockaddr *)&ss, len) != 0 ||
        listen(s->lfd, 8) != 0 ||
        getsockname(s->lfd, (struct sockaddr *)&ss, &len) != 0) {
        close(s->lfd);
        return false;
    }
    if (family == AF_INET6) {
        struct sockaddr_in6 a6;
        memcpy(&a6, &ss, sizeof(a6));
        s->port = ntohs(a6.sin6_port);
    } else {
        struct sockaddr_in a4;
        memcpy(&a4, &ss, sizeof(a4));
        s->port = ntohs(a4.sin_port);
    }
    CHECK(pthread_create(&s->tid, NULL, srv_main, s) == 0);
    return true;
}

static void srv_join(struct srv *s)
{
    pthread_join(s->tid, NULL);
    close(s->lfd);
}

static void srv_url(const struct srv *s, char *out, size_t size)
{
    if (s->family == AF_INET6)
        snprintf(out, size, "http://[::1]:%d", s->port);
    else
        snprintf(out, size, "http://127.0.0.1:%d", s->port);
}

/* Starts a server answering reply, runs a GET of path, joins the server. */
static int get_with(struct srv *s, const char *path, int timeout_ms,
                    struct http_client_response *r)
{
    char url[64];

    if (s->reply != NULL && s->reply_len == 0)
        s->reply_len = strlen(s->reply);
    CHECK(srv_start(s, AF_INET));
    srv_url(s, url, sizeof(url));
    int rc =
        http_client_request(url, "GET", path, NULL, NULL, 0, timeout_ms, r);
    srv_join(s);
    return rc;
}

static bool zeroed(const struct http_client_response *r)
{
    return r->status == 0 && r->body == NULL && r->len == 0 &&
           r->content_type[0] == '\0';
}

/* --- answers ------------------------------------------------------------- */

TEST(ok_with_content_length)
{
    struct srv s = {.reply = "HTTP/1.1 200 OK\r\n"
                             "Content-Type: application/json\r\n"
                             "Content-Length: 11\r\n"
                             "\r\n"
                             "{\"a\":\"bcd\"}"};
    struct http_client_response r;

    CHECK_INT(get_with(&s, "/v1/shows/7", 2000, &r), ERR_OK);
    CHECK_INT(r.status, 200);
    CHECK_INT(r.len, 11);
    CHECK_STR(r.body, "{\"a\":\"bcd\"}");
    CHECK_STR(r.content_type, "application/json");
    http_client_response_free(&r);
    CHECK(zeroed(&r));
    http_client_response_free(&r);
}

TEST(chunked_across_reads)
{
    static const char reply[] = "HTTP/1.1 200 OK\r\n"
                                "transfer-encoding: Chunked\r\n"
                                "content-type: text/plain\r\n"
                                "\r\n"
                                "5\r\nhello\r\n"
                                "7;name=value\r\n, world\r\n"
                                "A\r\n and more\n\r\n"
                                "0\r\n"
                                "Trailer-Field: x\r\n"
                                "\r\n";
    struct srv s = {.reply = reply, .split = 60};
    struct http_client_response r;

    CHECK_INT(get_with(&s, "/", 2000, &r), ERR_OK);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.body, "hello, world and more\n");
    CHECK_INT(r.len, 22);
    CHECK_STR(r.content_type, "text/plain");
    http_client_response_free(&r);
}

TEST(not_found_with_problem)
{
    static const char problem[] = "{\"type\":\"/problems/not-found\","
                                  "\"status\":404}";
    char reply[256];
    struct srv s = {.reply = reply};
    struct http_client_response r;

    snprintf(reply, sizeof(reply),
             "HTTP/1.1 404 Not Found\r\n"
             "Content-Type: application/problem+json\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(problem), problem);
    CHECK_INT(get_with(&s, "/v1/shows/999", 2000, &r), ERR_OK);
    CHECK_INT(r.status, 404);
    CHECK_STR(r.body, problem);
    CHECK_STR(r.content_type, "application/problem+json");
    http_client_response_free(&r);
}

/* The server keeps the connection open: the client must not wait for it. */
TEST(not_modified_and_no_content_have_no_body)
{
    static const char *const replies[] = {
        "HTTP/1.1 304 Not Modified\r\nETag: \"abc\"\r\n"
        "Content-Length: 99\r\n\r\n",
        "HTTP/1.1 204 No Content\r\n\r\n",
    };

    for (size_t i = 0; i < 2; i++) {
        struct srv s = {.reply = replies[i]};
        struct http_client_response r;
        long long t0 = mono_ms();

        CHECK_INT(get_with(&s, "/v1/shows/1", 3000, &r), ERR_OK);
        CHECK(mono_ms() - t0 < 1500);
        CHECK_INT(r.status, i == 0 ? 304 : 204);
        CHECK(r.body != NULL);
        CHECK_STR(r.body, "");
        CHECK_INT(r.len, 0);
        http_client_response_free(&r);
    }
}

TEST(interim_answers_skipped)
{
    struct srv s = {.reply = "HTTP/1.1 100 Continue\r\n\r\n"
                             "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n"
                             "\r\nok"};
    struct http_client_response r;

    CHECK_INT(get_with(&s, "/", 2000, &r), ERR_OK);
    CHECK_INT(r.status, 201);
    CHECK_STR(r.body, "ok");
    http_client_response_free(&r);
}

TEST(body_until_close)
{
    struct srv s = {.reply = "HTTP/1.0 200 OK\n\nuntil the end",
                    .close_after = true};
    struct http_client_response r;

    CHECK_INT(get_with(&s, "/", 2000, &r), ERR_OK);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.body, "until the end");
    http_client_response_free(&r);
}

TEST(body_of_exactly_the_limit)
{
    char reply[128];
    struct srv s = {.reply = reply, .filler = HTTP_CLIENT_BODY_MAX};
    struct http_client_response r;

    snprintf(reply, sizeof(reply),
             "HTTP/1.1 200 OK\r\nContent-Length: %u\r\n\r\n",
             HTTP_CLIENT_BODY_MAX);
    CHECK_INT(get_with(&s, "/", 5000, &r), ERR_OK);
    CHECK_INT(r.len, HTTP_CLIENT_BODY_MAX);
    CHECK(r.body[0] == 'x' && r.body[r.len - 1] == 'x' && r.body[r.len] == 0);
    http_client_response_free(&r);
}

/* --- failures ------------------------------------------------------------ */

TEST(refused_is_io)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    struct http_client_response r;
    char url[64];
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    /* A port bound but not listening refuses connections. */
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(fd >= 0);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(a.sin_port));
    memset(&r, 0xAB, sizeof(r));
    CHECK_INT(http_client_request(url, "GET", "/", NULL, NULL, 0, 2000, &r),
              ERR_IO);
    CHECK(zeroed(&r));
    close(fd);
}

TEST(silent_server_times_out)
{
    struct srv s = {.silent = true};
    struct http_client_response r;
    long long t0 = mono_ms();

    CHECK_INT(get_with(&s, "/", 300, &r), ERR_TIMEOUT);
    long long took = mono_ms() - t0;
    CHECK(took >= 290 && took < 1500);
    CHECK(zeroed(&r));
}

/* Half an answer, then nothing: the deadline covers the whole response. */
TEST(slow_body_times_out)
{
    struct srv s = {.reply = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
                             "abc"};
    struct http_client_response r;

    CHECK_INT(get_with(&s, "/", 300, &r), ERR_TIMEOUT);
    CHECK(zeroed(&r));
}

TEST(closed_early_is_io)
{
    static const char *const replies[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        "",
    };

    for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
        struct srv s = {.reply = replies[i],
                        .reply_len = strlen(replies[i]),
                        .close_after = true};
        struct http_client_response r;

        if (s.reply_len == 0)
            s.reply = NULL;
        CHECK_INT(get_with(&s, "/", 2000, &r), ERR_IO);
        CHECK(zeroed(&r));
    }
}

TEST(body_over_the_limit)
{
    char length[128], chunk[128];
    struct srv by_length = {.reply = length};
    struct srv by_chunk = {.reply = chunk};
    struct srv by_close = {.reply = "HTTP/1.1 200 OK\r\n\r\n",
                           .filler = HTTP_CLIENT_BODY_MAX + 1,
                           .close_after = true};
    struct http_client_response r;

    snprintf(length, sizeof(length),
             "HTTP/1.1 200 OK\r\nContent-Length: %u\r\n\r\nxyz",
             HTTP_CLIENT_BODY_MAX + 1);
    snprintf(chunk, sizeof(chunk),
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n",
             HTTP_CLIENT_BODY_MAX + 1);
    CHECK_INT(get_with(&by_length, "/", 2000, &r), ERR_TOOBIG);
    CHECK(zeroed(&r));
    CHECK_INT(get_with(&by_chunk, "/", 2000, &r), ERR_TOOBIG);
    CHECK(zeroed(&r));
    CHECK_INT(get_with(&by_close, "/", 5000, &r), ERR_TOOBIG);
    CHECK(zeroed(&r));
}

TEST(malformed_answers_are_invalid)
{
    static const char *const replies[] = {
        "HTTP/1.1 OK\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "garbage\r\n\r\n",
        "SSH-2.0-OpenSSH_9.2",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\nabc\r\n0\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
    };

    for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
        struct srv s = {.reply = replies[i], .close_after = true};
        struct http_client_response r;

        if (get_with(&s, "/", 2000, &r) != ERR_INVALID)
            harness_fail(__FILE__, __LINE__, "reply %zu not ERR_INVALID", i);
        CHECK(zeroed(&r));
    }
}

TEST(headers_over_the_limit_are_invalid)
{
    size_t n = HTTP_CLIENT_HEADER_MAX + 100;
    char *reply = malloc(n + 64);
    struct http_client_response r;

    CHECK(reply != NULL);
    int k = snprintf(reply, 64, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(reply + k, 'b', n);
    memcpy(reply + k + n, "\r\n\r\n", 4);
    struct srv s = {.reply = reply, .reply_len = (size_t)k + n + 4};
    CHECK_INT(get_with(&s, "/", 2000, &r), ERR_INVALID);
    CHECK(zeroed(&r));

    /* Many short lines add up the same way. */
    size_t at = (size_t)snprintf(reply, 64, "HTTP/1.1 200 OK\r\n");
    while (at + 16 < n)
        at += (size_t)snprintf(reply + at, 64, "X-Line: abcdef\r\n");
    memcpy(reply + at, "\r\n", 2);
    struct srv many = {.reply = reply, .reply_len = at + 2};
    CHECK_INT(get_with(&many, "/", 2000, &r), ERR_INVALID);
    CHECK(zeroed(&r));
    free(reply);
}

/* --- what is sent -------------------------------------------------------- */

TEST(request_bytes_with_body)
{
    struct srv s = {.reply = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n"
                             "\r\n"};
    struct http_client_response r;
    char url[64], want[512];

    s.reply_len = strlen(s.reply);
    CHECK(srv_start(&s, AF_INET));
    srv_url(&s, url, sizeof(url));
    CHECK_INT(http_client_request(url, "POST", "/internal/v1/show-events?x=1",
                                  "X-Request-Id: abc\r\n", "{\"a\":1}", 7, 2000,
                                  &r),
              ERR_OK);
    srv_join(&s);
    CHECK_INT(r.status, 202);
    CHECK_STR(r.body, "");
    snprintf(want, sizeof(want),
             "POST /internal/v1/show-events?x=1 HTTP/1.1\r\n"
             "Host: 127.0.0.1:%d\r\n"
             "Content-Length: 7\r\n"
             "Content-Type: application/json\r\n"
             "User-Agent: marquee\r\n"
             "Connection: close\r\n"
             "X-Request-Id: abc\r\n"
             "\r\n"
             "{\"a\":1}",
             s.port);
    CHECK_STR(s.req, want);
    http_client_response_free(&r);
}

TEST(request_bytes_without_body)
{
    struct srv s = {.reply = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"};
    struct srv post = {.reply = s.reply};
    struct http_client_response r;
    char url[64], want[512];

    CHECK_INT(get_with(&s, "/v1/shows/7", 2000, &r), ERR_OK);
    http_client_response_free(&r);
    snprintf(want, sizeof(want),
             "GET /v1/shows/7 HTTP/1.1\r\n"
             "Host: 127.0.0.1:%d\r\n"
             "User-Agent: marquee\r\n"
             "Connection: close\r\n"
             "\r\n",
             s.port);
    CHECK_STR(s.req, want);

    /* A POST without a body still says its length; a caller's
     * Content-Type replaces the default one. */
    post.reply_len = strlen(post.reply);
    CHECK(srv_start(&post, AF_INET));
    srv_url(&post, url, sizeof(url));
    CHECK_INT(http_client_request(url, "POST", "/a", NULL, NULL, 0, 2000, &r),
              ERR_OK);
    srv_join(&post);
    http_client_response_free(&r);
    CHECK(strstr(post.req, "\r\nContent-Length: 0\r\n") != NULL);
    CHECK(strstr(post.req, "Content-Type") == NULL);
}

TEST(callers_content_type_kept)
{
    struct srv s = {.reply = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"};
    struct http_client_response r;
    char url[64];

    s.reply_len = strlen(s.reply);
    CHECK(srv_start(&s, AF_INET));
    srv_url(&s, url, sizeof(url));
    CHECK_INT(http_client_request(url, "PUT", "/a",
                                  "content-type: text/plain\r\n", "hi", 2, 2000,
                                  &r),
              ERR_OK);
    srv_join(&s);
    http_client_response_free(&r);
    CHECK(strstr(s.req, "application/json") == NULL);
    CHECK(strstr(s.req, "\r\ncontent-type: text/plain\r\n\r\nhi") != NULL);
}

TEST(ipv6_literal)
{
    struct srv s = {.reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
                             "v6"};
    struct http_client_response r;
    char url[64];

    s.reply_len = strlen(s.reply);
    if (!srv_start(&s, AF_INET6))
        return; /* no IPv6 loopback here */
    srv_url(&s, url, sizeof(url));
    CHECK_INT(http_client_request(url, "GET", "/", NULL, NULL, 0, 2000, &r),
              ERR_OK);
    srv_join(&s);
    CHECK_STR(r.body, "v6");
    http_client_response_free(&r);
    char want[64];
    snprintf(want, sizeof(want), "\r\nHost: [::1]:%d\r\n", s.port);
    CHECK(strstr(s.req, want) != NULL);
}

/* --- arguments ----------------------------------------------------------- */

TEST(urls)
{
    static const char *const good[] = {
        "http://127.0.0.1:8080", "http://[::1]:80/", "http://localhost",
        "http://catalog.internal:65535", "http://h:1"};
    static const char *const bad[] = {
        "",
        "ftp://host:1",
        "http://",
        "http://:80",
        "http://host:0",
        "http://host:65536",
        "http://host:",
        "http://host:12x",
        "http://host:80/path",
        "http://[::1",
        "http://[]:80",
        "http://user@host:80",
        "http://ho st:80",
        "https://host:443",
        "http://[::1]x",
    };

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!http_client_url_valid(good[i]))
            harness_fail(__FILE__, __LINE__, "refused %s", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (http_client_url_valid(bad[i]))
            harness_fail(__FILE__, __LINE__, "accepted %s", bad[i]);
    CHECK(!http_client_url_valid(NULL));
}

TEST(bad_arguments_are_invalid)
{
    static const char url[] = "http://127.0.0.1:9";
    struct http_client_response r;

    CHECK_INT(http_client_request("nope", "GET", "/", NULL, NULL, 0, 100, &r),
              ERR_INVALID);
    CHECK(zeroed(&r));
    CHECK_INT(http_client_request(url, "get", "/", NULL, NULL, 0, 100, &r),
              ERR_INVALID);
    CHECK_INT(http_client_request(url, "GET", "x", NULL, NULL, 0, 100, &r),
              ERR_INVALID);
    CHECK_INT(http_client_request(url, "GET", "/a b", NULL, NULL, 0, 100, &r),
              ERR_INVALID);
    CHECK_INT(http_client_request(url, "GET", "/", "X: 1", NULL, 0, 100, &r),
              ERR_INVALID);
    CHECK_INT(
        http_client_request(url, "GET", "/", "X: 1\r\nY\r\n", NULL, 0, 100, &r),
        ERR_INVALID);
    CHECK_INT(
        http_client_request(url, "GET", "/", "Host: x\r\n", NULL, 0, 100, &r),
        ERR_INVALID);
    CHECK_INT(
        http_client_request(url, "GET", "/", "X: a\nb\r\n", NULL, 0, 100, &r),
        ERR_INVALID);
    CHECK_INT(http_client_request(url, "POST", "/", NULL, NULL, 3, 100, &r),
              ERR_INVALID);
    CHECK_INT(http_client_request(url, "GET", "/", NULL, NULL, 0, 0, &r),
              ERR_INVALID);
    CHECK(zeroed(&r));
}

HARNESS_MAIN(T(ok_with_content_length), T(chunked_across_reads),
             T(not_found_with_problem),
             T(not_modified_and_no_content_have_no_body),
             T(interim_answers_skipped), T(body_until_close),
             T(body_of_exactly_the_limit), T(refused_is_io),
             T(silent_server_times_out), T(slow_body_times_out),
             T(closed_early_is_io), T(body_over_the_limit),
             T(malformed_answers_are_invalid),
             T(headers_over_the_limit_are_invalid), T(request_bytes_with_body),
             T(request_bytes_without_body), T(callers_content_type_kept),
             T(ipv6_literal), T(urls), T(bad_arguments_are_invalid))
