/*
 * shows.c - each owner thread's table of shows, how shows get there (read
 * from the database at start, fetched from the catalog when first met or
 * when the catalog says one changed), and the seat map answer.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "domain/validate.h"
#include "http/client.h"
#include "services/booking/internal.h"

int booking_owner(const struct booking *b, int64_t show_id)
{
    return (int)(show_id % b->nthreads);
}

/* --- the owner's table ------------------------------------------------- */

static size_t slot_of(const struct booking_thread *t, int64_t show_id)
{
    uint64_t h = (uint64_t)show_id * 0x9e3779b97f4a7c15ULL;

    return (size_t)(h >> 32) & (t->shows_cap - 1);
}

static struct show_entry *table_get(struct booking_thread *t, int64_t id)
{
    if (t->shows_cap == 0)
        return NULL;
    for (size_t i = slot_of(t, id);; i = (i + 1) & (t->shows_cap - 1)) {
        if (t->shows[i] == NULL)
            return NULL;
        if (t->shows[i]->show_id == id)
            return t->shows[i];
    }
}

static void table_put(struct booking_thread *t, struct show_entry *e)
{
    size_t i = slot_of(t, e->show_id);

    while (t->shows[i] != NULL)
        i = (i + 1) & (t->shows_cap - 1);
    t->shows[i] = e;
}

/* Adds an entry for id; NULL when out of memory. */
static struct show_entry *table_add(struct booking_thread *t, int64_t id)
{
    if ((t->nshows + 1) * 2 > t->shows_cap) {
        size_t old_cap = t->shows_cap;
        struct show_entry **old = t->shows;
        size_t cap = old_cap == 0 ? BOOKING_SHOW_TABLE_MIN : old_cap * 2;
        struct show_entry **grown = calloc(cap, sizeof(*grown));
        if (grown == NULL)
            return NULL;
        t->shows = grown;
        t->shows_cap = cap;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i] != NULL)
                table_put(t, old[i]);
        free(old);
    }
    struct show_entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->show_id = id;
    table_put(t, e);
    t->nshows++;
    return e;
}

struct show_inv *booking_show_get(struct booking_thread *t, int64_t id)
{
    struct show_entry *e = table_get(t, id);

    return e != NULL ? e->inv : NULL;
}

void booking_thread_free_shows(struct booking_thread *t)
{
    for (size_t i = 0; i < t->shows_cap; i++) {
        struct show_entry *e = t->shows[i];
        if (e == NULL)
            continue;
        inv_free(e->inv);
        free(e);
    }
    free(t->shows);
    t->shows = NULL;
    t->shows_cap = t->nshows = 0;
}

void booking_thread_each_show(struct booking_thread *t,
                              void (*fn)(struct booking_thread *,
                                         struct show_inv *, void *),
                              void *arg)
{
    for (size_t i = 0; i < t->shows_cap; i++)
        if (t->shows[i] != NULL && t->shows[i]->inv != NULL)
            fn(t, t->shows[i]->inv, arg);
}

void booking_thread_adopt(struct booking_thread *t)
{
    struct booking *b = t->b;

    pthread_mutex_lock(&b->loaded_lock);
    for (size_t i = 0; i < b->nloaded; i++) {
        struct show_inv *inv = b->loaded[i];
        if (inv == NULL || booking_owner(b, inv->show_id) != t->index)
            continue;
        struct show_entry *e = table_add(t, inv->show_id);
        if (e == NULL) {
            log_error("booking", "adopt_nomem show=%lld",
                      (long long)inv->show_id);
            inv_free(inv);
        } else {
            e->inv = inv;
        }
        b->loaded[i] = NULL;
    }
    pthread_mutex_unlock(&b->loaded_lock);
}

/* --- reading a show from the database ------------------------------------ */

static const char SQL_SHOW_STATE[] =
    "SELECT s.idx, s.state, s.hold_id, h.customer_id, h.created_at, "
    "h.expires_at, h.max_expires_at, h.extensions, h.total, h.status "
    "FROM seats s LEFT JOIN holds h ON h.id = s.hold_id "
    "WHERE s.show_id = ? AND s.state != 0 ORDER BY s.hold_id, s.idx";

static bool listed(const uint32_t *only, size_t n, uint32_t seat)
{
    if (only == NULL)
        return true;
    for (size_t i = 0; i < n; i++)
        if (only[i] == seat)
            return true;
    return false;
}

struct pending_hold {
    char id[INV_HOLD_ID_MAX];
    char customer[INV_CUSTOMER_MAX + 1];
    int64_t created, expires, max_expires, total;
    int extensions;
    bool active, wanted;
    uint32_t seats[BOOKING_SEATS_PER_REQUEST_MAX];
    size_t n;
};

static void flush_hold(struct show_inv *inv, struct pending_hold *p)
{
    if (p->n > 0 && p->active && p->wanted)
        inv_load_hold(inv, p->id, p->customer, p->seats, p->n, p->created,
                      p->expires, p->max_expires, p->extensions, p->total);
    p->n = 0;
    p->wanted = false;
    p->id[0] = '\0';
}

int booking_read_show_state(struct store_conn *c, struct show_inv *inv,
                            const uint32_t *only, size_t nonly)
{
    struct store_stmt *st;
    struct pending_hold p = {0};
    int rc = store_prepare(c, SQL_SHOW_STATE, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_int(st, 1, inv->show_id);
    while ((rc = store_step(st)) == STORE_ROW) {
        uint32_t seat = (uint32_t)store_col_int(st, 0);
        int state = (int)store_col_int(st, 1);

        if (seat >= inv->map->nseats)
            continue;
        if (state != SEAT_HELD) {
            if (listed(only, nonly, seat))
                inv_load_seat(inv, seat, (enum seat_state)state);
            continue;
        }
        const char *hold = store_col_text(st, 2);
        if (strcmp(hold, p.id) != 0) {
            flush_hold(inv, &p);
            snprintf(p.id, sizeof(p.id), "%s", hold);
            snprintf(p.customer, sizeof(p.customer), "%s",
                     store_col_text(st, 3));
            p.created = store_col_int(st, 4);
            p.expires = store_col_int(st, 5);
            p.max_expires = store_col_int(st, 6);
            p.extensions = (int)store_col_int(st, 7);
            p.total = store_col_int(st, 8);
            p.active = strcmp(store_col_text(st, 9), "active") == 0;
        }
        p.wanted = p.wanted || listed(only, nonly, seat);
        if (p.n < BOOKING_SEATS_PER_REQUEST_MAX)
            p.seats[p.n++] = seat;
    }
    flush_hold(inv, &p);
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

/* The inventory of a show described by its stored or fetched fields. */
static struct show_inv *inv_from(int64_t id, int64_t version, bool cancelled,
                                 int64_t starts_at, int hold_seconds,
                                 const char *currency, bool no_orphan,
                                 json_t *prices, struct seatmap *map)
{
    struct show_inv *inv = inv_new(id, map);

    if (inv == NULL)
        return NULL;
    inv->catalog_version = version;
    inv->cancelled = cancelled;
    inv->starts_at = starts_at;
    inv->hold_seconds = hold_seconds;
    inv->no_orphan = no_orphan;
    snprintf(inv->currency, sizeof(inv->currency), "%s", currency);
    for (uint32_t i = 0; i < map->ncategories; i++)
        inv->prices[i] =
            json_integer_value(json_object_get(prices, map->categories[i]));
    return inv;
}

/* --- loading everything at start --------------------------------------- */

static const char SQL_ALL_SHOWS[] =
    "SELECT id, catalog_version, status, starts_at, hold_seconds, currency, "
    "no_orphan, prices, layout FROM shows";

/*
 * One seatmap per distinct layout: the shows of a screen share it, so a
 * show costs its seat states only.  Used by the loader at start, then by
 * the fetcher thread alone, so it needs no lock.
 */
struct seatmap_cache {
    size_t n, cap;
    struct seatmap_cache_entry {
        uint64_t hash;
        char *text;
        struct seatmap *map;
    } * e;
};

static uint64_t text_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

struct seatmap_cache *booking_maps_new(void)
{
    return calloc(1, sizeof(struct seatmap_cache));
}

void booking_maps_free(struct seatmap_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i].text);
        seatmap_unref(c->e[i].map);
    }
    free(c->e);
    free(c);
}

/* The map of a layout text (a new reference), or NULL if unusable. */
static struct seatmap *map_for(struct seatmap_cache *c, const char *text)
{
    uint64_t h = text_hash(text);
    json_error_t err;

    for (size_t i = 0; i < c->n; i++) {
        if (c->e[i].hash == h && strcmp(c->e[i].text, text) == 0) {
            seatmap_ref(c->e[i].map);
            return c->e[i].map;
        }
    }
    json_t *layout = json_loads(text, 0, &err);
    struct seatmap *m = layout != NULL ? seatmap_build(layout) : NULL;
    json_decref(layout);
    if (m == NULL || c->n == BOOKING_SEATMAPS_MAX)
        return m; /* unshared past the bound: correct, only larger */
    if (c->n == c->cap) {
        size_t cap = c->cap == 0 ? 16 : c->cap * 2;
        struct seatmap_cache_entry *e = realloc(c->e, cap * sizeof(*e));
        if (e == NULL)
            return m;
        c->e = e;
        c->cap = cap;
    }
    char *copy = strdup(text);
    if (copy == NULL)
        return m;
    seatmap_ref(m);
    c->e[c->n++] = (struct seatmap_cache_entry){h, copy, m};
    return m;
}

static int load_row(struct booking *b, struct store_stmt *st)
{
    json_error_t err;
    int64_t id = store_col_int(st, 0);
    struct seatmap *m = map_for(b->maps, store_col_text(st, 8));
    json_t *prices = json_loads(store_col_text(st, 7), 0, &err);

    if (m == NULL || prices == NULL) {
        json_decref(prices);
        seatmap_unref(m);
        log_error("booking", "stored_show_corrupt show=%lld", (long long)id);
        return ERR_CORRUPT;
    }
    struct show_inv *inv =
        inv_from(id, store_col_int(st, 1),
                 strcmp(store_col_text(st, 2), "cancelled") == 0,
                 store_col_int(st, 3), (int)store_col_int(st, 4),
                 store_col_text(st, 5), store_col_int(st, 6) != 0, prices, m);
    json_decref(prices);
    seatmap_unref(m);
    if (inv == NULL)
        return ERR_NOMEM;
    if (b->nloaded % 256 == 0) {
        struct show_inv **grown =
            realloc(b->loaded, (b->nloaded + 256) * sizeof(*grown));
        if (grown == NULL) {
            inv_free(inv);
            return ERR_NOMEM;
        }
        b->loaded = grown;
    }
    b->loaded[b->nloaded++] = inv;
    return ERR_OK;
}

int booking_load_all(struct booking *b)
{
    struct store_conn *c;
    struct store_stmt *st;
    int rc;

    if ((rc = store_conn_open(b->store, &c)) != ERR_OK)
        return rc;
    store_begin_read(c);
    rc = store_prepare(c, SQL_ALL_SHOWS, &st);
    while (rc == ERR_OK && (rc = store_step(st)) == STORE_ROW)
        rc = load_row(b, st);
    if (rc == ERR_OK || rc == STORE_ROW)
        rc = ERR_OK;
    if (st != NULL)
        store_reset(st);
    for (size_t i = 0; rc == ERR_OK && i < b->nloaded; i++)
        rc = booking_read_show_state(c, b->loaded[i], NULL, 0);
    store_end_read(c);
    store_conn_close(c);
    log_info("booking", "loaded shows=%zu", b->nloaded);
    return rc;
}

/* --- fetching from the catalog ------------------------------------------ */

/* A show to fetch, and who to tell once its owner has it (done may be
 * NULL: nobody waits). */
struct fetch_item {
    int64_t show_id;
    booking_refresh_done_fn done;
    void *done_arg;
};

struct booking_fetcher {
    struct booking *b;
    pthread_t tid;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct fetch_item queue[BOOKING_FETCH_QUEUE_MAX];
    size_t head, count;
    bool stopping;
    struct store_conn *conn;
    size_t catalog_next; /* the instance asked first: the last that answered */
};

enum fetch_outcome { FETCH_OK, FETCH_MISSING, FETCH_FAILED };

struct fetch_result {
    int64_t show_id;
    enum fetch_outcome outcome;
    struct show_inv *inv;
    booking_refresh_done_fn done;
    void *done_arg;
};

static bool fetcher_enqueue(struct booking_fetcher *f,
                            const struct fetch_item *it)
{
    bool ok = false;

    pthread_mutex_lock(&f->lock);
    if (!f->stopping && f->count < BOOKING_FETCH_QUEUE_MAX) {
        f->queue[(f->head + f->count) % BOOKING_FETCH_QUEUE_MAX] = *it;
        f->count++;
        ok = true;
        pthread_cond_signal(&f->wake);
    }
    pthread_mutex_unlock(&f->lock);
    return ok;
}

struct install {
    struct booking *b;
    int64_t id, version, starts_at;
    int hold_seconds;
    bool cancelled, no_orphan;
    int64_t cancel_minutes, cancel_fee;
    const char *currency;
    char *prices_text, *layout_text;
    uint32_t nseats;
};

static const char SQL_INSTALL_SHOW[] =
    "INSERT INTO shows (id, catalog_version, status, starts_at, hold_seconds,"
    " currency, no_orphan, prices, layout, cancel_until_minutes,"
    " cancel_fee_percent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET catalog_version = "
    "excluded.catalog_version,"
    " status = excluded.status, starts_at = excluded.starts_at,"
    " hold_seconds = excluded.hold_seconds, no_orphan = excluded.no_orphan,"
    " cancel_until_minutes = excluded.cancel_until_minutes,"
    " cancel_fee_percent = excluded.cancel_fee_percent"
    " WHERE excluded.catalog_version >= shows.catalog_version";
static const char SQL_INSTALL_SEAT[] =
    "INSERT OR IGNORE INTO seats (show_id, idx) VALUES (?, ?)";

static int install_apply(struct store_conn *c, void *arg)
{
    struct install *in = arg;
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_INSTALL_SHOW, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_int(st, 1, in->id);
    store_bind_int(st, 2, in->version);
    store_bind_text(st, 3, in->cancelled ? "cancelled" : "scheduled");
    store_bind_int(st, 4, in->starts_at);
    store_bind_int(st, 5, in->hold_seconds);
    store_bind_text(st, 6, in->currency);
    store_bind_int(st, 7, in->no_orphan);
    store_bind_text(st, 8, in->prices_text);
    store_bind_text(st, 9, in->layout_text);
    store_bind_int(st, 10, in->cancel_minutes);
    store_bind_int(st, 11, in->cancel_fee);
    rc = store_step(st);
    store_reset(st);
    for (uint32_t i = 0; rc >= 0 && i < in->nseats; i++) {
        if ((rc = store_prepare(c, SQL_INSTALL_SEAT, &st)) != ERR_OK)
            return rc;
        store_bind_int(st, 1, in->id);
        store_bind_int(st, 2, i);
        rc = store_step(st);
        store_reset(st);
    }
    return rc < 0 ? rc : ERR_OK;
}

static bool str_is(json_t *v, const char *s)
{
    return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

/*
 * The show's cancellation policy; a catalog answer without one (or with a
 * value out of range) gets the platform's defaults.
 */
#define BOOKING_CANCEL_MINUTES_DEFAULT 120
#define BOOKING_CANCEL_MINUTES_MAX     10080
#define BOOKING_CANCEL_FEE_DEFAULT     10
static void show_cancel_policy(json_t *show, struct install *in)
{
    json_t *policy = json_object_get(show, "cancellation");
    json_t *minutes = json_object_get(policy, "until_minutes_before");
    json_t *fee = json_object_get(policy, "fee_percent");

    in->cancel_minutes = BOOKING_CANCEL_MINUTES_DEFAULT;
    in->cancel_fee = BOOKING_CANCEL_FEE_DEFAULT;
    if (json_is_integer(minutes) && json_integer_value(minutes) >= 0 &&
        json_integer_value(minutes) <= BOOKING_CANCEL_MINUTES_MAX)
        in->cancel_minutes = json_integer_value(minutes);
    if (json_is_integer(fee) && json_integer_value(fee) >= 0 &&
        json_integer_value(fee) <= 100)
        in->cancel_fee = json_integer_value(fee);
}

/* Parses the catalog's show, stores it, and builds its inventory. */
static enum fetch_outcome install_show(struct booking_fetcher *f, int64_t id,
                                       json_t *show, struct show_inv **out)
{
    json_t *screen = json_object_get(show, "screen");
    json_t *layout = json_object_get(screen, "layout");
    json_t *prices = json_object_get(show, "prices");
    const char *starts = json_string_value(json_object_get(show, "starts_at"));
    struct install in = {.b = f->b, .id = id};
    int64_t starts_at;

    if (starts == NULL || clock_parse_rfc3339(starts, &starts_at) != ERR_OK ||
        !json_is_object(prices))
        return FETCH_FAILED;
    in.layout_text = json_dumps(layout, JSON_COMPACT);
    struct seatmap *m =
        in.layout_text != NULL ? map_for(f->b->maps, in.layout_text) : NULL;
    if (m == NULL) {
        free(in.layout_text);
        log_error("booking", "catalog_layout_unusable show=%lld",
                  (long long)id);
        return FETCH_FAILED;
    }
    in.version = json_integer_value(json_object_get(show, "version"));
    in.starts_at = starts_at;
    in.hold_seconds =
        (int)json_integer_value(json_object_get(show, "hold_seconds"));
    in.cancelled = str_is(json_object_get(show, "status"), "cancelled");
    in.no_orphan = json_is_true(json_object_get(show, "no_orphan_seats"));
    show_cancel_policy(show, &in);
    in.currency = json_string_value(json_object_get(show, "currency"));
    if (in.currency == NULL)
        in.currency = "";
    in.prices_text = json_dumps(prices, JSON_COMPACT | JSON_SORT_KEYS);
    in.nseats = m->nseats;

    enum fetch_outcome outcome = FETCH_FAILED;
    if (in.prices_text != NULL && in.layout_text != NULL &&
        store_write_sync(f->b->store, install_apply, &in) == ERR_OK) {
        /* Its bookings are cancelled and refunded by the reconciler. */
        if (in.cancelled)
            booking_reconciler_wake(f->b->reconciler);
        *out = inv_from(id, in.version, in.cancelled, starts_at,
                        in.hold_seconds, in.currency, in.no_orphan, prices, m);
        if (*out != NULL &&
            booking_read_show_state(f->conn, *out, NULL, 0) == ERR_OK) {
            outcome = FETCH_OK;
        } else {
            inv_free(*out);
            *out = NULL;
        }
    }
    seatmap_unref(m);
    free(in.prices_text);
    free(in.layout_text);
    return outcome;
}

/*
 * GET path from the catalog: each instance of booking.catalog_url in turn,
 * from the last one that answered, until one answers below 500, within
 * BOOKING_FETCH_TIMEOUT_MS in all.  A try may take the time left shared
 * among the tries left, so a lone instance gets it all and a refused
 * connection, which costs nothing, leaves its share to the next.  Returns
 * http_client_request's code of the last try; *resp is the answer that
 * ended the tries (a 5xx when every instance gave one).
 */
static int catalog_get(struct booking_fetcher *f, const char *path,
                       struct http_client_response *resp)
{
    const struct booking *b = f->b;
    int64_t deadline = clock_mono_ms(b->clock) + BOOKING_FETCH_TIMEOUT_MS;
    int rc = ERR_TIMEOUT;

    memset(resp, 0, sizeof(*resp));
    for (size_t k = 0; k < b->ncatalog_urls; k++) {
        size_t i = (f->catalog_next + k) % b->ncatalog_urls;
        int64_t left = deadline - clock_mono_ms(b->clock);

        if (left <= 0)
            break;
        http_client_response_free(resp);
        int try_ms = (int)(left / (int64_t)(b->ncatalog_urls - k));

        rc = http_client_request(b->catalog_urls[i], "GET", path, NULL, NULL, 0,
                                 try_ms > 0 ? try_ms : 1, resp);
        if (rc == ERR_OK && resp->status < 500) {
            f->catalog_next = i;
            return ERR_OK;
        }
        if (k + 1 < b->ncatalog_urls)
            log_info("booking",
                     "catalog_failover from=\"%s\" error=%s status=%d",
                     b->catalog_urls[i], err_name(rc),
                     rc == ERR_OK ? resp->status : 0);
    }
    return rc;
}

static enum fetch_outcome fetch_show(struct booking_fetcher *f, int64_t id,
                                     struct show_inv **out)
{
    struct http_client_response resp;
    char path[64];
    json_error_t err;

    snprintf(path, sizeof(path), "/v1/shows/%lld", (long long)id);
    int rc = catalog_get(f, path, &resp);
    if (rc != ERR_OK) {
        log_warn("booking", "catalog_unreachable show=%lld error=%s",
                 (long long)id, err_name(rc));
        return FETCH_FAILED;
    }
    enum fetch_outcome outcome = FETCH_FAILED;
    if (resp.status == 404) {
        outcome = FETCH_MISSING;
    } else if (resp.status == 200) {
        json_t *show = json_loadb(resp.body, resp.len, 0, &err);
        outcome = show != NULL ? install_show(f, id, show, out) : FETCH_FAILED;
        json_decref(show);
    } else {
        log_warn("booking", "catalog_answered show=%lld status=%d",
                 (long long)id, resp.status);
    }
    http_client_response_free(&resp);
    return outcome;
}

/* Tells whoever waits for the fetch what came of it, then frees r. */
static void fetch_result_end(struct fetch_result *r, int rc, int64_t version)
{
    if (r->done != NULL)
        r->done(r->done_arg, rc, version);
    inv_free(r->inv);
    free(r);
}

static int fetch_rc(enum fetch_outcome outcome)
{
    switch (outcome) {
    case FETCH_OK: return ERR_OK;
    case FETCH_MISSING: return ERR_NOTFOUND;
    case FETCH_FAILED: break;
    }
    return ERR_IO;
}

/*
 * A show just cancelled: its live holds end in memory now (the reconciler
 * ends them in the database, and its bookings with refunds).  A hold whose
 * checkout is in flight is left to it: the charge is refunded, since a
 * cancelled show's hold can no longer become a booking.
 */
static void end_live_holds(struct show_inv *inv)
{
    for (uint32_t slot = 1; slot <= inv->holds_cap; slot++) {
        struct inv_hold *h = inv_hold_at(inv, slot);
        if (h->in_use && !h->pending && !h->in_checkout)
            inv_end(inv, slot, SEAT_FREE);
    }
}

/* On the owner: installs or refreshes the show, then runs its waiters. */
static void on_fetched(void *thread_data, void *arg)
{
    struct booking_thread *t = thread_data;
    struct fetch_result *r = arg;
    struct show_entry *e = table_get(t, r->show_id);

    if (e == NULL && r->outcome == FETCH_OK)
        e = table_add(t, r->show_id);
    if (e == NULL) {
        int rc = r->outcome == FETCH_OK ? ERR_NOMEM : fetch_rc(r->outcome);
        fetch_result_end(r, rc, 0);
        return;
    }
    e->fetching = false;
    if (r->outcome == FETCH_OK && e->inv == NULL) {
        e->inv = r->inv;
        r->inv = NULL;
        log_debug("booking", "show_installed show=%lld seats=%u",
                  (long long)r->show_id, e->inv->map->nseats);
    } else if (r->outcome == FETCH_OK) {
        /* Known already: take what the catalog may change. */
        if (r->inv->cancelled && !e->inv->cancelled)
            end_live_holds(e->inv);
        e->inv->cancelled = r->inv->cancelled;
        e->inv->catalog_version = r->inv->catalog_version;
        e->inv->starts_at = r->inv->starts_at;
        e->inv->hold_seconds = r->inv->hold_seconds;
        e->inv->no_orphan = r->inv->no_orphan;
        e->inv->version++;
    } else if (r->outcome == FETCH_MISSING) {
        e->missing_until_ms =
            clock_wall_ms(t->b->clock) + BOOKING_MISSING_RETRY_MS;
    }

    struct booking_op *op = e->waiters;
    e->waiters = NULL;
    e->nwaiters = 0;
    while (op != NULL) {
        struct booking_op *next = op->next;
        op->next = NULL;
        if (r->outcome == FETCH_FAILED) {
            booking_op_fail(op, 503, "unavailable", "Service unavailable",
                            "the catalog could not be reached");
            booking_op_finish(op);
        } else {
            booking_run_op(t, op);
        }
        op = next;
    }
    fetch_result_end(r, fetch_rc(r->outcome),
                     e->inv != NULL ? e->inv->catalog_version : 0);
}

static void *fetcher_main(void *arg)
{
    struct booking_fetcher *f = arg;

    for (;;) {
        pthread_mutex_lock(&f->lock);
        while (f->count == 0 && !f->stopping)
            pthread_cond_wait(&f->wake, &f->lock);
        if (f->count == 0 && f->stopping) {
            pthread_mutex_unlock(&f->lock);
            break;
        }
        struct fetch_item it = f->queue[f->head];
        f->head = (f->head + 1) % BOOKING_FETCH_QUEUE_MAX;
        f->count--;
        pthread_mutex_unlock(&f->lock);

        struct fetch_result *r = calloc(1, sizeof(*r));
        if (r == NULL) {
            if (it.done != NULL)
                it.done(it.done_arg, ERR_NOMEM, 0);
            http_server_release(f->b->server);
            continue;
        }
        r->show_id = it.show_id;
        r->done = it.done;
        r->done_arg = it.done_arg;
        r->outcome = fetch_show(f, it.show_id, &r->inv);
        int owner = booking_owner(f->b, it.show_id);
        /* Shutting down: the waiter still hears back, from here. */
        if (!http_server_post(f->b->server, owner, on_fetched, r))
            fetch_result_end(r, ERR_CLOSED, 0);
        http_server_release(f->b->server);
    }
    return NULL;
}

struct booking_fetcher *booking_fetcher_start(struct booking *b)
{
    struct booking_fetcher *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return NULL;
    f->b = b;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->wake, NULL);
    if (store_conn_open(b->store, &f->conn) != ERR_OK ||
        pthread_create(&f->tid, NULL, fetcher_main, f) != 0) {
        if (f->conn != NULL)
            store_conn_close(f->conn);
        free(f);
        return NULL;
    }
    return f;
}

void booking_fetcher_stop(struct booking_fetcher *f)
{
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->lock);
    f->stopping = true;
    pthread_cond_signal(&f->wake);
    pthread_mutex_unlock(&f->lock);
    pthread_join(f->tid, NULL);
    store_conn_close(f->conn);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->wake);
    free(f);
}

/* Queues a fetch, holding the server so shutdown waits for its answer. */
static bool fetch_later(struct booking *b, int64_t show_id,
                        booking_refresh_done_fn done, void *done_arg)
{
    struct fetch_item it = {show_id, done, done_arg};

    http_server_hold(b->server);
    if (fetcher_enqueue(b->fetcher, &it))
        return true;
    http_server_release(b->server);
    return false;
}

bool booking_show_refresh(struct booking *b, int64_t show_id,
                          booking_refresh_done_fn done, void *done_arg)
{
    return fetch_later(b, show_id, done, done_arg);
}

struct show_inv *booking_show_for(struct booking_thread *t,
                                  struct booking_op *op)
{
    struct show_entry *e = table_get(t, op->show_id);

    if (e != NULL && e->inv != NULL)
        return e->inv;
    if (e != NULL && e->missing_until_ms > clock_wall_ms(t->b->clock)) {
        booking_op_fail(op, 404, "not-found", "Not found",
                        "there is no show %lld", (long long)op->show_id);
        booking_op_finish(op);
        return NULL;
    }
    if (e == NULL && (e = table_add(t, op->show_id)) == NULL) {
        booking_op_fail(op, 503, "unavailable", "Service unavailable",
                        "out of memory");
        booking_op_finish(op);
        return NULL;
    }
    if (e->nwaiters >= BOOKING_WAITERS_MAX ||
        (!e->fetching && !fetch_later(t->b, op->show_id, NULL, NULL))) {
        booking_op_fail(op, 503, "unavailable", "Service unavailable",
                        "too many shows are being fetched");
        booking_op_finish(op);
        return NULL;
    }
    e->fetching = true;
    op->next = e->waiters;
    e->waiters = op;
    e->nwaiters++;
    return NULL;
}

/* --- POST /internal/v1/show-events -----------------------------------------
 */

void booking_handle_show_event(struct http_req *req, void *app)
{
    struct booking *b = app;
    json_t *body = http_req_json(req);
    struct verrs e = {0};
    const char *type = NULL;
    int64_t show_id = 0;

    if (body == NULL)
        return;
    jv_string(body, "type", "type", true, 1, 40, &type, &e);
    jv_int(body, "show_id", "show_id", true, 1, INT64_MAX, &show_id, &e);
    if (verr_any(&e)) {
        http_respond_problem_ext(
            req, 422, "validation-failed", "Validation failed",
            "the event has invalid fields",
            json_pack("{s:o}", "errors", verr_to_json(&e)));
        return;
    }
    /* The event is a hint: the show itself is read from the catalog.  The
     * queue's consumer (events_consumer.c) takes the same path. */
    if (!booking_show_refresh(b, show_id, NULL, NULL)) {
        http_respond_unavailable(req, 1, "too many shows are being fetched");
        return;
    }
    http_respond_json(req, 202,
                      json_pack("{s:s, s:I}", "status", "accepted", "show_id",
                                (json_int_t)show_id));
}

/* --- GET /v1/shows/{id}/seats ----------------------------------------------
 */

static const char STATE_CHARS[] = {'F', 'H', 'S', 'B', 'H'};

static json_t *render_row(const struct show_inv *inv,
                          const struct seatmap_row *r, int64_t now)
{
    json_t *numbers = json_array();
    char states[LAYOUT_ROW_POSITIONS_MAX + 1];

    for (uint32_t p = 0; p < r->npos; p++) {
        int32_t seat = inv->map->positions[r->first + p];
        if (seat < 0) {
            json_array_append_new(numbers, json_null());
            states[p] = '.';
            continue;
        }
        json_array_append_new(numbers,
                              json_integer(inv->map->seats[seat].number));
        states[p] = STATE_CHARS[inv_seat_state(inv, (uint32_t)seat, now)];
    }
    states[r->npos] = '\0';
    return json_pack("{s:s, s:s, s:o, s:s}", "label", r->label, "category",
                     inv->map->categories[r->category], "seats", numbers,
                     "states", states);
}

void booking_op_seats(struct booking_thread *t, struct booking_op *op,
                      struct show_inv *inv)
{
    int64_t now = clock_wall_ms(t->b->clock);
    json_t *rows = json_array(), *prices = json_object();
    size_t counts[4];

    for (uint32_t r = 0; r < inv->map->nrows; r++)
        json_array_append_new(rows, render_row(inv, &inv->map->rows[r], now));
    for (uint32_t c = 0; c < inv->map->ncategories; c++)
        json_object_set_new(prices, inv->map->categories[c],
                            json_integer(inv->prices[c]));
    inv_count(inv, now, counts);
    const char *status = inv->cancelled          ? "cancelled"
                         : now >= inv->starts_at ? "closed"
                                                 : "open";
    op->status = 200;
    op->body = json_pack("{s:I, s:s, s:s, s:o, s:{s:I, s:I, s:I, s:I}, s:o}",
                         "show_id", (json_int_t)inv->show_id, "status", status,
                         "currency", inv->currency, "prices", prices, "counts",
                         "free", (json_int_t)counts[SEAT_FREE], "held",
                         (json_int_t)counts[SEAT_HELD], "sold",
                         (json_int_t)counts[SEAT_SOLD], "blocked",
                         (json_int_t)counts[SEAT_BLOCKED], "rows", rows);
    booking_op_finish(op);
}

void booking_handle_seats(struct http_req *req, void *app)
{
    struct booking_op *op;
    int64_t id;

    if (!http_req_param_id(req, "show_id", &id))
        return;
    if ((op = booking_op_new(app, OP_SEATS)) == NULL) {
        http_respond_unavailable(req, 1, "out of memory");
        return;
    }
    op->show_id = id;
    booking_op_dispatch(req, op);
}
