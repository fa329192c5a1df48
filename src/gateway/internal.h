/*
 * internal.h - what the files of the gateway share.
 *
 * The gateway reads its routes and pools from a JSON file at start
 * (config.c), keeps each pool's instances with their health, ejection and
 * breaker state behind one mutex per pool (pool.c), forwards requests
 * (proxy.c), answers its own admin endpoints (admin.c) and serves the web
 * pages (static.c).  gateway.c holds the configuration keys and start-up.
 * docs/internals/gateway.md describes the semantics.
 */
#ifndef MARQUEE_GATEWAY_INTERNAL_H
#define MARQUEE_GATEWAY_INTERNAL_H

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "base/config.h"
#include "base/rand.h"
#include "gateway/balance.h"
#include "gateway/breaker.h"
#include "gateway/cache.h"
#include "gateway/edge.h"
#include "gateway/health.h"
#include "gateway/limit.h"
#include "gateway/retry.h"
#include "gateway/shed.h"
#include "http/http.h"
#include "http/upstream.h"
#include "metrics/metrics.h"

/* Named limits. */
#define GW_POOLS_MAX         16
#define GW_POOL_NAME_MAX     32 /* with the NUL */
#define GW_INSTANCES_MAX     GW_BALANCE_HOSTS_MAX
#define GW_ADDR_MAX          64 /* "host:port" with the NUL */
#define GW_ROUTES_MAX        64
#define GW_ROUTE_TEXT_MAX    256 /* pattern or prefix, with the NUL */
#define GW_ROUTE_SEGS_MAX    12
#define GW_PATH_DEPTH_MAX    10 /* segments of a path the gateway takes */
#define GW_FILE_MAX          (1u << 20) /* routes and registry files */
#define GW_STATIC_FILE_MAX   (4u << 20) /* one static file */
#define GW_TIMEOUT_MAX_MS    600000
#define GW_HEADERS_MAX       64 /* client request headers forwarded */
#define GW_ERR_MAX           512
#define GW_REGISTRY_CHECK_MS 1000
#define GW_LIMITS_MAX        16 /* rate limit policies of a routes file */
#define GW_PURGES_MAX        4  /* purge templates of one route */
#define GW_CACHE_SHARDS      8  /* stores of the cache, each with its lock */

/* Route timeouts when the routes file gives none. */
#define GW_CONNECT_TIMEOUT_MS    1000
#define GW_FIRST_BYTE_TIMEOUT_MS 5000
#define GW_TOTAL_TIMEOUT_MS      10000

/* A list of "host:port" addresses, in the order given. */
struct gw_addrs {
    size_t n;
    char addr[GW_INSTANCES_MAX][GW_ADDR_MAX];
};

struct gw_pool_spec {
    char name[GW_POOL_NAME_MAX];
    bool hash; /* "balance": "hash" */
    struct gw_addrs addrs;
};

/* Whose requests a rate limit policy counts together. */
enum gw_limit_key {
    GW_LIMIT_BY_CUSTOMER, /* the access token's customer, else the address */
    GW_LIMIT_BY_API_KEY,  /* the API key's id, else the address */
    GW_LIMIT_BY_ADDRESS,  /* the client's address */
};

/* A rate limit policy of the routes file; routes naming it share it. */
struct gw_limit_spec {
    char name[GW_POOL_NAME_MAX];
    struct gw_limit_policy policy;
    enum gw_limit_key key;
    bool dry_run;
};

/*
 * A route: either a pattern ("/v1/shows/{show_id}/seats", {name} is one
 * path segment, the whole path must match) or a prefix ("/v1/", the path
 * starts with it).  Segments are kept as offsets into text, so a route can
 * be copied.
 */
struct gw_route {
    char text[GW_ROUTE_TEXT_MAX];
    bool prefix;
    size_t nsegs;
    uint16_t seg_off[GW_ROUTE_SEGS_MAX];
    uint16_t seg_len[GW_ROUTE_SEGS_MAX];
    bool seg_param[GW_ROUTE_SEGS_MAX];
    int hash_seg; /* the segment whose value is the hash key, or -1 */
    size_t pool;  /* index into the gateway's pools */
    int connect_timeout_ms, first_byte_timeout_ms, total_timeout_ms;

    int limit;  /* index into the spec's limits, or -1 */
    bool cache; /* GET answers may be cached */
    struct gw_cache_defaults cache_defaults;
    bool critical;         /* "class": "critical": shed last */
    int64_t max_in_flight; /* 0: no bound of its own */
    size_t npurges;        /* paths purged when a write passes */
    char purge[GW_PURGES_MAX][GW_ROUTE_TEXT_MAX];
};

/* The routes file, parsed. */
struct gw_spec {
    size_t npools;
    struct gw_pool_spec pools[GW_POOLS_MAX];
    size_t nroutes;
    struct gw_route routes[GW_ROUTES_MAX];
    size_t nlimits;
    struct gw_limit_spec limits[GW_LIMITS_MAX];
};

/* How one upstream call ended, for counters. */
enum gw_outcome {
    GW_OUT_1XX,
    GW_OUT_2XX,
    GW_OUT_3XX,
    GW_OUT_4XX,
    GW_OUT_5XX,
    GW_OUT_CONNECT,
    GW_OUT_TIMEOUT,
    GW_OUT_IO,
    GW_OUT_TOOBIG,
    GW_OUT_COUNT
};

struct gw_pool;

/*
 * One instance of a pool.  Reference counted: the pool holds one
 * reference while the instance is a member, each call in flight another,
 * so a removed instance lives until its last call ends.  Fields below
 * `lock:` are guarded by the pool's mutex.
 */
struct gw_instance {
    atomic_int refs;
    struct gw_pool *pool;
    char addr[GW_ADDR_MAX];
    struct http_upstream *up; /* one reference, released with the instance */

    /* lock: */
    struct gw_health health;
    struct gw_outlier outlier;
    int64_t in_flight;
    bool member;                  /* false once removed from the pool */
    bool checking;                /* a health check is in flight */
    bool shown_up, shown_ejected; /* last state logged */
    uint64_t requests, failures, ejections;

    struct metrics_series *m_outcome[GW_OUT_COUNT];
    struct metrics_series *m_duration, *m_up, *m_ejections;
};

struct gateway;

struct gw_pool {
    pthread_mutex_t lock;
    /* Held through a whole membership change (gw_pool_set), which makes
     * upstreams outside `lock`: one change at a time. */
    pthread_mutex_t set_lock;
    struct gateway *gw;
    char name[GW_POOL_NAME_MAX];
    bool hash;

    /* lock: */
    size_t n;
    struct gw_instance *inst[GW_INSTANCES_MAX];
    struct gw_ring ring;
    bool ring_built;
    struct gw_breaker breaker;
    enum gw_breaker_state shown_state;
    uint64_t shown_opens;
    struct rand rng;

    struct gw_retry_budget budget; /* atomics of its own */

    struct metrics_series *m_breaker_state, *m_breaker_opens;
    struct metrics_series *m_retries, *m_budget_exhausted;
    struct metrics_series *m_rejected_open, *m_rejected_none;
};

/* Per event-loop thread. */
struct gw_thread {
    struct gateway *gw;
    int index;
    struct rand rng;
};

struct gw_check;

/* A rate limit policy at run time: its limiter behind a mutex. */
struct gw_limit_state {
    pthread_mutex_t lock;
    struct gw_limiter *limiter;                /* lock: */
    char policy_header[GW_POOL_NAME_MAX + 48]; /* RateLimit-Policy */
    struct metrics_series *m_limited, *m_dry_run;
};

/* One store of the response cache; a key's hash picks its shard. */
struct gw_cache_shard {
    pthread_mutex_t lock;
    struct gw_cache *cache; /* lock: */
};

/* The response cache's counters (results: see proxy.c). */
enum gw_cache_result {
    GW_CR_HIT,
    GW_CR_MISS,
    GW_CR_STALE,
    GW_CR_COALESCED,
    GW_CR_REVALIDATED,
    GW_CR_BYPASS,
    GW_CR_COUNT
};

struct gateway {
    struct http_server *server;
    struct gw_spec *spec;
    size_t npools;
    struct gw_pool pools[GW_POOLS_MAX];

    struct gw_health_config health;
    struct gw_outlier_config outlier;
    struct gw_breaker_config breaker;
    double retry_ratio;
    int retry_min;
    double hash_factor;
    int max_idle;
    size_t max_response_bytes;
    bool debug_headers;
    const char *admin_token;   /* "" disables /admin/ */
    /* "Bearer <admin_token>": what an admin's request carries upstream
     * instead of the caller's own credentials; "" without a token. */
    char upstream_admin_auth[CONFIG_VALUE_MAX + 8];
    char static_dir[PATH_MAX]; /* resolved; "" when missing */

    const char *registry_path; /* "" none */
    struct timespec registry_mtime;
    long long registry_size;
    int64_t registry_checked_ms;

    /* Thread 0 only: health checks in flight, cancelled at shutdown. */
    struct gw_check *checks;

    /* Rate limits, one per policy of the spec. */
    struct gw_limit_state limits[GW_LIMITS_MAX];
    size_t limiter_keys;

    /* Load shedding: the gateway's gate and one per route. */
    struct gw_shed shed;
    struct gw_shed route_shed[GW_ROUTES_MAX];
    struct metrics_series *m_shed[GW_SHED_CLASSES], *m_in_flight;

    /* Accounts, tokens, API keys, waiting rooms (edge.h). */
    struct gw_edge *edge;
    const char *gateway_secret; /* http.gateway_secret; "" none */

    /* The response cache (none when cache_bytes is 0). */
    size_t cache_bytes, cache_entry_bytes;
    bool cache_on;
    struct gw_cache_shard shards[GW_CACHE_SHARDS];
    struct metrics_series *m_cache[GW_CR_COUNT], *m_cache_evictions;
    struct metrics_series *m_cache_bytes, *m_cache_entries;
    struct metrics_series *m_purged;
    uint64_t cache_evictions_shown; /* thread 0's tick */
};

/* Monotonic milliseconds, the one clock of the gateway's mechanisms. */
int64_t gw_now_ms(void);

/* --- config.c ----------------------------------------------------------- */

/*
 * Parses "ip:port" (an IPv4 literal, or an IPv6 literal in brackets;
 * port 1-65535) into host (cap bytes, without brackets) and port.
 * Returns ERR_OK or ERR_INVALID.
 */
int gw_addr_parse(const char *addr, char *host, size_t cap, int *port);

/*
 * Reads the routes file at path into spec.  Returns ERR_OK, or ERR_IO
 * (unreadable) or ERR_CONFIG, with err (cap bytes) naming the file and
 * the place in it: `routes.json: routes[2].pool: unknown pool "x"`.
 */
int gw_spec_load(const char *path, struct gw_spec *spec, char *err, size_t cap);

/* The same from text in memory; name stands for the file in messages. */
int gw_spec_parse(const char *text, size_t len, const char *name,
                  struct gw_spec *spec, char *err, size_t cap);

/*
 * A JSON array of "host:port" strings (at most GW_INSTANCES_MAX, no
 * duplicates) into out.  where names the array in messages.  ERR_OK or
 * ERR_INVALID with err set.
 */
int gw_addrs_from_json(const json_t *arr, const char *where,
                       struct gw_addrs *out, char *err, size_t cap);

/*
 * Whether path matches route r.  On a match with a hash segment, *key and
 * *key_len give the segment's value (pointing into path).
 */
bool gw_route_match(const struct gw_route *r, const char *path,
                    const char **key, size_t *key_len);

/* The first route of spec that path matches, or NULL. */
const struct gw_route *gw_route_find(const struct gw_spec *spec,
                                     const char *path, const char **key,
                                     size_t *key_len);

/*
 * The value of the {name} parameter of pattern route r in path (which r
 * matches): *val points into path, *len its length.  false if r has none.
 */
bool gw_route_param(const struct gw_route *r, const char *path,
                    const char *name, size_t name_len, const char **val,
                    size_t *len);

/*
 * Fills template tpl ("/v1/shows/{show_id}") with the parameters of path
 * along route r into out (cap bytes).  false if a parameter is missing or
 * out is too small.
 */
bool gw_route_expand(const struct gw_route *r, const char *path,
                     const char *tpl, char *out, size_t cap);

/* The hash of a key: its leading decimal digits, or all of it if none. */
uint64_t gw_key_hash(const char *key, size_t len);

/*
 * The registry file `{"pools": {"name": ["host:port", ...]}}`: calls
 * apply(arg, name, addrs) for each pool after the whole file is checked.
 * Returns ERR_OK, ERR_IO or ERR_CONFIG with err set; nothing is applied
 * unless the whole file is good.
 */
int gw_registry_parse(const char *text, size_t len, const char *name,
                      void (*apply)(void *arg, const char *pool,
                                    const struct gw_addrs *addrs),
                      void *arg, char *err, size_t cap);

/*
 * Copies text into out (cap bytes) fit for a quoted log value: '"' and
 * '\\' become '\'', control characters '?'; cut to fit.  Returns out.
 */
const char *gw_log_text(const char *text, char *out, size_t cap);

/* Reads a whole small file (at most max bytes) into a malloc'd buffer. */
int gw_file_read(const char *path, size_t max, char **text, size_t *len);

/* --- pool.c ------------------------------------------------------------- */

/* Sets up a pool with no instance; ERR_OK or ERR_NOMEM. */
int gw_pool_init(struct gw_pool *p, struct gateway *gw,
                 const struct gw_pool_spec *spec, int64_t probe_deadline_ms);

/* Drops every instance's pool reference and frees the pool's state. */
void gw_pool_free(struct gw_pool *p);

/* The pool called name, or NULL. */
struct gw_pool *gw_pool_find(struct gateway *gw, const char *name);

/*
 * Makes addrs the pool's members.  Instances named again keep their state;
 * new ones start down (up at once when start_up, the gateway's own start)
 * and join when their checks pass; removed ones stop taking requests and
 * are freed when their last call ends.  ERR_OK, ERR_NOMEM or ERR_SYS (an
 * upstream could not be made; the pool is then unchanged).
 */
int gw_pool_set(struct gw_pool *p, const struct gw_addrs *addrs, bool start_up);

enum gw_pick_result {
    GW_PICK_OK,
    GW_PICK_OPEN, /* the breaker refuses: *retry_after_ms says how long */
    GW_PICK_NONE, /* no instance available */
};

/*
 * Chooses an instance for one call: by key hash on the ring when has_key,
 * else by P2C, avoiding the instances in tried (when another exists), then
 * asks the breaker.  On GW_PICK_OK *out holds a reference and counts one
 * call in flight: end it with gw_pool_done().
 */
enum gw_pick_result gw_pool_pick(struct gw_pool *p, int64_t now_ms,
                                 bool has_key, uint64_t key_hash,
                                 struct gw_instance *const *tried,
                                 size_t ntried, struct gw_instance **out,
                                 struct gw_breaker_ticket *ticket,
                                 int64_t *retry_after_ms);

/*
 * Ends a call that gw_pool_pick started: records its outcome with the
 * breaker (breaker_failed) and outlier detection (outlier_failed), counts
 * it, and drops the call's reference to inst.
 */
void gw_pool_done(struct gw_pool *p, struct gw_instance *inst,
                  const struct gw_breaker_ticket *ticket, int64_t now_ms,
                  enum gw_outcome outcome, bool breaker_failed,
                  bool outlier_failed, int64_t duration_ms);

/* From thread 0's tick: health checks due, readmissions, gauges. */
void gw_pool_tick(struct gw_pool *p, int64_t now_ms);

/* Cancels the health checks in flight (thread 0, at shutdown). */
void gw_checks_cancel(struct gateway *gw);

/* The pool's state for GET /admin/pools; a new reference. */
json_t *gw_pool_json(struct gw_pool *p, int64_t now_ms);

void gw_instance_retain(struct gw_instance *i);
void gw_instance_release(struct gw_instance *i);

/* --- proxy.c ------------------------------------------------------------ */

/*
 * Forwards req along route r (key: the hash segment's value, or NULL) for
 * id, whom the request comes from: upstream gets X-Customer-Id from id
 * (never the client's own) and X-Gateway-Secret.
 */
void gw_proxy(struct http_req *req, struct gateway *gw,
              const struct gw_route *r, const char *key, size_t key_len,
              const struct gw_ident *id);

/* Sets up rate limits, shedding and the cache from the spec and keys.
 * ERR_OK or ERR_NOMEM. */
int gw_traffic_start(struct gateway *gw,
                     const int shed_percent[GW_SHED_CLASSES],
                     int64_t max_in_flight);

/* Frees what gw_traffic_start made. */
void gw_traffic_free(struct gateway *gw);

/* From thread 0's tick: the cache's and shedding's gauges. */
void gw_traffic_tick(struct gateway *gw);

/*
 * Removes the cached answers under prefix (see gw_cache_purge) from every
 * shard; returns the count removed.
 */
size_t gw_cache_purge_all(struct gateway *gw, const char *prefix, size_t len);

/* --- static.c ----------------------------------------------------------- */

/* Answers a GET or HEAD from the static folder (404 when missing). */
void gw_static_serve(struct http_req *req, const struct gateway *gw);

/* The Content-Type for a file name, by extension. */
const char *gw_static_type(const char *name);

/* --- ops.c -------------------------------------------------------------- */

/* The handler of GET /admin/ops/summary, the ops dashboard's data (app: the
 * gateway); docs/api/gateway.yaml describes the answer. */
void gw_ops_summary(struct http_req *req, void *app);

/*
 * The shows whose seats the summary carries, from gateway.ops_shows
 * ("1,7,12": at most OPS_SHOWS_MAX positive ids), at start-up before the
 * server runs; without a call, show 1.  ERR_OK, or ERR_INVALID (and the
 * list kept) for a bad list.
 */
int gw_ops_configure(const char *shows);

/* --- admin.c ------------------------------------------------------------ */

void gw_admin_list(struct http_req *req, void *app);
void gw_admin_put(struct http_req *req, void *app);

/* DELETE /admin/cache?prefix=/v1/shows/7: early invalidation; GET
 * /admin/cache: the cache's figures. */
void gw_admin_cache_purge(struct http_req *req, void *app);
void gw_admin_cache_stats(struct http_req *req, void *app);

/* The registry file check, from thread 0's tick. */
void gw_registry_tick(struct gateway *gw, int64_t now_ms);

#endif
