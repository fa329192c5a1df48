/*
 * reads.c - the public, cacheable reads of the catalog.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "services/catalog/internal.h"

/* Shows listed for one movie, city and day at the most. */
#define CATALOG_DAY_SHOWS_MAX 1000
#define DAY_MS                (86400 * 1000LL)

static struct catalog_thread *thread_of(struct http_req *req)
{
    return http_req_thread_data(req);
}

static void answer_db_error(struct http_req *req)
{
    http_respond_unavailable(req, 1, "the catalog database is unavailable");
}

/* Cursors are opaque to clients: "c" and the last id, in hex. */
static void cursor_encode(int64_t last_id, char out[24])
{
    snprintf(out, 24, "c%llx", (unsigned long long)last_id);
}

static bool cursor_decode(const char *s, int64_t *out)
{
    unsigned long long v = 0;
    size_t n = strlen(s);

    if (n < 2 || n > 16 || s[0] != 'c')
        return false;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (d < 0)
            return false;
        v = v * 16 + (unsigned)d;
    }
    *out = (int64_t)v;
    return true;
}

/* Reads ?limit= and ?cursor=; answers 400 and returns false if bad. */
static bool page_params(struct http_req *req, int64_t *limit, int64_t *after)
{
    bool bad = false;
    const char *l = http_req_query(req, "limit", &bad);
    const char *c = bad ? NULL : http_req_query(req, "cursor", &bad);

    if (bad)
        return false;
    *limit = CATALOG_PAGE_DEFAULT;
    *after = 0;
    if (l != NULL) {
        char *end;
        long v = strtol(l, &end, 10);
        if (*l == '\0' || *end != '\0' || v < 1 || v > CATALOG_PAGE_MAX) {
            http_respond_problem(
                req, 400, "invalid-query", "Invalid query parameter",
                "limit must be an integer from 1 to %d", CATALOG_PAGE_MAX);
            return false;
        }
        *limit = v;
    }
    if (c != NULL && !cursor_decode(c, after)) {
        http_respond_problem(req, 400, "invalid-query",
                             "Invalid query parameter",
                             "cursor is not one this API returned");
        return false;
    }
    return true;
}

/* {"items": [...], "next_cursor": "..." or null}; takes items. */
static json_t *page_json(json_t *items, bool more, int64_t last_id)
{
    char cursor[24];

    if (!more)
        return json_pack("{s:o, s:n}", "items", items, "next_cursor");
    cursor_encode(last_id, cursor);
    return json_pack("{s:o, s:s}", "items", items, "next_cursor", cursor);
}

/*
 * Runs a list query whose first parameter slot after `nbound` bound ones
 * takes the cursor and the next the limit; each row's first column is an
 * id passed to get().  Answers the request.
 */
static void answer_list(struct http_req *req, struct store_stmt *st,
                        int cursor_idx, int64_t after, int64_t limit,
                        json_t *(*get)(struct store_conn *, int64_t))
{
    struct catalog_thread *t = thread_of(req);
    json_t *items = json_array();
    int64_t last = 0;
    bool more = false;
    int rc;

    store_bind_int(st, cursor_idx, after);
    store_bind_int(st, cursor_idx + 1, limit + 1);
    while ((rc = store_step(st)) == STORE_ROW) {
        if ((int64_t)json_array_size(items) == limit) {
            more = true;
            break;
        }
        last = store_col_int(st, 0);
        json_t *item = get(t->conn, last);
        if (item != NULL)
            json_array_append_new(items, item);
    }
    store_reset(st);
    if (rc < 0) {
        json_decref(items);
        answer_db_error(req);
        return;
    }
    catalog_cache_respond(t, req, page_json(items, more, last),
                          CATALOG_CACHE_LIST);
}

static const char SQL_CITIES[] =
    "SELECT id FROM cities WHERE id > ? ORDER BY id LIMIT ?";

void catalog_list_cities(struct http_req *req, void *app)
{
    struct catalog_thread *t = thread_of(req);
    struct store_stmt *st;
    int64_t limit, after;

    (void)app;
    if (catalog_cache_answer(t, req) || !page_params(req, &limit, &after))
        return;
    if (store_prepare(t->conn, SQL_CITIES, &st) != ERR_OK) {
        answer_db_error(req);
        return;
    }
    answer_list(req, st, 1, after, limit, catalog_city_get);
}

/* Loads the city named in the path, or answers 404 and returns NULL. */
static json_t *path_city(struct http_req *req, int64_t *id)
{
    json_t *city;

    if (!http_req_param_id(req, "city_id", id))
        return NULL;
    city = catalog_city_get(thread_of(req)->conn, *id);
    if (city == NULL)
        http_respond_problem(req, 404, "not-found", "Not found",
                             "there is no city %lld", (long long)*id);
    return city;
}

static const char SQL_CINEMAS[] =
    "SELECT id FROM cinemas WHERE city_id = ? AND id > ? ORDER BY id "
    "LIMIT ?";

void catalog_list_cinemas(struct http_req *req, void *app)
{
    struct catalog_thread *t = thread_of(req);
    struct store_stmt *st;
    int64_t city_id, limit, after;
    json_t *city;

    (void)app;
    if (catalog_cache_answer(t, req) || !page_params(req, &limit, &after))
        return;
    if ((city = path_city(req, &city_id)) == NULL)
        return;
    json_decref(city);
    if (store_prepare(t->conn, SQL_CINEMAS, &st) != ERR_OK) {
        answer_db_error(req);
        return;
    }
    store_bind_int(st, 1, city_id);
    answer_list(req, st, 2, after, limit, catalog_cinema_get);
}

/*
 * The window of a local calendar day in a city: [start, end) in epoch ms,
 * never starting before now (past shows cannot be booked).  Without ?date
 * it is today when date_out is given (a day's listing), else from now on.
 * date_out gets the day as YYYY-MM-DD.  Answers 400 and returns false if
 * the date is bad.
 */
static bool day_window(struct http_req *req, json_t *city, int64_t now_ms,
                       int64_t *start, int64_t *end, char *date_out)
{
    bool bad = false;
    const char *date = http_req_query(req, "date", &bad);
    int64_t offset_ms =
        json_integer_value(json_object_get(city, "utc_offset_minutes")) * 60000;
    int64_t days;

    if (bad)
        return false;
    if (date == NULL && date_out == NULL) {
        *start = now_ms;
        *end = INT64_MAX;
        return true;
    }
    if (date == NULL) {
        /* A day's listing without a date is today's, in the city. */
        int64_t local = now_ms + offset_ms;
        days = (local >= 0 ? local : local - DAY_MS + 1) / DAY_MS;
    } else if (clock_parse_date(date, &days) != ERR_OK) {
        http_respond_problem(req, 400, "invalid-query",
                             "Invalid query parameter",
                             "date must be a calendar date, YYYY-MM-DD");
        return false;
    }
    *start = days * DAY_MS - offset_ms;
    *end = *start + DAY_MS;
    if (*start < now_ms)
        *start = now_ms;
    if (date_out != NULL) {
        char buf[CLOCK_RFC3339_LEN];
        clock_format_rfc3339(days * DAY_MS, buf);
        snprintf(date_out, 11, "%.10s", buf);
    }
    return true;
}

static const char SQL_CITY_MOVIES[] =
    "SELECT m.id FROM movies m WHERE "
    "EXISTS (SELECT 1 FROM shows s JOIN screens sc ON sc.id = s.screen_id "
    "  JOIN cinemas c ON c.id = sc.cinema_id WHERE s.movie_id = m.id "
    "  AND c.city_id = ?1 AND s.status = 'scheduled' "
    "  AND s.starts_at >= ?2 AND s.starts_at < ?3) "
    "AND (?4 IS NULL OR m.language = ?4 COLLATE NOCASE) "
    "AND (?5 IS NULL OR EXISTS (SELECT 1 FROM movie_genres g "
    "  WHERE g.movie_id = m.id AND g.genre = lower(?5))) "
    "AND m.id > ?6 ORDER BY m.id LIMIT ?7";

void catalog_list_movies(struct http_req *req, void *app)
{
    struct catalog_thread *t = thread_of(req);
    struct store_stmt *st;
    int64_t city_id, limit, after, start, end;
    bool bad = false;
    json_t *city;

    (void)app;
    if (catalog_cache_answer(t, req) || !page_params(req, &limit, &after))
        return;
    const char *language = http_req_query(req, "language", &bad);
    const char *genre = bad ? NULL : http_req_query(req, "genre", &bad);
    if (bad || (city = path_city(req, &city_id)) == NULL)
        return;
    bool ok =
        day_window(req, city, clock_wall_ms(t->cat->clock), &start, &end, NULL);
    json_decref(city);
    if (!ok)
        return;
    if (store_prepare(t->conn, SQL_CITY_MOVIES, &st) != ERR_OK) {
        answer_db_error(req);
        return;
    }
    store_bind_int(st, 1, city_id);
    store_bind_int(st, 2, start);
    store_bind_int(st, 3, end);
    if (language != NULL)
        store_bind_text(st, 4, language);
    if (genre != NULL)
        store_bind_text(st, 5, genre);
    answer_list(req, st, 6, after, limit, catalog_movie_get);
}

/* GET of one resource by the id in the path, through the cache. */
static void get_one(struct http_req *req, const char *param, const char *what,
                    json_t *(*get)(struct store_conn *, int64_t))
{
    struct catalog_thread *t = thread_of(req);
    int64_t id;

    if (catalog_cache_answer(t, req) || !http_req_param_id(req, param, &id))
        return;
    json_t *item = get(t->conn, id);
    if (item == NULL) {
        http_respond_problem(req, 404, "not-found", "Not found",
                             "there is no %s %lld", what, (long long)id);
        return;
    }
    catalog_cache_respond(t, req, item, CATALOG_CACHE_ITEM);
}

void catalog_get_city(struct http_req *req, void *app)
{
    (void)app;
    get_one(req, "city_id", "city", catalog_city_get);
}

void catalog_get_cinema(struct http_req *req, void *app)
{
    (void)app;
    get_one(req, "cinema_id", "cinema", catalog_cinema_get);
}

void catalog_get_screen(struct http_req *req, void *app)
{
    (void)app;
    get_one(req, "screen_id", "screen", catalog_screen_get);
}

void catalog_get_movie(struct http_req *req, void *app)
{
    (void)app;
    get_one(req, "movie_id", "movie", catalog_movie_get);
}

static const char SQL_MOVIE_SHOWS[] =
    "SELECT c.id, s.id, s.starts_at, s.ends_at, sc.id, sc.name, s.prices "
    "FROM shows s JOIN screens sc ON sc.id = s.screen_id "
    "JOIN cinemas c ON c.id = sc.cinema_id "
    "WHERE s.movie_id = ?1 AND c.city_id = ?2 AND s.status = 'scheduled' "
    "AND s.starts_at >= ?3 AND s.starts_at < ?4 "
    "ORDER BY c.name, c.id, s.starts_at LIMIT ?5";

/* Groups the rows of SQL_MOVIE_SHOWS by cinema. */
static json_t *group_by_cinema(struct catalog_thread *t, struct store_stmt *st,
                               int *rc)
{
    json_t *groups = json_array(), *shows = NULL;
    int64_t current = 0;

    while ((*rc = store_step(st)) == STORE_ROW) {
        int64_t cinema_id = store_col_int(st, 0);
        if (cinema_id != current) {
            json_t *cinema = catalog_cinema_get(t->conn, cinema_id);
            shows = json_array();
            json_array_append_new(groups, json_pack("{s:o, s:o}", "cinema",
                                                    cinema, "shows", shows));
            current = cinema_id;
        }
        json_error_t err;
        json_t *prices = json_loads(store_col_text(st, 6), 0, &err);
        json_array_append_new(
            shows, json_pack("{s:I, s:o, s:o, s:{s:I, s:s}, s:o}", "id",
                             (json_int_t)store_col_int(st, 1), "starts_at",
                             catalog_time_json(store_col_int(st, 2)), "ends_at",
                             catalog_time_json(store_col_int(st, 3)), "screen",
                             "id", (json_int_t)store_col_int(st, 4), "name",
                             store_col_text(st, 5), "prices",
                             prices != NULL ? prices : json_null()));
    }
    store_reset(st);
    return groups;
}

void catalog_list_movie_shows(struct http_req *req, void *app)
{
    struct catalog_thread *t = thread_of(req);
    struct store_stmt *st;
    int64_t movie_id, city_id, start, end;
    char date[11];
    bool bad = false;
    json_t *movie, *city;
    int rc;

    (void)app;
    if (catalog_cache_answer(t, req) ||
        !http_req_param_id(req, "movie_id", &movie_id))
        return;
    const char *city_s = http_req_query(req, "city", &bad);
    if (bad)
        return;
    char *rest = NULL;
    city_id = city_s != NULL ? strtoll(city_s, &rest, 10) : 0;
    if (city_s == NULL || rest == city_s || *rest != '\0' || city_id < 1) {
        http_respond_problem(req, 400, "invalid-query",
                             "Invalid query parameter",
                             "city is required: the id of a city");
        return;
    }
    if ((movie = catalog_movie_get(t->conn, movie_id)) == NULL) {
        http_respond_problem(req, 404, "not-found", "Not found",
                             "there is no movie %lld", (long long)movie_id);
        return;
    }
    if ((city = catalog_city_get(t->conn, city_id)) == NULL) {
        json_decref(movie);
        http_respond_problem(req, 404, "not-found", "Not found",
                             "there is no city %lld", (long long)city_id);
        return;
    }
    if (!day_window(req, city, clock_wall_ms(t->cat->clock), &start, &end,
                    date) ||
        store_prepare(t->conn, SQL_MOVIE_SHOWS, &st) != ERR_OK) {
        if (!http_req_answered(req))
            answer_db_error(req);
        json_decref(movie);
        json_decref(city);
        return;
    }
    store_bind_int(st, 1, movie_id);
    store_bind_int(st, 2, city_id);
    store_bind_int(st, 3, start);
    store_bind_int(st, 4, end);
    store_bind_int(st, 5, CATALOG_DAY_SHOWS_MAX);
    json_t *groups = group_by_cinema(t, st, &rc);
    if (rc < 0) {
        json_decref(groups);
        json_decref(movie);
        json_decref(city);
        answer_db_error(req);
        return;
    }
    catalog_cache_respond(t, req,
                          json_pack("{s:o, s:o, s:s, s:o}", "movie", movie,
                                    "city", city, "date", date, "cinemas",
                                    groups),
                          CATALOG_CACHE_LIST);
}

void catalog_get_show(struct http_req *req, void *app)
{
    (void)app;
    get_one(req, "show_id", "show", catalog_show_get);
}
