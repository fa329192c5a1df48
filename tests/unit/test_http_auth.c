/*
 * test_http_auth.c - the services' side of the gateway's trust, on a real
 * server over loopback sockets: with http.gateway_secret set, X-Customer-Id
 * is believed only beside the right X-Gateway-Secret (403
 * untrusted-customer otherwise, wrong by one byte or by length included);
 * without one the header is believed as before; a short secret stops the
 * server from starting; the config key reaches the server.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/config.h"
#include "base/err.h"
#include "harness.h"
#include "http/http.h"

#define SECRET "s3cret-shared-by-gateway-and-services"

static void h_who(struct http_req *req, void *app)
{
    const char *customer = http_req_customer(req);

    (void)app;
    if (customer != NULL)
        http_respond_json(req, 200, json_pack("{s:s}", "customer", customer));
}

static const struct http_route routes[] = {{"GET", "/who", h_who}};

struct live {
    struct http_server *server;
    pthread_t tid;
    int port;
};

static void *run_server(void *arg)
{
    struct live *l = arg;

    http_server_run(l->server);
    return NULL;
}

static int live_create(struct live *l, const char *secret)
{
    struct http_server_config cfg = {
        .name = "test",
        .host = "127.0.0.1",
        .threads = 1,
        .max_connections = 16,
        .max_body_bytes = 256,
        .max_header_bytes = 4096,
        .request_timeout_ms = 3000,
        .shutdown_timeout_ms = 1000,
        .gateway_secret = secret,
    };

    memset(l, 0, sizeof(*l));
    return http_server_create(&cfg, routes, 1, &l->server);
}

static void live_start(struct live *l, const char *secret)
{
    CHECK_INT(live_create(l, secret), ERR_OK);
    l->port = http_server_port(l->server);
    pthread_create(&l->tid, NULL, run_server, l);
}

static void live_stop(struct live *l)
{
    http_server_stop(l->server);
    pthread_join(l->tid, NULL);
    http_server_free(l->server);
}

/* Sends one request and reads the answer until the peer closes. */
static char *roundtrip(int port, const char *headers)
{
    static char buf[8192];
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port)};
    char req[2048];
    size_t n = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int len = snprintf(req, sizeof(req),
                       "GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                       "%s\r\n",
                       headers);

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    CHECK(write(fd, req, (size_t)len) == len);
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t r;

        if (poll(&p, 1, 3000) <= 0)
            break;
        r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(fd);
    return buf;
}

static int status_of(const char *r)
{
    return strncmp(r, "HTTP/1.1 ", 9) == 0 ? (int)strtol(r + 9, NULL, 10) : -1;
}

TEST(secret_required_when_configured)
{
    struct live l;
    char *r;

    live_start(&l, SECRET);
    r = roundtrip(l.port,
                  "X-Customer-Id: c-1\r\nX-Gateway-Secret: " SECRET "\r\n");
    CHECK_INT(status_of(r), 200);
    CHECK(strstr(r, "{\"customer\":\"c-1\"}") != NULL);

    /* No secret: the customer is not believed, whoever it names. */
    r = roundtrip(l.port, "X-Customer-Id: c-1\r\n");
    CHECK_INT(status_of(r), 403);
    CHECK(strstr(r, "\"type\":\"/problems/untrusted-customer\"") != NULL);
    CHECK(strstr(r, "X-Gateway-Secret is missing or wrong") != NULL);

    /* Wrong by one byte, a prefix, the secret with more after it, empty. */
    r = roundtrip(l.port, "X-Customer-Id: c-1\r\nX-Gateway-Secret: "
                          "s3cret-shared-by-gateway-and-serviceS\r\n");
    CHECK_INT(status_of(r), 403);
    r = roundtrip(l.port, "X-Customer-Id: c-1\r\nX-Gateway-Secret: s3cret\r\n");
    CHECK_INT(status_of(r), 403);
    r = roundtrip(l.port,
                  "X-Customer-Id: c-1\r\nX-Gateway-Secret: " SECRET "x\r\n");
    CHECK_INT(status_of(r), 403);
    r = roundtrip(l.port, "X-Customer-Id: c-1\r\nX-Gateway-Secret:\r\n");
    CHECK_INT(status_of(r), 403);

    /* With the secret, a malformed customer is still a 400. */
    r = roundtrip(
        l.port, "X-Customer-Id: has space\r\nX-Gateway-Secret: " SECRET "\r\n");
    CHECK_INT(status_of(r), 400);
    CHECK(strstr(r, "/problems/invalid-customer") != NULL);
    live_stop(&l);
}

TEST(no_secret_keeps_the_header_trusted)
{
    struct live l;
    char *r;

    live_start(&l, "");
    r = roundtrip(l.port, "X-Customer-Id: c-2\r\n");
    CHECK_INT(status_of(r), 200);
    CHECK(strstr(r, "{\"customer\":\"c-2\"}") != NULL);
    r = roundtrip(l.port, "X-Customer-Id: c-2\r\nX-Gateway-Secret: any\r\n");
    CHECK_INT(status_of(r), 200);
    r = roundtrip(l.port, "");
    CHECK_INT(status_of(r), 400);
    live_stop(&l);

    live_start(&l, NULL);
    r = roundtrip(l.port, "X-Customer-Id: c-3\r\n");
    CHECK_INT(status_of(r), 200);
    live_stop(&l);
}

TEST(short_secret_refused_at_start)
{
    struct live l;

    CHECK(!http_gateway_secret_ok("fifteen-chars-x"));
    CHECK(http_gateway_secret_ok("sixteen-chars-xx"));
    CHECK(http_gateway_secret_ok(""));
    CHECK(http_gateway_secret_ok(NULL));
    CHECK_INT(live_create(&l, "too-short"), ERR_CONFIG);
    CHECK(l.server == NULL);
}

TEST(config_key_reaches_the_server)
{
    static const struct config_key keys[] = {HTTP_CONFIG_KEYS(8080)};
    struct config cfg;
    struct http_server_config hc;

    CHECK_INT(config_init(&cfg, keys, sizeof(keys) / sizeof(keys[0])), ERR_OK);
    http_server_config_from(&hc, &cfg, "t");
    CHECK_STR(hc.gateway_secret, "");
    CHECK_INT(config_set(&cfg, "http.gateway_secret", SECRET, "test"), ERR_OK);
    http_server_config_from(&hc, &cfg, "t");
    CHECK_STR(hc.gateway_secret, SECRET);
    config_free(&cfg);
}

HARNESS_MAIN(T(secret_required_when_configured),
             T(no_secret_keeps_the_header_trusted),
             T(short_secret_refused_at_start), T(config_key_reaches_the_server))
