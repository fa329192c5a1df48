/*
 * ops.c - GET /admin/ops/summary, the numbers the ops dashboard (web/ops/)
 * draws: requests and 5xx answered, latency percentiles, pools, and the
 * seat counts of a few hot shows.
 *
 * Requests, errors and latency are the HTTP layer's own series of the
 * gateway's public routes (its catch-all {segment} patterns and requests
 * no pattern matched), read from the process's metrics exposition: the
 * metrics module offers no way to read a histogram's buckets otherwise.
 * /admin/, /metrics and the probes are left out, so the dashboard's own
 * polling does not show as traffic.
 *
 * Latency percentiles are estimated over a recent window, not since
 * start: each summary keeps a snapshot of the cumulative bucket counts (at
 * most one per OPS_SNAP_EVERY_MS), and the percentiles come from what was
 * added since the oldest snapshot of the last OPS_WINDOW_MS.  Within a
 * bucket the estimate is linear, as Prometheus' histogram_quantile does.
 *
 * Seat counts come from booking's seat map through the gateway's own
 * pools and routes (the show's hashed instance), fetched asynchronously
 * on the loop thread of the summary that found them older than
 * OPS_SHOW_CACHE_MS; a summary answers at once with what is cached, so a
 * count is at most one fetch behind.
 *
 * The queue's depth comes the same way from one instance of the booking
 * pool: its `marquee_mq_messages` gauges, summed over queues.  Booking
 * instances share one queue file, so any instance counts them all.
 */
#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "gateway/internal.h"

/* Named limits. */
#define OPS_SHOWS_MAX       16
#define OPS_SHOW_CACHE_MS   2000
#define OPS_SHOW_BODY_MAX   (1u << 20) /* one seat map */
#define OPS_SHOW_TIMEOUT_MS 2000
#define OPS_WINDOW_MS       60000
#define OPS_SNAP_EVERY_MS   1000
/* At most one snapshot a second, so the ring spans the whole window. */
#define OPS_SNAPS_MAX        (OPS_WINDOW_MS / OPS_SNAP_EVERY_MS + 4)
#define OPS_BUCKETS          (METRICS_BUCKETS_MAX + 1) /* +Inf last */
#define OPS_TARGET_MAX       64
#define OPS_ERROR_MAX        64
#define OPS_QUEUE_POOL       "booking"  /* whose /metrics has the queue */
#define OPS_METRICS_BODY_MAX (4u << 20) /* one instance's exposition */
#define OPS_LINE_MAX         512        /* longer sample lines are skipped */
#define OPS_QUEUE_GAUGE      "marquee_mq_messages{"

#define OPS_REQUESTS "marquee_http_requests_total{"
#define OPS_BUCKET   "marquee_http_request_duration_seconds_bucket{"

struct ops_show {
    int64_t id;
    bool known; /* held, sold and free came from booking */
    int64_t held, sold, free;
    bool fetching;
    int64_t fetched_ms;        /* when the last fetch started */
    char error[OPS_ERROR_MAX]; /* why the last fetch failed; "" if it did not */
};

/* Cumulative counts of each latency bucket at one time. */
struct ops_snap {
    int64_t at_ms;
    uint64_t count[OPS_BUCKETS];
};

struct ops_totals {
    uint64_t requests, errors;
    uint64_t count[OPS_BUCKETS];
};

/* The queue's depth as last read from a booking instance. */
struct ops_queue {
    bool tried, known, fetching; /* known: the counts below were read */
    int64_t fetched_ms;
    uint64_t ready, leased, dead;
    char error[OPS_ERROR_MAX];
};

/* One fetch in flight: a show's seat map, or the queue's gauges. */
struct ops_fetch {
    struct gw_pool *pool;
    struct gw_instance *inst;
    struct gw_breaker_ticket ticket;
    bool queue;  /* else a show's seat map */
    size_t show; /* index into ops.shows */
    int64_t sent_ms;
};

/* One gateway per process, so its dashboard state is the file's. */
static struct {
    pthread_mutex_t lock;
    size_t nshows;
    struct ops_show shows[OPS_SHOWS_MAX];
    size_t nsnaps, next; /* ring: next is where the next snapshot goes */
    struct ops_snap snaps[OPS_SNAPS_MAX];
    struct ops_queue queue;
} ops = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .nshows = 1,
    .shows = {{.id = 1}},
};

int gw_ops_configure(const char *shows)
{
    struct ops_show parsed[OPS_SHOWS_MAX];
    size_t n = 0;
    const char *s = shows;

    while (*s != '\0') {
        char *end;
        long long id;

        while (*s == ' ' || *s == ',')
            s++;
        if (*s == '\0')
            break;
        id = strtoll(s, &end, 10);
        if (end == s || id <= 0 || n == OPS_SHOWS_MAX)
            return ERR_INVALID;
        memset(&parsed[n], 0, sizeof(parsed[n]));
        parsed[n++].id = id;
        s = end;
        while (*s == ' ')
            s++;
        if (*s != ',' && *s != '\0')
            return ERR_INVALID;
    }

    pthread_mutex_lock(&ops.lock);
    memcpy(ops.shows, parsed, n * sizeof(parsed[0]));
    ops.nshows = n;
    pthread_mutex_unlock(&ops.lock);
    return ERR_OK;
}

/* --- totals from the exposition ----------------------------------------- */

/* The value of label name in a sample line's braces, or NULL. */
static const char *label_value(const char *line, const char *name, size_t *len)
{
    char key[32];
    const char *v, *end;

    snprintf(key, sizeof(key), "%s=\"", name);
    v = strstr(line, key);
    if (v == NULL)
        return NULL;
    v += strlen(key);
    end = strchr(v, '"');
    if (end == NULL)
        return NULL;
    *len = (size_t)(end - v);
    return v;
}

/* The gateway's catch-all patterns ("/", "/{a}/{b}") and unmatched. */
static bool route_public(const char *line)
{
    size_t len;
    const char *r = label_value(line, "route", &len);

    if (r == NULL)
        return false;
    return (len == 1 && r[0] == '/') ||
           (len > 1 && r[0] == '/' && r[1] == '{') ||
           (len == 9 && memcmp(r, "unmatched", 9) == 0);
}

/* The sample's value: what follows the closing brace. */
static uint64_t sample_value(const char *line)
{
    const char *brace = strrchr(line, '}');
    double v;

    if (brace == NULL)
        return 0;
    v = strtod(brace + 1, NULL);
    return isfinite(v) && v > 0 ? (uint64_t)v : 0;
}

/* Which bucket an `le` label names: its bound's index, +Inf the last. */
static int bucket_index(const char *line, size_t nbounds)
{
    size_t len;
    const char *le = label_value(line, "le", &len);
    double v;

    if (le == NULL)
        return -1;
    if (len == 4 && memcmp(le, "+Inf", 4) == 0)
        return (int)nbounds;
    v = strtod(le, NULL);
    for (size_t i = 0; i < nbounds; i++)
        if (fabs(v - metrics_latency_buckets[i]) <=
            1e-9 * metrics_latency_buckets[i])
            return (int)i;
    return -1;
}

static void totals_line(struct ops_totals *t, const char *line)
{
    size_t nb = metrics_latency_nbuckets;

    if (strncmp(line, OPS_REQUESTS, strlen(OPS_REQUESTS)) == 0 &&
        route_public(line)) {
        size_t len;
        const char *code = label_value(line, "code", &len);
        uint64_t v = sample_value(line);

        t->requests += v;
        if (code != NULL && len == 3 && memcmp(code, "5xx", 3) == 0)
            t->errors += v;
    } else if (strncmp(line, OPS_BUCKET, strlen(OPS_BUCKET)) == 0 &&
               route_public(line)) {
        int i = bucket_index(line, nb);

        if (i >= 0)
            t->count[i] += sample_value(line);
    }
}

/* Sums the public routes' series of the whole exposition into t. */
static int totals_read(struct ops_totals *t)
{
    char *text, *line, *nl;
    size_t len;
    int rc;

    memset(t, 0, sizeof(*t));
    rc = metrics_render(metrics_process(), &text, &len);
    if (rc != ERR_OK)
        return rc;
    for (line = text; *line != '\0'; line = nl + 1) {
        nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        *nl = '\0';
        totals_line(t, line);
    }
    free(text);
    return ERR_OK;
}

/* --- latency window ------------------------------------------------------ */

/*
 * Copies into *base the snapshot the window starts at (false: none, the
 * window is since start), then keeps a snapshot of count, at most one
 * per OPS_SNAP_EVERY_MS.  Caller holds ops.lock.
 */
static bool window_take(const uint64_t *count, int64_t now,
                        struct ops_snap *base)
{
    const struct ops_snap *found = NULL;
    size_t newest = (ops.next + OPS_SNAPS_MAX - 1) % OPS_SNAPS_MAX;

    /* From the oldest to the newest; when none is recent, the newest. */
    for (size_t k = 0; k < ops.nsnaps; k++) {
        size_t at = (ops.next + OPS_SNAPS_MAX - ops.nsnaps + k) % OPS_SNAPS_MAX;

        found = &ops.snaps[at];
        if (found->at_ms >= now - OPS_WINDOW_MS)
            break;
    }
    if (found != NULL)
        *base = *found;

    if (ops.nsnaps == 0 || now - ops.snaps[newest].at_ms >= OPS_SNAP_EVERY_MS) {
        ops.snaps[ops.next].at_ms = now;
        memcpy(ops.snaps[ops.next].count, count, sizeof(ops.snaps[0].count));
        ops.next = (ops.next + 1) % OPS_SNAPS_MAX;
        if (ops.nsnaps < OPS_SNAPS_MAX)
            ops.nsnaps++;
    }
    return found != NULL;
}

/*
 * The q-quantile in ms of the observations counted in delta (cumulative
 * per bucket), linear within its bucket; -1 when there are none.
 */
static double quantile_ms(const uint64_t *delta, double q)
{
    size_t nb = metrics_latency_nbuckets;
    uint64_t total = delta[nb];
    double rank, lo = 0, prev = 0;

    if (total == 0)
        return -1;
    rank = q * (double)total;
    for (size_t i = 0; i < nb; i++) {
        double hi = metrics_latency_buckets[i];
        double c = (double)delta[i];

        if (c >= rank) {
            double in = c - prev;
            double share = in > 0 ? (rank - prev) / in : 1;
            return (lo + (hi - lo) * share) * 1000.0;
        }
        lo = hi;
        prev = c;
    }
    /* Past the last bound: that bound is all that can be said. */
    return metrics_latency_buckets[nb - 1] * 1000.0;
}

static json_t *latency_json(const uint64_t *count, const struct ops_snap *base)
{
    uint64_t delta[OPS_BUCKETS];
    static const double qs[] = {0.5, 0.9, 0.99};
    static const char *const names[] = {"p50", "p90", "p99"};
    json_t *out = json_object();

    for (size_t i = 0; i < OPS_BUCKETS; i++) {
        uint64_t b = base != NULL ? base->count[i] : 0;
        /* A counter never goes down; guard against a torn read anyway. */
        delta[i] = count[i] >= b ? count[i] - b : 0;
    }
    for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
        double ms = quantile_ms(delta, qs[k]);
        json_object_set_new(out, names[k],
                            ms < 0 ? json_null()
                                   : json_real(round(ms * 1000) / 1000));
    }
    return out;
}

/* --- seat counts of the hot shows --------------------------------------- */

static void show_fetched(size_t show, const char *error, json_t *counts)
{
    struct ops_show *s;

    pthread_mutex_lock(&ops.lock);
    assert(show < ops.nshows);
    s = &ops.shows[show];
    s->fetching = false;
    snprintf(s->error, sizeof(s->error), "%s", error);
    if (counts != NULL) {
        s->held = json_integer_value(json_object_get(counts, "held"));
        s->sold = json_integer_value(json_object_get(counts, "sold"));
        s->free = json_integer_value(json_object_get(counts, "free"));
        s->known = true;
    }
    pthread_mutex_unlock(&ops.lock);
}

/* Sums one gauge line of the exposition into q, by its state label. */
static void queue_line(struct ops_queue *q, const char *line)
{
    size_t len;
    const char *state = label_value(line, "state", &len);
    uint64_t v = sample_value(line);

    if (state == NULL)
        return;
    if (len == 5 && memcmp(state, "ready", 5) == 0)
        q->ready += v;
    else if (len == 6 && memcmp(state, "leased", 6) == 0)
        q->leased += v;
    else if (len == 4 && memcmp(state, "dead", 4) == 0)
        q->dead += v;
}

/* Takes the queue's gauges from a booking instance's exposition. */
static void queue_fetched(const char *error,
                          const struct http_upstream_response *resp)
{
    struct ops_queue q = {0};
    const char *at, *end;
    char line[OPS_LINE_MAX];
    size_t lines = 0;

    if (resp != NULL) {
        at = resp->body;
        end = resp->body + resp->body_len;
        while (at < end) {
            const char *nl = memchr(at, '\n', (size_t)(end - at));
            size_t len = (size_t)((nl != NULL ? nl : end) - at);

            if (len < sizeof(line) && len > strlen(OPS_QUEUE_GAUGE) &&
                memcmp(at, OPS_QUEUE_GAUGE, strlen(OPS_QUEUE_GAUGE)) == 0) {
                memcpy(line, at, len);
                line[len] = '\0';
                queue_line(&q, line);
                lines++;
            }
            at = nl != NULL ? nl + 1 : end;
        }
    }

    pthread_mutex_lock(&ops.lock);
    ops.queue.fetching = false;
    ops.queue.tried = true;
    if (resp != NULL && lines == 0)
        error = "no queue gauges: booking takes no events from a queue";
    snprintf(ops.queue.error, sizeof(ops.queue.error), "%s", error);
    if (error[0] == '\0') {
        ops.queue.known = true;
        ops.queue.ready = q.ready;
        ops.queue.leased = q.leased;
        ops.queue.dead = q.dead;
    }
    pthread_mutex_unlock(&ops.lock);
}

static enum gw_outcome outcome_of(enum http_upstream_result result, int status)
{
    switch (result) {
    case HTTP_UPSTREAM_OK:
        return status >= 100 && status < 600
                   ? (enum gw_outcome)(status / 100 - 1)
                   : GW_OUT_IO;
    case HTTP_UPSTREAM_CONNECT: return GW_OUT_CONNECT;
    case HTTP_UPSTREAM_TIMEOUT: return GW_OUT_TIMEOUT;
    case HTTP_UPSTREAM_TOOBIG: return GW_OUT_TOOBIG;
    case HTTP_UPSTREAM_IO: break;
    }
    return GW_OUT_IO;
}

static void fetch_done(void *arg, enum http_upstream_result result,
                       const struct http_upstream_response *resp,
                       bool first_byte)
{
    struct ops_fetch *f = arg;
    int64_t now = gw_now_ms();
    int status = result == HTTP_UPSTREAM_OK ? resp->status : 0;
    json_t *body = NULL, *counts = NULL;
    char error[OPS_ERROR_MAX] = "";

    (void)first_byte;
    gw_pool_done(
        f->pool, f->inst, &f->ticket, now, outcome_of(result, status),
        (result != HTTP_UPSTREAM_OK && result != HTTP_UPSTREAM_TOOBIG) ||
            status >= 500,
        result == HTTP_UPSTREAM_CONNECT || status >= 500, now - f->sent_ms);

    if (result != HTTP_UPSTREAM_OK)
        snprintf(error, sizeof(error), "%s", http_upstream_result_name(result));
    else if (status != 200)
        snprintf(error, sizeof(error), "status %d", status);
    if (f->queue) {
        queue_fetched(error, error[0] == '\0' ? resp : NULL);
        free(f);
        return;
    }
    if (error[0] == '\0') {
        body = json_loadb(resp->body, resp->body_len, 0, NULL);
        counts = json_object_get(body, "counts");
        if (!json_is_object(counts))
            snprintf(error, sizeof(error), "no counts in the seat map");
    }
    show_fetched(f->show, error, error[0] == '\0' ? counts : NULL);
    json_decref(body);
    free(f);
}

/* A fetch that could not start: its reason goes where its answer would. */
static void fetch_failed(const struct ops_fetch *f, const char *why)
{
    if (f->queue)
        queue_fetched(why, NULL);
    else
        show_fetched(f->show, why, NULL);
}

/*
 * Sends f's GET of target to an instance of f->pool (hashed by key when
 * key is not NULL) on the caller's loop thread; on any failure reports it
 * and frees f.
 */
static void fetch_send(struct ops_fetch *f, int thread, const char *target,
                       const char *key, size_t key_len, int connect_ms,
                       int first_byte_ms, size_t body_max)
{
    int64_t now = gw_now_ms(), retry_after;
    struct http_upstream_request rq = {
        .method = "GET",
        .target = target,
        .connect_timeout_ms = connect_ms,
        .first_byte_timeout_ms = first_byte_ms < OPS_SHOW_TIMEOUT_MS
                                     ? first_byte_ms
                                     : OPS_SHOW_TIMEOUT_MS,
        .total_timeout_ms = OPS_SHOW_TIMEOUT_MS,
        .max_response_bytes = body_max,
    };

    switch (gw_pool_pick(f->pool, now, key != NULL,
                         key != NULL ? gw_key_hash(key, key_len) : 0, NULL, 0,
                         &f->inst, &f->ticket, &retry_after)) {
    case GW_PICK_OK: break;
    case GW_PICK_OPEN: fetch_failed(f, "breaker open"); goto out_fetch;
    case GW_PICK_NONE: fetch_failed(f, "no instance"); goto out_fetch;
    }
    f->sent_ms = now;
    if (http_upstream_send(f->inst->up, thread, &rq, fetch_done, f) != NULL)
        return;

    /* Out of memory or shutting down: nothing went out. */
    gw_pool_done(f->pool, f->inst, &f->ticket, now, GW_OUT_IO, false, false, 0);
    fetch_failed(f, "not sent");
out_fetch:
    free(f);
}

/* Starts one fetch of show's seat map on the caller's loop thread. */
static void fetch_start(struct gateway *gw, int thread, size_t show, int64_t id)
{
    char target[OPS_TARGET_MAX];
    const struct gw_route *r;
    const char *key;
    size_t key_len;
    struct ops_fetch *f;

    snprintf(target, sizeof(target), "/v1/shows/%" PRId64 "/seats", id);
    r = gw_route_find(gw->spec, target, &key, &key_len);
    if (r == NULL) {
        show_fetched(show, "no route to the seat map", NULL);
        return;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        show_fetched(show, "out of memory", NULL);
        return;
    }
    f->pool = &gw->pools[r->pool];
    f->show = show;
    fetch_send(f, thread, target, key, key_len, r->connect_timeout_ms,
               r->first_byte_timeout_ms, OPS_SHOW_BODY_MAX);
}

/* Starts one read of the queue's gauges from the booking pool. */
static void queue_fetch_start(struct gateway *gw, int thread)
{
    struct gw_pool *pool = gw_pool_find(gw, OPS_QUEUE_POOL);
    struct ops_fetch *f;

    if (pool == NULL) {
        queue_fetched("no " OPS_QUEUE_POOL " pool", NULL);
        return;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        queue_fetched("out of memory", NULL);
        return;
    }
    f->pool = pool;
    f->queue = true;
    fetch_send(f, thread, "/metrics", NULL, 0, OPS_SHOW_TIMEOUT_MS,
               OPS_SHOW_TIMEOUT_MS, OPS_METRICS_BODY_MAX);
}

/* Marks the shows due a fetch; caller holds ops.lock. */
static size_t shows_due(int64_t now, size_t *due, int64_t *ids)
{
    size_t n = 0;

    for (size_t k = 0; k < ops.nshows; k++) {
        struct ops_show *s = &ops.shows[k];

        if (s->fetching ||
            (s->fetched_ms != 0 && now - s->fetched_ms < OPS_SHOW_CACHE_MS))
            continue;
        s->fetching = true;
        s->fetched_ms = now;
        due[n] = k;
        ids[n++] = s->id;
    }
    return n;
}

/* Whether the queue's gauges are due a read (and marks it); caller holds
 * ops.lock. */
static bool queue_due(int64_t now)
{
    struct ops_queue *q = &ops.queue;

    if (q->fetching ||
        (q->fetched_ms != 0 && now - q->fetched_ms < OPS_SHOW_CACHE_MS))
        return false;
    q->fetching = true;
    q->fetched_ms = now;
    return true;
}

/* The queue's depth: null before the first read; depth null (and why in
 * error) while it cannot be read.  Caller holds ops.lock. */
static json_t *queue_json(void)
{
    const struct ops_queue *q = &ops.queue;
    json_t *o;

    if (!q->tried)
        return json_null();
    o = json_object();
    json_object_set_new(o, "depth",
                        q->known ? json_integer((json_int_t)q->ready)
                                 : json_null());
    json_object_set_new(o, "leased",
                        q->known ? json_integer((json_int_t)q->leased)
                                 : json_null());
    json_object_set_new(
        o, "dead", q->known ? json_integer((json_int_t)q->dead) : json_null());
    if (q->error[0] != '\0')
        json_object_set_new(o, "error", json_string(q->error));
    return o;
}

/* The cached counts; caller holds ops.lock. */
static json_t *shows_json(void)
{
    json_t *list = json_array();

    for (size_t k = 0; k < ops.nshows; k++) {
        const struct ops_show *s = &ops.shows[k];
        json_t *o = json_pack("{s:I}", "id", (json_int_t)s->id);

        json_object_set_new(o, "held",
                            s->known ? json_integer(s->held) : json_null());
        json_object_set_new(o, "sold",
                            s->known ? json_integer(s->sold) : json_null());
        json_object_set_new(o, "free",
                            s->known ? json_integer(s->free) : json_null());
        if (s->error[0] != '\0')
            json_object_set_new(o, "error", json_string(s->error));
        json_array_append_new(list, o);
    }
    return list;
}

/* --- the endpoint -------------------------------------------------------- */

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void gw_ops_summary(struct http_req *req, void *app)
{
    struct gateway *gw = app;
    int64_t now = gw_now_ms();
    struct ops_totals t;
    struct ops_snap base;
    bool has_base;
    size_t due[OPS_SHOWS_MAX], ndue;
    int64_t ids[OPS_SHOWS_MAX];
    json_t *out, *pools, *latency, *shows, *window, *queue;
    bool read_queue;

    if (!http_req_admin_ok(req, gw->admin_token))
        return;
    if (totals_read(&t) != ERR_OK) {
        http_respond_unavailable(req, 1, "the gateway cannot read its metrics");
        return;
    }

    pthread_mutex_lock(&ops.lock);
    has_base = window_take(t.count, now, &base);
    latency = latency_json(t.count, has_base ? &base : NULL);
    window = has_base ? json_integer(now - base.at_ms) : json_null();
    shows = shows_json();
    queue = queue_json();
    ndue = shows_due(now, due, ids);
    read_queue = queue_due(now);
    pthread_mutex_unlock(&ops.lock);

    for (size_t k = 0; k < ndue; k++)
        fetch_start(gw, http_req_thread_index(req), due[k], ids[k]);
    if (read_queue)
        queue_fetch_start(gw, http_req_thread_index(req));

    pools = json_array();
    for (size_t k = 0; k < gw->npools; k++)
        json_array_append_new(pools, gw_pool_json(&gw->pools[k], now));
    out =
        json_pack("{s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o}", "time_ms",
                  (json_int_t)wall_ms(), "requests_total",
                  (json_int_t)t.requests, "errors_total", (json_int_t)t.errors,
                  "latency_ms", latency, "latency_window_ms", window, "pools",
                  pools, "shows", shows, "queue", queue);
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200, out);
}
