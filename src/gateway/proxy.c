/*
 * proxy.c - the request path: pick an instance, forward, retry, answer.
 *
 * A proxied request is deferred at once and lives in a struct gw_call on
 * its loop thread.  Everything needed to send it again (method, target,
 * headers, body) is copied into the call, because the client may leave
 * while a call is in flight and take the request with it.  The upstream
 * call, the backoff timer and the answer all run on that same thread.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/log.h"
#include "gateway/internal.h"

#define GW_ATTEMPTS_MAX (1 + GW_RETRY_MAX)
/* X-Request-Id, X-Forwarded-For and X-Deadline-Ms. */
#define GW_ADDED_HEADERS 3
#define GW_XFF_MAX       512

struct gw_call {
    struct gateway *gw;
    const struct gw_route *route;
    struct gw_pool *pool;
    struct http_async *async;
    int thread;
    struct rand *rng; /* the loop thread's */

    /* The request, copied. */
    char method[16];
    char *target;
    struct http_header_kv headers[GW_HEADERS_MAX + GW_ADDED_HEADERS];
    size_t nheaders; /* the client's, without the added ones */
    const char *body;
    size_t body_len;
    char request_id[HTTP_REQUEST_ID_MAX + 1];
    char xff[GW_XFF_MAX];
    char deadline[24];
    char *arena; /* owns target, header text and body */

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

    /* The answer, valid while it is given. */
    const struct http_upstream_response *resp;
    int status;
    const char *slug, *title, *detail;
    int retry_after_s;
};

static void call_free(struct gw_call *c)
{
    /* A retry that found no instance ends here, still counted. */
    if (c->in_retry)
        gw_retry_budget_retry_end(&c->pool->budget);
    gw_retry_budget_request_end(&c->pool->budget);
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
    snprintf(c->method, sizeof(c->method), "%s", http_req_method(req));
    snprintf(c->request_id, sizeof(c->request_id), "%s", http_req_id(req));

    /* The normalized path goes upstream, so what was routed is what the
     * service sees ("/v1/../internal/x" cannot slip past as text). */
    total = strlen(path) + (query != NULL ? strlen(query) : 0) + 1 + body_len;
    for (size_t k = 0; k < nin; k++)
        total += in[k].name_len + in[k].value_len + 2;
    c->arena = malloc(total + 1);
    if (c->arena == NULL)
        return ERR_NOMEM;
    at = c->arena;

    c->target = at;
    at += snprintf(at, total + 1, "%s%s", path, query != NULL ? query : "");
    at++;

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
    }
    c->body = body_len > 0 ? arena_put(&at, body, body_len) : NULL;
    c->body_len = body_len;

    const char *peer = http_req_peer(req);
    xff_add(c, &xff_len, peer, strlen(peer));
    return ERR_OK;
}

/* --- answering ------------------------------------------------------------ */

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
    http_respond_proxied(req, r->status, hs, n, r->body, r->body_len);
}

/*
 * The problem document of a failed call, written without the HTTP layer's
 * warning per 5xx: during an outage every request fails the same way, and
 * the gateway reports that once, as a change of state, and in counters.
 */
static void problem_quiet(struct http_req *req, const struct gw_call *c)
{
    char type[64], *text;
    json_t *doc;

    snprintf(type, sizeof(type), "/problems/%s", c->slug);
    doc = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "type", type, "title",
                    c->title, "status", c->status, "detail", c->detail,
                    "instance", http_req_path(req), "request_id",
                    http_req_id(req));
    text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL) {
        http_respond_problem(req, c->status, c->slug, c->title, "%s",
                             c->detail);
        return;
    }
    http_respond_bytes(req, c->status, "application/problem+json", text,
                       strlen(text));
    free(text);
}

static void answer(struct http_req *req, void *arg)
{
    struct gw_call *c = arg;
    char v[16];

    if (req == NULL)
        return; /* the client left */
    if (c->resp != NULL) {
        answer_proxied(req, c);
        return;
    }
    if (c->retry_after_s > 0) {
        snprintf(v, sizeof(v), "%d", c->retry_after_s);
        http_set_header(req, "Retry-After", v);
    }
    problem_quiet(req, c);
}

/* Answers and frees the call. */
static void finish(struct gw_call *c)
{
    http_async_post(c->async, answer, c);
    call_free(c);
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

static void attempt(struct gw_call *c);

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
    snprintf(c->deadline, sizeof(c->deadline), "%lld", (long long)left);
    h[0] = (struct http_header_kv){"X-Request-Id", 12, c->request_id,
                                   strlen(c->request_id)};
    h[1] =
        (struct http_header_kv){"X-Forwarded-For", 15, c->xff, strlen(c->xff)};
    h[2] = (struct http_header_kv){"X-Deadline-Ms", 13, c->deadline,
                                   strlen(c->deadline)};
    struct http_upstream_request rq = {
        .method = c->method,
        .target = c->target,
        .headers = c->headers,
        .nheaders = c->nheaders + GW_ADDED_HEADERS,
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

/* --- entry ---------------------------------------------------------------- */

void gw_proxy(struct http_req *req, struct gateway *gw,
              const struct gw_route *r, const char *key, size_t key_len)
{
    struct gw_call *c = calloc(1, sizeof(*c));
    struct gw_thread *t;
    int rc;

    if (c == NULL) {
        http_respond_unavailable(req, 1, "the gateway is out of memory");
        return;
    }
    c->gw = gw;
    c->route = r;
    c->pool = &gw->pools[r->pool];
    c->thread = http_req_thread_index(req);
    t = http_req_thread_data(req);
    if (t == NULL) { /* its thread_start ran out of memory */
        free(c);
        http_respond_unavailable(req, 1, "the gateway is out of memory");
        return;
    }
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
        if (rc == ERR_TOOBIG)
            http_respond_problem(req, 431, "headers-too-large",
                                 "Request header fields too large",
                                 "at most %d header fields are accepted",
                                 GW_HEADERS_MAX);
        else
            http_respond_unavailable(req, 1, "the gateway is out of memory");
        return;
    }
    c->retryable = gw_retry_method_ok(
        c->method, http_req_header(req, "idempotency-key") != NULL);
    c->async = http_req_defer(req);
    attempt(c);
}
