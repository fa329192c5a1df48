/*
 * admin.c - the catalog's admin writes.
 *
 * A write is checked on the loop thread (shape, types, limits, times),
 * then applied on the store's writer thread, which checks what needs the
 * database (references, overlaps, prices against the layout) inside the
 * batch transaction, so two racing writes cannot both pass a check.  The
 * client is answered only once the batch is durable.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "domain/layout.h"
#include "services/catalog/internal.h"

void catalog_write_free(struct catalog_write *w)
{
    if (w == NULL)
        return;
    json_decref(w->input);
    json_decref(w->result);
    free(w->errors);
    free(w);
}

static void fail(struct catalog_write *w, int status, const char *code,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void fail(struct catalog_write *w, int status, const char *code,
                 const char *fmt, ...)
{
    va_list ap;

    w->status = status;
    snprintf(w->code, sizeof(w->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(w->detail, sizeof(w->detail), fmt, ap);
    va_end(ap);
}

/* A 422 naming the field at fault, as the loop-thread checks would. */
static void fail_field(struct catalog_write *w, const char *field,
                       const char *code, const char *detail)
{
    if (w->errors == NULL)
        w->errors = calloc(1, sizeof(*w->errors));
    if (w->errors != NULL)
        verr_add(w->errors, field, code, "%s", detail);
    if (w->errors != NULL && w->errors->n > 1)
        fail(w, 422, code, "the body has %zu invalid fields", w->errors->n);
    else
        fail(w, 422, code, "%s", detail);
}

/* --- checking bodies (loop thread, no I/O) ------------------------------ */

static bool all_chars(const char *s, int (*ok)(int), const char *extra)
{
    for (; *s != '\0'; s++)
        if (!ok((unsigned char)*s) && strchr(extra, *s) == NULL)
            return false;
    return true;
}

static int is_lower_or_digit(int c)
{
    return islower(c) || isdigit(c);
}

static json_t *prepare_city(json_t *b, struct verrs *e)
{
    static const char *const known[] = {"name", "slug", "utc_offset_minutes",
                                        "currency", NULL};
    const char *name = NULL, *slug = NULL, *currency = NULL;
    int64_t offset = 0;

    jv_no_unknown(b, "", known, e);
    jv_string(b, "name", "name", true, 1, 64, &name, e);
    if (jv_string(b, "slug", "slug", true, 1, 32, &slug, e) &&
        !all_chars(slug, is_lower_or_digit, "-"))
        verr_add(e, "slug", "invalid-format",
                 "slug must be lower-case letters, digits and '-'");
    jv_int(b, "utc_offset_minutes", "utc_offset_minutes", true, -720, 840,
           &offset, e);
    if (jv_string(b, "currency", "currency", true, 3, 3, &currency, e) &&
        !all_chars(currency, isupper, ""))
        verr_add(e, "currency", "invalid-format",
                 "currency must be an ISO 4217 code such as INR");
    if (verr_any(e))
        return NULL;
    return json_pack("{s:s, s:s, s:I, s:s}", "name", name, "slug", slug,
                     "utc_offset_minutes", (json_int_t)offset, "currency",
                     currency);
}

static json_t *prepare_cinema(json_t *b, struct verrs *e)
{
    static const char *const known[] = {"city_id", "name", "address", NULL};
    const char *name = NULL, *address = NULL;
    int64_t city_id = 0;

    jv_no_unknown(b, "", known, e);
    jv_int(b, "city_id", "city_id", true, 1, INT64_MAX, &city_id, e);
    jv_string(b, "name", "name", true, 1, 100, &name, e);
    jv_string(b, "address", "address", true, 1, 300, &address, e);
    if (verr_any(e))
        return NULL;
    return json_pack("{s:I, s:s, s:s}", "city_id", (json_int_t)city_id, "name",
                     name, "address", address);
}

static json_t *prepare_screen(json_t *b, struct verrs *e)
{
    static const char *const known[] = {"name", "layout", NULL};
    struct layout_summary sum;
    const char *name = NULL;
    json_t *layout = NULL, *norm = NULL;

    jv_no_unknown(b, "", known, e);
    jv_string(b, "name", "name", true, 1, 40, &name, e);
    if (jv_object(b, "layout", "layout", true, &layout, e))
        norm = layout_check(layout, "layout", &sum, e);
    if (verr_any(e)) {
        json_decref(norm);
        return NULL;
    }
    return json_pack("{s:s, s:o, s:I}", "name", name, "layout", norm,
                     "seat_count", (json_int_t)sum.seat_count);
}

static json_t *prepare_movie(json_t *b, struct verrs *e)
{
    static const char *const known[] = {
        "title",       "language",     "genres",   "duration_minutes",
        "certificate", "release_date", "synopsis", NULL};
    static const char *const certificates[] = {"U", "UA", "A", "S", NULL};
    const char *title = NULL, *language = NULL, *cert = NULL, *date = NULL;
    const char *synopsis = "";
    int64_t minutes = 0, days;
    json_t *genres = NULL, *norm = json_array();
    char path[VERR_FIELD_MAX];

    jv_no_unknown(b, "", known, e);
    jv_string(b, "title", "title", true, 1, 200, &title, e);
    jv_string(b, "language", "language", true, 1, 40, &language, e);
    if (jv_array(b, "genres", "genres", true, 1, 8, &genres, e)) {
        for (size_t i = 0; i < json_array_size(genres); i++) {
            json_t *g = json_array_get(genres, i);
            jv_path_index(path, "genres", i);
            size_t len = json_is_string(g) ? json_string_length(g) : 0;
            if (len < 1 || len > 30) {
                verr_add(e, path, "wrong-type",
                         "%s must be a string of 1 to 30 characters", path);
                continue;
            }
            char lower[31];
            for (size_t k = 0; k <= len; k++)
                lower[k] =
                    (char)tolower((unsigned char)json_string_value(g)[k]);
            json_array_append_new(norm, json_string(lower));
        }
    }
    jv_int(b, "duration_minutes", "duration_minutes", true, 1, 600, &minutes,
           e);
    if (jv_string(b, "certificate", "certificate", true, 1, 2, &cert, e)) {
        bool ok = false;
        for (size_t i = 0; certificates[i] != NULL; i++)
            ok = ok || strcmp(cert, certificates[i]) == 0;
        if (!ok)
            verr_add(e, "certificate", "invalid-format",
                     "certificate must be one of U, UA, A, S");
    }
    if (jv_string(b, "release_date", "release_date", true, 10, 10, &date, e) &&
        clock_parse_date(date, &days) != ERR_OK)
        verr_add(e, "release_date", "invalid-format",
                 "release_date must be a calendar date, YYYY-MM-DD");
    jv_string(b, "synopsis", "synopsis", false, 0, 2000, &synopsis, e);
    if (verr_any(e)) {
        json_decref(norm);
        return NULL;
    }
    return json_pack("{s:s, s:s, s:o, s:I, s:s, s:s, s:s}", "title", title,
                     "language", language, "genres", norm, "duration_minutes",
                     (json_int_t)minutes, "certificate", cert, "release_date",
                     date, "synopsis", synopsis);
}

static bool check_time(json_t *b, const char *key, bool required, int64_t *out,
                       struct verrs *e)
{
    const char *s = NULL;

    if (!jv_string(b, key, key, required, 1, 40, &s, e))
        return false;
    if (clock_parse_rfc3339(s, out) != ERR_OK) {
        verr_add(e, key, "invalid-format",
                 "%s must be an RFC 3339 time, e.g. 2026-12-24T18:30:00+05:30",
                 key);
        return false;
    }
    return true;
}

/*
 * "cancellation": {"until_minutes_before": 120, "fee_percent": 10}, both
 * optional; the defaults stay where a member is absent.
 */
static void check_cancellation(json_t *b, int64_t *minutes, int64_t *fee,
                               struct verrs *e)
{
    static const char *const known[] = {"until_minutes_before",
                                        "fee_percent", NULL};
    json_t *policy = NULL;

    if (!jv_object(b, "cancellation", "cancellation", false, &policy, e) ||
        policy == NULL)
        return;
    jv_no_unknown(policy, "cancellation", known, e);
    jv_int(policy, "until_minutes_before",
           "cancellation.until_minutes_before", false, 0,
           CATALOG_CANCEL_MINUTES_MAX, minutes, e);
    jv_int(policy, "fee_percent", "cancellation.fee_percent", false, 0, 100,
           fee, e);
}

static json_t *prepare_show(json_t *b, int64_t now_ms, struct verrs *e)
{
    static const char *const known[] = {
        "movie_id",        "screen_id",    "starts_at",
        "ends_at",         "prices",       "hold_seconds",
        "no_orphan_seats", "cancellation", NULL};
    int64_t movie_id = 0, screen_id = 0, starts = 0, ends = 0;
    int64_t hold = CATALOG_HOLD_SECONDS_DEFAULT;
    json_t *prices = NULL;
    bool no_orphan = false;
    int64_t cancel_minutes = CATALOG_CANCEL_MINUTES_DEFAULT;
    int64_t cancel_fee = CATALOG_CANCEL_FEE_DEFAULT;

    jv_no_unknown(b, "", known, e);
    jv_int(b, "movie_id", "movie_id", true, 1, INT64_MAX, &movie_id, e);
    jv_int(b, "screen_id", "screen_id", true, 1, INT64_MAX, &screen_id, e);
    if (check_time(b, "starts_at", true, &starts, e) && starts <= now_ms)
        verr_add(e, "starts_at", "show-in-past",
                 "starts_at must be in the future");
    bool has_end = check_time(b, "ends_at", false, &ends, e);
    if (has_end && starts > 0 &&
        (ends <= starts || ends - starts > CATALOG_SHOW_MINUTES_MAX * 60000LL))
        verr_add(e, "ends_at", "invalid-range",
                 "ends_at must be after starts_at, by at most %d hours",
                 CATALOG_SHOW_MINUTES_MAX / 60);
    jv_object(b, "prices", "prices", true, &prices, e);
    jv_int(b, "hold_seconds", "hold_seconds", false, CATALOG_HOLD_SECONDS_MIN,
           CATALOG_HOLD_SECONDS_MAX, &hold, e);
    jv_bool(b, "no_orphan_seats", "no_orphan_seats", false, &no_orphan, e);
    check_cancellation(b, &cancel_minutes, &cancel_fee, e);
    if (verr_any(e))
        return NULL;
    /* ends_at 0: the writer derives it from the movie's duration. */
    return json_pack(
        "{s:I, s:I, s:I, s:I, s:O, s:I, s:b, s:I, s:I}", "movie_id",
        (json_int_t)movie_id, "screen_id", (json_int_t)screen_id, "starts_at",
        (json_int_t)starts, "ends_at", (json_int_t)(has_end ? ends : 0),
        "prices", prices, "hold_seconds", (json_int_t)hold, "no_orphan_seats",
        no_orphan, "cancel_until_minutes", (json_int_t)cancel_minutes,
        "cancel_fee_percent", (json_int_t)cancel_fee);
}

static json_t *prepare_cancel(json_t *b, struct verrs *e)
{
    static const char *const known[] = {"reason", NULL};
    const char *reason = "cancelled by the cinema";

    jv_no_unknown(b, "", known, e);
    jv_string(b, "reason", "reason", false, 1, 200, &reason, e);
    if (verr_any(e))
        return NULL;
    return json_pack("{s:s}", "reason", reason);
}

struct catalog_write *catalog_write_prepare(struct catalog *cat,
                                            enum catalog_op op, json_t *body,
                                            int64_t parent_id, int64_t now_ms,
                                            struct verrs *e)
{
    json_t *input = NULL;

    switch (op) {
    case CATALOG_OP_CITY: input = prepare_city(body, e); break;
    case CATALOG_OP_CINEMA: input = prepare_cinema(body, e); break;
    case CATALOG_OP_SCREEN: input = prepare_screen(body, e); break;
    case CATALOG_OP_MOVIE: input = prepare_movie(body, e); break;
    case CATALOG_OP_SHOW: input = prepare_show(body, now_ms, e); break;
    case CATALOG_OP_CANCEL_SHOW: input = prepare_cancel(body, e); break;
    }
    if (input == NULL)
        return NULL;

    struct catalog_write *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        json_decref(input);
        return NULL;
    }
    w->cat = cat;
    w->op = op;
    w->input = input;
    w->parent_id = parent_id;
    w->w.apply = catalog_write_apply;
    w->w.arg = w;
    return w;
}

/* --- applying (writer thread, inside the batch transaction) ------------ */

static const char *in_str(struct catalog_write *w, const char *key)
{
    return json_string_value(json_object_get(w->input, key));
}

static int64_t in_int(struct catalog_write *w, const char *key)
{
    return json_integer_value(json_object_get(w->input, key));
}

/* Runs an INSERT already bound; maps a uniqueness clash to 409. */
static int run_insert(struct catalog_write *w, struct store_conn *c,
                      struct store_stmt *st, const char *what, int64_t *id)
{
    int rc = store_step(st);

    store_reset(st);
    if (rc == ERR_CONFLICT) {
        fail(w, 409, "duplicate", "a %s with that name already exists", what);
        return rc;
    }
    if (rc < 0) {
        fail(w, 503, "unavailable", "the catalog database failed");
        return rc;
    }
    *id = store_last_insert_id(c);
    return ERR_OK;
}

static bool exists(struct store_conn *c, const char *sql, int64_t id)
{
    struct store_stmt *st;

    if (store_prepare(c, sql, &st) != ERR_OK)
        return false;
    store_bind_int(st, 1, id);
    bool found = store_step(st) == STORE_ROW;
    store_reset(st);
    return found;
}

static const char SQL_INSERT_CITY[] =
    "INSERT INTO cities (name, slug, utc_offset_minutes, currency) "
    "VALUES (?, ?, ?, ?)";

static int apply_city(struct catalog_write *w, struct store_conn *c)
{
    struct store_stmt *st;
    int64_t id;
    int rc = store_prepare(c, SQL_INSERT_CITY, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, in_str(w, "name"));
    store_bind_text(st, 2, in_str(w, "slug"));
    store_bind_int(st, 3, in_int(w, "utc_offset_minutes"));
    store_bind_text(st, 4, in_str(w, "currency"));
    if ((rc = run_insert(w, c, st, "city", &id)) != ERR_OK)
        return rc;
    w->result = catalog_city_get(c, id);
    return ERR_OK;
}

static const char SQL_CITY_EXISTS[] = "SELECT 1 FROM cities WHERE id = ?";
static const char SQL_INSERT_CINEMA[] =
    "INSERT INTO cinemas (city_id, name, address) VALUES (?, ?, ?)";

static int apply_cinema(struct catalog_write *w, struct store_conn *c)
{
    struct store_stmt *st;
    int64_t id, city_id = in_int(w, "city_id");
    int rc;

    if (!exists(c, SQL_CITY_EXISTS, city_id)) {
        fail_field(w, "city_id", "unknown-reference", "there is no such city");
        return ERR_NOTFOUND;
    }
    if ((rc = store_prepare(c, SQL_INSERT_CINEMA, &st)) != ERR_OK)
        return rc;
    store_bind_int(st, 1, city_id);
    store_bind_text(st, 2, in_str(w, "name"));
    store_bind_text(st, 3, in_str(w, "address"));
    if ((rc = run_insert(w, c, st, "cinema in this city", &id)) != ERR_OK)
        return rc;
    w->result = catalog_cinema_get(c, id);
    return ERR_OK;
}

static const char SQL_CINEMA_EXISTS[] = "SELECT 1 FROM cinemas WHERE id = ?";
static const char SQL_INSERT_SCREEN[] =
    "INSERT INTO screens (cinema_id, name, layout, seat_count) "
    "VALUES (?, ?, ?, ?)";

static int apply_screen(struct catalog_write *w, struct store_conn *c)
{
    struct store_stmt *st;
    int64_t id;
    int rc;

    if (!exists(c, SQL_CINEMA_EXISTS, w->parent_id)) {
        fail(w, 404, "not-found", "there is no cinema %lld",
             (long long)w->parent_id);
        return ERR_NOTFOUND;
    }
    char *layout =
        json_dumps(json_object_get(w->input, "layout"), JSON_COMPACT);
    if (layout == NULL)
        return ERR_NOMEM;
    if ((rc = store_prepare(c, SQL_INSERT_SCREEN, &st)) != ERR_OK) {
        free(layout);
        return rc;
    }
    store_bind_int(st, 1, w->parent_id);
    store_bind_text(st, 2, in_str(w, "name"));
    store_bind_text(st, 3, layout);
    store_bind_int(st, 4, in_int(w, "seat_count"));
    rc = run_insert(w, c, st, "screen in this cinema", &id);
    free(layout);
    if (rc != ERR_OK)
        return rc;
    w->result = catalog_screen_get(c, id);
    return ERR_OK;
}

static const char SQL_INSERT_MOVIE[] =
    "INSERT INTO movies (title, language, genres, duration_minutes, "
    "certificate, release_date, synopsis) VALUES (?, ?, ?, ?, ?, ?, ?)";
static const char SQL_INSERT_GENRE[] =
    "INSERT OR IGNORE INTO movie_genres (movie_id, genre) VALUES (?, ?)";

static int apply_movie(struct catalog_write *w, struct store_conn *c)
{
    struct store_stmt *st;
    json_t *genres = json_object_get(w->input, "genres");
    int64_t id;
    int rc;
    char *genres_text = json_dumps(genres, JSON_COMPACT);

    if (genres_text == NULL)
        return ERR_NOMEM;
    if ((rc = store_prepare(c, SQL_INSERT_MOVIE, &st)) != ERR_OK) {
        free(genres_text);
        return rc;
    }
    store_bind_text(st, 1, in_str(w, "title"));
    store_bind_text(st, 2, in_str(w, "language"));
    store_bind_text(st, 3, genres_text);
    store_bind_int(st, 4, in_int(w, "duration_minutes"));
    store_bind_text(st, 5, in_str(w, "certificate"));
    store_bind_text(st, 6, in_str(w, "release_date"));
    store_bind_text(st, 7, in_str(w, "synopsis"));
    rc = run_insert(w, c, st, "movie", &id);
    free(genres_text);
    if (rc != ERR_OK)
        return rc;
    for (size_t i = 0; i < json_array_size(genres); i++) {
        if ((rc = store_prepare(c, SQL_INSERT_GENRE, &st)) != ERR_OK)
            return rc;
        store_bind_int(st, 1, id);
        store_bind_text(st, 2, json_string_value(json_array_get(genres, i)));
        rc = store_step(st);
        store_reset(st);
        if (rc < 0)
            return rc;
    }
    w->result = catalog_movie_get(c, id);
    return ERR_OK;
}

static const char SQL_SHOW_OVERLAP[] =
    "SELECT id FROM shows WHERE screen_id = ? AND status = 'scheduled' "
    "AND starts_at < ? AND ends_at > ? LIMIT 1";
static const char SQL_INSERT_SHOW[] =
    "INSERT INTO shows (movie_id, screen_id, starts_at, ends_at, prices, "
    "hold_seconds, no_orphan_seats, cancel_until_minutes, "
    "cancel_fee_percent, status) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'scheduled')";

/* The other scheduled show on the screen that [start, end) overlaps. */
static int64_t find_overlap(struct store_conn *c, int64_t screen_id,
                            int64_t start, int64_t end)
{
    struct store_stmt *st;
    int64_t other = 0;

    if (store_prepare(c, SQL_SHOW_OVERLAP, &st) != ERR_OK)
        return -1;
    store_bind_int(st, 1, screen_id);
    store_bind_int(st, 2, end);
    store_bind_int(st, 3, start);
    if (store_step(st) == STORE_ROW)
        other = store_col_int(st, 0);
    store_reset(st);
    return other;
}

/* Loads the movie and screen a show refers to; records what is missing. */
static int show_references(struct catalog_write *w, struct store_conn *c,
                           json_t **movie, struct layout_summary *sum)
{
    int64_t screen_id = in_int(w, "screen_id");
    json_t *screen;

    *movie = catalog_movie_get(c, in_int(w, "movie_id"));
    screen = catalog_screen_get(c, screen_id);
    if (*movie == NULL)
        fail_field(w, "movie_id", "unknown-reference",
                   "there is no such movie");
    if (screen == NULL)
        fail_field(w, "screen_id", "unknown-reference",
                   "there is no such screen");
    if (*movie == NULL || screen == NULL) {
        json_decref(*movie);
        json_decref(screen);
        return ERR_NOTFOUND;
    }
    int rc = layout_summarize(json_object_get(screen, "layout"), sum);
    json_decref(screen);
    if (rc != ERR_OK) {
        json_decref(*movie);
        fail(w, 503, "unavailable", "screen %lld has a corrupt layout",
             (long long)screen_id);
    }
    return rc;
}

/*
 * With the outbox backend, the show's event is written by the same job as
 * the change: both commit, or neither does.  The event carries the
 * version just written, read back in w->result.
 */
static int add_show_event(struct catalog_write *w, struct store_conn *c,
                          const char *type)
{
    struct show_event ev = {.type = type};

    if (!show_events_uses_outbox(&w->cat->events))
        return ERR_OK;
    ev.show_id = json_integer_value(json_object_get(w->result, "id"));
    ev.version = json_integer_value(json_object_get(w->result, "version"));
    int rc = show_events_outbox_add(c, &ev, clock_wall_ms(w->cat->clock));
    if (rc != ERR_OK)
        fail(w, 503, "unavailable", "the show's event could not be stored");
    return rc;
}

static int apply_show(struct catalog_write *w, struct store_conn *c)
{
    struct layout_summary sum;
    struct store_stmt *st;
    json_t *movie;
    int64_t id, start = in_int(w, "starts_at"), end = in_int(w, "ends_at");
    int rc = show_references(w, c, &movie, &sum);

    if (rc != ERR_OK)
        return rc;
    if (end == 0)
        end = start +
              json_integer_value(json_object_get(movie, "duration_minutes")) *
                  60000;
    json_decref(movie);

    struct verrs *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return ERR_NOMEM;
    layout_check_prices(&sum, json_object_get(w->input, "prices"), "prices",
                        CATALOG_PRICE_MAX, e);
    if (verr_any(e)) {
        w->errors = e;
        fail(w, 422, "validation-failed", "the prices do not fit the layout");
        return ERR_INVALID;
    }
    free(e);

    int64_t other = find_overlap(c, in_int(w, "screen_id"), start, end);
    if (other != 0) {
        fail(w, 409, "show-overlap",
             "the screen already has show %lld at that time", (long long)other);
        return ERR_CONFLICT;
    }
    char *prices = json_dumps(json_object_get(w->input, "prices"),
                              JSON_COMPACT | JSON_SORT_KEYS);
    if (prices == NULL)
        return ERR_NOMEM;
    if ((rc = store_prepare(c, SQL_INSERT_SHOW, &st)) != ERR_OK) {
        free(prices);
        return rc;
    }
    store_bind_int(st, 1, in_int(w, "movie_id"));
    store_bind_int(st, 2, in_int(w, "screen_id"));
    store_bind_int(st, 3, start);
    store_bind_int(st, 4, end);
    store_bind_text(st, 5, prices);
    store_bind_int(st, 6, in_int(w, "hold_seconds"));
    store_bind_int(st, 7,
                   json_is_true(json_object_get(w->input, "no_orphan_seats")));
    store_bind_int(st, 8, in_int(w, "cancel_until_minutes"));
    store_bind_int(st, 9, in_int(w, "cancel_fee_percent"));
    rc = run_insert(w, c, st, "show", &id);
    free(prices);
    if (rc != ERR_OK)
        return rc;
    if ((w->result = catalog_show_get(c, id)) == NULL)
        return ERR_OK; /* catalog_write_apply answers 503 */
    return add_show_event(w, c, SHOW_EVENT_SCHEDULED);
}

static const char SQL_SHOW_STATE[] =
    "SELECT status, starts_at FROM shows WHERE id = ?";
static const char SQL_CANCEL_SHOW[] =
    "UPDATE shows SET status = 'cancelled', cancel_reason = ?, "
    "version = version + 1 WHERE id = ? AND status = 'scheduled'";

static int apply_cancel(struct catalog_write *w, struct store_conn *c)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_SHOW_STATE, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_int(st, 1, w->parent_id);
    if (store_step(st) != STORE_ROW) {
        store_reset(st);
        fail(w, 404, "not-found", "there is no show %lld",
             (long long)w->parent_id);
        return ERR_NOTFOUND;
    }
    bool cancelled = strcmp(store_col_text(st, 0), "cancelled") == 0;
    int64_t starts = store_col_int(st, 1);
    store_reset(st);

    /* Cancelling twice is answered like the first time. */
    if (!cancelled) {
        if (starts <= clock_wall_ms(w->cat->clock)) {
            fail(w, 409, "show-started", "show %lld has already started",
                 (long long)w->parent_id);
            return ERR_CONFLICT;
        }
        if ((rc = store_prepare(c, SQL_CANCEL_SHOW, &st)) != ERR_OK)
            return rc;
        store_bind_text(st, 1, in_str(w, "reason"));
        store_bind_int(st, 2, w->parent_id);
        rc = store_step(st);
        store_reset(st);
        if (rc < 0)
            return rc;
    }
    w->result = catalog_show_get(c, w->parent_id);
    if (cancelled || w->result == NULL)
        return ERR_OK;
    return add_show_event(w, c, SHOW_EVENT_CANCELLED);
}

int catalog_write_apply(struct store_conn *c, void *arg)
{
    struct catalog_write *w = arg;
    int rc = ERR_INVALID;

    switch (w->op) {
    case CATALOG_OP_CITY: rc = apply_city(w, c); break;
    case CATALOG_OP_CINEMA: rc = apply_cinema(w, c); break;
    case CATALOG_OP_SCREEN: rc = apply_screen(w, c); break;
    case CATALOG_OP_MOVIE: rc = apply_movie(w, c); break;
    case CATALOG_OP_SHOW: rc = apply_show(w, c); break;
    case CATALOG_OP_CANCEL_SHOW: rc = apply_cancel(w, c); break;
    }
    if (rc != ERR_OK && w->status == 0)
        fail(w, 503, "unavailable", "the catalog database failed: %s",
             err_msg(rc));
    if (rc == ERR_OK && w->result == NULL) {
        fail(w, 503, "unavailable", "the written row could not be read");
        rc = ERR_DB;
    }
    return rc;
}

/* --- HTTP handlers ------------------------------------------------------ */

/* Tells subscribers about a durable change to a show. */
static void publish_show_change(const struct catalog_write *w)
{
    struct show_event ev;

    if (w->op == CATALOG_OP_SHOW)
        ev.type = SHOW_EVENT_SCHEDULED;
    else if (w->op == CATALOG_OP_CANCEL_SHOW)
        ev.type = SHOW_EVENT_CANCELLED;
    else
        return;
    ev.show_id = json_integer_value(json_object_get(w->result, "id"));
    ev.version = json_integer_value(json_object_get(w->result, "version"));
    /* A dropped event is logged by the backend; booking fetches shows on
     * demand, so the write stands either way. */
    (void)show_events_publish(&w->cat->events, &ev);
}

static void answer_write(struct http_req *req, void *arg)
{
    struct catalog_write *w = arg;

    /* The write is durable even when its client has gone: publish first. */
    if (w->status == 0)
        publish_show_change(w);
    if (req == NULL) {
        catalog_write_free(w);
        return;
    }
    if (w->status == 503) {
        http_respond_unavailable(req, 1, w->detail);
    } else if (w->status == 422) {
        struct verrs none = {0};
        http_respond_problem_ext(
            req, 422, "validation-failed", "Validation failed", w->detail,
            json_pack("{s:o}", "errors",
                      verr_to_json(w->errors ? w->errors : &none)));
    } else if (w->status != 0) {
        http_respond_problem(req, w->status, w->code,
                             w->status == 404 ? "Not found" : "Conflict", "%s",
                             w->detail);
    } else {
        int created = w->op != CATALOG_OP_CANCEL_SHOW;
        json_t *result = json_incref(w->result);
        if (created) {
            static const char *const kinds[] = {"cities", "cinemas", "screens",
                                                "movies", "shows",   "shows"};
            char location[96];
            snprintf(
                location, sizeof(location), "/v1/%s/%lld", kinds[w->op],
                (long long)json_integer_value(json_object_get(result, "id")));
            http_set_header(req, "Location", location);
        }
        http_respond_json(req, created ? 201 : 200, result);
    }
    catalog_write_free(w);
}

static void on_write_done(void *arg, int rc)
{
    struct catalog_write *w = arg;

    if (rc != ERR_OK && w->status == 0)
        fail(w, 503, "unavailable", "the commit failed: %s", err_msg(rc));
    http_async_post(w->async, answer_write, w);
}

/*
 * The common path of every admin write: authentication first (an unknown
 * caller learns nothing, not even that an id is malformed), then the id in
 * the path (param, or NULL), then the body.
 */
static void submit(struct http_req *req, struct catalog *cat,
                   enum catalog_op op, const char *param)
{
    struct verrs e = {0};
    int64_t parent_id = 0;
    size_t len;
    json_t *body;

    if (!http_req_admin_ok(req, cat->admin_token))
        return;
    if (param != NULL && !http_req_param_id(req, param, &parent_id))
        return;
    /* Cancelling needs no reason: an empty body stands for {}. */
    http_req_body(req, &len);
    if (op == CATALOG_OP_CANCEL_SHOW && len == 0)
        body = json_object();
    else if ((body = json_incref(http_req_json(req))) == NULL)
        return;
    struct catalog_write *w = catalog_write_prepare(
        cat, op, body, parent_id, clock_wall_ms(cat->clock), &e);
    json_decref(body);
    if (w == NULL) {
        http_respond_problem_ext(
            req, 422, "validation-failed", "Validation failed",
            "the body has invalid fields",
            json_pack("{s:o}", "errors", verr_to_json(&e)));
        return;
    }
    w->w.done = on_write_done;
    w->async = http_req_defer(req);
    int rc = store_submit(cat->store, &w->w);
    if (rc != ERR_OK) {
        fail(w, 503, "unavailable",
             rc == ERR_FULL ? "too many writes are queued"
                            : "the catalog is shutting down");
        http_async_post(w->async, answer_write, w);
    }
}

void catalog_create_city(struct http_req *req, void *app)
{
    submit(req, app, CATALOG_OP_CITY, NULL);
}

void catalog_create_cinema(struct http_req *req, void *app)
{
    submit(req, app, CATALOG_OP_CINEMA, NULL);
}

void catalog_create_screen(struct http_req *req, void *app)
{
    submit(req, app, CATALOG_OP_SCREEN, "cinema_id");
}

void catalog_create_movie(struct http_req *req, void *app)
{
    submit(req, app, CATALOG_OP_MOVIE, NULL);
}

void catalog_create_show(struct http_req *req, void *app)
{
    submit(req, app, CATALOG_OP_SHOW, NULL);
}

void catalog_cancel_show(struct http_req *req, void *app)
{
    submit(req, app, CATALOG_OP_CANCEL_SHOW, "show_id");
}
