/*
 * payclient.c - the payment service as booking sees it: a pool of worker
 * threads that make the blocking calls, and one circuit breaker in front
 * of every call.
 *
 * Event-loop threads never wait for payment.  A checkout takes room in the
 * pool's queue first (booking_pay_reserve: a full queue is 503 at once),
 * then queues its job; a worker runs it, blocking on the payment call for
 * at most booking.payment_timeout_ms.  Each worker has its own read
 * connection, for the jobs that read after a write.
 *
 * The breaker (src/gateway/breaker.h, a pure state machine) is shared by
 * the workers and the reconciler, behind one mutex held only for its
 * bookkeeping, never across the call.  Failures are calls with no usable
 * answer (timeout, refused, reset, 5xx); a decline is a healthy answer.
 */
#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "gateway/breaker.h"
#include "http/client.h"
#include "metrics/metrics.h"
#include "services/booking/internal.h"

struct pay_job {
    void (*fn)(struct store_conn *c, void *arg);
    void *arg;
};

struct booking_pay {
    struct booking *b;
    struct clock *clock;
    int nworkers;
    pthread_t workers[BOOKING_WORKERS_MAX];

    /* Guarded by lock. */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct pay_job *ring; /* queue_max jobs */
    size_t cap, head, count, reserved;
    bool stopping;

    /* Guarded by breaker_lock. */
    pthread_mutex_t breaker_lock;
    struct gw_breaker breaker;
};

/* --- the worker pool ------------------------------------------------------ */

static void *worker_main(void *arg)
{
    struct booking_pay *p = arg;
    struct store_conn *conn = NULL;

    if (store_conn_open(p->b->store, &conn) != ERR_OK)
        log_error("booking", "read_connection_failed thread=payment_worker");
    for (;;) {
        struct pay_job job;

        pthread_mutex_lock(&p->lock);
        while (p->count == 0 && !(p->stopping && p->reserved == 0))
            pthread_cond_wait(&p->wake, &p->lock);
        if (p->count == 0) {
            pthread_mutex_unlock(&p->lock);
            break;
        }
        job = p->ring[p->head];
        p->head = (p->head + 1) % p->cap;
        p->count--;
        pthread_mutex_unlock(&p->lock);
        job.fn(conn, job.arg);
    }
    if (conn != NULL)
        store_conn_close(conn);
    return NULL;
}

static void pay_free(struct booking_pay *p)
{
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->breaker_lock);
    free(p->ring);
    free(p);
}

struct booking_pay *booking_pay_start(struct booking *b, int workers,
                                      int queue_max, int64_t breaker_open_ms)
{
    struct booking_pay *p = calloc(1, sizeof(*p));
    struct gw_breaker_config bc;

    if (p == NULL)
        return NULL;
    p->b = b;
    p->clock = clock_system();
    p->cap = (size_t)queue_max;
    p->ring = calloc(p->cap, sizeof(*p->ring));
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_mutex_init(&p->breaker_lock, NULL);
    /* A small window: checkouts are few next to holds, and an outage
     * should open the breaker within a handful of calls. */
    gw_breaker_config_default(&bc);
    bc.window = 20;
    bc.min_calls = 5;
    bc.slow_call_ms = b->payment_timeout_ms;
    bc.open_ms = breaker_open_ms;
    bc.probes = 1;
    bc.probe_deadline_ms = (int64_t)b->payment_timeout_ms + 1000;
    if (p->ring == NULL || gw_breaker_init(&p->breaker, &bc) != ERR_OK) {
        log_error("booking", "payment_pool_failed reason=\"%s\"",
                  p->ring == NULL ? "out of memory" : "breaker config");
        pay_free(p);
        return NULL;
    }
    for (int i = 0; i < workers && i < BOOKING_WORKERS_MAX; i++) {
        if (pthread_create(&p->workers[i], NULL, worker_main, p) != 0) {
            log_error("booking", "thread_create_failed what=payment_worker");
            break;
        }
        p->nworkers++;
    }
    if (p->nworkers == 0) {
        pay_free(p);
        return NULL;
    }
    metrics_set(b->metrics.breaker_state, 0);
    return p;
}

void booking_pay_stop(struct booking_pay *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nworkers; i++)
        pthread_join(p->workers[i], NULL);
    pay_free(p);
}

bool booking_pay_reserve(struct booking_pay *p)
{
    bool ok;

    pthread_mutex_lock(&p->lock);
    ok = !p->stopping && p->count + p->reserved < p->cap;
    if (ok)
        p->reserved++;
    pthread_mutex_unlock(&p->lock);
    return ok;
}

void booking_pay_queue(struct booking_pay *p,
                       void (*fn)(struct store_conn *c, void *arg), void *arg)
{
    pthread_mutex_lock(&p->lock);
    assert(p->reserved > 0 && "a job queued without room taken");
    p->reserved--;
    p->ring[(p->head + p->count) % p->cap] = (struct pay_job){fn, arg};
    p->count++;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
}

/* --- the breaker ---------------------------------------------------------- */

static void breaker_gauge(struct booking_pay *p, enum gw_breaker_state st)
{
    metrics_set(p->b->metrics.breaker_state, st == GW_BREAKER_CLOSED ? 0
                                             : st == GW_BREAKER_OPEN ? 1
                                                                     : 2);
}

/* Asks without taking a call: open means refused for now. */
bool booking_pay_open(struct booking_pay *p, int *retry_after_s)
{
    int64_t now = clock_mono_ms(p->clock);
    enum gw_breaker_state st;
    int64_t left = 0;

    pthread_mutex_lock(&p->breaker_lock);
    st = gw_breaker_state(&p->breaker, now);
    if (st == GW_BREAKER_OPEN)
        left = p->breaker.opened_at_ms + p->breaker.cfg.open_ms - now;
    pthread_mutex_unlock(&p->breaker_lock);
    breaker_gauge(p, st);
    if (st != GW_BREAKER_OPEN)
        return true;
    *retry_after_s = (int)((left + 999) / 1000);
    if (*retry_after_s < 1)
        *retry_after_s = 1;
    return false;
}

static bool breaker_allow(struct booking_pay *p, struct gw_breaker_ticket *t,
                          int *retry_after_s)
{
    int64_t now = clock_mono_ms(p->clock), wait_ms = 0;
    bool ok;

    pthread_mutex_lock(&p->breaker_lock);
    ok = gw_breaker_allow(&p->breaker, now, t, &wait_ms);
    pthread_mutex_unlock(&p->breaker_lock);
    if (!ok)
        *retry_after_s = (int)((wait_ms + 999) / 1000);
    return ok;
}

static void breaker_record(struct booking_pay *p,
                           const struct gw_breaker_ticket *t, int64_t started,
                           bool failed)
{
    int64_t now = clock_mono_ms(p->clock);
    enum gw_breaker_state before, after;

    pthread_mutex_lock(&p->breaker_lock);
    before = p->breaker.state;
    gw_breaker_record(&p->breaker, t, now, failed, now - started);
    after = gw_breaker_state(&p->breaker, now);
    pthread_mutex_unlock(&p->breaker_lock);
    breaker_gauge(p, after);
    if (before != after)
        log_warn("booking", "payment_breaker state=%s",
                 gw_breaker_state_name(after));
}

/* --- calls ---------------------------------------------------------------- */

/*
 * One call through the breaker.  ERR_OK with *resp owning the answer, or
 * the client's error; *refused when the breaker refused it (nothing sent).
 */
static int call(struct booking_pay *p, const char *method, const char *path,
                const char *key, json_t *body,
                struct http_client_response *resp, struct pay_answer *out)
{
    struct gw_breaker_ticket ticket;
    char headers[256] = "";
    char *text = NULL;
    int rc;

    memset(resp, 0, sizeof(*resp));
    if (!breaker_allow(p, &ticket, &out->retry_after_s)) {
        out->result = PAY_UNSENT;
        snprintf(out->code, sizeof(out->code), "breaker_open");
        return ERR_BUSY;
    }
    if (key != NULL)
        snprintf(headers, sizeof(headers), "Idempotency-Key: %s\r\n", key);
    if (body != NULL && (text = json_dumps(body, JSON_COMPACT)) == NULL) {
        breaker_record(p, &ticket, clock_mono_ms(p->clock), false);
        out->result = PAY_UNSENT;
        return ERR_NOMEM;
    }
    int64_t started = clock_mono_ms(p->clock);
    rc = http_client_request(p->b->payment_url, method, path, headers, text,
                             text != NULL ? strlen(text) : 0,
                             p->b->payment_timeout_ms, resp);
    free(text);
    breaker_record(p, &ticket, started,
                   rc != ERR_OK || resp->status >= 500 || resp->status == 409);
    if (rc != ERR_OK) {
        out->result = PAY_UNKNOWN;
        out->retry_after_s = BOOKING_PAY_RETRY_AFTER_S;
        snprintf(out->code, sizeof(out->code), "%s", err_name(rc));
    }
    return rc;
}

/* Sorts payment's status into a result (the ones every call shares). */
static void classify(int status, struct pay_answer *out)
{
    out->status = status;
    if (status == 503) {
        out->result = PAY_UNSENT;
        out->retry_after_s = BOOKING_PAY_RETRY_AFTER_S;
    } else if (status == 409 || status >= 500) {
        /* 409 here is payment's "key in flight": the attempt runs. */
        out->result = PAY_UNKNOWN;
        out->retry_after_s = BOOKING_PAY_RETRY_AFTER_S;
    } else {
        out->result = PAY_REFUSED;
    }
    snprintf(out->code, sizeof(out->code), "status_%d", status);
}

static void copy_str(char *dst, size_t cap, json_t *v)
{
    snprintf(dst, cap, "%s", json_is_string(v) ? json_string_value(v) : "");
}

void booking_pay_charge(struct booking_pay *p, const char *key,
                        const char *reference, const char *customer,
                        int64_t amount, const char *currency, const char *token,
                        struct pay_answer *out)
{
    struct http_client_response resp;
    json_t *body =
        json_pack("{s:I, s:s, s:s, s:s, s:{s:s}}", "amount", (json_int_t)amount,
                  "currency", currency, "reference", reference, "customer_id",
                  customer, "card", "token", token);

    memset(out, 0, sizeof(*out));
    int rc = call(p, "POST", "/v1/charges", key, body, &resp, out);
    json_decref(body);
    if (rc != ERR_OK)
        return;
    json_t *doc = json_loadb(resp.body, resp.len, 0, NULL);
    if (resp.status == 201) {
        out->result = PAY_OK;
        out->status = 201;
        copy_str(out->id, sizeof(out->id), json_object_get(doc, "id"));
        out->amount = json_integer_value(json_object_get(doc, "amount"));
    } else if (resp.status == 402) {
        out->result = PAY_DECLINED;
        out->status = 402;
        copy_str(out->code, sizeof(out->code),
                 json_object_get(doc, "decline_code"));
    } else if (resp.status == 502 || resp.status == 504) {
        /* Stored by payment as failed: nothing was charged. */
        out->result = PAY_FAILED;
        out->status = resp.status;
        snprintf(out->code, sizeof(out->code), "%s",
                 resp.status == 502 ? "provider_error" : "provider_timeout");
    } else {
        classify(resp.status, out);
        log_warn("booking", "payment_charge_answered key=%s status=%d", key,
                 resp.status);
    }
    json_decref(doc);
    http_client_response_free(&resp);
}

void booking_pay_refund(struct booking_pay *p, const char *key,
                        const char *charge_id, int64_t amount,
                        const char *reason, struct pay_answer *out)
{
    struct http_client_response resp;
    json_t *body = json_pack("{s:s, s:I, s:s}", "charge_id", charge_id,
                             "amount", (json_int_t)amount, "reason", reason);

    memset(out, 0, sizeof(*out));
    int rc = call(p, "POST", "/v1/refunds", key, body, &resp, out);
    json_decref(body);
    if (rc != ERR_OK)
        return;
    if (resp.status == 201) {
        json_t *doc = json_loadb(resp.body, resp.len, 0, NULL);
        out->result = PAY_OK;
        out->status = 201;
        copy_str(out->id, sizeof(out->id), json_object_get(doc, "id"));
        json_decref(doc);
    } else {
        classify(resp.status, out);
    }
    http_client_response_free(&resp);
}

void booking_pay_find_charge(struct booking_pay *p, const char *reference,
                             struct pay_answer *out)
{
    struct http_client_response resp;
    char path[64 + BOOKING_INTENT_ID_MAX];

    memset(out, 0, sizeof(*out));
    /* Intent ids are [0-9a-f.-]: nothing to escape in the query. */
    snprintf(path, sizeof(path), "/v1/charges?reference=%s", reference);
    if (call(p, "GET", path, NULL, NULL, &resp, out) != ERR_OK)
        return;
    if (resp.status != 200) {
        classify(resp.status, out);
        http_client_response_free(&resp);
        return;
    }
    json_t *doc = json_loadb(resp.body, resp.len, 0, NULL);
    json_t *list = json_object_get(doc, "charges");
    out->result = json_is_array(list) ? PAY_OK : PAY_UNKNOWN;
    out->status = 200;
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *ch = json_array_get(list, i);
        const char *st = json_string_value(json_object_get(ch, "status"));
        if (st != NULL && strcmp(st, "succeeded") == 0) {
            copy_str(out->id, sizeof(out->id), json_object_get(ch, "id"));
            out->amount = json_integer_value(json_object_get(ch, "amount"));
            break;
        }
        if (st != NULL && out->code[0] == '\0')
            snprintf(out->code, sizeof(out->code), "%s", st);
    }
    json_decref(doc);
    http_client_response_free(&resp);
}
