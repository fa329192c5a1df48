/*
 * charges.c - POST and GET of charges and refunds.
 *
 * A charge: the request thread checks the body and the Idempotency-Key,
 * then queues the provider call.  The worker that made the call submits
 * the charge row and the stored answer as one write; after its commit the
 * answer goes back to the request's thread.  So "the provider said yes"
 * comes before the commit, and the client hears of a charge only once
 * both happened (docs/internals/payment.md says what a crash between them
 * does).
 */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "domain/validate.h"
#include "metrics/metrics.h"
#include "services/payment/internal.h"

void pay_metrics_setup(struct pay_metrics *pm)
{
    static const char *const result[] = {"result"};
    struct metrics *m = metrics_process();
    struct metrics_family *charges = metrics_family(
        m, METRICS_COUNTER, "marquee_payment_charges_total",
        "Charge attempts stored, by result: succeeded, declined, or failed "
        "(a provider error or timeout).",
        1, result, NULL, 0);
    const char *succeeded[] = {"succeeded"}, *declined[] = {"declined"},
               *failed[] = {"failed"};

    pm->succeeded = metrics_series(charges, succeeded);
    pm->declined = metrics_series(charges, declined);
    pm->failed = metrics_series(charges, failed);
    pm->refunds = metrics_counter(m, "marquee_payment_refunds_total",
                                  "Refunds stored and acknowledged (201).");
}

/* --- representation ------------------------------------------------------ */

static json_t *time_json(int64_t ms)
{
    char buf[CLOCK_RFC3339_LEN];

    clock_format_rfc3339(ms, buf);
    return json_string(buf);
}

struct charge_row {
    char id[PAY_ID_LEN];
    char status[16];
    int64_t amount, refunded, created_at;
    char currency[4];
    char reference[PAY_REFERENCE_MAX + 1];
    char customer[PAY_CUSTOMER_MAX + 1];
    char decline_code[PROVIDER_CODE_MAX];
    char failure[PROVIDER_CODE_MAX];
};

static json_t *charge_json(const struct charge_row *c)
{
    json_t *j = json_pack(
        "{s:s, s:s, s:I, s:s, s:s, s:s, s:I, s:o}", "id", c->id, "status",
        c->status, "amount", (json_int_t)c->amount, "currency", c->currency,
        "reference", c->reference, "customer_id", c->customer, "refunded",
        (json_int_t)c->refunded, "created_at", time_json(c->created_at));

    if (j != NULL && c->decline_code[0] != '\0')
        json_object_set_new(j, "decline_code", json_string(c->decline_code));
    if (j != NULL && c->failure[0] != '\0')
        json_object_set_new(j, "failure_code", json_string(c->failure));
    return j;
}

static char *json_text(json_t *j)
{
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

    json_decref(j);
    return text;
}

static const char SQL_CHARGE_COLS[] =
    "SELECT id, status, amount, currency, reference, customer_id, refunded, "
    "coalesce(decline_code, ''), coalesce(failure, ''), created_at "
    "FROM charges WHERE id = ?";
static const char SQL_CHARGES_BY_REF[] =
    "SELECT id, status, amount, currency, reference, customer_id, refunded, "
    "coalesce(decline_code, ''), coalesce(failure, ''), created_at "
    "FROM charges WHERE reference = ? ORDER BY created_at, id LIMIT ?";

static void charge_from(struct store_stmt *st, struct charge_row *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->id, sizeof(c->id), "%s", store_col_text(st, 0));
    snprintf(c->status, sizeof(c->status), "%s", store_col_text(st, 1));
    c->amount = store_col_int(st, 2);
    snprintf(c->currency, sizeof(c->currency), "%s", store_col_text(st, 3));
    snprintf(c->reference, sizeof(c->reference), "%s", store_col_text(st, 4));
    snprintf(c->customer, sizeof(c->customer), "%s", store_col_text(st, 5));
    c->refunded = store_col_int(st, 6);
    snprintf(c->decline_code, sizeof(c->decline_code), "%s",
             store_col_text(st, 7));
    snprintf(c->failure, sizeof(c->failure), "%s", store_col_text(st, 8));
    c->created_at = store_col_int(st, 9);
}

/* --- request checks ------------------------------------------------------ */

static bool chars_ok(const char *s, const char *extra)
{
    for (; *s != '\0'; s++)
        if (!isalnum((unsigned char)*s) && strchr(extra, *s) == NULL)
            return false;
    return true;
}

static bool currency_ok(const char *s)
{
    return strlen(s) == 3 && isupper((unsigned char)s[0]) &&
           isupper((unsigned char)s[1]) && isupper((unsigned char)s[2]);
}

static bool token_ok(const char *s)
{
    if (strncmp(s, "tok_", 4) != 0 || s[4] == '\0')
        return false;
    for (s += 4; *s != '\0'; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) &&
            *s != '_')
            return false;
    return true;
}

static bool respond_invalid(struct http_req *req, const struct verrs *e)
{
    http_respond_problem_ext(req, 422, "validation-failed", "Validation failed",
                             "the body has invalid fields",
                             json_pack("{s:o}", "errors", verr_to_json(e)));
    return false;
}

/* {"amount", "currency", "reference", "customer_id", "card": {"token"}} */
static bool read_charge(struct http_req *req, struct pay_op *op)
{
    static const char *const known[] = {"amount",      "currency", "reference",
                                        "customer_id", "card",     NULL};
    static const char *const card_known[] = {"token", NULL};
    json_t *body = http_req_json(req), *card = NULL;
    struct verrs e = {0};
    const char *s;

    if (body == NULL)
        return false;
    jv_no_unknown(body, "", known, &e);
    jv_int(body, "amount", "amount", true, 1, PAY_AMOUNT_MAX, &op->amount, &e);
    if (jv_string(body, "currency", "currency", true, 1, 3, &s, &e)) {
        if (currency_ok(s))
            snprintf(op->currency, sizeof(op->currency), "%s", s);
        else
            verr_add(&e, "currency", "invalid-format",
                     "currency must be three upper-case letters (ISO 4217)");
    }
    if (jv_string(body, "reference", "reference", true, 1, PAY_REFERENCE_MAX,
                  &s, &e)) {
        if (chars_ok(s, "._:-"))
            snprintf(op->reference, sizeof(op->reference), "%s", s);
        else
            verr_add(&e, "reference", "invalid-format",
                     "reference may hold letters, digits, '.', '_', ':' "
                     "and '-'");
    }
    if (jv_string(body, "customer_id", "customer_id", true, 1, PAY_CUSTOMER_MAX,
                  &s, &e)) {
        if (chars_ok(s, "._-"))
            snprintf(op->customer, sizeof(op->customer), "%s", s);
        else
            verr_add(&e, "customer_id", "invalid-format",
                     "customer_id may hold letters, digits, '.', '_' and "
                     "'-'");
    }
    if (jv_object(body, "card", "card", true, &card, &e)) {
        jv_no_unknown(card, "card", card_known, &e);
        if (jv_string(card, "token", "card.token", true, 1, PAY_TOKEN_MAX, &s,
                      &e)) {
            if (token_ok(s))
                snprintf(op->token, sizeof(op->token), "%s", s);
            else
                verr_add(&e, "card.token", "invalid-format",
                         "card.token must be \"tok_\" and lower-case "
                         "letters, digits or '_'");
        }
    }
    return verr_any(&e) ? respond_invalid(req, &e) : true;
}

/* {"charge_id", "amount", "reason"} */
static bool read_refund(struct http_req *req, struct pay_op *op)
{
    static const char *const known[] = {"charge_id", "amount", "reason", NULL};
    json_t *body = http_req_json(req);
    struct verrs e = {0};
    const char *s;

    if (body == NULL)
        return false;
    jv_no_unknown(body, "", known, &e);
    if (jv_string(body, "charge_id", "charge_id", true, 1, 64, &s, &e)) {
        if (pay_id_ok(s, "ch"))
            snprintf(op->charge_id, sizeof(op->charge_id), "%s", s);
        else
            verr_add(&e, "charge_id", "invalid-format",
                     "charge_id must be a charge id such as "
                     "\"ch_3f9a0c1d2e4b5a69\"");
    }
    jv_int(body, "amount", "amount", true, 1, PAY_AMOUNT_MAX, &op->amount, &e);
    if (jv_string(body, "reason", "reason", true, 1, PAY_REASON_MAX, &s, &e))
        snprintf(op->reason, sizeof(op->reason), "%s", s);
    return verr_any(&e) ? respond_invalid(req, &e) : true;
}

/* Defers req for op's work (which a graceful stop waits for);
 * pay_op_finish answers it. */
static void defer(struct http_req *req, struct pay_op *op)
{
    op->async = http_req_defer(req);
}

/* --- POST /v1/charges --------------------------------------------------- */

/*
 * Turns the provider's result into the op's answer.  `known` is the
 * charge already stored for the same provider key, if any: then the
 * answer is that charge's, so one provider charge never has two rows.
 */
static void charge_outcome(struct pay_op *op, const struct charge_row *known)
{
    const struct provider_result *r = &op->job.result;
    enum provider_outcome outcome = r->outcome;
    const char *decline_code = r->decline_code;
    struct charge_row row = {0};

    if (known != NULL) {
        row = *known;
        snprintf(op->id, sizeof(op->id), "%s", known->id);
        op->now_ms = known->created_at;
        outcome = strcmp(known->status, "succeeded") == 0 ? PROVIDER_SUCCEEDED
                                                          : PROVIDER_DECLINED;
        decline_code = known->decline_code;
    } else {
        snprintf(row.id, sizeof(row.id), "%s", op->id);
        snprintf(row.status, sizeof(row.status), "succeeded");
        row.amount = op->amount;
        snprintf(row.currency, sizeof(row.currency), "%s", op->currency);
        snprintf(row.reference, sizeof(row.reference), "%s", op->reference);
        snprintf(row.customer, sizeof(row.customer), "%s", op->customer);
        row.created_at = op->now_ms;
    }
    json_decref(op->ext);
    op->ext = NULL;
    free(op->response);
    op->response = NULL;

    switch (outcome) {
    case PROVIDER_SUCCEEDED:
        op->status = 201;
        op->response = json_text(charge_json(&row));
        if (op->response == NULL)
            pay_op_fail(op, 503, "unavailable", "Service unavailable",
                        "out of memory");
        break;
    case PROVIDER_DECLINED:
        pay_op_fail(op, 402, "card-declined", "Card declined",
                    "the card was declined (%s); ask for another card and "
                    "charge it with a new Idempotency-Key",
                    decline_code);
        op->ext = json_pack("{s:s, s:s}", "charge_id", op->id, "decline_code",
                            decline_code);
        break;
    case PROVIDER_FAILED:
        pay_op_fail(op, 502, "provider-error", "Provider error",
                    "the card provider failed; nothing was charged");
        op->ext = json_pack("{s:s}", "charge_id", op->id);
        break;
    case PROVIDER_TIMEOUT:
        pay_op_fail(op, 504, "provider-timeout", "Provider timeout",
                    "the card provider did not answer in time; nothing was "
                    "charged");
        op->ext = json_pack("{s:s}", "charge_id", op->id);
        break;
    case PROVIDER_UNAVAILABLE:
        pay_op_fail(op, 503, "provider-unavailable", "Provider unavailable",
                    "the card provider cannot be reached; nothing was "
                    "charged");
        break;
    }
}

static const char SQL_CHARGE_INSERT[] =
    "INSERT INTO charges (id, status, amount, currency, reference, "
    "customer_id, provider_key, provider_charge_id, decline_code, failure, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

static void bind_text_or_null(struct store_stmt *st, int idx, const char *v)
{
    if (v[0] != '\0')
        store_bind_text(st, idx, v);
    else
        store_bind_null(st, idx);
}

static const char SQL_CHARGE_OF_KEY[] =
    "SELECT id, status, amount, currency, reference, customer_id, refunded, "
    "coalesce(decline_code, ''), coalesce(failure, ''), created_at "
    "FROM charges WHERE provider_key = ? AND status IN ('succeeded', "
    "'declined')";

/*
 * The charge stored for op's provider key: ERR_OK and *found set, or an
 * error.  A provider key outlives the key's stored answer (24 hours), so
 * an attempt repeated later finds its charge here rather than writing a
 * second row for one provider charge.
 */
static int charge_of_key(struct store_conn *c, const struct pay_op *op,
                         struct charge_row *row, bool *found)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_CHARGE_OF_KEY, &st);

    *found = false;
    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, op->job.key);
    rc = store_step(st);
    if (rc == STORE_ROW) {
        charge_from(st, row);
        *found = true;
    }
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

/* Writes the charges row of op's attempt. */
static int charge_insert(struct store_conn *c, const struct pay_op *op)
{
    const struct provider_result *r = &op->job.result;
    const char *status = op->status == 201   ? "succeeded"
                         : op->status == 402 ? "declined"
                                             : "failed";
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_CHARGE_INSERT, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, op->id);
    store_bind_text(st, 2, status);
    store_bind_int(st, 3, op->amount);
    store_bind_text(st, 4, op->currency);
    store_bind_text(st, 5, op->reference);
    store_bind_text(st, 6, op->customer);
    store_bind_text(st, 7, op->job.key);
    bind_text_or_null(st, 8, r->provider_id);
    bind_text_or_null(st, 9, op->status == 402 ? r->decline_code : "");
    bind_text_or_null(st, 10,
                      op->status == 502   ? "provider_error"
                      : op->status == 504 ? "provider_timeout"
                                          : "");
    store_bind_int(st, 11, op->now_ms);
    rc = store_step(st);
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

/* The writer's job: the attempt's row (or its earlier one) and answer. */
static int charge_apply(struct store_conn *c, void *arg)
{
    struct pay_op *op = arg;
    struct charge_row known;
    bool found = false;
    char *problem = NULL;
    int rc = ERR_OK;

    if (op->status == 201 || op->status == 402)
        rc = charge_of_key(c, op, &known, &found);
    if (rc == ERR_OK && found)
        charge_outcome(op, &known);
    else if (rc == ERR_OK)
        rc = charge_insert(c, op);
    if (rc != ERR_OK)
        return rc;

    if (op->status == 503)
        return ERR_NOMEM; /* charge_outcome ran out of memory */
    if (op->status >= 400 && (problem = pay_op_problem_text(op)) == NULL)
        return ERR_NOMEM;
    rc = pay_idem_store(c, op, op->status,
                        problem != NULL ? problem : op->response);
    free(problem);
    return rc;
}

static void charge_written(void *arg, int rc)
{
    struct pay_op *op = arg;
    struct pay_metrics *m = &op->p->metrics;

    if (rc != ERR_OK) {
        log_warn("payment", "charge_store_failed charge=%s error=%s", op->id,
                 err_name(rc));
        json_decref(op->ext);
        op->ext = NULL;
        pay_op_fail(op, 503, "unavailable", "Service unavailable",
                    "the charge could not be stored: %s; retry with the "
                    "same Idempotency-Key",
                    err_msg(rc));
    } else if (op->status == 201) {
        metrics_inc(m->succeeded);
    } else if (op->status == 402) {
        metrics_inc(m->declined);
    } else {
        metrics_inc(m->failed);
    }
    pay_op_finish(op);
}

/* On a provider worker (or the thread stopping the provider). */
static void charge_called(struct provider_job *job)
{
    struct pay_op *op =
        (struct pay_op *)(void *)((char *)job - offsetof(struct pay_op, job));
    int rc;

    op->now_ms = clock_wall_ms(op->p->clock);
    charge_outcome(op, NULL);
    if (op->status == 503) {
        pay_op_finish(op); /* not stored: the same key may try again */
        return;
    }
    op->w.apply = charge_apply;
    op->w.done = charge_written;
    if ((rc = store_submit(op->p->store, &op->w)) != ERR_OK) {
        json_decref(op->ext);
        op->ext = NULL;
        pay_op_fail(op, 503, "unavailable", "Service unavailable",
                    "the payment database is %s; retry with the same "
                    "Idempotency-Key",
                    rc == ERR_FULL ? "busy" : "closing");
        pay_op_finish(op);
    }
}

void pay_handle_create_charge(struct http_req *req, void *app)
{
    struct payment *p = app;
    struct pay_thread *t = http_req_thread_data(req);
    struct pay_op *op = pay_op_new(p, PAY_CHARGE);
    int rc;

    if (op == NULL || t == NULL) {
        pay_op_free(op);
        http_respond_unavailable(req, PAY_RETRY_AFTER_S, "out of memory");
        return;
    }
    if (!read_charge(req, op) || pay_idem_begin(p, req, op)) {
        pay_op_free(op);
        return;
    }
    /* An outage refuses at once, stored nowhere: the key may retry. */
    if (provider_in_outage(p->provider)) {
        pay_idem_end(p, op);
        pay_op_free(op);
        char retry[16];
        snprintf(retry, sizeof(retry), "%d", PAY_OUTAGE_RETRY_S);
        http_set_header(req, "Retry-After", retry);
        http_respond_problem(req, 503, "provider-unavailable",
                             "Provider unavailable",
                             "the card provider is down; nothing was charged");
        return;
    }
    pay_new_id(&t->rng, "ch", op->id);
    /* The provider's key comes from the attempt's key: a repeat of the
     * attempt is recognised by the provider even if this process forgot
     * it. */
    snprintf(op->job.key, sizeof(op->job.key), "charge:%s", op->key);
    op->job.amount = op->amount;
    memcpy(op->job.currency, op->currency, sizeof(op->job.currency));
    op->job.token = op->token;
    op->job.done = charge_called;
    defer(req, op);
    if ((rc = provider_submit(p->provider, &op->job)) != ERR_OK) {
        pay_op_fail(op, 503, "unavailable", "Service unavailable",
                    "%s; nothing was charged",
                    rc == ERR_FULL ? "too many provider calls are queued"
                                   : "the service is shutting down");
        pay_op_finish(op);
    }
}

/* --- GET /v1/charges/{id} and /v1/charges?reference= ------------------- */

static struct store_conn *read_conn(struct http_req *req)
{
    struct pay_thread *t = http_req_thread_data(req);

    if (t == NULL || t->conn == NULL) {
        http_respond_unavailable(req, PAY_RETRY_AFTER_S,
                                 "the payment database is unavailable");
        return NULL;
    }
    return t->conn;
}

void pay_handle_get_charge(struct http_req *req, void *app)
{
    const char *id = http_req_param(req, "charge_id");
    struct store_conn *c;
    struct store_stmt *st;
    struct charge_row row;
    int rc;

    (void)app;
    if (!pay_id_ok(id, "ch")) {
        http_respond_problem(req, 404, "not-found", "Not found",
                             "there is no charge %.40s", id ? id : "");
        return;
    }
    if ((c = read_conn(req)) == NULL)
        return;
    if (store_prepare(c, SQL_CHARGE_COLS, &st) != ERR_OK) {
        http_respond_unavailable(req, PAY_RETRY_AFTER_S, "database error");
        return;
    }
    store_bind_text(st, 1, id);
    rc = store_step(st);
    if (rc == STORE_ROW)
        charge_from(st, &row);
    store_reset(st);
    if (rc == STORE_ROW)
        http_respond_json(req, 200, charge_json(&row));
    else if (rc == ERR_OK)
        http_respond_problem(req, 404, "not-found", "Not found",
                             "there is no charge %s", id);
    else
        http_respond_unavailable(req, PAY_RETRY_AFTER_S, "database error");
}

void pay_handle_list_charges(struct http_req *req, void *app)
{
    bool bad = false;
    const char *ref = http_req_query(req, "reference", &bad);
    struct store_conn *c;
    struct store_stmt *st;
    struct charge_row row;
    json_t *list;
    int rc;

    (void)app;
    if (bad)
        return;
    if (ref == NULL || ref[0] == '\0' || strlen(ref) > PAY_REFERENCE_MAX ||
        !chars_ok(ref, "._:-")) {
        http_respond_problem(req, 400, "invalid-query", "Invalid query",
                             "reference must be given: 1 to %d letters, "
                             "digits, '.', '_', ':' or '-'",
                             PAY_REFERENCE_MAX);
        return;
    }
    if ((c = read_conn(req)) == NULL)
        return;
    if (store_prepare(c, SQL_CHARGES_BY_REF, &st) != ERR_OK) {
        http_respond_unavailable(req, PAY_RETRY_AFTER_S, "database error");
        return;
    }
    list = json_array();
    store_bind_text(st, 1, ref);
    store_bind_int(st, 2, PAY_LIST_MAX);
    while ((rc = store_step(st)) == STORE_ROW) {
        charge_from(st, &row);
        json_array_append_new(list, charge_json(&row));
    }
    store_reset(st);
    if (rc != ERR_OK) {
        json_decref(list);
        http_respond_unavailable(req, PAY_RETRY_AFTER_S, "database error");
        return;
    }
    http_respond_json(
        req, 200, json_pack("{s:s, s:o}", "reference", ref, "charges", list));
}

/* --- POST /v1/refunds and GET /v1/refunds/{id} -------------------------- */

struct refund_row {
    char id[PAY_ID_LEN];
    char charge_id[PAY_ID_LEN];
    int64_t amount, created_at;
    char currency[4];
    char reason[PAY_REASON_MAX + 1];
};

static json_t *refund_json(const struct refund_row *r)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:o}", "id", r->id,
                     "charge_id", r->charge_id, "status", "succeeded", "amount",
                     (json_int_t)r->amount, "currency", r->currency, "reason",
                     r->reason, "created_at", time_json(r->created_at));
}

static const char SQL_REFUND_CHARGE[] =
    "SELECT status, amount, currency, refunded FROM charges WHERE id = ?";
static const char SQL_REFUND_INSERT[] =
    "INSERT INTO refunds (id, charge_id, amount, currency, reason, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?)";
static const char SQL_REFUND_ADD[] =
    "UPDATE charges SET refunded = refunded + ? WHERE id = ? AND "
    "status = 'succeeded' AND refunded + ? <= amount";

/* The refusal of a refund, stored under its key like a success. */
static int refund_refuse(struct store_conn *c, struct pay_op *op)
{
    char *problem = pay_op_problem_text(op);
    int rc;

    if (problem == NULL)
        return ERR_NOMEM;
    rc = pay_idem_store(c, op, op->status, problem);
    free(problem);
    return rc;
}

static int refund_apply(struct store_conn *c, void *arg)
{
    struct pay_op *op = arg;
    struct refund_row row = {0};
    char status[16] = "";
    int64_t charged = 0, refunded = 0;
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_REFUND_CHARGE, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, op->charge_id);
    if ((rc = store_step(st)) == STORE_ROW) {
        snprintf(status, sizeof(status), "%s", store_col_text(st, 0));
        charged = store_col_int(st, 1);
        snprintf(row.currency, sizeof(row.currency), "%s",
                 store_col_text(st, 2));
        refunded = store_col_int(st, 3);
    }
    store_reset(st);
    if (rc < 0)
        return rc;
    if (rc == ERR_OK) {
        /* Not stored: a 404 is never kept under a key. */
        pay_op_fail(op, 404, "not-found", "Not found", "there is no charge %s",
                    op->charge_id);
        return ERR_OK;
    }
    if (strcmp(status, "succeeded") != 0) {
        pay_op_fail(op, 409, "charge-not-refundable", "Charge not refundable",
                    "charge %s is %s: nothing was charged, so nothing can be "
                    "refunded",
                    op->charge_id, status);
        op->ext = json_pack("{s:s, s:s}", "charge_id", op->charge_id,
                            "charge_status", status);
        return refund_refuse(c, op);
    }
    if (op->amount > charged - refunded) {
        pay_op_fail(op, 409, "refund-exceeds-charge", "Refund exceeds charge",
                    "charge %s has %lld left to refund; %lld was asked",
                    op->charge_id, (long long)(charged - refunded),
                    (long long)op->amount);
        op->ext = json_pack("{s:s, s:I, s:I}", "charge_id", op->charge_id,
                            "refunded", (json_int_t)refunded, "refundable",
                            (json_int_t)(charged - refunded));
        return refund_refuse(c, op);
    }

    if ((rc = store_prepare(c, SQL_REFUND_ADD, &st)) != ERR_OK)
        return rc;
    store_bind_int(st, 1, op->amount);
    store_bind_text(st, 2, op->charge_id);
    store_bind_int(st, 3, op->amount);
    rc = store_step(st);
    store_reset(st);
    if (rc < 0)
        return rc;
    if (store_changes(c) != 1)
        return ERR_CONFLICT; /* cannot happen: this thread alone writes */

    if ((rc = store_prepare(c, SQL_REFUND_INSERT, &st)) != ERR_OK)
        return rc;
    store_bind_text(st, 1, op->id);
    store_bind_text(st, 2, op->charge_id);
    store_bind_int(st, 3, op->amount);
    store_bind_text(st, 4, row.currency);
    store_bind_text(st, 5, op->reason);
    store_bind_int(st, 6, op->now_ms);
    rc = store_step(st);
    store_reset(st);
    if (rc < 0)
        return rc;

    snprintf(row.id, sizeof(row.id), "%s", op->id);
    snprintf(row.charge_id, sizeof(row.charge_id), "%s", op->charge_id);
    snprintf(row.reason, sizeof(row.reason), "%s", op->reason);
    row.amount = op->amount;
    row.created_at = op->now_ms;
    if ((op->response = json_text(refund_json(&row))) == NULL)
        return ERR_NOMEM;
    op->status = 201;
    return pay_idem_store(c, op, 201, op->response);
}

static void refund_written(void *arg, int rc)
{
    struct pay_op *op = arg;

    if (rc != ERR_OK) {
        log_warn("payment", "refund_store_failed charge=%s error=%s",
                 op->charge_id, err_name(rc));
        json_decref(op->ext);
        op->ext = NULL;
        pay_op_fail(op, 503, "unavailable", "Service unavailable",
                    "the refund could not be stored: %s; retry with the "
                    "same Idempotency-Key",
                    err_msg(rc));
    } else if (op->status == 201) {
        metrics_inc(op->p->metrics.refunds);
    }
    pay_op_finish(op);
}

void pay_handle_create_refund(struct http_req *req, void *app)
{
    struct payment *p = app;
    struct pay_thread *t = http_req_thread_data(req);
    struct pay_op *op = pay_op_new(p, PAY_REFUND);
    int rc;

    if (op == NULL || t == NULL) {
        pay_op_free(op);
        http_respond_unavailable(req, PAY_RETRY_AFTER_S, "out of memory");
        return;
    }
    if (!read_refund(req, op) || pay_idem_begin(p, req, op)) {
        pay_op_free(op);
        return;
    }
    pay_new_id(&t->rng, "re", op->id);
    op->now_ms = clock_wall_ms(p->clock);
    op->w.apply = refund_apply;
    op->w.done = refund_written;
    defer(req, op);
    if ((rc = store_submit(p->store, &op->w)) != ERR_OK) {
        pay_op_fail(op, 503, "unavailable", "Service unavailable",
                    "the payment database is %s; nothing was refunded",
                    rc == ERR_FULL ? "busy" : "closing");
        pay_op_finish(op);
    }
}

static const char SQL_REFUND_GET[] =
    "SELECT id, charge_id, amount, currency, reason, created_at FROM refunds "
    "WHERE id = ?";

void pay_handle_get_refund(struct http_req *req, void *app)
{
    const char *id = http_req_param(req, "refund_id");
    struct refund_row row = {0};
    struct store_conn *c;
    struct store_stmt *st;
    int rc;

    (void)app;
    if (!pay_id_ok(id, "re")) {
        http_respond_problem(req, 404, "not-found", "Not found",
                             "there is no refund %.40s", id ? id : "");
        return;
    }
    if ((c = read_conn(req)) == NULL)
        return;
    if (store_prepare(c, SQL_REFUND_GET, &st) != ERR_OK) {
        http_respond_unavailable(req, PAY_RETRY_AFTER_S, "database error");
        return;
    }
    store_bind_text(st, 1, id);
    if ((rc = store_step(st)) == STORE_ROW) {
        snprintf(row.id, sizeof(row.id), "%s", store_col_text(st, 0));
        snprintf(row.charge_id, sizeof(row.charge_id), "%s",
                 store_col_text(st, 1));
        row.amount = store_col_int(st, 2);
        snprintf(row.currency, sizeof(row.currency), "%s",
                 store_col_text(st, 3));
        snprintf(row.reason, sizeof(row.reason), "%s", store_col_text(st, 4));
        row.created_at = store_col_int(st, 5);
    }
    store_reset(st);
    if (rc == STORE_ROW)
        http_respond_json(req, 200, refund_json(&row));
    else if (rc == ERR_OK)
        http_respond_problem(req, 404, "not-found", "Not found",
                             "there is no refund %s", id);
    else
        http_respond_unavailable(req, PAY_RETRY_AFTER_S, "database error");
}
