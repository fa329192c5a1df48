/*
 * tickets.c - the routes: a customer's ticket and its QR code, the door
 * scanners' check of a code, and the operators' list of messages sent.
 *
 * Every route only reads, on the thread's own read connection; the
 * consumer thread alone writes (through the store's writer).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "domain/validate.h"
#include "services/notify/internal.h"
#include "services/notify/qr_svg.h"
#include "store/store.h"

#define TICKET_CACHE_CONTROL "private, no-cache"
/* A ticket's code never changes, so neither does its picture. */
#define QR_CACHE_CONTROL "private, max-age=86400"

struct ticket_row {
    char id[NOTIFY_TICKET_ID_LEN + 1];
    char booking_id[NOTIFY_BOOKING_ID_MAX + 1];
    int64_t show_id;
    char customer[HTTP_CUSTOMER_MAX + 1];
    char status[16];
    char code[NOTIFY_CODE_MAX];
    int64_t total;
    char currency[4];
    int64_t issued_at, cancelled_at; /* cancelled_at 0: not cancelled */
};

static const char SQL_TICKET_BY_BOOKING[] =
    "SELECT id, booking_id, show_id, customer_id, status, code, total, "
    "currency, issued_at, coalesce(cancelled_at, 0) FROM tickets "
    "WHERE booking_id = ?";
static const char SQL_TICKET_BY_ID[] =
    "SELECT id, booking_id, show_id, customer_id, status, code, total, "
    "currency, issued_at, coalesce(cancelled_at, 0) FROM tickets "
    "WHERE id = ?";
static const char SQL_TICKET_SEATS[] =
    "SELECT seat, state FROM ticket_seats WHERE ticket_id = ? ORDER BY pos";
static const char SQL_DELIVERIES[] =
    "SELECT id, booking_id, event_id, kind, message, created_at "
    "FROM deliveries WHERE customer_id = ? AND id > ? ORDER BY id LIMIT ?";

static json_t *time_json(int64_t ms)
{
    char buf[CLOCK_RFC3339_LEN];

    clock_format_rfc3339(ms, buf);
    return json_string(buf);
}

static struct store_conn *read_conn(struct http_req *req)
{
    struct notify_thread *t = http_req_thread_data(req);

    if (t == NULL || t->conn == NULL) {
        http_respond_unavailable(req, NOTIFY_RETRY_AFTER_S,
                                 "the notify database is unavailable");
        return NULL;
    }
    return t->conn;
}

static void row_from(struct store_stmt *st, struct ticket_row *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", store_col_text(st, 0));
    snprintf(r->booking_id, sizeof(r->booking_id), "%s", store_col_text(st, 1));
    r->show_id = store_col_int(st, 2);
    snprintf(r->customer, sizeof(r->customer), "%s", store_col_text(st, 3));
    snprintf(r->status, sizeof(r->status), "%s", store_col_text(st, 4));
    snprintf(r->code, sizeof(r->code), "%s", store_col_text(st, 5));
    r->total = store_col_int(st, 6);
    snprintf(r->currency, sizeof(r->currency), "%s", store_col_text(st, 7));
    r->issued_at = store_col_int(st, 8);
    r->cancelled_at = store_col_int(st, 9);
}

/* One ticket by sql (?1 = key): STORE_ROW, ERR_OK for none, or an error. */
static int ticket_read(struct store_conn *c, const char *sql, const char *key,
                       struct ticket_row *r)
{
    struct store_stmt *st;
    int rc = store_prepare(c, sql, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, key);
    if ((rc = store_step(st)) == STORE_ROW)
        row_from(st, r);
    store_reset(st);
    return rc;
}

/* The ticket's seats and their states, in booking order. */
static int seats_json(struct store_conn *c, const char *ticket_id, json_t **out)
{
    struct store_stmt *st;
    json_t *list;
    int rc = store_prepare(c, SQL_TICKET_SEATS, &st);

    if (rc != ERR_OK)
        return rc;
    list = json_array();
    store_bind_text(st, 1, ticket_id);
    while ((rc = store_step(st)) == STORE_ROW)
        json_array_append_new(list, json_pack("{s:s, s:s}", "seat",
                                              store_col_text(st, 0), "state",
                                              store_col_text(st, 1)));
    store_reset(st);
    if (rc != ERR_OK) {
        json_decref(list);
        return rc;
    }
    *out = list;
    return ERR_OK;
}

static json_t *ticket_json(const struct ticket_row *r, json_t *seats)
{
    char qr[sizeof("/v1/tickets//qr.svg") + NOTIFY_BOOKING_ID_MAX];
    json_t *j;

    snprintf(qr, sizeof(qr), "/v1/tickets/%s/qr.svg", r->booking_id);
    j = json_pack("{s:s, s:s, s:I, s:s, s:s, s:o, s:I, s:s, s:s, s:s, s:o}",
                  "ticket_id", r->id, "booking_id", r->booking_id, "show_id",
                  (json_int_t)r->show_id, "customer_id", r->customer, "status",
                  r->status, "seats", seats, "total", (json_int_t)r->total,
                  "currency", r->currency, "code", r->code, "qr_url", qr,
                  "issued_at", time_json(r->issued_at));
    if (j != NULL && r->cancelled_at > 0)
        json_object_set_new(j, "cancelled_at", time_json(r->cancelled_at));
    return j;
}

/*
 * The ticket of the request's {booking_id} for its customer, read in one
 * transaction with its seats (*seats, may be NULL when not wanted).  false
 * once answered: 400 for a bad customer, 404 for a booking with no ticket
 * or someone else's (the same answer, so ids cannot be probed), 503.
 */
static bool customer_ticket(struct http_req *req, struct ticket_row *r,
                            json_t **seats)
{
    const char *customer = http_req_customer(req);
    const char *booking = http_req_param(req, "booking_id");
    struct store_conn *c;
    int rc;

    if (customer == NULL)
        return false;
    if (!notify_booking_id_ok(booking, 0)) {
        http_respond_problem(req, 404, "not-found", "Not found",
                             "there is no ticket for booking %.64s",
                             booking != NULL ? booking : "");
        return false;
    }
    if ((c = read_conn(req)) == NULL)
        return false;
    if (store_begin_read(c) != ERR_OK) {
        http_respond_unavailable(req, NOTIFY_RETRY_AFTER_S, "database error");
        return false;
    }
    rc = ticket_read(c, SQL_TICKET_BY_BOOKING, booking, r);
    if (rc == STORE_ROW && strcmp(r->customer, customer) != 0)
        rc = ERR_OK; /* someone else's: as if there were none */
    if (rc == STORE_ROW && seats != NULL)
        rc = seats_json(c, r->id, seats) == ERR_OK ? STORE_ROW : ERR_DB;
    store_end_read(c);
    if (rc == ERR_OK)
        http_respond_problem(req, 404, "not-found", "Not found",
                             "there is no ticket for booking %s", booking);
    else if (rc != STORE_ROW)
        http_respond_unavailable(req, NOTIFY_RETRY_AFTER_S, "database error");
    return rc == STORE_ROW;
}

void notify_handle_get_ticket(struct http_req *req, void *app)
{
    struct ticket_row r;
    json_t *seats = NULL;

    (void)app;
    if (!customer_ticket(req, &r, &seats))
        return;
    http_set_header(req, "Cache-Control", TICKET_CACHE_CONTROL);
    http_respond_json(req, 200, ticket_json(&r, seats));
}

void notify_handle_get_qr(struct http_req *req, void *app)
{
    struct ticket_row r;
    char *svg;
    size_t len;
    int rc;

    (void)app;
    if (!customer_ticket(req, &r, NULL))
        return;
    if ((rc = notify_qr_svg(r.code, &svg, &len)) != ERR_OK) {
        log_error("notify", "qr_render_failed ticket=%s error=%s", r.id,
                  err_name(rc));
        http_respond_unavailable(req, NOTIFY_RETRY_AFTER_S,
                                 "the QR code could not be drawn");
        return;
    }
    http_set_header(req, "Cache-Control", QR_CACHE_CONTROL);
    http_respond_bytes(req, 200, "image/svg+xml", svg, len);
    free(svg);
}

/* --- POST /v1/tickets/verify ------------------------------------------- */

/* {"code": "..."}; NULL once answered. */
static const char *read_code(struct http_req *req)
{
    static const char *const known[] = {"code", NULL};
    json_t *body = http_req_json(req);
    struct verrs e = {0};
    const char *code = NULL;

    if (body == NULL)
        return NULL;
    jv_no_unknown(body, "", known, &e);
    jv_string(body, "code", "code", true, 1, NOTIFY_CODE_MAX - 1, &code, &e);
    if (verr_any(&e)) {
        http_respond_problem_ext(
            req, 422, "validation-failed", "Validation failed",
            "the body has invalid fields",
            json_pack("{s:o}", "errors", verr_to_json(&e)));
        return NULL;
    }
    return code;
}

/* After a good signature: the ticket as stored now decides. */
static void verify_ticket(struct http_req *req, const char *ticket_id,
                          const char *booking_id)
{
    struct ticket_row r;
    json_t *seats = NULL;
    struct store_conn *c = read_conn(req);
    int rc;

    if (c == NULL)
        return;
    if (store_begin_read(c) != ERR_OK) {
        http_respond_unavailable(req, NOTIFY_RETRY_AFTER_S, "database error");
        return;
    }
    rc = ticket_read(c, SQL_TICKET_BY_ID, ticket_id, &r);
    if (rc == STORE_ROW && strcmp(r.booking_id, booking_id) != 0)
        rc = ERR_OK;
    if (rc == STORE_ROW)
        rc = seats_json(c, r.id, &seats) == ERR_OK ? STORE_ROW : ERR_DB;
    store_end_read(c);

    if (rc == ERR_OK) {
        http_respond_problem_ext(
            req, 404, "ticket-unknown", "Unknown ticket",
            "the code is signed, but no such ticket was issued here",
            json_pack("{s:s, s:s}", "ticket_id", ticket_id, "booking_id",
                      booking_id));
    } else if (rc != STORE_ROW) {
        http_respond_unavailable(req, NOTIFY_RETRY_AFTER_S, "database error");
    } else if (strcmp(r.status, "valid") != 0) {
        json_decref(seats);
        http_respond_problem_ext(
            req, 409, "ticket-cancelled", "Ticket cancelled",
            "every seat of this ticket was cancelled: do not admit",
            json_pack("{s:s, s:s, s:o}", "ticket_id", r.id, "booking_id",
                      r.booking_id, "cancelled_at", time_json(r.cancelled_at)));
    } else {
        http_set_header(req, "Cache-Control", "no-store");
        http_respond_json(req, 200, ticket_json(&r, seats));
    }
}

void notify_handle_verify(struct http_req *req, void *app)
{
    struct notify *n = app;
    char ticket_id[NOTIFY_TICKET_ID_LEN + 1];
    char booking_id[NOTIFY_BOOKING_ID_MAX + 1];
    const char *code = read_code(req);

    if (code == NULL)
        return;
    switch (notify_code_verify(&n->key, code, ticket_id, booking_id)) {
    case NOTIFY_CODE_MALFORMED:
        http_respond_problem(req, 422, "ticket-code-malformed",
                             "Not a ticket code",
                             "the code is not a Marquee ticket code "
                             "(MQT1.<ticket id>.<booking id>.<signature>)");
        return;
    case NOTIFY_CODE_FORGED:
        log_warn("notify", "ticket_code_forged ticket=%s booking=%s", ticket_id,
                 booking_id);
        http_respond_problem_ext(
            req, 422, "ticket-forged", "Forged ticket",
            "the code's signature is not ours: do not admit",
            json_pack("{s:s, s:s}", "ticket_id", ticket_id, "booking_id",
                      booking_id));
        return;
    case NOTIFY_CODE_GOOD: verify_ticket(req, ticket_id, booking_id); return;
    }
}

/* --- GET /admin/deliveries ---------------------------------------------- */

/* A query integer from min to max; def when absent.  false once answered. */
static bool query_int(struct http_req *req, const char *name, int64_t min,
                      int64_t max, int64_t def, int64_t *out)
{
    bool bad = false;
    const char *s = http_req_query(req, name, &bad);
    char *end;
    long long v;

    if (bad)
        return false;
    if (s == NULL) {
        *out = def;
        return true;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || errno != 0 || v < min || v > max) {
        http_respond_problem(req, 400, "invalid-query", "Invalid query",
                             "%s must be a whole number from %lld to %lld",
                             name, (long long)min, (long long)max);
        return false;
    }
    *out = v;
    return true;
}

static json_t *delivery_json(struct store_stmt *st)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:o}", "id",
                     (json_int_t)store_col_int(st, 0), "booking_id",
                     store_col_text(st, 1), "event_id", store_col_text(st, 2),
                     "kind", store_col_text(st, 3), "message",
                     store_col_text(st, 4), "created_at",
                     time_json(store_col_int(st, 5)));
}

void notify_handle_deliveries(struct http_req *req, void *app)
{
    struct notify *n = app;
    bool bad = false;
    const char *customer;
    int64_t after, limit, last = 0;
    struct store_conn *c;
    struct store_stmt *st;
    json_t *list, *next;
    int rc;

    if (!http_req_admin_ok(req, n->admin_token))
        return;
    customer = http_req_query(req, "customer", &bad);
    if (bad)
        return;
    if (!http_customer_ok(customer)) {
        http_respond_problem(req, 400, "invalid-query", "Invalid query",
                             "customer must be given: 1 to %d letters, "
                             "digits, '.', '_' or '-'",
                             HTTP_CUSTOMER_MAX);
        return;
    }
    if (!query_int(req, "after", 0, INT64_MAX, 0, &after) ||
        !query_int(req, "limit", 1, NOTIFY_LIST_MAX, NOTIFY_LIST_DEFAULT,
                   &limit))
        return;
    if ((c = read_conn(req)) == NULL)
        return;
    if (store_prepare(c, SQL_DELIVERIES, &st) != ERR_OK) {
        http_respond_unavailable(req, NOTIFY_RETRY_AFTER_S, "database error");
        return;
    }
    list = json_array();
    store_bind_text(st, 1, customer);
    store_bind_int(st, 2, after);
    store_bind_int(st, 3, limit);
    while ((rc = store_step(st)) == STORE_ROW) {
        last = store_col_int(st, 0);
        json_array_append_new(list, delivery_json(st));
    }
    store_reset(st);
    if (rc != ERR_OK) {
        json_decref(list);
        http_respond_unavailable(req, NOTIFY_RETRY_AFTER_S, "database error");
        return;
    }
    /* A full page may have a next one; a short page is the last. */
    next = (int64_t)json_array_size(list) == limit ? json_integer(last)
                                                   : json_null();
    http_respond_json(req, 200,
                      json_pack("{s:s, s:o, s:o}", "customer_id", customer,
                                "deliveries", list, "next_after", next));
}
