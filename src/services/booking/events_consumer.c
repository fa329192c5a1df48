/*
 * events_consumer.c - the catalog's show events, taken from the message
 * queue (src/mq).
 *
 * One thread claims a batch of BOOKING_EVENTS_QUEUE, hands each event to
 * the path POST /internal/v1/show-events takes (booking_show_refresh: the
 * fetcher re-reads the show and posts it to its owner thread), waits until
 * every owner has it, and only then acks.  A refresh that failed is nacked
 * with a delay, so the queue delivers it again, and after mq.max_attempts
 * deliveries it goes to the dead letters.  Handling is idempotent (the
 * show is re-read whole, and a version already held changes nothing), so
 * the queue's at-least-once delivery is safe without remembering ids.
 * The thread also refreshes the depth gauges, since mq calls block and no
 * event-loop thread may make them.
 */
#include <jansson.h>
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
#include "services/booking/internal.h"

#define EVENT_ERROR_MAX 128

/* One message of the batch being handled. */
struct event_slot {
    struct booking_consumer *c;
    int64_t show_id, version;
    bool pending; /* a refresh is under way; guarded by c->lock */
    int rc;
    int64_t got_version;
    char error[EVENT_ERROR_MAX];
};

struct booking_consumer {
    struct booking *b;
    struct mq *q;
    pthread_t tid;

    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stopping;
    size_t pending; /* refreshes not yet answered */

    struct event_slot slots[BOOKING_EVENTS_BATCH_MAX];
    struct metrics_series *handled, *retried, *dead;
};

/* Waits up to ms or until stop is asked; true if it was. */
static bool pause_ms(struct booking_consumer *c, int64_t ms)
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

/* From the owner (or fetcher) thread: the refresh is over. */
static void on_refreshed(void *arg, int rc, int64_t version)
{
    struct event_slot *s = arg;
    struct booking_consumer *c = s->c;

    pthread_mutex_lock(&c->lock);
    s->rc = rc;
    s->got_version = version;
    s->pending = false;
    c->pending--;
    pthread_cond_broadcast(&c->wake);
    pthread_mutex_unlock(&c->lock);
}

/* Reads {"type", "show_id", "version"}; false with s->error if unusable. */
static bool parse_event(const struct mq_message *m, struct event_slot *s)
{
    json_error_t err;
    json_t *body = json_loadb((const char *)m->body, m->len, 0, &err);
    json_t *id = json_object_get(body, "show_id");
    json_t *version = json_object_get(body, "version");
    bool ok = json_is_integer(id) && json_integer_value(id) > 0 &&
              json_is_integer(version);

    if (ok) {
        s->show_id = json_integer_value(id);
        s->version = json_integer_value(version);
    } else {
        snprintf(s->error, sizeof(s->error),
                 "body is not {\"show_id\": n, \"version\": n}");
    }
    json_decref(body);
    return ok;
}

/* Starts the refresh of every parsable message of the batch. */
static void start_batch(struct booking_consumer *c, const struct mq_batch *bt)
{
    for (size_t i = 0; i < bt->n; i++) {
        struct event_slot *s = &c->slots[i];

        *s = (struct event_slot){.c = c, .rc = ERR_INVALID};
        if (!parse_event(&bt->msgs[i], s))
            continue;
        pthread_mutex_lock(&c->lock);
        s->pending = true;
        c->pending++;
        pthread_mutex_unlock(&c->lock);
        if (!booking_show_refresh(c->b, s->show_id, on_refreshed, s)) {
            pthread_mutex_lock(&c->lock);
            s->pending = false;
            c->pending--;
            pthread_mutex_unlock(&c->lock);
            s->rc = ERR_FULL;
        }
    }
}

/*
 * Every refresh asked for is answered by the fetcher, which bounds each
 * catalog read by its timeout, even at shutdown: so this wait ends.
 */
static void wait_batch(struct booking_consumer *c)
{
    pthread_mutex_lock(&c->lock);
    while (c->pending > 0)
        pthread_cond_wait(&c->wake, &c->lock);
    pthread_mutex_unlock(&c->lock);
}

static void describe_failure(struct event_slot *s)
{
    if (s->error[0] != '\0')
        return;
    if (s->rc == ERR_OK)
        snprintf(s->error, sizeof(s->error),
                 "the catalog returned version %lld, older than %lld",
                 (long long)s->got_version, (long long)s->version);
    else
        snprintf(s->error, sizeof(s->error), "refresh failed: %s",
                 err_name(s->rc));
}

/* Acks what was handled, nacks the rest with a delay. */
static void settle(struct booking_consumer *c, const struct mq_message *m,
                   struct event_slot *s)
{
    /* A show the catalog does not have cannot be re-read however often
     * we try: the event is done with. */
    bool done = (s->rc == ERR_OK && s->got_version >= s->version) ||
                s->rc == ERR_NOTFOUND;
    bool dead = false;
    int rc;

    if (done) {
        rc = mq_ack(c->q, m);
        metrics_inc(c->handled);
        log_info("booking",
                 "show_event_handled source=queue id=%s topic=%s show=%lld "
                 "version=%lld attempt=%d outcome=%s",
                 m->id, m->topic, (long long)s->show_id, (long long)s->version,
                 m->attempt, s->rc == ERR_OK ? "refreshed" : "not_found");
    } else {
        describe_failure(s);
        rc = mq_nack(c->q, m, BOOKING_EVENTS_RETRY_MS, s->error, &dead);
        metrics_inc(dead ? c->dead : c->retried);
        log_warn("booking",
                 "show_event_failed source=queue id=%s show=%lld attempt=%d "
                 "dead=%s err=\"%s\"",
                 m->id, (long long)s->show_id, m->attempt,
                 dead ? "true" : "false", s->error);
    }
    /* A lost lease means the message went back: someone handles it again,
     * harmlessly. */
    if (rc != ERR_OK)
        log_warn("booking", "show_event_settle_failed id=%s op=%s error=%s",
                 m->id, done ? "ack" : "nack", err_name(rc));
}

static void refresh_depth(struct booking_consumer *c)
{
    struct mq_depth d;
    int rc = mq_depth(c->q, BOOKING_EVENTS_QUEUE, &d);

    if (rc != ERR_OK)
        log_debug("booking", "queue_depth_failed queue=%s error=%s",
                  BOOKING_EVENTS_QUEUE, err_name(rc));
}

static void *consumer_main(void *arg)
{
    struct booking_consumer *c = arg;
    struct clock *clk = clock_system();
    int64_t next_depth = 0;
    bool failing = false;

    for (;;) {
        int64_t now = clock_mono_ms(clk);
        if (now >= next_depth) {
            refresh_depth(c);
            next_depth = now + BOOKING_EVENTS_DEPTH_MS;
        }

        struct mq_batch *bt = NULL;
        int rc = mq_consume(c->q, BOOKING_EVENTS_QUEUE,
                            BOOKING_EVENTS_BATCH_MAX, &bt);
        if (rc != ERR_OK) {
            if (!failing)
                log_warn("booking", "queue_consume_failed queue=%s error=%s",
                         BOOKING_EVENTS_QUEUE, err_name(rc));
            failing = true;
            if (pause_ms(c, BOOKING_EVENTS_RETRY_MS))
                break;
            continue;
        }
        failing = false;
        if (bt->n == 0) {
            mq_batch_free(bt);
            if (pause_ms(c, BOOKING_EVENTS_IDLE_MS))
                break;
            continue;
        }

        start_batch(c, bt);
        wait_batch(c);
        for (size_t i = 0; i < bt->n; i++)
            settle(c, &bt->msgs[i], &c->slots[i]);
        mq_batch_free(bt);

        pthread_mutex_lock(&c->lock);
        bool stopping = c->stopping;
        pthread_mutex_unlock(&c->lock);
        if (stopping)
            break;
    }
    return NULL;
}

static void consumer_metrics(struct booking_consumer *c)
{
    static const char *const labels[] = {"outcome"};
    struct metrics_family *f = metrics_family(
        metrics_process(), METRICS_COUNTER, "marquee_booking_show_events_total",
        "Show events taken from the queue, by what came of them: handled "
        "(acked), retried (nacked) or dead (dead-lettered).",
        1, labels, NULL, 0);
    const char *handled[] = {"handled"}, *retried[] = {"retried"};
    const char *dead[] = {"dead"};

    c->handled = metrics_series(f, handled);
    c->retried = metrics_series(f, retried);
    c->dead = metrics_series(f, dead);
}

struct booking_consumer *booking_consumer_start(struct booking *b,
                                                const struct mq_config *cfg)
{
    static const char *const patterns[] = {"show.*"};
    struct booking_consumer *c = calloc(1, sizeof(*c));
    int rc;

    if (c == NULL)
        return NULL;
    c->b = b;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    consumer_metrics(c);
    if ((rc = mq_open(cfg, &c->q)) != ERR_OK) {
        log_error("booking", "queue_open_failed path=%s error=%s", cfg->path,
                  err_name(rc));
        goto out_free;
    }
    rc = mq_declare(c->q, BOOKING_EVENTS_QUEUE, patterns, 1);
    if (rc != ERR_OK) {
        log_error("booking", "queue_declare_failed queue=%s error=%s",
                  BOOKING_EVENTS_QUEUE, err_name(rc));
        goto out_close_queue;
    }
    if (pthread_create(&c->tid, NULL, consumer_main, c) != 0) {
        log_error("booking", "thread_create_failed what=show_events_consumer");
        goto out_close_queue;
    }
    log_info("booking", "show_events_consumer_started queue=%s path=%s",
             BOOKING_EVENTS_QUEUE, cfg->path);
    return c;

out_close_queue:
    mq_close(c->q);
out_free:
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->wake);
    free(c);
    return NULL;
}

void booking_consumer_stop(struct booking_consumer *c)
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
