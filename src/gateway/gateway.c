/*
 * gateway.c - configuration keys, start-up and the one handler every
 * public path reaches.
 *
 * The HTTP layer routes by method and whole patterns; the gateway needs
 * every path.  So it registers, for each method it forwards, one pattern
 * of {segment}s per depth up to GW_PATH_DEPTH_MAX, and matches its own
 * routes file inside the handler.
 */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/program.h"
#include "gateway/gateway.h"
#include "gateway/internal.h"

#define GW_TICK_MS 100

static const struct config_key gw_keys[] = {
    HTTP_CONFIG_KEYS(8080),
    PROGRAM_LOG_KEY,
    GW_EDGE_CONFIG_KEYS,
    {"gateway.routes", CONFIG_STRING, "deploy/gateway/routes.json", 0, 0,
     "the routes file: pools and routes (JSON)"},
    {"gateway.registry", CONFIG_STRING, "", 0, 0,
     "registry file of pool instances, re-read when it changes; empty: none"},
    {"gateway.admin_token", CONFIG_STRING, "", 0, 0,
     "bearer token for /admin/ routes; empty disables them"},
    {"gateway.static_dir", CONFIG_STRING, "web", 0, 0,
     "folder of the web pages served for unrouted GETs"},
    {"gateway.max_response_bytes", CONFIG_INT, "8388608", 1024, 1073741824,
     "largest upstream answer; larger gets 502"},
    {"gateway.debug_headers", CONFIG_BOOL, "false", 0, 0,
     "add X-Upstream: host:port to proxied answers (tests)"},
    {"gateway.health.interval_ms", CONFIG_INT, "2000", 10, 3600000,
     "time between health checks of a stable instance"},
    {"gateway.health.fast_interval_ms", CONFIG_INT, "500", 10, 3600000,
     "time between health checks of an instance changing state"},
    {"gateway.health.timeout_ms", CONFIG_INT, "1000", 10, 600000,
     "time a health check may take"},
    {"gateway.health.rise", CONFIG_INT, "2", 1, 100,
     "passes in a row that bring an instance up"},
    {"gateway.health.fall", CONFIG_INT, "3", 1, 100,
     "failures in a row that take an instance down"},
    {"gateway.health.slow_start_ms", CONFIG_INT, "10000", 0, 3600000,
     "weight ramp of an instance that came up; 0: none"},
    {"gateway.outlier.consecutive", CONFIG_INT, "5", 1, 1000,
     "5xx or connect failures in a row that eject an instance"},
    {"gateway.outlier.base_ejection_ms", CONFIG_INT, "30000", 1, 86400000,
     "first ejection time; each further one lasts one more"},
    {"gateway.outlier.max_ejection_ms", CONFIG_INT, "300000", 1, 86400000,
     "longest ejection (before jitter)"},
    {"gateway.outlier.max_ejected_percent", CONFIG_INT, "50", 0, 100,
     "share of a pool that may be ejected at once"},
    {"gateway.breaker.window", CONFIG_INT, "100", 1, 1024,
     "calls a pool's breaker remembers"},
    {"gateway.breaker.min_calls", CONFIG_INT, "20", 1, 1024,
     "calls recorded before the breaker may open"},
    {"gateway.breaker.failure_rate", CONFIG_STRING, "0.5", 0, 0,
     "share of failed calls that opens the breaker, (0,1]"},
    {"gateway.breaker.slow_rate", CONFIG_STRING, "0.8", 0, 0,
     "share of slow calls that opens the breaker, (0,1]"},
    {"gateway.breaker.slow_call_ms", CONFIG_INT, "2000", 1, 86400000,
     "a call this slow counts as slow"},
    {"gateway.breaker.open_ms", CONFIG_INT, "5000", 1, 86400000,
     "time the breaker stays open before probing"},
    {"gateway.breaker.probes", CONFIG_INT, "3", 1, 16,
     "calls let through while half-open"},
    {"gateway.retry.budget_ratio", CONFIG_STRING, "0.2", 0, 0,
     "retries in flight per request in flight at most, [0,1]"},
    {"gateway.retry.min_retries", CONFIG_INT, "3", 0, 100000,
     "retries in flight always allowed"},
    {"gateway.hash_factor", CONFIG_STRING, "1.25", 0, 0,
     "bounded load of hashed routes: cap of an instance over the mean, >= 1"},
    /* Fewer idle connections than concurrent calls means a new connection
     * (and a TIME-WAIT socket) for every call past them. */
    {"gateway.max_idle", CONFIG_INT, "64", 1, HTTP_UPSTREAM_IDLE_MAX,
     "idle keep-alive connections per instance and loop thread"},
    {"gateway.max_in_flight", CONFIG_INT, "4096", 0, GW_SHED_BOUND_MAX,
     "requests the gateway forwards at once; past shares of it, lower "
     "classes are shed (503); 0: no bound"},
    {"gateway.shed.anonymous_percent", CONFIG_INT, "70", 1, 100,
     "share of a bound anonymous reads may fill"},
    {"gateway.shed.signed_percent", CONFIG_INT, "90", 1, 100,
     "share of a bound signed-in reads may fill"},
    {"gateway.cache.max_bytes", CONFIG_INT, "67108864", 0, 17179869184LL,
     "memory of the response cache; 0 turns it off"},
    {"gateway.cache.max_entry_bytes", CONFIG_INT, "1048576", 1, 1073741824,
     "largest answer the cache keeps"},
    {"gateway.limit.keys", CONFIG_INT, "65536", 1, GW_LIMIT_KEYS_MAX,
     "keys each rate limit policy remembers"},
    {"gateway.ops_shows", CONFIG_STRING, "1", 0, 0,
     "shows whose held and sold seats the ops dashboard follows, "
     "comma-separated ids, at most 16"},
};

static const char *const gw_methods[] = {"GET", "POST", "PUT", "PATCH",
                                         "DELETE"};

#define GW_METHODS      (sizeof(gw_methods) / sizeof(gw_methods[0]))
#define GW_CATCH_ALL    (GW_METHODS * (GW_PATH_DEPTH_MAX + 1))
#define GW_ADMIN_ROUTES 5
#define GW_PATTERN_MAX  (GW_PATH_DEPTH_MAX * 5 + 2)

static bool path_under(const char *path, const char *dir)
{
    size_t n = strlen(dir);

    /* dir is "/x/": "/x" itself counts too. */
    return strncmp(path, dir, n) == 0 ||
           (strncmp(path, dir, n - 1) == 0 && path[n - 1] == '\0');
}

/* The show of a hold's creation (POST /v1/shows/{id}/holds), or 0. */
static int64_t hold_show_id(const char *method, const char *path)
{
    const char *p = path + strlen("/v1/shows/");
    int64_t id = 0;

    if (strcmp(method, "POST") != 0 || strncmp(path, "/v1/shows/", 10) != 0)
        return 0;
    for (; *p >= '0' && *p <= '9' && id < INT64_MAX / 10 - 1; p++)
        id = id * 10 + (*p - '0');
    return strcmp(p, "/holds") == 0 || strcmp(p, "/holds/") == 0 ? id : 0;
}

/*
 * Who the request comes from, and whether that caller may make it: a
 * partner within its scopes, an admin for /v1/admin/, a pass of the
 * waiting room for a hold on a hot show.  false after answering.
 */
static bool caller_ok(struct http_req *req, struct gateway *gw,
                      const char *path, struct gw_ident *id)
{
    int64_t show;

    if (!gw_edge_identify(gw->edge, req, id) || !gw_edge_scope_ok(req, id))
        return false;
    if (path_under(path, "/v1/admin/") && id->kind != GW_IDENT_ADMIN) {
        if (id->kind == GW_IDENT_ANONYMOUS) {
            http_set_header(req, "WWW-Authenticate",
                            "Bearer realm=\"marquee\"");
            http_respond_problem(req, 401, "unauthorized", "Unauthorized",
                                 "%s needs an administrator's token", path);
        } else {
            http_respond_problem(req, 403, "insufficient-scope", "Forbidden",
                                 "%s is for administrators only", path);
        }
        return false;
    }
    show = hold_show_id(http_req_method(req), path);
    return show == 0 || gw_edge_pass_ok(gw->edge, req, show);
}

static void gw_handle(struct http_req *req, void *app)
{
    struct gateway *gw = app;
    const char *path = http_req_path(req);
    const struct gw_route *r;
    struct gw_ident id;
    const char *key;
    size_t key_len;

    /* Accounts, sessions, API keys and waiting rooms are the gateway's. */
    if (gw_edge_dispatch(req, gw->edge))
        return;
    /* Service-to-service routes never leave the private network, and
     * /admin/ is the gateway's own, whatever a "/" prefix route says. */
    if (path_under(path, "/internal/") || path_under(path, "/admin/")) {
        http_respond_problem(req, 404, "not-found", "Not found",
                             "no route for %s", path);
        return;
    }
    r = gw_route_find(gw->spec, path, &key, &key_len);
    if (r != NULL) {
        if (caller_ok(req, gw, path, &id))
            gw_proxy(req, gw, r, key, key_len, &id);
        return;
    }
    if (strcmp(http_req_method(req), "GET") == 0 && !path_under(path, "/v1/")) {
        gw_static_serve(req, gw);
        return;
    }
    http_respond_problem(req, 404, "not-found", "Not found", "no route for %s",
                         path);
}

static void *gw_thread_start(void *app, int index)
{
    struct gw_thread *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->gw = app;
    t->index = index;
    if (rand_seed_secure(&t->rng) != ERR_OK)
        rand_seed(&t->rng, (uint64_t)gw_now_ms() + (uint64_t)index);
    return t;
}

static void gw_thread_stop(void *app, void *data)
{
    struct gw_thread *t = data;

    if (t != NULL && t->index == 0)
        gw_checks_cancel(app);
    free(t);
}

/* Health checks and the registry file live on thread 0 alone. */
static void gw_tick(void *app, void *data, int index)
{
    struct gateway *gw = app;
    int64_t now = gw_now_ms();

    (void)data;
    if (index != 0)
        return;
    for (size_t k = 0; k < gw->npools; k++)
        gw_pool_tick(&gw->pools[k], now);
    gw_registry_tick(gw, now);
    gw_traffic_tick(gw);
}

/* A ratio key: a decimal in [lo, hi]; ERR_CONFIG with a message if not. */
static int ratio_key(const struct config *cfg, const char *key, double lo,
                     double hi, bool lo_open, double *out)
{
    const char *s = config_str(cfg, key);
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v > hi ||
        v < lo || (lo_open && v == lo)) {
        fprintf(stderr,
                "gateway: bad value key=%s value=\"%s\" reason=\"expected a "
                "number in %c%g, %g]\"\n",
                key, s, lo_open ? '(' : '[', lo, hi);
        return ERR_CONFIG;
    }
    *out = v;
    return ERR_OK;
}

static int read_keys(struct gateway *gw, const struct config *cfg)
{
    struct gw_breaker_config *b = &gw->breaker;
    int rc = ERR_OK;

    gw_health_config_default(&gw->health);
    gw->health.interval_ms = config_int(cfg, "gateway.health.interval_ms");
    gw->health.fast_interval_ms =
        config_int(cfg, "gateway.health.fast_interval_ms");
    gw->health.timeout_ms = config_int(cfg, "gateway.health.timeout_ms");
    gw->health.rise = (int)config_int(cfg, "gateway.health.rise");
    gw->health.fall = (int)config_int(cfg, "gateway.health.fall");
    gw->health.slow_start_ms = config_int(cfg, "gateway.health.slow_start_ms");

    gw_outlier_config_default(&gw->outlier);
    gw->outlier.consecutive =
        (int)config_int(cfg, "gateway.outlier.consecutive");
    gw->outlier.base_ejection_ms =
        config_int(cfg, "gateway.outlier.base_ejection_ms");
    gw->outlier.max_ejection_ms =
        config_int(cfg, "gateway.outlier.max_ejection_ms");
    gw->outlier.max_ejected_percent =
        (int)config_int(cfg, "gateway.outlier.max_ejected_percent");

    gw_breaker_config_default(b);
    b->window = (int)config_int(cfg, "gateway.breaker.window");
    b->min_calls = (int)config_int(cfg, "gateway.breaker.min_calls");
    b->slow_call_ms = config_int(cfg, "gateway.breaker.slow_call_ms");
    b->open_ms = config_int(cfg, "gateway.breaker.open_ms");
    b->probes = (int)config_int(cfg, "gateway.breaker.probes");
    rc |= ratio_key(cfg, "gateway.breaker.failure_rate", 0, 1, true,
                    &b->failure_rate);
    rc |=
        ratio_key(cfg, "gateway.breaker.slow_rate", 0, 1, true, &b->slow_rate);
    rc |= ratio_key(cfg, "gateway.retry.budget_ratio", 0, 1, false,
                    &gw->retry_ratio);
    rc |=
        ratio_key(cfg, "gateway.hash_factor", 1, 100, false, &gw->hash_factor);
    gw->retry_min = (int)config_int(cfg, "gateway.retry.min_retries");
    gw->max_idle = (int)config_int(cfg, "gateway.max_idle");
    gw->max_response_bytes =
        (size_t)config_int(cfg, "gateway.max_response_bytes");
    gw->debug_headers = config_bool(cfg, "gateway.debug_headers");
    gw->admin_token = config_str(cfg, "gateway.admin_token");
    if (gw->admin_token[0] != '\0')
        snprintf(gw->upstream_admin_auth, sizeof(gw->upstream_admin_auth),
                 "Bearer %s", gw->admin_token);
    gw->registry_path = config_str(cfg, "gateway.registry");
    gw->gateway_secret = config_str(cfg, "http.gateway_secret");
    gw->cache_bytes = (size_t)config_int(cfg, "gateway.cache.max_bytes");
    gw->cache_entry_bytes =
        (size_t)config_int(cfg, "gateway.cache.max_entry_bytes");
    gw->limiter_keys = (size_t)config_int(cfg, "gateway.limit.keys");
    if (rc != ERR_OK)
        return ERR_CONFIG;

    if (b->min_calls > b->window) {
        fprintf(stderr, "gateway: bad value key=gateway.breaker.min_calls "
                        "reason=\"more than gateway.breaker.window\"\n");
        return ERR_CONFIG;
    }
    if (gw->outlier.base_ejection_ms > gw->outlier.max_ejection_ms) {
        fprintf(stderr, "gateway: bad value "
                        "key=gateway.outlier.base_ejection_ms reason=\"more "
                        "than gateway.outlier.max_ejection_ms\"\n");
        return ERR_CONFIG;
    }
    if (gw->cache_bytes > 0 &&
        gw->cache_entry_bytes > gw->cache_bytes / GW_CACHE_SHARDS) {
        fprintf(stderr, "gateway: bad value "
                        "key=gateway.cache.max_entry_bytes reason=\"more "
                        "than an eighth of gateway.cache.max_bytes\"\n");
        return ERR_CONFIG;
    }
    if (gw_health_config_check(&gw->health) != ERR_OK ||
        gw_outlier_config_check(&gw->outlier) != ERR_OK) {
        fprintf(stderr, "gateway: bad health or outlier settings\n");
        return ERR_CONFIG;
    }
    return ERR_OK;
}

static void static_dir_resolve(struct gateway *gw, const char *dir)
{
    if (realpath(dir, gw->static_dir) == NULL) {
        char text[GW_ERR_MAX];
        log_warn("gateway", "static_dir_missing path=\"%s\" error=\"%s\"",
                 gw_log_text(dir, text, sizeof(text)), strerror(errno));
        gw->static_dir[0] = '\0';
    }
}

/*
 * The folder of the accounts database, made when missing (its default,
 * var/, is the runtime data folder, absent from a fresh checkout or a
 * test's temporary folder).  One level only: a deeper missing path is a
 * mistake the database's open reports.
 */
static void accounts_dir_make(const char *path)
{
    char copy[PATH_MAX], text[GW_ERR_MAX];
    const char *dir;

    if (snprintf(copy, sizeof(copy), "%s", path) >= (int)sizeof(copy))
        return;
    dir = dirname(copy);
    if (strcmp(dir, ".") == 0 || strcmp(dir, "/") == 0)
        return;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        log_warn("gateway", "accounts_dir_failed path=\"%s\" error=\"%s\"",
                 gw_log_text(dir, text, sizeof(text)), strerror(errno));
}

/* The admin routes, then one {segment} pattern per method and depth. */
static size_t build_routes(struct http_route *routes,
                           char patterns[][GW_PATTERN_MAX])
{
    size_t n = 0;

    routes[n++] = (struct http_route){"GET", "/admin/pools", gw_admin_list};
    routes[n++] =
        (struct http_route){"PUT", "/admin/pools/{name}", gw_admin_put};
    routes[n++] =
        (struct http_route){"GET", "/admin/ops/summary", gw_ops_summary};
    routes[n++] =
        (struct http_route){"GET", "/admin/cache", gw_admin_cache_stats};
    routes[n++] =
        (struct http_route){"DELETE", "/admin/cache", gw_admin_cache_purge};
    for (size_t d = 0; d <= GW_PATH_DEPTH_MAX; d++) {
        char *p = patterns[d];
        size_t len = 0;

        p[len++] = '/';
        for (size_t s = 0; s < d; s++)
            len += (size_t)snprintf(p + len, GW_PATTERN_MAX - len, "%s{%c}",
                                    s > 0 ? "/" : "", (char)('a' + s));
        p[len] = '\0';
        for (size_t m = 0; m < GW_METHODS; m++)
            routes[n++] = (struct http_route){gw_methods[m], p, gw_handle};
    }
    return n;
}

/* A breaker probe may take as long as the slowest route of its pool. */
static int64_t probe_deadline(const struct gw_spec *spec, size_t pool)
{
    int64_t ms = 0;

    for (size_t k = 0; k < spec->nroutes; k++)
        if (spec->routes[k].pool == pool &&
            spec->routes[k].total_timeout_ms > ms)
            ms = spec->routes[k].total_timeout_ms;
    return ms > 0 ? ms : GW_TOTAL_TIMEOUT_MS;
}

static int pools_start(struct gateway *gw)
{
    int rc;

    for (size_t k = 0; k < gw->spec->npools; k++) {
        rc = gw_pool_init(&gw->pools[k], gw, &gw->spec->pools[k],
                          probe_deadline(gw->spec, k));
        if (rc != ERR_OK) {
            log_error("gateway", "pool_init_failed pool=%s error=%s",
                      gw->spec->pools[k].name, err_name(rc));
            return rc;
        }
        gw->npools++;
    }
    for (size_t k = 0; k < gw->npools; k++) {
        rc = gw_pool_set(&gw->pools[k], &gw->spec->pools[k].addrs, true);
        if (rc != ERR_OK)
            return rc;
    }
    return ERR_OK;
}

/* --- rate limits, shedding, cache ----------------------------------------- */

static struct metrics_family *edge_family(enum metrics_type type,
                                          const char *name, const char *help,
                                          size_t nlabels,
                                          const char *const *labels)
{
    return metrics_family(metrics_process(), type, name, help, nlabels, labels,
                          NULL, 0);
}

static int limits_start(struct gateway *gw)
{
    static const char *const pl[] = {"policy", "mode"};
    struct metrics_family *f =
        edge_family(METRICS_COUNTER, "marquee_gateway_rate_limited_total",
                    "Requests over their rate limit policy (mode dry_run: "
                    "counted and let through)",
                    2, pl);

    for (size_t k = 0; k < gw->spec->nlimits; k++) {
        const struct gw_limit_spec *ls = &gw->spec->limits[k];
        struct gw_limit_state *st = &gw->limits[k];
        const char *v[2] = {ls->name, "enforced"};
        int rc;

        rc = gw_limiter_new(&ls->policy, gw->limiter_keys, &st->limiter);
        if (rc != ERR_OK)
            return rc;
        pthread_mutex_init(&st->lock, NULL);
        snprintf(st->policy_header, sizeof(st->policy_header),
                 "\"%s\";q=%lld;w=%lld", ls->name, (long long)ls->policy.burst,
                 (long long)gw_limit_window_s(&ls->policy));
        st->m_limited = metrics_series(f, v);
        v[1] = "dry_run";
        st->m_dry_run = metrics_series(f, v);
    }
    return ERR_OK;
}

static int shed_start(struct gateway *gw, const int percent[GW_SHED_CLASSES],
                      int64_t bound)
{
    static const char *const pl[] = {"class"};
    struct metrics_family *f =
        edge_family(METRICS_COUNTER, "marquee_gateway_shed_total",
                    "Requests refused (503) to shed load, by class", 1, pl);

    if (gw_shed_init(&gw->shed, bound, percent) != ERR_OK) {
        fprintf(stderr, "gateway: bad value key=gateway.shed.signed_percent "
                        "reason=\"less than "
                        "gateway.shed.anonymous_percent\"\n");
        return ERR_CONFIG;
    }
    for (size_t k = 0; k < gw->spec->nroutes; k++)
        if (gw_shed_init(&gw->route_shed[k], gw->spec->routes[k].max_in_flight,
                         percent) != ERR_OK)
            return ERR_CONFIG;
    for (int c = 0; c < GW_SHED_CLASSES; c++) {
        const char *v[1] = {gw_shed_class_name((enum gw_shed_class)c)};
        gw->m_shed[c] = metrics_series(f, v);
    }
    gw->m_in_flight =
        metrics_gauge(metrics_process(), "marquee_gateway_in_flight",
                      "Requests the gateway is forwarding now");
    return ERR_OK;
}

static int cache_start(struct gateway *gw)
{
    static const char *const names[GW_CR_COUNT] = {
        "hit", "miss", "stale", "coalesced", "revalidated", "bypass"};
    static const char *const pl[] = {"result"};
    struct metrics_family *f =
        edge_family(METRICS_COUNTER, "marquee_gateway_cache_requests_total",
                    "GETs of cached routes by what the cache did", 1, pl);
    struct metrics *m = metrics_process();

    for (int k = 0; k < GW_CR_COUNT; k++) {
        const char *v[1] = {names[k]};
        gw->m_cache[k] = metrics_series(f, v);
    }
    gw->m_cache_evictions =
        metrics_counter(m, "marquee_gateway_cache_evictions_total",
                        "Cached answers evicted to make room");
    gw->m_cache_bytes = metrics_gauge(m, "marquee_gateway_cache_bytes",
                                      "Memory the cached answers take");
    gw->m_cache_entries = metrics_gauge(m, "marquee_gateway_cache_entries",
                                        "Answers in the cache");
    gw->m_purged = metrics_counter(m, "marquee_gateway_cache_purged_total",
                                   "Cached answers removed before their time");
    if (gw->cache_bytes == 0)
        return ERR_OK;
    for (size_t k = 0; k < GW_CACHE_SHARDS; k++) {
        int rc = gw_cache_new(gw->cache_bytes / GW_CACHE_SHARDS,
                              gw->cache_entry_bytes, &gw->shards[k].cache);
        if (rc != ERR_OK)
            return rc;
        pthread_mutex_init(&gw->shards[k].lock, NULL);
    }
    gw->cache_on = true;
    return ERR_OK;
}

int gw_traffic_start(struct gateway *gw,
                     const int shed_percent[GW_SHED_CLASSES],
                     int64_t max_in_flight)
{
    int rc = limits_start(gw);

    if (rc == ERR_OK)
        rc = shed_start(gw, shed_percent, max_in_flight);
    if (rc == ERR_OK)
        rc = cache_start(gw);
    if (rc != ERR_OK)
        log_error("gateway", "edge_start_failed error=%s", err_name(rc));
    return rc;
}

void gw_traffic_free(struct gateway *gw)
{
    for (size_t k = 0; k < GW_LIMITS_MAX; k++) {
        if (gw->limits[k].limiter == NULL)
            continue;
        gw_limiter_free(gw->limits[k].limiter);
        pthread_mutex_destroy(&gw->limits[k].lock);
    }
    for (size_t k = 0; k < GW_CACHE_SHARDS; k++) {
        if (gw->shards[k].cache == NULL)
            continue;
        gw_cache_free(gw->shards[k].cache);
        pthread_mutex_destroy(&gw->shards[k].lock);
    }
}

void gw_traffic_tick(struct gateway *gw)
{
    struct gw_cache_stats st, all = {0};
    uint64_t evictions = 0;

    metrics_set(gw->m_in_flight, (double)atomic_load(&gw->shed.in_flight));
    if (!gw->cache_on)
        return;
    for (size_t k = 0; k < GW_CACHE_SHARDS; k++) {
        pthread_mutex_lock(&gw->shards[k].lock);
        gw_cache_stats(gw->shards[k].cache, &st);
        pthread_mutex_unlock(&gw->shards[k].lock);
        all.entries += st.entries;
        all.bytes += st.bytes;
        evictions += st.evictions;
    }
    metrics_set(gw->m_cache_bytes, (double)all.bytes);
    metrics_set(gw->m_cache_entries, (double)all.entries);
    metrics_add(gw->m_cache_evictions, evictions - gw->cache_evictions_shown);
    gw->cache_evictions_shown = evictions;
}

size_t gw_cache_purge_all(struct gateway *gw, const char *prefix, size_t len)
{
    size_t removed = 0;

    if (!gw->cache_on)
        return 0;
    for (size_t k = 0; k < GW_CACHE_SHARDS; k++) {
        pthread_mutex_lock(&gw->shards[k].lock);
        removed += gw_cache_purge(gw->shards[k].cache, prefix, len);
        pthread_mutex_unlock(&gw->shards[k].lock);
    }
    metrics_add(gw->m_purged, removed);
    return removed;
}

int gateway_main(int argc, char **argv)
{
    static struct http_route routes[GW_ADMIN_ROUTES + GW_CATCH_ALL];
    static char patterns[GW_PATH_DEPTH_MAX + 1][GW_PATTERN_MAX];
    struct config cfg;
    struct gateway *gw;
    struct http_server_config hc;
    char err[GW_ERR_MAX];
    int rc, exit_code = 1;

    rc = program_start(&cfg, gw_keys, sizeof(gw_keys) / sizeof(gw_keys[0]),
                       argc, argv, "gateway", NULL);
    if (rc != ERR_OK)
        return rc == PROGRAM_HELPED ? 2 : 1;
    gw = calloc(1, sizeof(*gw));
    if (gw == NULL)
        goto out_config;
    gw->spec = calloc(1, sizeof(*gw->spec));
    if (gw->spec == NULL || read_keys(gw, &cfg) != ERR_OK)
        goto out_gateway;
    if (gw_ops_configure(config_str(&cfg, "gateway.ops_shows")) != ERR_OK) {
        char shown[GW_ERR_MAX];
        const char *v = config_str(&cfg, "gateway.ops_shows");
        log_error("gateway",
                  "bad_config key=gateway.ops_shows value=\"%s\" expected=ids",
                  gw_log_text(v, shown, sizeof(shown)));
        goto out_gateway;
    }
    rc = gw_spec_load(config_str(&cfg, "gateway.routes"), gw->spec, err,
                      sizeof(err));
    if (rc != ERR_OK) {
        char why[GW_ERR_MAX];
        log_error("gateway", "routes_invalid reason=\"%s\"",
                  gw_log_text(err, why, sizeof(why)));
        goto out_gateway;
    }
    static_dir_resolve(gw, config_str(&cfg, "gateway.static_dir"));
    {
        int percent[GW_SHED_CLASSES] = {
            (int)config_int(&cfg, "gateway.shed.anonymous_percent"),
            (int)config_int(&cfg, "gateway.shed.signed_percent"), 100};
        rc = gw_traffic_start(gw, percent,
                              config_int(&cfg, "gateway.max_in_flight"));
        if (rc != ERR_OK)
            goto out_traffic;
    }
    accounts_dir_make(config_str(&cfg, "gateway.accounts.path"));
    if (gw_edge_open(&cfg, &gw->edge) != ERR_OK)
        goto out_traffic;

    http_server_config_from(&hc, &cfg, "gateway");
    hc.app = gw;
    hc.thread_start = gw_thread_start;
    hc.thread_stop = gw_thread_stop;
    hc.tick = gw_tick;
    hc.tick_ms = GW_TICK_MS;
    rc = http_server_create(&hc, routes, build_routes(routes, patterns),
                            &gw->server);
    if (rc != ERR_OK)
        goto out_accounts;
    if (pools_start(gw) != ERR_OK)
        goto out_pools;
    log_info("gateway", "started pools=%zu routes=%zu registry=\"%s\"",
             gw->npools, gw->spec->nroutes,
             gw_log_text(gw->registry_path, err, sizeof(err)));

    rc = http_server_run(gw->server);
    exit_code = rc == ERR_OK ? 0 : 1;

out_pools:
    /* The pools' upstreams go before the server they belong to. */
    for (size_t k = 0; k < gw->npools; k++)
        gw_pool_free(&gw->pools[k]);
    /* Its workers answer through the server: they stop first. */
    gw_edge_close(gw->edge);
    gw->edge = NULL;
    http_server_free(gw->server);
out_accounts:
    gw_edge_close(gw->edge);
out_traffic:
    gw_traffic_free(gw);
out_gateway:
    free(gw->spec);
    free(gw);
out_config:
    config_free(&cfg);
    return exit_code;
}
