/*
 * cache.h - the gateway's shared response cache: what an answer allows
 * (RFC 9111 freshness), and a bounded store of answers with one fill per
 * key at a time.
 *
 * Keys are the normalized path and query of a GET ("/v1/shows/7/seats",
 * "/v1/cities?limit=5"); HEAD is answered from GET's entry, and no other
 * method is cached.  Answers that carry Vary are never stored: the
 * gateway does not keep variants, and serving one variant for another
 * would be wrong.
 *
 * Freshness (gw_cache_policy_parse): s-maxage, then max-age, then Expires
 * less Date; an answer with none of them gets the route's default TTL
 * (heuristic freshness, RFC 9111 4.2.2) when the route gives one, and
 * only for status 200; the route may also cap freshness.  no-store and
 * private are never stored; no-cache is stored only with an ETag, fresh
 * for 0 ms (every use revalidates, and it is never served stale).
 * stale-while-revalidate and stale-if-error (RFC 5861) come from the
 * route when it sets them, else from the answer; no-cache,
 * must-revalidate, proxy-revalidate and s-maxage forbid serving stale.  A
 * request with Authorization is served only from entries whose answer said
 * public, s-maxage or must-revalidate (RFC 9111 3.5), and only such answers to
 * it are stored.
 *
 * The store: entries are immutable once made and reference counted, so a
 * loop thread answers from an entry after letting go of the lock.  The
 * store itself (index, use order, bytes, fills) is plain data: the owner
 * serializes every call except gw_cache_entry_retain/release.  No I/O, no
 * clock read: every call gets now_ms (monotonic) where time matters.
 *
 * One fill per key: the first miss of a key becomes its fill and fetches;
 * misses that arrive while it is out wait on it (at most
 * GW_CACHE_WAITERS_MAX; more fetch alone) and are handed back when it
 * ends, so N concurrent misses make one upstream request.  A purge while
 * a fill is out keeps that fill's answer out of the store (it was fetched
 * before the purge and may be what the purge meant to remove).
 */
#ifndef MARQUEE_GATEWAY_CACHE_H
#define MARQUEE_GATEWAY_CACHE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

/* The longest key (path and query). */
#define GW_CACHE_KEY_MAX 2048
/* Requests waiting on one fill at most. */
#define GW_CACHE_WAITERS_MAX 256
/* Header fields of an answer kept at most; an answer with more is not
 * stored. */
#define GW_CACHE_HEADERS_MAX 64
/* The longest ETag kept, with the NUL; an answer with a longer one is not
 * stored. */
#define GW_CACHE_ETAG_MAX 128
/* Entries of one store at most, whatever their size. */
#define GW_CACHE_ENTRIES_MAX 65536
/* Index buckets of one store. */
#define GW_CACHE_BUCKETS 16384
/* The longest freshness, stale-while-revalidate or stale-if-error taken
 * from an answer: a day. */
#define GW_CACHE_TIME_MAX_MS (24 * 3600 * 1000LL)

/*
 * A route's settings.  ttl_ms applies only to answers that say nothing of
 * their freshness; max_ttl_ms shortens any answer's (a cache may always
 * revalidate sooner).  The stale windows, when set (>= 0), replace the
 * answer's own: the routes file is the operator's out-of-band contract of
 * RFC 9111 4.2.4; they never apply to answers that forbid serving stale
 * (no-cache, must-revalidate, proxy-revalidate, s-maxage).
 */
struct gw_cache_defaults {
    int64_t ttl_ms;     /* freshness of a 200 without any; 0: not stored */
    int64_t max_ttl_ms; /* longest freshness; 0: no cap */
    int64_t swr_ms;     /* stale-while-revalidate; -1: the answer's */
    int64_t sie_ms;     /* stale-if-error; -1: the answer's */
};

/* What an answer allows, from its status and headers. */
struct gw_cache_policy {
    bool storable;
    bool auth_ok;  /* public, s-maxage or must-revalidate */
    bool stale_ok; /* no must-revalidate, proxy-revalidate, s-maxage */
    int64_t fresh_ms, swr_ms, sie_ms;
    int64_t age_ms; /* the answer's own Age */
};

/*
 * Reads an answer's Cache-Control (every field of that name), Expires,
 * Date, Age, ETag and Vary.  auth: the request carried Authorization.
 * now_wall_s: the wall clock in seconds, used for Expires when Date is
 * missing.  d may be NULL (no defaults).
 */
void gw_cache_policy_parse(int status, const struct http_header_kv *h, size_t n,
                           bool auth, int64_t now_wall_s,
                           const struct gw_cache_defaults *d,
                           struct gw_cache_policy *out);

/*
 * One stored answer: status, header fields (Age and hop-by-hop fields
 * left out), body and ETag, copied into one allocation.  Immutable but for
 * the fields under `owner:`, which only the store's owner touches, under
 * its lock.
 */
struct gw_cache_entry {
    atomic_int refs;
    int status;
    size_t nheaders;
    struct http_header_kv headers[GW_CACHE_HEADERS_MAX];
    const char *body;
    size_t body_len;
    char etag[GW_CACHE_ETAG_MAX]; /* "" when the answer had none */
    size_t bytes;                 /* charged to the store */

    /* owner: */
    struct gw_cache_policy policy;
    int64_t stored_ms;
};

/*
 * Makes an entry of an answer (everything copied); one reference.  NULL
 * when out of memory, or when the answer has more than
 * GW_CACHE_HEADERS_MAX fields or an ETag of GW_CACHE_ETAG_MAX bytes or
 * more (such answers are simply not cached).
 */
struct gw_cache_entry *gw_cache_entry_new(int status,
                                          const struct http_header_kv *h,
                                          size_t n, const void *body,
                                          size_t len);

/* Reference counting, from any thread, without the store's lock. */
void gw_cache_entry_retain(struct gw_cache_entry *e);
void gw_cache_entry_release(struct gw_cache_entry *e);

/*
 * Whether etag matches an If-None-Match value (a list of tags, or "*"),
 * by weak comparison (RFC 9110 13.1.2).
 */
bool gw_cache_etag_match(const char *if_none_match, const char *etag);

struct gw_cache;
struct gw_cache_fill;

enum gw_cache_verdict {
    GW_CACHE_HIT,    /* fresh: answer from entry */
    GW_CACHE_STALE,  /* stale within stale-while-revalidate: answer from
                        entry; when fill is set, the caller refreshes it */
    GW_CACHE_FILL,   /* fetch, then gw_cache_fill_done(fill); entry, if
                        set, is the stale answer to revalidate */
    GW_CACHE_WAIT,   /* the waiter is queued on the key's fill */
    GW_CACHE_BYPASS, /* fetch alone: full of waiters, or the request
                        carries Authorization and no entry may serve it */
    GW_CACHE_MISS,   /* waiter was NULL: nothing changed; ask again with
                        one to become the fill or a waiter */
};

struct gw_cache_look {
    enum gw_cache_verdict verdict;
    struct gw_cache_entry *entry; /* a reference for the caller, or NULL */
    struct gw_cache_fill *fill;   /* FILL, or STALE with a refresh to do */
    int64_t age_s;                /* HIT and STALE: the entry's Age */
    int64_t ttl_ms;               /* HIT: freshness left */
};

/*
 * A store of at most max_bytes (entries, keys and bookkeeping) in which no
 * entry takes more than max_entry_bytes.  ERR_OK with *out, ERR_INVALID
 * (max_entry_bytes > max_bytes, or 0) or ERR_NOMEM.
 */
int gw_cache_new(size_t max_bytes, size_t max_entry_bytes,
                 struct gw_cache **out);

/* Frees the store; entries still referenced elsewhere live on; fills
 * still out must not be ended after this. */
void gw_cache_free(struct gw_cache *c);

/*
 * Looks key up (len bytes, at most GW_CACHE_KEY_MAX) at now_ms.  auth:
 * the request carries Authorization.  waiter: the caller's token, queued
 * on the fill when the verdict is WAIT; NULL asks only whether an entry
 * answers (HIT or STALE), and gives MISS where a waiter would have been
 * needed, so that a hit costs the caller nothing to prepare.  A key too
 * long, or no memory for a fill, gives BYPASS.
 */
void gw_cache_lookup(struct gw_cache *c, const char *key, size_t len,
                     int64_t now_ms, bool auth, void *waiter,
                     struct gw_cache_look *out);

/* An entry's Age at now_ms, in whole seconds (the owner's lock held). */
int64_t gw_cache_age_s(const struct gw_cache_entry *e, int64_t now_ms);

/* Whether entry may be served for a failed fill at now_ms
 * (stale-if-error). */
bool gw_cache_usable_on_error(const struct gw_cache_entry *e, int64_t now_ms);

/*
 * Ends a fill.  store: the answer to keep (the store takes its own
 * reference), with its policy (copied) received at now_ms, or NULL when
 * nothing is to be kept.  store may be the stale entry the fill
 * revalidated (a 304): its times are renewed.  It is not kept when a
 * purge happened since the fill began, when it is larger than
 * max_entry_bytes or not storable.  Older entries are evicted, least
 * recently used first, until the store fits.  The waiters (at most
 * GW_CACHE_WAITERS_MAX) are copied to waiters; their count is returned.
 */
size_t gw_cache_fill_done(struct gw_cache *c, struct gw_cache_fill *f,
                          struct gw_cache_entry *store,
                          const struct gw_cache_policy *policy, int64_t now_ms,
                          void **waiters);

/*
 * Removes every entry whose key starts with prefix (len bytes) at a
 * segment boundary ("/v1/shows/1" takes "/v1/shows/1" and
 * "/v1/shows/1/seats", not "/v1/shows/12"); "" or "/" empties the store.
 * Fills under way are kept out of the store.  Returns the count removed.
 */
size_t gw_cache_purge(struct gw_cache *c, const char *prefix, size_t len);

struct gw_cache_stats {
    size_t entries, bytes;
    uint64_t evictions;
};

void gw_cache_stats(const struct gw_cache *c, struct gw_cache_stats *out);

#endif
