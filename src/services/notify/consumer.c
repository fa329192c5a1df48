/*
 * consumer.c - booking events taken from the message queue (src/mq).
 *
 * One thread claims a batch of NOTIFY_QUEUE, parses each message, gives
 * each confirmation a fresh ticket id and its signed code, and submits one
 * store write per message.  The writer applies them in savepoints of one
 * group commit (apply.c).  Only when every write of the batch has been
 * committed (or has failed) are the messages settled: acked when applied,
 * nacked with their error when not.  So an effect is always durable
 * before its ack, and a crash between the two makes a redelivery that
 * finds the event id recorded and does nothing (I4).
 *
 * The thread also refreshes the queue's depth gauges, since mq calls
 * block and no event-loop thread may make them.
 */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "metrics/metrics.h"
#include "mq/mq.h"
#include "services/notify/internal.h"
#include "store/store.h"

/* One message of the batch being handled. */
struct notify_slot {
    struct notify_consumer *c;
    struct notify_job job;
    struct store_write w;
    bool parsed;
    bool pending; /* its write is queued; guarded by c->lock */
    int rc;
};

struct notify_consumer {
    struct notify *n;
    struct mq *q;
    struct notify_consumer_config cfg;
    pthread_t tid;

    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    size_t pending; /* writes not yet done */

    struct notify_slot slots[NOTIFY_BATCH_MAX];
};

/* Waits up to ms or until stop is asked; true if it was. */
static bool pause_ms(struct notify_consumer *c, int64_t ms)
{
    struct timespec until;
    bool stopping;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&c->lock);
    while (!c->stopping &&
           pthread_cond_timedwait(&c->wake, &c->lock, &until) == 0)
        continue;
    stopping = c->stopping;
    pthread_mutex_unlock(&c->lock);
    return stopping;
}

static int slot_apply(struct store_conn *conn, void *arg)
{
    struct notify_slot *s = arg;

    return notify_job_apply(conn, &s->job);
}

/* On the writer thread, after the batch's commit. */
static void slot_done(void *arg, int rc)
{
    struct notify_slot *s = arg;
    struct notify_consumer *c = s->c;

    pthread_mutex_lock(&c->lock);
    assert(s->pending && c->pending > 0);
    s->rc = rc;
    s->pending = false;
    c->pending--;
    pthread_cond_broadcast(&c->wake);
    pthread_mutex_unlock(&c->lock);
}

/* Parses m and prepares its write; false (s->job.error set) if unusable. */
static bool slot_prepare(struct notify_consumer *c, const struct mq_message *m,
                         struct notify_slot *s)
{
    struct notify_job *job = &s->job;
    int rc;

    if (notify_event_parse(m->body, m->len, &job->ev, job->error,
                           sizeof(job->error)) != ERR_OK)
        return false;
    job->now_ms = clock_wall_ms(c->n->clock);
    if (job->ev.type != NOTIFY_EV_CONFIRMED)
        return true;
    /* A fresh id on every delivery: only the first applied is kept. */
    if ((rc = notify_ticket_id_new(job->ticket_id)) != ERR_OK ||
        (rc = notify_code_sign(&c->n->key, job->ticket_id, job->ev.booking_id,
                               job->code, sizeof(job->code))) != ERR_OK) {
        s->rc = rc;
        snprintf(job->error, sizeof(job->error), "cannot sign a ticket: %s",
                 err_msg(rc));
        return false;
    }
    return true;
}

/* Submits the write of every parsable message of the batch. */
static void start_batch(struct notify_consumer *c, const struct mq_batch *bt)
{
    /* mq_consume() never returns more than it was asked for. */
    assert(bt->n <= NOTIFY_BATCH_MAX);
    for (size_t i = 0; i < bt->n; i++) {
        struct notify_slot *s = &c->slots[i];
        int rc;

        memset(s, 0, sizeof(*s));
        s->c = c;
        s->rc = ERR_INVALID;
        if (!(s->parsed = slot_prepare(c, &bt->msgs[i], s)))
            continue;
        s->w = (struct store_write){
            .apply = slot_apply, .done = slot_done, .arg = s};
        pthread_mutex_lock(&c->lock);
        s->pending = true;
        c->pending++;
        pthread_mutex_unlock(&c->lock);
        if ((rc = store_submit(c->n->store, &s->w)) != ERR_OK) {
            pthread_mutex_lock(&c->lock);
            s->pending = false;
            c->pending--;
            pthread_mutex_unlock(&c->lock);
            s->rc = rc;
            snprintf(s->job.error, sizeof(s->job.error), "the database is %s",
                     rc == ERR_FULL ? "busy" : "closing");
        }
    }
}

/* The writer runs every queued job, even while closing: this ends. */
static void wait_batch(struct notify_consumer *c)
{
    pthread_mutex_lock(&c->lock);
    while (c->pending > 0)
        pthread_cond_wait(&c->wake, &c->lock);
    pthread_mutex_unlock(&c->lock);
}

static void count_applied(struct notify_consumer *c, const struct notify_job *j)
{
    struct notify_metrics *m = &c->n->metrics;

    switch (j->outcome) {
    case NOTIFY_ISSUED:
        metrics_inc(m->issued);
        metrics_inc(m->tickets);
        break;
    case NOTIFY_DUPLICATE: metrics_inc(m->duplicate); break;
    case NOTIFY_CANCELLED: metrics_inc(m->cancelled); break;
    }
}

static void log_applied(const struct mq_message *m, const struct notify_job *j)
{
    const struct notify_event *ev = &j->ev;

    switch (j->outcome) {
    case NOTIFY_ISSUED:
        log_info("notify",
                 "ticket_issued event=%s booking=%s ticket=%s customer=%s "
                 "seats=%zu attempt=%d",
                 ev->id, ev->booking_id, j->ticket_id, ev->customer, ev->nseats,
                 m->attempt);
        break;
    case NOTIFY_CANCELLED:
        log_info("notify",
                 "seats_cancelled event=%s booking=%s ticket=%s seats=%zu "
                 "reason=%s attempt=%d",
                 ev->id, ev->booking_id, j->ticket_id, ev->nseats, ev->reason,
                 m->attempt);
        break;
    case NOTIFY_DUPLICATE:
        log_info("notify",
                 "event_duplicate event=%s type=%s booking=%s attempt=%d",
                 ev->id, m->topic, ev->booking_id, m->attempt);
        break;
    }
}

/* Acks what was applied, nacks the rest with its error. */
static void settle(struct notify_consumer *c, const struct mq_message *m,
                   struct notify_slot *s)
{
    bool done = s->parsed && s->rc == ERR_OK;
    bool dead = false;
    int rc;

    if (done) {
        rc = mq_ack(c->q, m);
        count_applied(c, &s->job);
        log_applied(m, &s->job);
    } else {
        if (s->job.error[0] == '\0')
            snprintf(s->job.error, sizeof(s->job.error), "%s", err_msg(s->rc));
        rc = mq_nack(c->q, m, c->cfg.retry_ms, s->job.error, &dead);
        metrics_inc(dead ? c->n->metrics.dead : c->n->metrics.retried);
        log_warn("notify",
                 "event_failed id=%s topic=%s attempt=%d dead=%s err=\"%s\"",
                 m->id, m->topic, m->attempt, dead ? "true" : "false",
                 s->job.error);
    }
    /* A lost lease means the message went back: it is handled again,
     * and the event id makes that harmless. */
    if (rc != ERR_OK)
        log_warn("notify", "event_settle_failed id=%s op=%s error=%s", m->id,
                 done ? "ack" : "nack", err_name(rc));
}

static void handle_batch(struct notify_consumer *c, const struct mq_batch *bt)
{
    size_t applied = 0;

    start_batch(c, bt);
    wait_batch(c);
    for (size_t i = 0; i < bt->n; i++)
        applied += c->slots[i].parsed && c->slots[i].rc == ERR_OK;
    /* Fault injection: the effects are committed, the acks not yet sent.
     * Stopping cuts the pause short; the acks still go out. */
    if (c->cfg.ack_delay_ms > 0 && applied > 0) {
        log_debug("notify", "ack_delayed messages=%zu delay_ms=%d", applied,
                  c->cfg.ack_delay_ms);
        pause_ms(c, c->cfg.ack_delay_ms);
    }
    for (size_t i = 0; i < bt->n; i++)
        settle(c, &bt->msgs[i], &c->slots[i]);
}

static void refresh_depth(struct notify_consumer *c)
{
    struct mq_depth d;
    int rc = mq_depth(c->q, NOTIFY_QUEUE, &d);

    if (rc != ERR_OK)
        log_debug("notify", "queue_depth_failed queue=%s error=%s",
                  NOTIFY_QUEUE, err_name(rc));
}

static bool stop_asked(struct notify_consumer *c)
{
    bool stopping;

    pthread_mutex_lock(&c->lock);
    stopping = c->stopping;
    pthread_mutex_unlock(&c->lock);
    return stopping;
}

static void *consumer_main(void *arg)
{
    struct notify_consumer *c = arg;
    struct clock *clk = clock_system();
    int64_t next_depth = 0;
    bool failing = false;

    while (!stop_asked(c)) {
        int64_t now = clock_mono_ms(clk);
        if (now >= next_depth) {
            refresh_depth(c);
            next_depth = now + NOTIFY_DEPTH_MS;
        }

        struct mq_batch *bt = NULL;
        int rc = mq_consume(c->q, NOTIFY_QUEUE, NOTIFY_BATCH_MAX, &bt);
        if (rc != ERR_OK) {
            if (!failing)
                log_warn("notify", "queue_consume_failed queue=%s error=%s",
                         NOTIFY_QUEUE, err_name(rc));
            failing = true;
            if (pause_ms(c, c->cfg.retry_ms))
                break;
            continue;
        }
        if (failing)
            log_info("notify", "queue_consume_recovered queue=%s",
                     NOTIFY_QUEUE);
        failing = false;
        if (bt->n > 0)
            handle_batch(c, bt);
        size_t n = bt->n;
        mq_batch_free(bt);
        if (n == 0 && pause_ms(c, NOTIFY_IDLE_MS))
            break;
    }
    return NULL;
}

struct notify_consumer *
notify_consumer_start(struct notify *n, const struct mq_config *mc,
                      const struct notify_consumer_config *cc)
{
    static const char *const patterns[] = {NOTIFY_BINDING};
    struct notify_consumer *c = calloc(1, sizeof(*c));
    int rc;

    if (c == NULL)
        return NULL;
    c->n = n;
    c->cfg = *cc;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    if ((rc = mq_open(mc, &c->q)) != ERR_OK) {
        log_error("notify", "queue_open_failed backend=%s error=%s",
                  mc->backend != NULL ? mc->backend : "sqlite", err_name(rc));
        goto out_free;
    }
    if ((rc = mq_declare(c->q, NOTIFY_QUEUE, patterns, 1)) != ERR_OK) {
        log_error("notify", "queue_declare_failed queue=%s error=%s",
                  NOTIFY_QUEUE, err_name(rc));
        goto out_close_queue;
    }
    if (pthread_create(&c->tid, NULL, consumer_main, c) != 0) {
        log_error("notify",
                  "thread_create_failed what=booking_events_consumer");
        goto out_close_queue;
    }
    log_info("notify",
             "consumer_started queue=%s binding=%s backend=%s retry_ms=%d "
             "ack_delay_ms=%d",
             NOTIFY_QUEUE, NOTIFY_BINDING,
             mc->backend != NULL ? mc->backend : "sqlite", cc->retry_ms,
             cc->ack_delay_ms);
    return c;

out_close_queue:
    mq_close(c->q);
out_free:
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    free(c);
    return NULL;
}

void notify_consumer_stop(struct notify_consumer *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    pthread_cond_broadcast(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->tid, NULL);
    mq_close(c->q);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    free(c);
}
