/*
 * reconcile.c - the background thread that makes money add up after
 * anything went wrong.  Each round, at start and every
 * booking.reconcile_interval_ms (or at once when woken):
 *
 *   1. refunds due: sent to payment (its Idempotency-Key is
 *      "booking-<refund id>", so a refund retried after a lost answer is
 *      made once); a failure waits booking.refund_retry_ms, doubling up
 *      to BOOKING_REFUND_BACKOFF_MAX_MS, and is tried again until payment
 *      confirms;
 *   2. open intents (a checkout whose charge has no recorded outcome,
 *      e.g. booking was killed while the charge was in flight), once
 *      untouched for booking.reconcile_after_ms: payment is asked for
 *      the charges of the attempt's reference.  Charged and the hold
 *      still live: the booking is made; charged and the hold gone: the
 *      refund is recorded and sent; not charged: the intent is
 *      abandoned.  So no charge is left without a booking or a refund;
 *   3. cancelled shows: every live booking of a show the catalog
 *      cancelled is cancelled in full, with a full refund and its
 *      booking.cancelled event, and its live holds are ended.  Since
 *      the show's status is stored before the event is acked, this
 *      catches up after a crash too, and a second event finds nothing
 *      left to do.
 *
 * Each kind takes at most BOOKING_RECONCILE_BATCH_MAX rows per round;
 * a full batch makes the next round start at once.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "base/log.h"
#include "metrics/metrics.h"
#include "services/booking/internal.h"

struct booking_reconciler {
    struct booking *b;
    pthread_t thread;
    struct store_conn *conn;

    /* Guarded by lock. */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool woken, stopping;
};

/* --- refunds -------------------------------------------------------------- */

struct refund_row {
    char id[BOOKING_REFUND_ID_MAX];
    char charge_id[BOOKING_PAY_ID_MAX];
    char reason[24];
    char state[8];
    int64_t amount;
    int attempts;
};

static const char SQL_REFUND_GET[] =
    "SELECT id, charge_id, reason, state, amount, attempts FROM refunds "
    "WHERE id = ?";

static int refund_read(struct store_conn *c, const char *id,
                       struct refund_row *r)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_REFUND_GET, &st);

    memset(r, 0, sizeof(*r));
    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, id);
    rc = store_step(st);
    if (rc == STORE_ROW) {
        snprintf(r->id, sizeof(r->id), "%s", store_col_text(st, 0));
        snprintf(r->charge_id, sizeof(r->charge_id), "%s",
                 store_col_text(st, 1));
        snprintf(r->reason, sizeof(r->reason), "%s", store_col_text(st, 2));
        snprintf(r->state, sizeof(r->state), "%s", store_col_text(st, 3));
        r->amount = store_col_int(st, 4);
        r->attempts = (int)store_col_int(st, 5);
        rc = ERR_OK;
    } else if (rc == ERR_OK) {
        rc = ERR_NOTFOUND;
    }
    store_reset(st);
    return rc;
}

static const char SQL_REFUND_JSON[] =
    "SELECT id, amount, currency, state, payment_refund_id FROM refunds "
    "WHERE id = ?";

json_t *booking_refund_json(struct store_conn *c, const char *refund_id)
{
    struct store_stmt *st;
    json_t *doc = NULL;

    if (store_prepare(c, SQL_REFUND_JSON, &st) != ERR_OK)
        return NULL;
    store_bind_text(st, 1, refund_id);
    if (store_step(st) == STORE_ROW)
        doc = json_pack(
            "{s:s, s:I, s:s, s:s, s:o}", "id", store_col_text(st, 0), "amount",
            (json_int_t)store_col_int(st, 1), "currency", store_col_text(st, 2),
            "state", store_col_text(st, 3), "payment_refund_id",
            store_col_is_null(st, 4) ? json_null()
                                     : json_string(store_col_text(st, 4)));
    store_reset(st);
    return doc;
}

struct refund_result {
    struct booking *b;
    const char *id;
    bool done;
    const char *payment_id;
    int64_t next_at;
    const char *error;
};

static const char SQL_REFUND_DONE[] =
    "UPDATE refunds SET state = 'done', payment_refund_id = ?, done_at = ?, "
    "attempts = attempts + 1 WHERE id = ? AND state = 'due'";
static const char SQL_REFUND_RETRY[] =
    "UPDATE refunds SET attempts = attempts + 1, next_at = ?, last_error = ? "
    "WHERE id = ? AND state = 'due'";

static int refund_result_apply(struct store_conn *c, void *arg)
{
    struct refund_result *r = arg;
    struct store_stmt *st;
    int rc =
        store_prepare(c, r->done ? SQL_REFUND_DONE : SQL_REFUND_RETRY, &st);

    if (rc != ERR_OK)
        return rc;
    if (r->done) {
        store_bind_text(st, 1, r->payment_id);
        store_bind_int(st, 2, clock_wall_ms(r->b->clock));
    } else {
        store_bind_int(st, 1, r->next_at);
        store_bind_text(st, 2, r->error);
    }
    store_bind_text(st, 3, r->id);
    rc = store_step(st);
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

static const char *refund_reason_text(const char *reason)
{
    if (strcmp(reason, "customer") == 0)
        return "booking cancelled by the customer";
    if (strcmp(reason, "show_cancelled") == 0)
        return "show cancelled";
    return "hold ended before the payment was confirmed";
}

bool booking_refund_send(struct booking *b, struct store_conn *c,
                         const char *refund_id)
{
    struct refund_row r;
    struct pay_answer a;
    char key[16 + BOOKING_REFUND_ID_MAX];

    if (refund_read(c, refund_id, &r) != ERR_OK)
        return false;
    if (strcmp(r.state, "due") != 0)
        return true;
    snprintf(key, sizeof(key), "booking-%s", r.id);
    booking_pay_refund(b->pay, key, r.charge_id, r.amount,
                       refund_reason_text(r.reason), &a);

    struct refund_result res = {.b = b, .id = r.id, .done = a.result == PAY_OK};
    if (res.done) {
        res.payment_id = a.id;
    } else {
        int shift = r.attempts < 16 ? r.attempts : 16;
        int64_t wait = (int64_t)b->refund_retry_ms << shift;
        if (wait > BOOKING_REFUND_BACKOFF_MAX_MS)
            wait = BOOKING_REFUND_BACKOFF_MAX_MS;
        res.next_at = clock_wall_ms(b->clock) + wait;
        res.error = a.code[0] != '\0' ? a.code : "unknown";
        /* Payment refusing a refund is not an outage: somebody looks. */
        if (a.result == PAY_REFUSED)
            log_error("booking",
                      "refund_refused id=%s charge=%s status=%d "
                      "retry_in_ms=%" PRId64,
                      r.id, r.charge_id, a.status, wait);
        else
            log_warn("booking",
                     "refund_failed id=%s error=%s attempt=%d "
                     "retry_in_ms=%" PRId64,
                     r.id, res.error, r.attempts + 1, wait);
    }
    int rc = store_write_sync(b->store, refund_result_apply, &res);
    if (rc != ERR_OK) {
        log_warn("booking", "refund_record_failed id=%s error=%s", r.id,
                 err_name(rc));
        return false;
    }
    if (res.done) {
        metrics_inc(b->metrics.refunds_done);
        log_info("booking",
                 "refund_done id=%s charge=%s amount=%" PRId64 " payment=%s",
                 r.id, r.charge_id, r.amount, a.id);
    }
    return res.done;
}

static const char SQL_REFUNDS_DUE[] =
    "SELECT id FROM refunds WHERE state = 'due' AND next_at <= ? "
    "ORDER BY next_at LIMIT ?";

/* Reads up to BOOKING_RECONCILE_BATCH_MAX ids of one query into ids. */
static size_t read_ids(struct store_conn *c, const char *sql, int64_t arg,
                       char ids[][BOOKING_INTENT_ID_MAX])
{
    struct store_stmt *st;
    size_t n = 0;

    if (store_prepare(c, sql, &st) != ERR_OK)
        return 0;
    store_bind_int(st, 1, arg);
    store_bind_int(st, 2, BOOKING_RECONCILE_BATCH_MAX);
    while (n < BOOKING_RECONCILE_BATCH_MAX && store_step(st) == STORE_ROW)
        snprintf(ids[n++], BOOKING_INTENT_ID_MAX, "%s", store_col_text(st, 0));
    store_reset(st);
    return n;
}

static size_t refunds_round(struct booking_reconciler *r, int64_t now)
{
    char ids[BOOKING_RECONCILE_BATCH_MAX][BOOKING_INTENT_ID_MAX];
    size_t n = read_ids(r->conn, SQL_REFUNDS_DUE, now, ids);

    for (size_t i = 0; i < n; i++)
        booking_refund_send(r->b, r->conn, ids[i]);
    return n;
}

/* --- open intents --------------------------------------------------------- */

static const char SQL_INTENTS_OPEN[] =
    "SELECT id FROM intents WHERE state IN ('pending', 'unsent') AND "
    "updated_at <= ? ORDER BY updated_at LIMIT ?";
static const char SQL_INTENT_END[] =
    "UPDATE intents SET state = ?, code = ?, updated_at = ? "
    "WHERE id = ? AND state IN ('pending', 'unsent') AND updated_at <= ?";

struct intent_end {
    struct booking *b;
    const char *id, *state, *code;
    int64_t before;
    bool changed;
};

static int intent_end_apply(struct store_conn *c, void *arg)
{
    struct intent_end *e = arg;
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_INTENT_END, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, e->state);
    store_bind_text(st, 2, e->code);
    store_bind_int(st, 3, clock_wall_ms(e->b->clock));
    store_bind_text(st, 4, e->id);
    store_bind_int(st, 5, e->before);
    rc = store_step(st);
    store_reset(st);
    e->changed = store_changes(c) == 1;
    return rc < 0 ? rc : ERR_OK;
}

static void settle_intent(struct booking_reconciler *r, const char *id,
                          int64_t before)
{
    struct booking *b = r->b;
    struct pay_answer a;

    booking_pay_find_charge(b->pay, id, &a);
    if (a.result != PAY_OK)
        return; /* payment cannot tell now: next round */
    if (a.id[0] != '\0') {
        struct settle s = {.b = b,
                           .intent_id = id,
                           .charge_id = a.id,
                           .amount = a.amount,
                           .conn = r->conn};
        int rc = booking_settle_charge(&s);
        free(s.response);
        if (rc == ERR_OK || rc == ERR_CONFLICT) {
            metrics_inc(b->metrics.intents_settled);
            log_info("booking", "intent_reconciled id=%s outcome=%s charge=%s",
                     id, rc == ERR_OK ? "confirmed" : "refunded", a.id);
        }
        return;
    }
    /* No charge succeeded: the attempt ends as payment recorded it. */
    struct intent_end e = {b, id, "abandoned", "no_charge", before, false};
    if (strcmp(a.code, "declined") == 0 || strcmp(a.code, "failed") == 0) {
        e.state = a.code;
        e.code = "reconciled";
    }
    if (store_write_sync(b->store, intent_end_apply, &e) == ERR_OK &&
        e.changed) {
        metrics_inc(b->metrics.intents_settled);
        log_info("booking", "intent_reconciled id=%s outcome=%s", id, e.state);
    }
}

static size_t intents_round(struct booking_reconciler *r, int64_t now)
{
    char ids[BOOKING_RECONCILE_BATCH_MAX][BOOKING_INTENT_ID_MAX];
    int64_t before = now - r->b->reconcile_after_ms;
    size_t n = read_ids(r->conn, SQL_INTENTS_OPEN, before, ids);

    for (size_t i = 0; i < n; i++)
        settle_intent(r, ids[i], before);
    return n;
}

/* --- cancelled shows ------------------------------------------------------ */

static const char SQL_CANCELLED_BOOKINGS[] =
    "SELECT b.id FROM bookings b JOIN shows s ON s.id = b.show_id "
    "WHERE s.status = 'cancelled' AND b.status != 'cancelled' "
    "AND b.updated_at <= ? LIMIT ?";

static size_t show_bookings_round(struct booking_reconciler *r, int64_t now)
{
    char ids[BOOKING_RECONCILE_BATCH_MAX][BOOKING_INTENT_ID_MAX];
    size_t n = read_ids(r->conn, SQL_CANCELLED_BOOKINGS, now, ids);
    uint64_t rnd;

    for (size_t i = 0; i < n; i++) {
        struct cancel_job j = {.b = r->b,
                               .reason = "show_cancelled",
                               .fee_percent = 0,
                               .version = -1,
                               .now_ms = now};
        snprintf(j.booking_id, sizeof(j.booking_id), "%s", ids[i]);
        if (rand_secure_bytes(&rnd, sizeof(rnd)) != ERR_OK)
            return i;
        snprintf(j.refund_id, sizeof(j.refund_id), "rf_%016" PRIx64, rnd);
        int rc = store_write_sync(r->b->store, booking_cancel_apply, &j);
        if (rc != ERR_OK) {
            log_warn("booking", "show_cancel_booking_failed id=%s error=%s",
                     ids[i], err_name(rc));
            continue;
        }
        metrics_inc(r->b->metrics.cancellations_show);
        metrics_inc(r->b->metrics.refunds_due);
        log_info("booking",
                 "booking_cancelled id=%s seats=%zu refund=%" PRId64
                 " fee=0 reason=show_cancelled",
                 ids[i], j.nfreed, j.refund);
        booking_post_freed(r->b, j.show_id, j.freed, j.nfreed);
        booking_relay_wake(r->b->relay);
        booking_refund_send(r->b, r->conn, j.refund_id);
    }
    return n;
}

/* Live holds of cancelled shows end: their seats free, in one write. */
static const char SQL_CANCELLED_HOLDS_SEATS[] =
    "UPDATE seats SET state = 0, hold_id = NULL, expires_at = 0, "
    "version = version + 1 WHERE state = 1 AND hold_id IN (SELECT h.id "
    "FROM holds h JOIN shows s ON s.id = h.show_id WHERE h.status = "
    "'active' AND s.status = 'cancelled' AND h.created_at <= ?1)";
static const char SQL_CANCELLED_HOLDS[] =
    "UPDATE holds SET status = 'released', ended_at = ?1, "
    "version = version + 1 WHERE status = 'active' AND created_at <= ?1 "
    "AND show_id IN (SELECT id FROM shows WHERE status = 'cancelled')";

static const char SQL_CANCELLED_HOLDS_ANY[] =
    "SELECT 1 FROM holds h JOIN shows s ON s.id = h.show_id "
    "WHERE h.status = 'active' AND s.status = 'cancelled' LIMIT 1";

static void show_holds_round(struct booking_reconciler *r, int64_t now)
{
    struct store_stmt *st;
    bool any = false;

    /* Asked first: most rounds have nothing to end, and a read is cheaper
     * than two writes queued behind the checkouts. */
    if (store_prepare(r->conn, SQL_CANCELLED_HOLDS_ANY, &st) != ERR_OK)
        return;
    any = store_step(st) == STORE_ROW;
    store_reset(st);
    if (!any)
        return;
    (void)store_submit_exec(r->b->store, SQL_CANCELLED_HOLDS_SEATS, now);
    (void)store_submit_exec(r->b->store, SQL_CANCELLED_HOLDS, now);
}

/* --- the thread ----------------------------------------------------------- */

static const char SQL_REFUNDS_PENDING[] =
    "SELECT count(*) FROM refunds WHERE state = 'due'";

static void gauges(struct booking_reconciler *r)
{
    struct store_stmt *st;
    int retry;

    if (store_prepare(r->conn, SQL_REFUNDS_PENDING, &st) == ERR_OK) {
        if (store_step(st) == STORE_ROW)
            metrics_set(r->b->metrics.refunds_pending,
                        (double)store_col_int(st, 0));
        store_reset(st);
    }
    (void)booking_pay_open(r->b->pay, &retry); /* moves the breaker gauge */
}

/* One round; true when some batch was full (more may be waiting). */
static bool round_once(struct booking_reconciler *r)
{
    int64_t now = clock_wall_ms(r->b->clock);
    size_t full = 0;

    full += refunds_round(r, now) == BOOKING_RECONCILE_BATCH_MAX;
    full += intents_round(r, now) == BOOKING_RECONCILE_BATCH_MAX;
    full += show_bookings_round(r, now) == BOOKING_RECONCILE_BATCH_MAX;
    show_holds_round(r, now);
    gauges(r);
    return full > 0;
}

static bool wait_round(struct booking_reconciler *r, bool at_once)
{
    struct timespec until;
    int ms = at_once ? 0 : r->b->reconcile_interval_ms;
    bool go_on;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&r->lock);
    while (!r->woken && !r->stopping && ms > 0 &&
           pthread_cond_timedwait(&r->wake, &r->lock, &until) == 0)
        continue;
    r->woken = false;
    go_on = !r->stopping;
    pthread_mutex_unlock(&r->lock);
    return go_on;
}

static void *reconcile_main(void *arg)
{
    struct booking_reconciler *r = arg;
    bool more = false;

    if (store_conn_open(r->b->store, &r->conn) != ERR_OK) {
        log_error("booking", "reconcile_connection_failed: refunds wait");
        return NULL;
    }
    /* The first round runs at start: what a crash left is repaired. */
    while (wait_round(r, more))
        more = round_once(r);
    store_conn_close(r->conn);
    return NULL;
}

struct booking_reconciler *booking_reconciler_start(struct booking *b)
{
    struct booking_reconciler *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->b = b;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->wake, NULL);
    r->woken = true; /* a round at once */
    if (pthread_create(&r->thread, NULL, reconcile_main, r) != 0) {
        log_error("booking", "thread_create_failed what=reconciler");
        pthread_mutex_destroy(&r->lock);
        pthread_cond_destroy(&r->wake);
        free(r);
        return NULL;
    }
    return r;
}

void booking_reconciler_wake(struct booking_reconciler *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    r->woken = true;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
}

void booking_reconciler_stop(struct booking_reconciler *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->wake);
    free(r);
}
