/*
 * holds.c - holds: create, read, release, extend, and the sweeper that
 * ends expired ones.
 *
 * Creating a hold: the request thread checks the body and the
 * Idempotency-Key, then posts the work to the show's owner.  The owner
 * checks the seats in memory (most conflicts end here, with no I/O),
 * reserves them, and queues the write.  The write is guarded in SQL too:
 * each seat changes only if it is still free in the database, so two
 * processes that both believe they own a show cannot both win a seat.
 * After the commit the owner marks the seats held (or frees them and
 * reloads what the database says) and the client gets its answer.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "domain/validate.h"
#include "metrics/metrics.h"
#include "services/booking/internal.h"

/* --- representation ----------------------------------------------------- */

/* Parses a stored "[3,4]" of seat indexes. */
static void parse_idx(const char *text, struct hold_row *row)
{
    json_t *list = json_loads(text, 0, NULL);

    row->nidx = 0;
    for (size_t i = 0;
         i < json_array_size(list) && row->nidx < BOOKING_SEATS_PER_REQUEST_MAX;
         i++)
        row->idx[row->nidx++] =
            (uint32_t)json_integer_value(json_array_get(list, i));
    json_decref(list);
}

static json_t *time_json(int64_t ms)
{
    char buf[CLOCK_RFC3339_LEN];

    clock_format_rfc3339(ms, buf);
    return json_string(buf);
}

/* The hold as clients see it; status "expired" once its time is past. */
static json_t *hold_json(const struct booking *b, const struct hold_row *h,
                         int64_t now_ms)
{
    json_error_t err;
    const char *status = h->status;
    int left = b->max_extensions - h->extensions;

    if (strcmp(status, "active") == 0 && h->expires_at <= now_ms)
        status = "expired";
    json_t *seats = json_loads(h->seats != NULL ? h->seats : "[]", 0, &err);
    return json_pack("{s:s, s:I, s:s, s:s, s:o, s:I, s:s, s:o, s:o, s:o, "
                     "s:i, s:i}",
                     "id", h->id, "show_id", (json_int_t)h->show_id,
                     "customer_id", h->customer, "status", status, "seats",
                     seats != NULL ? seats : json_array(), "total",
                     (json_int_t)h->total, "currency", h->currency,
                     "created_at", time_json(h->created_at), "expires_at",
                     time_json(h->expires_at), "max_expires_at",
                     time_json(h->max_expires_at), "extensions", h->extensions,
                     "extensions_left", left > 0 ? left : 0);
}

static char *hold_text(const struct booking *b, const struct hold_row *h,
                       int64_t now_ms)
{
    json_t *j = hold_json(b, h, now_ms);
    char *text = json_dumps(j, JSON_COMPACT);

    json_decref(j);
    return text;
}

static const char SQL_HOLD_GET[] =
    "SELECT id, show_id, customer_id, status, seats, total, currency, "
    "created_at, expires_at, max_expires_at, extensions, version, seat_idx "
    "FROM holds WHERE id = ?";

int booking_hold_read(struct store_conn *c, const char *id,
                      struct hold_row *row)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_HOLD_GET, &st);

    memset(row, 0, sizeof(*row));
    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, id);
    rc = store_step(st);
    if (rc == STORE_ROW) {
        snprintf(row->id, sizeof(row->id), "%s", store_col_text(st, 0));
        row->show_id = store_col_int(st, 1);
        snprintf(row->customer, sizeof(row->customer), "%s",
                 store_col_text(st, 2));
        snprintf(row->status, sizeof(row->status), "%s", store_col_text(st, 3));
        row->seats = strdup(store_col_text(st, 4));
        row->total = store_col_int(st, 5);
        snprintf(row->currency, sizeof(row->currency), "%s",
                 store_col_text(st, 6));
        row->created_at = store_col_int(st, 7);
        row->expires_at = store_col_int(st, 8);
        row->max_expires_at = store_col_int(st, 9);
        row->extensions = (int)store_col_int(st, 10);
        row->version = store_col_int(st, 11);
        parse_idx(store_col_text(st, 12), row);
        rc = row->seats != NULL ? ERR_OK : ERR_NOMEM;
    } else if (rc == ERR_OK) {
        rc = ERR_NOTFOUND;
    }
    store_reset(st);
    return rc;
}

/* --- request checks ------------------------------------------------------ */

/* Hold ids are "<show id>-<16 hex digits>", booking ids "<show id>-b<16
 * hex digits>": the show names the owner. */
bool booking_id_parse(const char *id, bool booking, int64_t *show_id)
{
    char *dash;
    long long show = id != NULL ? strtoll(id, &dash, 10) : 0;

    if (id == NULL || show < 1 || dash == id || *dash != '-' ||
        strlen(id) >= INV_HOLD_ID_MAX)
        return false;
    const char *hex = dash + 1;
    if (booking && *hex++ != 'b')
        return false;
    if (strlen(hex) != 16)
        return false;
    for (const char *p = hex; *p != '\0'; p++)
        if (!isxdigit((unsigned char)*p) || isupper((unsigned char)*p))
            return false;
    *show_id = show;
    return true;
}

static bool read_customer(struct http_req *req, struct booking_op *op)
{
    const char *customer = http_req_customer(req);

    if (customer == NULL)
        return false;
    snprintf(op->customer, sizeof(op->customer), "%s", customer);
    return true;
}

/* {"seats": ["A1", "A2"]}: shape, count and duplicates. */
static bool read_seats(struct http_req *req, struct booking *b,
                       struct booking_op *op)
{
    static const char *const known[] = {"seats", NULL};
    json_t *body = http_req_json(req), *seats = NULL;
    struct verrs e = {0};
    char path[VERR_FIELD_MAX];

    if (body == NULL)
        return false;
    jv_no_unknown(body, "", known, &e);
    if (jv_array(body, "seats", "seats", true, 0, SIZE_MAX, &seats, &e)) {
        size_t n = json_array_size(seats);
        bool count_ok = n >= 1 && n <= (size_t)b->limits.max_seats_per_hold;
        if (n == 0)
            verr_add(&e, "seats", "empty", "seats must list at least one seat");
        else if (!count_ok)
            verr_add(&e, "seats", "too-many-seats",
                     "a hold may have at most %d seats",
                     b->limits.max_seats_per_hold);
        /* Every fault of every seat, but only when the count is sane. */
        for (size_t i = 0; count_ok && i < n; i++) {
            json_t *v = json_array_get(seats, i);
            jv_path_index(path, "seats", i);
            if (!json_is_string(v)) {
                verr_add(&e, path, "wrong-type",
                         "%s must be a seat id such as \"A12\"", path);
                continue;
            }
            if (json_string_length(v) == 0 ||
                json_string_length(v) >= INV_SEAT_ID_MAX) {
                verr_add(&e, path, "unknown-seat", "there is no seat \"%.20s\"",
                         json_string_value(v));
                continue;
            }
            for (size_t j = 0; j < op->nseats; j++)
                if (strcmp(op->seat_ids[j], json_string_value(v)) == 0)
                    verr_add(&e, path, "duplicate-seat",
                             "seat %s is listed twice", json_string_value(v));
            snprintf(op->seat_ids[op->nseats++], INV_SEAT_ID_MAX, "%s",
                     json_string_value(v));
        }
    }
    if (verr_any(&e)) {
        http_respond_problem_ext(
            req, 422, "validation-failed", "Validation failed",
            "the body has invalid fields",
            json_pack("{s:o}", "errors", verr_to_json(&e)));
        return false;
    }
    return true;
}

/* --- POST /v1/shows/{id}/holds ----------------------------------------------
 */

void booking_handle_create_hold(struct http_req *req, void *app)
{
    struct booking *b = app;
    struct booking_op *op = booking_op_new(b, OP_HOLD);
    int64_t show_id;

    if (op == NULL) {
        http_respond_unavailable(req, 1, "out of memory");
        return;
    }
    if (!http_req_param_id(req, "show_id", &show_id) ||
        !read_customer(req, op) || !read_seats(req, b, op) ||
        idem_begin(b, req, op)) {
        booking_op_free(op);
        return;
    }
    op->show_id = show_id;
    op->deadline_ms = http_req_deadline_ms(req);
    booking_op_dispatch(req, op);
}

static json_t *seat_list(const struct show_inv *inv, const uint32_t *seats,
                         size_t n)
{
    json_t *ids = json_array();
    char id[INV_SEAT_ID_MAX];

    for (size_t i = 0; i < n; i++) {
        seatmap_seat_id(inv->map, seats[i], id);
        json_array_append_new(ids, json_string(id));
    }
    return ids;
}

/* Answers what inv_check refused. */
static void refuse(struct booking_op *op, const struct show_inv *inv,
                   enum inv_verdict v, const uint32_t *bad, size_t nbad)
{
    struct booking *b = op->b;

    switch (v) {
    case INV_CLOSED:
        booking_op_fail(op, 409, "show-closed", "Show not on sale",
                        "show %lld is %s", (long long)inv->show_id,
                        inv->cancelled ? "cancelled" : "over or under way");
        break;
    case INV_TOO_MANY:
        booking_op_fail(op, 422, "too-many-seats", "Too many seats",
                        "a hold may have at most %d seats",
                        b->limits.max_seats_per_hold);
        break;
    case INV_CUSTOMER_LIMIT:
        booking_op_fail(op, 409, "customer-limit", "Customer limit reached",
                        "a customer may hold at most %d seats of a show",
                        b->limits.max_seats_per_customer);
        break;
    case INV_TAKEN:
        metrics_inc(b->metrics.hold_conflicts);
        booking_op_fail(op, 409, "seats-taken", "Seats taken",
                        "%zu of the seats are no longer free", nbad);
        op->body = json_pack("{s:o}", "seats", seat_list(inv, bad, nbad));
        break;
    case INV_ORPHAN:
        booking_op_fail(op, 409, "orphan-seat", "Seat left alone",
                        "the hold would leave a single seat empty between "
                        "taken ones; include it or choose others");
        op->body = json_pack("{s:o}", "seats", seat_list(inv, bad, nbad));
        break;
    case INV_OK: break;
    }
}

/* Resolves seat ids to indexes; answers 422 for unknown ones. */
static bool resolve_seats(struct booking_op *op, const struct show_inv *inv)
{
    struct verrs e = {0};
    char path[VERR_FIELD_MAX];

    for (size_t i = 0; i < op->nseats; i++) {
        int32_t seat = seatmap_find(inv->map, op->seat_ids[i]);
        if (seat < 0) {
            jv_path_index(path, "seats", i);
            verr_add(&e, path, "unknown-seat", "show %lld has no seat %s",
                     (long long)inv->show_id, op->seat_ids[i]);
        }
        op->seats[i] = (uint32_t)(seat < 0 ? 0 : seat);
    }
    if (!verr_any(&e))
        return true;
    booking_op_fail(op, 422, "validation-failed", "Validation failed",
                    "the show has no such seat");
    op->body = json_pack("{s:o}", "errors", verr_to_json(&e));
    return false;
}

static const char SQL_TAKE_SEAT[] =
    "UPDATE seats SET state = 1, hold_id = ?, expires_at = ?, "
    "version = version + 1 WHERE show_id = ? AND idx = ? AND "
    "(state = 0 OR (state = 1 AND expires_at <= ?))";
static const char SQL_HOLD_INSERT[] =
    "INSERT INTO holds (id, show_id, customer_id, seat_idx, seats, total, "
    "currency, status, created_at, expires_at, max_expires_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?)";

static int hold_apply(struct store_conn *c, void *arg)
{
    struct booking_op *op = arg;
    int64_t now = clock_wall_ms(op->b->clock);
    struct store_stmt *st;
    char idx_text[BOOKING_SEATS_PER_REQUEST_MAX * 8] = "[";
    int rc;

    op->nconflicts = 0;
    for (size_t i = 0; i < op->nseats; i++) {
        if ((rc = store_prepare(c, SQL_TAKE_SEAT, &st)) != ERR_OK)
            return rc;
        store_bind_text(st, 1, op->hold_id);
        store_bind_int(st, 2, op->expires_at);
        store_bind_int(st, 3, op->show_id);
        store_bind_int(st, 4, op->seats[i]);
        store_bind_int(st, 5, now);
        rc = store_step(st);
        store_reset(st);
        if (rc < 0)
            return rc;
        if (store_changes(c) != 1)
            op->conflicts[op->nconflicts++] = op->seats[i];
        size_t len = strlen(idx_text);
        snprintf(idx_text + len, sizeof(idx_text) - len, "%s%u",
                 i > 0 ? "," : "", (unsigned)op->seats[i]);
    }
    if (op->nconflicts > 0)
        return ERR_CONFLICT; /* the savepoint undoes the seats taken */
    strncat(idx_text, "]", sizeof(idx_text) - strlen(idx_text) - 1);

    if ((rc = store_prepare(c, SQL_HOLD_INSERT, &st)) != ERR_OK)
        return rc;
    store_bind_text(st, 1, op->hold_id);
    store_bind_int(st, 2, op->show_id);
    store_bind_text(st, 3, op->customer);
    store_bind_text(st, 4, idx_text);
    store_bind_text(st, 5, op->seats_json);
    store_bind_int(st, 6, op->total);
    store_bind_text(st, 7, op->currency);
    store_bind_int(st, 8, op->now_ms);
    store_bind_int(st, 9, op->expires_at);
    store_bind_int(st, 10, op->max_expires_at);
    rc = store_step(st);
    store_reset(st);
    if (rc < 0)
        return rc;
    if (op->idem_key[0] != '\0') {
        if ((rc = idem_store(c, op, 201, op->response)) != ERR_OK)
            return rc;
        op->idem_stored = true;
    }
    return ERR_OK;
}

/* On the owner, after the commit (or its failure). */
static void on_hold_written(void *thread_data, void *arg)
{
    struct booking_thread *t = thread_data;
    struct booking_op *op = arg;
    struct show_inv *inv = booking_show_get(t, op->show_id);

    if (op->rc == ERR_OK) {
        inv_commit(inv, op->slot);
        op->status = 201;
        metrics_inc(op->b->metrics.holds_created);
    } else {
        inv_abort(inv, op->slot);
        op->idem_stored = false;
        if (op->rc == ERR_CONFLICT) {
            metrics_inc(op->b->metrics.database_refusals);
            /* Another process holds them: learn it from the database. */
            log_debug("booking",
                      "hold_refused_by_database show=%lld "
                      "seats=%zu",
                      (long long)op->show_id, op->nconflicts);
            booking_read_show_state(t->conn, inv, op->conflicts,
                                    op->nconflicts);
            refuse(op, inv, INV_TAKEN, op->conflicts, op->nconflicts);
        } else {
            booking_op_fail(op, 503, "unavailable", "Service unavailable",
                            "the hold could not be stored: %s",
                            err_msg(op->rc));
        }
    }
    http_server_release(op->b->server);
    booking_op_finish(op);
}

static void on_hold_done(void *arg, int rc)
{
    struct booking_op *op = arg;

    op->rc = rc;
    if (!http_server_post(op->b->server, op->owner, on_hold_written, op)) {
        /* Cannot happen while held; answer rather than lose the client. */
        booking_op_fail(op, 503, "unavailable", "Service unavailable",
                        "the service is shutting down");
        http_server_release(op->b->server);
        booking_op_finish(op);
    }
}

/* Fills the op with the new hold's terms, its seats and its answer. */
static bool prepare_hold(struct booking_thread *t, struct booking_op *op,
                         const struct show_inv *inv)
{
    struct booking *b = t->b;
    json_t *seats = json_array();
    char id[INV_SEAT_ID_MAX];

    snprintf(op->hold_id, sizeof(op->hold_id), "%lld-%016llx",
             (long long)inv->show_id, (unsigned long long)rand_next(&t->rng));
    op->max_expires_at = op->now_ms + b->max_hold_life_ms;
    if (op->max_expires_at > inv->starts_at)
        op->max_expires_at = inv->starts_at;
    op->expires_at = op->now_ms + (int64_t)inv->hold_seconds * 1000;
    if (op->expires_at > op->max_expires_at)
        op->expires_at = op->max_expires_at;
    op->total = 0;
    for (size_t i = 0; i < op->nseats; i++) {
        uint8_t cat = inv->map->seats[op->seats[i]].category;
        seatmap_seat_id(inv->map, op->seats[i], id);
        op->total += inv->prices[cat];
        json_array_append_new(seats,
                              json_pack("{s:s, s:s, s:I}", "id", id, "category",
                                        inv->map->categories[cat], "price",
                                        (json_int_t)inv->prices[cat]));
    }
    snprintf(op->currency, sizeof(op->currency), "%s", inv->currency);
    op->seats_json = json_dumps(seats, JSON_COMPACT);
    json_decref(seats);

    struct hold_row row = {.show_id = op->show_id,
                           .total = op->total,
                           .created_at = op->now_ms,
                           .expires_at = op->expires_at,
                           .max_expires_at = op->max_expires_at,
                           .seats = op->seats_json};
    snprintf(row.id, sizeof(row.id), "%s", op->hold_id);
    snprintf(row.customer, sizeof(row.customer), "%s", op->customer);
    snprintf(row.status, sizeof(row.status), "active");
    snprintf(row.currency, sizeof(row.currency), "%s", op->currency);
    op->response =
        op->seats_json != NULL ? hold_text(b, &row, op->now_ms) : NULL;
    return op->response != NULL;
}

void booking_op_hold(struct booking_thread *t, struct booking_op *op,
                     struct show_inv *inv)
{
    struct booking *b = t->b;
    uint32_t bad[BOOKING_SEATS_PER_REQUEST_MAX];
    size_t nbad = BOOKING_SEATS_PER_REQUEST_MAX;

    /* The request may have waited for its show to load: a caller that has
     * given up must not be left holding seats it will never hear of. */
    if (op->deadline_ms != 0 &&
        http_loop_now_ms(b->server, t->index) >= op->deadline_ms) {
        booking_op_fail(op, 504, "deadline-exceeded", "Deadline exceeded",
                        "the request's deadline passed before its seats "
                        "were taken");
        booking_op_finish(op);
        return;
    }
    op->now_ms = clock_wall_ms(b->clock);
    if (!resolve_seats(op, inv)) {
        booking_op_finish(op);
        return;
    }
    enum inv_verdict v = inv_check(inv, op->seats, op->nseats, op->customer,
                                   op->now_ms, &b->limits, bad, &nbad);
    if (v != INV_OK) {
        refuse(op, inv, v, bad, nbad);
        booking_op_finish(op);
        return;
    }
    if (!prepare_hold(t, op, inv) ||
        (op->slot = inv_reserve(inv, op->seats, op->nseats, op->hold_id,
                                op->customer, op->now_ms, op->expires_at,
                                op->max_expires_at, op->total)) == 0) {
        booking_op_fail(op, 503, "unavailable", "Service unavailable",
                        "out of memory");
        booking_op_finish(op);
        return;
    }
    op->w.apply = hold_apply;
    op->w.done = on_hold_done;
    http_server_hold(b->server);
    int rc = store_submit(b->store, &op->w);
    if (rc != ERR_OK) {
        inv_abort(inv, op->slot);
        http_server_release(b->server);
        booking_op_fail(op, 503, "unavailable", "Service unavailable",
                        rc == ERR_FULL ? "too many holds are being written"
                                       : "the service is shutting down");
        booking_op_finish(op);
    }
}

/* --- GET /v1/holds/{id} ------------------------------------------------------
 */

static bool hold_param(struct http_req *req, const char **id, int64_t *show_id)
{
    *id = http_req_param(req, "hold_id");
    if (!booking_id_parse(*id, false, show_id)) {
        http_respond_problem(req, 404, "not-found", "Not found",
                             "there is no hold \"%.40s\"", *id ? *id : "");
        return false;
    }
    return true;
}

void booking_handle_get_hold(struct http_req *req, void *app)
{
    struct booking *b = app;
    struct booking_thread *t = http_req_thread_data(req);
    struct hold_row row;
    const char *id, *customer = http_req_customer(req);
    int64_t show_id;

    if (customer == NULL || !hold_param(req, &id, &show_id))
        return;
    int rc = booking_hold_read(t->conn, id, &row);
    if (rc == ERR_NOTFOUND ||
        (rc == ERR_OK && strcmp(row.customer, customer) != 0))
        http_respond_problem(req, 404, "not-found", "Not found",
                             "there is no hold %s", id);
    else if (rc != ERR_OK)
        http_respond_unavailable(req, 1, "the booking database is unavailable");
    else
        http_respond_json(req, 200,
                          hold_json(b, &row, clock_wall_ms(b->clock)));
    free(row.seats);
}

/* --- DELETE /v1/holds/{id} and POST /v1/holds/{id}/extend ----------------- */

static void dispatch_hold_op(struct http_req *req, struct booking *b,
                             enum booking_op_kind kind)
{
    struct booking_op *op = booking_op_new(b, kind);
    const char *id;

    if (op == NULL) {
        http_respond_unavailable(req, 1, "out of memory");
        return;
    }
    if (!read_customer(req, op) || !hold_param(req, &id, &op->show_id)) {
        booking_op_free(op);
        return;
    }
    snprintf(op->hold_id, sizeof(op->hold_id), "%s", id);
    booking_op_dispatch(req, op);
}

void booking_handle_release_hold(struct http_req *req, void *app)
{
    dispatch_hold_op(req, app, OP_RELEASE);
}

void booking_handle_extend_hold(struct http_req *req, void *app)
{
    struct booking *b = app;
    struct booking_op *op;
    const char *id;
    size_t len;

    /* No fields: an empty body or {}. */
    http_req_body(req, &len);
    if (len > 0) {
        json_t *body = http_req_json(req);
        if (body == NULL)
            return;
        if (json_object_size(body) > 0) {
            static const char *const none[] = {NULL};
            struct verrs e = {0};
            jv_no_unknown(body, "", none, &e);
            http_respond_problem_ext(
                req, 422, "validation-failed", "Validation failed",
                "extend takes no fields",
                json_pack("{s:o}", "errors", verr_to_json(&e)));
            return;
        }
    }
    if ((op = booking_op_new(b, OP_EXTEND)) == NULL) {
        http_respond_unavailable(req, 1, "out of memory");
        return;
    }
    if (!read_customer(req, op) || !hold_param(req, &id, &op->show_id) ||
        idem_begin(b, req, op)) {
        booking_op_free(op);
        return;
    }
    snprintf(op->hold_id, sizeof(op->hold_id), "%s", id);
    booking_op_dispatch(req, op);
}

static const char SQL_RELEASE_HOLD[] =
    "UPDATE holds SET status = 'released', ended_at = ?, "
    "version = version + 1 WHERE id = ? AND status = 'active' "
    "AND expires_at > ?";
/* Seats by primary key, never a scan of the show: an arena has 5,000. */
static const char SQL_FREE_SEAT[] =
    "UPDATE seats SET state = 0, hold_id = NULL, expires_at = 0, "
    "version = version + 1 WHERE show_id = ? AND idx = ? AND hold_id = ? "
    "AND state = 1";
static const char SQL_EXTEND_HOLD[] =
    "UPDATE holds SET expires_at = ?, extensions = extensions + 1, "
    "version = version + 1 WHERE id = ? AND status = 'active' AND "
    "version = ? AND expires_at > ?";
static const char SQL_EXTEND_SEAT[] =
    "UPDATE seats SET expires_at = ?, version = version + 1 "
    "WHERE show_id = ? AND idx = ? AND hold_id = ? AND state = 1";

/* Runs one bound statement; ERR_CONFLICT when it changed no row. */
static int run_changing(struct store_conn *c, struct store_stmt *st)
{
    int rc = store_step(st);

    store_reset(st);
    if (rc < 0)
        return rc;
    return store_changes(c) > 0 ? ERR_OK : ERR_CONFLICT;
}

/*
 * Frees a hold's seats that it still holds (a seat taken over after the
 * hold expired belongs to its new hold); with before_ms, only if expired.
 */
static const char SQL_FREE_SEAT_EXPIRED[] =
    "UPDATE seats SET state = 0, hold_id = NULL, expires_at = 0, "
    "version = version + 1 WHERE show_id = ? AND idx = ? AND hold_id = ? "
    "AND state = 1 AND expires_at <= ?";

static int free_seats(struct store_conn *c, int64_t show_id,
                      const char *hold_id, const uint32_t *seats, size_t n,
                      int64_t before_ms)
{
    struct store_stmt *st;
    int rc = ERR_OK;

    for (size_t i = 0; i < n && rc >= 0; i++) {
        rc = store_prepare(c, before_ms ? SQL_FREE_SEAT_EXPIRED : SQL_FREE_SEAT,
                           &st);
        if (rc != ERR_OK)
            return rc;
        store_bind_int(st, 1, show_id);
        store_bind_int(st, 2, seats[i]);
        store_bind_text(st, 3, hold_id);
        if (before_ms)
            store_bind_int(st, 4, before_ms);
        rc = store_step(st);
        store_reset(st);
    }
    return rc < 0 ? rc : ERR_OK;
}

static int release_apply(struct store_conn *c, void *arg)
{
    struct booking_op *op = arg;
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_RELEASE_HOLD, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_int(st, 1, op->now_ms);
    store_bind_text(st, 2, op->hold_id);
    store_bind_int(st, 3, op->now_ms);
    if ((rc = run_changing(c, st)) != ERR_OK)
        return rc;
    return free_seats(c, op->show_id, op->hold_id, op->seats, op->nseats, 0);
}

static int extend_apply(struct store_conn *c, void *arg)
{
    struct booking_op *op = arg;
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_EXTEND_HOLD, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_int(st, 1, op->expires_at);
    store_bind_text(st, 2, op->hold_id);
    store_bind_int(st, 3, op->hold_version);
    store_bind_int(st, 4, op->now_ms);
    if ((rc = run_changing(c, st)) != ERR_OK)
        return rc;
    for (size_t i = 0; i < op->nseats && rc >= 0; i++) {
        if ((rc = store_prepare(c, SQL_EXTEND_SEAT, &st)) != ERR_OK)
            return rc;
        store_bind_int(st, 1, op->expires_at);
        store_bind_int(st, 2, op->show_id);
        store_bind_int(st, 3, op->seats[i]);
        store_bind_text(st, 4, op->hold_id);
        rc = store_step(st);
        store_reset(st);
    }
    if (rc < 0)
        return rc;
    if (op->idem_key[0] != '\0') {
        if ((rc = idem_store(c, op, 200, op->response)) != ERR_OK)
            return rc;
        op->idem_stored = true;
    }
    return ERR_OK;
}

/* On the owner after a release or an extension was written. */
static void on_change_written(void *thread_data, void *arg)
{
    struct booking_thread *t = thread_data;
    struct booking_op *op = arg;
    struct show_inv *inv = booking_show_get(t, op->show_id);
    uint32_t slot = inv != NULL ? inv_find_hold(inv, op->hold_id) : 0;

    if (op->rc == ERR_OK && slot != 0) {
        struct inv_hold *h = inv_hold_at(inv, slot);
        if (op->kind == OP_RELEASE) {
            inv_end(inv, slot, SEAT_FREE);
            metrics_inc(op->b->metrics.holds_released);
        } else {
            h->expires_at = op->expires_at;
            h->extensions++;
            inv->version++;
        }
    }
    if (op->rc == ERR_OK) {
        op->status = 200;
    } else {
        op->idem_stored = false;
        if (op->rc == ERR_CONFLICT)
            booking_op_fail(op, 409, "hold-not-active", "Hold not active",
                            "hold %s ended or changed meanwhile", op->hold_id);
        else
            booking_op_fail(op, 503, "unavailable", "Service unavailable",
                            "the change could not be stored: %s",
                            err_msg(op->rc));
    }
    http_server_release(op->b->server);
    booking_op_finish(op);
}

static void on_change_done(void *arg, int rc)
{
    struct booking_op *op = arg;

    op->rc = rc;
    if (!http_server_post(op->b->server, op->owner, on_change_written, op)) {
        booking_op_fail(op, 503, "unavailable", "Service unavailable",
                        "the service is shutting down");
        http_server_release(op->b->server);
        booking_op_finish(op);
    }
}

static void submit_change(struct booking_op *op,
                          int (*apply)(struct store_conn *, void *))
{
    struct booking *b = op->b;

    op->w.apply = apply;
    op->w.done = on_change_done;
    http_server_hold(b->server);
    int rc = store_submit(b->store, &op->w);
    if (rc != ERR_OK) {
        http_server_release(b->server);
        booking_op_fail(op, 503, "unavailable", "Service unavailable",
                        rc == ERR_FULL ? "too many changes are being written"
                                       : "the service is shutting down");
        booking_op_finish(op);
    }
}

/* Reads the hold for a release or an extension; false when answered. */
static bool load_hold(struct booking_thread *t, struct booking_op *op,
                      struct hold_row *row)
{
    int rc = booking_hold_read(t->conn, op->hold_id, row);

    /* Another customer's hold answers as if it did not exist: its id
     * tells nothing about whose it is. */
    if (rc == ERR_NOTFOUND ||
        (rc == ERR_OK && (row->show_id != op->show_id ||
                          strcmp(row->customer, op->customer) != 0)))
        booking_op_fail(op, 404, "not-found", "Not found",
                        "there is no hold %s", op->hold_id);
    else if (rc != ERR_OK)
        booking_op_fail(op, 503, "unavailable", "Service unavailable",
                        "the booking database is unavailable");
    if (op->status != 0) {
        free(row->seats);
        booking_op_finish(op);
        return false;
    }
    return true;
}

void booking_op_release(struct booking_thread *t, struct booking_op *op,
                        struct show_inv *inv)
{
    struct hold_row row;

    op->now_ms = clock_wall_ms(t->b->clock);
    if (!load_hold(t, op, &row))
        return;
    /* Releasing what already ended answers how it ended: DELETE is
     * idempotent. */
    if (strcmp(row.status, "active") != 0 || row.expires_at <= op->now_ms) {
        op->status = 200;
        op->response = hold_text(t->b, &row, op->now_ms);
        free(row.seats);
        booking_op_finish(op);
        return;
    }
    /* Money may be on its way for these seats: the checkout settles the
     * hold (a booking, or a refund once it has expired). */
    uint32_t slot = inv != NULL ? inv_find_hold(inv, op->hold_id) : 0;
    if (slot != 0 && inv_hold_at(inv, slot)->in_checkout) {
        booking_op_fail(op, 409, "checkout-in-progress", "Checkout in progress",
                        "hold %s is being paid for; it cannot be released "
                        "until the payment answers",
                        op->hold_id);
        free(row.seats);
        booking_op_finish(op);
        return;
    }
    snprintf(row.status, sizeof(row.status), "released");
    memcpy(op->seats, row.idx, row.nidx * sizeof(row.idx[0]));
    op->nseats = row.nidx;
    op->response = hold_text(t->b, &row, op->now_ms);
    free(row.seats);
    submit_change(op, release_apply);
}

void booking_op_extend(struct booking_thread *t, struct booking_op *op,
                       struct show_inv *inv)
{
    struct booking *b = t->b;
    struct hold_row row;

    op->now_ms = clock_wall_ms(b->clock);
    if (!load_hold(t, op, &row))
        return;
    int64_t want = op->now_ms + (int64_t)inv->hold_seconds * 1000;
    if (want > row.max_expires_at)
        want = row.max_expires_at;
    if (strcmp(row.status, "active") != 0 || row.expires_at <= op->now_ms)
        booking_op_fail(op, 409, "hold-not-active", "Hold not active",
                        "hold %s has ended", op->hold_id);
    else if (inv->cancelled)
        booking_op_fail(op, 409, "show-closed", "Show not on sale",
                        "show %lld is cancelled", (long long)inv->show_id);
    else if (row.extensions >= b->max_extensions)
        booking_op_fail(op, 409, "extension-limit", "Extension refused",
                        "hold %s was extended %d times, the most allowed",
                        op->hold_id, row.extensions);
    else if (want <= row.expires_at && want == row.max_expires_at)
        booking_op_fail(op, 409, "extension-limit", "Extension refused",
                        "hold %s already lasts until its maximum life",
                        op->hold_id);
    else if (want <= row.expires_at)
        booking_op_fail(op, 409, "extension-limit", "Extension refused",
                        "hold %s already has the show's whole hold time "
                        "ahead of it; extend it when it runs low",
                        op->hold_id);
    if (op->status != 0) {
        free(row.seats);
        booking_op_finish(op);
        return;
    }
    op->expires_at = want;
    op->hold_version = row.version;
    memcpy(op->seats, row.idx, row.nidx * sizeof(row.idx[0]));
    op->nseats = row.nidx;
    row.expires_at = want;
    row.extensions++;
    op->response = hold_text(b, &row, op->now_ms);
    free(row.seats);
    submit_change(op, extend_apply);
}

/* --- the sweeper ------------------------------------------------------------
 */

#define SWEEP_BATCH_MAX 128 /* expired holds ended by one write */

struct sweep_job {
    struct store_write w;
    int64_t now_ms;
    size_t n;
    int64_t show[SWEEP_BATCH_MAX];
    char hold[SWEEP_BATCH_MAX][INV_HOLD_ID_MAX];
    uint32_t seats[SWEEP_BATCH_MAX][BOOKING_SEATS_PER_REQUEST_MAX];
    size_t nseats[SWEEP_BATCH_MAX];
};

static const char SQL_EXPIRE_HOLD[] =
    "UPDATE holds SET status = 'expired', ended_at = ? "
    "WHERE id = ? AND status = 'active' AND expires_at <= ?";

static int sweep_apply(struct store_conn *c, void *arg)
{
    struct sweep_job *j = arg;
    struct store_stmt *st;
    int rc = ERR_OK;

    for (size_t i = 0; i < j->n && rc >= 0; i++) {
        if ((rc = store_prepare(c, SQL_EXPIRE_HOLD, &st)) != ERR_OK)
            return rc;
        store_bind_int(st, 1, j->now_ms);
        store_bind_text(st, 2, j->hold[i]);
        store_bind_int(st, 3, j->now_ms);
        rc = store_step(st);
        store_reset(st);
        if (rc < 0)
            return rc;
        rc = free_seats(c, j->show[i], j->hold[i], j->seats[i], j->nseats[i],
                        j->now_ms);
    }
    return rc < 0 ? rc : ERR_OK;
}

static void sweep_done(void *arg, int rc)
{
    if (rc != ERR_OK)
        log_warn("booking", "sweep_write_failed error=%s", err_name(rc));
    free(arg);
}

struct sweep_ctx {
    struct sweep_job *job;
    int64_t now_ms;
    size_t held; /* seats of live holds over the thread's shows */
};

static void collect_expired(void *arg, const struct inv_hold *h)
{
    struct sweep_ctx *ctx = arg;
    struct sweep_job *j = ctx->job;

    if (j == NULL || j->n == SWEEP_BATCH_MAX)
        return;
    snprintf(j->hold[j->n], INV_HOLD_ID_MAX, "%s", h->id);
    j->show[j->n] = strtoll(h->id, NULL, 10);
    j->nseats[j->n] = h->nseats < BOOKING_SEATS_PER_REQUEST_MAX
                          ? h->nseats
                          : BOOKING_SEATS_PER_REQUEST_MAX;
    memcpy(j->seats[j->n], h->seats, j->nseats[j->n] * sizeof(uint32_t));
    j->n++;
}

static void sweep_show(struct booking_thread *t, struct show_inv *inv,
                       void *arg)
{
    struct sweep_ctx *ctx = arg;
    size_t room = ctx->job != NULL ? SWEEP_BATCH_MAX - ctx->job->n : 0;

    (void)t;
    if (room > 0)
        inv_sweep(inv, ctx->now_ms, room, collect_expired, ctx);
    ctx->held += inv_held_seats(inv, ctx->now_ms);
}

/*
 * Frees expired holds in memory (they already count as free) and ends them
 * in the database, in one write per tick.  The database does not need it
 * for correctness either: its "free" test counts them free already.
 */
void booking_sweep(struct booking_thread *t, int64_t now_ms)
{
    struct sweep_ctx ctx = {calloc(1, sizeof(struct sweep_job)), now_ms, 0};
    struct booking_metrics *bm = &t->b->metrics;

    booking_thread_each_show(t, sweep_show, &ctx);
    /* Each thread adds the change of its own share: the gauge is the sum. */
    metrics_gauge_add(bm->seats_held, (double)ctx.held - (double)t->seats_held);
    t->seats_held = ctx.held;
    if (ctx.job == NULL)
        return;
    metrics_add(bm->holds_expired, ctx.job->n);
    if (ctx.job->n == 0) {
        free(ctx.job);
        return;
    }
    ctx.job->now_ms = now_ms;
    ctx.job->w.apply = sweep_apply;
    ctx.job->w.done = sweep_done;
    ctx.job->w.arg = ctx.job;
    log_debug("booking", "sweep thread=%d expired=%zu", t->index, ctx.job->n);
    if (store_submit(t->b->store, &ctx.job->w) != ERR_OK)
        free(ctx.job);
}
