/*
 * bookings.c - bookings: reading them, listing a customer's, and
 * cancelling all or some of their seats.
 *
 * A cancellation runs on the show's owner thread, like a hold: the owner
 * checks the booking it reads from the database (owner, window, seats),
 * then one write job frees the seats, marks them cancelled in the
 * booking, records the refund as due, adds the booking.cancelled event
 * and stores the answer under the Idempotency-Key, all in one
 * transaction, guarded by the booking's version.  After the commit the
 * owner frees the seats in memory and the reconciler is woken to send the
 * refund (reconcile.c), which it retries until payment confirms.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "domain/validate.h"
#include "metrics/metrics.h"
#include "services/booking/internal.h"

/* --- reading -------------------------------------------------------------- */

static const char SQL_BOOKING_GET[] =
    "SELECT b.id, b.show_id, b.customer_id, b.hold_id, b.status, b.total, "
    "b.currency, b.charge_id, b.charged, b.refunded, b.fee_retained, "
    "b.created_at, b.updated_at, s.starts_at, s.cancel_until_minutes, "
    "s.cancel_fee_percent, b.version, b.intent_id "
    "FROM bookings b JOIN shows s ON s.id = b.show_id WHERE b.id = ?";
static const char SQL_BOOKING_SEATS[] =
    "SELECT idx, seat, category, price, status FROM booking_seats "
    "WHERE booking_id = ? ORDER BY idx";
static const char SQL_BOOKING_REFUNDS[] =
    "SELECT id, amount, fee, reason, state, payment_refund_id, created_at "
    "FROM refunds WHERE booking_id = ? ORDER BY created_at, id";

struct booking_seat {
    uint32_t idx;
    char id[INV_SEAT_ID_MAX];
    char category[16];
    int64_t price;
    bool cancelled;
};

struct booking_row {
    char id[BOOKING_ID_MAX];
    int64_t show_id;
    char customer[INV_CUSTOMER_MAX + 1];
    char hold_id[INV_HOLD_ID_MAX];
    char status[24];
    int64_t total;
    char currency[4];
    char charge_id[BOOKING_PAY_ID_MAX];
    char intent_id[BOOKING_INTENT_ID_MAX];
    int64_t charged, refunded, fee_retained;
    int64_t created_at, updated_at, version;
    int64_t starts_at;
    int until_minutes, fee_percent;
    struct booking_seat seats[BOOKING_SEATS_PER_REQUEST_MAX];
    size_t nseats;
};

static void text_col(char *dst, size_t cap, struct store_stmt *st, int col)
{
    snprintf(dst, cap, "%s", store_col_text(st, col));
}

/* Reads a booking and its seats; ERR_NOTFOUND when there is none. */
static int booking_read(struct store_conn *c, const char *id,
                        struct booking_row *row)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_BOOKING_GET, &st);

    memset(row, 0, sizeof(*row));
    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, id);
    rc = store_step(st);
    if (rc == STORE_ROW) {
        text_col(row->id, sizeof(row->id), st, 0);
        row->show_id = store_col_int(st, 1);
        text_col(row->customer, sizeof(row->customer), st, 2);
        text_col(row->hold_id, sizeof(row->hold_id), st, 3);
        text_col(row->status, sizeof(row->status), st, 4);
        row->total = store_col_int(st, 5);
        text_col(row->currency, sizeof(row->currency), st, 6);
        text_col(row->charge_id, sizeof(row->charge_id), st, 7);
        row->charged = store_col_int(st, 8);
        row->refunded = store_col_int(st, 9);
        row->fee_retained = store_col_int(st, 10);
        row->created_at = store_col_int(st, 11);
        row->updated_at = store_col_int(st, 12);
        row->starts_at = store_col_int(st, 13);
        row->until_minutes = (int)store_col_int(st, 14);
        row->fee_percent = (int)store_col_int(st, 15);
        row->version = store_col_int(st, 16);
        text_col(row->intent_id, sizeof(row->intent_id), st, 17);
        rc = ERR_OK;
    } else if (rc == ERR_OK) {
        rc = ERR_NOTFOUND;
    }
    store_reset(st);
    if (rc != ERR_OK)
        return rc;

    if ((rc = store_prepare(c, SQL_BOOKING_SEATS, &st)) != ERR_OK)
        return rc;
    store_bind_text(st, 1, id);
    while (row->nseats < BOOKING_SEATS_PER_REQUEST_MAX &&
           (rc = store_step(st)) == STORE_ROW) {
        struct booking_seat *s = &row->seats[row->nseats++];
        s->idx = (uint32_t)store_col_int(st, 0);
        text_col(s->id, sizeof(s->id), st, 1);
        text_col(s->category, sizeof(s->category), st, 2);
        s->price = store_col_int(st, 3);
        s->cancelled = strcmp(store_col_text(st, 4), "cancelled") == 0;
    }
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

static json_t *time_json(int64_t ms)
{
    char buf[CLOCK_RFC3339_LEN];

    clock_format_rfc3339(ms, buf);
    return json_string(buf);
}

static int64_t window_end(const struct booking_row *row)
{
    return row->starts_at - (int64_t)row->until_minutes * 60 * 1000;
}

static json_t *refunds_json(struct store_conn *c, const char *id)
{
    json_t *list = json_array();
    struct store_stmt *st;

    if (store_prepare(c, SQL_BOOKING_REFUNDS, &st) != ERR_OK)
        return list;
    store_bind_text(st, 1, id);
    while (store_step(st) == STORE_ROW) {
        json_t *r = json_pack(
            "{s:s, s:I, s:I, s:s, s:s, s:o, s:o}", "id", store_col_text(st, 0),
            "amount", (json_int_t)store_col_int(st, 1), "fee",
            (json_int_t)store_col_int(st, 2), "reason", store_col_text(st, 3),
            "state", store_col_text(st, 4), "payment_refund_id",
            store_col_is_null(st, 5) ? json_null()
                                     : json_string(store_col_text(st, 5)),
            "created_at", time_json(store_col_int(st, 6)));
        json_array_append_new(list, r);
    }
    store_reset(st);
    return list;
}

static json_t *booking_json(struct store_conn *c, const struct booking_row *b)
{
    json_t *seats = json_array();

    for (size_t i = 0; i < b->nseats; i++) {
        const struct booking_seat *s = &b->seats[i];
        json_array_append_new(
            seats,
            json_pack("{s:s, s:s, s:I, s:s}", "id", s->id, "category",
                      s->category, "price", (json_int_t)s->price, "status",
                      s->cancelled ? "cancelled" : "confirmed"));
    }
    return json_pack(
        "{s:s, s:I, s:s, s:s, s:s, s:o, s:I, s:s, s:s, s:I, s:I, s:I, "
        "s:{s:o, s:i}, s:o, s:o, s:o}",
        "id", b->id, "show_id", (json_int_t)b->show_id, "customer_id",
        b->customer, "hold_id", b->hold_id, "status", b->status, "seats", seats,
        "total", (json_int_t)b->total, "currency", b->currency, "charge_id",
        b->charge_id, "charged", (json_int_t)b->charged, "refunded",
        (json_int_t)b->refunded, "fee_retained", (json_int_t)b->fee_retained,
        "cancellation", "until", time_json(window_end(b)), "fee_percent",
        b->fee_percent, "refunds", refunds_json(c, b->id), "created_at",
        time_json(b->created_at), "updated_at", time_json(b->updated_at));
}

int booking_render(struct store_conn *c, const char *id, json_t **out)
{
    struct booking_row *row = malloc(sizeof(*row));
    int rc;

    *out = NULL;
    if (row == NULL)
        return ERR_NOMEM;
    if ((rc = booking_read(c, id, row)) == ERR_OK) {
        *out = booking_json(c, row);
        rc = *out != NULL ? ERR_OK : ERR_NOMEM;
    }
    free(row);
    return rc;
}

char *booking_render_text(struct store_conn *c, const char *id)
{
    json_t *doc;
    char *text = NULL;

    if (booking_render(c, id, &doc) == ERR_OK)
        text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

/* --- GET /v1/bookings/{id} ------------------------------------------------ */

static bool booking_param(struct http_req *req, const char **id,
                          int64_t *show_id)
{
    *id = http_req_param(req, "booking_id");
    if (!booking_id_parse(*id, true, show_id)) {
        http_respond_problem(req, 404, "not-found", "Not found",
                             "there is no booking \"%.40s\"", *id ? *id : "");
        return false;
    }
    return true;
}

void booking_handle_get_booking(struct http_req *req, void *app)
{
    struct booking_thread *t = http_req_thread_data(req);
    const char *id, *customer;
    int64_t show_id;
    json_t *doc;

    (void)app;
    if ((customer = http_req_customer(req)) == NULL ||
        !booking_param(req, &id, &show_id))
        return;
    int rc = booking_render(t->conn, id, &doc);
    /* Someone else's booking is answered as if it did not exist. */
    if (rc == ERR_OK &&
        strcmp(json_string_value(json_object_get(doc, "customer_id")),
               customer) != 0)
        rc = ERR_NOTFOUND;
    if (rc == ERR_OK) {
        http_respond_json(req, 200, doc);
        return;
    }
    json_decref(doc);
    if (rc == ERR_NOTFOUND)
        http_respond_problem(req, 404, "not-found", "Not found",
                             "there is no booking %s", id);
    else
        http_respond_unavailable(req, 1, "the booking database is unavailable");
}

/* --- GET /v1/bookings ----------------------------------------------------- */

static const char SQL_BOOKINGS_PAGE[] =
    "SELECT id, created_at FROM bookings WHERE customer_id = ? AND "
    "(created_at < ? OR (created_at = ? AND id < ?)) "
    "ORDER BY created_at DESC, id DESC LIMIT ?";

/* A cursor is "<created_at ms>.<booking id>" of the last booking shown. */
static bool cursor_parse(const char *s, int64_t *at, char id[BOOKING_ID_MAX])
{
    char *dot;
    int64_t show_id;
    long long ms = strtoll(s, &dot, 10);

    if (dot == s || *dot != '.' || ms < 0 || s[0] == '-' || s[0] == '+')
        return false;
    if (!booking_id_parse(dot + 1, true, &show_id))
        return false;
    *at = ms;
    snprintf(id, BOOKING_ID_MAX, "%s", dot + 1);
    return true;
}

static bool list_params(struct http_req *req, int64_t *limit, int64_t *at,
                        char after[BOOKING_ID_MAX])
{
    bool bad = false;
    const char *l = http_req_query(req, "limit", &bad);
    const char *cur = bad ? NULL : http_req_query(req, "cursor", &bad);
    char *end;

    if (bad)
        return false;
    *limit = BOOKING_LIST_DEFAULT;
    if (l != NULL) {
        *limit = strtoll(l, &end, 10);
        if (end == l || *end != '\0' || *limit < 1 ||
            *limit > BOOKING_LIST_MAX) {
            http_respond_problem(req, 400, "invalid-query", "Invalid query",
                                 "limit must be an integer from 1 to %d",
                                 BOOKING_LIST_MAX);
            return false;
        }
    }
    *at = INT64_MAX;
    after[0] = '\0';
    if (cur != NULL && !cursor_parse(cur, at, after)) {
        http_respond_problem(req, 400, "invalid-query", "Invalid query",
                             "cursor must be a next_cursor this API gave");
        return false;
    }
    return true;
}

void booking_handle_list_bookings(struct http_req *req, void *app)
{
    struct booking_thread *t = http_req_thread_data(req);
    char after[BOOKING_ID_MAX], last[BOOKING_ID_MAX] = "";
    const char *customer;
    int64_t limit, at, last_at = 0;
    struct store_stmt *st;
    char ids[BOOKING_LIST_MAX + 1][BOOKING_ID_MAX];
    size_t n = 0;
    int rc;

    (void)app;
    if ((customer = http_req_customer(req)) == NULL ||
        !list_params(req, &limit, &at, after))
        return;
    if ((rc = store_prepare(t->conn, SQL_BOOKINGS_PAGE, &st)) == ERR_OK) {
        store_bind_text(st, 1, customer);
        store_bind_int(st, 2, at);
        store_bind_int(st, 3, at);
        store_bind_text(st, 4, after[0] != '\0' ? after : "\x7f");
        store_bind_int(st, 5, limit + 1);
        while (n < (size_t)limit + 1 && (rc = store_step(st)) == STORE_ROW) {
            snprintf(ids[n], BOOKING_ID_MAX, "%s", store_col_text(st, 0));
            if (n < (size_t)limit) {
                memcpy(last, ids[n], sizeof(last));
                last_at = store_col_int(st, 1);
            }
            n++;
        }
        store_reset(st);
    }
    if (rc < 0) {
        http_respond_unavailable(req, 1, "the booking database is unavailable");
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < n && i < (size_t)limit; i++) {
        json_t *doc;
        if (booking_render(t->conn, ids[i], &doc) == ERR_OK)
            json_array_append_new(list, doc);
    }
    json_t *next = json_null();
    if (n > (size_t)limit) {
        char cursor[32 + BOOKING_ID_MAX];
        snprintf(cursor, sizeof(cursor), "%" PRId64 ".%s", last_at, last);
        next = json_string(cursor);
    }
    http_respond_json(
        req, 200,
        json_pack("{s:o, s:o}", "bookings", list, "next_cursor", next));
}

/* --- POST /v1/bookings/{id}/cancel ---------------------------------------- */

/* {} or no body: every seat left; {"seats": ["A2"]}: those. */
static bool read_cancel_body(struct http_req *req, struct booking_op *op)
{
    static const char *const known[] = {"seats", NULL};
    struct verrs e = {0};
    char path[VERR_FIELD_MAX];
    json_t *seats = NULL, *body;
    size_t len;

    op->all_seats = true;
    http_req_body(req, &len);
    if (len == 0)
        return true;
    if ((body = http_req_json(req)) == NULL)
        return false;
    jv_no_unknown(body, "", known, &e);
    if (jv_array(body, "seats", "seats", false, 1,
                 BOOKING_SEATS_PER_REQUEST_MAX, &seats, &e)) {
        op->all_seats = false;
        for (size_t i = 0; i < json_array_size(seats); i++) {
            json_t *v = json_array_get(seats, i);
            jv_path_index(path, "seats", i);
            if (!json_is_string(v) || json_string_length(v) == 0 ||
                json_string_length(v) >= INV_SEAT_ID_MAX) {
                verr_add(&e, path, "wrong-type",
                         "%s must be a seat id such as \"A12\"", path);
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

void booking_handle_cancel_booking(struct http_req *req, void *app)
{
    struct booking *b = app;
    struct booking_op *op = booking_op_new(b, OP_CANCEL);
    const char *id, *customer;

    if (op == NULL) {
        http_respond_unavailable(req, 1, "out of memory");
        return;
    }
    if (!booking_param(req, &id, &op->show_id) ||
        (customer = http_req_customer(req)) == NULL)
        goto out_free_op;
    snprintf(op->customer, sizeof(op->customer), "%s", customer);
    snprintf(op->booking_id, sizeof(op->booking_id), "%s", id);
    if (http_req_header(req, "idempotency-key") == NULL) {
        http_respond_problem(req, 400, "idempotency-key-required",
                             "Idempotency-Key required",
                             "a cancellation needs an Idempotency-Key header");
        goto out_free_op;
    }
    if (!read_cancel_body(req, op) || idem_begin(b, req, op))
        goto out_free_op;
    booking_op_dispatch(req, op);
    return;

out_free_op:
    booking_op_free(op);
}

/* Checks the request against the booking; false when answered. */
static bool check_cancel(struct booking_op *op, const struct booking_row *row,
                         int64_t now_ms)
{
    struct verrs e = {0};
    char path[VERR_FIELD_MAX];
    json_t *already = json_array();
    size_t live = 0;

    for (size_t i = 0; i < row->nseats; i++)
        live += !row->seats[i].cancelled;
    for (size_t i = 0; !op->all_seats && i < op->nseats; i++) {
        size_t j = 0;
        while (j < row->nseats && strcmp(row->seats[j].id, op->seat_ids[i]))
            j++;
        if (j == row->nseats) {
            jv_path_index(path, "seats", i);
            verr_add(&e, path, "not-in-booking",
                     "seat %s is not part of booking %s", op->seat_ids[i],
                     row->id);
            continue;
        }
        op->seats[i] = row->seats[j].idx;
        if (row->seats[j].cancelled)
            json_array_append_new(already, json_string(row->seats[j].id));
    }
    if (verr_any(&e)) {
        booking_op_fail(op, 422, "validation-failed", "Validation failed",
                        "the booking has no such seat");
        op->body = json_pack("{s:o}", "errors", verr_to_json(&e));
    } else if (live == 0) {
        booking_op_fail(op, 409, "booking-cancelled", "Booking cancelled",
                        "booking %s is cancelled already", row->id);
    } else if (json_array_size(already) > 0) {
        booking_op_fail(
            op, 409, "seats-already-cancelled", "Seats already cancelled",
            "%zu of the seats were cancelled before", json_array_size(already));
        op->body = json_pack("{s:O}", "seats", already);
    } else if (now_ms > window_end(row)) {
        char until[CLOCK_RFC3339_LEN];
        clock_format_rfc3339(window_end(row), until);
        booking_op_fail(op, 409, "cancellation-closed", "Cancellation closed",
                        "booking %s could be cancelled until %s, %d minutes "
                        "before the show",
                        row->id, until, row->until_minutes);
        op->body = json_pack("{s:s}", "cancellable_until", until);
    }
    json_decref(already);
    return op->status == 0;
}

static void on_cancel_written(void *thread_data, void *arg)
{
    struct booking_thread *t = thread_data;
    struct cancel_job *j = arg;
    struct booking_op *op = j->op;
    struct show_inv *inv = booking_show_get(t, op->show_id);

    if (op->rc == ERR_OK) {
        for (size_t i = 0; inv != NULL && i < j->nfreed; i++)
            if (j->freed[i] < inv->map->nseats &&
                inv->state[j->freed[i]] == SEAT_SOLD)
                inv_load_seat(inv, j->freed[i], SEAT_FREE);
        op->status = 200;
        metrics_inc(t->b->metrics.cancellations_customer);
        log_debug("booking",
                  "booking_cancelled id=%s seats=%zu refund=%" PRId64
                  " fee=%" PRId64 " reason=customer",
                  op->booking_id, j->nfreed, j->refund, j->fee);
        booking_reconciler_wake(t->b->reconciler);
        booking_relay_wake(t->b->relay);
    } else {
        op->idem_stored = false;
        if (op->rc == ERR_CONFLICT)
            booking_op_fail(op, 409, "booking-changed", "Booking changed",
                            "booking %s changed meanwhile; read it and retry",
                            op->booking_id);
        else
            booking_op_fail(op, 503, "unavailable", "Service unavailable",
                            "the cancellation could not be stored: %s",
                            err_msg(op->rc));
    }
    free(j);
    http_server_release(t->b->server);
    booking_op_finish(op);
}

static void on_cancel_done(void *arg, int rc)
{
    struct cancel_job *j = arg;
    struct booking_op *op = j->op;

    op->rc = rc;
    if (!http_server_post(op->b->server, op->owner, on_cancel_written, j)) {
        booking_op_fail(op, 503, "unavailable", "Service unavailable",
                        "the service is shutting down");
        http_server_release(op->b->server);
        free(j);
        booking_op_finish(op);
    }
}

void booking_op_cancel(struct booking_thread *t, struct booking_op *op,
                       struct show_inv *inv)
{
    struct booking *b = t->b;
    struct booking_row *row = malloc(sizeof(*row));
    struct cancel_job *j = NULL;
    int rc;

    (void)inv;
    op->now_ms = clock_wall_ms(b->clock);
    rc = row != NULL ? booking_read(t->conn, op->booking_id, row) : ERR_NOMEM;
    if (rc == ERR_NOTFOUND ||
        (rc == ERR_OK && strcmp(row->customer, op->customer) != 0))
        booking_op_fail(op, 404, "not-found", "Not found",
                        "there is no booking %s", op->booking_id);
    else if (rc != ERR_OK)
        booking_op_fail(op, 503, "unavailable", "Service unavailable",
                        "the booking database is unavailable");
    else if (check_cancel(op, row, op->now_ms) &&
             (j = calloc(1, sizeof(*j))) == NULL)
        booking_op_fail(op, 503, "unavailable", "Service unavailable",
                        "out of memory");
    if (op->status != 0) {
        free(row);
        booking_op_finish(op);
        return;
    }
    j->b = b;
    j->op = op;
    snprintf(j->booking_id, sizeof(j->booking_id), "%s", op->booking_id);
    snprintf(j->refund_id, sizeof(j->refund_id), "rf_%016" PRIx64,
             rand_next(&t->rng));
    j->reason = "customer";
    j->fee_percent = row->fee_percent;
    j->version = row->version;
    j->nseats = op->all_seats ? 0 : op->nseats;
    memcpy(j->seats, op->seats, j->nseats * sizeof(j->seats[0]));
    j->now_ms = op->now_ms;
    j->w.apply = booking_cancel_apply;
    j->w.done = on_cancel_done;
    j->w.arg = j;
    free(row);
    http_server_hold(b->server);
    if ((rc = store_submit(b->store, &j->w)) != ERR_OK) {
        http_server_release(b->server);
        free(j);
        booking_op_fail(op, 503, "unavailable", "Service unavailable",
                        rc == ERR_FULL ? "too many changes are being written"
                                       : "the service is shutting down");
        booking_op_finish(op);
    }
}

/* --- the cancellation's write (writer thread) ----------------------------- */

static const char SQL_SEAT_CANCEL[] =
    "UPDATE booking_seats SET status = 'cancelled', cancelled_at = ? "
    "WHERE booking_id = ? AND idx = ? AND status = 'confirmed'";
static const char SQL_SEAT_UNSELL[] =
    "UPDATE seats SET state = 0, booking_id = NULL, hold_id = NULL, "
    "expires_at = 0, version = version + 1 "
    "WHERE show_id = ? AND idx = ? AND state = 2 AND booking_id = ?";
static const char SQL_BOOKING_CANCEL[] =
    "UPDATE bookings SET status = ?, refunded = refunded + ?, "
    "fee_retained = fee_retained + ?, updated_at = ?, version = version + 1 "
    "WHERE id = ? AND version = ?";
static const char SQL_REFUND_ADD[] =
    "INSERT INTO refunds (id, booking_id, intent_id, charge_id, amount, fee, "
    "currency, reason, state, next_at, created_at, done_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

static int exec_changing(struct store_conn *c, struct store_stmt *st)
{
    int rc = store_step(st);

    store_reset(st);
    if (rc < 0)
        return rc;
    return store_changes(c) == 1 ? ERR_OK : ERR_CONFLICT;
}

/* Marks one seat cancelled in the booking and frees it in the show. */
static int cancel_seat(struct store_conn *c, const struct cancel_job *j,
                       int64_t show_id, uint32_t idx)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_SEAT_CANCEL, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_int(st, 1, j->now_ms);
    store_bind_text(st, 2, j->booking_id);
    store_bind_int(st, 3, idx);
    if ((rc = exec_changing(c, st)) != ERR_OK)
        return rc;
    if ((rc = store_prepare(c, SQL_SEAT_UNSELL, &st)) != ERR_OK)
        return rc;
    store_bind_int(st, 1, show_id);
    store_bind_int(st, 2, idx);
    store_bind_text(st, 3, j->booking_id);
    /* A seat not sold to this booking in the show table is a broken
     * invariant: the booking row says it holds it. */
    return exec_changing(c, st);
}

static bool listed(const struct cancel_job *j, uint32_t idx)
{
    for (size_t i = 0; i < j->nseats; i++)
        if (j->seats[i] == idx)
            return true;
    return false;
}

static int add_refund(struct store_conn *c, const struct cancel_job *j,
                      const struct booking_row *row)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_REFUND_ADD, &st);
    bool nothing = j->refund == 0; /* a 100% fee: nothing to send */

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, j->refund_id);
    store_bind_text(st, 2, row->id);
    store_bind_text(st, 3, row->intent_id);
    store_bind_text(st, 4, row->charge_id);
    store_bind_int(st, 5, j->refund);
    store_bind_int(st, 6, j->fee);
    store_bind_text(st, 7, row->currency);
    store_bind_text(st, 8, j->reason);
    store_bind_text(st, 9, nothing ? "done" : "due");
    store_bind_int(st, 10, j->now_ms);
    store_bind_int(st, 11, j->now_ms);
    if (nothing)
        store_bind_int(st, 12, j->now_ms);
    else
        store_bind_null(st, 12);
    rc = store_step(st);
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

static int add_cancel_event(struct store_conn *c, const struct cancel_job *j,
                            const struct booking_row *row)
{
    char event_id[BOOKING_EVENT_ID_MAX];
    json_t *gone = json_array(), *left = json_array();

    for (size_t i = 0; i < row->nseats; i++) {
        const struct booking_seat *s = &row->seats[i];
        if (s->cancelled)
            continue;
        bool now = j->nseats == 0 || listed(j, s->idx);
        json_array_append_new(now ? gone : left, json_string(s->id));
    }
    snprintf(event_id, sizeof(event_id), "booking.cancelled.%s", j->refund_id);
    json_t *body = json_pack(
        "{s:s, s:s, s:s, s:I, s:s, s:o, s:o, s:I, s:I, s:s, s:s, s:I}", "id",
        event_id, "type", "booking.cancelled", "booking_id", row->id, "show_id",
        (json_int_t)row->show_id, "customer_id", row->customer, "seats", gone,
        "remaining_seats", left, "refund", (json_int_t)j->refund, "fee",
        (json_int_t)j->fee, "currency", row->currency, "reason", j->reason,
        "occurred_at", (json_int_t)j->now_ms);
    return booking_outbox_add(c, event_id, "booking.cancelled", body,
                              j->now_ms);
}

int booking_cancel_apply(struct store_conn *c, void *arg)
{
    struct cancel_job *j = arg;
    struct booking_row *row = malloc(sizeof(*row));
    int64_t amount = 0;
    size_t left = 0;
    int rc;

    if (row == NULL)
        return ERR_NOMEM;
    if ((rc = booking_read(c, j->booking_id, row)) != ERR_OK)
        goto out_free_row;
    rc = ERR_CONFLICT;
    if (strcmp(row->status, "cancelled") == 0 ||
        (j->version >= 0 && row->version != j->version))
        goto out_free_row;
    j->show_id = row->show_id;
    j->nfreed = 0;
    for (size_t i = 0; i < row->nseats; i++) {
        const struct booking_seat *s = &row->seats[i];
        if (j->nseats > 0 && !listed(j, s->idx))
            continue;
        if (s->cancelled) {
            if (j->nseats > 0)
                goto out_free_row; /* asked for, cancelled meanwhile */
            continue;
        }
        if ((rc = cancel_seat(c, j, row->show_id, s->idx)) != ERR_OK)
            goto out_free_row;
        amount += s->price;
        j->freed[j->nfreed++] = s->idx;
    }
    for (size_t i = 0; i < row->nseats; i++)
        left += !row->seats[i].cancelled;
    rc = ERR_CONFLICT;
    if (j->nfreed == 0)
        goto out_free_row;
    left -= j->nfreed;
    /* The fee is rounded down: the customer never pays a fraction more. */
    j->fee = amount * j->fee_percent / 100;
    j->refund = amount - j->fee;

    struct store_stmt *st;
    if ((rc = store_prepare(c, SQL_BOOKING_CANCEL, &st)) != ERR_OK)
        goto out_free_row;
    store_bind_text(st, 1, left == 0 ? "cancelled" : "partially_cancelled");
    store_bind_int(st, 2, j->refund);
    store_bind_int(st, 3, j->fee);
    store_bind_int(st, 4, j->now_ms);
    store_bind_text(st, 5, row->id);
    store_bind_int(st, 6, row->version);
    if ((rc = exec_changing(c, st)) != ERR_OK ||
        (rc = add_refund(c, j, row)) != ERR_OK ||
        (rc = add_cancel_event(c, j, row)) != ERR_OK)
        goto out_free_row;
    if (j->op != NULL) {
        j->op->response = booking_render_text(c, row->id);
        if (j->op->response == NULL) {
            rc = ERR_NOMEM;
            goto out_free_row;
        }
        if ((rc = idem_store(c, j->op, 200, j->op->response)) != ERR_OK)
            goto out_free_row;
        j->op->idem_stored = true;
    }
    rc = ERR_OK;
out_free_row:
    free(row);
    return rc;
}

/* --- memory after a change made off the owner ----------------------------- */

struct freed_seats {
    struct booking *b;
    int64_t show_id;
    uint32_t seats[BOOKING_SEATS_PER_REQUEST_MAX];
    size_t n;
};

static void on_freed(void *thread_data, void *arg)
{
    struct booking_thread *t = thread_data;
    struct freed_seats *f = arg;
    struct show_inv *inv = booking_show_get(t, f->show_id);

    for (size_t i = 0; inv != NULL && i < f->n; i++)
        if (f->seats[i] < inv->map->nseats &&
            inv->state[f->seats[i]] == SEAT_SOLD)
            inv_load_seat(inv, f->seats[i], SEAT_FREE);
    free(f);
}

void booking_post_freed(struct booking *b, int64_t show_id,
                        const uint32_t *seats, size_t n)
{
    struct freed_seats *f = calloc(1, sizeof(*f));

    if (f == NULL || b->server == NULL)
        goto out_free;
    f->b = b;
    f->show_id = show_id;
    f->n =
        n < BOOKING_SEATS_PER_REQUEST_MAX ? n : BOOKING_SEATS_PER_REQUEST_MAX;
    memcpy(f->seats, seats, f->n * sizeof(seats[0]));
    if (http_server_post(b->server, booking_owner(b, show_id), on_freed, f))
        return;
out_free:
    free(f);
}
