/*
 * test_gw_cache.c - the response cache (src/gateway/cache.c): what
 * answers allow (a table of header sets and the policy each gives), and
 * the store driven with an explicit clock: hits and Age, staleness,
 * one fill per key with its waiters, stale-if-error, revalidation,
 * purges (also during a fill), Authorization, and eviction by bytes.
 */
#include "harness.h"

#include <stdio.h>

#include "base/err.h"
#include "gateway/cache.h"

#define HDR(n, v)                                                              \
    {                                                                          \
        n, sizeof(n) - 1, v, sizeof(v) - 1                                     \
    }

/* --- policies ------------------------------------------------------------- */

struct policy_case {
    const char *name;
    const struct gw_cache_defaults *d;
    int status;
    bool auth;
    struct http_header_kv h[4];
    size_t n;
    bool storable, auth_ok;
    int64_t fresh_ms, swr_ms, sie_ms;
};

/* A route that sets everything, one that sets nothing, one that caps. */
static const struct gw_cache_defaults route = {
    .ttl_ms = 1000, .swr_ms = 500, .sie_ms = 30000};
static const struct gw_cache_defaults bare = {.swr_ms = -1, .sie_ms = -1};
static const struct gw_cache_defaults capped = {
    .ttl_ms = 1000, .max_ttl_ms = 300, .swr_ms = -1, .sie_ms = -1};

/* One case per line or two reads as a table. */
/* clang-format off */
#define CC(v) HDR("cache-control", v)
static const struct policy_case policies[] = {
    /* name, route, status, auth, headers, n,
     * storable, auth_ok, fresh, swr, sie */
    {"max-age", &route, 200, false, {CC("max-age=10")}, 1,
     true, false, 10000, 500, 30000},
    {"s-maxage over max-age, no stale", &route, 200, false,
     {CC("max-age=10, s-maxage=3")}, 1, true, true, 3000, 0, 0},
    {"answer's own stale windows", &bare, 200, false,
     {CC("public, max-age=30, stale-while-revalidate=30, stale-if-error=60")},
     1, true, true, 30000, 30000, 60000},
    {"the route's windows replace the answer's", &route, 200, false,
     {CC("public, max-age=30, stale-while-revalidate=30, stale-if-error=60")},
     1, true, true, 30000, 500, 30000},
    {"the route caps freshness", &capped, 200, false,
     {CC("max-age=10, stale-while-revalidate=5")}, 1,
     true, false, 300, 5000, 0},
    {"no-store", &route, 200, false, {CC("no-store, max-age=60")}, 1,
     false, false, 60000, 500, 30000},
    {"private", &route, 200, false, {CC("private, max-age=60")}, 1,
     false, false, 60000, 500, 30000},
    {"nothing said: the route's ttl", &route, 200, false,
     {HDR("etag", "\"x\"")}, 1, true, false, 1000, 500, 30000},
    {"nothing said, nothing stored without a route ttl", &bare, 200, false,
     {HDR("etag", "\"x\"")}, 1, false, false, 0, 0, 0},
    {"nothing said, not a 200", &route, 404, false,
     {HDR("etag", "\"x\"")}, 1, false, false, 0, 0, 0},
    {"404 with max-age", &route, 404, false, {CC("max-age=5")}, 1,
     true, false, 5000, 500, 30000},
    {"500 never", &route, 500, false, {CC("max-age=5")}, 1,
     false, false, 5000, 500, 30000},
    {"Vary refused", &route, 200, false,
     {CC("max-age=5"), HDR("vary", "Accept")}, 2,
     false, false, 5000, 500, 30000},
    {"Authorization without public", &route, 200, true, {CC("max-age=5")}, 1,
     false, false, 5000, 500, 30000},
    {"Authorization with public", &route, 200, true,
     {CC("public, max-age=5")}, 1, true, true, 5000, 500, 30000},
    {"no-cache with ETag: stored, always revalidated, never stale", &route,
     200, false, {CC("no-cache"), HDR("etag", "\"e\"")}, 2,
     true, false, 0, 0, 0},
    {"no-cache without ETag", &route, 200, false, {CC("no-cache")}, 1,
     false, false, 0, 0, 0},
    {"must-revalidate: no stale", &route, 200, false,
     {CC("max-age=5, must-revalidate")}, 1, true, true, 5000, 0, 0},
    {"Expires less Date", &route, 200, false,
     {HDR("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
      HDR("expires", "Sun, 06 Nov 1994 08:50:07 GMT")}, 2,
     true, false, 30000, 500, 30000},
    {"bad Expires: already stale", &route, 200, false,
     {HDR("expires", "0"), HDR("etag", "\"e\"")}, 2,
     true, false, 0, 500, 30000},
    {"max-age beats Expires", &route, 200, false,
     {CC("max-age=2"), HDR("expires", "Sun, 06 Nov 1994 08:50:07 GMT")}, 2,
     true, false, 2000, 500, 30000},
};
#undef CC
/* clang-format on */

TEST(test_policies)
{
    for (size_t k = 0; k < sizeof(policies) / sizeof(policies[0]); k++) {
        const struct policy_case *pc = &policies[k];
        struct gw_cache_policy p;

        gw_cache_policy_parse(pc->status, pc->h, pc->n, pc->auth, 0, pc->d, &p);
        if (p.storable != pc->storable || p.auth_ok != pc->auth_ok ||
            (pc->storable &&
             (p.fresh_ms != pc->fresh_ms || p.swr_ms != pc->swr_ms ||
              p.sie_ms != pc->sie_ms)))
            harness_fail(__FILE__, __LINE__,
                         "%s: storable %d auth_ok %d fresh %lld swr %lld "
                         "sie %lld",
                         pc->name, p.storable, p.auth_ok, (long long)p.fresh_ms,
                         (long long)p.swr_ms, (long long)p.sie_ms);
    }
}

TEST(test_age_header_counts)
{
    struct http_header_kv h[] = {HDR("cache-control", "max-age=10"),
                                 HDR("age", "4")};
    struct gw_cache_policy p;

    gw_cache_policy_parse(200, h, 2, false, 0, NULL, &p);
    CHECK(p.storable);
    CHECK_INT(p.age_ms, 4000);
}

TEST(test_etag_match)
{
    CHECK(gw_cache_etag_match("\"a\"", "\"a\""));
    CHECK(gw_cache_etag_match("\"x\", W/\"a\"", "\"a\""));
    CHECK(gw_cache_etag_match("*", "\"a\""));
    CHECK(!gw_cache_etag_match("\"b\"", "\"a\""));
    CHECK(!gw_cache_etag_match("*", ""));
}

/* --- the store --------------------------------------------------------------
 */

static struct gw_cache_entry *answer(const char *body, const char *cc,
                                     const char *etag,
                                     struct gw_cache_policy *p)
{
    struct http_header_kv h[3] = {
        {"cache-control", 13, cc, strlen(cc)},
        {"content-type", 12, "application/json", 16},
        {"etag", 4, etag, strlen(etag)},
    };

    gw_cache_policy_parse(200, h, 3, false, 0, &bare, p);
    return gw_cache_entry_new(200, h, 3, body, strlen(body));
}

#define KEY(s) s, sizeof(s) - 1

/* Looks up, fills with body at now, and ends the fill. */
static void fill(struct gw_cache *c, const char *key, size_t len, int64_t now,
                 const char *body, const char *cc)
{
    struct gw_cache_look look;
    struct gw_cache_policy p;
    struct gw_cache_entry *e;
    void *w[GW_CACHE_WAITERS_MAX];
    int token;

    gw_cache_lookup(c, key, len, now, false, &token, &look);
    CHECK_INT(look.verdict, GW_CACHE_FILL);
    e = answer(body, cc, "\"t1\"", &p);
    CHECK_INT(gw_cache_fill_done(c, look.fill, e, &p, now, w), 0);
    gw_cache_entry_release(e);
    gw_cache_entry_release(look.entry);
}

TEST(test_hit_age_and_staleness)
{
    struct gw_cache *c;
    struct gw_cache_look look;
    int token;

    CHECK_INT(gw_cache_new(1 << 20, 1 << 16, &c), ERR_OK);
    gw_cache_lookup(c, KEY("/v1/shows/1"), 0, false, NULL, &look);
    CHECK_INT(look.verdict, GW_CACHE_MISS);
    fill(c, KEY("/v1/shows/1"), 1000, "{\"id\":1}",
         "max-age=10, stale-while-revalidate=5");

    gw_cache_lookup(c, KEY("/v1/shows/1"), 3500, false, NULL, &look);
    CHECK_INT(look.verdict, GW_CACHE_HIT);
    CHECK_INT(look.age_s, 2);
    CHECK_INT(look.ttl_ms, 7500);
    CHECK_INT(look.entry->body_len, 8);
    gw_cache_entry_release(look.entry);

    /* Stale within stale-while-revalidate: served, one refresh. */
    gw_cache_lookup(c, KEY("/v1/shows/1"), 11000, false, NULL, &look);
    CHECK_INT(look.verdict, GW_CACHE_STALE);
    CHECK(look.fill != NULL);
    struct gw_cache_fill *refresh = look.fill;
    gw_cache_entry_release(look.entry);
    gw_cache_lookup(c, KEY("/v1/shows/1"), 11500, false, NULL, &look);
    CHECK_INT(look.verdict, GW_CACHE_STALE);
    CHECK(look.fill == NULL); /* the refresh is out already */
    gw_cache_entry_release(look.entry);

    /* Past it: the request waits on the refresh. */
    gw_cache_lookup(c, KEY("/v1/shows/1"), 16000, false, &token, &look);
    CHECK_INT(look.verdict, GW_CACHE_WAIT);

    /* Without a waiter nothing changes. */
    void *w[GW_CACHE_WAITERS_MAX];
    gw_cache_lookup(c, KEY("/v1/shows/1"), 16000, false, NULL, &look);
    CHECK_INT(look.verdict, GW_CACHE_MISS);
    /* The refresh failed: nothing kept, the waiter handed back. */
    CHECK_INT(gw_cache_fill_done(c, refresh, NULL, NULL, 16000, w), 1);
    CHECK(w[0] == &token);
    gw_cache_free(c);
}

TEST(test_revalidation_renews_the_entry)
{
    struct gw_cache *c;
    struct gw_cache_look look;
    struct gw_cache_policy p = {.storable = true, .fresh_ms = 10000};
    void *w[GW_CACHE_WAITERS_MAX];
    int token;

    CHECK_INT(gw_cache_new(1 << 20, 1 << 16, &c), ERR_OK);
    fill(c, KEY("/a"), 0, "body", "max-age=1");
    gw_cache_lookup(c, KEY("/a"), 5000, false, &token, &look);
    CHECK_INT(look.verdict, GW_CACHE_FILL);
    CHECK(look.entry != NULL);
    CHECK_STR(look.entry->etag, "\"t1\"");
    /* 304: the same entry, fresh for 10 s from now. */
    CHECK_INT(gw_cache_fill_done(c, look.fill, look.entry, &p, 5000, w), 0);
    gw_cache_entry_release(look.entry);
    gw_cache_lookup(c, KEY("/a"), 14999, false, NULL, &look);
    CHECK_INT(look.verdict, GW_CACHE_HIT);
    CHECK_INT(look.age_s, 9);
    gw_cache_entry_release(look.entry);
    gw_cache_free(c);
}

TEST(test_one_fill_many_waiters)
{
    struct gw_cache *c;
    struct gw_cache_look look, first;
    struct gw_cache_policy p;
    struct gw_cache_entry *e;
    static void *w[GW_CACHE_WAITERS_MAX];
    static int tokens[GW_CACHE_WAITERS_MAX + 2];

    CHECK_INT(gw_cache_new(1 << 20, 1 << 16, &c), ERR_OK);
    gw_cache_lookup(c, KEY("/k"), 0, false, &tokens[0], &first);
    CHECK_INT(first.verdict, GW_CACHE_FILL);
    for (int k = 1; k <= GW_CACHE_WAITERS_MAX; k++) {
        gw_cache_lookup(c, KEY("/k"), k, false, &tokens[k], &look);
        CHECK_INT(look.verdict, GW_CACHE_WAIT);
    }
    /* One more than the bound fetches alone. */
    gw_cache_lookup(c, KEY("/k"), 1, false, &tokens[GW_CACHE_WAITERS_MAX + 1],
                    &look);
    CHECK_INT(look.verdict, GW_CACHE_BYPASS);
    /* Another key is not held up. */
    gw_cache_lookup(c, KEY("/other"), 1, false, &tokens[0], &look);
    CHECK_INT(look.verdict, GW_CACHE_FILL);

    e = answer("x", "max-age=60", "\"1\"", &p);
    CHECK_INT(gw_cache_fill_done(c, first.fill, e, &p, 10, w),
              GW_CACHE_WAITERS_MAX);
    for (int k = 0; k < GW_CACHE_WAITERS_MAX; k++)
        CHECK(w[k] == &tokens[k + 1]);
    gw_cache_entry_release(e);
    gw_cache_lookup(c, KEY("/k"), 20, false, NULL, &look);
    CHECK_INT(look.verdict, GW_CACHE_HIT);
    gw_cache_entry_release(look.entry);
    gw_cache_free(c);
}

TEST(test_stale_if_error)
{
    struct gw_cache *c;
    struct gw_cache_look look;
    void *w[GW_CACHE_WAITERS_MAX];
    int token;

    CHECK_INT(gw_cache_new(1 << 20, 1 << 16, &c), ERR_OK);
    fill(c, KEY("/s"), 0, "old", "max-age=1, stale-if-error=10");
    gw_cache_lookup(c, KEY("/s"), 5000, false, &token, &look);
    CHECK_INT(look.verdict, GW_CACHE_FILL);
    CHECK(gw_cache_usable_on_error(look.entry, 5000));
    CHECK(gw_cache_usable_on_error(look.entry, 10999));
    CHECK(!gw_cache_usable_on_error(look.entry, 11000));
    /* The upstream failed: nothing kept, the stale entry stays. */
    CHECK_INT(gw_cache_fill_done(c, look.fill, NULL, NULL, 5000, w), 0);
    gw_cache_entry_release(look.entry);
    CHECK(gw_cache_usable_on_error(NULL, 0) == false);
    gw_cache_lookup(c, KEY("/s"), 6000, false, &token, &look);
    CHECK_INT(look.verdict, GW_CACHE_FILL);
    CHECK(look.entry != NULL);
    gw_cache_fill_done(c, look.fill, NULL, NULL, 6000, w);
    gw_cache_entry_release(look.entry);
    gw_cache_free(c);
}

TEST(test_purge)
{
    struct gw_cache *c;
    struct gw_cache_look look;
    struct gw_cache_policy p;
    struct gw_cache_entry *e;
    void *w[GW_CACHE_WAITERS_MAX];
    int token;

    CHECK_INT(gw_cache_new(1 << 20, 1 << 16, &c), ERR_OK);
    fill(c, KEY("/v1/shows/1"), 0, "a", "max-age=60");
    fill(c, KEY("/v1/shows/1/seats"), 0, "b", "max-age=60");
    fill(c, KEY("/v1/shows/1?x=2"), 0, "c", "max-age=60");
    fill(c, KEY("/v1/shows/12"), 0, "d", "max-age=60");
    CHECK_INT(gw_cache_purge(c, KEY("/v1/shows/1")), 3);
    gw_cache_lookup(c, KEY("/v1/shows/12"), 1, false, NULL, &look);
    CHECK_INT(look.verdict, GW_CACHE_HIT);
    gw_cache_entry_release(look.entry);
    gw_cache_lookup(c, KEY("/v1/shows/1/seats"), 1, false, NULL, &look);
    CHECK_INT(look.verdict, GW_CACHE_MISS);

    /* A fill out during a purge does not store what it fetched. */
    gw_cache_lookup(c, KEY("/v1/shows/1"), 1, false, &token, &look);
    CHECK_INT(look.verdict, GW_CACHE_FILL);
    CHECK_INT(gw_cache_purge(c, KEY("/v1/shows/1")), 0);
    e = answer("before", "max-age=60", "\"1\"", &p);
    gw_cache_fill_done(c, look.fill, e, &p, 2, w);
    gw_cache_entry_release(e);
    gw_cache_lookup(c, KEY("/v1/shows/1"), 3, false, NULL, &look);
    CHECK_INT(look.verdict, GW_CACHE_MISS);

    CHECK_INT(gw_cache_purge(c, KEY("/")), 1);
    struct gw_cache_stats st;
    gw_cache_stats(c, &st);
    CHECK_INT(st.entries, 0);
    CHECK_INT(st.bytes, 0);
    gw_cache_free(c);
}

TEST(test_authorization)
{
    struct gw_cache *c;
    struct gw_cache_look look;
    int token;

    CHECK_INT(gw_cache_new(1 << 20, 1 << 16, &c), ERR_OK);
    fill(c, KEY("/private-ish"), 0, "a", "max-age=60");
    fill(c, KEY("/public"), 0, "b", "public, max-age=60");
    gw_cache_lookup(c, KEY("/private-ish"), 1, true, &token, &look);
    CHECK_INT(look.verdict, GW_CACHE_BYPASS);
    gw_cache_lookup(c, KEY("/public"), 1, true, &token, &look);
    CHECK_INT(look.verdict, GW_CACHE_HIT);
    gw_cache_entry_release(look.entry);
    /* No entry: a request with credentials neither fills nor waits. */
    gw_cache_lookup(c, KEY("/none"), 1, true, &token, &look);
    CHECK_INT(look.verdict, GW_CACHE_BYPASS);
    gw_cache_free(c);
}

TEST(test_eviction_by_bytes)
{
    struct gw_cache *c;
    struct gw_cache_look look;
    struct gw_cache_stats st;
    char key[32], body[1000];

    memset(body, 'x', sizeof(body) - 1);
    body[sizeof(body) - 1] = '\0';
    CHECK_INT(gw_cache_new(16 * 1024, 4 * 1024, &c), ERR_OK);
    for (int k = 0; k < 40; k++) {
        int n = snprintf(key, sizeof(key), "/item/%d", k);
        fill(c, key, (size_t)n, k, body, "max-age=60");
        /* Keep /item/0 in use: the least recently used go first. */
        gw_cache_lookup(c, KEY("/item/0"), k, false, NULL, &look);
        CHECK_INT(look.verdict, GW_CACHE_HIT);
        gw_cache_entry_release(look.entry);
        gw_cache_stats(c, &st);
        CHECK(st.bytes <= 16 * 1024);
    }
    CHECK(st.evictions > 20);
    gw_cache_lookup(c, KEY("/item/39"), 50, false, NULL, &look);
    CHECK_INT(look.verdict, GW_CACHE_HIT);
    gw_cache_entry_release(look.entry);
    gw_cache_lookup(c, KEY("/item/1"), 50, false, NULL, &look);
    CHECK_INT(look.verdict, GW_CACHE_MISS);

    /* An answer over max_entry_bytes is not kept. */
    char big[5000];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct gw_cache_policy p;
    struct gw_cache_entry *e = answer(big, "max-age=60", "\"b\"", &p);
    void *w[GW_CACHE_WAITERS_MAX];
    int token;
    gw_cache_lookup(c, KEY("/big"), 60, false, &token, &look);
    CHECK_INT(look.verdict, GW_CACHE_FILL);
    gw_cache_fill_done(c, look.fill, e, &p, 60, w);
    gw_cache_entry_release(e);
    gw_cache_lookup(c, KEY("/big"), 61, false, NULL, &look);
    CHECK_INT(look.verdict, GW_CACHE_MISS);
    gw_cache_free(c);
}

TEST(test_entry_copies_and_skips)
{
    struct http_header_kv h[] = {HDR("Connection", "close"), HDR("age", "3"),
                                 HDR("ETag", "\"q\""),
                                 HDR("content-type", "text/plain")};
    struct gw_cache_entry *e = gw_cache_entry_new(200, h, 4, "hi", 2);

    CHECK(e != NULL);
    CHECK_INT(e->nheaders, 2);
    CHECK_STR(e->etag, "\"q\"");
    CHECK_STR(e->body, "hi");
    gw_cache_entry_release(e);
}

HARNESS_MAIN(T(test_policies), T(test_age_header_counts), T(test_etag_match),
             T(test_hit_age_and_staleness),
             T(test_revalidation_renews_the_entry),
             T(test_one_fill_many_waiters), T(test_stale_if_error),
             T(test_purge), T(test_authorization), T(test_eviction_by_bytes),
             T(test_entry_copies_and_skips))
