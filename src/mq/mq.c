/*
 * mq.c - the generic half of messaging: configuration, argument checks,
 * topic patterns, metrics, and dispatch to the backend's ops table.
 *
 * docs/internals/mq.md describes the SQLite backend and its guarantees.
 */
#include "mq/mq.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "metrics/metrics.h"
#include "mq/mq_int.h"

/* Words in a topic or pattern: bounds the matcher's work. */
#define MQ_WORDS_MAX 32

/* The series of one queue, looked up once and kept. */
struct mq_queue_metrics {
    char name[MQ_NAME_MAX + 1];
    struct metrics_series *delivered, *redelivered, *acked, *nacked;
    struct metrics_series *dead_lettered, *lease_lost;
    struct metrics_series *ready, *leased, *dead;
};

struct mq {
    const struct mq_ops *ops;
    struct mq_backend *backend;
    struct mq_config cfg; /* strings point to the owned copies below */
    char *path;
    char *url;
    char *synchronous;

    struct metrics_series *published, *duplicates;
    struct metrics_family *counters[6], *depth;
    pthread_mutex_t lock; /* guards queues and nqueues */
    struct mq_queue_metrics queues[MQ_QUEUES_MAX];
    size_t nqueues;
    struct mq_queue_metrics other; /* past MQ_QUEUES_MAX queues */
};

static const struct mq_ops *const mq_backends[] = {&mq_sqlite_ops,
                                                   &mq_rabbitmq_ops};

/* Names ------------------------------------------------------------------ */

static bool mq_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/*
 * Checks words joined by '.': each non-empty, of word characters, or (if
 * wildcards) exactly "*" or "#".
 */
static bool mq_words_valid(const char *s, bool wildcards)
{
    size_t len = strnlen(s, MQ_TOPIC_MAX + 1);
    size_t words = 1;

    if (len == 0 || len > MQ_TOPIC_MAX)
        return false;
    for (const char *w = s;;) {
        const char *end = strchr(w, '.');
        size_t n = end != NULL ? (size_t)(end - w) : strlen(w);

        if (n == 0)
            return false;
        if (wildcards && n == 1 && (w[0] == '*' || w[0] == '#')) {
            /* a wildcard is a whole word */
        } else {
            for (size_t i = 0; i < n; i++) {
                if (!mq_word_char(w[i]))
                    return false;
            }
        }
        if (end == NULL)
            break;
        w = end + 1;
        words++;
    }
    return words <= MQ_WORDS_MAX;
}

bool mq_topic_valid(const char *topic)
{
    return topic != NULL && mq_words_valid(topic, false);
}

bool mq_pattern_valid(const char *pattern)
{
    return pattern != NULL && mq_words_valid(pattern, true);
}

bool mq_queue_name_valid(const char *name)
{
    size_t len;

    if (name == NULL)
        return false;
    len = strnlen(name, MQ_NAME_MAX + 1);
    if (len == 0 || len > MQ_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!mq_word_char(name[i]) && name[i] != '.')
            return false;
    }
    return true;
}

static bool mq_id_valid(const char *id)
{
    size_t len;

    if (id == NULL)
        return false;
    len = strnlen(id, MQ_ID_MAX + 1);
    if (len == 0 || len > MQ_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (id[i] <= ' ' || id[i] > '~')
            return false;
    }
    return true;
}

/* Splits a valid topic or pattern into its words (not NUL-terminated). */
struct mq_words {
    size_t n;
    const char *word[MQ_WORDS_MAX];
    size_t len[MQ_WORDS_MAX];
};

static void mq_split(const char *s, struct mq_words *out)
{
    out->n = 0;
    for (const char *w = s;;) {
        const char *end = strchr(w, '.');

        assert(out->n < MQ_WORDS_MAX);
        out->word[out->n] = w;
        out->len[out->n] = end != NULL ? (size_t)(end - w) : strlen(w);
        out->n++;
        if (end == NULL)
            return;
        w = end + 1;
    }
}

static bool mq_word_is(const struct mq_words *w, size_t i, char c)
{
    return w->len[i] == 1 && w->word[i][0] == c;
}

/*
 * Dynamic programming over (pattern words, topic words): at most
 * MQ_WORDS_MAX squared steps, whatever the pattern, so a pattern of many
 * '#' cannot make matching exponential.  can[j] says whether the pattern
 * words seen so far match the first j topic words.
 */
bool mq_topic_match(const char *pattern, const char *topic)
{
    struct mq_words p, t;
    bool can[MQ_WORDS_MAX + 1], next[MQ_WORDS_MAX + 1];

    assert(mq_pattern_valid(pattern) && mq_topic_valid(topic));
    mq_split(pattern, &p);
    mq_split(topic, &t);

    memset(can, 0, sizeof(can));
    can[0] = true;
    for (size_t i = 0; i < p.n; i++) {
        memset(next, 0, sizeof(next));
        if (mq_word_is(&p, i, '#')) {
            /* '#' eats zero or more words: reachable from any j' <= j. */
            bool any = false;
            for (size_t j = 0; j <= t.n; j++) {
                any = any || can[j];
                next[j] = any;
            }
        } else {
            bool star = mq_word_is(&p, i, '*');
            for (size_t j = 0; j < t.n; j++) {
                bool same = t.len[j] == p.len[i] &&
                            memcmp(t.word[j], p.word[i], p.len[i]) == 0;
                next[j + 1] = can[j] && (star || same);
            }
        }
        memcpy(can, next, sizeof(can));
    }
    return can[t.n];
}

/* Batches and text ------------------------------------------------------- */

void mq_copy_text(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src, cap - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

unsigned char *mq_message_body_alloc(struct mq_message *m, size_t len)
{
    assert(len <= MQ_BODY_MAX);
    m->body = calloc(1, len + 1);
    m->len = m->body != NULL ? len : 0;
    return m->body;
}

static struct mq_batch *mq_batch_new(size_t cap)
{
    struct mq_batch *b =
        calloc(1, sizeof(*b) + cap * sizeof(struct mq_message));

    if (b == NULL) {
        log_error("mq", "batch_alloc_failed cap=%zu err=\"out of memory\"",
                  cap);
        return NULL;
    }
    b->cap = cap;
    return b;
}

void mq_batch_free(struct mq_batch *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->msgs[i].body);
    free(b);
}

/* Metrics ---------------------------------------------------------------- */

enum mq_counter {
    MQ_C_DELIVERED,
    MQ_C_REDELIVERED,
    MQ_C_ACKED,
    MQ_C_NACKED,
    MQ_C_DEAD_LETTERED,
    MQ_C_LEASE_LOST,
};

static void mq_metrics_setup(struct mq *q)
{
    static const char *const queue_label[] = {"queue"};
    static const char *const depth_labels[] = {"queue", "state"};
    static const struct {
        const char *name, *help;
    } counters[] = {
        {"marquee_mq_delivered_total",
         "Messages delivered to a consumer for the first time."},
        {"marquee_mq_redelivered_total",
         "Messages delivered again after a nack or an ended lease."},
        {"marquee_mq_acked_total", "Messages acked by a consumer."},
        {"marquee_mq_nacked_total", "Messages nacked by a consumer."},
        {"marquee_mq_dead_lettered_total",
         "Messages moved to the dead letters after their last attempt."},
        {"marquee_mq_lease_lost_total",
         "Acks and nacks refused because the lease had been lost."},
    };
    struct metrics *m = metrics_process();

    q->published = metrics_counter(
        m, "marquee_mq_published_total",
        "Messages published with a new id (stored in every bound queue).");
    q->duplicates =
        metrics_counter(m, "marquee_mq_publish_duplicates_total",
                        "Publishes of an id already stored, not stored again.");
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        q->counters[i] =
            metrics_family(m, METRICS_COUNTER, counters[i].name,
                           counters[i].help, 1, queue_label, NULL, 0);
    }
    q->depth = metrics_family(
        m, METRICS_GAUGE, "marquee_mq_messages",
        "Messages of a queue by state (ready, leased, dead), as last counted.",
        2, depth_labels, NULL, 0);
}

static void mq_queue_metrics_fill(struct mq *q, struct mq_queue_metrics *qm,
                                  const char *name)
{
    const char *v[] = {name, NULL};

    mq_copy_text(qm->name, sizeof(qm->name), name);
    qm->delivered = metrics_series(q->counters[MQ_C_DELIVERED], v);
    qm->redelivered = metrics_series(q->counters[MQ_C_REDELIVERED], v);
    qm->acked = metrics_series(q->counters[MQ_C_ACKED], v);
    qm->nacked = metrics_series(q->counters[MQ_C_NACKED], v);
    qm->dead_lettered = metrics_series(q->counters[MQ_C_DEAD_LETTERED], v);
    qm->lease_lost = metrics_series(q->counters[MQ_C_LEASE_LOST], v);
    v[1] = "ready";
    qm->ready = metrics_series(q->depth, v);
    v[1] = "leased";
    qm->leased = metrics_series(q->depth, v);
    v[1] = "dead";
    qm->dead = metrics_series(q->depth, v);
}

/*
 * The series of a queue.  Entries are never removed or moved, so the
 * pointer stays valid after the lock is released.
 */
static struct mq_queue_metrics *mq_queue_metrics(struct mq *q, const char *name)
{
    struct mq_queue_metrics *qm = &q->other;

    pthread_mutex_lock(&q->lock);
    for (size_t i = 0; i < q->nqueues; i++) {
        if (strcmp(q->queues[i].name, name) == 0) {
            qm = &q->queues[i];
            goto out_unlock;
        }
    }
    if (q->nqueues < MQ_QUEUES_MAX) {
        qm = &q->queues[q->nqueues];
        mq_queue_metrics_fill(q, qm, name);
        q->nqueues++;
    }
out_unlock:
    pthread_mutex_unlock(&q->lock);
    return qm;
}

/* Open and close --------------------------------------------------------- */

static const struct mq_ops *mq_backend_find(const char *name)
{
    size_t n = sizeof(mq_backends) / sizeof(mq_backends[0]);

    if (name == NULL)
        return mq_backends[0];
    for (size_t i = 0; i < n; i++) {
        if (strcmp(mq_backends[i]->name, name) == 0)
            return mq_backends[i];
    }
    log_error("mq",
              "bad_config key=mq.backend value=\"%s\" expected=sqlite|rabbitmq",
              name);
    return NULL;
}

static bool mq_config_int_ok(const char *key, int64_t v, int64_t lo, int64_t hi)
{
    if (v >= lo && v <= hi)
        return true;
    log_error("mq", "bad_config key=%s value=%lld expected=%lld..%lld", key,
              (long long)v, (long long)lo, (long long)hi);
    return false;
}

/* Copies cfg with its defaults filled in and owned copies of its strings. */
static int mq_config_copy(struct mq *q, const struct mq_config *cfg)
{
    if (!mq_config_int_ok("mq.max_attempts", cfg->max_attempts, 1,
                          MQ_ATTEMPTS_MAX) ||
        !mq_config_int_ok("mq.lease_ms", cfg->lease_ms, 1, MQ_LEASE_MS_MAX) ||
        !mq_config_int_ok("mq.prefetch", cfg->prefetch, 1, MQ_PREFETCH_MAX) ||
        !mq_config_int_ok("mq.busy_timeout_ms", cfg->busy_timeout_ms, 0,
                          600000) ||
        !mq_config_int_ok("mq.dedup_window_ms", cfg->dedup_window_ms, 0,
                          INT64_MAX / 2))
        return ERR_CONFIG;

    q->cfg = *cfg;
    q->cfg.backend = q->ops->name;
    if (q->cfg.clock == NULL)
        q->cfg.clock = clock_system();
    if (q->cfg.dedup_window_ms == 0)
        q->cfg.dedup_window_ms = MQ_DEDUP_WINDOW_MS_DEFAULT;

    /* A missing path becomes "", which the backend refuses by name. */
    q->path = strdup(cfg->path != NULL ? cfg->path : "");
    if (cfg->synchronous != NULL)
        q->synchronous = strdup(cfg->synchronous);
    if (cfg->url != NULL)
        q->url = strdup(cfg->url);
    if (q->path == NULL ||
        (cfg->synchronous != NULL && q->synchronous == NULL) ||
        (cfg->url != NULL && q->url == NULL))
        return ERR_NOMEM;
    q->cfg.path = q->path;
    q->cfg.url = q->url;
    q->cfg.synchronous = q->synchronous;
    return ERR_OK;
}

static void mq_free(struct mq *q)
{
    pthread_mutex_destroy(&q->lock);
    free(q->synchronous);
    free(q->url);
    free(q->path);
    free(q);
}

int mq_open(const struct mq_config *cfg, struct mq **out)
{
    const struct mq_ops *ops = mq_backend_find(cfg->backend);
    struct mq *q;
    int rc;

    if (ops == NULL)
        return ERR_CONFIG;
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        log_error("mq", "open_failed err=\"out of memory\"");
        return ERR_NOMEM;
    }
    q->ops = ops;
    pthread_mutex_init(&q->lock, NULL); /* cannot fail with defaults */

    rc = mq_config_copy(q, cfg);
    if (rc != ERR_OK)
        goto out_free_mq;
    mq_metrics_setup(q);
    mq_queue_metrics_fill(q, &q->other, "other");

    rc = ops->open(&q->cfg, &q->backend);
    if (rc != ERR_OK)
        goto out_free_mq;
    /* The RabbitMQ backend logs its broker itself (without the password
     * of mq.url); mq.path means nothing to it. */
    log_info("mq",
             "open backend=%s path=\"%s\" max_attempts=%d lease_ms=%d "
             "prefetch=%d",
             ops->name, ops == &mq_sqlite_ops ? q->path : "-",
             q->cfg.max_attempts, q->cfg.lease_ms, q->cfg.prefetch);
    *out = q;
    return ERR_OK;

out_free_mq:
    mq_free(q);
    return rc;
}

void mq_close(struct mq *q)
{
    if (q == NULL)
        return;
    q->ops->close(q->backend);
    mq_free(q);
}

bool mq_configured(const struct config *cfg)
{
    return config_given(cfg, "mq.path") || config_given(cfg, "mq.backend");
}

void mq_config_from(struct mq_config *out, const struct config *cfg)
{
    memset(out, 0, sizeof(*out));
    out->backend = config_str(cfg, "mq.backend");
    out->path = config_str(cfg, "mq.path");
    out->url = config_str(cfg, "mq.url");
    out->max_attempts = (int)config_int(cfg, "mq.max_attempts");
    out->lease_ms = (int)config_int(cfg, "mq.lease_ms");
    out->prefetch = (int)config_int(cfg, "mq.prefetch");
    out->busy_timeout_ms = 5000;
    out->synchronous = "full";
}

/* Calls ------------------------------------------------------------------ */

int mq_declare(struct mq *q, const char *queue, const char *const *patterns,
               size_t npatterns)
{
    if (!mq_queue_name_valid(queue) || npatterns == 0 ||
        npatterns > MQ_BINDINGS_MAX)
        return ERR_INVALID;
    for (size_t i = 0; i < npatterns; i++) {
        if (!mq_pattern_valid(patterns[i]))
            return ERR_INVALID;
    }
    return q->ops->declare(q->backend, queue, patterns, npatterns);
}

int mq_publish(struct mq *q, const char *topic, const char *id,
               const void *body, size_t len, int *stored)
{
    int copies = 0;
    int rc;

    if (len > MQ_BODY_MAX)
        return ERR_TOOBIG;
    if (!mq_topic_valid(topic) || !mq_id_valid(id) || (body == NULL && len > 0))
        return ERR_INVALID;

    rc = q->ops->publish(q->backend, topic, id, body, len, &copies);
    if (rc != ERR_OK)
        return rc;
    metrics_inc(copies < 0 ? q->duplicates : q->published);
    if (stored != NULL)
        *stored = copies < 0 ? 0 : copies;
    return ERR_OK;
}

int mq_consume(struct mq *q, const char *queue, size_t max,
               struct mq_batch **out)
{
    struct mq_queue_metrics *qm;
    struct mq_batch *b;
    int dead = 0;
    int rc;

    if (!mq_queue_name_valid(queue))
        return ERR_INVALID;
    if (max == 0 || max > (size_t)q->cfg.prefetch)
        max = (size_t)q->cfg.prefetch;
    b = mq_batch_new(max);
    if (b == NULL)
        return ERR_NOMEM;

    rc = q->ops->consume(q->backend, queue, max, b, &dead);
    if (rc != ERR_OK) {
        mq_batch_free(b);
        return rc;
    }
    assert(b->n <= max);
    qm = mq_queue_metrics(q, queue);
    metrics_add(qm->dead_lettered, (uint64_t)dead);
    for (size_t i = 0; i < b->n; i++)
        metrics_inc(b->msgs[i].attempt > 1 ? qm->redelivered : qm->delivered);
    *out = b;
    return ERR_OK;
}

int mq_ack(struct mq *q, const struct mq_message *m)
{
    struct mq_queue_metrics *qm;
    int rc;

    if (!mq_queue_name_valid(m->queue))
        return ERR_INVALID;
    qm = mq_queue_metrics(q, m->queue);
    rc = q->ops->ack(q->backend, m);
    if (rc == ERR_OK)
        metrics_inc(qm->acked);
    else if (rc == ERR_CONFLICT)
        metrics_inc(qm->lease_lost);
    return rc;
}

int mq_nack(struct mq *q, const struct mq_message *m, int delay_ms,
            const char *error, bool *dead)
{
    char text[MQ_ERROR_MAX + 1];
    struct mq_queue_metrics *qm;
    bool went_dead = false;
    int rc;

    if (delay_ms < 0 || delay_ms > MQ_LEASE_MS_MAX ||
        !mq_queue_name_valid(m->queue))
        return ERR_INVALID;
    mq_copy_text(text, sizeof(text), error != NULL ? error : "");

    qm = mq_queue_metrics(q, m->queue);
    rc = q->ops->nack(q->backend, m, delay_ms, text, &went_dead);
    if (rc == ERR_CONFLICT)
        metrics_inc(qm->lease_lost);
    if (rc != ERR_OK)
        return rc;
    metrics_inc(qm->nacked);
    if (went_dead)
        metrics_inc(qm->dead_lettered);
    if (dead != NULL)
        *dead = went_dead;
    return ERR_OK;
}

int mq_dead_list(struct mq *q, const char *queue, int64_t after_tag, size_t max,
                 struct mq_batch **out)
{
    struct mq_batch *b;
    int rc;

    if (!mq_queue_name_valid(queue) || max == 0 || max > MQ_PREFETCH_MAX)
        return ERR_INVALID;
    b = mq_batch_new(max);
    if (b == NULL)
        return ERR_NOMEM;
    rc = q->ops->dead_list(q->backend, queue, after_tag, max, b);
    if (rc != ERR_OK) {
        mq_batch_free(b);
        return rc;
    }
    *out = b;
    return ERR_OK;
}

int mq_requeue(struct mq *q, const char *queue, int64_t tag)
{
    if (!mq_queue_name_valid(queue))
        return ERR_INVALID;
    return q->ops->requeue(q->backend, queue, tag);
}

int mq_depth(struct mq *q, const char *queue, struct mq_depth *out)
{
    struct mq_queue_metrics *qm;
    int rc;

    if (!mq_queue_name_valid(queue))
        return ERR_INVALID;
    rc = q->ops->depth(q->backend, queue, out);
    if (rc != ERR_OK)
        return rc;
    qm = mq_queue_metrics(q, queue);
    metrics_set(qm->ready, (double)out->ready);
    metrics_set(qm->leased, (double)out->leased);
    metrics_set(qm->dead, (double)out->dead);
    return ERR_OK;
}
