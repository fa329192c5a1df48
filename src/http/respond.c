/*
 * respond.c - request accessors and every way of answering a request.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "base/log.h"
#include "http/internal.h"

/* Largest serialized problem detail. */
#define HTTP_DETAIL_MAX 512

const char *http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 207: return "Multi-Status";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

void *http_req_thread_data(struct http_req *req)
{
    return req->thread->data;
}

const char *http_req_method(struct http_req *req)
{
    return req->route != NULL ? req->route->method : "";
}

const char *http_req_path(struct http_req *req)
{
    return req->path;
}

const char *http_req_target(struct http_req *req)
{
    h2o_iovec_t p = req->h2o->path;
    char *copy = h2o_mem_alloc_pool(&req->h2o->pool, p.len + 1);

    memcpy(copy, p.base, p.len);
    copy[p.len] = '\0';
    return copy;
}

const char *http_req_id(struct http_req *req)
{
    return req->request_id;
}

int64_t http_req_start_ms(struct http_req *req)
{
    return req->start_ms;
}

bool http_req_answered(struct http_req *req)
{
    return req->answered || req->deferred;
}

const char *http_req_param(struct http_req *req, const char *name)
{
    const struct http_route_compiled *r = req->route;

    for (size_t i = 0; r != NULL && i < r->nsegs; i++) {
        if (r->segs[i] == NULL && strcmp(r->param_names[i], name) == 0)
            return req->params[i];
    }
    return NULL;
}

bool http_req_param_id(struct http_req *req, const char *name, int64_t *out)
{
    const char *s = http_req_param(req, name);
    int64_t v = 0;
    size_t n = s != NULL ? strlen(s) : 0;

    /* Ids are 1..10^18 in decimal; anything else cannot name a resource. */
    if (n == 0 || n > 18 || s[0] == '0')
        goto out_not_found;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            goto out_not_found;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;

out_not_found:
    http_respond_problem(req, 404, "not-found", "Not found",
                         "no resource has the id \"%.40s\"", s ? s : "");
    return false;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes %XX and '+' into out (cap bytes); false if malformed or long. */
static bool query_decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= len)
                return false;
            int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0' || n + 1 >= cap)
            return false;
        out[n++] = c;
    }
    out[n] = '\0';
    return true;
}

const char *http_req_query(struct http_req *req, const char *name, bool *bad)
{
    h2o_req_t *h = req->h2o;
    size_t name_len = strlen(name);

    if (h->query_at == SIZE_MAX)
        return NULL;
    const char *p = h->path.base + h->query_at + 1;
    const char *end = h->path.base + h->path.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pair_end = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        const char *key_end = eq != NULL ? eq : pair_end;

        if ((size_t)(key_end - p) == name_len &&
            memcmp(p, name, name_len) == 0) {
            const char *v = eq != NULL ? eq + 1 : pair_end;
            char *out = h2o_mem_alloc_pool(&h->pool, HTTP_QUERY_VALUE_MAX);
            if (!query_decode(v, (size_t)(pair_end - v), out,
                              HTTP_QUERY_VALUE_MAX)) {
                *bad = true;
                http_respond_problem(req, 400, "invalid-query",
                                     "Invalid query parameter",
                                     "query parameter %s is not valid "
                                     "percent-encoding or is too long",
                                     name);
                return NULL;
            }
            return out;
        }
        p = pair_end + 1;
    }
    return NULL;
}

const char *http_req_header(struct http_req *req, const char *name)
{
    h2o_req_t *h = req->h2o;
    ssize_t i = h2o_find_header_by_str(&h->headers, name, strlen(name), -1);

    if (i < 0)
        return NULL;
    h2o_iovec_t v = h->headers.entries[i].value;
    char *copy = h2o_mem_alloc_pool(&h->pool, v.len + 1);
    memcpy(copy, v.base, v.len);
    copy[v.len] = '\0';
    return copy;
}

const char *http_req_body(struct http_req *req, size_t *len)
{
    *len = req->h2o->entity.base != NULL ? req->h2o->entity.len : 0;
    return *len > 0 ? req->h2o->entity.base : "";
}

static bool is_json_type(const char *ct)
{
    static const char json[] = "application/json";
    size_t n = sizeof(json) - 1;

    if (ct == NULL || strncasecmp(ct, json, n) != 0)
        return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

json_t *http_req_json(struct http_req *req)
{
    json_error_t err;
    size_t len;
    const char *body = http_req_body(req, &len);

    if (req->json != NULL)
        return req->json;
    if (!is_json_type(http_req_header(req, "content-type"))) {
        http_respond_problem(req, 415, "unsupported-media-type",
                             "Unsupported media type",
                             "the body must be application/json");
        return NULL;
    }
    json_t *v = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (v == NULL) {
        http_respond_problem(req, 400, "malformed-json", "Malformed JSON",
                             "line %d column %d: %s", err.line, err.column,
                             err.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        http_respond_problem(req, 400, "malformed-json", "Malformed JSON",
                             "the body must be a JSON object");
        return NULL;
    }
    req->json = v;
    return v;
}

void http_set_header(struct http_req *req, const char *name, const char *value)
{
    h2o_req_t *h = req->h2o;
    size_t nlen = strlen(name), vlen = strlen(value);
    char *n = h2o_mem_alloc_pool(&h->pool, nlen + 1);
    char *v = h2o_mem_alloc_pool(&h->pool, vlen + 1);

    for (size_t i = 0; i <= nlen; i++)
        n[i] = (char)tolower((unsigned char)name[i]);
    memcpy(v, value, vlen + 1);
    h2o_add_header_by_str(&h->pool, &h->res.headers, n, nlen, 1, name, v, vlen);
}

static h2o_generator_t static_generator = {NULL, NULL};

void http_respond_iovec(struct http_req *req, int status,
                        const char *content_type, h2o_iovec_t body)
{
    h2o_req_t *h = req->h2o;

    assert(!req->answered && "a request answered twice");
    req->answered = true;
    req->status = status;
    h->res.status = status;
    h->res.reason = http_reason(status);
    if (content_type != NULL)
        h2o_add_header(&h->pool, &h->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       content_type, strlen(content_type));
    h->res.content_length = body.len;
    h2o_start_response(h, &static_generator);
    /* HEAD: the headers of the GET answer, Content-Length included, and
     * no body (h2o 2.2 would send it). */
    bool head = h2o_memis(h->method.base, h->method.len, H2O_STRLIT("HEAD"));
    h2o_send(h, &body, body.len > 0 && !head ? 1 : 0, H2O_SEND_STATE_FINAL);
}

void http_respond_not_modified(struct http_req *req)
{
    h2o_req_t *h = req->h2o;

    assert(!req->answered && "a request answered twice");
    req->answered = true;
    req->status = 304;
    h->res.status = 304;
    h->res.reason = http_reason(304);
    /* No Content-Length: a 304 may only repeat the 200's length. */
    h->res.content_length = SIZE_MAX;
    h2o_start_response(h, &static_generator);
    h2o_send(h, NULL, 0, H2O_SEND_STATE_FINAL);
}

void http_respond_bytes(struct http_req *req, int status,
                        const char *content_type, const void *body, size_t len)
{
    h2o_iovec_t v = h2o_strdup(&req->h2o->pool, body, len);

    http_respond_iovec(req, status, content_type, v);
}

/* Serializes into the request's pool; the jansson buffer is freed at once. */
static h2o_iovec_t json_to_pool(struct http_req *req, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    h2o_iovec_t v = h2o_iovec_init(NULL, 0);

    assert(text != NULL && "json_dumps failed: out of memory");
    v = h2o_strdup(&req->h2o->pool, text, strlen(text));
    free(text);
    return v;
}

void http_respond_json(struct http_req *req, int status, json_t *body)
{
    h2o_iovec_t v = json_to_pool(req, body);

    json_decref(body);
    http_respond_iovec(req, status, "application/json", v);
}

/* 64-bit hash of the body for ETags: collisions only risk a stale 304. */
static uint64_t body_hash(const char *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;

    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    while (n-- > 0)
        h = (h ^ (unsigned char)*p++) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 33);
}

static void respond_etagged(struct http_req *req, h2o_iovec_t v,
                            const char *etag, const char *cache_control);

/* If-None-Match: a list of entity tags, weak or strong, or "*". */
static bool etag_matches(const char *inm, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = inm;

    while (*p != '\0') {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (*p == '*')
            return true;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (strncmp(p, etag, elen) == 0 &&
            (p[elen] == '\0' || p[elen] == ',' || p[elen] == ' '))
            return true;
        while (*p != '\0' && *p != ',')
            p++;
    }
    return false;
}

void http_etag_of(const void *body, size_t len, char out[HTTP_ETAG_LEN])
{
    snprintf(out, HTTP_ETAG_LEN, "\"%016llx\"",
             (unsigned long long)body_hash(body, len));
}

void http_respond_cacheable(struct http_req *req, json_t *body,
                            const char *cache_control)
{
    h2o_iovec_t v = json_to_pool(req, body);
    char etag[HTTP_ETAG_LEN];

    json_decref(body);
    http_etag_of(v.base, v.len, etag);
    respond_etagged(req, v, etag, cache_control);
}

void http_respond_etagged(struct http_req *req, const char *body, size_t len,
                          const char *etag, const char *cache_control)
{
    respond_etagged(req, h2o_strdup(&req->h2o->pool, body, len), etag,
                    cache_control);
}

static void respond_etagged(struct http_req *req, h2o_iovec_t v,
                            const char *etag, const char *cache_control)
{
    http_set_header(req, "ETag", etag);
    http_set_header(req, "Cache-Control", cache_control);

    const char *inm = http_req_header(req, "if-none-match");
    if (inm != NULL && etag_matches(inm, etag)) {
        http_respond_not_modified(req);
        return;
    }
    http_respond_iovec(req, 200, "application/json", v);
}

void http_respond_problem_ext(struct http_req *req, int status,
                              const char *slug, const char *title,
                              const char *detail, json_t *ext)
{
    char type[96];
    json_t *doc;

    snprintf(type, sizeof(type), "/problems/%s", slug);
    doc = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "type", type, "title",
                    title, "status", status, "detail", detail, "instance",
                    req->path != NULL ? req->path : "/", "request_id",
                    req->request_id);
    assert(doc != NULL && "json_pack failed: out of memory");
    if (ext != NULL) {
        json_object_update(doc, ext);
        json_decref(ext);
    }
    if (status >= 500)
        log_warn("http", "problem status=%d type=%s id=%s detail=\"%s\"",
                 status, slug, req->request_id, detail);
    h2o_iovec_t v = json_to_pool(req, doc);
    json_decref(doc);
    http_respond_iovec(req, status, "application/problem+json", v);
}

void http_respond_problem(struct http_req *req, int status, const char *slug,
                          const char *title, const char *fmt, ...)
{
    char detail[HTTP_DETAIL_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    http_respond_problem_ext(req, status, slug, title, detail, NULL);
}

void http_respond_unavailable(struct http_req *req, int retry_after_s,
                              const char *detail)
{
    char v[16];

    snprintf(v, sizeof(v), "%d", retry_after_s);
    http_set_header(req, "Retry-After", v);
    http_respond_problem(req, 503, "unavailable", "Service unavailable", "%s",
                         detail);
}

/* --- request headers and peer -------------------------------------------- */

size_t http_req_headers(struct http_req *req, const struct http_header_kv **out)
{
    h2o_req_t *h = req->h2o;

    if (req->headers == NULL) {
        /* h2o keeps Host apart, as the authority: it goes first. */
        bool host = h->authority.base != NULL && h->authority.len > 0;
        size_t n = h->headers.size + (host ? 1 : 0), k = 0;
        struct http_header_kv *kv =
            h2o_mem_alloc_pool(&h->pool, sizeof(*kv) * (n > 0 ? n : 1));
        if (host)
            kv[k++] = (struct http_header_kv){"host", 4, h->authority.base,
                                              h->authority.len};
        for (size_t i = 0; i < h->headers.size; i++) {
            const h2o_header_t *e = &h->headers.entries[i];
            kv[k++] = (struct http_header_kv){e->name->base, e->name->len,
                                              e->value.base, e->value.len};
        }
        req->headers = kv;
        req->nheaders = n;
    }
    *out = req->headers;
    return req->nheaders;
}

/*
 * "a.b.c.d" of an IPv4 address, into out (INET_ADDRSTRLEN bytes): what
 * inet_ntop writes, without the sprintf it goes through, as this runs for
 * every request the gateway forwards (X-Forwarded-For).
 */
static void format_ipv4(const struct in_addr *addr, char *out)
{
    const uint8_t *octet = (const uint8_t *)&addr->s_addr;
    char *p = out;

    for (int i = 0; i < 4; i++) {
        unsigned v = octet[i];
        if (v >= 100)
            *p++ = (char)('0' + v / 100);
        if (v >= 10)
            *p++ = (char)('0' + v / 10 % 10);
        *p++ = (char)('0' + v % 10);
        *p++ = i < 3 ? '.' : '\0';
    }
}

const char *http_req_peer(struct http_req *req)
{
    h2o_conn_t *conn = req->h2o->conn;
    struct sockaddr_storage ss;
    socklen_t len;

    if (req->peer != NULL)
        return req->peer;
    req->peer = h2o_mem_alloc_pool(&req->h2o->pool, INET6_ADDRSTRLEN);
    req->peer[0] = '\0';
    len = conn->callbacks->get_peername(conn, (struct sockaddr *)&ss);
    if (len == 0)
        return req->peer;
    if (ss.ss_family == AF_INET)
        format_ipv4(&((struct sockaddr_in *)&ss)->sin_addr, req->peer);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, req->peer,
                  INET6_ADDRSTRLEN);
    return req->peer;
}

/* --- proxied answers ----------------------------------------------------- */

/* A header name with its length, counted when compiled. */
struct hdr_name {
    const char *text;
    size_t len;
};

/* The initializer of a struct hdr_name for a string literal. */
#define HDR_NAME(lit) lit, sizeof(lit) - 1

static bool kv_name_is(const struct http_header_kv *kv,
                       const struct hdr_name *name)
{
    return kv->name_len == name->len &&
           strncasecmp(kv->name, name->text, name->len) == 0;
}

static const struct hdr_name connection_name = {HDR_NAME("connection")};
static const struct hdr_name content_length_name = {HDR_NAME("content-length")};

/* Whether the comma-separated list holds name as one of its tokens. */
static bool list_has_token(const char *list, size_t len, const char *name,
                           size_t name_len)
{
    size_t i = 0;

    while (i < len) {
        while (i < len && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
            i++;
        size_t start = i;
        while (i < len && list[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (list[end - 1] == ' ' || list[end - 1] == '\t'))
            end--;
        if (end - start == name_len &&
            strncasecmp(list + start, name, name_len) == 0)
            return true;
    }
    return false;
}

/*
 * Whether the upstream's header kv stays behind: hop-by-hop fields, those
 * the server writes itself, and any that a Connection field names.
 * has_connection says whether the answer has a Connection field at all,
 * so that the common answer without one is not scanned again per field.
 */
static bool proxied_drops(const struct http_header_kv *headers, size_t n,
                          bool has_connection, const struct http_header_kv *kv)
{
    static const struct hdr_name dropped[] = {
        {HDR_NAME("connection")},
        {HDR_NAME("keep-alive")},
        {HDR_NAME("proxy-connection")},
        {HDR_NAME("te")},
        {HDR_NAME("trailer")},
        {HDR_NAME("transfer-encoding")},
        {HDR_NAME("upgrade")},
        {HDR_NAME("content-length")},
        {HDR_NAME("date")},
        {HDR_NAME("server")},
        {HDR_NAME("x-request-id")},
    };

    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
        if (kv_name_is(kv, &dropped[i]))
            return true;
    for (size_t i = 0; has_connection && i < n; i++)
        if (kv_name_is(&headers[i], &connection_name) &&
            list_has_token(headers[i].value, headers[i].value_len, kv->name,
                           kv->name_len))
            return true;
    return false;
}

/* The upstream's Content-Length, or 0 when absent or unreadable. */
static size_t announced_length(const struct http_header_kv *headers, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!kv_name_is(&headers[i], &content_length_name))
            continue;
        size_t v = 0;
        if (headers[i].value_len == 0 || headers[i].value_len > 15)
            return 0;
        for (size_t k = 0; k < headers[i].value_len; k++) {
            char c = headers[i].value[k];
            if (c < '0' || c > '9')
                return 0;
            v = v * 10 + (size_t)(c - '0');
        }
        return v;
    }
    return 0;
}

void http_respond_proxied(struct http_req *req, int status,
                          const struct http_header_kv *headers, size_t n,
                          const void *body, size_t len)
{
    h2o_req_t *h = req->h2o;

    assert(status >= 100 && status <= 999);
    bool has_connection = false;
    for (size_t i = 0; i < n && !has_connection; i++)
        has_connection = kv_name_is(&headers[i], &connection_name);
    for (size_t i = 0; i < n; i++) {
        const struct http_header_kv *kv = &headers[i];
        if (kv->name_len == 0 || proxied_drops(headers, n, has_connection, kv))
            continue;
        char *name = h2o_mem_alloc_pool(&h->pool, kv->name_len);
        for (size_t k = 0; k < kv->name_len; k++)
            name[k] = (char)tolower((unsigned char)kv->name[k]);
        h2o_iovec_t value = h2o_strdup(&h->pool, kv->value, kv->value_len);
        h2o_add_header_by_str(&h->pool, &h->res.headers, name, kv->name_len, 1,
                              NULL, value.base, value.len);
    }
    bool head = h2o_memis(h->method.base, h->method.len, H2O_STRLIT("HEAD"));
    size_t length = len;
    if (status == 204 || status == 304) {
        /* These carry no body and no Content-Length of their own. */
        length = SIZE_MAX;
    } else if (head && len == 0) {
        /* The answer to HEAD has no body but tells the GET's length. */
        length = announced_length(headers, n);
    }
    if (length != len) {
        assert(!req->answered && "a request answered twice");
        req->answered = true;
        req->status = status;
        h->res.status = status;
        h->res.reason = http_reason(status);
        h->res.content_length = length;
        h2o_start_response(h, &static_generator);
        h2o_send(h, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    http_respond_iovec(req, status, NULL, h2o_strdup(&h->pool, body, len));
}
