/*
 * outbox.c - show events through a transactional outbox and the message
 * queue: the "outbox" backend of struct show_events_ops (see events.h).
 *
 * A show write inserts its event row in its own transaction
 * (show_events_outbox_add, called from the write's apply function), so
 * the event exists exactly when the change does.  The relay thread reads
 * unsent rows oldest first, CATALOG_OUTBOX_BATCH_MAX at a time, publishes
 * each with the event id as message id, and marks a row sent only after
 * mq_publish returned ERR_OK, the queue's confirm.  It stops a round at
 * the first failure, so events leave in commit order, and tries again on
 * the next round.  A crash between publish and mark sends the row again
 * on restart; the queue refuses a message id it has seen, so subscribers
 * get one copy.  Rounds run when a write wakes the relay (publish) and at
 * least every CATALOG_OUTBOX_POLL_MS, which also catches what a crash
 * left unsent.  Sent rows are deleted once older than a day.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "mq/mq.h"
#include "services/catalog/events.h"
#include "store/store.h"

struct outbox_row {
    int64_t id;
    char event_id[CATALOG_EVENTS_ID_MAX];
    char topic[CATALOG_EVENTS_TYPE_MAX];
    char body[CATALOG_EVENTS_BODY_MAX];
};

struct relay {
    struct store *store;
    struct mq *q;
    struct clock *clock;
    pthread_t thread;

    /* Guarded by lock. */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool woken, closing;

    /* The relay thread's own. */
    struct store_conn *conn;
    struct outbox_row rows[CATALOG_OUTBOX_BATCH_MAX];
    size_t nrows;
    size_t nsent; /* rows[0..nsent) were published */
    bool failing; /* the last round stopped at a failed publish */
    int64_t last_purge_ms;
    uint64_t relayed;
};

/* --- writing events (the store's writer thread) ------------------------- */

static const char SQL_OUTBOX_ADD[] =
    "INSERT OR IGNORE INTO outbox (event_id, topic, body, created_at) "
    "VALUES (?, ?, ?, ?)";

int show_events_outbox_add(struct store_conn *c, const struct show_event *ev,
                           int64_t now_ms)
{
    char id[CATALOG_EVENTS_ID_MAX], body[CATALOG_EVENTS_BODY_MAX];
    struct store_stmt *st;
    int rc;

    if (ev->type == NULL || !mq_topic_valid(ev->type) ||
        strlen(ev->type) >= CATALOG_EVENTS_TYPE_MAX)
        return ERR_INVALID;
    snprintf(id, sizeof(id), "show.%" PRId64 ".v%" PRId64, ev->show_id,
             ev->version);
    snprintf(body, sizeof(body),
             "{\"type\":\"%s\",\"show_id\":%" PRId64 ",\"version\":%" PRId64
             "}",
             ev->type, ev->show_id, ev->version);
    if ((rc = store_prepare(c, SQL_OUTBOX_ADD, &st)) != ERR_OK)
        return rc;
    store_bind_text(st, 1, id);
    store_bind_text(st, 2, ev->type);
    store_bind_text(st, 3, body);
    store_bind_int(st, 4, now_ms);
    rc = store_step(st);
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

/* --- the relay thread ---------------------------------------------------- */

static const char SQL_OUTBOX_UNSENT[] =
    "SELECT id, event_id, topic, body FROM outbox WHERE sent_at IS NULL "
    "ORDER BY id LIMIT ?";

/* Reads the oldest unsent rows into r->rows. */
static int read_unsent(struct relay *r)
{
    struct store_stmt *st;
    int rc = store_prepare(r->conn, SQL_OUTBOX_UNSENT, &st);

    r->nrows = 0;
    if (rc != ERR_OK)
        return rc;
    store_bind_int(st, 1, CATALOG_OUTBOX_BATCH_MAX);
    while (r->nrows < CATALOG_OUTBOX_BATCH_MAX &&
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

static const char SQL_OUTBOX_MARK[] =
    "UPDATE outbox SET sent_at = ? WHERE id = ? AND sent_at IS NULL";

/* Writer job: marks rows[0..nsent) sent. */
static int mark_apply(struct store_conn *c, void *arg)
{
    struct relay *r = arg;
    int64_t now = clock_wall_ms(r->clock);

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

/* Publishes rows in order until one fails; returns how many went. */
static size_t publish_rows(struct relay *r)
{
    for (size_t i = 0; i < r->nrows; i++) {
        const struct outbox_row *row = &r->rows[i];
        int stored = 0;
        int rc = mq_publish(r->q, row->topic, row->event_id, row->body,
                            strlen(row->body), &stored);
        if (rc != ERR_OK) {
            if (!r->failing)
                log_warn("catalog",
                         "outbox_publish_failed id=%s error=%s "
                         "retry_in_ms=%d",
                         row->event_id, err_name(rc), CATALOG_OUTBOX_POLL_MS);
            r->failing = true;
            return i;
        }
        if (r->failing)
            log_info("catalog", "outbox_publish_recovered id=%s",
                     row->event_id);
        r->failing = false;
        log_debug("catalog", "outbox_published id=%s topic=%s queues=%d",
                  row->event_id, row->topic, stored);
    }
    return r->nrows;
}

/*
 * One pass over the unsent rows, a batch at a time; returns when none is
 * left or a publish failed.  Bounded by what was unsent when it began
 * plus what is written meanwhile: each batch marks its rows sent.
 */
static void relay_round(struct relay *r)
{
    for (;;) {
        int rc = read_unsent(r);
        if (rc != ERR_OK) {
            log_warn("catalog", "outbox_read_failed error=%s", err_name(rc));
            return;
        }
        if (r->nrows == 0)
            return;
        r->nsent = publish_rows(r);
        if (r->nsent > 0) {
            /* If this fails the rows are sent again: the queue drops the
             * copies by id. */
            rc = store_write_sync(r->store, mark_apply, r);
            if (rc != ERR_OK) {
                log_warn("catalog", "outbox_mark_failed rows=%zu error=%s",
                         r->nsent, err_name(rc));
                return;
            }
            r->relayed += r->nsent;
        }
        if (r->nsent < r->nrows || r->nrows < CATALOG_OUTBOX_BATCH_MAX)
            return;
    }
}

static const char SQL_OUTBOX_PURGE[] =
    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox "
    "WHERE sent_at IS NOT NULL AND sent_at < ? ORDER BY sent_at LIMIT ?)";

struct purge {
    int64_t before_ms;
    int64_t deleted;
};

static int purge_apply(struct store_conn *c, void *arg)
{
    struct purge *p = arg;
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_OUTBOX_PURGE, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_int(st, 1, p->before_ms);
    store_bind_int(st, 2, CATALOG_OUTBOX_PURGE_MAX);
    rc = store_step(st);
    store_reset(st);
    if (rc < 0)
        return rc;
    p->deleted = store_changes(c);
    return ERR_OK;
}

/* Deletes one batch of rows sent more than a day ago, now and then. */
static void relay_purge(struct relay *r)
{
    int64_t now = clock_wall_ms(r->clock);
    struct purge p = {now - CATALOG_OUTBOX_KEEP_MS, 0};

    if (now - r->last_purge_ms < CATALOG_OUTBOX_PURGE_EVERY_MS)
        return;
    int rc = store_write_sync(r->store, purge_apply, &p);
    if (rc != ERR_OK) {
        log_warn("catalog", "outbox_purge_failed error=%s", err_name(rc));
        return;
    }
    /* A full batch: more may be left, so purge again next round. */
    if (p.deleted < CATALOG_OUTBOX_PURGE_MAX)
        r->last_purge_ms = now;
    if (p.deleted > 0)
        log_info("catalog", "outbox_purged rows=%lld", (long long)p.deleted);
}

/* Waits for a wake-up or the poll interval; false once closing. */
static bool relay_wait(struct relay *r)
{
    struct timespec until;
    bool go_on;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += CATALOG_OUTBOX_POLL_MS / 1000;
    until.tv_nsec += (long)(CATALOG_OUTBOX_POLL_MS % 1000) * 1000000;
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
    struct relay *r = arg;

    if (store_conn_open(r->store, &r->conn) != ERR_OK) {
        log_error("catalog", "outbox_connection_failed: events stay unsent");
        return NULL;
    }
    /* What an earlier run committed and did not send goes first. */
    do {
        relay_round(r);
        relay_purge(r);
    } while (relay_wait(r));
    store_conn_close(r->conn);
    return NULL;
}

/* --- the backend --------------------------------------------------------- */

/* The row is committed already: only tell the relay to look. */
static int outbox_publish(void *impl, const struct show_event *ev)
{
    struct relay *r = impl;
    int rc = ERR_OK;

    (void)ev;
    pthread_mutex_lock(&r->lock);
    if (r->closing) {
        rc = ERR_CLOSED;
    } else {
        r->woken = true;
        pthread_cond_signal(&r->wake);
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

static void relay_free(struct relay *r)
{
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->wake);
    free(r);
}

/* Unsent rows stay in the table: the next start sends them. */
static void outbox_close(void *impl)
{
    struct relay *r = impl;

    pthread_mutex_lock(&r->lock);
    r->closing = true;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    log_info("catalog", "show_events_closed backend=outbox relayed=%llu",
             (unsigned long long)r->relayed);
    mq_close(r->q);
    relay_free(r);
}

static const struct show_events_ops outbox_ops = {
    .name = "outbox",
    .publish = outbox_publish,
    .close = outbox_close,
};

bool show_events_uses_outbox(const struct show_events *ev)
{
    return ev->ops == &outbox_ops;
}

int show_events_outbox_open(struct store *s, const struct mq_config *mq,
                            struct show_events *out)
{
    struct relay *r = calloc(1, sizeof(*r));
    int rc;

    memset(out, 0, sizeof(*out));
    if (r == NULL)
        return ERR_NOMEM;
    r->store = s;
    r->clock = clock_system();
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->wake, NULL);
    if ((rc = mq_open(mq, &r->q)) != ERR_OK) {
        log_error("catalog", "outbox_queue_open_failed path=%s error=%s",
                  mq->path, err_name(rc));
        goto out_free;
    }
    if (pthread_create(&r->thread, NULL, relay_main, r) != 0) {
        log_error("catalog", "thread_create_failed what=outbox_relay");
        rc = ERR_SYS;
        goto out_close_queue;
    }
    out->ops = &outbox_ops;
    out->impl = r;
    log_info("catalog", "show_events_open backend=%s queue=%s", outbox_ops.name,
             mq->path);
    return ERR_OK;

out_close_queue:
    mq_close(r->q);
out_free:
    relay_free(r);
    return rc;
}
