/*
 * cache.c - each loop thread keeps the serialized answers of public GETs.
 *
 * SQLite's `PRAGMA data_version` changes on a connection whenever another
 * connection (the writer, or another process) commits.  The cache is
 * emptied whenever it changed, so it never serves what the database no
 * longer says; the check costs one cheap statement per request.  Answers
 * that depend on the time of day also age out (CATALOG_CACHE_TTL_MS).  Bounded
 * by entry count and bytes: past either, the cache is emptied and refills.
 */
#include <stdlib.h>
#include <string.h>

#include "services/catalog/internal.h"

#define CACHE_BUCKETS 1024 /* power of two */

struct cache_entry {
    struct cache_entry *next;
    char *key;
    char *body;
    size_t len;
    const char *cache_control; /* a static string */
    int64_t stored_ms;         /* monotonic */
    char etag[HTTP_ETAG_LEN];
};

struct catalog_cache {
    struct cache_entry *buckets[CACHE_BUCKETS];
    size_t entries, bytes;
    int64_t data_version;
};

static const char SQL_DATA_VERSION[] = "PRAGMA data_version";

struct catalog_cache *catalog_cache_new(void)
{
    struct catalog_cache *cc = calloc(1, sizeof(*cc));

    if (cc != NULL)
        cc->data_version = -1;
    return cc;
}

static void cache_clear(struct catalog_cache *cc)
{
    for (size_t i = 0; i < CACHE_BUCKETS; i++) {
        struct cache_entry *e = cc->buckets[i];
        while (e != NULL) {
            struct cache_entry *next = e->next;
            free(e->key);
            free(e->body);
            free(e);
            e = next;
        }
        cc->buckets[i] = NULL;
    }
    cc->entries = 0;
    cc->bytes = 0;
}

void catalog_cache_free(struct catalog_cache *cc)
{
    if (cc == NULL)
        return;
    cache_clear(cc);
    free(cc);
}

static size_t key_bucket(const char *key)
{
    uint64_t h = 1469598103934665603ULL;

    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return (size_t)(h & (CACHE_BUCKETS - 1));
}

/* Empties the cache if the database changed since it was filled. */
static void cache_check_version(struct catalog_thread *t)
{
    struct store_stmt *st = NULL;
    int64_t version = -2;

    if (store_prepare(t->conn, SQL_DATA_VERSION, &st) == 0 &&
        store_step(st) == STORE_ROW)
        version = store_col_int(st, 0);
    if (st != NULL)
        store_reset(st);
    if (version != t->cache->data_version) {
        cache_clear(t->cache);
        t->cache->data_version = version;
    }
}

bool catalog_cache_answer(struct catalog_thread *t, struct http_req *req)
{
    if (!t->cat->cache_enabled || t->cache == NULL)
        return false;
    cache_check_version(t);

    const char *key = http_req_target(req);
    int64_t now = clock_mono_ms(t->cat->clock);
    for (struct cache_entry *e = t->cache->buckets[key_bucket(key)]; e != NULL;
         e = e->next) {
        if (strcmp(e->key, key) == 0) {
            if (now - e->stored_ms > CATALOG_CACHE_TTL_MS)
                return false; /* refreshed by catalog_cache_respond */
            http_respond_etagged(req, e->body, e->len, e->etag,
                                 e->cache_control);
            return true;
        }
    }
    return false;
}

/* Unlinks and frees the entry for key, if there is one. */
static void cache_remove(struct catalog_cache *cc, const char *key)
{
    struct cache_entry **p = &cc->buckets[key_bucket(key)];

    for (; *p != NULL; p = &(*p)->next) {
        struct cache_entry *e = *p;
        if (strcmp(e->key, key) == 0) {
            *p = e->next;
            cc->entries--;
            cc->bytes -= e->len + strlen(e->key);
            free(e->key);
            free(e->body);
            free(e);
            return;
        }
    }
}

static void cache_put(struct catalog_cache *cc, const char *key,
                      const char *body, size_t len, const char *etag,
                      const char *cache_control, int64_t now_ms)
{
    cache_remove(cc, key);
    if (cc->entries >= CATALOG_CACHE_ENTRIES_MAX ||
        cc->bytes + len > CATALOG_CACHE_BYTES_MAX)
        cache_clear(cc);
    if (len > CATALOG_CACHE_BYTES_MAX)
        return;

    struct cache_entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return;
    e->key = strdup(key);
    e->body = malloc(len);
    if (e->key == NULL || e->body == NULL) {
        free(e->key);
        free(e->body);
        free(e);
        return;
    }
    memcpy(e->body, body, len);
    e->len = len;
    e->cache_control = cache_control;
    e->stored_ms = now_ms;
    memcpy(e->etag, etag, HTTP_ETAG_LEN);

    size_t b = key_bucket(key);
    e->next = cc->buckets[b];
    cc->buckets[b] = e;
    cc->entries++;
    cc->bytes += len + strlen(key);
}

void catalog_cache_respond(struct catalog_thread *t, struct http_req *req,
                           json_t *body, const char *cache_control)
{
    char *text = json_dumps(body, JSON_COMPACT);
    char etag[HTTP_ETAG_LEN];

    json_decref(body);
    if (text == NULL) {
        http_respond_unavailable(req, 1, "out of memory");
        return;
    }
    size_t len = strlen(text);
    http_etag_of(text, len, etag);
    if (t->cat->cache_enabled && t->cache != NULL)
        cache_put(t->cache, http_req_target(req), text, len, etag,
                  cache_control, clock_mono_ms(t->cat->clock));
    http_respond_etagged(req, text, len, etag, cache_control);
    free(text);
}
