/*
 * demo.c - loads the demo data set into an empty catalog.
 *
 * Every record goes through the same checks and writes as the admin API
 * (catalog_write_prepare and catalog_write_apply), so the demo can never
 * hold what the API would refuse.  Its shows are not published as show
 * events: hundreds of them would crowd the notifier's queue at start-up,
 * and subscribers fetch a show they do not know on demand anyway.
 */
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "domain/layout.h"
#include "services/catalog/internal.h"

#define DEMO_DAYS_MAX              31
#define DEMO_ROWS_PER_TEMPLATE_MAX 26

/* Writes one record; returns the id of what was created, or 0. */
static int64_t demo_write(struct catalog *cat, enum catalog_op op, json_t *body,
                          int64_t parent_id)
{
    struct verrs e = {0};
    struct catalog_write *w = catalog_write_prepare(
        cat, op, body, parent_id, clock_wall_ms(cat->clock), &e);
    int64_t id = 0;

    json_decref(body);
    if (w == NULL) {
        log_error("catalog",
                  "demo_invalid op=%d field=%s code=%s detail=\"%s\"", (int)op,
                  e.items[0].field, e.items[0].code, e.items[0].detail);
        return 0;
    }
    int rc = store_write_sync(cat->store, catalog_write_apply, w);
    if (rc == ERR_OK)
        id = json_integer_value(json_object_get(w->result, "id"));
    else if (w->status == 409)
        log_debug("catalog", "demo_skipped op=%d detail=\"%s\"", (int)op,
                  w->detail);
    else
        log_error("catalog", "demo_write_failed op=%d code=%s detail=\"%s\"",
                  (int)op, w->code, w->detail);
    catalog_write_free(w);
    return id;
}

/* Expands {"labels": "A-F", "blocks": [4, 12, 4], ...} into rows. */
static void expand_rows(json_t *tmpl, json_t *rows)
{
    const char *labels = json_string_value(json_object_get(tmpl, "labels"));
    json_t *blocks = json_object_get(tmpl, "blocks");

    if (labels == NULL || strlen(labels) != 3 || labels[1] != '-')
        return;
    for (char r = labels[0];
         r <= labels[2] && r - labels[0] < DEMO_ROWS_PER_TEMPLATE_MAX; r++) {
        if (r == 'I' && labels[0] != 'I')
            continue; /* cinemas skip I: it reads like 1 */
        json_t *seats = json_array();
        int n = 1;
        for (size_t b = 0; b < json_array_size(blocks); b++) {
            if (b > 0)
                json_array_append_new(seats, json_null());
            for (json_int_t k = 0;
                 k < json_integer_value(json_array_get(blocks, b)); k++)
                json_array_append_new(seats, json_integer(n++));
        }
        char label[2] = {r, '\0'};
        json_t *row =
            json_pack("{s:s, s:O, s:o}", "label", label, "category",
                      json_object_get(tmpl, "category"), "seats", seats);
        if (json_object_get(tmpl, "accessible") != NULL)
            json_object_set(row, "accessible",
                            json_object_get(tmpl, "accessible"));
        if (json_object_get(tmpl, "companion") != NULL)
            json_object_set(row, "companion",
                            json_object_get(tmpl, "companion"));
        json_array_append_new(rows, row);
    }
}

static json_t *expand_layout(json_t *def)
{
    json_t *rows = json_array();
    json_t *tmpls = json_object_get(def, "rows");

    for (size_t i = 0; i < json_array_size(tmpls); i++)
        expand_rows(json_array_get(tmpls, i), rows);
    return json_pack("{s:O, s:o}", "categories",
                     json_object_get(def, "categories"), "rows", rows);
}

/* "20:00" on local day `day` (days since epoch) of a city, in epoch ms. */
static int64_t local_time_ms(int64_t day, const char *hhmm, int64_t offset_min)
{
    int h = 0, m = 0;

    if (sscanf(hhmm, "%d:%d", &h, &m) != 2)
        return 0;
    return ((day * 1440 + h * 60 + m) - offset_min) * 60000;
}

struct demo_counts {
    int screens;
    int shows;
};

static void load_shows(struct catalog *cat, json_t *doc, int64_t screen_id,
                       json_t *layout_def, int64_t offset_min,
                       const int64_t *movie_ids, size_t nmovies,
                       struct demo_counts *n)
{
    json_t *sched = json_object_get(doc, "schedule");
    json_t *times = json_object_get(sched, "times");
    int64_t days = json_integer_value(json_object_get(sched, "days"));
    int64_t now = clock_wall_ms(cat->clock);
    int64_t today = (now + offset_min * 60000) / 86400000;

    if (days > DEMO_DAYS_MAX)
        days = DEMO_DAYS_MAX;
    for (int64_t d = 0; d < days; d++) {
        for (size_t t = 0; t < json_array_size(times); t++) {
            int64_t start = local_time_ms(
                today + d, json_string_value(json_array_get(times, t)),
                offset_min);
            if (start <= now + 60000)
                continue;
            int64_t movie =
                movie_ids[(size_t)(screen_id + d * 3 + (int64_t)t) % nmovies];
            char when[CLOCK_RFC3339_LEN];
            clock_format_rfc3339(start, when);
            json_t *body = json_pack(
                "{s:I, s:I, s:s, s:O, s:O}", "movie_id", (json_int_t)movie,
                "screen_id", (json_int_t)screen_id, "starts_at", when, "prices",
                json_object_get(layout_def, "prices"), "hold_seconds",
                json_object_get(sched, "hold_seconds"));
            if (demo_write(cat, CATALOG_OP_SHOW, body, 0) != 0)
                n->shows++;
        }
    }
}

static void load_city(struct catalog *cat, json_t *doc, json_t *city,
                      const int64_t *movie_ids, size_t nmovies,
                      struct demo_counts *n)
{
    json_t *layouts = json_object_get(doc, "layouts");
    json_t *body = json_deep_copy(city);
    int64_t offset =
        json_integer_value(json_object_get(city, "utc_offset_minutes"));

    json_object_del(body, "cinemas");
    int64_t city_id = demo_write(cat, CATALOG_OP_CITY, body, 0);
    if (city_id == 0)
        return;

    json_t *cinemas = json_object_get(city, "cinemas");
    for (size_t i = 0; i < json_array_size(cinemas); i++) {
        json_t *cin = json_array_get(cinemas, i);
        int64_t cinema_id = demo_write(
            cat, CATALOG_OP_CINEMA,
            json_pack("{s:I, s:O, s:O}", "city_id", (json_int_t)city_id, "name",
                      json_object_get(cin, "name"), "address",
                      json_object_get(cin, "address")),
            0);
        json_t *screens = json_object_get(cin, "screens");
        for (size_t s = 0; cinema_id != 0 && s < json_array_size(screens);
             s++) {
            json_t *scr = json_array_get(screens, s);
            json_t *def = json_object_get(
                layouts, json_string_value(json_object_get(scr, "layout")));
            int64_t screen_id = demo_write(
                cat, CATALOG_OP_SCREEN,
                json_pack("{s:O, s:o}", "name", json_object_get(scr, "name"),
                          "layout", expand_layout(def)),
                cinema_id);
            if (screen_id == 0)
                continue;
            n->screens++;
            load_shows(cat, doc, screen_id, def, offset, movie_ids, nmovies, n);
        }
    }
}

static const char SQL_ANY_CITY[] = "SELECT 1 FROM cities LIMIT 1";

static bool catalog_empty(struct catalog *cat)
{
    struct store_conn *c;
    struct store_stmt *st;
    bool empty = false;

    if (store_conn_open(cat->store, &c) != ERR_OK)
        return false;
    if (store_prepare(c, SQL_ANY_CITY, &st) == ERR_OK) {
        empty = store_step(st) == ERR_OK;
        store_reset(st);
    }
    store_conn_close(c);
    return empty;
}

int catalog_demo_load(struct catalog *cat, const char *path)
{
    json_error_t err;
    struct demo_counts n = {0};
    int64_t movie_ids[64];
    size_t nmovies = 0;

    if (!catalog_empty(cat)) {
        log_info("catalog", "demo_skipped reason=\"database not empty\"");
        return ERR_OK;
    }
    json_t *doc = json_load_file(path, 0, &err);
    if (doc == NULL) {
        log_error("catalog", "demo_unreadable path=%s line=%d error=\"%s\"",
                  path, err.line, err.text);
        return ERR_CONFIG;
    }
    json_t *movies = json_object_get(doc, "movies");
    for (size_t i = 0; i < json_array_size(movies) && nmovies < 64; i++) {
        int64_t id = demo_write(cat, CATALOG_OP_MOVIE,
                                json_incref(json_array_get(movies, i)), 0);
        if (id != 0)
            movie_ids[nmovies++] = id;
    }
    json_t *cities = json_object_get(doc, "cities");
    for (size_t i = 0; nmovies > 0 && i < json_array_size(cities); i++)
        load_city(cat, doc, json_array_get(cities, i), movie_ids, nmovies, &n);
    json_decref(doc);
    log_info("catalog", "demo_loaded movies=%zu screens=%d shows=%d", nmovies,
             n.screens, n.shows);
    return nmovies > 0 && n.shows > 0 ? ERR_OK : ERR_CONFIG;
}
