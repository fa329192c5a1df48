/*
 * store.c - the generic half of the store: opening and migrating, the
 * per-connection statement cache, dispatch to the backend, and the writer
 * thread that applies queued jobs in group commits.
 *
 * docs/internals/store.md explains the writer, its batches and the
 * durability choices.
 */
#include "store/store.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "metrics/metrics.h"
#include "store/store_int.h"

/*
 * Tries of BEGIN IMMEDIATE before a batch fails with ERR_BUSY.  Each try
 * already waits up to busy_timeout_ms for the other process's lock.
 */
#define STORE_BEGIN_TRIES_MAX 5

struct store_counters {
    _Atomic uint64_t commits;
    _Atomic uint64_t writes;
    _Atomic uint64_t write_errors;
    _Atomic uint64_t busy_retries;
    _Atomic uint64_t batch_max_seen;
    _Atomic uint64_t queue_full;
};

/*
 * The process-wide series every store reports into (GET /metrics).  A
 * process has one database per service, so they are not labelled by path.
 */
struct store_metrics {
    struct metrics_series *commits, *writes, *commit_failures;
    struct metrics_series *busy_retries, *queue_full, *queue_depth;
    struct metrics_series *batch_size, *commit_seconds;
};

static const double store_batch_buckets[] = {1,  2,   4,   8,   16,  32,
                                             64, 128, 256, 512, 1024};

struct store {
    const struct store_ops *ops;
    struct store_config cfg; /* path and synchronous point to owned copies */
    char *path;
    char *synchronous;
    struct store_conn *writer;
    int schema_version;
    int *batch_rc; /* apply() results of the batch in flight; writer only */
    _Atomic bool ready;
    struct store_counters stats;
    struct store_metrics metrics;

    pthread_mutex_t lock; /* guards the queue and `closing` */
    pthread_cond_t wake;  /* a job arrived in an empty queue, or closing */
    struct store_write *head, *tail;
    size_t queued;
    bool closing;
    pthread_t writer_thread;
};

static const struct store_ops *const store_backends[] = {&store_sqlite_ops};

static void counter_add(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

static uint64_t counter_get(const _Atomic uint64_t *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

/* Statement cache ------------------------------------------------------- */

/*
 * A linear scan: 64 pointer compares cost less than the SQLite call that
 * follows, and keep eviction trivial.
 */
static struct store_cache_entry *cache_find(struct store_conn *c,
                                            const char *sql)
{
    for (size_t i = 0; i < c->ncached; i++) {
        if (c->cache[i].sql == sql)
            return &c->cache[i];
    }
    return NULL;
}

/* A free entry, or the least recently handed out one, finalized. */
static struct store_cache_entry *cache_slot(struct store_conn *c)
{
    if (c->ncached < STORE_STMT_CACHE_MAX)
        return &c->cache[c->ncached++];

    struct store_cache_entry *lru = &c->cache[0];
    for (size_t i = 1; i < c->ncached; i++) {
        if (c->cache[i].used < lru->used)
            lru = &c->cache[i];
    }
    c->ops->finalize(lru->st);
    return lru;
}

/*
 * Resets every statement handed out since the last quiet point, so a
 * query left half-read holds no snapshot or lock past the job or read
 * transaction that ran it.
 */
static void conn_reset_active(struct store_conn *c)
{
    for (size_t i = 0; i < c->ncached; i++) {
        if (c->cache[i].used > c->quiet_tick)
            c->ops->reset(c->cache[i].st);
    }
    c->quiet_tick = c->tick;
}

int store_prepare(struct store_conn *c, const char *sql,
                  struct store_stmt **out)
{
    struct store_cache_entry *e = cache_find(c, sql);
    struct store_stmt *st;
    int rc;

    if (e != NULL) {
        rc = c->ops->reset(e->st);
        if (rc != ERR_OK)
            return rc;
        e->used = ++c->tick;
        *out = e->st;
        return ERR_OK;
    }

    rc = c->ops->prepare(c, sql, &st);
    if (rc != ERR_OK)
        return rc;
    assert(st->ops == c->ops);
    e = cache_slot(c);
    *e = (struct store_cache_entry){.sql = sql, .st = st, .used = ++c->tick};
    *out = st;
    return ERR_OK;
}

/* Dispatch --------------------------------------------------------------- */

int store_reset(struct store_stmt *st)
{
    return st->ops->reset(st);
}

int store_bind_int(struct store_stmt *st, int idx, int64_t v)
{
    return st->ops->bind_int(st, idx, v);
}

int store_bind_text(struct store_stmt *st, int idx, const char *v)
{
    return st->ops->bind_text(st, idx, v);
}

int store_bind_null(struct store_stmt *st, int idx)
{
    return st->ops->bind_null(st, idx);
}

int store_step(struct store_stmt *st)
{
    return st->ops->step(st);
}

int64_t store_col_int(struct store_stmt *st, int col)
{
    return st->ops->col_int(st, col);
}

const char *store_col_text(struct store_stmt *st, int col)
{
    return st->ops->col_text(st, col);
}

bool store_col_is_null(struct store_stmt *st, int col)
{
    return st->ops->col_is_null(st, col);
}

int64_t store_changes(struct store_conn *c)
{
    return c->ops->changes(c);
}

int64_t store_last_insert_id(struct store_conn *c)
{
    return c->ops->last_insert_id(c);
}

int store_exec(struct store_conn *c, const char *sql)
{
    return c->ops->exec(c, sql);
}

/* Runs one static statement that returns no rows, through the cache. */
static int conn_run(struct store_conn *c, const char *sql)
{
    struct store_stmt *st;
    int rc = store_prepare(c, sql, &st);

    if (rc == ERR_OK)
        rc = store_step(st);
    assert(rc != STORE_ROW);
    return rc;
}

int store_begin_read(struct store_conn *c)
{
    return conn_run(c, "BEGIN");
}

int store_end_read(struct store_conn *c)
{
    /* A COMMIT leaves the snapshot held while a statement is still open. */
    conn_reset_active(c);
    return conn_run(c, "COMMIT");
}

/* Connections ------------------------------------------------------------ */

int store_conn_open(struct store *s, struct store_conn **out)
{
    int rc = s->ops->open(&s->cfg, false, out);

    if (rc == ERR_OK)
        assert((*out)->ops == s->ops);
    return rc;
}

void store_conn_close(struct store_conn *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->ncached; i++)
        c->ops->finalize(c->cache[i].st);
    c->ncached = 0;
    c->ops->close(c);
}

/* Transactions on the writer -------------------------------------------- */

static int store_begin_write(struct store *s)
{
    int rc = ERR_BUSY;

    for (int tries = 0; tries < STORE_BEGIN_TRIES_MAX; tries++) {
        if (tries > 0) {
            counter_add(&s->stats.busy_retries, 1);
            metrics_inc(s->metrics.busy_retries);
        }
        rc = conn_run(s->writer, "BEGIN IMMEDIATE");
        if (rc != ERR_BUSY)
            break;
    }
    return rc;
}

/* Some failures (I/O, disk full) end the transaction on their own. */
static void store_rollback(struct store *s)
{
    conn_reset_active(s->writer);
    if (s->ops->in_transaction(s->writer))
        conn_run(s->writer, "ROLLBACK");
}

/* Migrations ------------------------------------------------------------- */

static int store_read_version(struct store_conn *c, int *out)
{
    static const char sql[] =
        "SELECT coalesce(max(version), 0) FROM schema_migrations";
    struct store_stmt *st;
    int rc = store_prepare(c, sql, &st);

    if (rc == ERR_OK)
        rc = store_step(st);
    if (rc == STORE_ROW) {
        *out = (int)store_col_int(st, 0);
        rc = ERR_OK;
    } else if (rc == ERR_OK) {
        rc = ERR_DB; /* an aggregate always returns a row */
    }
    conn_reset_active(c);
    return rc;
}

static int store_record_migration(struct store_conn *c,
                                  const struct store_migration *m)
{
    static const char sql[] = "INSERT INTO schema_migrations "
                              "(version, name, applied_at) VALUES (?, ?, ?)";
    char now[CLOCK_RFC3339_LEN];
    struct store_stmt *st;
    int rc = store_prepare(c, sql, &st);

    if (rc != ERR_OK)
        return rc;
    clock_format_rfc3339(clock_wall_ms(clock_system()), now);
    rc = store_bind_int(st, 1, m->version);
    if (rc == ERR_OK)
        rc = store_bind_text(st, 2, m->name);
    if (rc == ERR_OK)
        rc = store_bind_text(st, 3, now);
    if (rc == ERR_OK)
        rc = store_step(st);
    return rc;
}

/*
 * Applies m with its schema_migrations row in one transaction.  The
 * version is read again under the write lock: another process opening the
 * same file may have applied m meanwhile.
 */
static int store_migrate_one(struct store *s, const struct store_migration *m)
{
    struct store_conn *c = s->writer;
    int current = 0;
    int rc = store_begin_write(s);

    if (rc == ERR_OK)
        rc = store_read_version(c, &current);
    if (rc == ERR_OK && current < m->version) {
        rc = store_exec(c, m->sql);
        if (rc == ERR_OK)
            rc = store_record_migration(c, m);
    }
    if (rc == ERR_OK)
        rc = conn_run(c, "COMMIT");
    if (rc != ERR_OK) {
        store_rollback(s);
        log_error("store",
                  "migration_failed path=\"%s\" version=%d name=\"%s\" err=%s",
                  s->path, m->version, m->name, err_name(rc));
        return rc;
    }

    if (current < m->version)
        log_info("store",
                 "migration_applied path=\"%s\" version=%d name=\"%s\"",
                 s->path, m->version, m->name);
    return ERR_OK;
}

static int store_migrate(struct store *s, const struct store_migration *m,
                         size_t n)
{
    static const char create_sql[] =
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at TEXT NOT NULL)";
    int current = 0;

    /* Versions are written by hand in one table; a gap is a bug. */
    for (size_t i = 0; i < n; i++) {
        assert(m[i].version == (int)i + 1);
        assert(m[i].name != NULL && m[i].sql != NULL);
    }

    int rc = store_exec(s->writer, create_sql);
    if (rc == ERR_OK)
        rc = store_read_version(s->writer, &current);
    if (rc != ERR_OK)
        return rc;
    if (current > (int)n) {
        log_error("store",
                  "database_newer_than_binary path=\"%s\" version=%d known=%zu",
                  s->path, current, n);
        return ERR_CORRUPT;
    }

    for (size_t i = (size_t)current; i < n; i++) {
        rc = store_migrate_one(s, &m[i]);
        if (rc != ERR_OK)
            return rc;
    }
    s->schema_version = (int)n;
    return ERR_OK;
}

/* The writer ------------------------------------------------------------- */

/*
 * Runs one job inside its savepoint and stores apply()'s result in *out.
 * Returns ERR_OK, or the error of a savepoint statement: the transaction
 * is then in an unknown state and the whole batch must roll back.
 */
static int store_apply_job(struct store *s, struct store_write *w, int *out)
{
    struct store_conn *c = s->writer;
    int rc = conn_run(c, "SAVEPOINT job");

    if (rc != ERR_OK)
        return rc;

    int applied = w->apply(c, w->arg);
    assert(applied <= 0); /* an error code, never STORE_ROW */
    conn_reset_active(c);
    counter_add(&s->stats.writes, 1);
    *out = applied;

    if (applied != ERR_OK) {
        counter_add(&s->stats.write_errors, 1);
        rc = conn_run(c, "ROLLBACK TO job");
        if (rc != ERR_OK)
            return rc;
    }
    return conn_run(c, "RELEASE job");
}

static int store_apply_batch(struct store *s, struct store_write *batch)
{
    size_t i = 0;

    for (struct store_write *w = batch; w != NULL; w = w->next) {
        int rc = store_apply_job(s, w, &s->batch_rc[i++]);
        if (rc != ERR_OK)
            return rc;
    }
    return ERR_OK;
}

/*
 * One group commit.  rc is the result every job gets when the batch as a
 * whole fails (BEGIN, a savepoint or COMMIT); otherwise each job gets its
 * own apply() result.
 */
static void store_run_batch(struct store *s, struct store_write *batch,
                            size_t n)
{
    struct timespec t0, t1;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = store_begin_write(s);

    if (rc == ERR_OK) {
        rc = store_apply_batch(s, batch);
        if (rc == ERR_OK)
            rc = conn_run(s->writer, "COMMIT");
        if (rc != ERR_OK)
            store_rollback(s);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    metrics_observe(s->metrics.batch_size, (double)n);
    metrics_observe(s->metrics.commit_seconds,
                    (double)(t1.tv_sec - t0.tv_sec) +
                        (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    metrics_add(s->metrics.writes, n);
    if (rc == ERR_OK) {
        counter_add(&s->stats.commits, 1);
        metrics_inc(s->metrics.commits);
    } else {
        metrics_inc(s->metrics.commit_failures);
        log_error("store", "batch_failed path=\"%s\" jobs=%zu err=%s", s->path,
                  n, err_name(rc));
    }

    /* Read next first: done() may free the job or submit it again. */
    struct store_write *next;
    size_t i = 0;
    for (struct store_write *w = batch; w != NULL; w = next, i++) {
        next = w->next;
        w->done(w->arg, rc != ERR_OK ? rc : s->batch_rc[i]);
    }
}

/* Detaches up to batch_max jobs from the queue head; caller holds lock. */
static struct store_write *store_take_batch(struct store *s, size_t *n)
{
    struct store_write *first = s->head, *last = s->head;
    size_t count = 1;

    while (count < (size_t)s->cfg.batch_max && last->next != NULL) {
        last = last->next;
        count++;
    }
    s->head = last->next;
    if (s->head == NULL)
        s->tail = NULL;
    last->next = NULL;
    s->queued -= count;
    metrics_set(s->metrics.queue_depth, (double)s->queued);
    *n = count;
    return first;
}

static void store_note_batch(struct store *s, size_t n)
{
    /* Only the writer stores this counter, so load-then-store is safe. */
    if (n > counter_get(&s->stats.batch_max_seen))
        atomic_store_explicit(&s->stats.batch_max_seen, n,
                              memory_order_relaxed);
}

/*
 * Sleeps until jobs arrive, then runs them with the lock released: what is
 * submitted during a batch queues up and forms the next one.  Exits once
 * closing and the queue is empty.
 */
static void *store_writer_main(void *arg)
{
    struct store *s = arg;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (s->head == NULL && !s->closing)
            pthread_cond_wait(&s->wake, &s->lock);
        if (s->head == NULL)
            break;

        size_t n;
        struct store_write *batch = store_take_batch(s, &n);
        pthread_mutex_unlock(&s->lock);

        store_note_batch(s, n);
        store_run_batch(s, batch, n);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int store_submit(struct store *s, struct store_write *w)
{
    int rc = ERR_OK;

    assert(w->apply != NULL && w->done != NULL);
    w->next = NULL;

    pthread_mutex_lock(&s->lock);
    if (s->closing) {
        rc = ERR_CLOSED;
    } else if (s->queued >= (size_t)s->cfg.queue_max) {
        counter_add(&s->stats.queue_full, 1);
        metrics_inc(s->metrics.queue_full);
        rc = ERR_FULL;
    } else {
        /* The writer sleeps only on an empty queue. */
        if (s->tail == NULL)
            pthread_cond_signal(&s->wake);
        else
            s->tail->next = w;
        if (s->head == NULL)
            s->head = w;
        s->tail = w;
        s->queued++;
        metrics_set(s->metrics.queue_depth, (double)s->queued);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* store_write_sync ------------------------------------------------------- */

struct store_sync_call {
    int (*apply)(struct store_conn *c, void *arg);
    void *arg;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool finished;
    int rc;
};

static int store_sync_apply(struct store_conn *c, void *arg)
{
    struct store_sync_call *call = arg;

    return call->apply(c, call->arg);
}

/* Signals under the lock: the waiter may free call once it sees finished. */
static void store_sync_done(void *arg, int rc)
{
    struct store_sync_call *call = arg;

    pthread_mutex_lock(&call->lock);
    call->rc = rc;
    call->finished = true;
    pthread_cond_signal(&call->cond);
    pthread_mutex_unlock(&call->lock);
}

int store_write_sync(struct store *s, int (*apply)(struct store_conn *, void *),
                     void *arg)
{
    struct store_sync_call call = {.apply = apply, .arg = arg};
    struct store_write w = {
        .apply = store_sync_apply, .done = store_sync_done, .arg = &call};

    /* Waiting on the writer from the writer would never return. */
    assert(!pthread_equal(pthread_self(), s->writer_thread));
    pthread_mutex_init(&call.lock, NULL); /* cannot fail with defaults */
    pthread_cond_init(&call.cond, NULL);

    int rc = store_submit(s, &w);
    if (rc == ERR_OK) {
        pthread_mutex_lock(&call.lock);
        while (!call.finished)
            pthread_cond_wait(&call.cond, &call.lock);
        rc = call.rc;
        pthread_mutex_unlock(&call.lock);
    }

    pthread_cond_destroy(&call.cond);
    pthread_mutex_destroy(&call.lock);
    return rc;
}

/* One statement with one integer, queued and forgotten. */
struct store_exec_job {
    struct store_write w;
    const char *sql;
    int64_t value;
};

static int store_exec_apply(struct store_conn *c, void *arg)
{
    struct store_exec_job *j = arg;
    struct store_stmt *st;
    int rc = store_prepare(c, j->sql, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_int(st, 1, j->value);
    rc = store_step(st);
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

/* A failure was logged by the backend, with the statement, and counted. */
static void store_exec_done(void *arg, int rc)
{
    (void)rc;
    free(arg);
}

int store_submit_exec(struct store *s, const char *sql, int64_t value)
{
    struct store_exec_job *j = calloc(1, sizeof(*j));
    int rc;

    if (j == NULL)
        return ERR_NOMEM;
    j->sql = sql;
    j->value = value;
    j->w.apply = store_exec_apply;
    j->w.done = store_exec_done;
    j->w.arg = j;
    rc = store_submit(s, &j->w);
    if (rc != ERR_OK)
        free(j);
    return rc;
}

/* Open and close --------------------------------------------------------- */

static const struct store_ops *store_backend_find(const char *name)
{
    size_t n = sizeof(store_backends) / sizeof(store_backends[0]);

    if (name == NULL)
        return store_backends[0]; /* the default */
    for (size_t i = 0; i < n; i++) {
        if (strcmp(store_backends[i]->name, name) == 0)
            return store_backends[i];
    }
    log_error("store",
              "bad_config key=store.backend value=\"%s\" expected=sqlite",
              name);
    return NULL;
}

/* Copies cfg, with defaults filled in and owned copies of its strings. */
static int store_config_copy(struct store *s, const struct store_config *cfg)
{
    if (cfg->batch_max < 0 || cfg->queue_max < 0) {
        log_error("store", "bad_config key=store.%s value=%d expected=0+",
                  cfg->batch_max < 0 ? "batch_max" : "queue_max",
                  cfg->batch_max < 0 ? cfg->batch_max : cfg->queue_max);
        return ERR_CONFIG;
    }
    s->cfg = *cfg;
    s->cfg.backend = s->ops->name;
    if (s->cfg.batch_max == 0)
        s->cfg.batch_max = STORE_BATCH_MAX_DEFAULT;
    if (s->cfg.queue_max == 0)
        s->cfg.queue_max = STORE_QUEUE_MAX_DEFAULT;

    /* A missing path becomes "", which the backend refuses by name. */
    s->path = strdup(cfg->path != NULL ? cfg->path : "");
    if (cfg->synchronous != NULL)
        s->synchronous = strdup(cfg->synchronous);
    s->batch_rc = calloc((size_t)s->cfg.batch_max, sizeof(int));
    if (s->path == NULL || s->batch_rc == NULL ||
        (cfg->synchronous != NULL && s->synchronous == NULL)) {
        log_error("store", "open_failed err=\"out of memory\"");
        return ERR_NOMEM;
    }
    s->cfg.path = s->path;
    s->cfg.synchronous = s->synchronous;
    return ERR_OK;
}

static void store_metrics_setup(struct store_metrics *sm)
{
    struct metrics *m = metrics_process();

    sm->commits = metrics_counter(m, "marquee_store_commits_total",
                                  "Batches the writer committed.");
    sm->writes = metrics_counter(m, "marquee_store_writes_total",
                                 "Write jobs the writer ran in batches.");
    sm->commit_failures =
        metrics_counter(m, "marquee_store_commit_failures_total",
                        "Batches that failed as a whole (BEGIN or COMMIT).");
    sm->busy_retries = metrics_counter(
        m, "marquee_store_busy_retries_total",
        "Tries of BEGIN repeated because another process held the lock.");
    sm->queue_full = metrics_counter(
        m, "marquee_store_queue_full_total",
        "Writes refused because the writer's queue was full (answered 503).");
    sm->queue_depth = metrics_gauge(m, "marquee_store_queue_depth",
                                    "Write jobs waiting for the writer.");
    sm->batch_size = metrics_histogram(
        m, "marquee_store_commit_batch_size",
        "Write jobs committed together in one transaction.",
        store_batch_buckets,
        sizeof(store_batch_buckets) / sizeof(store_batch_buckets[0]));
    sm->commit_seconds = metrics_histogram(
        m, "marquee_store_commit_duration_seconds",
        "Time of one batch: BEGIN, every job, COMMIT and its sync.",
        metrics_latency_buckets, metrics_latency_nbuckets);
}

static void store_free(struct store *s)
{
    free(s->batch_rc);
    free(s->synchronous);
    free(s->path);
    free(s);
}

/* Initialising default mutexes and condition variables cannot fail. */
static int store_start_writer(struct store *s)
{
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);

    int err = pthread_create(&s->writer_thread, NULL, store_writer_main, s);
    if (err != 0) {
        log_error("store", "pthread_create_failed path=\"%s\" err=\"%s\"",
                  s->path, strerror(err));
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->lock);
        return ERR_SYS;
    }
    return ERR_OK;
}

int store_open(const struct store_config *cfg,
               const struct store_migration *migrations, size_t nmigrations,
               struct store **out)
{
    const struct store_ops *ops = store_backend_find(cfg->backend);
    if (ops == NULL)
        return ERR_CONFIG;

    struct store *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        log_error("store", "open_failed err=\"out of memory\"");
        return ERR_NOMEM;
    }
    s->ops = ops;
    store_metrics_setup(&s->metrics);

    int rc = store_config_copy(s, cfg);
    if (rc != ERR_OK)
        goto out_free_store;
    rc = ops->open(&s->cfg, true, &s->writer);
    if (rc != ERR_OK)
        goto out_free_store;
    assert(s->writer->ops == ops);
    rc = store_migrate(s, migrations, nmigrations);
    if (rc != ERR_OK)
        goto out_close_writer;
    rc = store_start_writer(s);
    if (rc != ERR_OK)
        goto out_close_writer;

    atomic_store(&s->ready, true);
    log_info("store", "open path=\"%s\" backend=%s schema_version=%d", s->path,
             ops->name, s->schema_version);
    *out = s;
    return ERR_OK;

out_close_writer:
    store_conn_close(s->writer);
out_free_store:
    store_free(s);
    return rc;
}

void store_close(struct store *s)
{
    if (s == NULL)
        return;
    assert(!pthread_equal(pthread_self(), s->writer_thread));

    pthread_mutex_lock(&s->lock);
    assert(!s->closing);
    s->closing = true;
    /* Cleared after closing, so a caller who sees false gets ERR_CLOSED. */
    atomic_store(&s->ready, false);
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);

    /* The writer drains the queue before it returns. */
    pthread_join(s->writer_thread, NULL);
    log_info("store", "closed path=\"%s\" commits=%llu writes=%llu", s->path,
             (unsigned long long)counter_get(&s->stats.commits),
             (unsigned long long)counter_get(&s->stats.writes));

    store_conn_close(s->writer);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    store_free(s);
}

bool store_ready(const struct store *s)
{
    return atomic_load(&s->ready);
}

int store_schema_version(const struct store *s)
{
    return s->schema_version;
}

void store_get_stats(const struct store *s, struct store_stats *out)
{
    out->commits = counter_get(&s->stats.commits);
    out->writes = counter_get(&s->stats.writes);
    out->write_errors = counter_get(&s->stats.write_errors);
    out->busy_retries = counter_get(&s->stats.busy_retries);
    out->batch_max_seen = counter_get(&s->stats.batch_max_seen);
    out->queue_full = counter_get(&s->stats.queue_full);
}

void store_config_from(struct store_config *out, const struct config *cfg)
{
    memset(out, 0, sizeof(*out));
    out->backend = "sqlite";
    out->path = config_str(cfg, "store.path");
    out->busy_timeout_ms = (int)config_int(cfg, "store.busy_timeout_ms");
    out->synchronous = config_str(cfg, "store.synchronous");
}
