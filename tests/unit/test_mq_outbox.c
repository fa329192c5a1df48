/*
 * test_mq_outbox.c - the shared outbox relay against a real SQLite store
 * and the real SQLite queue, each in a file of its own mkdtemp()
 * directory.
 *
 * The relay reads a clock of this file (atomic, since the relay thread
 * reads it while the test moves it), so backoff is checked by moving time
 * by hand: a retry happens exactly when the clock passes the backoff, and
 * never from a wake-up alone.  A publish fails for real: another
 * connection holds the queue file's write lock and the queue's busy
 * timeout is 0.  Waits for the relay thread are polls with a generous
 * bound; nothing asserts how fast it is.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "harness.h"
#include "metrics/metrics.h"
#include "mq/mq.h"
#include "mq/outbox.h"
#include "store/store.h"

#define START_MS   1800000000000LL
#define WAIT_MS    20000 /* bound of a wait for the relay thread */
#define QUIET_MS   200   /* how long nothing may happen in a backoff */
#define BACKOFF_MS 100
#define QUEUE      "sink"

#define WRITER_THREADS  3
#define ROWS_PER_WRITER 60

/* A clock the test moves while the relay thread reads it. */
struct test_clock {
    struct clock base;
    _Atomic int64_t ms; /* wall; mono is the same number */
};

static int64_t tc_wall_ms(struct clock *c)
{
    return atomic_load(&((struct test_clock *)c)->ms);
}

static int64_t tc_mono_ns(struct clock *c)
{
    return atomic_load(&((struct test_clock *)c)->ms) * 1000000;
}

static void tc_advance(struct test_clock *c, int64_t ms)
{
    atomic_fetch_add(&c->ms, ms);
}

static const struct store_migration migrations[] = {
    {1, "outbox",
     "CREATE TABLE outbox (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL "
     "UNIQUE, topic TEXT NOT NULL, body TEXT NOT NULL, created_at INTEGER "
     "NOT NULL, sent_at INTEGER);"
     "CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;"
     "CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT "
     "NULL;"},
};

struct fix {
    char dir[64];
    char db_path[96], q_path[96];
    struct test_clock clk;
    struct store *s;
    struct store_conn *rd; /* the test thread's */
    struct mq *q;          /* the consumer's handle */
    struct mq_config mc;
    struct metrics *m;
    struct metrics_series *unsent;
    sqlite3 *lock; /* holds the queue's write lock while not NULL */
};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

static void fix_open(struct fix *f)
{
    const char *const patterns[] = {"#"};

    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/marquee-outbox-XXXXXX");
    CHECK(mkdtemp(f->dir) != NULL);
    snprintf(f->db_path, sizeof(f->db_path), "%s/service.db", f->dir);
    snprintf(f->q_path, sizeof(f->q_path), "%s/queue.db", f->dir);
    f->clk.base.wall_ms = tc_wall_ms;
    f->clk.base.mono_ns = tc_mono_ns;
    atomic_store(&f->clk.ms, START_MS);

    struct store_config sc = {
        .path = f->db_path, .busy_timeout_ms = 5000, .synchronous = "normal"};
    CHECK_INT(store_open(&sc, migrations, 1, &f->s), ERR_OK);
    CHECK_INT(store_conn_open(f->s, &f->rd), ERR_OK);

    f->mc = (struct mq_config){.backend = "sqlite",
                               .path = f->q_path,
                               .max_attempts = 5,
                               .lease_ms = 30000,
                               .prefetch = 256,
                               .busy_timeout_ms = 0,
                               .synchronous = "normal"};
    CHECK_INT(mq_open(&f->mc, &f->q), ERR_OK);
    CHECK_INT(mq_declare(f->q, QUEUE, patterns, 1), ERR_OK);
    f->m = metrics_create();
    f->unsent = metrics_gauge(f->m, "test_outbox_unsent", "unsent rows");
}

static void fix_unlock(struct fix *f)
{
    if (f->lock == NULL)
        return;
    CHECK_INT(sqlite3_exec(f->lock, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(f->lock);
    f->lock = NULL;
}

static void fix_close(struct fix *f)
{
    static const char *const files[] = {"service.db",     "service.db-wal",
                                        "service.db-shm", "queue.db",
                                        "queue.db-wal",   "queue.db-shm"};
    char path[128];

    fix_unlock(f);
    mq_close(f->q);
    store_conn_close(f->rd);
    store_close(f->s);
    metrics_free(f->m);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", f->dir, files[i]);
        unlink(path);
    }
    CHECK_INT(rmdir(f->dir), 0);
}

/* Another process's writer: publishes fail with ERR_BUSY at once. */
static void fix_lock(struct fix *f)
{
    CHECK_INT(sqlite3_open(f->q_path, &f->lock), SQLITE_OK);
    CHECK_INT(sqlite3_exec(f->lock, "BEGIN IMMEDIATE", NULL, NULL, NULL),
              SQLITE_OK);
}

static struct mq_outbox *fix_start(struct fix *f, int batch_max)
{
    struct mq_outbox_config oc = {.subsystem = "test",
                                  .clock = &f->clk.base,
                                  .batch_max = batch_max,
                                  .idle_ms = 50,
                                  .backoff_ms_min = BACKOFF_MS,
                                  .backoff_ms_max = 4 * BACKOFF_MS,
                                  .unsent = f->unsent};
    struct mq_outbox *o = NULL;

    CHECK_INT(mq_outbox_start(f->s, &f->mc, &oc, &o), ERR_OK);
    CHECK(o != NULL);
    return o;
}

/* --- rows -------------------------------------------------------------- */

struct add_job {
    const char *prefix;
    int from, n;
    int64_t now_ms;
};

static int add_apply(struct store_conn *c, void *arg)
{
    const struct add_job *j = arg;

    for (int i = j->from; i < j->from + j->n; i++) {
        char id[64], body[64];
        int rc;

        snprintf(id, sizeof(id), "%s%d", j->prefix, i);
        snprintf(body, sizeof(body), "{\"n\":%d}", i);
        rc =
            mq_outbox_add(c, id, i % 2 ? "ev.odd" : "ev.even", body, j->now_ms);
        if (rc != ERR_OK)
            return rc;
    }
    return ERR_OK;
}

static void add_rows(struct fix *f, const char *prefix, int from, int n)
{
    struct add_job j = {prefix, from, n, tc_wall_ms(&f->clk.base)};

    CHECK_INT(store_write_sync(f->s, add_apply, &j), ERR_OK);
}

static int64_t count_sql(struct fix *f, const char *sql)
{
    struct store_stmt *st;
    int64_t n = -1;

    CHECK_INT(store_prepare(f->rd, sql, &st), ERR_OK);
    if (store_step(st) == STORE_ROW)
        n = store_col_int(st, 0);
    store_reset(st);
    return n;
}

static int64_t unsent(struct fix *f)
{
    return count_sql(f, "SELECT count(*) FROM outbox WHERE sent_at IS NULL");
}

static struct mq_outbox_stats stats(const struct mq_outbox *o)
{
    struct mq_outbox_stats st;

    mq_outbox_get_stats(o, &st);
    return st;
}

/* Polls until the relay's counter reaches want; fails after WAIT_MS. */
static void wait_relayed(const struct mq_outbox *o, uint64_t want)
{
    for (int waited = 0; stats(o).relayed < want; waited += 5) {
        CHECK(waited < WAIT_MS);
        sleep_ms(5);
    }
    CHECK_INT(stats(o).relayed, want);
}

static void wait_failures(const struct mq_outbox *o, uint64_t want)
{
    for (int waited = 0; stats(o).failures < want; waited += 5) {
        CHECK(waited < WAIT_MS);
        sleep_ms(5);
    }
    CHECK_INT(stats(o).failures, want);
}

/* The gauge is set after the round that marked the rows: poll it too. */
static void wait_gauge(const struct fix *f, double want)
{
    for (int waited = 0; metrics_value(f->unsent) != want; waited += 5) {
        CHECK(waited < WAIT_MS);
        sleep_ms(5);
    }
}

/*
 * Claims and acks everything in the queue; checks that the ids are
 * prefix<from>, prefix<from+1>, ... n of them, in that order, with their
 * topics and bodies.
 */
static void expect_messages(struct fix *f, const char *prefix, int from, int n)
{
    int seen = 0;

    for (;;) {
        struct mq_batch *b = NULL;

        CHECK_INT(mq_consume(f->q, QUEUE, 0, &b), ERR_OK);
        if (b->n == 0) {
            mq_batch_free(b);
            break;
        }
        for (size_t k = 0; k < b->n; k++, seen++) {
            const struct mq_message *m = &b->msgs[k];
            int i = from + seen;
            char id[64], body[64];

            snprintf(id, sizeof(id), "%s%d", prefix, i);
            snprintf(body, sizeof(body), "{\"n\":%d}", i);
            CHECK(seen < n);
            CHECK_STR(m->id, id);
            CHECK_STR(m->topic, i % 2 ? "ev.odd" : "ev.even");
            CHECK_STR((const char *)m->body, body);
            CHECK_INT(m->attempt, 1);
            CHECK_INT(mq_ack(f->q, m), ERR_OK);
        }
        mq_batch_free(b);
    }
    CHECK_INT(seen, n);
}

/* --- tests ------------------------------------------------------------- */

TEST(test_rows_go_in_order_and_are_marked)
{
    struct fix f;

    fix_open(&f);
    /* Committed before the relay starts: its first round sends them. */
    add_rows(&f, "e", 0, 10);
    struct mq_outbox *o = fix_start(&f, 4); /* three batches */
    wait_relayed(o, 10);
    CHECK_INT(unsent(&f), 0);
    CHECK_INT(count_sql(&f, "SELECT count(*) FROM outbox WHERE sent_at = "
                            "1800000000000"),
              10);
    expect_messages(&f, "e", 0, 10);

    /* A wake-up after a commit sends the next ones. */
    add_rows(&f, "e", 10, 3);
    CHECK_INT(mq_outbox_wake(o), ERR_OK);
    wait_relayed(o, 13);
    expect_messages(&f, "e", 10, 3);
    wait_gauge(&f, 0);
    CHECK_INT(stats(o).failures, 0);

    struct mq_outbox_stats fin;
    mq_outbox_stop(o, &fin);
    CHECK_INT(fin.relayed, 13);
    fix_close(&f);
}

TEST(test_failed_publish_backs_off_and_is_not_marked)
{
    struct fix f;

    fix_open(&f);
    struct mq_outbox *o = fix_start(&f, 0);
    fix_lock(&f);
    add_rows(&f, "e", 0, 3);
    CHECK_INT(mq_outbox_wake(o), ERR_OK);
    wait_failures(o, 1);
    CHECK_INT(unsent(&f), 3);
    CHECK_INT(stats(o).relayed, 0);
    CHECK(metrics_value(f.unsent) == 3);

    /* Wake-ups do not cut the backoff short. */
    for (int i = 0; i < 5; i++)
        CHECK_INT(mq_outbox_wake(o), ERR_OK);
    sleep_ms(QUIET_MS);
    CHECK_INT(stats(o).failures, 1);

    /* Past the first backoff: one more try, then twice as long. */
    tc_advance(&f.clk, BACKOFF_MS);
    wait_failures(o, 2);
    tc_advance(&f.clk, BACKOFF_MS);
    sleep_ms(QUIET_MS);
    CHECK_INT(stats(o).failures, 2);
    tc_advance(&f.clk, BACKOFF_MS);
    wait_failures(o, 3);
    CHECK_INT(unsent(&f), 3);

    /* The queue is back: the next try sends all, in order, once. */
    fix_unlock(&f);
    tc_advance(&f.clk, 4 * BACKOFF_MS);
    wait_relayed(o, 3);
    CHECK_INT(unsent(&f), 0);
    wait_gauge(&f, 0);
    expect_messages(&f, "e", 0, 3);
    mq_outbox_stop(o, NULL);
    fix_close(&f);
}

TEST(test_restart_resumes_unsent_rows)
{
    struct fix f;
    struct mq_outbox_stats fin;

    fix_open(&f);
    struct mq_outbox *o = fix_start(&f, 0);
    fix_lock(&f);
    add_rows(&f, "e", 0, 3);
    CHECK_INT(mq_outbox_wake(o), ERR_OK);
    wait_failures(o, 1);
    /* Stopped while failing: no last try, the rows wait. */
    mq_outbox_stop(o, &fin);
    CHECK_INT(fin.relayed, 0);
    CHECK_INT(unsent(&f), 3);

    fix_unlock(&f);
    add_rows(&f, "e", 3, 2); /* committed while no relay runs */
    o = fix_start(&f, 2);
    wait_relayed(o, 5);
    expect_messages(&f, "e", 0, 5);
    mq_outbox_stop(o, NULL);
    fix_close(&f);
}

TEST(test_stop_sends_what_is_committed)
{
    struct fix f;
    struct mq_outbox_stats fin;

    fix_open(&f);
    struct mq_outbox *o = fix_start(&f, 3);
    add_rows(&f, "e", 0, 7); /* no wake-up, and the clock stands still */
    mq_outbox_stop(o, &fin);
    CHECK_INT(fin.relayed, 7);
    CHECK_INT(unsent(&f), 0);
    expect_messages(&f, "e", 0, 7);
    fix_close(&f);
}

static int unmark_apply(struct store_conn *c, void *arg)
{
    (void)arg;
    return store_exec(c, "UPDATE outbox SET sent_at = NULL");
}

TEST(test_resent_rows_are_one_copy)
{
    struct fix f;

    fix_open(&f);
    add_rows(&f, "e", 0, 4);
    struct mq_outbox *o = fix_start(&f, 0);
    wait_relayed(o, 4);
    mq_outbox_stop(o, NULL);

    /* As if the relay died between its publishes and the mark. */
    CHECK_INT(store_write_sync(f.s, unmark_apply, NULL), ERR_OK);
    CHECK_INT(unsent(&f), 4);
    o = fix_start(&f, 0);
    wait_relayed(o, 4);
    CHECK_INT(unsent(&f), 0);
    mq_outbox_stop(o, NULL);
    expect_messages(&f, "e", 0, 4); /* the queue kept the first copies */
    fix_close(&f);
}

struct writer {
    struct fix *f;
    struct mq_outbox *o;
    char prefix[16];
};

/* Returns NULL, or w itself when a commit or a wake-up failed. */
static void *writer_main(void *arg)
{
    struct writer *w = arg;

    for (int i = 0; i < ROWS_PER_WRITER; i++) {
        struct add_job j = {w->prefix, i, 1, START_MS};

        if (store_write_sync(w->f->s, add_apply, &j) != ERR_OK)
            return w;
        if (mq_outbox_wake(w->o) != ERR_OK)
            return w;
    }
    return NULL;
}

/* Writers commit and wake while the relay runs: every row goes once, in
 * the order of the table. */
TEST(test_concurrent_writers)
{
    struct fix f;
    struct writer w[WRITER_THREADS];
    pthread_t th[WRITER_THREADS];
    const int total = WRITER_THREADS * ROWS_PER_WRITER;

    fix_open(&f);
    struct mq_outbox *o = fix_start(&f, 8);
    for (int i = 0; i < WRITER_THREADS; i++) {
        w[i] = (struct writer){&f, o, {0}};
        snprintf(w[i].prefix, sizeof(w[i].prefix), "w%d.", i);
        CHECK_INT(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < WRITER_THREADS; i++) {
        void *err = NULL;
        CHECK_INT(pthread_join(th[i], &err), 0);
        CHECK(err == NULL);
    }
    wait_relayed(o, (uint64_t)total);

    /* The queue's order is the table's id order, each id once. */
    struct store_stmt *st;
    struct mq_batch *b = NULL;
    int seen = 0;
    CHECK_INT(
        store_prepare(f.rd, "SELECT event_id FROM outbox ORDER BY id", &st),
        ERR_OK);
    while (seen < total) {
        CHECK_INT(mq_consume(f.q, QUEUE, 0, &b), ERR_OK);
        CHECK(b->n > 0);
        for (size_t k = 0; k < b->n; k++, seen++) {
            CHECK_INT(store_step(st), STORE_ROW);
            CHECK_STR(b->msgs[k].id, store_col_text(st, 0));
            CHECK_INT(mq_ack(f.q, &b->msgs[k]), ERR_OK);
        }
        mq_batch_free(b);
    }
    CHECK_INT(store_step(st), ERR_OK);
    store_reset(st);
    CHECK_INT(mq_consume(f.q, QUEUE, 0, &b), ERR_OK);
    CHECK_INT(b->n, 0);
    mq_batch_free(b);
    mq_outbox_stop(o, NULL);
    fix_close(&f);
}

TEST(test_old_sent_rows_are_purged)
{
    struct fix f;

    fix_open(&f);
    add_rows(&f, "e", 0, 5);
    struct mq_outbox *o = fix_start(&f, 0);
    wait_relayed(o, 5);
    CHECK_INT(stats(o).purged, 0); /* sent just now: kept */

    tc_advance(&f.clk, MQ_OUTBOX_KEEP_MS_DEFAULT + MQ_OUTBOX_PURGE_EVERY_MS);
    CHECK_INT(mq_outbox_wake(o), ERR_OK);
    for (int waited = 0; stats(o).purged < 5; waited += 5) {
        CHECK(waited < WAIT_MS);
        sleep_ms(5);
    }
    CHECK_INT(count_sql(&f, "SELECT count(*) FROM outbox"), 0);
    mq_outbox_stop(o, NULL);
    expect_messages(&f, "e", 0, 5);
    fix_close(&f);
}

static int refusals_apply(struct store_conn *c, void *arg)
{
    static char big[MQ_OUTBOX_BODY_MAX + 1];
    static char long_id[MQ_ID_MAX + 2];
    int *fails = arg;

    memset(big, 'x', MQ_OUTBOX_BODY_MAX);
    memset(long_id, 'i', MQ_ID_MAX + 1);
    *fails = 0;
    *fails += mq_outbox_add(c, "a", "Bad Topic", "{}", 1) == ERR_INVALID;
    *fails += mq_outbox_add(c, "", "ev.a", "{}", 1) == ERR_INVALID;
    *fails += mq_outbox_add(c, long_id, "ev.a", "{}", 1) == ERR_INVALID;
    *fails += mq_outbox_add(c, "a", "ev.a", big, 1) == ERR_TOOBIG;
    /* The same id twice: one row, the first body. */
    if (mq_outbox_add(c, "a", "ev.a", "{\"first\":1}", 1) != ERR_OK ||
        mq_outbox_add(c, "a", "ev.a", "{\"second\":1}", 1) != ERR_OK)
        return ERR_INVALID;
    return ERR_OK;
}

TEST(test_add_refuses_what_cannot_be_sent)
{
    struct fix f;
    int refused = 0;

    fix_open(&f);
    CHECK_INT(store_write_sync(f.s, refusals_apply, &refused), ERR_OK);
    CHECK_INT(refused, 4);
    CHECK_INT(count_sql(&f, "SELECT count(*) FROM outbox"), 1);
    CHECK_INT(count_sql(&f, "SELECT count(*) FROM outbox WHERE body = "
                            "'{\"first\":1}'"),
              1);
    fix_close(&f);
}

TEST(test_bad_settings_are_refused)
{
    struct fix f;
    struct mq_outbox *o = (struct mq_outbox *)&f;

    fix_open(&f);
    struct mq_outbox_config oc = {.batch_max = MQ_OUTBOX_BATCH_MAX + 1};
    CHECK_INT(mq_outbox_start(f.s, &f.mc, &oc, &o), ERR_INVALID);
    CHECK(o == NULL);
    oc =
        (struct mq_outbox_config){.backoff_ms_min = 500, .backoff_ms_max = 100};
    CHECK_INT(mq_outbox_start(f.s, &f.mc, &oc, &o), ERR_INVALID);
    CHECK_INT(mq_outbox_wake(NULL), ERR_OK);
    mq_outbox_stop(NULL, NULL);
    fix_close(&f);
}

HARNESS_MAIN(T(test_rows_go_in_order_and_are_marked),
             T(test_failed_publish_backs_off_and_is_not_marked),
             T(test_restart_resumes_unsent_rows),
             T(test_stop_sends_what_is_committed),
             T(test_resent_rows_are_one_copy), T(test_concurrent_writers),
             T(test_old_sent_rows_are_purged),
             T(test_add_refuses_what_cannot_be_sent),
             T(test_bad_settings_are_refused))
