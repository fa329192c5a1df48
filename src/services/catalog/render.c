/*
 * render.c - catalog resources as JSON, read from the database.  The same
 * functions serve public reads and the answers to admin writes, so both
 * always show a resource the same way.
 */
#include "base/err.h"
#include "base/log.h"
#include "services/catalog/internal.h"

json_t *catalog_time_json(int64_t ms)
{
    char buf[CLOCK_RFC3339_LEN];

    clock_format_rfc3339(ms, buf);
    return json_string(buf);
}

/* Parses JSON text stored by the catalog itself; corruption is a bug. */
static json_t *stored_json(const char *text, const char *what, int64_t id)
{
    json_error_t err;
    json_t *v = json_loads(text, 0, &err);

    if (v == NULL) {
        log_error("catalog", "stored_json_corrupt what=%s id=%lld error=\"%s\"",
                  what, (long long)id, err.text);
        return json_null();
    }
    return v;
}

/* Runs a one-row query by id and builds its JSON; NULL when no row. */
static json_t *get_by_id(struct store_conn *c, const char *sql, int64_t id,
                         json_t *(*build)(struct store_stmt *, int64_t))
{
    struct store_stmt *st;
    json_t *out = NULL;

    if (store_prepare(c, sql, &st) != ERR_OK)
        return NULL;
    store_bind_int(st, 1, id);
    if (store_step(st) == STORE_ROW)
        out = build(st, id);
    store_reset(st);
    return out;
}

static const char SQL_CITY[] =
    "SELECT id, name, slug, utc_offset_minutes, currency FROM cities "
    "WHERE id = ?";

static json_t *city_from_row(struct store_stmt *st, int64_t id)
{
    (void)id;
    return json_pack("{s:I, s:s, s:s, s:I, s:s}", "id",
                     (json_int_t)store_col_int(st, 0), "name",
                     store_col_text(st, 1), "slug", store_col_text(st, 2),
                     "utc_offset_minutes", (json_int_t)store_col_int(st, 3),
                     "currency", store_col_text(st, 4));
}

json_t *catalog_city_get(struct store_conn *c, int64_t id)
{
    return get_by_id(c, SQL_CITY, id, city_from_row);
}

static const char SQL_CINEMA[] =
    "SELECT id, city_id, name, address FROM cinemas WHERE id = ?";

static json_t *cinema_from_row(struct store_stmt *st, int64_t id)
{
    (void)id;
    return json_pack("{s:I, s:I, s:s, s:s}", "id",
                     (json_int_t)store_col_int(st, 0), "city_id",
                     (json_int_t)store_col_int(st, 1), "name",
                     store_col_text(st, 2), "address", store_col_text(st, 3));
}

json_t *catalog_cinema_get(struct store_conn *c, int64_t id)
{
    return get_by_id(c, SQL_CINEMA, id, cinema_from_row);
}

static const char SQL_SCREEN[] =
    "SELECT id, cinema_id, name, seat_count, layout FROM screens "
    "WHERE id = ?";

static json_t *screen_from_row(struct store_stmt *st, int64_t id)
{
    return json_pack(
        "{s:I, s:I, s:s, s:I, s:o}", "id", (json_int_t)store_col_int(st, 0),
        "cinema_id", (json_int_t)store_col_int(st, 1), "name",
        store_col_text(st, 2), "seat_count", (json_int_t)store_col_int(st, 3),
        "layout", stored_json(store_col_text(st, 4), "layout", id));
}

json_t *catalog_screen_get(struct store_conn *c, int64_t id)
{
    return get_by_id(c, SQL_SCREEN, id, screen_from_row);
}

static const char SQL_MOVIE[] =
    "SELECT id, title, language, genres, duration_minutes, certificate, "
    "release_date, synopsis FROM movies WHERE id = ?";

static json_t *movie_from_row(struct store_stmt *st, int64_t id)
{
    return json_pack("{s:I, s:s, s:s, s:o, s:I, s:s, s:s, s:s}", "id",
                     (json_int_t)store_col_int(st, 0), "title",
                     store_col_text(st, 1), "language", store_col_text(st, 2),
                     "genres", stored_json(store_col_text(st, 3), "genres", id),
                     "duration_minutes", (json_int_t)store_col_int(st, 4),
                     "certificate", store_col_text(st, 5), "release_date",
                     store_col_text(st, 6), "synopsis", store_col_text(st, 7));
}

json_t *catalog_movie_get(struct store_conn *c, int64_t id)
{
    return get_by_id(c, SQL_MOVIE, id, movie_from_row);
}

static const char SQL_SHOW[] =
    "SELECT s.id, s.status, s.starts_at, s.ends_at, s.prices, "
    "s.hold_seconds, s.cancel_reason, s.version, "
    "m.id, m.title, m.language, m.duration_minutes, m.certificate, "
    "c.id, c.name, c.address, c.city_id, ci.currency, "
    "sc.id, sc.name, sc.seat_count, sc.layout, s.no_orphan_seats, "
    "s.cancel_until_minutes, s.cancel_fee_percent "
    "FROM shows s JOIN movies m ON m.id = s.movie_id "
    "JOIN screens sc ON sc.id = s.screen_id "
    "JOIN cinemas c ON c.id = sc.cinema_id "
    "JOIN cities ci ON ci.id = c.city_id WHERE s.id = ?";

static json_t *show_from_row(struct store_stmt *st, int64_t id)
{
    json_t *out;

    json_t *movie = json_pack(
        "{s:I, s:s, s:s, s:I, s:s}", "id", (json_int_t)store_col_int(st, 8),
        "title", store_col_text(st, 9), "language", store_col_text(st, 10),
        "duration_minutes", (json_int_t)store_col_int(st, 11), "certificate",
        store_col_text(st, 12));
    json_t *cinema = json_pack(
        "{s:I, s:s, s:s, s:I}", "id", (json_int_t)store_col_int(st, 13), "name",
        store_col_text(st, 14), "address", store_col_text(st, 15), "city_id",
        (json_int_t)store_col_int(st, 16));
    json_t *screen = json_pack(
        "{s:I, s:s, s:I, s:o}", "id", (json_int_t)store_col_int(st, 18), "name",
        store_col_text(st, 19), "seat_count", (json_int_t)store_col_int(st, 20),
        "layout", stored_json(store_col_text(st, 21), "layout", id));
    out = json_pack(
        "{s:I, s:s, s:o, s:o, s:o, s:o, s:o, s:s, s:o, s:I, s:I, s:b}", "id",
        (json_int_t)store_col_int(st, 0), "status", store_col_text(st, 1),
        "starts_at", catalog_time_json(store_col_int(st, 2)), "ends_at",
        catalog_time_json(store_col_int(st, 3)), "movie", movie, "cinema",
        cinema, "screen", screen, "currency", store_col_text(st, 17), "prices",
        stored_json(store_col_text(st, 4), "prices", id), "hold_seconds",
        (json_int_t)store_col_int(st, 5), "version",
        (json_int_t)store_col_int(st, 7), "no_orphan_seats",
        store_col_int(st, 22) != 0);
    json_object_set_new(out, "cancellation",
                        json_pack("{s:I, s:I}", "until_minutes_before",
                                  (json_int_t)store_col_int(st, 23),
                                  "fee_percent",
                                  (json_int_t)store_col_int(st, 24)));
    if (!store_col_is_null(st, 6))
        json_object_set_new(out, "cancel_reason",
                            json_string(store_col_text(st, 6)));
    return out;
}

json_t *catalog_show_get(struct store_conn *c, int64_t id)
{
    return get_by_id(c, SQL_SHOW, id, show_from_row);
}
