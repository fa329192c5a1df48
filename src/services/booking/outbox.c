/*
 * outbox.c - booking events (booking.confirmed, booking.cancelled) through
 * a transactional outbox and the message queue.
 *
 * The same design as the catalog's (src/services/catalog/outbox.c): the
 * write that confirms or cancels a booking inserts its event row in its
 * own transaction (booking_outbox_add), so the event exists exactly when
 * the change does.  The relay thread reads unsent rows oldest first,
 * BOOKING_OUTBOX_BATCH_MAX at a time, publishes each with the event id as
 * message id, and marks a row sent only after mq_publish returned ERR_OK,
 * the queue's confirm.  A round stops at the first failure, so events
 * leave in commit order.  A crash between publish and mark sends the row
 * again; the queue refuses an id it has seen, and notify deduplicates by
 * event id anyway.  Rounds run when a commit wakes the relay and at least
 * every BOOKING_OUTBOX_POLL_MS.  Sent rows are deleted after a day.
 *
 * The two files are alike rather than shared: each service owns its
 * tables and its event bodies, and the loop is short.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "base/log.h"
#include "metrics/metrics.h"
#include "mq/mq.h"
#include "services/booking/internal.h"

struct outbox_row {
    int64_t id;
    char event_id[BOOKING_EVENT_ID_MAX];
    char topic[32];
    char body[BOOKING_OUTBOX_BODY_MAX];
};

struct booking_relay {
    struct booking *b;
    struct mq *q;
    pthread_t thread;

    /* Guarded by lock. */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool woken, closing;

    /* The relay thread's own. */
    struct store_conn *conn;
    struct outbox_row rows[BOOKING_OUTBOX_BATCH_MAX];
    size_t nrows, nsent;
    bool failing;
    int64_t last_purge_ms;
    uint64_t relayed;
};

/* --- writing events (the store's writer thread) --------------------------- */

static const char SQL_OUTBOX_ADD[] =
    "INSERT OR IGNORE INTO outbox (event_id, topic, body, created_at) "
    "VALUES (?, ?, ?, ?)";

int booking_outbox_add(struct store_conn *c, const char *event_id,
                       const char *topic, json_t *body, int64_t now_ms)
{
    struct store_stmt *st;
    char *text = json_dumps(body, JSON_COMPACT);
    int rc = ERR_NOMEM;

    json_decref(body);
    if (text == NULL)
        return ERR_NOMEM;
    if (strlen(text) >= BOOKING_OUTBOX_BODY_MAX) {
        rc = ERR_TOOBIG;
        goto out_free_text;
    }
    if ((rc = store_prepare(c, SQL_OUTBOX_ADD, &st)) != ERR_OK)
        goto out_free_text;
    store_bind_text(st, 1, event_id);
    store_bind_text(st, 2, topic);
    store_bind_text(st, 3, text);
    store_bind_int(st, 4, now_ms);
    rc = store_step(st);
    store_reset(st);
    rc = rc < 0 ? rc : ERR_OK;
out_free_text:
    free(text);
    return rc;
}

/* --- the relay thread ----------------------------------------------------- */

static const char SQL_OUTBOX_UNSENT[] =
    "SELECT id, event_id, topic, body FROM outbox WHERE sent_at IS NULL "
    "ORDER BY id LIMIT ?";
static const char SQL_OUTBOX_BACKLOG[] =
    "SELECT count(*) FROM outbox WHERE sent_at IS NULL";

static int read_unsent(struct booking_relay *r)
{
    struct store_stmt *st;
    int rc = store_prepare(r->conn, SQL_OUTBOX_UNSENT, &st);

    r->nrows = 0;
    if (rc != ERR_OK)
        return rc;
    store_bind_int(st, 1, BOOKING_OUTBOX_BATCH_MAX);
    while (r->nrows < BOOKING_OUTBOX_BATCH_MAX &&
           (rc = store_step(st)) == STORE_ROW) {
        struct outbox_row *row = &r->rows[r->nrows++];
        row->id = store_col_int(st, 0);
        snprintf(row->event_id, sizeof(row->event_id), "%s",
                 store_col_text(st, 1));
        snprintf(row->topic, sizeof(row->topic), "%s", store_col_text(st, 2));
        snprintf(row->body, sizeof(row->body), "%s", store_col_text(st, 3));
    }
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

static void backlog_gauge(struct booking_relay *r)
{
    struct store_stmt *st;

    if (store_prepare(r->conn, SQL_OUTBOX_BACKLOG, &st) != ERR_OK)
        return;
    if (store_step(st) == STORE_ROW)
        metrics_set(r->b->metrics.outbox_unsent, (double)store_col_int(st, 0));
    store_reset(st);
}

static const char SQL_OUTBOX_MARK[] =
    "UPDATE outbox SET sent_at = ? WHERE id = ? AND sent_at IS NULL";

static int mark_apply(struct store_conn *c, void *arg)
{
    struct booking_relay *r = arg;
    int64_t now = clock_wall_ms(r->b->clock);

    for (size_t i = 0; i < r->nsent; i++) {
        struct store_stmt *st;
        int rc = store_prepare(c, SQL_OUTBOX_MARK, &st);
        if (rc != ERR_OK)
            return rc;
        store_bind_int(st, 1, now);
        store_bind_int(st, 2, r->rows[i].id);
        rc = store_step(st);
        store_reset(st);
        if (rc < 0)
            return rc;
    }
    return ERR_OK;
}

static size_t publish_rows(struct booking_relay *r)
{
    for (size_t i = 0; i < r->nrows; i++) {
        const struct outbox_row *row = &r->rows[i];
        int stored = 0;
        int rc = mq_publish(r->q, row->topic, row->event_id, row->body,
                            strlen(row->body), &stored);
        if (rc != ERR_OK) {
            if (!r->failing)
                log_warn("booking",
                         "outbox_publish_failed id=%s error=%s "
                         "retry_in_ms=%d",
                         row->event_id, err_name(rc), BOOKING_OUTBOX_POLL_MS);
            r->failing = true;
            return i;
        }
        if (r->failing)
            log_info("booking", "outbox_publish_recovered id=%s",
                     row->event_id);
        r->failing = false;
        log_debug("booking", "outbox_published id=%s topic=%s queues=%d",
                  row->event_id, row->topic, stored);
    }
    return r->nrows;
}

static void relay_round(struct booking_relay *r)
{
    for (;;) {
        int rc = read_unsent(r);
        if (rc != ERR_OK) {
            log_warn("booking", "outbox_read_failed error=%s", err_name(rc));
            return;
        }
        if (r->nrows == 0)
            return;
        r->nsent = publish_rows(r);
        if (r->nsent > 0) {
            /* If this fails the rows go again; the queue drops copies. */
            rc = store_write_sync(r->b->store, mark_apply, r);
            if (rc != ERR_OK) {
                log_warn("booking", "outbox_mark_failed rows=%zu error=%s",
                         r->nsent, err_name(rc));
                return;
            }
            r->relayed += r->nsent;
        }
        if (r->nsent < r->nrows || r->nrows < BOOKING_OUTBOX_BATCH_MAX)
            return;
    }
}

static const char SQL_OUTBOX_PURGE[] =
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox "
    "WHERE sent_at IS NOT NULL AND sent_at < ?1 ORDER BY sent_at LIMIT 256)";
_Static_assert(BOOKING_OUTBOX_PURGE_MAX == 256, "the LIMIT above");

static void relay_purge(struct booking_relay *r)
{
    int64_t now = clock_wall_ms(r->b->clock);

    if (now - r->last_purge_ms < BOOKING_OUTBOX_PURGE_EVERY_MS)
        return;
    r->last_purge_ms = now;
    (void)store_submit_exec(r->b->store, SQL_OUTBOX_PURGE,
                            now - BOOKING_OUTBOX_KEEP_MS);
}

static bool relay_wait(struct booking_relay *r)
{
    struct timespec until;
    bool go_on;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += BOOKING_OUTBOX_POLL_MS / 1000;
    until.tv_nsec += (long)(BOOKING_OUTBOX_POLL_MS % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&r->lock);
    while (!r->woken && !r->closing &&
           pthread_cond_timedwait(&r->wake, &r->lock, &until) == 0)
        continue;
    r->woken = false;
    go_on = !r->closing;
    pthread_mutex_unlock(&r->lock);
    return go_on;
}

static void *relay_main(void *arg)
{
    struct booking_relay *r = arg;

    if (store_conn_open(r->b->store, &r->conn) != ERR_OK) {
        log_error("booking", "outbox_connection_failed: events stay unsent");
        return NULL;
    }
    do {
        relay_round(r);
        backlog_gauge(r);
        relay_purge(r);
    } while (relay_wait(r));
    /* What committed before the stop still goes, if the queue takes it. */
    relay_round(r);
    store_conn_close(r->conn);
    return NULL;
}

/* --- start and stop ------------------------------------------------------- */

void booking_relay_wake(struct booking_relay *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    r->woken = true;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
}

static void relay_free(struct booking_relay *r)
{
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->wake);
    free(r);
}

void booking_relay_stop(struct booking_relay *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    r->closing = true;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    log_info("booking", "booking_events_closed relayed=%llu",
             (unsigned long long)r->relayed);
    mq_close(r->q);
    relay_free(r);
}

struct booking_relay *booking_relay_start(struct booking *b,
                                          const struct mq_config *cfg)
{
    static const char *const patterns[] = {"booking.#"};
    struct booking_relay *r = calloc(1, sizeof(*r));
    int rc;

    if (r == NULL)
        return NULL;
    r->b = b;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->wake, NULL);
    if ((rc = mq_open(cfg, &r->q)) != ERR_OK) {
        log_error("booking", "outbox_queue_open_failed path=%s error=%s",
                  cfg->path, err_name(rc));
        goto out_free;
    }
    /* Declared here so events are kept even before notify first runs. */
    if ((rc = mq_declare(r->q, BOOKING_NOTIFY_QUEUE, patterns, 1)) != ERR_OK) {
        log_error("booking", "queue_declare_failed queue=%s error=%s",
                  BOOKING_NOTIFY_QUEUE, err_name(rc));
        goto out_close_queue;
    }
    if (pthread_create(&r->thread, NULL, relay_main, r) != 0) {
        log_error("booking", "thread_create_failed what=outbox_relay");
        goto out_close_queue;
    }
    log_info("booking", "booking_events_open queue=%s declared=%s", cfg->path,
             BOOKING_NOTIFY_QUEUE);
    return r;

out_close_queue:
    mq_close(r->q);
out_free:
    relay_free(r);
    return NULL;
}
