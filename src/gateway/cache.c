/*
 * cache.c - freshness rules and the store of the gateway's response cache.
 *
 * The store is a chained hash index of nodes, one per key, and a doubly
 * linked list of the nodes in order of last use.  A node holds the key's
 * entry, its fill, or both (a stale entry being revalidated).
 */
#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/err.h"
#include "gateway/balance.h"
#include "gateway/cache.h"

/* --- the answer's headers --------------------------------------------------
 */

static bool is(const struct http_header_kv *h, const char *name)
{
    return h->name_len == strlen(name) &&
           strncasecmp(h->name, name, h->name_len) == 0;
}

/* A delta-seconds value, cut to GW_CACHE_TIME_MAX_MS; -1 if malformed. */
static int64_t seconds_ms(const char *v, size_t len)
{
    int64_t s = 0;

    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
        v++;
        len -= 2;
    }
    if (len == 0)
        return -1;
    for (size_t k = 0; k < len; k++) {
        if (!isdigit((unsigned char)v[k]))
            return -1;
        if (s < GW_CACHE_TIME_MAX_MS / 1000)
            s = s * 10 + (v[k] - '0');
    }
    s *= 1000;
    return s < GW_CACHE_TIME_MAX_MS ? s : GW_CACHE_TIME_MAX_MS;
}

struct directives {
    bool no_store, private_, no_cache, public_, must_revalidate;
    int64_t s_maxage, max_age, swr, sie; /* -1: absent */
};

static void directive(struct directives *d, const char *name, size_t nlen,
                      const char *v, size_t vlen)
{
#define NAME(s) (nlen == strlen(s) && strncasecmp(name, s, nlen) == 0)
    if (NAME("no-store"))
        d->no_store = true;
    else if (NAME("private"))
        d->private_ = true;
    else if (NAME("no-cache"))
        d->no_cache = true;
    else if (NAME("public"))
        d->public_ = true;
    else if (NAME("must-revalidate") || NAME("proxy-revalidate"))
        d->must_revalidate = true;
    else if (NAME("s-maxage"))
        d->s_maxage = seconds_ms(v, vlen);
    else if (NAME("max-age"))
        d->max_age = seconds_ms(v, vlen);
    else if (NAME("stale-while-revalidate"))
        d->swr = seconds_ms(v, vlen);
    else if (NAME("stale-if-error"))
        d->sie = seconds_ms(v, vlen);
#undef NAME
}

/* Parses one Cache-Control value: directives, comma separated. */
static void directives_add(struct directives *d, const char *v, size_t len)
{
    const char *end = v + len;

    while (v < end) {
        const char *comma = memchr(v, ',', (size_t)(end - v));
        const char *tok_end = comma != NULL ? comma : end;
        const char *eq;

        while (v < tok_end && (*v == ' ' || *v == '\t'))
            v++;
        size_t n = (size_t)(tok_end - v);
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            n--;
        eq = memchr(v, '=', n);
        if (eq != NULL)
            directive(d, v, (size_t)(eq - v), eq + 1,
                      (size_t)(v + n - (eq + 1)));
        else
            directive(d, v, n, NULL, 0);
        v = comma != NULL ? comma + 1 : end;
    }
}

/* An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") in seconds; -1 if
 * malformed (RFC 9111 5.3: an invalid Expires means already expired). */
static int64_t http_date(const char *v, size_t len)
{
    char buf[64];
    struct tm tm;
    const char *end;

    if (len >= sizeof(buf))
        return -1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    memset(&tm, 0, sizeof(tm));
    end = strptime(buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (end == NULL || *end != '\0')
        return -1;
    return (int64_t)timegm(&tm);
}

/* Statuses cacheable by default (RFC 9110 15.1), less 206: no ranges. */
static bool status_cacheable(int status)
{
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501: return true;
    default: return false;
    }
}

void gw_cache_policy_parse(int status, const struct http_header_kv *h, size_t n,
                           bool auth, int64_t now_wall_s,
                           const struct gw_cache_defaults *d,
                           struct gw_cache_policy *out)
{
    struct directives cc = {
        .s_maxage = -1, .max_age = -1, .swr = -1, .sie = -1};
    int64_t expires = -2, date = -1;
    bool vary = false, etag = false;

    memset(out, 0, sizeof(*out));
    for (size_t k = 0; k < n; k++) {
        if (is(&h[k], "cache-control"))
            directives_add(&cc, h[k].value, h[k].value_len);
        else if (is(&h[k], "expires"))
            expires = http_date(h[k].value, h[k].value_len);
        else if (is(&h[k], "date"))
            date = http_date(h[k].value, h[k].value_len);
        else if (is(&h[k], "age"))
            out->age_ms = seconds_ms(h[k].value, h[k].value_len);
        else if (is(&h[k], "vary"))
            vary = true;
        else if (is(&h[k], "etag"))
            etag = true;
    }
    if (out->age_ms < 0)
        out->age_ms = 0;

    out->auth_ok = cc.public_ || cc.s_maxage >= 0 || cc.must_revalidate;
    out->stale_ok = !cc.must_revalidate && !cc.no_cache && cc.s_maxage < 0;
    if (cc.s_maxage >= 0)
        out->fresh_ms = cc.s_maxage;
    else if (cc.max_age >= 0)
        out->fresh_ms = cc.max_age;
    else if (expires != -2) {
        int64_t base = date >= 0 ? date : now_wall_s;
        out->fresh_ms = expires > base ? (expires - base) * 1000 : 0;
    } else if (d != NULL && d->ttl_ms > 0 && status == 200)
        out->fresh_ms = d->ttl_ms;
    else
        return; /* nothing says it may be reused */
    if (out->fresh_ms > GW_CACHE_TIME_MAX_MS)
        out->fresh_ms = GW_CACHE_TIME_MAX_MS;
    if (d != NULL && d->max_ttl_ms > 0 && out->fresh_ms > d->max_ttl_ms)
        out->fresh_ms = d->max_ttl_ms;
    if (cc.no_cache)
        out->fresh_ms = 0;

    out->swr_ms = d != NULL && d->swr_ms >= 0 ? d->swr_ms
                  : cc.swr >= 0               ? cc.swr
                                              : 0;
    out->sie_ms = d != NULL && d->sie_ms >= 0 ? d->sie_ms
                  : cc.sie >= 0               ? cc.sie
                                              : 0;
    if (!out->stale_ok)
        out->swr_ms = out->sie_ms = 0;

    out->storable = status_cacheable(status) && !cc.no_store && !cc.private_ &&
                    !vary && (!auth || out->auth_ok) && (!cc.no_cache || etag);
}

/* --- entries ---------------------------------------------------------------
 */

/* Fields not kept: the hop-by-hop ones and Age, which the cache writes. */
static bool header_skipped(const struct http_header_kv *h)
{
    static const char *const skip[] = {
        "connection", "keep-alive", "proxy-connection",
        "te",         "trailer",    "transfer-encoding",
        "upgrade",    "age",        "content-length",
    };

    for (size_t k = 0; k < sizeof(skip) / sizeof(skip[0]); k++)
        if (is(h, skip[k]))
            return true;
    return false;
}

struct gw_cache_entry *gw_cache_entry_new(int status,
                                          const struct http_header_kv *h,
                                          size_t n, const void *body,
                                          size_t len)
{
    size_t total = sizeof(struct gw_cache_entry) + len + 1, kept = 0;
    struct gw_cache_entry *e;
    char *at;

    for (size_t k = 0; k < n; k++) {
        if (header_skipped(&h[k]))
            continue;
        if (++kept > GW_CACHE_HEADERS_MAX)
            return NULL;
        if (is(&h[k], "etag") && h[k].value_len >= GW_CACHE_ETAG_MAX)
            return NULL;
        total += h[k].name_len + h[k].value_len + 2;
    }
    e = calloc(1, total);
    if (e == NULL)
        return NULL;
    atomic_init(&e->refs, 1);
    e->status = status;
    e->bytes = total;
    at = (char *)(e + 1);
    for (size_t k = 0; k < n; k++) {
        struct http_header_kv *o;

        if (header_skipped(&h[k]))
            continue;
        o = &e->headers[e->nheaders++];
        memcpy(at, h[k].name, h[k].name_len);
        o->name = at;
        o->name_len = h[k].name_len;
        at += h[k].name_len + 1;
        memcpy(at, h[k].value, h[k].value_len);
        o->value = at;
        o->value_len = h[k].value_len;
        at += h[k].value_len + 1;
        if (is(o, "etag")) {
            memcpy(e->etag, o->value, o->value_len);
            e->etag[o->value_len] = '\0';
        }
    }
    if (len > 0)
        memcpy(at, body, len);
    at[len] = '\0';
    e->body = at;
    e->body_len = len;
    return e;
}

void gw_cache_entry_retain(struct gw_cache_entry *e)
{
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

void gw_cache_entry_release(struct gw_cache_entry *e)
{
    if (e != NULL &&
        atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        free(e);
}

/* The opaque part of a tag: W/"x" and "x" compare equal (weak). */
static void opaque(const char *t, size_t len, const char **o, size_t *olen)
{
    if (len >= 2 && t[0] == 'W' && t[1] == '/') {
        t += 2;
        len -= 2;
    }
    *o = t;
    *olen = len;
}

bool gw_cache_etag_match(const char *inm, const char *etag)
{
    const char *e, *end = inm + strlen(inm);
    size_t elen;

    if (etag[0] == '\0')
        return false;
    opaque(etag, strlen(etag), &e, &elen);
    while (inm < end) {
        const char *comma = memchr(inm, ',', (size_t)(end - inm));
        const char *tok_end = comma != NULL ? comma : end;
        const char *t;
        size_t tlen;

        while (inm < tok_end && (*inm == ' ' || *inm == '\t'))
            inm++;
        size_t n = (size_t)(tok_end - inm);
        while (n > 0 && (inm[n - 1] == ' ' || inm[n - 1] == '\t'))
            n--;
        if (n == 1 && inm[0] == '*')
            return true;
        opaque(inm, n, &t, &tlen);
        if (tlen == elen && memcmp(t, e, elen) == 0)
            return true;
        inm = comma != NULL ? comma + 1 : end;
    }
    return false;
}

/* --- the store -------------------------------------------------------------
 */

struct node {
    struct node *next;          /* hash chain */
    struct node *newer, *older; /* use order */
    uint64_t hash;
    struct gw_cache_entry *entry; /* NULL while only a fill */
    struct gw_cache_fill *fill;   /* NULL unless a fetch is out */
    size_t key_len;
    char key[];
};

struct gw_cache_fill {
    struct node *node;
    uint64_t epoch;
    size_t nwaiters;
    void *waiters[GW_CACHE_WAITERS_MAX];
};

struct gw_cache {
    size_t max_bytes, max_entry_bytes, bytes, entries;
    uint64_t epoch; /* purges so far */
    uint64_t evictions;
    struct node *newest, *oldest;
    struct node *bucket[GW_CACHE_BUCKETS];
};

int gw_cache_new(size_t max_bytes, size_t max_entry_bytes,
                 struct gw_cache **out)
{
    struct gw_cache *c;

    if (max_bytes == 0 || max_entry_bytes == 0 || max_entry_bytes > max_bytes)
        return ERR_INVALID;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ERR_NOMEM;
    c->max_bytes = max_bytes;
    c->max_entry_bytes = max_entry_bytes;
    *out = c;
    return ERR_OK;
}

static void use_unlink(struct gw_cache *c, struct node *n)
{
    if (n->newer != NULL)
        n->newer->older = n->older;
    else
        c->newest = n->older;
    if (n->older != NULL)
        n->older->newer = n->newer;
    else
        c->oldest = n->newer;
    n->newer = n->older = NULL;
}

static void use_push(struct gw_cache *c, struct node *n)
{
    n->older = c->newest;
    n->newer = NULL;
    if (c->newest != NULL)
        c->newest->newer = n;
    c->newest = n;
    if (c->oldest == NULL)
        c->oldest = n;
}

static struct node **slot_of(struct gw_cache *c, const struct node *n)
{
    struct node **at = &c->bucket[n->hash % GW_CACHE_BUCKETS];

    while (*at != n) {
        assert(*at != NULL);
        at = &(*at)->next;
    }
    return at;
}

/* Takes a node's entry out of the store; the node goes too unless a
 * fill still needs it. */
static void entry_drop(struct gw_cache *c, struct node *n)
{
    if (n->entry != NULL) {
        c->bytes -= n->entry->bytes;
        c->entries--;
        gw_cache_entry_release(n->entry);
        n->entry = NULL;
    }
    if (n->fill != NULL)
        return;
    *slot_of(c, n) = n->next;
    use_unlink(c, n);
    c->bytes -= sizeof(*n) + n->key_len + 1;
    free(n);
}

void gw_cache_free(struct gw_cache *c)
{
    if (c == NULL)
        return;
    while (c->oldest != NULL) {
        struct node *n = c->oldest;
        free(n->fill);
        n->fill = NULL;
        entry_drop(c, n);
    }
    free(c);
}

static struct node *find(struct gw_cache *c, const char *key, size_t len,
                         uint64_t hash)
{
    struct node *n = c->bucket[hash % GW_CACHE_BUCKETS];

    for (; n != NULL; n = n->next)
        if (n->hash == hash && n->key_len == len &&
            memcmp(n->key, key, len) == 0)
            return n;
    return NULL;
}

static struct node *node_add(struct gw_cache *c, const char *key, size_t len,
                             uint64_t hash)
{
    struct node *n = calloc(1, sizeof(*n) + len + 1);

    if (n == NULL)
        return NULL;
    n->hash = hash;
    n->key_len = len;
    memcpy(n->key, key, len);
    n->next = c->bucket[hash % GW_CACHE_BUCKETS];
    c->bucket[hash % GW_CACHE_BUCKETS] = n;
    use_push(c, n);
    c->bytes += sizeof(*n) + len + 1;
    return n;
}

static struct gw_cache_fill *fill_start(struct gw_cache *c, struct node *n)
{
    struct gw_cache_fill *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return NULL;
    f->node = n;
    f->epoch = c->epoch;
    n->fill = f;
    return f;
}

static int64_t age_ms(const struct gw_cache_entry *e, int64_t now_ms)
{
    int64_t held = now_ms - e->stored_ms;

    return e->policy.age_ms + (held > 0 ? held : 0);
}

void gw_cache_lookup(struct gw_cache *c, const char *key, size_t len,
                     int64_t now_ms, bool auth, void *waiter,
                     struct gw_cache_look *out)
{
    uint64_t hash;
    struct node *n;

    memset(out, 0, sizeof(*out));
    out->verdict = GW_CACHE_BYPASS;
    if (len > GW_CACHE_KEY_MAX)
        return;
    hash = gw_hash(key, len);
    n = find(c, key, len, hash);

    if (n != NULL && n->entry != NULL && (!auth || n->entry->policy.auth_ok)) {
        const struct gw_cache_entry *e = n->entry;
        int64_t age = age_ms(e, now_ms);

        use_unlink(c, n);
        use_push(c, n);
        if (age < e->policy.fresh_ms + e->policy.swr_ms) {
            out->verdict =
                age < e->policy.fresh_ms ? GW_CACHE_HIT : GW_CACHE_STALE;
            out->ttl_ms = e->policy.fresh_ms - age;
            out->age_s = age / 1000;
            out->entry = n->entry;
            gw_cache_entry_retain(n->entry);
            /* One background refresh per stale entry at a time. */
            if (out->verdict == GW_CACHE_STALE && n->fill == NULL)
                out->fill = fill_start(c, n);
            return;
        }
    }
    if (auth)
        return; /* a request with credentials never waits on others */
    if (waiter == NULL) {
        out->verdict = GW_CACHE_MISS;
        return;
    }

    if (n != NULL && n->fill != NULL) {
        struct gw_cache_fill *f = n->fill;
        if (f->nwaiters == GW_CACHE_WAITERS_MAX)
            return;
        f->waiters[f->nwaiters++] = waiter;
        out->verdict = GW_CACHE_WAIT;
        return;
    }
    if (n == NULL && (n = node_add(c, key, len, hash)) == NULL)
        return;
    out->fill = fill_start(c, n);
    if (out->fill == NULL) {
        if (n->entry == NULL)
            entry_drop(c, n);
        return;
    }
    out->verdict = GW_CACHE_FILL;
    if (n->entry != NULL) {
        out->entry = n->entry;
        gw_cache_entry_retain(n->entry);
    }
}

int64_t gw_cache_age_s(const struct gw_cache_entry *e, int64_t now_ms)
{
    return age_ms(e, now_ms) / 1000;
}

bool gw_cache_usable_on_error(const struct gw_cache_entry *e, int64_t now_ms)
{
    return e != NULL &&
           age_ms(e, now_ms) <
               e->policy.fresh_ms + (e->policy.stale_ok ? e->policy.sie_ms : 0);
}

/* Evicts least recently used entries until `need` more bytes fit. */
static void make_room(struct gw_cache *c, size_t need, const struct node *keep)
{
    struct node *n = c->oldest;

    while (n != NULL && (c->bytes + need > c->max_bytes ||
                         c->entries + 1 > GW_CACHE_ENTRIES_MAX)) {
        struct node *next = n->newer;
        if (n != keep && n->entry != NULL) {
            c->evictions++;
            entry_drop(c, n);
        }
        n = next;
    }
}

size_t gw_cache_fill_done(struct gw_cache *c, struct gw_cache_fill *f,
                          struct gw_cache_entry *store,
                          const struct gw_cache_policy *policy, int64_t now_ms,
                          void **waiters)
{
    struct node *n = f->node;
    size_t nw = f->nwaiters;

    memcpy(waiters, f->waiters, nw * sizeof(*waiters));
    assert(n->fill == f);
    n->fill = NULL;

    if (store != NULL && policy->storable && f->epoch == c->epoch &&
        store->bytes <= c->max_entry_bytes) {
        if (store == n->entry) {
            c->bytes -= store->bytes; /* charged again below */
            c->entries--;
            n->entry = NULL;
            gw_cache_entry_release(store);
        }
        if (n->entry != NULL) {
            c->bytes -= n->entry->bytes;
            c->entries--;
            gw_cache_entry_release(n->entry);
            n->entry = NULL;
        }
        make_room(c, store->bytes, n);
        gw_cache_entry_retain(store);
        store->policy = *policy;
        store->stored_ms = now_ms;
        n->entry = store;
        c->bytes += store->bytes;
        c->entries++;
        use_unlink(c, n);
        use_push(c, n);
    }
    free(f);
    if (n->entry == NULL)
        entry_drop(c, n); /* a node with neither goes */
    return nw;
}

/* Whether key is prefix itself or lies under it, segment-wise. */
static bool under(const char *key, size_t klen, const char *prefix, size_t plen)
{
    if (plen == 0)
        return true;
    if (klen < plen || memcmp(key, prefix, plen) != 0)
        return false;
    return klen == plen || prefix[plen - 1] == '/' || key[plen] == '/' ||
           key[plen] == '?';
}

size_t gw_cache_purge(struct gw_cache *c, const char *prefix, size_t len)
{
    struct node *n = c->oldest;
    size_t removed = 0;

    c->epoch++;
    while (n != NULL) {
        struct node *next = n->newer;
        if (n->entry != NULL && under(n->key, n->key_len, prefix, len)) {
            entry_drop(c, n);
            removed++;
        }
        n = next;
    }
    return removed;
}

void gw_cache_stats(const struct gw_cache *c, struct gw_cache_stats *out)
{
    out->entries = c->entries;
    out->bytes = c->bytes;
    out->evictions = c->evictions;
}
