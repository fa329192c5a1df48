/*
 * mq_sqlite.c - the default messaging backend: a durable queue in one
 * SQLite file, built on the store (src/store), so it shares the store's
 * WAL settings, migrations, statement cache and group-commit writer, and
 * never includes sqlite3.h.
 *
 * Every call is one write job run by the store's writer thread inside a
 * BEGIN IMMEDIATE transaction, so between processes the SQLite write lock
 * orders them and within a process the writer does: a claim's select and
 * update can never interleave with another claim.  docs/internals/mq.md
 * has the tables, the claim query and the argument for correctness.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/rand.h"
#include "mq/mq_int.h"
#include "store/store.h"

/* Old dedup entries removed per publish: keeps the table bounded in
 * steady state without a sweeper and without a long delete. */
#define MQ_SQLITE_PRUNE_MAX 16

/* Message states, as stored. */
enum { MQ_READY = 0, MQ_LEASED = 1, MQ_DEAD = 2 };

struct mq_backend {
    const struct mq_config *cfg; /* owned by mq.c, outlives us */
    struct store *store;
    struct rand rng; /* lease tokens; used only on the writer thread */
};

/* Schema ----------------------------------------------------------------- */

static const struct store_migration mq_sqlite_migrations[] = {
    {1, "queues, bindings, messages",
     "CREATE TABLE mq_queues (name TEXT PRIMARY KEY,"
     " created_ms INTEGER NOT NULL);\n"
     "CREATE TABLE mq_bindings ("
     " queue TEXT NOT NULL REFERENCES mq_queues (name),"
     " pattern TEXT NOT NULL, PRIMARY KEY (queue, pattern));\n"
     "CREATE TABLE mq_published (id TEXT PRIMARY KEY,"
     " published_ms INTEGER NOT NULL);\n"
     "CREATE INDEX mq_published_age ON mq_published (published_ms);\n"
     "CREATE TABLE mq_messages ("
     " tag INTEGER PRIMARY KEY AUTOINCREMENT,"
     " queue TEXT NOT NULL REFERENCES mq_queues (name),"
     " id TEXT NOT NULL, topic TEXT NOT NULL, body TEXT NOT NULL,"
     " state INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
     " due_ms INTEGER NOT NULL, lease INTEGER NOT NULL DEFAULT 0,"
     " error TEXT NOT NULL DEFAULT '', dead_ms INTEGER NOT NULL DEFAULT 0,"
     " UNIQUE (queue, id));\n"
     "CREATE INDEX mq_messages_due ON mq_messages (queue, due_ms, tag)"
     " WHERE state < 2;\n"
     "CREATE INDEX mq_messages_state ON mq_messages (queue, state, tag);"},
};

/* Hex bodies ------------------------------------------------------------- */

/*
 * The store binds text only, so a body is kept as hex: any bytes survive,
 * NULs included, at twice the size.
 */
static char *mq_hex_encode(const void *body, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = body;
    char *hex = malloc(2 * len + 1);

    if (hex == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        hex[2 * i] = digits[p[i] >> 4];
        hex[2 * i + 1] = digits[p[i] & 0xf];
    }
    hex[2 * len] = '\0';
    return hex;
}

static int mq_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes a stored body into m; ERR_CORRUPT if it is not our hex. */
static int mq_hex_decode(struct mq_message *m, const char *hex)
{
    size_t n = strlen(hex);
    unsigned char *out;

    if (n % 2 != 0 || n / 2 > MQ_BODY_MAX)
        return ERR_CORRUPT;
    out = mq_message_body_alloc(m, n / 2);
    if (out == NULL)
        return ERR_NOMEM;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = mq_hex_digit(hex[2 * i]), lo = mq_hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return ERR_CORRUPT;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return ERR_OK;
}

/* Helpers ---------------------------------------------------------------- */

static int64_t mq_now(const struct mq_backend *b)
{
    return clock_wall_ms(b->cfg->clock);
}

/* Steps a statement that returns no rows. */
static int mq_run(struct store_stmt *st)
{
    int rc = store_step(st);

    assert(rc != STORE_ROW);
    return rc;
}

static int mq_queue_exists(struct store_conn *c, const char *queue)
{
    static const char sql[] = "SELECT 1 FROM mq_queues WHERE name = ?";
    struct store_stmt *st;
    int rc = store_prepare(c, sql, &st);

    if (rc == ERR_OK)
        rc = store_bind_text(st, 1, queue);
    if (rc == ERR_OK)
        rc = store_step(st);
    store_reset(st);
    if (rc == STORE_ROW)
        return ERR_OK;
    return rc == ERR_OK ? ERR_NOTFOUND : rc;
}

/* Declare ---------------------------------------------------------------- */

struct mq_declare_job {
    struct mq_backend *b;
    const char *queue;
    const char *const *patterns;
    size_t npatterns;
};

static int mq_declare_apply(struct store_conn *c, void *arg)
{
    static const char queue_sql[] =
        "INSERT OR IGNORE INTO mq_queues (name, created_ms) VALUES (?, ?)";
    static const char bind_sql[] =
        "INSERT OR IGNORE INTO mq_bindings (queue, pattern) VALUES (?, ?)";
    struct mq_declare_job *job = arg;
    struct store_stmt *st;
    int rc = store_prepare(c, queue_sql, &st);

    if (rc == ERR_OK)
        rc = store_bind_text(st, 1, job->queue);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 2, mq_now(job->b));
    if (rc == ERR_OK)
        rc = mq_run(st);

    for (size_t i = 0; rc == ERR_OK && i < job->npatterns; i++) {
        rc = store_prepare(c, bind_sql, &st);
        if (rc == ERR_OK)
            rc = store_bind_text(st, 1, job->queue);
        if (rc == ERR_OK)
            rc = store_bind_text(st, 2, job->patterns[i]);
        if (rc == ERR_OK)
            rc = mq_run(st);
    }
    return rc;
}

static int mq_sqlite_declare(struct mq_backend *b, const char *queue,
                             const char *const *patterns, size_t npatterns)
{
    struct mq_declare_job job = {b, queue, patterns, npatterns};

    return store_write_sync(b->store, mq_declare_apply, &job);
}

/* Publish ---------------------------------------------------------------- */

struct mq_publish_job {
    struct mq_backend *b;
    const char *topic, *id, *hex;
    int stored;
};

/*
 * Records the id; ERR_OK if it is new, ERR_CONFLICT if it was already
 * published within the window.  Also forgets a few ids older than the
 * window.
 */
static int mq_publish_dedup(struct store_conn *c, struct mq_publish_job *job,
                            int64_t now)
{
    static const char insert_sql[] = "INSERT OR IGNORE INTO mq_published"
                                     " (id, published_ms) VALUES (?, ?)";
    static const char prune_sql[] =
        "DELETE FROM mq_published WHERE rowid IN (SELECT rowid FROM"
        " mq_published WHERE published_ms < ? ORDER BY published_ms"
        " LIMIT ?)";
    struct store_stmt *st;
    int rc = store_prepare(c, prune_sql, &st);

    if (rc == ERR_OK)
        rc = store_bind_int(st, 1, now - job->b->cfg->dedup_window_ms);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 2, MQ_SQLITE_PRUNE_MAX);
    if (rc == ERR_OK)
        rc = mq_run(st);
    if (rc == ERR_OK)
        rc = store_prepare(c, insert_sql, &st);
    if (rc == ERR_OK)
        rc = store_bind_text(st, 1, job->id);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 2, now);
    if (rc == ERR_OK)
        rc = mq_run(st);
    if (rc == ERR_OK && store_changes(c) == 0)
        rc = ERR_CONFLICT;
    return rc;
}

static int mq_publish_copy(struct store_conn *c, struct mq_publish_job *job,
                           const char *queue, int64_t now)
{
    static const char sql[] =
        "INSERT OR IGNORE INTO mq_messages (queue, id, topic, body, state,"
        " due_ms) VALUES (?, ?, ?, ?, 0, ?)";
    struct store_stmt *st;
    int rc = store_prepare(c, sql, &st);

    if (rc == ERR_OK)
        rc = store_bind_text(st, 1, queue);
    if (rc == ERR_OK)
        rc = store_bind_text(st, 2, job->id);
    if (rc == ERR_OK)
        rc = store_bind_text(st, 3, job->topic);
    if (rc == ERR_OK)
        rc = store_bind_text(st, 4, job->hex);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 5, now);
    if (rc == ERR_OK)
        rc = mq_run(st);
    if (rc == ERR_OK)
        job->stored += (int)store_changes(c);
    return rc;
}

/*
 * Routes in C: the bindings are few (a handful per queue), and matching
 * '#' in SQL would take a recursive query.  Rows come ordered by queue, so
 * a queue bound by two matching patterns gets one copy.
 */
static int mq_publish_apply(struct store_conn *c, void *arg)
{
    static const char bindings_sql[] =
        "SELECT queue, pattern FROM mq_bindings ORDER BY queue";
    struct mq_publish_job *job = arg;
    char last[MQ_NAME_MAX + 1] = "";
    int64_t now = mq_now(job->b);
    struct store_stmt *st;
    int rc = mq_publish_dedup(c, job, now);

    if (rc == ERR_CONFLICT) {
        job->stored = -1;
        return ERR_OK; /* already stored once: the confirm holds */
    }
    if (rc == ERR_OK)
        rc = store_prepare(c, bindings_sql, &st);
    while (rc == ERR_OK && (rc = store_step(st)) == STORE_ROW) {
        const char *queue = store_col_text(st, 0);
        const char *pattern = store_col_text(st, 1);

        if (strcmp(queue, last) == 0 || !mq_pattern_valid(pattern) ||
            !mq_topic_match(pattern, job->topic)) {
            rc = ERR_OK;
            continue;
        }
        mq_copy_text(last, sizeof(last), queue);
        rc = mq_publish_copy(c, job, last, now);
    }
    return rc;
}

static int mq_sqlite_publish(struct mq_backend *b, const char *topic,
                             const char *id, const void *body, size_t len,
                             int *stored)
{
    struct mq_publish_job job = {.b = b, .topic = topic, .id = id};
    int rc;

    /* Encoded here, so the writer thread that all calls share does less. */
    char *hex = mq_hex_encode(body, len);
    if (hex == NULL) {
        log_error("mq", "publish_failed id=\"%s\" err=\"out of memory\"", id);
        return ERR_NOMEM;
    }
    job.hex = hex;
    rc = store_write_sync(b->store, mq_publish_apply, &job);
    free(hex);
    if (rc == ERR_OK)
        *stored = job.stored;
    return rc;
}

/* Reading messages into a batch ------------------------------------------ */

/*
 * Fills the next message of out from a row of columns tag, id, topic,
 * body, attempts, error, dead_ms, lease.
 */
static int mq_row_read(struct store_stmt *st, const char *queue,
                       struct mq_batch *out)
{
    struct mq_message *m = &out->msgs[out->n];

    assert(out->n < out->cap);
    memset(m, 0, sizeof(*m));
    out->n++; /* counted now, so the batch frees the body if decoding fails */
    m->tag = store_col_int(st, 0);
    mq_copy_text(m->queue, sizeof(m->queue), queue);
    mq_copy_text(m->id, sizeof(m->id), store_col_text(st, 1));
    mq_copy_text(m->topic, sizeof(m->topic), store_col_text(st, 2));
    m->attempt = (int)store_col_int(st, 4);
    mq_copy_text(m->error, sizeof(m->error), store_col_text(st, 5));
    m->dead_ms = store_col_int(st, 6);
    m->lease = store_col_int(st, 7);
    return mq_hex_decode(m, store_col_text(st, 3));
}

static int mq_msg_cmp(const void *a, const void *b)
{
    const struct mq_message *x = a, *y = b;

    return (x->tag > y->tag) - (x->tag < y->tag);
}

/* Consume ---------------------------------------------------------------- */

struct mq_consume_job {
    struct mq_backend *b;
    const char *queue;
    size_t max;
    struct mq_batch *out;
    int dead;
};

/*
 * A leased message whose lease has ended after its last allowed attempt
 * goes to the dead letters rather than out again.  Only the messages the
 * claim would take next are looked at (the same ordered, limited scan of
 * the due index), so the work is bounded by max however long the queue;
 * one further back is dead-lettered when it reaches the front, before it
 * could be delivered.
 */
static int mq_expire_leases(struct store_conn *c, struct mq_consume_job *job,
                            int64_t now)
{
    static const char sql[] =
        "UPDATE mq_messages SET state = 2, lease = 0, dead_ms = ?1,"
        " error = 'lease expired' WHERE tag IN (SELECT tag FROM mq_messages"
        " WHERE queue = ?2 AND state < 2 AND due_ms <= ?1"
        " ORDER BY due_ms, tag LIMIT ?3) AND state = 1 AND attempts >= ?4";
    struct store_stmt *st;
    int rc = store_prepare(c, sql, &st);

    if (rc == ERR_OK)
        rc = store_bind_int(st, 1, now);
    if (rc == ERR_OK)
        rc = store_bind_text(st, 2, job->queue);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 3, (int64_t)job->max);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 4, job->b->cfg->max_attempts);
    if (rc == ERR_OK)
        rc = mq_run(st);
    if (rc == ERR_OK)
        job->dead = (int)store_changes(c);
    return rc;
}

/*
 * The claim: one UPDATE takes the oldest due messages (ready ones, and
 * leased ones whose lease ended) and returns them.  It runs under the
 * database's write lock, so no two claims can take the same row.
 */
static int mq_claim(struct store_conn *c, struct mq_consume_job *job,
                    int64_t now)
{
    static const char sql[] =
        "UPDATE mq_messages SET state = 1, attempts = attempts + 1,"
        " due_ms = ?, lease = ? WHERE tag IN (SELECT tag FROM mq_messages"
        " WHERE queue = ? AND state < 2 AND due_ms <= ?"
        " ORDER BY due_ms, tag LIMIT ?)"
        " RETURNING tag, id, topic, body, attempts, error, dead_ms, lease";
    /* Positive and non-zero: 0 means "no lease". */
    int64_t lease = (int64_t)(rand_next(&job->b->rng) >> 1) | 1;
    struct store_stmt *st;
    int rc = store_prepare(c, sql, &st);

    if (rc == ERR_OK)
        rc = store_bind_int(st, 1, now + job->b->cfg->lease_ms);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 2, lease);
    if (rc == ERR_OK)
        rc = store_bind_text(st, 3, job->queue);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 4, now);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 5, (int64_t)job->max);
    while (rc == ERR_OK && (rc = store_step(st)) == STORE_ROW)
        rc = mq_row_read(st, job->queue, job->out);
    return rc;
}

static int mq_consume_apply(struct store_conn *c, void *arg)
{
    struct mq_consume_job *job = arg;
    int64_t now = mq_now(job->b);
    int rc = mq_queue_exists(c, job->queue);

    if (rc == ERR_OK)
        rc = mq_expire_leases(c, job, now);
    if (rc == ERR_OK)
        rc = mq_claim(c, job, now);
    return rc;
}

static void mq_batch_clear(struct mq_batch *out)
{
    for (size_t i = 0; i < out->n; i++) {
        free(out->msgs[i].body);
        out->msgs[i].body = NULL;
    }
    out->n = 0;
}

static int mq_sqlite_consume(struct mq_backend *b, const char *queue,
                             size_t max, struct mq_batch *out, int *dead)
{
    struct mq_consume_job job = {b, queue, max, out, 0};
    int rc = store_write_sync(b->store, mq_consume_apply, &job);

    /* A failed job was rolled back: what it read was never claimed. */
    if (rc != ERR_OK) {
        mq_batch_clear(out);
        return rc;
    }
    /* RETURNING gives rows in no promised order; hand them out oldest first. */
    qsort(out->msgs, out->n, sizeof(out->msgs[0]), mq_msg_cmp);
    *dead = job.dead;
    if (job.dead > 0)
        log_warn("mq", "dead_lettered queue=%s count=%d reason=lease_expired",
                 queue, job.dead);
    return ERR_OK;
}

/* Ack and nack ----------------------------------------------------------- */

struct mq_settle_job {
    struct mq_backend *b;
    const struct mq_message *m;
    int delay_ms;
    const char *error;
    bool dead;
};

static int mq_ack_apply(struct store_conn *c, void *arg)
{
    static const char sql[] = "DELETE FROM mq_messages"
                              " WHERE tag = ? AND lease = ? AND state = 1";
    struct mq_settle_job *job = arg;
    struct store_stmt *st;
    int rc = store_prepare(c, sql, &st);

    if (rc == ERR_OK)
        rc = store_bind_int(st, 1, job->m->tag);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 2, job->m->lease);
    if (rc == ERR_OK)
        rc = mq_run(st);
    if (rc == ERR_OK && store_changes(c) == 0)
        rc = ERR_CONFLICT;
    return rc;
}

static int mq_sqlite_ack(struct mq_backend *b, const struct mq_message *m)
{
    struct mq_settle_job job = {.b = b, .m = m};

    return store_write_sync(b->store, mq_ack_apply, &job);
}

/* Attempts of a message still held by the lease; ERR_CONFLICT if not. */
static int mq_held_attempts(struct store_conn *c, const struct mq_message *m,
                            int64_t *attempts)
{
    static const char sql[] = "SELECT attempts FROM mq_messages"
                              " WHERE tag = ? AND lease = ? AND state = 1";
    struct store_stmt *st;
    int rc = store_prepare(c, sql, &st);

    if (rc == ERR_OK)
        rc = store_bind_int(st, 1, m->tag);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 2, m->lease);
    if (rc == ERR_OK)
        rc = store_step(st);
    if (rc == STORE_ROW)
        *attempts = store_col_int(st, 0);
    store_reset(st);
    if (rc == STORE_ROW)
        return ERR_OK;
    return rc == ERR_OK ? ERR_CONFLICT : rc;
}

static int mq_nack_apply(struct store_conn *c, void *arg)
{
    /* state = ?1 picks ready (0) or dead (2); a ready one is due later. */
    static const char sql[] =
        "UPDATE mq_messages SET state = ?, due_ms = ?, dead_ms = ?,"
        " lease = 0, error = ? WHERE tag = ?";
    struct mq_settle_job *job = arg;
    int64_t now = mq_now(job->b);
    int64_t attempts = 0;
    struct store_stmt *st;
    int rc = mq_held_attempts(c, job->m, &attempts);

    if (rc != ERR_OK)
        return rc;
    job->dead = attempts >= job->b->cfg->max_attempts;
    rc = store_prepare(c, sql, &st);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 1, job->dead ? MQ_DEAD : MQ_READY);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 2, now + job->delay_ms);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 3, job->dead ? now : 0);
    if (rc == ERR_OK)
        rc = store_bind_text(st, 4, job->error);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 5, job->m->tag);
    if (rc == ERR_OK)
        rc = mq_run(st);
    return rc;
}

static int mq_sqlite_nack(struct mq_backend *b, const struct mq_message *m,
                          int delay_ms, const char *error, bool *dead)
{
    struct mq_settle_job job = {
        .b = b, .m = m, .delay_ms = delay_ms, .error = error};
    int rc = store_write_sync(b->store, mq_nack_apply, &job);

    if (rc == ERR_OK && job.dead)
        log_warn("mq",
                 "dead_lettered queue=%s id=\"%s\" topic=%s attempts=%d "
                 "err=\"%s\"",
                 m->queue, m->id, m->topic, m->attempt, error);
    *dead = job.dead;
    return rc;
}

/* Dead letters ----------------------------------------------------------- */

struct mq_dead_job {
    struct mq_backend *b;
    const char *queue;
    int64_t tag;
    size_t max;
    struct mq_batch *out;
};

static int mq_dead_list_apply(struct store_conn *c, void *arg)
{
    static const char sql[] =
        "SELECT tag, id, topic, body, attempts, error, dead_ms, lease"
        " FROM mq_messages WHERE queue = ? AND state = 2 AND tag > ?"
        " ORDER BY tag LIMIT ?";
    struct mq_dead_job *job = arg;
    struct store_stmt *st;
    int rc = mq_queue_exists(c, job->queue);

    if (rc == ERR_OK)
        rc = store_prepare(c, sql, &st);
    if (rc == ERR_OK)
        rc = store_bind_text(st, 1, job->queue);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 2, job->tag);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 3, (int64_t)job->max);
    while (rc == ERR_OK && (rc = store_step(st)) == STORE_ROW)
        rc = mq_row_read(st, job->queue, job->out);
    return rc;
}

/*
 * Reads go through the writer too: they are rare (operators, metrics),
 * and it spares each calling thread a read connection of its own.
 */
static int mq_sqlite_dead_list(struct mq_backend *b, const char *queue,
                               int64_t after_tag, size_t max,
                               struct mq_batch *out)
{
    struct mq_dead_job job = {b, queue, after_tag, max, out};
    int rc = store_write_sync(b->store, mq_dead_list_apply, &job);

    if (rc != ERR_OK)
        mq_batch_clear(out);
    return rc;
}

static int mq_requeue_apply(struct store_conn *c, void *arg)
{
    static const char sql[] =
        "UPDATE mq_messages SET state = 0, attempts = 0, due_ms = ?,"
        " dead_ms = 0 WHERE queue = ? AND tag = ? AND state = 2";
    struct mq_dead_job *job = arg;
    struct store_stmt *st;
    int rc = store_prepare(c, sql, &st);

    if (rc == ERR_OK)
        rc = store_bind_int(st, 1, mq_now(job->b));
    if (rc == ERR_OK)
        rc = store_bind_text(st, 2, job->queue);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 3, job->tag);
    if (rc == ERR_OK)
        rc = mq_run(st);
    if (rc == ERR_OK && store_changes(c) == 0)
        rc = ERR_NOTFOUND;
    return rc;
}

static int mq_sqlite_requeue(struct mq_backend *b, const char *queue,
                             int64_t tag)
{
    struct mq_dead_job job = {.b = b, .queue = queue, .tag = tag};
    int rc = store_write_sync(b->store, mq_requeue_apply, &job);

    if (rc == ERR_OK)
        log_info("mq", "requeued queue=%s tag=%lld", queue, (long long)tag);
    return rc;
}

/* Depth ------------------------------------------------------------------ */

struct mq_depth_job {
    const char *queue;
    struct mq_depth *out;
};

static int mq_depth_apply(struct store_conn *c, void *arg)
{
    static const char sql[] = "SELECT state, COUNT(*) FROM mq_messages"
                              " WHERE queue = ? GROUP BY state";
    struct mq_depth_job *job = arg;
    struct store_stmt *st;
    int rc = mq_queue_exists(c, job->queue);

    memset(job->out, 0, sizeof(*job->out));
    if (rc == ERR_OK)
        rc = store_prepare(c, sql, &st);
    if (rc == ERR_OK)
        rc = store_bind_text(st, 1, job->queue);
    while (rc == ERR_OK && (rc = store_step(st)) == STORE_ROW) {
        int64_t state = store_col_int(st, 0), n = store_col_int(st, 1);

        if (state == MQ_READY)
            job->out->ready = n;
        else if (state == MQ_LEASED)
            job->out->leased = n;
        else
            job->out->dead = n;
        rc = ERR_OK;
    }
    return rc;
}

static int mq_sqlite_depth(struct mq_backend *b, const char *queue,
                           struct mq_depth *out)
{
    struct mq_depth_job job = {queue, out};

    return store_write_sync(b->store, mq_depth_apply, &job);
}

/* Open and close --------------------------------------------------------- */

static int mq_sqlite_open(const struct mq_config *cfg, struct mq_backend **out)
{
    struct store_config sc = {
        .backend = "sqlite",
        .path = cfg->path,
        .busy_timeout_ms = cfg->busy_timeout_ms,
        .synchronous = cfg->synchronous,
    };
    struct mq_backend *b = calloc(1, sizeof(*b));
    int rc;

    if (b == NULL) {
        log_error("mq", "open_failed err=\"out of memory\"");
        return ERR_NOMEM;
    }
    b->cfg = cfg;
    rc = rand_seed_secure(&b->rng);
    if (rc != ERR_OK)
        goto out_free_backend;
    rc = store_open(&sc, mq_sqlite_migrations,
                    sizeof(mq_sqlite_migrations) /
                        sizeof(mq_sqlite_migrations[0]),
                    &b->store);
    if (rc != ERR_OK)
        goto out_free_backend;
    *out = b;
    return ERR_OK;

out_free_backend:
    free(b);
    return rc;
}

static void mq_sqlite_close(struct mq_backend *b)
{
    store_close(b->store);
    free(b);
}

const struct mq_ops mq_sqlite_ops = {
    .name = "sqlite",
    .open = mq_sqlite_open,
    .close = mq_sqlite_close,
    .declare = mq_sqlite_declare,
    .publish = mq_sqlite_publish,
    .consume = mq_sqlite_consume,
    .ack = mq_sqlite_ack,
    .nack = mq_sqlite_nack,
    .dead_list = mq_sqlite_dead_list,
    .requeue = mq_sqlite_requeue,
    .depth = mq_sqlite_depth,
};
