/*
 * admin.c - the admin routes: the simulated provider's dials, and the
 * ledger totals that the invariant checker (I6) reads.  Every admin route
 * needs `Authorization: Bearer <payment.admin_token>`; an empty token
 * turns them off.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "domain/validate.h"
#include "services/payment/internal.h"

/* --- /admin/provider ------------------------------------------------------ */

static json_t *dials_json(const struct provider_dials *d)
{
    return json_pack("{s:i, s:i, s:f, s:f, s:f, s:b}", "latency_ms",
                     d->latency_ms, "jitter_ms", d->jitter_ms, "failure_rate",
                     d->failure_rate, "decline_rate", d->decline_rate,
                     "timeout_rate", d->timeout_rate, "outage", d->outage);
}

void pay_handle_get_provider(struct http_req *req, void *app)
{
    struct payment *p = app;
    struct provider_dials d;

    if (!http_req_admin_ok(req, p->admin_token))
        return;
    provider_get_dials(p->provider, &d);
    http_respond_json(req, 200, dials_json(&d));
}

int pay_parse_rate(const char *text, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(v) || v < 0 ||
        v > 1)
        return ERR_INVALID;
    *out = v;
    return ERR_OK;
}

/* A rate: a JSON number from 0 to 1. */
static void read_rate(json_t *body, const char *key, double *out,
                      struct verrs *e)
{
    json_t *v = json_object_get(body, key);

    if (v == NULL)
        return;
    if (!json_is_number(v)) {
        verr_add(e, key, "wrong-type", "%s must be a number from 0 to 1", key);
        return;
    }
    double r = json_number_value(v);
    if (!isfinite(r) || r < 0 || r > 1) {
        verr_add(e, key, "out-of-range", "%s must be from 0 to 1", key);
        return;
    }
    *out = r;
}

static void add_bad(const char *field, const char *detail, void *arg)
{
    verr_add(arg, field, "out-of-range", "%s", detail);
}

void pay_handle_put_provider(struct http_req *req, void *app)
{
    static const char *const known[] = {"latency_ms",
                                        "jitter_ms",
                                        "failure_rate",
                                        "decline_rate",
                                        "timeout_rate",
                                        "outage",
                                        NULL};
    struct payment *p = app;
    struct provider_dials d;
    struct verrs e = {0};
    int64_t n;
    json_t *body;

    if (!http_req_admin_ok(req, p->admin_token) ||
        (body = http_req_json(req)) == NULL)
        return;
    provider_get_dials(p->provider, &d);
    jv_no_unknown(body, "", known, &e);
    if (jv_int(body, "latency_ms", "latency_ms", false, 0,
               PROVIDER_LATENCY_MAX_MS, &n, &e))
        d.latency_ms = (int)n;
    if (jv_int(body, "jitter_ms", "jitter_ms", false, 0,
               PROVIDER_LATENCY_MAX_MS, &n, &e))
        d.jitter_ms = (int)n;
    read_rate(body, "failure_rate", &d.failure_rate, &e);
    read_rate(body, "decline_rate", &d.decline_rate, &e);
    read_rate(body, "timeout_rate", &d.timeout_rate, &e);
    jv_bool(body, "outage", "outage", false, &d.outage, &e);
    /* What each field allows alone passed; now what they allow together. */
    if (!verr_any(&e))
        provider_dials_check(&d, add_bad, &e);
    if (verr_any(&e)) {
        http_respond_problem_ext(
            req, 422, "validation-failed", "Validation failed",
            "the body has invalid fields",
            json_pack("{s:o}", "errors", verr_to_json(&e)));
        return;
    }
    provider_set_dials(p->provider, &d);
    http_respond_json(req, 200, dials_json(&d));
}

/* --- /admin/ledger -------------------------------------------------------- */

static const char SQL_LEDGER_CHARGES[] =
    "SELECT currency, sum(amount), sum(refunded), count(*) FROM charges "
    "WHERE status = 'succeeded' GROUP BY currency ORDER BY currency";
static const char SQL_LEDGER_REFUNDS[] =
    "SELECT currency, sum(amount), count(*) FROM refunds GROUP BY currency";

/* Adds the refunds table's totals to the currencies of the ledger. */
static int add_refunds(struct store_conn *c, json_t *by_currency, bool *match)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_LEDGER_REFUNDS, &st);

    if (rc != ERR_OK)
        return rc;
    while ((rc = store_step(st)) == STORE_ROW) {
        json_t *row = json_object_get(by_currency, store_col_text(st, 0));
        int64_t sum = store_col_int(st, 1);
        if (row == NULL) {
            *match = false; /* refunds of no succeeded charge */
            continue;
        }
        if (json_integer_value(json_object_get(row, "refunded")) != sum)
            *match = false;
        json_object_set_new(row, "refunds", json_integer(store_col_int(st, 2)));
    }
    store_reset(st);
    return rc;
}

void pay_handle_ledger(struct http_req *req, void *app)
{
    struct payment *p = app;
    struct pay_thread *t = http_req_thread_data(req);
    json_t *list = json_array(), *by_currency = json_object();
    struct store_stmt *st;
    bool match = true;
    int rc;

    if (!http_req_admin_ok(req, p->admin_token))
        goto out_json;
    if (t == NULL || t->conn == NULL || store_begin_read(t->conn) != ERR_OK) {
        http_respond_unavailable(req, PAY_RETRY_AFTER_S, "database error");
        goto out_json;
    }
    /* One read transaction: both sums see the same commits. */
    if ((rc = store_prepare(t->conn, SQL_LEDGER_CHARGES, &st)) == ERR_OK) {
        while ((rc = store_step(st)) == STORE_ROW) {
            int64_t charged = store_col_int(st, 1);
            int64_t refunded = store_col_int(st, 2);
            json_t *row = json_pack(
                "{s:s, s:I, s:I, s:I, s:I, s:I}", "currency",
                store_col_text(st, 0), "charged", (json_int_t)charged,
                "refunded", (json_int_t)refunded, "net",
                (json_int_t)(charged - refunded), "charges",
                (json_int_t)store_col_int(st, 3), "refunds", (json_int_t)0);
            json_array_append(list, row);
            json_object_set_new(by_currency, store_col_text(st, 0), row);
        }
        store_reset(st);
    }
    if (rc == ERR_OK)
        rc = add_refunds(t->conn, by_currency, &match);
    store_end_read(t->conn);
    if (rc != ERR_OK) {
        http_respond_unavailable(req, PAY_RETRY_AFTER_S, "database error");
        goto out_json;
    }
    if (!match)
        log_error("payment", "ledger_mismatch detail=\"refunds table and "
                             "charge totals differ\"");
    http_respond_json(
        req, 200,
        json_pack("{s:O, s:b}", "currencies", list, "refunds_match", match));

out_json:
    json_decref(list);
    json_decref(by_currency);
}
