/*
 * proxy.c - the request path: rate limit, shed, cache, pick an instance,
 * forward, retry, answer.
 *
 * A proxied request is deferred and lives in a struct gw_call on its loop
 * thread.  Everything needed to send it again (method, target, headers,
 * body) is copied into the call, because the client may leave while a
 * call is in flight and take the request with it.  The upstream call, the
 * backoff timer and the answer all run on that same thread.
 *
 * Before a call is made, in this order: the route's rate limit (429), the
 * load-shedding gates (503), and, for a GET of a cached route, the cache.
 * A cache hit is answered at once, without a call.  A miss becomes the
 * key's fill, or waits on the fill another thread already has out: when
 * that ends, the filler hands each waiter the answer it stored (posted to
 * the waiter's own thread), or sends it upstream alone when nothing could
 * be stored.  A stale entry within stale-while-revalidate is served at
 * once while a detached call, with no client, refreshes it.
 */
#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/err.h"
#include "base/log.h"
#include "gateway/internal.h"

#define GW_ATTEMPTS_MAX (1 + GW_RETRY_MAX)
/* X-Request-Id, X-Forwarded-For, X-Deadline-Ms and, when there are,
 * X-Customer-Id, X-Gateway-Secret and a revalidation's If-None-Match. */
#define GW_ADDED_HEADERS 7
#define GW_XFF_MAX       512

/* Cache-Status values (RFC 9211) of the gateway's answers. */
#define CS_HIT         "marquee; hit"
#define CS_STALE       "marquee; hit; detail=stale"
#define CS_COALESCED   "marquee; hit; detail=coalesced"
#define CS_SIE         "marquee; hit; detail=stale-if-error"
#define CS_STORED      "marquee; fwd=miss; stored"
#define CS_MISS        "marquee; fwd=miss"
#define CS_REVALIDATED "marquee; fwd=stale; fwd-status=304"
#define CS_REFETCHED   "marquee; fwd=stale; stored"
#define CS_BYPASS      "marquee; fwd=bypass"

struct gw_call {
    struct gateway *gw;
    const struct gw_route *route;
    struct gw_pool *pool;
    struct http_async *async; /* NULL for a detached refresh */
    int thread;
    struct rand *rng; /* the loop thread's */

    /* The request, copied. */
    char method[16];
    char *target;
    size_t nheaders; /* the client's, without the added ones */
    const char *body;
    size_t body_len;
    char request_id[HTTP_REQUEST_ID_MAX + 1];
    char deadline[24];
    char customer[HTTP_CUSTOMER_MAX + 1]; /* X-Customer-Id; "" none */
    bool admin; /* the caller is an admin: the gateway's token goes up */
    const char *client_inm; /* the client's If-None-Match, or NULL */
    char *arena;            /* owns target, header text and body */

    bool has_key, retryable;
    uint64_t key_hash;
    int64_t deadline_ms;

    /* The attempt under way. */
    int attempts;
    struct gw_instance *tried[GW_ATTEMPTS_MAX];
    struct gw_instance *inst; /* one reference while a call is out */
    struct gw_breaker_ticket ticket;
    int64_t sent_ms;
    bool in_retry; /* counted in the pool's retry budget */

    /* Load shedding: the slots this call holds. */
    struct gw_shed *route_shed;
    bool shed_held;

    /* The cache, on a cached route's GET. */
    struct gw_cache_shard *shard;
    struct gw_cache_fill *fill;   /* this call fetches its key for all */
    struct gw_cache_entry *stale; /* the entry it revalidates */
    struct gw_cache_entry *serve; /* answer from this entry instead */
    const char *cache_status;     /* Cache-Status of the answer */
    int64_t serve_age_s;
    bool detached; /* a background refresh: nobody to answer */

    /* The answer, valid while it is given. */
    const struct http_upstream_response *resp;
    int status;
    const char *slug, *title, *detail;
    int retry_after_s;

    /* Last, and not zeroed by call_make: written before they are read. */
    struct http_header_kv headers[GW_HEADERS_MAX + GW_ADDED_HEADERS];
    char xff[GW_XFF_MAX];
};

static void call_free(struct gw_call *c)
{
    /* A retry that found no instance ends here, still counted. */
    if (c->in_retry)
        gw_retry_budget_retry_end(&c->pool->budget);
    gw_retry_budget_request_end(&c->pool->budget);
    if (c->shed_held) {
        gw_shed_leave(&c->gw->shed);
        if (c->route_shed != NULL)
            gw_shed_leave(c->route_shed);
    }
    gw_cache_entry_release(c->stale);
    gw_cache_entry_release(c->serve);
    free(c->arena);
    free(c);
}

/* --- copying the request -------------------------------------------------- */

static bool name_is(const struct http_header_kv *h, const char *name)
{
    return h->name_len == strlen(name) &&
           strncasecmp(h->name, name, h->name_len) == 0;
}

/* The client's Connection headers, found once per request. */
struct conn_lists {
    const struct http_header_kv *list[GW_HEADERS_MAX];
    size_t n;
};

static void conn_lists_find(const struct http_header_kv *all, size_t n,
                            struct conn_lists *out)
{
    out->n = 0;
    for (size_t k = 0; k < n && out->n < GW_HEADERS_MAX; k++)
        if (name_is(&all[k], "connection"))
            out->list[out->n++] = &all[k];
}

/* Whether a Connection header of the client lists this header's name. */
static bool named_in_connection(const struct conn_lists *conn,
                                const struct http_header_kv *h)
{
    for (size_t k = 0; k < conn->n; k++) {
        const char *v = conn->list[k]->value;
        const char *end = v + conn->list[k]->value_len;

        while (v < end) {
            const char *comma = memchr(v, ',', (size_t)(end - v));
            const char *tok_end = comma != NULL ? comma : end;

            while (v < tok_end && (*v == ' ' || *v == '\t'))
                v++;
            size_t len = (size_t)(tok_end - v);
            while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
                len--;
            if (len == h->name_len && strncasecmp(v, h->name, len) == 0)
                return true;
            v = comma != NULL ? comma + 1 : end;
        }
    }
    return false;
}

/* Headers the gateway never forwards as the client sent them. */
static bool header_dropped(const struct conn_lists *conn,
                           const struct http_header_kv *h)
{
    static const char *const drop[] = {
        /* Hop-by-hop (RFC 9110 7.6.1). */
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        /* Set by the client of the upstream, or by the gateway itself. */
        "host",
        "content-length",
        "expect",
        "x-request-id",
        "x-forwarded-for",
        "x-deadline-ms",
        /* Whom a request acts for is the gateway's to say; the caller's
         * own credentials stay here (a service never sees a customer's
         * token or a partner's key, so a service's log cannot leak one). */
        "x-customer-id",
        "x-gateway-secret",
        "authorization",
        "x-api-key",
    };

    for (size_t k = 0; k < sizeof(drop) / sizeof(drop[0]); k++)
        if (name_is(h, drop[k]))
            return true;
    return named_in_connection(conn, h);
}

static char *arena_put(char **at, const char *s, size_t len)
{
    char *out = *at;

    memcpy(out, s, len);
    out[len] = '\0';
    *at += len + 1;
    return out;
}

/* strlcpy: src cut to fit cap (> 0) bytes with its NUL; returns the length. */
static size_t copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

/* v >= 0 in decimal into out (at least 21 bytes); returns the length. */
static size_t format_i64(char *out, int64_t v)
{
    char tmp[20];
    size_t n = 0, len;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    for (len = 0; len < n; len++)
        out[len] = tmp[n - 1 - len];
    out[len] = '\0';
    return len;
}

/*
 * Appends one hop (or the client's list) to X-Forwarded-For.  A list too
 * long to keep starts over from this hop: the nearest hops matter most.
 */
static void xff_add(struct gw_call *c, size_t *len, const char *v, size_t n)
{
    size_t sep = *len > 0 ? 2 : 0;

    if (*len + sep + n >= sizeof(c->xff)) {
        *len = 0;
        sep = 0;
        if (n >= sizeof(c->xff))
            n = 0;
    }
    memcpy(c->xff + *len, ", ", sep);
    memcpy(c->xff + *len + sep, v, n);
    *len += sep + n;
    c->xff[*len] = '\0';
}

/* Copies what a retry needs.  ERR_OK, ERR_NOMEM or ERR_TOOBIG. */
static int call_copy(struct gw_call *c, struct http_req *req)
{
    const struct http_header_kv *in;
    size_t nin = http_req_headers(req, &in), total, body_len;
    const char *path = http_req_path(req);
    const char *target = http_req_target(req);
    const char *query = strchr(target, '?');
    const char *body = http_req_body(req, &body_len);
    size_t xff_len = 0;
    struct conn_lists conn;
    char *at;

    if (nin > GW_HEADERS_MAX)
        return ERR_TOOBIG;
    conn_lists_find(in, nin, &conn);
    copy_str(c->method, sizeof(c->method), http_req_method(req));
    copy_str(c->request_id, sizeof(c->request_id), http_req_id(req));

    /* The normalized path goes upstream, so what was routed is what the
     * service sees ("/v1/../internal/x" cannot slip past as text). */
    size_t path_len = strlen(path), query_len = query ? strlen(query) : 0;

    total = path_len + query_len + 1 + body_len;
    for (size_t k = 0; k < nin; k++)
        total += in[k].name_len + in[k].value_len + 2;
    c->arena = malloc(total + 1);
    if (c->arena == NULL)
        return ERR_NOMEM;
    at = c->arena;

    c->target = at;
    memcpy(at, path, path_len);
    memcpy(at + path_len, query != NULL ? query : "", query_len);
    at += path_len + query_len;
    *at++ = '\0';

    for (size_t k = 0; k < nin; k++) {
        if (name_is(&in[k], "x-forwarded-for"))
            xff_add(c, &xff_len, in[k].value, in[k].value_len);
        if (header_dropped(&conn, &in[k]))
            continue;
        assert(c->nheaders < GW_HEADERS_MAX); /* nin was checked */
        struct http_header_kv *h = &c->headers[c->nheaders++];
        h->name = arena_put(&at, in[k].name, in[k].name_len);
        h->name_len = in[k].name_len;
        h->value = arena_put(&at, in[k].value, in[k].value_len);
        h->value_len = in[k].value_len;
        if (name_is(h, "if-none-match"))
            c->client_inm = h->value;
    }
    c->body = body_len > 0 ? arena_put(&at, body, body_len) : NULL;
    c->body_len = body_len;

    const char *peer = http_req_peer(req);
    xff_add(c, &xff_len, peer, strlen(peer));
    return ERR_OK;
}

/*
 * A fill fetches the whole answer for every client of the key, so the
 * client's own conditions do not go upstream; the gateway adds its own
 * If-None-Match when it revalidates.
 */
static void conditions_strip(struct gw_call *c)
{
    static const char *const cond[] = {"if-none-match", "if-modified-since",
                                       "if-match", "if-unmodified-since",
                                       "if-range"};
    size_t n = 0;

    for (size_t k = 0; k < c->nheaders; k++) {
        bool drop = false;
        for (size_t j = 0; j < sizeof(cond) / sizeof(cond[0]) && !drop; j++)
            drop = name_is(&c->headers[k], cond[j]);
        if (!drop)
            c->headers[n++] = c->headers[k];
    }
    c->nheaders = n;
}

/* --- answering ------------------------------------------------------------ */

/*
 * Answers from a cached entry: 304 when the client's If-None-Match
 * matches its ETag, else the stored answer, with Age and Cache-Status.
 */
static void respond_entry(struct http_req *req, const struct gw_cache_entry *e,
                          int64_t age_s, const char *cache_status,
                          const char *inm)
{
    char age[24];

    snprintf(age, sizeof(age), "%lld", (long long)(age_s > 0 ? age_s : 0));
    http_set_header(req, "Age", age);
    http_set_header(req, "Cache-Status", cache_status);
    if (inm != NULL && e->status == 200 && gw_cache_etag_match(inm, e->etag)) {
        /* RFC 9110 15.4.5: what a 304 would have said in a 200. */
        static const char *const keep[] = {"etag", "cache-control", "expires",
                                           "vary", "content-location"};
        struct http_header_kv hs[GW_CACHE_HEADERS_MAX];
        size_t n = 0;

        for (size_t k = 0; k < e->nheaders; k++)
            for (size_t j = 0; j < sizeof(keep) / sizeof(keep[0]); j++)
                if (name_is(&e->headers[k], keep[j]))
                    hs[n++] = e->headers[k];
        http_respond_proxied(req, 304, hs, n, NULL, 0);
        return;
    }
    http_respond_proxied(req, e->status, e->headers, e->nheaders, e->body,
                         e->body_len);
}

static void answer_proxied(struct http_req *req, struct gw_call *c)
{
    const struct http_upstream_response *r = c->resp;
    struct http_header_kv hs[HTTP_UPSTREAM_HEADERS_MAX + 1];
    size_t n = 0;

    /* http_respond_proxied drops hop-by-hop and the server's own fields. */
    for (size_t k = 0; k < r->nheaders && n < HTTP_UPSTREAM_HEADERS_MAX; k++)
        hs[n++] = r->headers[k];
    if (c->gw->debug_headers && c->inst != NULL) {
        hs[n].name = "X-Upstream";
        hs[n].name_len = strlen("X-Upstream");
        hs[n].value = c->inst->addr;
        hs[n].value_len = strlen(c->inst->addr);
        n++;
    }
    if (c->cache_status != NULL)
        http_set_header(req, "Cache-Status", c->cache_status);
    http_respond_proxied(req, r->status, hs, n, r->body, r->body_len);
}

/*
 * A problem document written without the HTTP layer's warning per 5xx:
 * during an outage every request fails the same way, and the gateway
 * reports that once, as a change of state, and in counters.
 */
static void problem_quiet(struct http_req *req, int status, const char *slug,
                          const char *title, const char *detail)
{
    char type[64], *text;
    json_t *doc;

    snprintf(type, sizeof(type), "/problems/%s", slug);
    doc = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "type", type, "title",
                    title, "status", status, "detail", detail, "instance",
                    http_req_path(req), "request_id", http_req_id(req));
    text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL) {
        http_respond_problem(req, status, slug, title, "%s", detail);
        return;
    }
    http_respond_bytes(req, status, "application/problem+json", text,
                       strlen(text));
    free(text);
}

/* Answers a deferred call and frees it (req NULL: the client left). */
static void answer(struct http_req *req, void *arg)
{
    struct gw_call *c = arg;
    char v[16];

    if (req == NULL) {
        call_free(c);
        return;
    }
    if (c->serve != NULL) {
        respond_entry(req, c->serve, c->serve_age_s, c->cache_status,
                      c->client_inm);
    } else if (c->resp != NULL) {
        answer_proxied(req, c);
    } else {
        if (c->retry_after_s > 0) {
            snprintf(v, sizeof(v), "%d", c->retry_after_s);
            http_set_header(req, "Retry-After", v);
        }
        problem_quiet(req, c->status, c->slug, c->title, c->detail);
    }
    call_free(c);
}

/* --- the cache's side of an ending call --------------------------------- */

static struct gw_cache_shard *shard_of(struct gateway *gw, const char *key,
                                       size_t len)
{
    return &gw->shards[gw_hash(key, len) % GW_CACHE_SHARDS];
}

static void attempt(struct gw_call *c);

/* On the waiter's own thread: its filler stored nothing, so it goes
 * upstream alone. */
static void waiter_go(void *thread_data, void *arg)
{
    (void)thread_data;
    attempt(arg);
}

/*
 * Hands the waiters of a fill their answer: serve (each takes a
 * reference), or, when NULL, a call of their own.  Runs on the filler's
 * thread; each waiter is answered or resumed on its own.
 */
static void waiters_release(struct gateway *gw, void **waiters, size_t n,
                            struct gw_cache_entry *serve, int64_t age_s,
                            const char *cache_status)
{
    for (size_t k = 0; k < n; k++) {
        struct gw_call *w = waiters[k];

        if (serve != NULL) {
            gw_cache_entry_retain(serve);
            w->serve = serve;
            w->serve_age_s = age_s;
            w->cache_status = cache_status;
            http_async_post(w->async, answer, w);
            continue;
        }
        w->cache_status = CS_MISS;
        if (!http_server_post(gw->server, w->thread, waiter_go, w)) {
            w->status = 503;
            w->slug = "unavailable";
            w->title = "Service unavailable";
            w->detail = "the gateway is shutting down";
            w->retry_after_s = 1;
            http_async_post(w->async, answer, w);
        }
    }
}

/* Whether an answer carries freshness of its own (a 304 may not). */
static bool has_freshness(const struct http_upstream_response *r)
{
    for (size_t k = 0; k < r->nheaders; k++)
        if (name_is(&r->headers[k], "cache-control") ||
            name_is(&r->headers[k], "expires"))
            return true;
    return false;
}

static int64_t wall_s(void)
{
    return (int64_t)time(NULL);
}

/*
 * Ends the call's fill: decides what to keep (a new answer, a stale entry
 * renewed by a 304) and what to serve (that, or the stale entry when the
 * upstream failed and stale-if-error allows), then releases the waiters.
 */
static void cache_end(struct gw_call *c)
{
    const struct http_upstream_response *r = c->resp;
    const struct gw_cache_defaults *d = &c->route->cache_defaults;
    struct gw_cache_entry *keep = NULL;
    struct gw_cache_policy pol = {0};
    void *waiters[GW_CACHE_WAITERS_MAX];
    bool failed = r == NULL || r->status >= 500;
    int64_t now = gw_now_ms();
    size_t n;

    if (r != NULL && r->status == 304 && c->stale != NULL) {
        const struct gw_cache_entry *s = c->stale;
        if (has_freshness(r))
            gw_cache_policy_parse(s->status, r->headers, r->nheaders, false,
                                  wall_s(), d, &pol);
        else
            gw_cache_policy_parse(s->status, s->headers, s->nheaders, false,
                                  wall_s(), d, &pol);
        keep = c->stale;
        gw_cache_entry_retain(keep);
        c->cache_status = CS_REVALIDATED;
        metrics_inc(c->gw->m_cache[GW_CR_REVALIDATED]);
    } else if (r != NULL && !failed) {
        gw_cache_policy_parse(r->status, r->headers, r->nheaders, false,
                              wall_s(), d, &pol);
        if (pol.storable)
            keep = gw_cache_entry_new(r->status, r->headers, r->nheaders,
                                      r->body, r->body_len);
        c->cache_status = keep == NULL       ? CS_MISS
                          : c->stale != NULL ? CS_REFETCHED
                                             : CS_STORED;
    }

    pthread_mutex_lock(&c->shard->lock);
    bool use_stale = failed && gw_cache_usable_on_error(c->stale, now);
    int64_t stale_age_s = use_stale ? gw_cache_age_s(c->stale, now) : 0;
    n = gw_cache_fill_done(c->shard->cache, c->fill, keep, &pol, now, waiters);
    pthread_mutex_unlock(&c->shard->lock);
    c->fill = NULL;

    if (use_stale) {
        c->serve = c->stale;
        c->stale = NULL;
        c->serve_age_s = stale_age_s;
        c->cache_status = CS_SIE;
        metrics_add(c->gw->m_cache[GW_CR_STALE], 1 + n);
    } else if (keep != NULL) {
        c->serve = keep; /* the call's reference */
        keep = NULL;
    }
    waiters_release(c->gw, waiters, n, c->serve, c->serve_age_s,
                    c->serve == NULL ? CS_MISS
                    : use_stale      ? CS_SIE
                                     : CS_COALESCED);
    gw_cache_entry_release(keep);
}

/* A write that passed through a route with "purge" ends those answers. */
static void purge_after_write(struct gw_call *c)
{
    const struct gw_route *r = c->route;
    char path[GW_CACHE_KEY_MAX + 1],
        prefix[GW_ROUTE_TEXT_MAX + GW_CACHE_KEY_MAX];
    size_t len = strcspn(c->target, "?"), removed = 0;

    if (len > GW_CACHE_KEY_MAX)
        return;
    memcpy(path, c->target, len);
    path[len] = '\0';
    for (size_t k = 0; k < r->npurges; k++)
        if (gw_route_expand(r, path, r->purge[k], prefix, sizeof(prefix)))
            removed += gw_cache_purge_all(c->gw, prefix, strlen(prefix));
    log_debug("gateway", "cache_purged path=\"%s\" removed=%zu", path, removed);
}

/* Answers (or, detached, just ends) the call and frees it. */
static void finish(struct gw_call *c)
{
    if (c->fill != NULL)
        cache_end(c);
    if (c->route->npurges > 0 && c->gw->cache_on && c->resp != NULL &&
        c->resp->status >= 200 && c->resp->status < 300 &&
        strcmp(c->method, "GET") != 0)
        purge_after_write(c);
    if (c->detached) {
        http_server_release(c->gw->server);
        call_free(c);
        return;
    }
    http_async_post(c->async, answer, c);
}

static void finish_problem(struct gw_call *c, int status, const char *slug,
                           const char *title, int retry_after_s,
                           const char *detail)
{
    c->resp = NULL;
    c->status = status;
    c->slug = slug;
    c->title = title;
    c->retry_after_s = retry_after_s;
    c->detail = detail;
    finish(c);
}

/* --- attempts ------------------------------------------------------------- */

static enum gw_outcome outcome_of(enum http_upstream_result result, int status)
{
    switch (result) {
    case HTTP_UPSTREAM_OK:
        if (status < 200)
            return GW_OUT_1XX;
        return status < 300   ? GW_OUT_2XX
               : status < 400 ? GW_OUT_3XX
               : status < 500 ? GW_OUT_4XX
                              : GW_OUT_5XX;
    case HTTP_UPSTREAM_CONNECT: return GW_OUT_CONNECT;
    case HTTP_UPSTREAM_TIMEOUT: return GW_OUT_TIMEOUT;
    case HTTP_UPSTREAM_TOOBIG: return GW_OUT_TOOBIG;
    case HTTP_UPSTREAM_IO: break;
    }
    return GW_OUT_IO;
}

static bool should_retry(const struct gw_call *c,
                         enum http_upstream_result result, int status,
                         bool first_byte)
{
    if (!c->retryable || c->attempts >= GW_ATTEMPTS_MAX)
        return false;
    if (c->deadline_ms - gw_now_ms() <= 0)
        return false;
    switch (result) {
    case HTTP_UPSTREAM_OK: return gw_retry_status_ok(status);
    case HTTP_UPSTREAM_CONNECT: return true;
    /* Nothing of an answer arrived: the request may be sent again.  An
     * instance killed mid-request breaks the connection this way. */
    case HTTP_UPSTREAM_TIMEOUT:
    case HTTP_UPSTREAM_IO: return !first_byte;
    case HTTP_UPSTREAM_TOOBIG: break;
    }
    return false;
}

static void on_backoff(void *arg)
{
    attempt(arg);
}

/*
 * Takes a slot of the pool's retry budget and sends the call again after
 * a backoff.  false when the budget is spent: the caller answers.
 */
static bool retry_start(struct gw_call *c)
{
    int64_t delay;

    if (!gw_retry_budget_retry_begin(&c->pool->budget)) {
        metrics_inc(c->pool->m_budget_exhausted);
        return false;
    }
    c->in_retry = true;
    c->inst = NULL;
    metrics_inc(c->pool->m_retries);
    delay = gw_retry_backoff_ms(c->attempts, GW_RETRY_BACKOFF_BASE_MS,
                                GW_RETRY_BACKOFF_CAP_MS, c->rng);
    /* Without a timer (out of memory) the retry goes at once. */
    if (http_timer_start(c->gw->server, c->thread, (int)delay, on_backoff, c) ==
        NULL)
        attempt(c);
    return true;
}

static void on_done(void *arg, enum http_upstream_result result,
                    const struct http_upstream_response *resp, bool first_byte)
{
    struct gw_call *c = arg;
    int64_t now = gw_now_ms();
    int status = result == HTTP_UPSTREAM_OK ? resp->status : 0;
    /* An answer too large is the route's limit, not the upstream's fault. */
    bool breaker_failed =
        (result != HTTP_UPSTREAM_OK && result != HTTP_UPSTREAM_TOOBIG) ||
        status >= 500;
    bool outlier_failed = result == HTTP_UPSTREAM_CONNECT || status >= 500;
    struct gw_instance *inst = c->inst;

    /* The instance stays referenced until the answer is out (X-Upstream). */
    gw_instance_retain(inst);
    gw_pool_done(c->pool, inst, &c->ticket, now, outcome_of(result, status),
                 breaker_failed, outlier_failed, now - c->sent_ms);
    if (c->in_retry) {
        gw_retry_budget_retry_end(&c->pool->budget);
        c->in_retry = false;
    }

    if (should_retry(c, result, status, first_byte) && retry_start(c)) {
        gw_instance_release(inst);
        return;
    }

    switch (result) {
    case HTTP_UPSTREAM_OK:
        c->resp = resp;
        finish(c);
        break;
    case HTTP_UPSTREAM_TIMEOUT:
        finish_problem(c, 504, "upstream-timeout", "Gateway timeout", 1,
                       "the upstream service did not answer in time");
        break;
    case HTTP_UPSTREAM_TOOBIG:
        finish_problem(c, 502, "bad-gateway", "Bad gateway", 0,
                       "the upstream service's answer is too large");
        break;
    case HTTP_UPSTREAM_CONNECT:
    case HTTP_UPSTREAM_IO:
        finish_problem(c, 502, "bad-gateway", "Bad gateway", 1,
                       "the upstream service could not be reached or "
                       "broke off its answer");
        break;
    }
    gw_instance_release(inst);
}

static int min_int(int64_t a, int64_t b)
{
    return (int)(a < b ? a : b);
}

/* Picks an instance and sends; or answers when none can take the call. */
static void attempt(struct gw_call *c)
{
    int64_t now = gw_now_ms(), left = c->deadline_ms - now, retry_ms = 0;
    struct gw_instance *inst = NULL;
    enum gw_pick_result res;
    size_t added = 3;

    if (left <= 0) {
        finish_problem(c, 504, "upstream-timeout", "Gateway timeout", 1,
                       "the route's time budget ran out");
        return;
    }
    res = gw_pool_pick(c->pool, now, c->has_key, c->key_hash, c->tried,
                       (size_t)c->attempts, &inst, &c->ticket, &retry_ms);
    if (res != GW_PICK_OK) {
        int after = (int)((retry_ms + 999) / 1000);
        finish_problem(c, 503, "upstream-unavailable", "Service unavailable",
                       after < 1 ? 1 : after,
                       res == GW_PICK_OPEN
                           ? "the upstream service is failing; its circuit "
                             "breaker is open"
                           : "no instance of the upstream service is "
                             "available");
        return;
    }
    c->inst = inst;
    c->tried[c->attempts++] = inst;

    struct http_header_kv *h = &c->headers[c->nheaders];
    size_t deadline_len = format_i64(c->deadline, left);
    h[0] = (struct http_header_kv){"X-Request-Id", 12, c->request_id,
                                   strlen(c->request_id)};
    h[1] =
        (struct http_header_kv){"X-Forwarded-For", 15, c->xff, strlen(c->xff)};
    h[2] = (struct http_header_kv){"X-Deadline-Ms", 13, c->deadline,
                                   deadline_len};
    if (c->customer[0] != '\0')
        h[added++] = (struct http_header_kv){"X-Customer-Id", 13, c->customer,
                                             strlen(c->customer)};
    /* Services know one admin token, the one the gateway shares with them;
     * an admin signed in with an access token is vouched for with it. */
    if (c->admin && c->gw->upstream_admin_auth[0] != '\0')
        h[added++] = (struct http_header_kv){
            "Authorization", 13, c->gw->upstream_admin_auth,
            strlen(c->gw->upstream_admin_auth)};
    if (c->gw->gateway_secret[0] != '\0')
        h[added++] = (struct http_header_kv){"X-Gateway-Secret", 16,
                                             c->gw->gateway_secret,
                                             strlen(c->gw->gateway_secret)};
    if (c->stale != NULL && c->stale->etag[0] != '\0')
        h[added++] = (struct http_header_kv){
            "If-None-Match", 13, c->stale->etag, strlen(c->stale->etag)};
    struct http_upstream_request rq = {
        .method = c->method,
        .target = c->target,
        .headers = c->headers,
        .nheaders = c->nheaders + added,
        .body = c->body,
        .body_len = c->body_len,
        .connect_timeout_ms = min_int(c->route->connect_timeout_ms, left),
        .first_byte_timeout_ms = min_int(c->route->first_byte_timeout_ms, left),
        .total_timeout_ms = (int)left,
        .max_response_bytes = c->gw->max_response_bytes,
    };
    c->sent_ms = now;
    if (http_upstream_send(inst->up, c->thread, &rq, on_done, c) != NULL)
        return;

    /* Out of memory or shutting down: nothing went out, nobody failed. */
    gw_pool_done(c->pool, inst, &c->ticket, now, GW_OUT_IO, false, false, 0);
    c->inst = NULL;
    finish_problem(c, 503, "unavailable", "Service unavailable", 1,
                   "the gateway cannot send requests now");
}

/* --- rate limits ------------------------------------------------------------
 */

/* The key a policy counts a request under: its identity, else its
 * address, so that coming without one does not escape the limit. */
static const char *limit_key(struct http_req *req, enum gw_limit_key kind,
                             const struct gw_ident *id)
{
    if ((kind == GW_LIMIT_BY_CUSTOMER && id->kind != GW_IDENT_PARTNER &&
         id->customer[0] != '\0') ||
        (kind == GW_LIMIT_BY_API_KEY && id->kind == GW_IDENT_PARTNER))
        return id->customer; /* "key-<id>" for a partner */
    return http_req_peer(req);
}

/*
 * Counts the request against its route's policy and sets the RateLimit
 * and RateLimit-Policy headers.  Returns false after answering 429 when
 * the policy refuses it and is not a dry run.
 */
static bool limit_pass(struct http_req *req, struct gateway *gw,
                       const struct gw_route *r, const struct gw_ident *id)
{
    const struct gw_limit_spec *ls = &gw->spec->limits[r->limit];
    struct gw_limit_state *st = &gw->limits[r->limit];
    const char *key = limit_key(req, ls->key, id);
    struct gw_limit_result res;
    char v[GW_POOL_NAME_MAX + 64];

    pthread_mutex_lock(&st->lock);
    gw_limiter_take(st->limiter, key, strlen(key), gw_now_ms(), &res);
    pthread_mutex_unlock(&st->lock);

    http_set_header(req, "RateLimit-Policy", st->policy_header);
    snprintf(v, sizeof(v), "\"%s\";r=%lld;t=%lld", ls->name,
             (long long)res.remaining,
             (long long)((res.reset_ms + 999) / 1000));
    http_set_header(req, "RateLimit", v);
    if (res.allowed)
        return true;
    if (ls->dry_run) {
        metrics_inc(st->m_dry_run);
        log_debug("gateway", "rate_limited_dry_run policy=%s", ls->name);
        return true;
    }
    metrics_inc(st->m_limited);
    snprintf(v, sizeof(v), "%lld",
             (long long)((res.retry_after_ms + 999) / 1000));
    http_set_header(req, "Retry-After", v);
    http_respond_problem(req, 429, "rate-limited", "Too many requests",
                         "policy %s allows %lld requests per %s, bursts of "
                         "%lld; retry in %s s",
                         ls->name, (long long)ls->policy.rate,
                         ls->policy.period_ms == 1000 ? "second" : "minute",
                         (long long)ls->policy.burst, v);
    return false;
}

/* --- entry ---------------------------------------------------------------- */

/* Holds and checkouts first, then signed-in customers, then browsing. */
static enum gw_shed_class shed_class(const struct gw_route *r,
                                     const struct gw_ident *id)
{
    if (r->critical)
        return GW_SHED_CRITICAL;
    return id->kind == GW_IDENT_ANONYMOUS ? GW_SHED_ANONYMOUS : GW_SHED_SIGNED;
}

/*
 * A new call for req, its request copied, counted in its pool's retry
 * budget.  ERR_OK with *out, ERR_NOMEM, or ERR_TOOBIG (too many header
 * fields); nothing is answered here.
 */
static int call_make(struct http_req *req, struct gateway *gw,
                     const struct gw_route *r, const char *key, size_t key_len,
                     struct gw_call **out)
{
    struct gw_call *c = malloc(sizeof(*c));
    struct gw_thread *t = http_req_thread_data(req);
    int rc;

    /* t is NULL when its thread_start ran out of memory. */
    if (c == NULL || t == NULL) {
        free(c);
        return ERR_NOMEM;
    }
    /* The header array and X-Forwarded-For, 3 kB, are filled as used. */
    memset(c, 0, offsetof(struct gw_call, headers));
    c->gw = gw;
    c->route = r;
    c->pool = &gw->pools[r->pool];
    c->thread = http_req_thread_index(req);
    c->rng = &t->rng;
    c->has_key = key != NULL;
    c->key_hash = key != NULL ? gw_key_hash(key, key_len) : 0;
    c->deadline_ms = gw_now_ms() + r->total_timeout_ms;
    /* A client that gives up sooner shortens the budget (same clock). */
    int64_t client = http_req_deadline_ms(req);
    if (client != 0 && client < c->deadline_ms)
        c->deadline_ms = client;
    gw_retry_budget_request_begin(&c->pool->budget);

    rc = call_copy(c, req);
    if (rc != ERR_OK) {
        call_free(c);
        return rc;
    }
    c->retryable = gw_retry_method_ok(
        c->method, http_req_header(req, "idempotency-key") != NULL);
    *out = c;
    return ERR_OK;
}

static void call_refused(struct http_req *req, int rc)
{
    if (rc == ERR_TOOBIG)
        http_respond_problem(
            req, 431, "headers-too-large", "Request header fields too large",
            "at most %d header fields are accepted", GW_HEADERS_MAX);
    else
        http_respond_unavailable(req, 1, "the gateway is out of memory");
}

/*
 * Makes the background refresh of a stale entry: a copy of req with no
 * client, which a graceful shutdown waits for (http_server_hold).  Takes
 * the reference to stale.  Returns the call, to start with attempt()
 * once req is answered; or NULL when no call can be made, after ending
 * the fill at once (its waiters go upstream alone).
 */
static struct gw_call *
refresh_make(struct http_req *req, struct gateway *gw, const struct gw_route *r,
             struct gw_cache_shard *shard, struct gw_cache_fill *fill,
             struct gw_cache_entry *stale, const char *key, size_t key_len)
{
    void *waiters[GW_CACHE_WAITERS_MAX];
    struct gw_call *c;
    size_t n;

    if (call_make(req, gw, r, key, key_len, &c) == ERR_OK) {
        c->detached = true;
        c->shard = shard;
        c->fill = fill;
        c->stale = stale;
        conditions_strip(c);
        http_server_hold(gw->server);
        return c;
    }
    pthread_mutex_lock(&shard->lock);
    n = gw_cache_fill_done(shard->cache, fill, NULL, NULL, gw_now_ms(),
                           waiters);
    pthread_mutex_unlock(&shard->lock);
    waiters_release(gw, waiters, n, NULL, 0, NULL);
    gw_cache_entry_release(stale);
    return NULL;
}

/* The cache key of req, path and query, into out; false if too long. */
static bool cache_key(struct http_req *req, char *out, size_t cap, size_t *len)
{
    const char *path = http_req_path(req);
    const char *query = strchr(http_req_target(req), '?');
    int n = snprintf(out, cap, "%s%s", path, query != NULL ? query : "");

    if (n < 0 || (size_t)n >= cap)
        return false;
    *len = (size_t)n;
    return true;
}

/*
 * Answers req from the cache when an entry can (fresh, or stale within
 * stale-while-revalidate, starting its refresh).  false when a call must
 * be made; nothing changed then.
 */
static bool cache_answer(struct http_req *req, struct gateway *gw,
                         const struct gw_route *r, const char *ckey,
                         size_t clen, bool auth, const char *key,
                         size_t key_len)
{
    struct gw_cache_shard *shard = shard_of(gw, ckey, clen);
    struct gw_call *refresh = NULL;
    struct gw_cache_look look;

    pthread_mutex_lock(&shard->lock);
    gw_cache_lookup(shard->cache, ckey, clen, gw_now_ms(), auth, NULL, &look);
    pthread_mutex_unlock(&shard->lock);
    if (look.verdict != GW_CACHE_HIT && look.verdict != GW_CACHE_STALE)
        return false;

    metrics_inc(
        gw->m_cache[look.verdict == GW_CACHE_HIT ? GW_CR_HIT : GW_CR_STALE]);
    /* The refresh copies req before it is answered, and goes after. */
    if (look.fill != NULL) {
        gw_cache_entry_retain(look.entry);
        refresh = refresh_make(req, gw, r, shard, look.fill, look.entry, key,
                               key_len);
    }
    respond_entry(req, look.entry, look.age_s,
                  look.verdict == GW_CACHE_HIT ? CS_HIT : CS_STALE,
                  http_req_header(req, "if-none-match"));
    gw_cache_entry_release(look.entry);
    if (refresh != NULL)
        attempt(refresh);
    return true;
}

/*
 * A miss of a cached route, with its call deferred already: the call
 * becomes the key's fill, waits on another's, or goes alone.
 */
static void cache_miss(struct gw_call *c, const char *ckey, size_t clen,
                       bool auth)
{
    struct gw_cache_look look;

    c->shard = shard_of(c->gw, ckey, clen);
    pthread_mutex_lock(&c->shard->lock);
    gw_cache_lookup(c->shard->cache, ckey, clen, gw_now_ms(), auth, c, &look);
    pthread_mutex_unlock(&c->shard->lock);

    switch (look.verdict) {
    case GW_CACHE_WAIT:
        /* The filler answers it; from here on c belongs to the fill. */
        metrics_inc(c->gw->m_cache[GW_CR_COALESCED]);
        return;
    case GW_CACHE_HIT:
    case GW_CACHE_STALE:
        /* Filled between the two looks. */
        metrics_inc(c->gw->m_cache[GW_CR_HIT]);
        c->serve = look.entry;
        c->serve_age_s = look.age_s;
        c->cache_status = CS_HIT;
        if (look.fill != NULL) {
            /* Rare: the entry came and went stale between the two looks.
             * The next request of the key starts the refresh. */
            void *waiters[GW_CACHE_WAITERS_MAX];
            size_t n;
            pthread_mutex_lock(&c->shard->lock);
            n = gw_cache_fill_done(c->shard->cache, look.fill, NULL, NULL,
                                   gw_now_ms(), waiters);
            pthread_mutex_unlock(&c->shard->lock);
            waiters_release(c->gw, waiters, n, NULL, 0, NULL);
        }
        http_async_post(c->async, answer, c);
        return;
    case GW_CACHE_FILL:
        metrics_inc(c->gw->m_cache[GW_CR_MISS]);
        c->fill = look.fill;
        c->stale = look.entry;
        conditions_strip(c);
        break;
    case GW_CACHE_BYPASS:
    case GW_CACHE_MISS:
        metrics_inc(c->gw->m_cache[GW_CR_BYPASS]);
        c->cache_status = CS_BYPASS;
        c->shard = NULL;
        break;
    }
    attempt(c);
}

void gw_proxy(struct http_req *req, struct gateway *gw,
              const struct gw_route *r, const char *key, size_t key_len,
              const struct gw_ident *id)
{
    size_t ri = (size_t)(r - gw->spec->routes), clen = 0;
    bool cached =
        gw->cache_on && r->cache && strcmp(http_req_method(req), "GET") == 0;
    /* RFC 9111 3.5; and an answer for a known caller may be its own. */
    bool auth = id->kind != GW_IDENT_ANONYMOUS ||
                http_req_header(req, "authorization") != NULL;
    enum gw_shed_class cls;
    char ckey[GW_CACHE_KEY_MAX + 1];
    struct gw_call *c;
    int rc;

    if (r->limit >= 0 && !limit_pass(req, gw, r, id))
        return;
    if (cached && !cache_key(req, ckey, sizeof(ckey), &clen))
        cached = false;
    /* A hit costs no upstream work: it is served even past the bounds. */
    if (cached && cache_answer(req, gw, r, ckey, clen, auth, key, key_len))
        return;
    cls = shed_class(r, id);
    if (!gw_shed_enter2(&gw->shed,
                        r->max_in_flight > 0 ? &gw->route_shed[ri] : NULL,
                        cls)) {
        metrics_inc(gw->m_shed[cls]);
        http_set_header(req, "Retry-After", "1");
        problem_quiet(req, 503, "unavailable", "Service unavailable",
                      "the gateway is shedding load; try again shortly");
        return;
    }

    rc = call_make(req, gw, r, key, key_len, &c);
    if (rc != ERR_OK) {
        gw_shed_leave(&gw->shed);
        if (r->max_in_flight > 0)
            gw_shed_leave(&gw->route_shed[ri]);
        call_refused(req, rc);
        return;
    }
    c->shed_held = true;
    c->route_shed = r->max_in_flight > 0 ? &gw->route_shed[ri] : NULL;
    copy_str(c->customer, sizeof(c->customer), id->customer);
    c->admin = id->kind == GW_IDENT_ADMIN;
    c->async = http_req_defer(req);
    if (cached)
        cache_miss(c, ckey, clen, auth);
    else
        attempt(c);
}
