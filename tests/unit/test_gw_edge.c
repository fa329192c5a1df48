/*
 * test_gw_edge.c - the edge's handlers and checks over real HTTP: a real
 * server on loopback with gw_edge_routes and a real accounts database in
 * a temporary directory, plus two probe routes that do what the gateway's
 * request path does (identify, check the scope, check the queue pass) and
 * echo who they saw.  A manual clock drives expiry, the sign-in window and
 * the waiting room's opening.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/err.h"
#include "gateway/edge.h"
#include "gateway/waitroom.h"
#include "metrics/metrics.h"
#include "harness.h"

#define ADMIN  "admin-token-for-the-edge-tests"
#define SECRET "a token secret of more than thirty-two bytes"
#define T0     1800000000000LL

static struct gw_edge *edge;
static struct clock_manual clk;
static struct config cfg; /* the edge's; outlives it */

/* What the gateway's request path will do, then echo who it saw. */
static void probe(struct http_req *req, void *app)
{
    static const char *const kinds[] = {"anonymous", "customer", "admin",
                                        "partner"};
    struct gw_ident id;
    int64_t show = 0;

    (void)app;
    if (!gw_edge_identify(edge, req, &id) || !gw_edge_scope_ok(req, &id))
        return;
    if (strcmp(http_req_method(req), "POST") == 0 &&
        (!http_req_param_id(req, "show_id", &show) ||
         !gw_edge_pass_ok(edge, req, show)))
        return;
    http_respond_json(req, 200,
                      json_pack("{s:s, s:s, s:I}", "kind", kinds[id.kind],
                                "customer", id.customer, "scopes",
                                (json_int_t)id.scopes));
}

struct live {
    struct http_server *server;
    pthread_t tid;
    int port;
    char dir[64];
};

static void *run_server(void *arg)
{
    struct live *l = arg;

    http_server_run(l->server);
    return NULL;
}

static void live_start(struct live *l, int workers, int queue_max, bool slow)
{
    static struct config_key keys[64];
    struct http_route routes[32];
    size_t n = 0, nkeys = 0;
    char path[128], num[16];
    struct http_server_config hc = {
        .name = "edge-test",
        .host = "127.0.0.1",
        .threads = 2,
        .max_connections = 64,
        .max_body_bytes = 4096,
        .max_header_bytes = 8192,
        .request_timeout_ms = 5000,
        .shutdown_timeout_ms = 5000,
    };

    memset(l, 0, sizeof(*l));
    snprintf(l->dir, sizeof(l->dir), "/tmp/marquee-edge-XXXXXX");
    CHECK(mkdtemp(l->dir) != NULL);
    snprintf(path, sizeof(path), "%s/gateway.db", l->dir);

    for (size_t i = 0; i < gw_edge_config_nkeys; i++)
        keys[nkeys++] = gw_edge_config_keys[i];
    keys[nkeys++] =
        (struct config_key){"gateway.admin_token", CONFIG_STRING, "", 0, 0, ""};
    CHECK_INT(config_init(&cfg, keys, nkeys), ERR_OK);
    CHECK_INT(config_set(&cfg, "gateway.accounts.path", path, "test"), ERR_OK);
    CHECK_INT(config_set(&cfg, "gateway.admin_token", ADMIN, "test"), ERR_OK);
    CHECK_INT(config_set(&cfg, "gateway.token_secret", SECRET, "test"), ERR_OK);
    /* The cheapest Argon2id unless the test needs hashing to take time. */
    CHECK_INT(
        config_set(&cfg, "gateway.password_opslimit", slow ? "3" : "1", "test"),
        ERR_OK);
    CHECK_INT(config_set(&cfg, "gateway.password_memlimit_kib",
                         slow ? "65536" : "8", "test"),
              ERR_OK);
    CHECK_INT(config_set(&cfg, "gateway.access_token_ttl_s", "60", "test"),
              ERR_OK);
    CHECK_INT(config_set(&cfg, "gateway.waitroom.visitors_max", "3", "test"),
              ERR_OK);
    snprintf(num, sizeof(num), "%d", workers);
    CHECK_INT(config_set(&cfg, "gateway.auth_workers", num, "test"), ERR_OK);
    snprintf(num, sizeof(num), "%d", queue_max);
    CHECK_INT(config_set(&cfg, "gateway.auth_queue_max", num, "test"), ERR_OK);

    clock_manual_init(&clk, T0);
    CHECK_INT(gw_edge_open_clock(&cfg, &clk.base, &edge), ERR_OK);

    for (size_t i = 0; i < gw_edge_nroutes; i++)
        routes[n++] = gw_edge_routes[i];
    routes[n++] = (struct http_route){"GET", "/v1/cities", probe};
    routes[n++] =
        (struct http_route){"POST", "/v1/shows/{show_id}/holds", probe};
    routes[n++] = (struct http_route){"GET", "/v1/bookings/{id}", probe};
    hc.app = edge;
    CHECK_INT(http_server_create(&hc, routes, n, &l->server), ERR_OK);
    l->port = http_server_port(l->server);
    pthread_create(&l->tid, NULL, run_server, l);
}

static void live_stop(struct live *l)
{
    DIR *d;
    struct dirent *ent;

    http_server_stop(l->server);
    pthread_join(l->tid, NULL);
    gw_edge_close(edge);
    http_server_free(l->server);
    edge = NULL;
    config_free(&cfg);
    d = opendir(l->dir);
    CHECK(d != NULL);
    while ((ent = readdir(d)) != NULL)
        if (ent->d_name[0] != '.')
            CHECK_INT(unlinkat(dirfd(d), ent->d_name, 0), 0);
    closedir(d);
    CHECK_INT(rmdir(l->dir), 0);
}

/* --- a small client ------------------------------------------------------ */

struct answer {
    int status;
    char head[4096];
    json_t *body; /* NULL when none or not JSON */
};

static void answer_free(struct answer *a)
{
    json_decref(a->body);
    a->body = NULL;
}

static void call(int port, const char *method, const char *path,
                 const char *headers, const char *body, struct answer *out)
{
    static _Thread_local char buf[65536]; /* racers call at once */
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    char req[8192];
    size_t n = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int len =
        snprintf(req, sizeof(req),
                 "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 "%s%s%s"
                 "Content-Length: %zu\r\n\r\n%s",
                 method, path, headers != NULL ? headers : "",
                 body != NULL ? "Content-Type: application/json\r\n" : "", "",
                 body != NULL ? strlen(body) : 0, body != NULL ? body : "");
    char *end;

    memset(out, 0, sizeof(*out));
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(write(fd, req, (size_t)len) == len);
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t r;

        if (poll(&p, 1, 10000) <= 0)
            break;
        r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(fd);
    CHECK(strncmp(buf, "HTTP/1.1 ", 9) == 0);
    out->status = (int)strtol(buf + 9, NULL, 10);
    end = strstr(buf, "\r\n\r\n");
    CHECK(end != NULL);
    snprintf(out->head, sizeof(out->head), "%.*s", (int)(end - buf), buf);
    if (end[4] != '\0')
        out->body = json_loads(end + 4, 0, NULL);
}

static const char *str(const struct answer *a, const char *key)
{
    return json_string_value(json_object_get(a->body, key));
}

static int64_t num(const struct answer *a, const char *key)
{
    return json_integer_value(json_object_get(a->body, key));
}

static void check_problem(const struct answer *a, int status, const char *slug)
{
    char want[96];

    CHECK_INT(a->status, status);
    snprintf(want, sizeof(want), "/problems/%s", slug);
    CHECK_STR(str(a, "type"), want);
}

/* Signs in; the access and refresh tokens into the buffers. */
static void sign_in(int port, const char *email, const char *pw,
                    char access[GW_TOKEN_MAX + 1],
                    char refresh[GW_SECRET_TEXT_MAX + 1])
{
    struct answer a;
    char body[256];

    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}",
             email, pw);
    call(port, "POST", "/v1/sessions", NULL, body, &a);
    CHECK_INT(a.status, 201);
    CHECK_STR(str(&a, "token_type"), "Bearer");
    CHECK_INT(num(&a, "expires_in"), 60);
    CHECK(strcasestr(a.head, "cache-control: no-store") != NULL);
    snprintf(access, GW_TOKEN_MAX + 1, "%s", str(&a, "access_token"));
    snprintf(refresh, GW_SECRET_TEXT_MAX + 1, "%s", str(&a, "refresh_token"));
    answer_free(&a);
}

static void bearer(char *out, size_t cap, const char *tok)
{
    snprintf(out, cap, "Authorization: Bearer %s\r\n", tok);
}

/* marquee_gateway_auth_total{event} from the process's registry. */
static long auth_count(const char *event)
{
    char *text = NULL, want[128], *at;
    size_t len = 0;
    long v = 0;

    snprintf(want, sizeof(want), "marquee_gateway_auth_total{event=\"%s\"} ",
             event);
    CHECK_INT(metrics_render(metrics_process(), &text, &len), ERR_OK);
    at = strstr(text, want);
    if (at != NULL)
        v = strtol(at + strlen(want), NULL, 10);
    free(text);
    return v;
}

/* --- the tests ------------------------------------------------------------ */

TEST(signup_signin_refresh_signout)
{
    struct live l;
    struct answer a;
    char access[GW_TOKEN_MAX + 1], refresh[GW_SECRET_TEXT_MAX + 1];
    char hdr[GW_TOKEN_MAX + 64], body[256], old[GW_SECRET_TEXT_MAX + 1];

    live_start(&l, 2, 64, false);
    call(l.port, "POST", "/v1/accounts", NULL,
         "{\"email\":\"Ann@Example.com\",\"password\":\"correct horse\","
         "\"name\":\"Ann\"}",
         &a);
    CHECK_INT(a.status, 201);
    CHECK_STR(str(&a, "email"), "ann@example.com");
    CHECK_STR(str(&a, "customer_id"), "cust-1");
    CHECK_STR(str(&a, "role"), "customer");
    answer_free(&a);

    call(l.port, "POST", "/v1/accounts", NULL,
         "{\"email\":\"ann@example.com\",\"password\":\"other horse\","
         "\"name\":\"A\"}",
         &a);
    check_problem(&a, 409, "email-taken");
    answer_free(&a);

    /* Every field wrong at once, each named. */
    call(l.port, "POST", "/v1/accounts", NULL,
         "{\"email\":\"no-at\",\"password\":\"short\",\"name\":\"\","
         "\"age\":3}",
         &a);
    check_problem(&a, 422, "validation-failed");
    CHECK_INT(json_array_size(json_object_get(a.body, "errors")), 4);
    answer_free(&a);

    /* 100 characters is within the count, 300 bytes is not: refused,
     * never cut. */
    {
        char big[600], pw[320] = "";

        for (int i = 0; i < 100; i++)
            strcat(pw, "\xe2\x82\xac");
        snprintf(big, sizeof(big),
                 "{\"email\":\"eu@example.com\",\"password\":\"%s\","
                 "\"name\":\"E\"}",
                 pw);
        call(l.port, "POST", "/v1/accounts", NULL, big, &a);
        check_problem(&a, 422, "validation-failed");
        CHECK_STR(
            json_string_value(json_object_get(
                json_array_get(json_object_get(a.body, "errors"), 0), "code")),
            "too-long");
        answer_free(&a);
    }

    /* An admin account needs an admin to make it. */
    call(l.port, "POST", "/v1/accounts", NULL,
         "{\"email\":\"boss@example.com\",\"password\":\"correct horse\","
         "\"name\":\"Boss\",\"role\":\"admin\"}",
         &a);
    check_problem(&a, 401, "unauthorized");
    answer_free(&a);

    sign_in(l.port, "ann@example.com", "correct horse", access, refresh);
    bearer(hdr, sizeof(hdr), access);
    call(l.port, "GET", "/v1/cities", hdr, NULL, &a);
    CHECK_INT(a.status, 200);
    CHECK_STR(str(&a, "kind"), "customer");
    CHECK_STR(str(&a, "customer"), "cust-1");
    answer_free(&a);

    /* Refresh: a new pair; the old refresh token then kills the family. */
    snprintf(old, sizeof(old), "%s", refresh);
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", refresh);
    call(l.port, "POST", "/v1/sessions/refresh", NULL, body, &a);
    CHECK_INT(a.status, 200);
    CHECK(strcmp(str(&a, "refresh_token"), old) != 0);
    snprintf(refresh, sizeof(refresh), "%s", str(&a, "refresh_token"));
    answer_free(&a);
    call(l.port, "POST", "/v1/sessions/refresh", NULL, body, &a);
    check_problem(&a, 401, "invalid-refresh-token");
    CHECK(strstr(str(&a, "detail"), "already used") != NULL);
    answer_free(&a);
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", refresh);
    call(l.port, "POST", "/v1/sessions/refresh", NULL, body, &a);
    check_problem(&a, 401, "invalid-refresh-token");
    answer_free(&a);

    /* Sign-out of a fresh sign-in, then its refresh token is dead. */
    sign_in(l.port, "ann@example.com", "correct horse", access, refresh);
    snprintf(body, sizeof(body), "{\"refresh_token\":\"%s\"}", refresh);
    call(l.port, "DELETE", "/v1/sessions", NULL, body, &a);
    CHECK_INT(a.status, 204);
    answer_free(&a);
    call(l.port, "POST", "/v1/sessions/refresh", NULL, body, &a);
    check_problem(&a, 401, "invalid-refresh-token");
    answer_free(&a);
    call(l.port, "DELETE", "/v1/sessions", NULL,
         "{\"refresh_token\":\"rt1_unknown\"}", &a);
    check_problem(&a, 401, "invalid-refresh-token");
    answer_free(&a);
    live_stop(&l);
}

TEST(bad_tokens_refused)
{
    struct live l;
    struct answer a;
    char access[GW_TOKEN_MAX + 1], refresh[GW_SECRET_TEXT_MAX + 1];
    char hdr[GW_TOKEN_MAX + 64];
    char saved;

    live_start(&l, 1, 64, false);
    call(l.port, "POST", "/v1/accounts", NULL,
         "{\"email\":\"ann@example.com\",\"password\":\"correct horse\","
         "\"name\":\"Ann\"}",
         &a);
    answer_free(&a);
    sign_in(l.port, "ann@example.com", "correct horse", access, refresh);

    /* No credentials: anonymous, not refused. */
    call(l.port, "GET", "/v1/cities", NULL, NULL, &a);
    CHECK_INT(a.status, 200);
    CHECK_STR(str(&a, "kind"), "anonymous");
    answer_free(&a);

    /* One character of the signature changed. */
    saved = access[strlen(access) - 2];
    access[strlen(access) - 2] = saved == 'A' ? 'B' : 'A';
    bearer(hdr, sizeof(hdr), access);
    call(l.port, "GET", "/v1/cities", hdr, NULL, &a);
    check_problem(&a, 401, "invalid-token");
    CHECK(strcasestr(a.head, "www-authenticate: Bearer") != NULL);
    CHECK(strstr(str(&a, "detail"), "signature") != NULL);
    answer_free(&a);
    access[strlen(access) - 2] = saved;

    call(l.port, "GET", "/v1/cities", "Authorization: Basic abc\r\n", NULL, &a);
    check_problem(&a, 401, "invalid-token");
    answer_free(&a);
    call(l.port, "GET", "/v1/cities",
         "Authorization: Bearer x\r\nX-Api-Key: y\r\n", NULL, &a);
    check_problem(&a, 400, "conflicting-credentials");
    answer_free(&a);

    /* Valid for 59 s more; expired at 60. */
    clock_manual_advance(&clk, 59999);
    bearer(hdr, sizeof(hdr), access);
    call(l.port, "GET", "/v1/cities", hdr, NULL, &a);
    CHECK_INT(a.status, 200);
    answer_free(&a);
    clock_manual_advance(&clk, 1);
    call(l.port, "GET", "/v1/cities", hdr, NULL, &a);
    check_problem(&a, 401, "invalid-token");
    CHECK(strstr(str(&a, "detail"), "expired") != NULL);
    answer_free(&a);
    live_stop(&l);
}

TEST(signin_limit_over_http)
{
    struct live l;
    struct answer a;
    long denied, limited;

    live_start(&l, 2, 64, false);
    call(l.port, "POST", "/v1/accounts", NULL,
         "{\"email\":\"ann@example.com\",\"password\":\"correct horse\","
         "\"name\":\"Ann\"}",
         &a);
    answer_free(&a);
    denied = auth_count("signin_denied");
    limited = auth_count("signin_limited");
    for (int i = 0; i < 5; i++) {
        call(l.port, "POST", "/v1/sessions", NULL,
             "{\"email\":\"ann@example.com\",\"password\":\"wrong\"}", &a);
        check_problem(&a, 401, "invalid-credentials");
        answer_free(&a);
    }
    clock_manual_advance(&clk, 100000);
    call(l.port, "POST", "/v1/sessions", NULL,
         "{\"email\":\"ann@example.com\",\"password\":\"correct horse\"}", &a);
    check_problem(&a, 429, "too-many-sign-ins");
    CHECK(strcasestr(a.head, "retry-after: 800\r\n") != NULL ||
          strcasestr(a.head, "retry-after: 800") != NULL);
    answer_free(&a);
    CHECK_INT(auth_count("signin_denied") - denied, 5);
    CHECK_INT(auth_count("signin_limited") - limited, 1);
    clock_manual_advance(&clk, 800000);
    call(l.port, "POST", "/v1/sessions", NULL,
         "{\"email\":\"ann@example.com\",\"password\":\"correct horse\"}", &a);
    CHECK_INT(a.status, 201);
    answer_free(&a);
    live_stop(&l);
}

TEST(admin_routes_and_api_key_scopes)
{
    struct live l;
    struct answer a;
    char access[GW_TOKEN_MAX + 1], refresh[GW_SECRET_TEXT_MAX + 1];
    char hdr[GW_TOKEN_MAX + 64], key[128];
    const char *body = "{\"name\":\"acme\",\"scopes\":[\"catalog:read\"]}";

    live_start(&l, 2, 64, false);
    call(l.port, "POST", "/admin/api-keys", NULL, body, &a);
    check_problem(&a, 401, "unauthorized");
    answer_free(&a);

    call(l.port, "POST", "/v1/accounts", NULL,
         "{\"email\":\"ann@example.com\",\"password\":\"correct horse\","
         "\"name\":\"Ann\"}",
         &a);
    answer_free(&a);
    sign_in(l.port, "ann@example.com", "correct horse", access, refresh);
    bearer(hdr, sizeof(hdr), access);
    call(l.port, "POST", "/admin/api-keys", hdr, body, &a);
    check_problem(&a, 403, "admin-required");
    answer_free(&a);

    /* The admin token makes an admin account, whose token is admin too. */
    call(l.port, "POST", "/v1/accounts", "Authorization: Bearer " ADMIN "\r\n",
         "{\"email\":\"boss@example.com\",\"password\":\"correct horse\","
         "\"name\":\"Boss\",\"role\":\"admin\"}",
         &a);
    CHECK_INT(a.status, 201);
    CHECK_STR(str(&a, "role"), "admin");
    answer_free(&a);
    sign_in(l.port, "boss@example.com", "correct horse", access, refresh);
    bearer(hdr, sizeof(hdr), access);
    call(l.port, "POST", "/admin/api-keys", hdr,
         "{\"name\":\"acme\",\"scopes\":[\"catalog:read\",\"nope\"]}", &a);
    check_problem(&a, 422, "validation-failed");
    {
        json_t *err = json_array_get(json_object_get(a.body, "errors"), 0);

        CHECK_STR(json_string_value(json_object_get(err, "field")),
                  "scopes[1]");
        CHECK_STR(json_string_value(json_object_get(err, "code")),
                  "unknown-scope");
    }
    answer_free(&a);
    call(l.port, "POST", "/admin/api-keys", hdr, body, &a);
    CHECK_INT(a.status, 201);
    CHECK(strcasestr(a.head, "cache-control: no-store") != NULL);
    snprintf(key, sizeof(key), "X-Api-Key: %s\r\n", str(&a, "key"));
    answer_free(&a);

    /* The partner reads the catalogue, may not hold seats nor read
     * bookings; an unknown key is 401. */
    call(l.port, "GET", "/v1/cities", key, NULL, &a);
    CHECK_INT(a.status, 200);
    CHECK_STR(str(&a, "kind"), "partner");
    CHECK_STR(str(&a, "customer"), "key-1");
    CHECK_INT(num(&a, "scopes"), GW_SCOPE_CATALOG_READ);
    answer_free(&a);
    call(l.port, "POST", "/v1/shows/7/holds", key, "{}", &a);
    check_problem(&a, 403, "insufficient-scope");
    CHECK_STR(json_string_value(json_array_get(
                  json_object_get(a.body, "required_scopes"), 0)),
              "holds:write");
    answer_free(&a);
    call(l.port, "GET", "/v1/bookings/5", key, NULL, &a);
    check_problem(&a, 403, "insufficient-scope");
    answer_free(&a);
    call(l.port, "GET", "/v1/cities",
         "X-Api-Key: mqk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n", NULL,
         &a);
    check_problem(&a, 401, "invalid-api-key");
    answer_free(&a);

    /* Revoked by an admin, the key is refused at once. */
    call(l.port, "DELETE", "/admin/api-keys/1", NULL, NULL, &a);
    check_problem(&a, 401, "unauthorized");
    answer_free(&a);
    call(l.port, "DELETE", "/admin/api-keys/1", hdr, NULL, &a);
    CHECK_INT(a.status, 204);
    answer_free(&a);
    call(l.port, "GET", "/v1/cities", key, NULL, &a);
    check_problem(&a, 401, "invalid-api-key");
    answer_free(&a);
    call(l.port, "DELETE", "/admin/api-keys/1", hdr, NULL, &a);
    check_problem(&a, 404, "not-found");
    answer_free(&a);
    live_stop(&l);
}

/* The visitor id and state of a join. */
static void join(int port, int64_t show, char *visitor, size_t cap,
                 const char *want_state)
{
    struct answer a;
    char path[64];

    snprintf(path, sizeof(path), "/v1/shows/%lld/queue", (long long)show);
    call(port, "POST", path, NULL, NULL, &a);
    CHECK_INT(a.status, 201);
    CHECK_STR(str(&a, "state"), want_state);
    CHECK(strcasestr(a.head, "location: /v1/shows/") != NULL);
    snprintf(visitor, cap, "%s", str(&a, "visitor"));
    answer_free(&a);
}

static void status(int port, int64_t show, const char *visitor,
                   const char *headers, struct answer *a)
{
    char path[256];

    snprintf(path, sizeof(path), "/v1/shows/%lld/queue/%.*s", (long long)show,
             GW_WAITROOM_VISITOR_TEXT_MAX, visitor);
    call(port, "GET", path, headers, NULL, a);
}

/* Signs up and in; the Authorization header line into hdr. */
static void customer(int port, const char *name, char *hdr, size_t cap)
{
    char body[256], access[GW_TOKEN_MAX + 1], refresh[GW_SECRET_TEXT_MAX + 1];
    char email[64];
    struct answer a;

    snprintf(email, sizeof(email), "%s@example.com", name);
    snprintf(body, sizeof(body),
             "{\"email\":\"%s\",\"password\":\"correct horse\","
             "\"name\":\"%s\"}",
             email, name);
    call(port, "POST", "/v1/accounts", NULL, body, &a);
    CHECK_INT(a.status, 201);
    answer_free(&a);
    sign_in(port, email, "correct horse", access, refresh);
    bearer(hdr, cap, access);
}

TEST(waiting_room_over_http)
{
    struct live l;
    struct answer a;
    char v[3][GW_WAITROOM_VISITOR_TEXT_MAX + 1];
    char pass[GW_WAITROOM_PASS_MAX + 1], other[GW_WAITROOM_PASS_MAX + 1];
    char hdr[GW_TOKEN_MAX + 256], ann[GW_TOKEN_MAX + 64];
    char bob[GW_TOKEN_MAX + 64];
    int admitted = -1;
    const char *adm = "Authorization: Bearer " ADMIN "\r\n";

    live_start(&l, 1, 64, false);
    customer(l.port, "ann", ann, sizeof(ann));
    customer(l.port, "bob", bob, sizeof(bob));
    /* Show 7 opens 10 s from now, 1 a second; show 8 at once. */
    call(l.port, "POST", "/admin/hot-sales", adm,
         "{\"show_id\":7,\"opens_at\":\"2027-01-15T08:00:10Z\","
         "\"rate_per_s\":1,\"pass_ttl_s\":120}",
         &a);
    CHECK_INT(a.status, 201);
    CHECK_INT(num(&a, "visitors_max"), 3);
    answer_free(&a);
    call(l.port, "POST", "/admin/hot-sales", adm,
         "{\"show_id\":7,\"opens_at\":\"2027-01-15T08:00:10Z\","
         "\"rate_per_s\":1}",
         &a);
    check_problem(&a, 409, "hot-sale-exists");
    answer_free(&a);
    call(l.port, "POST", "/admin/hot-sales", adm,
         "{\"show_id\":8,\"opens_at\":\"2027-01-15T08:00:00Z\","
         "\"rate_per_s\":5}",
         &a);
    CHECK_INT(a.status, 201);
    answer_free(&a);
    call(l.port, "POST", "/admin/hot-sales", adm,
         "{\"show_id\":9,\"opens_at\":\"tomorrow\",\"rate_per_s\":0}", &a);
    check_problem(&a, 422, "validation-failed");
    CHECK_INT(json_array_size(json_object_get(a.body, "errors")), 2);
    answer_free(&a);

    /* T0 is 2027-01-15T08:00:00Z. */
    for (int i = 0; i < 3; i++)
        join(l.port, 7, v[i], sizeof(v[i]), "before-opening");
    call(l.port, "POST", "/v1/shows/7/queue", NULL, NULL, &a);
    CHECK_INT(a.status, 503);
    CHECK(strcasestr(a.head, "retry-after: 30") != NULL);
    answer_free(&a);
    call(l.port, "POST", "/v1/shows/5/queue", NULL, NULL, &a);
    check_problem(&a, 404, "not-hot");
    answer_free(&a);
    status(l.port, 7, v[0], NULL, &a);
    CHECK_INT(a.status, 200);
    CHECK_STR(str(&a, "state"), "before-opening");
    CHECK_INT(num(&a, "estimated_wait_ms"), 10000);
    answer_free(&a);
    status(l.port, 7, "0-forged", NULL, &a);
    check_problem(&a, 404, "unknown-visitor");
    answer_free(&a);

    /* Holding on a hot show needs a pass. */
    call(l.port, "POST", "/v1/shows/7/holds", NULL, "{}", &a);
    check_problem(&a, 403, "pass-required");
    answer_free(&a);
    call(l.port, "POST", "/v1/shows/5/holds", NULL, "{}", &a);
    CHECK_INT(a.status, 200);
    answer_free(&a);

    /* At the opening exactly one is admitted, the others queue 1 s apart. */
    clock_manual_advance(&clk, 10000);
    for (int i = 0; i < 3; i++) {
        status(l.port, 7, v[i], ann, &a);
        CHECK_INT(a.status, 200);
        if (strcmp(str(&a, "state"), "admitted") == 0) {
            CHECK_INT(admitted, -1);
            admitted = i;
            snprintf(pass, sizeof(pass), "%s", str(&a, "pass"));
            CHECK_STR(str(&a, "pass_expires_at"), "2027-01-15T08:02:10Z");
        } else {
            CHECK_STR(str(&a, "state"), "queued");
            CHECK(num(&a, "position") == 1 || num(&a, "position") == 2);
            CHECK_INT(num(&a, "estimated_wait_ms"), 1000 * num(&a, "position"));
        }
        answer_free(&a);
    }
    CHECK(admitted >= 0);

    /* The place is ann's now: bob gets no pass for it, nor does a caller
     * who is not signed in. */
    status(l.port, 7, v[admitted], bob, &a);
    check_problem(&a, 403, "visitor-claimed");
    answer_free(&a);
    status(l.port, 7, v[admitted], NULL, &a);
    CHECK_STR(str(&a, "state"), "admitted");
    CHECK(json_object_get(a.body, "pass") == NULL);
    CHECK(json_is_true(json_object_get(a.body, "pass_needs_sign_in")));
    answer_free(&a);

    snprintf(hdr, sizeof(hdr), "%sX-Queue-Pass: %s\r\n", ann, pass);
    call(l.port, "POST", "/v1/shows/7/holds", hdr, "{}", &a);
    CHECK_INT(a.status, 200);
    answer_free(&a);
    /* Ann's pass is no good to bob, nor to an anonymous caller. */
    snprintf(hdr, sizeof(hdr), "%sX-Queue-Pass: %s\r\n", bob, pass);
    call(l.port, "POST", "/v1/shows/7/holds", hdr, "{}", &a);
    check_problem(&a, 403, "pass-forged");
    answer_free(&a);
    snprintf(hdr, sizeof(hdr), "X-Queue-Pass: %s\r\n", pass);
    call(l.port, "POST", "/v1/shows/7/holds", hdr, "{}", &a);
    check_problem(&a, 403, "pass-forged");
    answer_free(&a);
    snprintf(hdr, sizeof(hdr), "%sX-Queue-Pass: %s\r\n", ann, pass);
    /* The same pass on show 8 is not good there. */
    call(l.port, "POST", "/v1/shows/8/holds", hdr, "{}", &a);
    check_problem(&a, 403, "pass-forged");
    CHECK(strstr(str(&a, "detail"), "another show") != NULL);
    answer_free(&a);
    /* A pass with its expiry stretched is forged. */
    snprintf(other, sizeof(other), "%s", pass);
    *strchr(strchr(strchr(other, '.') + 1, '.') + 1, '.') = '\0';
    snprintf(hdr, sizeof(hdr), "%sX-Queue-Pass: %s9.%s\r\n", ann, other,
             strrchr(pass, '.') + 1);
    call(l.port, "POST", "/v1/shows/7/holds", hdr, "{}", &a);
    check_problem(&a, 403, "pass-forged");
    answer_free(&a);

    /* Two minutes after admission the pass has run out. */
    clock_manual_advance(&clk, 120000);
    {
        /* Ann's access token (60 s) has run out too: a fresh one. */
        char access[GW_TOKEN_MAX + 1], refresh[GW_SECRET_TEXT_MAX + 1];

        sign_in(l.port, "ann@example.com", "correct horse", access, refresh);
        bearer(ann, sizeof(ann), access);
    }
    snprintf(hdr, sizeof(hdr), "%sX-Queue-Pass: %s\r\n", ann, pass);
    call(l.port, "POST", "/v1/shows/7/holds", hdr, "{}", &a);
    check_problem(&a, 403, "pass-expired");
    answer_free(&a);
    status(l.port, 7, v[admitted], ann, &a);
    CHECK_STR(str(&a, "state"), "expired");
    CHECK(json_object_get(a.body, "pass") == NULL);
    answer_free(&a);

    /* Ended, the sale needs no pass. */
    call(l.port, "DELETE", "/admin/hot-sales/7", adm, NULL, &a);
    CHECK_INT(a.status, 204);
    answer_free(&a);
    call(l.port, "POST", "/v1/shows/7/holds", NULL, "{}", &a);
    CHECK_INT(a.status, 200);
    answer_free(&a);
    call(l.port, "DELETE", "/admin/hot-sales/7", adm, NULL, &a);
    check_problem(&a, 404, "not-hot");
    answer_free(&a);
    live_stop(&l);
}

struct joiner {
    int port;
    pthread_barrier_t *go;
    struct answer a; /* checked by the main thread: CHECK jumps */
};

static void *join_racer(void *arg)
{
    struct joiner *r = arg;

    pthread_barrier_wait(r->go);
    call(r->port, "POST", "/v1/shows/11/queue", NULL, NULL, &r->a);
    return NULL;
}

TEST(concurrent_joins_get_distinct_places)
{
    enum { N = 32 };
    struct live l;
    struct answer a;
    struct joiner r[N];
    pthread_t t[N];
    pthread_barrier_t go;
    bool slot_seen[N] = {false};
    char visitor[N][GW_WAITROOM_VISITOR_TEXT_MAX + 1];
    char cj[GW_TOKEN_MAX + 64];

    live_start(&l, 1, 64, false);
    customer(l.port, "cj", cj, sizeof(cj));
    /* 1000 a second: slot k opens k ms after the opening. */
    call(l.port, "POST", "/admin/hot-sales",
         "Authorization: Bearer " ADMIN "\r\n",
         "{\"show_id\":11,\"opens_at\":\"2027-01-15T08:00:01Z\","
         "\"rate_per_s\":1000,\"visitors_max\":32}",
         &a);
    CHECK_INT(a.status, 201);
    answer_free(&a);
    pthread_barrier_init(&go, NULL, N);
    for (int i = 0; i < N; i++) {
        r[i] = (struct joiner){.port = l.port, .go = &go};
        pthread_create(&t[i], NULL, join_racer, &r[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&go);
    for (int i = 0; i < N; i++) {
        CHECK_INT(r[i].a.status, 201);
        CHECK_STR(json_string_value(json_object_get(r[i].a.body, "state")),
                  "before-opening");
        snprintf(visitor[i], sizeof(visitor[i]), "%s",
                 json_string_value(json_object_get(r[i].a.body, "visitor")));
        answer_free(&r[i].a);
    }

    /* After the opening every one was admitted in its own slot. */
    clock_manual_advance(&clk, 1000 + N);
    for (int i = 0; i < N; i++) {
        int64_t slot;

        status(l.port, 11, visitor[i], cj, &a);
        CHECK_INT(a.status, 200);
        CHECK_STR(str(&a, "state"), "admitted");
        answer_free(&a);
        /* The visitor id's number is its arrival; its slot comes from
         * the pass's expiry: opening + slot + 300 s. */
        status(l.port, 11, visitor[i], cj, &a);
        {
            const char *pass = str(&a, "pass");
            const char *exp = strchr(strchr(pass, '.') + 1, '.') + 1;

            slot = strtoll(exp, NULL, 10) - (T0 + 1000) - 300000;
        }
        answer_free(&a);
        CHECK(slot >= 0 && slot < N);
        CHECK(!slot_seen[slot]);
        slot_seen[slot] = true;
    }
    call(l.port, "POST", "/v1/shows/11/queue", NULL, NULL, &a);
    CHECK_INT(a.status, 503);
    answer_free(&a);
    live_stop(&l);
}

struct racer {
    int port;
    int i;
    int status;
    pthread_barrier_t *go;
};

static void *signup_racer(void *arg)
{
    struct racer *r = arg;
    struct answer a;
    char body[160];

    snprintf(body, sizeof(body),
             "{\"email\":\"u%d@example.com\",\"password\":\"correct horse\","
             "\"name\":\"U\"}",
             r->i);
    pthread_barrier_wait(r->go);
    call(r->port, "POST", "/v1/accounts", NULL, body, &a);
    r->status = a.status;
    answer_free(&a);
    return NULL;
}

TEST(full_work_queue_is_503)
{
    enum { N = 12 };
    struct live l;
    struct racer r[N];
    pthread_t t[N];
    pthread_barrier_t go;
    int created = 0, busy = 0;

    /* One worker, one waiting job: twelve sign-ups at once cannot all
     * fit, whatever the timing, while each hash takes the worker. */
    live_start(&l, 1, 1, true);
    pthread_barrier_init(&go, NULL, N);
    for (int i = 0; i < N; i++) {
        r[i] = (struct racer){.port = l.port, .i = i, .go = &go};
        pthread_create(&t[i], NULL, signup_racer, &r[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        created += r[i].status == 201;
        busy += r[i].status == 503;
    }
    pthread_barrier_destroy(&go);
    CHECK_INT(created + busy, N);
    CHECK(created >= 1);
    CHECK(busy >= 1);
    live_stop(&l);
}

TEST(dispatch_and_scope_table)
{
    CHECK_INT(gw_edge_scope_needed("GET", "/v1/cities"), GW_SCOPE_CATALOG_READ);
    CHECK_INT(gw_edge_scope_needed("GET", "/v1/shows/7/seats"),
              GW_SCOPE_CATALOG_READ);
    CHECK_INT(gw_edge_scope_needed("POST", "/v1/shows/7/holds"),
              GW_SCOPE_HOLDS_WRITE);
    CHECK_INT(gw_edge_scope_needed("POST", "/v1/holds/7-1/checkout"),
              GW_SCOPE_HOLDS_WRITE);
    CHECK_INT(gw_edge_scope_needed("DELETE", "/v1/holds/7-1"),
              GW_SCOPE_HOLDS_WRITE);
    CHECK_INT(gw_edge_scope_needed("GET", "/v1/bookings/3"),
              GW_SCOPE_BOOKINGS_READ);
    CHECK_INT(gw_edge_scope_needed("POST", "/v1/bookings/3/cancel"),
              GW_SCOPE_BOOKINGS_WRITE);
    CHECK_INT(gw_edge_scope_needed("POST", "/v1/admin/shows"), 0);
    CHECK_INT(gw_edge_scope_needed("GET", "/v1/admin/shows"), 0);
    CHECK_INT(gw_edge_scope_needed("POST", "/v1/accounts"), 0);
}

HARNESS_MAIN(T(signup_signin_refresh_signout), T(bad_tokens_refused),
             T(signin_limit_over_http), T(admin_routes_and_api_key_scopes),
             T(waiting_room_over_http), T(concurrent_joins_get_distinct_places),
             T(full_work_queue_is_503), T(dispatch_and_scope_table))
