/*
 * test_gw_config.c - the gateway's routes file, registry file, addresses
 * and route matching (src/gateway/config.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "gateway/internal.h"
#include "harness.h"

static struct gw_spec spec;
static char err[GW_ERR_MAX];

static int parse(const char *text)
{
    err[0] = '\0';
    return gw_spec_parse(text, strlen(text), "routes.json", &spec, err,
                         sizeof(err));
}

/* Fails unless parsing text is refused with a message containing want. */
#define CHECK_REFUSED(text, want)                                              \
    do {                                                                       \
        CHECK_INT(parse(text), ERR_CONFIG);                                    \
        if (strstr(err, want) == NULL)                                         \
            harness_fail(__FILE__, __LINE__, "message \"%s\" lacks \"%s\"",    \
                         err, want);                                           \
    } while (0)

#define POOLS                                                                  \
    "\"pools\": {\"catalog\": {\"instances\": [\"127.0.0.1:8081\"]},"          \
    "\"booking\": {\"instances\": [\"127.0.0.1:8082\", \"127.0.0.1:8083\"],"   \
    "\"balance\": \"hash\"}}"

TEST(test_default_file_parses)
{
    char msg[GW_ERR_MAX];

    CHECK_INT(
        gw_spec_load("deploy/gateway/routes.json", &spec, msg, sizeof(msg)),
        ERR_OK);
    /* The demo's file grows with the platform: its pools, not a count. */
    CHECK(spec.npools >= 2);
    CHECK_STR(spec.pools[0].name, "catalog");
    CHECK_STR(spec.pools[1].name, "booking");
    CHECK(spec.nroutes >= 5);
}

TEST(test_pools_and_routes)
{
    CHECK_INT(parse("{" POOLS ", \"routes\": ["
                    "{\"pattern\": \"/v1/shows/{show_id}/seats\","
                    " \"pool\": \"booking\", \"hash_param\": \"show_id\"},"
                    "{\"prefix\": \"/v1/\", \"pool\": \"catalog\","
                    " \"total_timeout_ms\": 3000}]}"),
              ERR_OK);
    CHECK_INT(spec.npools, 2);
    CHECK_STR(spec.pools[0].name, "catalog");
    CHECK(!spec.pools[0].hash);
    CHECK(spec.pools[1].hash);
    CHECK_INT(spec.pools[1].addrs.n, 2);
    CHECK_STR(spec.pools[1].addrs.addr[1], "127.0.0.1:8083");
    CHECK_INT(spec.nroutes, 2);
    CHECK_INT(spec.routes[0].pool, 1);
    CHECK_INT(spec.routes[0].hash_seg, 2);
    CHECK_INT(spec.routes[0].connect_timeout_ms, GW_CONNECT_TIMEOUT_MS);
    CHECK_INT(spec.routes[1].total_timeout_ms, 3000);
    /* The default first-byte timeout is cut to the route's total. */
    CHECK_INT(spec.routes[1].first_byte_timeout_ms, 3000);
    CHECK(spec.routes[1].prefix);
}

TEST(test_refusals_name_the_place)
{
    CHECK_REFUSED("{" POOLS ", \"routes\": [{\"prefix\": \"/v1/\","
                  " \"pool\": \"bookin\"}]}",
                  "routes[0].pool: unknown pool 'bookin'");
    CHECK_REFUSED("{" POOLS ", \"routes\": [{\"prefix\": \"/v1/\","
                  " \"pool\": \"catalog\", \"retries\": 3}]}",
                  "routes[0]: unknown key \"retries\"");
    CHECK_REFUSED("{" POOLS ", \"routes\": [{\"prefix\": \"/v1/\","
                  " \"pool\": \"catalog\", \"total_timeout_ms\": \"5\"}]}",
                  "routes[0].total_timeout_ms");
    CHECK_REFUSED("{" POOLS ", \"routes\": [{\"prefix\": \"/internal/\","
                  " \"pool\": \"catalog\"}]}",
                  "routes[0].prefix");
    CHECK_REFUSED("{" POOLS ", \"routes\": [{\"pattern\": "
                  "\"/internal/v1/faults\", \"pool\": \"catalog\"}]}",
                  "routes[0].pattern");
    CHECK_REFUSED("{" POOLS ", \"routes\": [{\"prefix\": \"/v1/\","
                  " \"pattern\": \"/v1/x\", \"pool\": \"catalog\"}]}",
                  "give one of pattern and prefix");
    CHECK_REFUSED("{" POOLS ", \"routes\": [{\"pattern\": \"/v1/{id}\","
                  " \"pool\": \"booking\", \"hash_param\": \"show\"}]}",
                  "has no {show}");
    CHECK_REFUSED("{" POOLS ", \"routes\": [{\"pattern\": \"/v1/{id}\","
                  " \"pool\": \"catalog\", \"hash_param\": \"id\"}]}",
                  "does not balance by hash");
    CHECK_REFUSED("{\"pools\": {\"a\": {\"instances\": [\"localhost:1\"]}},"
                  " \"routes\": [{\"prefix\": \"/\", \"pool\": \"a\"}]}",
                  "pools.a.instances[0]");
    CHECK_REFUSED("{\"pools\": {\"a\": {\"instances\": [\"127.0.0.1:1\","
                  " \"127.0.0.1:1\"]}}, \"routes\": [{\"prefix\": \"/\","
                  " \"pool\": \"a\"}]}",
                  "listed twice");
    CHECK_REFUSED("{\"pools\": {\"a\": {\"instances\": [],"
                  " \"balance\": \"rr\"}}, \"routes\": []}",
                  "pools.a.balance");
    CHECK_REFUSED("{\"pools\": {}, \"routes\": []}", "pools: required");
    CHECK_REFUSED("{\"pools\": {\"a\": {\"instances\": []}}, \"routes\": [],"
                  " \"extra\": 1}",
                  "unknown key \"extra\"");
    CHECK_REFUSED("{\"pools\": ", "line 1");
    CHECK_REFUSED("{" POOLS ", \"routes\": [{\"prefix\": \"/v1/\","
                  " \"pool\": \"catalog\", \"connect_timeout_ms\": 900,"
                  " \"total_timeout_ms\": 500}]}",
                  "no timeout may pass total_timeout_ms");
}

TEST(test_route_matching)
{
    const struct gw_route *r;
    const char *key;
    size_t len;

    CHECK_INT(parse("{" POOLS ", \"routes\": ["
                    "{\"pattern\": \"/v1/shows/{show_id}/seats\","
                    " \"pool\": \"booking\", \"hash_param\": \"show_id\"},"
                    "{\"pattern\": \"/v1/holds/{hold_id}\","
                    " \"pool\": \"booking\", \"hash_param\": \"hold_id\"},"
                    "{\"prefix\": \"/v1/\", \"pool\": \"catalog\"}]}"),
              ERR_OK);

    r = gw_route_find(&spec, "/v1/shows/27/seats", &key, &len);
    CHECK(r == &spec.routes[0]);
    CHECK_INT(len, 2);
    CHECK(memcmp(key, "27", 2) == 0);
    /* A trailing slash names the same resource. */
    CHECK(gw_route_find(&spec, "/v1/shows/27/seats/", &key, &len) ==
          &spec.routes[0]);
    /* First match in file order: the prefix takes what patterns do not. */
    r = gw_route_find(&spec, "/v1/shows/27", &key, &len);
    CHECK(r == &spec.routes[2]);
    CHECK(key == NULL);
    r = gw_route_find(&spec, "/v1/holds/27-00ab", &key, &len);
    CHECK(r == &spec.routes[1]);
    CHECK_INT(len, 7);
    CHECK(gw_route_find(&spec, "/v1/holds/27-00ab/extend", &key, &len) ==
          &spec.routes[2]);
    CHECK(gw_route_find(&spec, "/v2/cities", &key, &len) == NULL);
    CHECK(gw_route_find(&spec, "/v1", &key, &len) == NULL);
}

TEST(test_key_hash_uses_show_digits)
{
    /* A hold lands where its show does. */
    CHECK(gw_key_hash("27-00ab", 7) == gw_key_hash("27", 2));
    CHECK(gw_key_hash("27-00ab", 7) == gw_key_hash("27-ffff", 7));
    CHECK(gw_key_hash("27", 2) != gw_key_hash("28", 2));
    CHECK(gw_key_hash("abc", 3) == gw_hash("abc", 3));
}

TEST(test_addresses)
{
    char host[GW_ADDR_MAX];
    int port = 0;

    CHECK_INT(gw_addr_parse("127.0.0.1:8081", host, sizeof(host), &port),
              ERR_OK);
    CHECK_STR(host, "127.0.0.1");
    CHECK_INT(port, 8081);
    CHECK_INT(gw_addr_parse("[::1]:9000", host, sizeof(host), &port), ERR_OK);
    CHECK_STR(host, "::1");
    CHECK_INT(port, 9000);
    CHECK_INT(gw_addr_parse("127.0.0.1:0", host, sizeof(host), &port),
              ERR_INVALID);
    CHECK_INT(gw_addr_parse("127.0.0.1:65536", host, sizeof(host), &port),
              ERR_INVALID);
    CHECK_INT(gw_addr_parse("127.0.0.1:08", host, sizeof(host), &port),
              ERR_INVALID);
    CHECK_INT(gw_addr_parse("127.0.0.1", host, sizeof(host), &port),
              ERR_INVALID);
    CHECK_INT(gw_addr_parse("example.com:80", host, sizeof(host), &port),
              ERR_INVALID);
    CHECK_INT(gw_addr_parse(":80", host, sizeof(host), &port), ERR_INVALID);
}

static int applied;
static char applied_pool[GW_POOL_NAME_MAX];
static size_t applied_n;

static void apply(void *arg, const char *pool, const struct gw_addrs *addrs)
{
    (void)arg;
    applied++;
    snprintf(applied_pool, sizeof(applied_pool), "%s", pool);
    applied_n = addrs->n;
}

static int registry(const char *text)
{
    applied = 0;
    return gw_registry_parse(text, strlen(text), "registry.json", apply, NULL,
                             err, sizeof(err));
}

TEST(test_registry)
{
    CHECK_INT(registry("{\"pools\": {\"booking\": [\"127.0.0.1:8082\","
                       " \"127.0.0.1:8083\"]}}"),
              ERR_OK);
    CHECK_INT(applied, 1);
    CHECK_STR(applied_pool, "booking");
    CHECK_INT(applied_n, 2);

    /* A bad file applies nothing, not even its good pools. */
    CHECK_INT(registry("{\"pools\": {\"booking\": [\"127.0.0.1:8082\"],"
                       " \"catalog\": [\"nope\"]}}"),
              ERR_CONFIG);
    CHECK_INT(applied, 0);
    CHECK(strstr(err, "pools.catalog[0]") != NULL);
    CHECK_INT(registry("{\"pools\": {\"booking\": [\"127.0.0.1:8082\"]},"
                       " \"x\": 1}"),
              ERR_CONFIG);
    CHECK_INT(applied, 0);
    CHECK_INT(registry("not json"), ERR_CONFIG);
    CHECK_INT(applied, 0);
}

TEST(test_edge_policies)
{
    CHECK_INT(parse("{" POOLS ", \"routes\": ["
                    "{\"pattern\": \"/v1/shows/{show_id}/holds\","
                    " \"pool\": \"booking\", \"class\": \"critical\","
                    " \"max_in_flight\": 50,"
                    " \"rate_limit\": {\"policy\": \"holds\","
                    " \"key\": \"customer\", \"rate\": 5,"
                    " \"per\": \"second\", \"burst\": 10}},"
                    "{\"pattern\": \"/v1/holds/{hold_id}\","
                    " \"pool\": \"booking\","
                    " \"rate_limit\": {\"policy\": \"holds\","
                    " \"key\": \"customer\", \"rate\": 5,"
                    " \"per\": \"second\", \"burst\": 10}},"
                    "{\"pattern\": \"/v1/admin/shows/{show_id}/cancel\","
                    " \"pool\": \"catalog\","
                    " \"purge\": [\"/v1/shows/{show_id}\", \"/v1/movies/\"]},"
                    "{\"prefix\": \"/v1/\", \"pool\": \"catalog\","
                    " \"cache\": {\"ttl_ms\": 1000,"
                    " \"stale_if_error_ms\": 30000},"
                    " \"rate_limit\": {\"policy\": \"browse\","
                    " \"key\": \"address\", \"rate\": 100,"
                    " \"per\": \"minute\", \"dry_run\": true}}]}"),
              ERR_OK);
    CHECK_INT(spec.nlimits, 2);
    CHECK_STR(spec.limits[0].name, "holds");
    CHECK_INT(spec.limits[0].policy.rate, 5);
    CHECK_INT(spec.limits[0].policy.period_ms, 1000);
    CHECK_INT(spec.limits[0].policy.burst, 10);
    CHECK_INT(spec.limits[0].key, GW_LIMIT_BY_CUSTOMER);
    CHECK(!spec.limits[0].dry_run);
    CHECK_INT(spec.routes[0].limit, 0);
    CHECK_INT(spec.routes[1].limit, 0); /* the same policy, shared */
    CHECK(spec.routes[0].critical);
    CHECK_INT(spec.routes[0].max_in_flight, 50);
    CHECK_INT(spec.routes[2].limit, -1);
    CHECK_INT(spec.routes[2].npurges, 2);
    CHECK(!spec.routes[2].cache);
    CHECK(spec.routes[3].cache);
    CHECK_INT(spec.routes[3].cache_defaults.ttl_ms, 1000);
    CHECK_INT(spec.routes[3].cache_defaults.swr_ms, -1); /* the answer's */
    CHECK_INT(spec.routes[3].cache_defaults.max_ttl_ms, 0);
    CHECK_INT(spec.routes[3].cache_defaults.sie_ms, 30000);
    CHECK_INT(spec.limits[1].policy.period_ms, 60000);
    CHECK_INT(spec.limits[1].policy.burst, 100); /* burst defaults to rate */
    CHECK(spec.limits[1].dry_run);
    CHECK_INT(spec.limits[1].key, GW_LIMIT_BY_ADDRESS);

    char out[GW_ROUTE_TEXT_MAX];
    CHECK(gw_route_expand(&spec.routes[2], "/v1/admin/shows/42/cancel",
                          spec.routes[2].purge[0], out, sizeof(out)));
    CHECK_STR(out, "/v1/shows/42");
    CHECK(gw_route_expand(&spec.routes[2], "/v1/admin/shows/42/cancel",
                          spec.routes[2].purge[1], out, sizeof(out)));
    CHECK_STR(out, "/v1/movies/");
    CHECK(!gw_route_expand(&spec.routes[2], "/v1/admin/shows/42/cancel",
                           spec.routes[2].purge[0], out, 5));
}

TEST(test_edge_refusals)
{
#define ROUTE(extra)                                                           \
    "{" POOLS ", \"routes\": [{\"pattern\": \"/v1/shows/{id}\","               \
    " \"pool\": \"catalog\", " extra "}]}"
    CHECK_REFUSED(ROUTE("\"rate_limit\": {\"policy\": \"p\", \"key\": "
                        "\"ip\", \"rate\": 1, \"per\": \"second\"}"),
                  "routes[0].rate_limit.key");
    CHECK_REFUSED(ROUTE("\"rate_limit\": {\"policy\": \"p\", \"key\": "
                        "\"address\", \"rate\": 0, \"per\": \"second\"}"),
                  "routes[0].rate_limit.rate");
    CHECK_REFUSED(ROUTE("\"rate_limit\": {\"policy\": \"p\", \"key\": "
                        "\"address\", \"rate\": 1, \"per\": \"hour\"}"),
                  "routes[0].rate_limit.per");
    CHECK_REFUSED(ROUTE("\"rate_limit\": {\"policy\": \"p\", \"key\": "
                        "\"address\", \"rate\": 1, \"per\": \"second\","
                        " \"bucket\": 1}"),
                  "unknown key \"bucket\"");
    CHECK_REFUSED("{" POOLS ", \"routes\": ["
                  "{\"prefix\": \"/a/\", \"pool\": \"catalog\","
                  " \"rate_limit\": {\"policy\": \"p\", \"key\":"
                  " \"address\", \"rate\": 1, \"per\": \"second\"}},"
                  "{\"prefix\": \"/b/\", \"pool\": \"catalog\","
                  " \"rate_limit\": {\"policy\": \"p\", \"key\":"
                  " \"address\", \"rate\": 2, \"per\": \"second\"}}]}",
                  "routes[1].rate_limit: policy \"p\" is defined differently");
    CHECK_REFUSED(ROUTE("\"cache\": {\"ttl\": 5}"),
                  "routes[0].cache: unknown key \"ttl\"");
    CHECK_REFUSED(ROUTE("\"cache\": {\"ttl_ms\": -1}"),
                  "routes[0].cache.ttl_ms");
    CHECK_REFUSED(ROUTE("\"class\": \"vip\""), "routes[0].class");
    CHECK_REFUSED(ROUTE("\"max_in_flight\": 0"), "routes[0].max_in_flight");
    CHECK_REFUSED(ROUTE("\"purge\": [\"/v1/shows/{show_id}\"]"),
                  "routes[0].purge[0]");
    CHECK_REFUSED(ROUTE("\"purge\": \"/v1/\""), "routes[0].purge");
#undef ROUTE
}

HARNESS_MAIN(T(test_default_file_parses), T(test_pools_and_routes),
             T(test_refusals_name_the_place), T(test_route_matching),
             T(test_key_hash_uses_show_digits), T(test_addresses),
             T(test_registry), T(test_edge_policies), T(test_edge_refusals))
