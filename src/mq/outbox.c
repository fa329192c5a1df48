/*
 * outbox.c - the transactional outbox relay (see outbox.h for the
 * contract, docs/internals/mq.md for the design).
 *
 * One thread per relay.  It reads with its own read connection of the
 * service's store and marks rows sent through the store's writer
 * (store_write_sync), so nothing here holds a read snapshot while it
 * publishes.  Times for waiting come from the configured clock's
 * monotonic reading and times stored in the table from its wall reading,
 * so tests drive both by hand.
 */
#include "mq/outbox.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "metrics/metrics.h"
#include "mq/mq.h"
#include "store/store.h"

struct outbox_row {
    int64_t id;
    char event_id[MQ_ID_MAX + 1];
    char topic[MQ_TOPIC_MAX + 1];
    char body[MQ_OUTBOX_BODY_MAX];
};

struct mq_outbox {
    struct store *store;
    struct mq *q;
    struct mq_outbox_config cfg; /* zero settings replaced by defaults */
    pthread_t thread;

    /* Guarded by lock. */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool woken, closing;

    /* The relay thread's own. */
    struct store_conn *conn;
    struct outbox_row *rows; /* cfg.batch_max of them */
    size_t nrows;
    size_t nsent;          /* rows[0..nsent) were published */
    bool failing;          /* the last publish failed: log the recovery */
    int backoff_ms;        /* the next wait after a failed round */
    int64_t retry_at_ms;   /* mono: no round before, after a failure */
    int64_t idle_due_ms;   /* mono: a round by then even if not woken */
    int64_t last_purge_ms; /* wall */

    _Atomic uint64_t relayed, failures, purged;
};

/* --- writing events (the store's writer thread) ------------------------ */

static const char SQL_OUTBOX_ADD[] =
    "INSERT OR IGNORE INTO outbox (event_id, topic, body, created_at) "
    "VALUES (?, ?, ?, ?)";

int mq_outbox_add(struct store_conn *c, const char *event_id, const char *topic,
                  const char *body, int64_t now_ms)
{
    struct store_stmt *st;
    size_t idlen = event_id != NULL ? strlen(event_id) : 0;
    int rc;

    if (idlen == 0 || idlen > MQ_ID_MAX || topic == NULL ||
        !mq_topic_valid(topic))
        return ERR_INVALID;
    if (body == NULL || strlen(body) >= MQ_OUTBOX_BODY_MAX)
        return ERR_TOOBIG;
    if ((rc = store_prepare(c, SQL_OUTBOX_ADD, &st)) != ERR_OK)
        return rc;
    store_bind_text(st, 1, event_id);
    store_bind_text(st, 2, topic);
    store_bind_text(st, 3, body);
    store_bind_int(st, 4, now_ms);
    rc = store_step(st);
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

/* --- reading and marking ----------------------------------------------- */

static const char SQL_OUTBOX_UNSENT[] =
    "SELECT id, event_id, topic, body FROM outbox WHERE sent_at IS NULL "
    "ORDER BY id LIMIT ?";

/* Copies src into dst of size n; false (dst untouched) if it does not fit. */
static bool copy_col(char *dst, size_t n, const char *src)
{
    size_t len = strlen(src);

    if (len >= n)
        return false;
    memcpy(dst, src, len + 1);
    return true;
}

/*
 * Reads the oldest unsent rows into o->rows.  A row whose fields do not
 * fit (only a hand-edited table has one: mq_outbox_add refuses them) ends
 * the read with ERR_TOOBIG after the rows before it, which still go: it is
 * never sent cut short, and never skipped.
 */
static int read_unsent(struct mq_outbox *o)
{
    size_t max = (size_t)o->cfg.batch_max;
    struct store_stmt *st;
    int rc = store_prepare(o->conn, SQL_OUTBOX_UNSENT, &st);

    o->nrows = 0;
    if (rc != ERR_OK)
        return rc;
    store_bind_int(st, 1, (int64_t)max);
    while (o->nrows < max && (rc = store_step(st)) == STORE_ROW) {
        struct outbox_row *row = &o->rows[o->nrows];

        row->id = store_col_int(st, 0);
        if (!copy_col(row->event_id, sizeof(row->event_id),
                      store_col_text(st, 1)) ||
            !copy_col(row->topic, sizeof(row->topic), store_col_text(st, 2)) ||
            !copy_col(row->body, sizeof(row->body), store_col_text(st, 3))) {
            if (!o->failing)
                log_error(o->cfg.subsystem,
                          "outbox_row_too_big row=%lld: it and later events "
                          "stay unsent",
                          (long long)row->id);
            o->failing = true; /* logged once per streak */
            rc = ERR_TOOBIG;
            break;
        }
        o->nrows++;
    }
    store_reset(st);
    if (rc == ERR_TOOBIG)
        return rc;
    return rc < 0 ? rc : ERR_OK;
}

static const char SQL_OUTBOX_MARK[] =
    "UPDATE outbox SET sent_at = ? WHERE id = ? AND sent_at IS NULL";

/* Writer job: marks rows[0..nsent) sent. */
static int mark_apply(struct store_conn *c, void *arg)
{
    struct mq_outbox *o = arg;
    int64_t now = clock_wall_ms(o->cfg.clock);

    for (size_t i = 0; i < o->nsent; i++) {
        struct store_stmt *st;
        int rc = store_prepare(c, SQL_OUTBOX_MARK, &st);

        if (rc != ERR_OK)
            return rc;
        store_bind_int(st, 1, now);
        store_bind_int(st, 2, o->rows[i].id);
        rc = store_step(st);
        store_reset(st);
        if (rc < 0)
            return rc;
    }
    return ERR_OK;
}

/* --- a round ------------------------------------------------------------ */

/* Publishes rows in order until one fails; returns how many went. */
static size_t publish_rows(struct mq_outbox *o)
{
    for (size_t i = 0; i < o->nrows; i++) {
        const struct outbox_row *row = &o->rows[i];
        int stored = 0;
        int rc = mq_publish(o->q, row->topic, row->event_id, row->body,
                            strlen(row->body), &stored);

        if (rc != ERR_OK) {
            if (!o->failing)
                log_warn(o->cfg.subsystem,
                         "outbox_publish_failed id=%s error=%s retry_in_ms=%d",
                         row->event_id, err_name(rc), o->backoff_ms);
            o->failing = true;
            return i;
        }
        if (o->failing)
            log_info(o->cfg.subsystem, "outbox_publish_recovered id=%s",
                     row->event_id);
        o->failing = false;
        log_debug(o->cfg.subsystem, "outbox_published id=%s topic=%s queues=%d",
                  row->event_id, row->topic, stored);
    }
    return o->nrows;
}

/*
 * Sends unsent rows a batch at a time until none is left; ERR_OK, or the
 * error that ended it early.  Bounded by what was unsent when it began
 * plus what is written meanwhile: each batch marks its rows sent.
 */
static int relay_round(struct mq_outbox *o)
{
    for (;;) {
        int read_rc = read_unsent(o);

        if (read_rc != ERR_OK && read_rc != ERR_TOOBIG) {
            log_warn(o->cfg.subsystem, "outbox_read_failed error=%s",
                     err_name(read_rc));
            return read_rc;
        }
        if (o->nrows == 0)
            return read_rc;
        o->nsent = publish_rows(o);
        if (o->nsent > 0) {
            /* If this fails the rows are sent again: the queue drops the
             * copies by id, and consumers deduplicate. */
            int rc = store_write_sync(o->store, mark_apply, o);
            if (rc != ERR_OK) {
                log_warn(o->cfg.subsystem,
                         "outbox_mark_failed rows=%zu error=%s", o->nsent,
                         err_name(rc));
                return rc;
            }
            atomic_fetch_add_explicit(&o->relayed, o->nsent,
                                      memory_order_relaxed);
        }
        if (o->nsent < o->nrows)
            return ERR_IO;
        if (read_rc != ERR_OK || o->nrows < (size_t)o->cfg.batch_max)
            return read_rc;
    }
}

static const char SQL_OUTBOX_BACKLOG[] =
    "SELECT count(*) FROM outbox WHERE sent_at IS NULL";

static void backlog_gauge(struct mq_outbox *o)
{
    struct store_stmt *st;

    if (o->cfg.unsent == NULL ||
        store_prepare(o->conn, SQL_OUTBOX_BACKLOG, &st) != ERR_OK)
        return;
    if (store_step(st) == STORE_ROW)
        metrics_set(o->cfg.unsent, (double)store_col_int(st, 0));
    store_reset(st);
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
    store_bind_int(st, 2, MQ_OUTBOX_PURGE_MAX);
    rc = store_step(st);
    store_reset(st);
    if (rc < 0)
        return rc;
    p->deleted = store_changes(c);
    return ERR_OK;
}

/* Deletes one batch of rows sent more than keep_ms ago, now and then. */
static void relay_purge(struct mq_outbox *o)
{
    int64_t now = clock_wall_ms(o->cfg.clock);
    struct purge p = {now - o->cfg.keep_ms, 0};
    int rc;

    if (now - o->last_purge_ms < MQ_OUTBOX_PURGE_EVERY_MS)
        return;
    if ((rc = store_write_sync(o->store, purge_apply, &p)) != ERR_OK) {
        log_warn(o->cfg.subsystem, "outbox_purge_failed error=%s",
                 err_name(rc));
        return;
    }
    /* A full batch: more may be left, so purge again next round. */
    if (p.deleted < MQ_OUTBOX_PURGE_MAX)
        o->last_purge_ms = now;
    if (p.deleted > 0) {
        atomic_fetch_add_explicit(&o->purged, (uint64_t)p.deleted,
                                  memory_order_relaxed);
        log_info(o->cfg.subsystem, "outbox_purged rows=%lld",
                 (long long)p.deleted);
    }
}

/* A round, then when the next one is due: later after a failure. */
static void relay_step(struct mq_outbox *o)
{
    int rc = relay_round(o);
    int64_t now;

    backlog_gauge(o);
    relay_purge(o);
    now = clock_mono_ms(o->cfg.clock);
    o->idle_due_ms = now + o->cfg.idle_ms;
    if (rc == ERR_OK) {
        o->retry_at_ms = 0;
        o->backoff_ms = o->cfg.backoff_ms_min;
        return;
    }
    atomic_fetch_add_explicit(&o->failures, 1, memory_order_relaxed);
    o->retry_at_ms = now + o->backoff_ms;
    o->backoff_ms = o->backoff_ms > o->cfg.backoff_ms_max / 2
                        ? o->cfg.backoff_ms_max
                        : o->backoff_ms * 2;
}

/* --- the thread --------------------------------------------------------- */

/* Waits on the condition variable for ms of real time at most. */
static void wait_locked(struct mq_outbox *o, int64_t ms)
{
    struct timespec until;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    (void)pthread_cond_timedwait(&o->wake, &o->lock, &until);
}

/*
 * Waits until a round is due: woken or idle_ms passed, and no backoff
 * running.  False once closing.  The deadlines are read on the
 * configured clock, and each wait is bounded by idle_ms of real time, so
 * a clock moved by hand is noticed too.
 */
static bool relay_wait(struct mq_outbox *o)
{
    bool go_on;

    pthread_mutex_lock(&o->lock);
    while (!o->closing) {
        int64_t now = clock_mono_ms(o->cfg.clock);
        int64_t until;

        if (now >= o->retry_at_ms && (o->woken || now >= o->idle_due_ms))
            break;
        until = now < o->retry_at_ms ? o->retry_at_ms : o->idle_due_ms;
        if (until - now > o->cfg.idle_ms)
            until = now + o->cfg.idle_ms;
        wait_locked(o, until - now);
    }
    o->woken = false;
    go_on = !o->closing;
    pthread_mutex_unlock(&o->lock);
    return go_on;
}

static void *relay_main(void *arg)
{
    struct mq_outbox *o = arg;

    if (store_conn_open(o->store, &o->conn) != ERR_OK) {
        log_error(o->cfg.subsystem,
                  "outbox_connection_failed: events stay unsent");
        return NULL;
    }
    /* What an earlier run committed and did not send goes first. */
    do
        relay_step(o);
    while (relay_wait(o));
    /* What committed before the stop still goes, if the queue takes it. */
    if (o->retry_at_ms == 0)
        relay_step(o);
    store_conn_close(o->conn);
    return NULL;
}

/* --- start and stop ----------------------------------------------------- */

/* Fills zero settings with defaults; ERR_INVALID (logged) when out of range. */
static int config_check(struct mq_outbox_config *c)
{
    const char *bad = NULL;

    if (c->subsystem == NULL)
        c->subsystem = "mq";
    if (c->clock == NULL)
        c->clock = clock_system();
    if (c->batch_max == 0)
        c->batch_max = MQ_OUTBOX_BATCH_DEFAULT;
    if (c->idle_ms == 0)
        c->idle_ms = MQ_OUTBOX_IDLE_MS_DEFAULT;
    if (c->backoff_ms_min == 0)
        c->backoff_ms_min = MQ_OUTBOX_BACKOFF_MS_MIN;
    if (c->backoff_ms_max == 0)
        c->backoff_ms_max = MQ_OUTBOX_BACKOFF_MS_MAX;
    if (c->keep_ms == 0)
        c->keep_ms = MQ_OUTBOX_KEEP_MS_DEFAULT;

    if (c->batch_max < 1 || c->batch_max > MQ_OUTBOX_BATCH_MAX)
        bad = "batch_max";
    else if (c->idle_ms < 1 || c->idle_ms > MQ_OUTBOX_WAIT_MS_MAX)
        bad = "idle_ms";
    else if (c->backoff_ms_min < 1 || c->backoff_ms_min > c->backoff_ms_max)
        bad = "backoff_ms_min";
    else if (c->backoff_ms_max > MQ_OUTBOX_WAIT_MS_MAX)
        bad = "backoff_ms_max";
    else if (c->keep_ms < 0)
        bad = "keep_ms";
    else if (c->ndeclare > MQ_OUTBOX_DECLARE_MAX ||
             (c->ndeclare > 0 && c->declare == NULL))
        bad = "declare";
    if (bad != NULL) {
        log_error(c->subsystem, "outbox_bad_setting name=%s", bad);
        return ERR_INVALID;
    }
    return ERR_OK;
}

static void outbox_free(struct mq_outbox *o)
{
    pthread_mutex_destroy(&o->lock);
    pthread_cond_destroy(&o->wake);
    free(o->rows);
    free(o);
}

/* The condition variable waits on CLOCK_MONOTONIC, as wait_locked asks. */
static int outbox_alloc(const struct mq_outbox_config *cfg,
                        struct mq_outbox **out)
{
    struct mq_outbox *o = calloc(1, sizeof(*o));
    pthread_condattr_t attr;
    int rc;

    if (o == NULL)
        return ERR_NOMEM;
    o->cfg = *cfg;
    if ((rc = config_check(&o->cfg)) != ERR_OK) {
        free(o);
        return rc;
    }
    o->rows = calloc((size_t)o->cfg.batch_max, sizeof(*o->rows));
    if (o->rows == NULL) {
        free(o);
        return ERR_NOMEM;
    }
    o->backoff_ms = o->cfg.backoff_ms_min;
    pthread_mutex_init(&o->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&o->wake, &attr);
    pthread_condattr_destroy(&attr);
    *out = o;
    return ERR_OK;
}

static int declare_queues(struct mq_outbox *o)
{
    for (size_t i = 0; i < o->cfg.ndeclare; i++) {
        const struct mq_outbox_declare *d = &o->cfg.declare[i];
        int rc = mq_declare(o->q, d->queue, d->patterns, d->npatterns);

        if (rc != ERR_OK) {
            log_error(o->cfg.subsystem,
                      "queue_declare_failed queue=%s error=%s", d->queue,
                      err_name(rc));
            return rc;
        }
    }
    return ERR_OK;
}

int mq_outbox_start(struct store *s, const struct mq_config *mq,
                    const struct mq_outbox_config *cfg, struct mq_outbox **out)
{
    struct mq_outbox *o;
    int rc;

    *out = NULL;
    if ((rc = outbox_alloc(cfg, &o)) != ERR_OK)
        return rc;
    o->store = s;
    if ((rc = mq_open(mq, &o->q)) != ERR_OK) {
        log_error(o->cfg.subsystem, "outbox_queue_open_failed path=%s error=%s",
                  mq->path, err_name(rc));
        goto out_free;
    }
    if ((rc = declare_queues(o)) != ERR_OK)
        goto out_close_queue;
    if (pthread_create(&o->thread, NULL, relay_main, o) != 0) {
        log_error(o->cfg.subsystem, "thread_create_failed what=outbox_relay");
        rc = ERR_SYS;
        goto out_close_queue;
    }
    *out = o;
    return ERR_OK;

out_close_queue:
    mq_close(o->q);
out_free:
    outbox_free(o);
    return rc;
}

int mq_outbox_wake(struct mq_outbox *o)
{
    int rc = ERR_OK;

    if (o == NULL)
        return ERR_OK;
    pthread_mutex_lock(&o->lock);
    if (o->closing) {
        rc = ERR_CLOSED;
    } else {
        o->woken = true;
        pthread_cond_signal(&o->wake);
    }
    pthread_mutex_unlock(&o->lock);
    return rc;
}

void mq_outbox_get_stats(const struct mq_outbox *o, struct mq_outbox_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (o == NULL)
        return;
    out->relayed = atomic_load_explicit(&o->relayed, memory_order_relaxed);
    out->failures = atomic_load_explicit(&o->failures, memory_order_relaxed);
    out->purged = atomic_load_explicit(&o->purged, memory_order_relaxed);
}

void mq_outbox_stop(struct mq_outbox *o, struct mq_outbox_stats *final)
{
    if (o == NULL) {
        if (final != NULL)
            memset(final, 0, sizeof(*final));
        return;
    }
    pthread_mutex_lock(&o->lock);
    o->closing = true;
    pthread_cond_signal(&o->wake);
    pthread_mutex_unlock(&o->lock);
    pthread_join(o->thread, NULL);
    if (final != NULL)
        mq_outbox_get_stats(o, final);
    mq_close(o->q);
    outbox_free(o);
}
