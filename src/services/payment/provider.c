/*
 * provider.c - the simulated card provider on its pool of worker threads.
 *
 * One mutex guards the queue, the dials and the stopping flag; it is never
 * held across a sleep or a database call.  Idle workers wait on `work`;
 * a worker pausing for the latency waits on `stop` (monotonic clock), so
 * a new job never wakes a pausing worker and provider_stop wakes all.
 */
#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "base/log.h"
#include "base/rand.h"
#include "metrics/metrics.h"
#include "services/payment/provider.h"
#include "store/store.h"

/* Decline codes a random decline picks from, as card networks name them. */
static const char *const decline_codes[] = {
    "card_declined", "insufficient_funds", "do_not_honor", "expired_card"};
#define DECLINE_CODES (sizeof(decline_codes) / sizeof(decline_codes[0]))

struct provider_worker {
    struct provider *p;
    pthread_t thread;
    struct rand rng;
    struct store_conn *conn;
};

struct provider {
    struct store *store;
    int timeout_ms;
    int queue_max;
    pthread_mutex_t lock;
    pthread_cond_t work; /* a job queued, or stopping */
    pthread_cond_t stop; /* stopping: ends the workers' pauses */
    struct provider_job *head, *tail;
    int depth;
    bool stopping;
    struct provider_dials dials;
    struct provider_worker workers[PROVIDER_WORKERS_MAX];
    int nworkers;
    struct metrics_series *latency, *queue_depth;
};

/* --- dials --------------------------------------------------------------- */

static bool rate_ok(double r)
{
    return isfinite(r) && r >= 0.0 && r <= 1.0;
}

int provider_dials_check(const struct provider_dials *d,
                         void (*bad)(const char *field, const char *detail,
                                     void *arg),
                         void *arg)
{
    int rc = ERR_OK;
    char detail[96];

#define PROVIDER_BAD(field, ...)                                               \
    do {                                                                       \
        rc = ERR_INVALID;                                                      \
        snprintf(detail, sizeof(detail), __VA_ARGS__);                         \
        if (bad != NULL)                                                       \
            bad(field, detail, arg);                                           \
    } while (0)
    if (d->latency_ms < 0 || d->latency_ms > PROVIDER_LATENCY_MAX_MS)
        PROVIDER_BAD("latency_ms", "latency_ms must be from 0 to %d",
                     PROVIDER_LATENCY_MAX_MS);
    if (d->jitter_ms < 0 || d->jitter_ms > PROVIDER_LATENCY_MAX_MS)
        PROVIDER_BAD("jitter_ms", "jitter_ms must be from 0 to %d",
                     PROVIDER_LATENCY_MAX_MS);
    if (!rate_ok(d->failure_rate))
        PROVIDER_BAD("failure_rate", "failure_rate must be from 0 to 1");
    if (!rate_ok(d->decline_rate))
        PROVIDER_BAD("decline_rate", "decline_rate must be from 0 to 1");
    if (!rate_ok(d->timeout_rate))
        PROVIDER_BAD("timeout_rate", "timeout_rate must be from 0 to 1");
    if (rc == ERR_OK &&
        d->failure_rate + d->decline_rate + d->timeout_rate > 1.0 + 1e-9)
        PROVIDER_BAD("failure_rate",
                     "failure_rate, decline_rate and timeout_rate must add "
                     "up to at most 1");
#undef PROVIDER_BAD
    return rc;
}

void provider_get_dials(struct provider *p, struct provider_dials *out)
{
    pthread_mutex_lock(&p->lock);
    *out = p->dials;
    pthread_mutex_unlock(&p->lock);
}

void provider_set_dials(struct provider *p, const struct provider_dials *d)
{
    assert(provider_dials_check(d, NULL, NULL) == ERR_OK);
    pthread_mutex_lock(&p->lock);
    p->dials = *d;
    pthread_mutex_unlock(&p->lock);
    log_info("payment",
             "provider_dials_set latency_ms=%d jitter_ms=%d "
             "failure_rate=%g decline_rate=%g timeout_rate=%g outage=%s",
             d->latency_ms, d->jitter_ms, d->failure_rate, d->decline_rate,
             d->timeout_rate, d->outage ? "true" : "false");
}

bool provider_in_outage(struct provider *p)
{
    bool outage;

    pthread_mutex_lock(&p->lock);
    outage = p->dials.outage;
    pthread_mutex_unlock(&p->lock);
    return outage;
}

/* --- the provider's own table ------------------------------------------ */

static const char SQL_PROVIDER_GET[] =
    "SELECT amount, currency, outcome, provider_charge_id, decline_code "
    "FROM provider_charges WHERE key = ?";
static const char SQL_PROVIDER_PUT[] =
    "INSERT OR IGNORE INTO provider_charges (key, amount, currency, outcome, "
    "provider_charge_id, decline_code, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)";

/*
 * The first result for job's key, if any: true when found.  A key reused
 * for another amount or currency is a failure, as real providers refuse
 * it.  Errors count as not found: the call then goes ahead.
 */
static bool table_get(struct store_conn *c, struct provider_job *job)
{
    struct store_stmt *st;
    bool found = false;

    if (c == NULL || store_prepare(c, SQL_PROVIDER_GET, &st) != ERR_OK)
        return false;
    store_bind_text(st, 1, job->key);
    if (store_step(st) == STORE_ROW) {
        struct provider_result *r = &job->result;
        found = true;
        if (store_col_int(st, 0) != job->amount ||
            strcmp(store_col_text(st, 1), job->currency) != 0) {
            r->outcome = PROVIDER_FAILED;
        } else {
            bool ok = strcmp(store_col_text(st, 2), "succeeded") == 0;
            r->outcome = ok ? PROVIDER_SUCCEEDED : PROVIDER_DECLINED;
            snprintf(r->provider_id, sizeof(r->provider_id), "%s",
                     store_col_text(st, 3));
            snprintf(r->decline_code, sizeof(r->decline_code), "%s",
                     store_col_text(st, 4));
        }
    }
    store_reset(st);
    return found;
}

static int table_put_apply(struct store_conn *c, void *arg)
{
    const struct provider_job *job = arg;
    const struct provider_result *r = &job->result;
    struct timespec now;
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_PROVIDER_PUT, &st);

    if (rc != ERR_OK)
        return rc;
    clock_gettime(CLOCK_REALTIME, &now);
    store_bind_text(st, 1, job->key);
    store_bind_int(st, 2, job->amount);
    store_bind_text(st, 3, job->currency);
    store_bind_text(
        st, 4, r->outcome == PROVIDER_SUCCEEDED ? "succeeded" : "declined");
    store_bind_text(st, 5, r->provider_id);
    if (r->outcome == PROVIDER_DECLINED)
        store_bind_text(st, 6, r->decline_code);
    else
        store_bind_null(st, 6);
    store_bind_int(st, 7, (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000);
    rc = store_step(st);
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

/* --- one call ------------------------------------------------------------ */

static int64_t mono_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/*
 * Sleeps ms on the pool's condition; false when woken by provider_stop.
 * Called with the lock held; returns with it held.
 */
static bool pause_ms(struct provider *p, int64_t ms)
{
    struct timespec until;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    while (!p->stopping &&
           pthread_cond_timedwait(&p->stop, &p->lock, &until) == 0) {
    }
    return !p->stopping;
}

/* The outcome of a new key: the test tokens first, then the dials. */
static enum provider_outcome decide(struct provider_worker *w,
                                    const struct provider_job *job,
                                    const struct provider_dials *d)
{
    const char *token = job->token != NULL ? job->token : "";
    double roll = rand_unit(&w->rng);

    if (strcmp(token, "tok_decline") == 0)
        return PROVIDER_DECLINED;
    if (strcmp(token, "tok_fail") == 0)
        return PROVIDER_FAILED;
    if (strcmp(token, "tok_timeout") == 0)
        return PROVIDER_TIMEOUT;
    if (roll < d->timeout_rate)
        return PROVIDER_TIMEOUT;
    roll -= d->timeout_rate;
    if (roll < d->failure_rate)
        return PROVIDER_FAILED;
    roll -= d->failure_rate;
    if (roll < d->decline_rate)
        return PROVIDER_DECLINED;
    return PROVIDER_SUCCEEDED;
}

static int64_t latency_of(struct provider_worker *w,
                          const struct provider_dials *d)
{
    int64_t ms = d->latency_ms;

    if (d->jitter_ms > 0)
        ms += (int64_t)rand_below(&w->rng, 2 * (uint64_t)d->jitter_ms + 1) -
              d->jitter_ms;
    return ms > 0 ? ms : 0;
}

/* Runs one call; the lock is held on entry and on return. */
static void call(struct provider_worker *w, struct provider_job *job)
{
    struct provider *p = w->p;
    struct provider_result *r = &job->result;
    struct provider_dials d = p->dials;
    int64_t start = mono_ms();
    int64_t wait;

    memset(r, 0, sizeof(*r));
    pthread_mutex_unlock(&p->lock);
    bool known = table_get(w->conn, job);
    enum provider_outcome outcome = known ? r->outcome : decide(w, job, &d);
    pthread_mutex_lock(&p->lock);

    wait = latency_of(w, &d);
    if (known) {
        /* A key the provider has charged or declined is never answered
         * as a timeout: the caller would record "nothing charged" for
         * money already taken. */
        wait = wait < p->timeout_ms ? wait : p->timeout_ms;
    } else if (outcome == PROVIDER_TIMEOUT || wait > p->timeout_ms) {
        outcome = PROVIDER_TIMEOUT;
        wait = p->timeout_ms;
    }
    if (d.outage) {
        r->outcome = PROVIDER_UNAVAILABLE;
        return;
    }
    if (!pause_ms(p, wait)) {
        r->outcome = PROVIDER_UNAVAILABLE;
        return;
    }
    r->outcome = outcome;
    r->elapsed_ms = mono_ms() - start;
    if (known ||
        (outcome != PROVIDER_SUCCEEDED && outcome != PROVIDER_DECLINED))
        return;

    /* A new charge or decline: the provider's record is durable before
     * the caller hears of it, as a real provider's would be. */
    snprintf(r->provider_id, sizeof(r->provider_id), "pch_%016llx",
             (unsigned long long)rand_next(&w->rng));
    if (outcome == PROVIDER_DECLINED)
        snprintf(r->decline_code, sizeof(r->decline_code), "%s",
                 job->token != NULL && strcmp(job->token, "tok_decline") == 0
                     ? "card_declined"
                     : decline_codes[rand_below(&w->rng, DECLINE_CODES)]);
    pthread_mutex_unlock(&p->lock);
    int rc = store_write_sync(p->store, table_put_apply, job);
    if (rc == ERR_OK && table_get(w->conn, job))
        r->elapsed_ms = mono_ms() - start; /* the first result wins */
    /* Unrecorded means uncharged: the caller may try the same key again
     * (503), rather than store a failure the client would have to
     * abandon the attempt for. */
    if (rc != ERR_OK) {
        log_warn("payment", "provider_record_failed error=%s", err_name(rc));
        r->outcome = PROVIDER_UNAVAILABLE;
    }
    pthread_mutex_lock(&p->lock);
}

static void *worker_main(void *arg)
{
    struct provider_worker *w = arg;
    struct provider *p = w->p;

    if (store_conn_open(p->store, &w->conn) != ERR_OK)
        log_error("payment", "provider_connection_failed");
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stopping && p->head == NULL)
            pthread_cond_wait(&p->work, &p->lock);
        if (p->stopping)
            break;
        struct provider_job *job = p->head;
        p->head = job->next;
        if (p->head == NULL)
            p->tail = NULL;
        p->depth--;
        metrics_set(p->queue_depth, p->depth);

        call(w, job);
        pthread_mutex_unlock(&p->lock);
        if (job->result.outcome != PROVIDER_UNAVAILABLE)
            metrics_observe(p->latency,
                            (double)job->result.elapsed_ms / 1000.0);
        job->done(job);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    if (w->conn != NULL)
        store_conn_close(w->conn);
    return NULL;
}

/* --- the pool ----------------------------------------------------------- */

static void setup_metrics(struct provider *p)
{
    struct metrics *m = metrics_process();

    p->latency = metrics_histogram(
        m, "marquee_payment_provider_latency_seconds",
        "Time of each call to the card provider, as the service saw it.",
        metrics_latency_buckets, metrics_latency_nbuckets);
    p->queue_depth =
        metrics_gauge(m, "marquee_payment_provider_queue_depth",
                      "Provider calls waiting for a worker thread.");
}

int provider_start(const struct provider_config *cfg, struct store *store,
                   struct provider **out)
{
    struct provider *p;
    pthread_condattr_t attr;

    if (cfg->workers < 1 || cfg->workers > PROVIDER_WORKERS_MAX ||
        cfg->queue_max < 1 || cfg->queue_max > PROVIDER_QUEUE_MAX ||
        cfg->timeout_ms < 1 ||
        provider_dials_check(&cfg->dials, NULL, NULL) != ERR_OK)
        return ERR_INVALID;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return ERR_NOMEM;
    p->store = store;
    p->timeout_ms = cfg->timeout_ms;
    p->queue_max = cfg->queue_max;
    p->dials = cfg->dials;
    setup_metrics(p);
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->work, &attr);
    pthread_cond_init(&p->stop, &attr);
    pthread_condattr_destroy(&attr);

    for (int i = 0; i < cfg->workers; i++) {
        struct provider_worker *w = &p->workers[i];
        w->p = p;
        rand_seed_secure(&w->rng);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            log_error("payment", "provider_thread_failed index=%d", i);
            provider_stop(p);
            return ERR_SYS;
        }
        p->nworkers++;
    }
    *out = p;
    return ERR_OK;
}

void provider_stop(struct provider *p)
{
    struct provider_job *left;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    left = p->head;
    p->head = p->tail = NULL;
    p->depth = 0;
    pthread_cond_broadcast(&p->work);
    pthread_cond_broadcast(&p->stop);
    pthread_mutex_unlock(&p->lock);

    for (int i = 0; i < p->nworkers; i++)
        pthread_join(p->workers[i].thread, NULL);
    while (left != NULL) {
        struct provider_job *next = left->next;
        memset(&left->result, 0, sizeof(left->result));
        left->result.outcome = PROVIDER_UNAVAILABLE;
        left->done(left);
        left = next;
    }
    metrics_set(p->queue_depth, 0);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->stop);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int provider_submit(struct provider *p, struct provider_job *job)
{
    int rc = ERR_OK;

    job->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->stopping)
        rc = ERR_CLOSED;
    else if (p->depth >= p->queue_max)
        rc = ERR_FULL;
    if (rc == ERR_OK) {
        if (p->tail != NULL)
            p->tail->next = job;
        else
            p->head = job;
        p->tail = job;
        p->depth++;
        metrics_set(p->queue_depth, p->depth);
        pthread_cond_signal(&p->work);
    }
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int provider_queue_depth(struct provider *p)
{
    int depth;

    pthread_mutex_lock(&p->lock);
    depth = p->depth;
    pthread_mutex_unlock(&p->lock);
    return depth;
}
