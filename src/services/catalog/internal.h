/*
 * internal.h - what the files of the catalog service share.
 *
 * The catalog owns cities, cinemas, screens with seat layouts, movies and
 * shows.  Reads run on the event-loop threads, each with its own read
 * connection and a small response cache; writes are validated on the loop
 * thread, then applied by the store's writer (group commit) and answered
 * once durable.
 */
#ifndef MARQUEE_SERVICES_CATALOG_INTERNAL_H
#define MARQUEE_SERVICES_CATALOG_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/clock.h"
#include "domain/validate.h"
#include "http/http.h"
#include "services/catalog/events.h"
#include "store/store.h"

#define CATALOG_PAGE_DEFAULT         20
#define CATALOG_PAGE_MAX             100
#define CATALOG_PRICE_MAX            100000000 /* minor units: 1,000,000.00 */
#define CATALOG_HOLD_SECONDS_MIN     60
#define CATALOG_HOLD_SECONDS_MAX     1800
#define CATALOG_HOLD_SECONDS_DEFAULT 480
/* Cancellation policy of a show: customers may cancel until this many
 * minutes before it starts, and keep all but fee_percent of the price. */
#define CATALOG_CANCEL_MINUTES_MAX     10080 /* a week */
#define CATALOG_CANCEL_MINUTES_DEFAULT 120
#define CATALOG_CANCEL_FEE_DEFAULT     10
#define CATALOG_SHOW_MINUTES_MAX     (24 * 60)
#define CATALOG_CACHE_ENTRIES_MAX    512        /* per thread */
#define CATALOG_CACHE_BYTES_MAX      (8u << 20) /* per thread */
/* Answers that depend on "now" (shows from now on, today's date) age even
 * when nothing is written: a cached answer is served this long at most. */
#define CATALOG_CACHE_TTL_MS 5000

/* Cache-Control of public reads: short, so edits show within seconds. */
#define CATALOG_CACHE_LIST "public, max-age=30, stale-while-revalidate=30"
#define CATALOG_CACHE_ITEM "public, max-age=10, stale-while-revalidate=10"

struct catalog {
    struct store *store;
    struct clock *clock;
    const char *admin_token; /* "" disables admin routes */
    bool cache_enabled;
    struct show_events events; /* published after durable show writes */
};

struct catalog_cache;

/* Per event-loop thread. */
struct catalog_thread {
    struct catalog *cat;
    struct store_conn *conn;
    struct catalog_cache *cache;
};

/* schema.c */
extern const struct store_migration catalog_migrations[];
extern const size_t catalog_nmigrations;

/* render.c: resources as JSON, from rows (new references, NULL if none). */
json_t *catalog_city_get(struct store_conn *c, int64_t id);
json_t *catalog_cinema_get(struct store_conn *c, int64_t id);
json_t *catalog_screen_get(struct store_conn *c, int64_t id);
json_t *catalog_movie_get(struct store_conn *c, int64_t id);
json_t *catalog_show_get(struct store_conn *c, int64_t id);

/* reads.c */
void catalog_list_cities(struct http_req *req, void *app);
void catalog_list_cinemas(struct http_req *req, void *app);
void catalog_list_movies(struct http_req *req, void *app);
void catalog_get_city(struct http_req *req, void *app);
void catalog_get_cinema(struct http_req *req, void *app);
void catalog_get_screen(struct http_req *req, void *app);
void catalog_get_movie(struct http_req *req, void *app);
void catalog_list_movie_shows(struct http_req *req, void *app);
void catalog_get_show(struct http_req *req, void *app);

/* cache.c: rendered GET answers, dropped whenever the database changes. */
struct catalog_cache *catalog_cache_new(void);
void catalog_cache_free(struct catalog_cache *cc);
/* Answers req from the cache if it can; true when it did. */
bool catalog_cache_answer(struct catalog_thread *t, struct http_req *req);
/* Answers with body and keeps a copy for the next identical request. */
void catalog_cache_respond(struct catalog_thread *t, struct http_req *req,
                           json_t *body, const char *cache_control);

/* admin.c */
void catalog_create_city(struct http_req *req, void *app);
void catalog_create_cinema(struct http_req *req, void *app);
void catalog_create_screen(struct http_req *req, void *app);
void catalog_create_movie(struct http_req *req, void *app);
void catalog_create_show(struct http_req *req, void *app);
void catalog_cancel_show(struct http_req *req, void *app);

/*
 * An admin write, shared by the HTTP handlers and the demo loader: the
 * checked input, and after apply() the result or the reason it failed.
 */
enum catalog_op {
    CATALOG_OP_CITY,
    CATALOG_OP_CINEMA,
    CATALOG_OP_SCREEN,
    CATALOG_OP_MOVIE,
    CATALOG_OP_SHOW,
    CATALOG_OP_CANCEL_SHOW,
};

struct catalog_write {
    struct store_write w;
    struct http_async *async;
    struct catalog *cat;
    enum catalog_op op;
    json_t *input;        /* checked body, owned */
    int64_t parent_id;    /* the id in the path, if any */
    json_t *result;       /* the resource after the write, owned */
    struct verrs *errors; /* field errors found by the writer, or NULL */
    int status;           /* HTTP status of a failure, 0 on success */
    char code[VERR_CODE_MAX];
    char detail[VERR_DETAIL_MAX];
};

/*
 * Checks a body for op (on the caller's thread, no I/O); on success returns
 * a new write owning a normalized copy of the input, else NULL with e
 * filled.  now_ms rejects shows in the past.
 */
struct catalog_write *catalog_write_prepare(struct catalog *cat,
                                            enum catalog_op op, json_t *body,
                                            int64_t parent_id, int64_t now_ms,
                                            struct verrs *e);
void catalog_write_free(struct catalog_write *w);
/* The store_write apply function of every catalog write. */
int catalog_write_apply(struct store_conn *c, void *arg);

/* demo.c: fills an empty database from a JSON file of demo data. */
int catalog_demo_load(struct catalog *cat, const char *path);

/* Times as RFC 3339 strings in JSON. */
json_t *catalog_time_json(int64_t ms);

#endif
