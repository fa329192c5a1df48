/*
 * audit.c - the booking service's metrics, and the auditor that looks in
 * the database for a broken invariant I1: a seat claimed by two live
 * holds.
 *
 * The conditional writes (holds.c) make that impossible by construction;
 * the auditor is the independent check that would see it if a bug, a
 * second writer or a hand edit ever made it happen.  It runs on a thread
 * of its own with its own read connection (WAL readers never wait for the
 * writer), every booking.audit_interval_ms.  What it finds is logged as an
 * error, with the show and seat, and counted in
 * marquee_booking_oversell_total, which the Oversell alert pages on.
 */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "base/err.h"
#include "base/log.h"
#include "metrics/metrics.h"
#include "services/booking/internal.h"

/* Seats named in one audit's log lines at most; the count has them all. */
#define AUDIT_LOG_SEATS_MAX 16

/*
 * Seats that two claims of the same show share, a claim being a live hold
 * (active and unexpired) or a confirmed seat of a booking that is not
 * cancelled: invariant I1.  The partial indexes holds_live and
 * bookings_live keep the scan to what is live now.
 */
static const char SQL_DOUBLE_HELD[] =
    "SELECT show_id, idx, count(*) FROM ("
    "  SELECT h.show_id AS show_id, CAST(j.value AS INTEGER) AS idx "
    "  FROM holds h, json_each(h.seat_idx) j "
    "  WHERE h.status = 'active' AND h.expires_at > ? "
    "  UNION ALL "
    "  SELECT b.show_id, s.idx FROM bookings b "
    "  JOIN booking_seats s ON s.booking_id = b.id "
    "  WHERE b.status != 'cancelled' AND s.status = 'confirmed') "
    "GROUP BY show_id, idx HAVING count(*) > 1";

struct booking_auditor {
    struct booking *b;
    int interval_ms;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    int64_t last_found;
};

/* Checkouts, refunds, cancellations, the outbox and the breaker. */
static void booking_metrics_setup_money(struct booking_metrics *bm,
                                        struct metrics *m)
{
    static const char *const outcome[] = {"outcome"};
    static const char *const names[] = {"confirmed",   "declined", "failed",
                                        "unavailable", "refunded", "refused"};
    static const char *const state[] = {"state"};
    static const char *const reason[] = {"reason"};
    _Static_assert(sizeof(names) / sizeof(names[0]) ==
                       sizeof(bm->checkouts) / sizeof(bm->checkouts[0]),
                   "one name per checkout outcome");

    struct metrics_family *co = metrics_family(
        m, METRICS_COUNTER, "marquee_booking_checkouts_total",
        "Checkouts answered, by outcome: confirmed (201), declined (402), "
        "failed (502), unavailable (503), refunded (409, charged after the "
        "hold ended), refused (404, 409, 422).",
        1, outcome, NULL, 0);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        bm->checkouts[i] = metrics_series(co, &names[i]);
    struct metrics_family *rf = metrics_family(
        m, METRICS_COUNTER, "marquee_booking_refunds_total",
        "Refunds recorded as due, and refunds payment confirmed (done).", 1,
        state, NULL, 0);
    const char *due[] = {"due"}, *done[] = {"done"};
    bm->refunds_due = metrics_series(rf, due);
    bm->refunds_done = metrics_series(rf, done);
    bm->refunds_pending =
        metrics_gauge(m, "marquee_booking_refunds_due",
                      "Refunds recorded and not yet confirmed by payment.");
    struct metrics_family *cn = metrics_family(
        m, METRICS_COUNTER, "marquee_booking_cancellations_total",
        "Booking cancellations, by reason.", 1, reason, NULL, 0);
    const char *cust[] = {"customer"}, *show[] = {"show_cancelled"};
    bm->cancellations_customer = metrics_series(cn, cust);
    bm->cancellations_show = metrics_series(cn, show);
    bm->outbox_unsent = metrics_gauge(
        m, "marquee_booking_outbox_unsent",
        "Booking events committed and not yet published to the queue.");
    bm->breaker_state = metrics_gauge(
        m, "marquee_booking_payment_breaker_state",
        "The payment circuit breaker: 0 closed, 1 open, 2 half-open.");
    bm->intents_settled = metrics_counter(
        m, "marquee_booking_intents_reconciled_total",
        "Payment attempts with no recorded outcome that the reconciler "
        "settled (booked, refunded or abandoned).");
}

void booking_metrics_setup(struct booking_metrics *bm)
{
    static const char *const state[] = {"state"};
    struct metrics *m = metrics_process();

    bm->holds_created =
        metrics_counter(m, "marquee_booking_holds_created_total",
                        "Holds stored and acknowledged (201).");
    bm->hold_conflicts = metrics_counter(
        m, "marquee_booking_hold_conflicts_total",
        "Holds refused because some of their seats were taken (409).");
    bm->database_refusals = metrics_counter(
        m, "marquee_booking_hold_database_refusals_total",
        "Holds this process thought possible that the database refused: "
        "another process wrote the show.");
    bm->holds_released =
        metrics_counter(m, "marquee_booking_holds_released_total",
                        "Holds released by their customer.");
    bm->holds_expired =
        metrics_counter(m, "marquee_booking_holds_expired_total",
                        "Holds ended by the sweeper after their deadline.");
    struct metrics_family *seats = metrics_family(
        m, METRICS_GAUGE, "marquee_booking_seats",
        "Seats of the shows this process owns, by state, as of the last sweep.",
        1, state, NULL, 0);
    const char *held[] = {"held"};
    bm->seats_held = metrics_series(seats, held);
    bm->oversell = metrics_counter(
        m, "marquee_booking_oversell_total",
        "Seats the auditor found claimed by two live holds; must stay 0.");
    bm->audits =
        metrics_counter(m, "marquee_booking_audits_total",
                        "Audits of the database for seats held twice.");
    booking_metrics_setup_money(bm, m);
}

/* One audit; the number of seats found held twice, or an error. */
static int64_t audit_once(struct booking_auditor *a, struct store_conn *c)
{
    struct store_stmt *st;
    int64_t found = 0;
    int rc;

    if ((rc = store_prepare(c, SQL_DOUBLE_HELD, &st)) != ERR_OK)
        return rc;
    store_bind_int(st, 1, clock_wall_ms(a->b->clock));
    while ((rc = store_step(st)) == STORE_ROW) {
        if (found < AUDIT_LOG_SEATS_MAX)
            log_error("booking",
                      "oversell_found show=%lld seat_index=%lld "
                      "claims=%lld",
                      (long long)store_col_int(st, 0),
                      (long long)store_col_int(st, 1),
                      (long long)store_col_int(st, 2));
        found++;
    }
    store_reset(st);
    return rc == ERR_OK ? found : rc;
}

/*
 * The counter grows by what is new: a double hold that stays is counted
 * once, in the audit that first saw it, and again only if more appear.
 */
static void audit_note(struct booking_auditor *a, int64_t found)
{
    metrics_inc(a->b->metrics.audits);
    if (found > a->last_found)
        metrics_add(a->b->metrics.oversell, (uint64_t)(found - a->last_found));
    a->last_found = found;
}

static void *auditor_main(void *arg)
{
    struct booking_auditor *a = arg;
    struct store_conn *c = NULL;

    if (store_conn_open(a->b->store, &c) != ERR_OK) {
        log_error("booking", "audit_connection_failed");
        return NULL;
    }
    pthread_mutex_lock(&a->lock);
    while (!a->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += a->interval_ms / 1000;
        until.tv_nsec += (long)(a->interval_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (!a->stopping &&
               pthread_cond_timedwait(&a->wake, &a->lock, &until) == 0) {
        }
        if (a->stopping)
            break;
        pthread_mutex_unlock(&a->lock);

        int64_t found = audit_once(a, c);
        if (found < 0)
            log_warn("booking", "audit_failed error=%s", err_name((int)found));
        else
            audit_note(a, found);
        pthread_mutex_lock(&a->lock);
    }
    pthread_mutex_unlock(&a->lock);
    store_conn_close(c);
    return NULL;
}

struct booking_auditor *booking_auditor_start(struct booking *b,
                                              int interval_ms)
{
    struct booking_auditor *a = calloc(1, sizeof(*a));

    if (a == NULL)
        return NULL;
    a->b = b;
    a->interval_ms = interval_ms;
    pthread_mutex_init(&a->lock, NULL);
    /* The wait between audits follows the monotonic clock, so a jump of
     * the wall clock neither skips audits nor stalls them. */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&a->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&a->thread, NULL, auditor_main, a) != 0) {
        log_error("booking", "audit_thread_failed");
        pthread_cond_destroy(&a->wake);
        pthread_mutex_destroy(&a->lock);
        free(a);
        return NULL;
    }
    return a;
}

void booking_auditor_stop(struct booking_auditor *a)
{
    if (a == NULL)
        return;
    pthread_mutex_lock(&a->lock);
    a->stopping = true;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->thread, NULL);
    pthread_cond_destroy(&a->wake);
    pthread_mutex_destroy(&a->lock);
    free(a);
}
