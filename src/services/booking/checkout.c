/*
 * checkout.c - POST /v1/holds/{id}/checkout: pay for a hold and turn it
 * into a booking.
 *
 *   request thread   body, customer, Idempotency-Key (required), replay
 *   owner thread     reads the hold; refuses what cannot be paid for;
 *                    pins the hold (a release now answers 409); takes
 *                    room in the payment pool (full: 503)
 *   payment worker   1. records the intent (durable before any charge)
 *                    2. charges (payment key = intent id, per attempt)
 *                    3. settles: one transaction turns the hold into a
 *                       booking with its event and stored answer; if the
 *                       hold ended meanwhile, a refund is recorded due
 *                       and sent at once (I3)
 *   owner thread     unpins; marks the seats sold in memory
 *   request thread   201 / 402 / 409 / 502 / 503
 *
 * The intent id is "<hold id>.<16 hex of SHA-256(customer, key)>": the
 * same client attempt always makes the same payment attempt, so a network
 * retry can never charge twice, and a new client key after a decline is a
 * new attempt.  It is also the charge's reference, so the reconciler can
 * ask payment about exactly this attempt.
 */
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "domain/validate.h"
#include "metrics/metrics.h"
#include "services/booking/internal.h"

static const char *const OUTCOME_NAMES[] = {
    "confirmed", "declined", "failed", "unavailable", "refunded", "refused",
};

/* --- the request thread --------------------------------------------------- */

static bool token_ok(const char *s)
{
    size_t n = strlen(s);

    if (n < 5 || n > BOOKING_TOKEN_MAX || strncmp(s, "tok_", 4) != 0)
        return false;
    for (size_t i = 4; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '_'))
            return false;
    return true;
}

/* {"payment": {"token": "tok_..."}}; false when answered. */
static bool read_checkout_body(struct http_req *req, struct booking_op *op)
{
    static const char *const known[] = {"payment", NULL};
    static const char *const known_payment[] = {"token", NULL};
    json_t *body = http_req_json(req), *payment = NULL;
    const char *token = NULL;
    struct verrs e = {0};

    if (body == NULL)
        return false;
    jv_no_unknown(body, "", known, &e);
    if (jv_object(body, "payment", "payment", true, &payment, &e)) {
        jv_no_unknown(payment, "payment", known_payment, &e);
        if (jv_string(payment, "token", "payment.token", true, 1,
                      BOOKING_TOKEN_MAX, &token, &e) &&
            !token_ok(token))
            verr_add(&e, "payment.token", "invalid-token",
                     "payment.token must be \"tok_\" and lower-case letters, "
                     "digits or '_'");
    }
    if (verr_any(&e)) {
        http_respond_problem_ext(
            req, 422, "validation-failed", "Validation failed",
            "the body has invalid fields",
            json_pack("{s:o}", "errors", verr_to_json(&e)));
        return false;
    }
    snprintf(op->token, sizeof(op->token), "%s", token);
    return true;
}

/* The intent id of (hold, customer, key). */
static void intent_id_of(struct booking_op *op)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char text[INV_CUSTOMER_MAX + BOOKING_IDEM_KEY_MAX + 2];
    int n = snprintf(text, sizeof(text), "%s\n%s", op->customer, op->idem_key);
    uint64_t h = 0;

    EVP_Digest(text, (size_t)n, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 8; i++)
        h = h << 8 | md[i];
    snprintf(op->intent_id, sizeof(op->intent_id), "%s.%016" PRIx64,
             op->hold_id, h);
}

void booking_handle_checkout(struct http_req *req, void *app)
{
    struct booking *b = app;
    struct booking_op *op = booking_op_new(b, OP_CHECKOUT);
    const char *id = http_req_param(req, "hold_id"), *customer;

    if (op == NULL) {
        http_respond_unavailable(req, 1, "out of memory");
        return;
    }
    if (!booking_id_parse(id, false, &op->show_id)) {
        http_respond_problem(req, 404, "not-found", "Not found",
                             "there is no hold \"%.40s\"", id ? id : "");
        goto out_free_op;
    }
    snprintf(op->hold_id, sizeof(op->hold_id), "%s", id);
    if ((customer = http_req_customer(req)) == NULL)
        goto out_free_op;
    snprintf(op->customer, sizeof(op->customer), "%s", customer);
    if (http_req_header(req, "idempotency-key") == NULL) {
        http_respond_problem(req, 400, "idempotency-key-required",
                             "Idempotency-Key required",
                             "a checkout needs an Idempotency-Key header, a "
                             "new one per payment attempt");
        goto out_free_op;
    }
    if (!read_checkout_body(req, op) || idem_begin(b, req, op))
        goto out_free_op;
    intent_id_of(op);
    booking_op_dispatch(req, op);
    return;

out_free_op:
    booking_op_free(op);
}

/* --- the intent ----------------------------------------------------------- */

struct intent_row {
    char state[16];
    char code[40];
    char charge_id[BOOKING_PAY_ID_MAX];
    char booking_id[BOOKING_ID_MAX];
    char hold_id[INV_HOLD_ID_MAX];
    char customer[INV_CUSTOMER_MAX + 1];
    char idem_key[BOOKING_IDEM_KEY_MAX + 1];
    char currency[4];
    char token[BOOKING_TOKEN_MAX + 1];
    int64_t show_id, amount;
};

static const char SQL_INTENT_GET[] =
    "SELECT state, code, charge_id, booking_id, hold_id, customer_id, "
    "idem_key, currency, token, show_id, amount FROM intents WHERE id = ?";

static int intent_read(struct store_conn *c, const char *id,
                       struct intent_row *in)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_INTENT_GET, &st);

    memset(in, 0, sizeof(*in));
    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, id);
    rc = store_step(st);
    if (rc == STORE_ROW) {
        snprintf(in->state, sizeof(in->state), "%s", store_col_text(st, 0));
        snprintf(in->code, sizeof(in->code), "%s", store_col_text(st, 1));
        snprintf(in->charge_id, sizeof(in->charge_id), "%s",
                 store_col_text(st, 2));
        snprintf(in->booking_id, sizeof(in->booking_id), "%s",
                 store_col_text(st, 3));
        snprintf(in->hold_id, sizeof(in->hold_id), "%s", store_col_text(st, 4));
        snprintf(in->customer, sizeof(in->customer), "%s",
                 store_col_text(st, 5));
        snprintf(in->idem_key, sizeof(in->idem_key), "%s",
                 store_col_text(st, 6));
        snprintf(in->currency, sizeof(in->currency), "%s",
                 store_col_text(st, 7));
        snprintf(in->token, sizeof(in->token), "%s", store_col_text(st, 8));
        in->show_id = store_col_int(st, 9);
        in->amount = store_col_int(st, 10);
        rc = ERR_OK;
    } else if (rc == ERR_OK) {
        rc = ERR_NOTFOUND;
    }
    store_reset(st);
    return rc;
}

static bool intent_open(const struct intent_row *in)
{
    return strcmp(in->state, "pending") == 0 ||
           strcmp(in->state, "unsent") == 0;
}

static const char SQL_REFUND_OF_INTENT[] =
    "SELECT id FROM refunds WHERE intent_id = ? AND booking_id IS NULL";

static void refund_of_intent(struct store_conn *c, const char *intent_id,
                             char out[BOOKING_REFUND_ID_MAX])
{
    struct store_stmt *st;

    out[0] = '\0';
    if (store_prepare(c, SQL_REFUND_OF_INTENT, &st) != ERR_OK)
        return;
    store_bind_text(st, 1, intent_id);
    if (store_step(st) == STORE_ROW)
        snprintf(out, BOOKING_REFUND_ID_MAX, "%s", store_col_text(st, 0));
    store_reset(st);
}

/* 409 hold-expired, naming the refund of the charge. */
static void fail_refunded(struct booking_op *op, struct store_conn *c,
                          const char *charge_id, const char *refund_id)
{
    booking_op_fail(op, 409, "hold-expired", "Hold expired",
                    "hold %s ended before the payment was confirmed; the "
                    "charge is refunded",
                    op->hold_id);
    json_t *refund = booking_refund_json(c, refund_id);
    op->body =
        json_pack("{s:s, s:s, s:o}", "hold_id", op->hold_id, "charge_id",
                  charge_id, "refund", refund != NULL ? refund : json_null());
    op->outcome = CHECKOUT_REFUNDED;
}

static void fail_declined(struct booking_op *op, const char *code)
{
    booking_op_fail(op, 402, "payment-declined", "Payment declined",
                    "the card was declined (%s); the hold is kept: pay with "
                    "another card and a new Idempotency-Key",
                    code);
    op->body = json_pack("{s:s}", "decline_code", code);
    op->outcome = CHECKOUT_DECLINED;
}

static void fail_failed(struct booking_op *op, const char *code)
{
    booking_op_fail(op, 502, "payment-failed", "Payment failed",
                    "the payment provider failed (%s) and nothing was "
                    "charged; the hold is kept: retry with a new "
                    "Idempotency-Key",
                    code);
    op->outcome = CHECKOUT_FAILED;
}

static void fail_unavailable(struct booking_op *op, int retry_after_s,
                             const char *detail)
{
    booking_op_fail(op, 503, "unavailable", "Service unavailable", "%s",
                    detail);
    op->retry_after_s = retry_after_s > 0 ? retry_after_s : 1;
    op->outcome = CHECKOUT_UNAVAILABLE;
}

/* The answer of an attempt that ended earlier (its stored answer lost to
 * a crash or to age).  False for an open intent: it is resumed. */
static bool answer_from_intent(struct booking_thread *t, struct booking_op *op,
                               const struct intent_row *in)
{
    char refund_id[BOOKING_REFUND_ID_MAX];

    if (intent_open(in))
        return false;
    if (strcmp(in->state, "confirmed") == 0) {
        snprintf(op->booking_id, sizeof(op->booking_id), "%s", in->booking_id);
        op->response = booking_render_text(t->conn, in->booking_id);
        op->status = op->response != NULL ? 201 : 0;
        op->outcome = CHECKOUT_CONFIRMED;
        if (op->status == 0)
            fail_unavailable(op, 1, "the booking could not be read");
    } else if (strcmp(in->state, "refunding") == 0) {
        refund_of_intent(t->conn, op->intent_id, refund_id);
        fail_refunded(op, t->conn, in->charge_id, refund_id);
    } else if (strcmp(in->state, "declined") == 0) {
        fail_declined(op, in->code);
    } else if (strcmp(in->state, "failed") == 0) {
        fail_failed(op, in->code);
    } else {
        booking_op_fail(op, 409, "hold-not-active", "Hold not active",
                        "this attempt was abandoned: payment has no charge "
                        "for it");
        op->outcome = CHECKOUT_REFUSED;
    }
    return true;
}

/* --- the owner thread ----------------------------------------------------- */

static const char SQL_OTHER_OPEN_INTENT[] =
    "SELECT id FROM intents WHERE hold_id = ? AND id != ? AND "
    "state = 'pending' LIMIT 1";

static bool other_attempt_open(struct store_conn *c,
                               const struct booking_op *op)
{
    struct store_stmt *st;
    bool open = false;

    if (store_prepare(c, SQL_OTHER_OPEN_INTENT, &st) != ERR_OK)
        return false;
    store_bind_text(st, 1, op->hold_id);
    store_bind_text(st, 2, op->intent_id);
    open = store_step(st) == STORE_ROW;
    store_reset(st);
    return open;
}

/* What stops a new attempt on this hold; false when answered. */
static bool check_hold(struct booking_thread *t, struct booking_op *op,
                       const struct hold_row *h, const struct show_inv *inv)
{
    if (strcmp(h->status, "converted") == 0)
        booking_op_fail(op, 409, "hold-not-active", "Hold not active",
                        "hold %s is booked already", op->hold_id);
    else if (strcmp(h->status, "active") != 0 || h->expires_at <= op->now_ms)
        booking_op_fail(op, 409, "hold-not-active", "Hold not active",
                        "hold %s has ended", op->hold_id);
    else if (inv->cancelled)
        booking_op_fail(op, 409, "show-closed", "Show not on sale",
                        "show %lld is cancelled", (long long)inv->show_id);
    else if (other_attempt_open(t->conn, op))
        booking_op_fail(op, 409, "checkout-in-progress", "Checkout in progress",
                        "another payment attempt for hold %s is not settled "
                        "yet; retry it with its own Idempotency-Key, or later",
                        op->hold_id);
    if (op->status != 0)
        op->outcome = CHECKOUT_REFUSED;
    return op->status == 0;
}

static void checkout_work(struct store_conn *conn, void *arg);

static void finish_refused(struct booking_thread *t, struct booking_op *op)
{
    metrics_inc(t->b->metrics.checkouts[op->outcome]);
    booking_op_finish(op);
}

void booking_op_checkout(struct booking_thread *t, struct booking_op *op,
                         struct show_inv *inv)
{
    struct booking *b = t->b;
    struct hold_row h;
    struct intent_row in;
    int retry_after_s = 1;

    op->now_ms = clock_wall_ms(b->clock);
    int rc = booking_hold_read(t->conn, op->hold_id, &h);
    /* Someone else's hold is answered as if it did not exist. */
    if (rc == ERR_NOTFOUND ||
        (rc == ERR_OK &&
         (h.show_id != op->show_id || strcmp(h.customer, op->customer) != 0))) {
        booking_op_fail(op, 404, "not-found", "Not found",
                        "there is no hold %s", op->hold_id);
        op->outcome = CHECKOUT_REFUSED;
    } else if (rc != ERR_OK) {
        fail_unavailable(op, 1, "the booking database is unavailable");
    }
    if (op->status != 0) {
        free(h.seats);
        finish_refused(t, op);
        return;
    }
    free(h.seats);

    rc = intent_read(t->conn, op->intent_id, &in);
    if (rc != ERR_OK && rc != ERR_NOTFOUND) {
        fail_unavailable(op, 1, "the booking database is unavailable");
        finish_refused(t, op);
        return;
    }
    if (rc == ERR_OK && answer_from_intent(t, op, &in)) {
        if (op->status == 201)
            op->idem_stored = false; /* stored again if the record aged */
        finish_refused(t, op);
        return;
    }
    if (rc == ERR_OK) {
        /* The same attempt again, exactly as first recorded. */
        op->resume = true;
        op->resume_ended =
            strcmp(h.status, "active") != 0 || h.expires_at <= op->now_ms;
        snprintf(op->token, sizeof(op->token), "%s", in.token);
    } else if (!check_hold(t, op, &h, inv)) {
        finish_refused(t, op);
        return;
    }

    uint32_t slot = inv_find_hold(inv, op->hold_id);
    struct inv_hold *ih = slot != 0 ? inv_hold_at(inv, slot) : NULL;
    if (ih != NULL && ih->in_checkout) {
        booking_op_fail(op, 409, "checkout-in-progress", "Checkout in progress",
                        "hold %s is being paid for by another request",
                        op->hold_id);
        op->outcome = CHECKOUT_REFUSED;
    } else if (!booking_pay_open(b->pay, &retry_after_s)) {
        fail_unavailable(op, retry_after_s,
                         "the payment service is failing; the hold is kept");
    } else if (!booking_pay_reserve(b->pay)) {
        fail_unavailable(op, 1, "too many checkouts are waiting for payment");
    }
    if (op->status != 0) {
        finish_refused(t, op);
        return;
    }
    if (ih != NULL)
        ih->in_checkout = true;
    op->total = rc == ERR_OK ? in.amount : h.total;
    snprintf(op->currency, sizeof(op->currency), "%s",
             rc == ERR_OK ? in.currency : h.currency);
    memcpy(op->seats, h.idx, h.nidx * sizeof(h.idx[0]));
    op->nseats = h.nidx;
    http_server_hold(b->server);
    booking_pay_queue(b->pay, checkout_work, op);
}

/* --- the payment worker --------------------------------------------------- */

static const char SQL_INTENT_ADD[] =
    "INSERT OR IGNORE INTO intents (id, hold_id, show_id, customer_id, "
    "idem_key, amount, currency, token, state, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)";
static const char SQL_INTENT_REOPEN[] =
    "UPDATE intents SET state = 'pending', updated_at = ? "
    "WHERE id = ? AND state IN ('pending', 'unsent')";
static const char SQL_INTENT_CLOSE[] =
    "UPDATE intents SET state = ?, code = ?, updated_at = ? "
    "WHERE id = ? AND state IN ('pending', 'unsent')";

/* Records the attempt before anything is sent; ERR_CONFLICT if it was
 * settled meanwhile. */
static int intent_begin_apply(struct store_conn *c, void *arg)
{
    struct booking_op *op = arg;
    int64_t now = clock_wall_ms(op->b->clock);
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_INTENT_ADD, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, op->intent_id);
    store_bind_text(st, 2, op->hold_id);
    store_bind_int(st, 3, op->show_id);
    store_bind_text(st, 4, op->customer);
    store_bind_text(st, 5, op->idem_key);
    store_bind_int(st, 6, op->total);
    store_bind_text(st, 7, op->currency);
    store_bind_text(st, 8, op->token);
    store_bind_int(st, 9, now);
    store_bind_int(st, 10, now);
    rc = store_step(st);
    store_reset(st);
    if (rc < 0)
        return rc;
    /* updated_at moves, so the reconciler leaves a live attempt alone. */
    if ((rc = store_prepare(c, SQL_INTENT_REOPEN, &st)) != ERR_OK)
        return rc;
    store_bind_int(st, 1, now);
    store_bind_text(st, 2, op->intent_id);
    rc = store_step(st);
    store_reset(st);
    if (rc < 0)
        return rc;
    return store_changes(c) == 1 ? ERR_OK : ERR_CONFLICT;
}

struct intent_close {
    struct booking *b;
    const char *id, *state, *code;
};

static int intent_close_apply(struct store_conn *c, void *arg)
{
    struct intent_close *ic = arg;
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_INTENT_CLOSE, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, ic->state);
    store_bind_text(st, 2, ic->code);
    store_bind_int(st, 3, clock_wall_ms(ic->b->clock));
    store_bind_text(st, 4, ic->id);
    rc = store_step(st);
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

static void intent_close(struct booking_op *op, const char *state,
                         const char *code)
{
    struct intent_close ic = {op->b, op->intent_id, state, code};
    int rc = store_write_sync(op->b->store, intent_close_apply, &ic);

    if (rc != ERR_OK)
        log_warn("booking", "intent_close_failed id=%s state=%s error=%s",
                 op->intent_id, state, err_name(rc));
}

static void on_checkout_settled(void *thread_data, void *arg);

static void settle_charged(struct booking_op *op, struct store_conn *conn,
                           const struct pay_answer *a)
{
    struct settle s = {.b = op->b,
                       .intent_id = op->intent_id,
                       .charge_id = a->id,
                       .amount = a->amount > 0 ? a->amount : op->total,
                       .op = op,
                       .conn = conn};
    int rc = booking_settle_charge(&s);

    if (rc == ERR_OK) {
        op->status = 201;
        op->outcome = CHECKOUT_CONFIRMED;
        op->response = s.response;
        op->idem_stored = true;
        snprintf(op->booking_id, sizeof(op->booking_id), "%s", s.booking_id);
    } else if (rc == ERR_CONFLICT) {
        free(s.response);
        fail_refunded(op, conn, a->id, s.refund_id);
    } else {
        free(s.response);
        /* Charged, not yet booked: the same key resumes it, and the
         * reconciler settles it if nobody does. */
        fail_unavailable(op, BOOKING_PAY_RETRY_AFTER_S,
                         "the payment went through but the booking could "
                         "not be stored yet; retry with the same "
                         "Idempotency-Key");
    }
}

/*
 * The same attempt again, for a hold that has ended: charging now could
 * only be refunded, so nothing is sent.  A charge payment already took is
 * settled (refunded); otherwise the attempt is left to the reconciler,
 * which waits until payment can no longer be working on it.
 */
static void settle_ended(struct booking_op *op, struct store_conn *conn)
{
    struct pay_answer a;

    booking_pay_find_charge(op->b->pay, op->intent_id, &a);
    if (a.result == PAY_OK && a.id[0] != '\0')
        settle_charged(op, conn, &a);
    else
        fail_unavailable(op, BOOKING_PAY_RETRY_AFTER_S,
                         "the hold ended while this attempt was unsettled; "
                         "it is being settled: retry later to learn how");
}

static void checkout_work(struct store_conn *conn, void *arg)
{
    struct booking_op *op = arg;
    struct booking *b = op->b;
    struct pay_answer a;
    int rc;

    if (op->resume_ended) {
        settle_ended(op, conn);
        goto out_post;
    }
    if ((rc = store_write_sync(b->store, intent_begin_apply, op)) != ERR_OK) {
        fail_unavailable(op, 1,
                         rc == ERR_CONFLICT
                             ? "this attempt was settled meanwhile; retry"
                             : "the payment attempt could not be recorded");
        goto out_post;
    }
    booking_pay_charge(b->pay, op->intent_id, op->intent_id, op->customer,
                       op->total, op->currency, op->token, &a);
    switch (a.result) {
    case PAY_OK: settle_charged(op, conn, &a); break;
    case PAY_DECLINED:
        intent_close(op, "declined", a.code);
        fail_declined(op, a.code);
        break;
    case PAY_FAILED:
        intent_close(op, "failed", a.code);
        fail_failed(op, a.code);
        break;
    case PAY_UNSENT:
        intent_close(op, "unsent", a.code);
        fail_unavailable(op, a.retry_after_s,
                         "the payment service is unavailable; the hold is "
                         "kept");
        break;
    case PAY_UNKNOWN:
        fail_unavailable(op, a.retry_after_s,
                         "the payment service did not answer in time; the "
                         "hold is kept: retry with the same Idempotency-Key");
        break;
    case PAY_REFUSED:
        log_error("booking", "payment_refused_charge intent=%s status=%d",
                  op->intent_id, a.status);
        intent_close(op, "failed", a.code);
        fail_failed(op, a.code);
        break;
    }
out_post:
    if (!http_server_post(b->server, op->owner, on_checkout_settled, op)) {
        http_server_release(b->server);
        booking_op_finish(op);
    }
}

/* On the owner: unpins the hold and learns the seats' new state. */
static void on_checkout_settled(void *thread_data, void *arg)
{
    struct booking_thread *t = thread_data;
    struct booking_op *op = arg;
    struct show_inv *inv = booking_show_get(t, op->show_id);
    uint32_t slot = inv != NULL ? inv_find_hold(inv, op->hold_id) : 0;

    if (slot != 0)
        inv_hold_at(inv, slot)->in_checkout = false;
    if (op->status == 201 && inv != NULL) {
        if (slot != 0)
            inv_end(inv, slot, SEAT_SOLD);
        booking_read_show_state(t->conn, inv, op->seats, op->nseats);
    }
    metrics_inc(t->b->metrics.checkouts[op->outcome]);
    log_debug("booking", "checkout hold=%s outcome=%s status=%d%s%s",
              op->hold_id, OUTCOME_NAMES[op->outcome], op->status,
              op->booking_id[0] ? " booking=" : "", op->booking_id);
    http_server_release(t->b->server);
    booking_op_finish(op);
}

/* --- settling a charge (worker or reconciler) ----------------------------- */

static const char SQL_HOLD_CONVERT[] =
    "UPDATE holds SET status = 'converted', ended_at = ?, "
    "version = version + 1 WHERE id = ? AND status = 'active' "
    "AND expires_at > ?";
static const char SQL_SEAT_SELL[] =
    "UPDATE seats SET state = 2, booking_id = ?, hold_id = NULL, "
    "expires_at = 0, version = version + 1 WHERE show_id = ? AND idx = ? "
    "AND state = 1 AND hold_id = ? AND expires_at > ?";
static const char SQL_SHOW_STATUS[] = "SELECT status FROM shows WHERE id = ?";
static const char SQL_BOOKING_ADD[] =
    "INSERT INTO bookings (id, show_id, customer_id, hold_id, intent_id, "
    "status, total, currency, charge_id, charged, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, 'confirmed', ?, ?, ?, ?, ?, ?)";
static const char SQL_BOOKING_SEAT_ADD[] =
    "INSERT INTO booking_seats (booking_id, idx, seat, category, price, "
    "status) VALUES (?, ?, ?, ?, ?, 'confirmed')";
static const char SQL_INTENT_CONFIRM[] =
    "UPDATE intents SET state = 'confirmed', charge_id = ?, booking_id = ?, "
    "updated_at = ? WHERE id = ? AND state IN ('pending', 'unsent')";

static int step_one(struct store_conn *c, struct store_stmt *st)
{
    int rc = store_step(st);

    store_reset(st);
    if (rc < 0)
        return rc;
    return store_changes(c) == 1 ? ERR_OK : ERR_CONFLICT;
}

static bool show_cancelled(struct store_conn *c, int64_t show_id)
{
    struct store_stmt *st;
    bool cancelled = false;

    if (store_prepare(c, SQL_SHOW_STATUS, &st) != ERR_OK)
        return false;
    store_bind_int(st, 1, show_id);
    if (store_step(st) == STORE_ROW)
        cancelled = strcmp(store_col_text(st, 0), "cancelled") == 0;
    store_reset(st);
    return cancelled;
}

/* The hold's seats become the booking's: every one, or none. */
static int convert_hold(struct store_conn *c, struct settle *s,
                        const struct hold_row *h, int64_t now)
{
    struct store_stmt *st;
    int rc;

    if (show_cancelled(c, h->show_id))
        return ERR_CONFLICT;
    if ((rc = store_prepare(c, SQL_HOLD_CONVERT, &st)) != ERR_OK)
        return rc;
    store_bind_int(st, 1, now);
    store_bind_text(st, 2, h->id);
    store_bind_int(st, 3, now);
    if ((rc = step_one(c, st)) != ERR_OK)
        return rc;
    for (size_t i = 0; i < h->nidx; i++) {
        if ((rc = store_prepare(c, SQL_SEAT_SELL, &st)) != ERR_OK)
            return rc;
        store_bind_text(st, 1, s->booking_id);
        store_bind_int(st, 2, h->show_id);
        store_bind_int(st, 3, h->idx[i]);
        store_bind_text(st, 4, h->id);
        store_bind_int(st, 5, now);
        if ((rc = step_one(c, st)) != ERR_OK)
            return rc;
    }
    return ERR_OK;
}

static int add_booking_rows(struct store_conn *c, struct settle *s,
                            const struct hold_row *h, json_t *ids, int64_t now)
{
    struct store_stmt *st;
    json_t *seats = json_loads(h->seats, 0, NULL);
    int rc = store_prepare(c, SQL_BOOKING_ADD, &st);

    if (rc != ERR_OK || json_array_size(seats) != h->nidx) {
        json_decref(seats);
        return rc != ERR_OK ? rc : ERR_CORRUPT;
    }
    store_bind_text(st, 1, s->booking_id);
    store_bind_int(st, 2, h->show_id);
    store_bind_text(st, 3, h->customer);
    store_bind_text(st, 4, h->id);
    store_bind_text(st, 5, s->intent_id);
    store_bind_int(st, 6, h->total);
    store_bind_text(st, 7, h->currency);
    store_bind_text(st, 8, s->charge_id);
    store_bind_int(st, 9, s->amount);
    store_bind_int(st, 10, now);
    store_bind_int(st, 11, now);
    rc = step_one(c, st);
    /* The hold's seats and their indexes were written in one order. */
    for (size_t i = 0; rc == ERR_OK && i < h->nidx; i++) {
        json_t *seat = json_array_get(seats, i);
        const char *id = json_string_value(json_object_get(seat, "id"));
        const char *cat = json_string_value(json_object_get(seat, "category"));
        if ((rc = store_prepare(c, SQL_BOOKING_SEAT_ADD, &st)) != ERR_OK)
            break;
        store_bind_text(st, 1, s->booking_id);
        store_bind_int(st, 2, h->idx[i]);
        store_bind_text(st, 3, id != NULL ? id : "");
        store_bind_text(st, 4, cat != NULL ? cat : "");
        store_bind_int(st, 5,
                       json_integer_value(json_object_get(seat, "price")));
        rc = step_one(c, st);
        json_array_append_new(ids, json_string(id != NULL ? id : ""));
    }
    json_decref(seats);
    return rc;
}

static int confirm_event(struct store_conn *c, const struct settle *s,
                         const struct hold_row *h, json_t *ids, int64_t now)
{
    char event_id[BOOKING_EVENT_ID_MAX];

    snprintf(event_id, sizeof(event_id), "booking.confirmed.%s", s->booking_id);
    json_t *body = json_pack(
        "{s:s, s:s, s:s, s:I, s:s, s:O, s:I, s:s, s:I}", "id", event_id, "type",
        "booking.confirmed", "booking_id", s->booking_id, "show_id",
        (json_int_t)h->show_id, "customer_id", h->customer, "seats", ids,
        "total", (json_int_t)h->total, "currency", h->currency, "occurred_at",
        (json_int_t)now);
    return booking_outbox_add(c, event_id, "booking.confirmed", body, now);
}

/* The intent was settled before (the reconciler and a resumed attempt
 * may meet): reports how, without changing anything. */
static int settled_before(struct store_conn *c, struct settle *s,
                          const struct intent_row *in)
{
    if (strcmp(in->state, "confirmed") == 0) {
        snprintf(s->booking_id, sizeof(s->booking_id), "%s", in->booking_id);
        s->response = booking_render_text(c, in->booking_id);
        return s->response != NULL ? ERR_OK : ERR_NOMEM;
    }
    if (strcmp(in->state, "refunding") == 0) {
        refund_of_intent(c, s->intent_id, s->refund_id);
        return ERR_CONFLICT;
    }
    return ERR_INVALID;
}

static int confirm_apply(struct store_conn *c, void *arg)
{
    struct settle *s = arg;
    int64_t now = clock_wall_ms(s->b->clock);
    struct intent_row in;
    struct hold_row h;
    int rc = intent_read(c, s->intent_id, &in);

    if (rc != ERR_OK)
        return rc;
    s->show_id = in.show_id;
    snprintf(s->hold_id, sizeof(s->hold_id), "%s", in.hold_id);
    if (!intent_open(&in))
        return settled_before(c, s, &in);
    if ((rc = booking_hold_read(c, in.hold_id, &h)) != ERR_OK)
        return rc;
    /* One hold, one booking: its id is the hold's with a 'b'. */
    const char *hex = strchr(h.id, '-') + 1;
    snprintf(s->booking_id, sizeof(s->booking_id), "%lld-b%s",
             (long long)h.show_id, hex);
    json_t *ids = json_array();
    struct store_stmt *st;
    if ((rc = convert_hold(c, s, &h, now)) != ERR_OK ||
        (rc = add_booking_rows(c, s, &h, ids, now)) != ERR_OK ||
        (rc = confirm_event(c, s, &h, ids, now)) != ERR_OK ||
        (rc = store_prepare(c, SQL_INTENT_CONFIRM, &st)) != ERR_OK)
        goto out_free;
    store_bind_text(st, 1, s->charge_id);
    store_bind_text(st, 2, s->booking_id);
    store_bind_int(st, 3, now);
    store_bind_text(st, 4, s->intent_id);
    if ((rc = step_one(c, st)) != ERR_OK)
        goto out_free;
    s->response = booking_render_text(c, s->booking_id);
    if (s->response == NULL) {
        rc = ERR_NOMEM;
        goto out_free;
    }
    if (s->op != NULL &&
        (rc = idem_store(c, s->op, 201, s->response)) != ERR_OK)
        goto out_free;
    rc = ERR_OK;
out_free:
    if (rc != ERR_OK) {
        free(s->response);
        s->response = NULL;
    }
    json_decref(ids);
    free(h.seats);
    return rc;
}

static const char SQL_REFUND_UNBOOKED[] =
    "INSERT INTO refunds (id, booking_id, intent_id, charge_id, amount, fee, "
    "currency, reason, state, next_at, created_at) "
    "VALUES (?, NULL, ?, ?, ?, 0, ?, 'hold_ended', 'due', ?, ?)";
static const char SQL_INTENT_REFUNDING[] =
    "UPDATE intents SET state = 'refunding', charge_id = ?, updated_at = ? "
    "WHERE id = ? AND state IN ('pending', 'unsent')";

/* The charge has no booking to pay for: its refund is due, durably. */
static int refund_due_apply(struct store_conn *c, void *arg)
{
    struct settle *s = arg;
    int64_t now = clock_wall_ms(s->b->clock);
    struct intent_row in;
    struct store_stmt *st;
    uint64_t r;
    int rc = intent_read(c, s->intent_id, &in);

    if (rc != ERR_OK)
        return rc;
    if (!intent_open(&in)) {
        rc = settled_before(c, s, &in);
        return rc == ERR_CONFLICT ? ERR_OK : ERR_INVALID;
    }
    if (rand_secure_bytes(&r, sizeof(r)) != ERR_OK)
        return ERR_SYS;
    snprintf(s->refund_id, sizeof(s->refund_id), "rf_%016" PRIx64, r);
    if ((rc = store_prepare(c, SQL_REFUND_UNBOOKED, &st)) != ERR_OK)
        return rc;
    store_bind_text(st, 1, s->refund_id);
    store_bind_text(st, 2, s->intent_id);
    store_bind_text(st, 3, s->charge_id);
    store_bind_int(st, 4, s->amount);
    store_bind_text(st, 5, in.currency);
    store_bind_int(st, 6, now);
    store_bind_int(st, 7, now);
    if ((rc = step_one(c, st)) != ERR_OK)
        return rc;
    if ((rc = store_prepare(c, SQL_INTENT_REFUNDING, &st)) != ERR_OK)
        return rc;
    store_bind_text(st, 1, s->charge_id);
    store_bind_int(st, 2, now);
    store_bind_text(st, 3, s->intent_id);
    return step_one(c, st);
}

int booking_settle_charge(struct settle *s)
{
    struct booking *b = s->b;
    int rc = store_write_sync(b->store, confirm_apply, s);

    if (rc == ERR_OK) {
        booking_relay_wake(b->relay);
        if (s->op == NULL)
            booking_post_sold(b, s->show_id, s->hold_id);
        return ERR_OK;
    }
    if (rc != ERR_CONFLICT) {
        log_error("booking", "settle_failed intent=%s charge=%s error=%s",
                  s->intent_id, s->charge_id, err_name(rc));
        return rc;
    }
    if (s->refund_id[0] == '\0') {
        if ((rc = store_write_sync(b->store, refund_due_apply, s)) != ERR_OK) {
            log_error("booking",
                      "refund_record_failed intent=%s charge=%s error=%s",
                      s->intent_id, s->charge_id, err_name(rc));
            return rc;
        }
        metrics_inc(b->metrics.refunds_due);
        log_warn("booking",
                 "charge_without_hold intent=%s charge=%s refund=%s "
                 "amount=%" PRId64,
                 s->intent_id, s->charge_id, s->refund_id, s->amount);
    }
    /* At once; if payment cannot take it now, the reconciler retries. */
    booking_refund_send(b, s->conn, s->refund_id);
    return ERR_CONFLICT;
}

/* --- memory after a booking made off the owner ---------------------------- */

struct sold {
    int64_t show_id;
    char hold_id[INV_HOLD_ID_MAX];
};

static void on_sold(void *thread_data, void *arg)
{
    struct booking_thread *t = thread_data;
    struct sold *so = arg;
    struct show_inv *inv = booking_show_get(t, so->show_id);
    uint32_t slot = inv != NULL ? inv_find_hold(inv, so->hold_id) : 0;

    if (slot != 0) {
        struct inv_hold *h = inv_hold_at(inv, slot);
        uint32_t seats[BOOKING_SEATS_PER_REQUEST_MAX];
        size_t n = h->nseats < BOOKING_SEATS_PER_REQUEST_MAX
                       ? h->nseats
                       : BOOKING_SEATS_PER_REQUEST_MAX;
        memcpy(seats, h->seats, n * sizeof(seats[0]));
        inv_end(inv, slot, SEAT_SOLD);
        booking_read_show_state(t->conn, inv, seats, n);
    }
    free(so);
}

void booking_post_sold(struct booking *b, int64_t show_id, const char *hold_id)
{
    struct sold *so = calloc(1, sizeof(*so));

    if (so == NULL || b->server == NULL) {
        free(so);
        return;
    }
    so->show_id = show_id;
    snprintf(so->hold_id, sizeof(so->hold_id), "%s", hold_id);
    if (!http_server_post(b->server, booking_owner(b, show_id), on_sold, so))
        free(so);
}
