/*
 * test_store.c - the store and its SQLite backend, on real files.
 *
 * Every test works in its own mkdtemp() directory.  Results are checked
 * through a separate plain sqlite3 handle where it matters, so a bug in the
 * store's read path cannot hide a bug in its write path.  CHECK jumps, so
 * it is only used on the test's own thread: callbacks and helper threads
 * record what they saw and the test checks it afterwards.  Jobs and gates
 * that the writer thread touches are static, so a failed CHECK cannot leave
 * the writer pointing into a dead stack frame.
 */
#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "harness.h"
#include "metrics/metrics.h"
#include "store/store.h"
#include "store/store_int.h"

/* Longest a test waits for another thread before it fails. */
#define WAIT_MS_MAX 30000

/* Processes that open one new file at once, and how many times. */
#define RACE_PROCS  4
#define RACE_ROUNDS 25

#define SUBMIT_THREADS     8
#define SUBMITS_PER_THREAD 500
#define SUBMITS_TOTAL      (SUBMIT_THREADS * SUBMITS_PER_THREAD)

static const struct store_migration migrations[] = {
    {1, "items",
     "CREATE TABLE items (id INTEGER PRIMARY KEY, owner INTEGER NOT NULL,"
     " note TEXT);\n"
     "CREATE TABLE parents (id INTEGER PRIMARY KEY);\n"
     "CREATE TABLE children (id INTEGER PRIMARY KEY,"
     " parent INTEGER NOT NULL REFERENCES parents (id));"},
    /* Applying this twice would fail on the primary key. */
    {2, "seed parent", "INSERT INTO parents (id) VALUES (1)"},
    {3, "owner index", "CREATE INDEX items_owner ON items (owner)"},
};

static const char insert_item_sql[] =
    "INSERT INTO items (id, owner, note) VALUES (?, ?, ?)";

/* Temporary directories ------------------------------------------------- */

struct tmp_db {
    char dir[64];
    char path[96];
};

static void tmp_db_make(struct tmp_db *t)
{
    snprintf(t->dir, sizeof(t->dir), "/tmp/marquee-store-XXXXXX");
    CHECK(mkdtemp(t->dir) != NULL);
    snprintf(t->path, sizeof(t->path), "%s/test.db", t->dir);
}

/* Removes the database and its -wal and -shm files, then the directory. */
static void tmp_db_remove(struct tmp_db *t)
{
    DIR *d = opendir(t->dir);
    struct dirent *e;

    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            CHECK_INT(unlinkat(dirfd(d), e->d_name, 0), 0);
    }
    closedir(d);
    CHECK_INT(rmdir(t->dir), 0);
}

static struct store_config test_config(const struct tmp_db *t)
{
    return (struct store_config){
        .backend = "sqlite",
        .path = t->path,
        .busy_timeout_ms = 5000,
        .synchronous = "full",
    };
}

static struct store *open_store(const struct store_config *cfg, size_t nmig)
{
    struct store *s = NULL;

    CHECK_INT(store_open(cfg, migrations, nmig, &s), ERR_OK);
    CHECK(s != NULL);
    CHECK(store_ready(s));
    return s;
}

/*
 * Runs a one-value query (sql with at most one `?`, bound to arg) through
 * its own read-only sqlite3 handle; -1 when the query fails.
 */
static int64_t raw_query_int(const char *path, const char *sql, int64_t arg)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    int64_t v = -1;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        goto out_close;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
        goto out_close;
    if (sqlite3_bind_parameter_count(stmt) > 0)
        sqlite3_bind_int64(stmt, 1, arg);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        v = sqlite3_column_int64(stmt, 0);

out_close:
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return v;
}

static int64_t raw_count(const char *path, const char *sql)
{
    return raw_query_int(path, sql, 0);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* Polls until *counter reaches target; false after WAIT_MS_MAX. */
static bool wait_for(_Atomic int *counter, int target)
{
    for (int waited = 0; waited < WAIT_MS_MAX; waited++) {
        if (atomic_load(counter) >= target)
            return true;
        sleep_ms(1);
    }
    return false;
}

/* Write jobs ------------------------------------------------------------ */

struct item_job {
    struct store_write w;
    int64_t id;
    int64_t owner;
    const char *path;        /* set to check visibility from outside */
    _Atomic int *done_total; /* optional, counts finished jobs */
    _Atomic int done_calls;
    int done_rc;
    int64_t seen_in_apply; /* rows with id seen by another handle */
    int64_t seen_in_done;
};

static int insert_item(struct store_conn *c, int64_t id, int64_t owner,
                       const char *note)
{
    struct store_stmt *st;
    int rc = store_prepare(c, insert_item_sql, &st);

    if (rc == ERR_OK)
        rc = store_bind_int(st, 1, id);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 2, owner);
    if (rc == ERR_OK)
        rc = store_bind_text(st, 3, note);
    if (rc == ERR_OK)
        rc = store_step(st);
    return rc;
}

static int item_apply(struct store_conn *c, void *arg)
{
    struct item_job *j = arg;
    int rc = insert_item(c, j->id, j->owner, NULL);

    if (rc == ERR_OK && j->path != NULL)
        j->seen_in_apply = raw_query_int(
            j->path, "SELECT count(*) FROM items WHERE id = ?", j->id);
    return rc;
}

/* Inserts its own row, then one that clashes with job id 1's. */
static int item_apply_clash(struct store_conn *c, void *arg)
{
    struct item_job *j = arg;
    int rc = insert_item(c, j->id, j->owner, NULL);

    if (rc == ERR_OK)
        rc = insert_item(c, 1, j->owner, NULL);
    return rc;
}

static void item_done(void *arg, int rc)
{
    struct item_job *j = arg;

    if (j->path != NULL)
        j->seen_in_done = raw_query_int(
            j->path, "SELECT count(*) FROM items WHERE id = ?", j->id);
    j->done_rc = rc;
    atomic_fetch_add(&j->done_calls, 1);
    if (j->done_total != NULL)
        atomic_fetch_add(j->done_total, 1);
}

static void item_job_init(struct item_job *j, int64_t id)
{
    *j = (struct item_job){
        .w = {.apply = item_apply, .done = item_done, .arg = j},
        .id = id,
        .owner = id % 7,
    };
}

/*
 * A job that holds the writer inside apply() until opened, so a test can
 * fill the queue while the writer is busy.
 */
struct gate {
    struct store_write w;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool entered;
    bool open;
    _Atomic int done_calls;
};

static int gate_apply(struct store_conn *c, void *arg)
{
    struct gate *g = arg;

    (void)c;
    pthread_mutex_lock(&g->lock);
    g->entered = true;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    return ERR_OK;
}

static void gate_done(void *arg, int rc)
{
    struct gate *g = arg;

    (void)rc;
    atomic_fetch_add(&g->done_calls, 1);
}

/* Submits the gate and returns once the writer is inside it. */
static void gate_enter(struct gate *g, struct store *s)
{
    g->w =
        (struct store_write){.apply = gate_apply, .done = gate_done, .arg = g};
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->entered = false;
    g->open = false;
    atomic_store(&g->done_calls, 0);

    CHECK_INT(store_submit(s, &g->w), ERR_OK);
    pthread_mutex_lock(&g->lock);
    while (!g->entered)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* Destroys the gate's primitives; only after the store was closed. */
static void gate_destroy(struct gate *g)
{
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
}

/* Migrations ------------------------------------------------------------ */

TEST(migrations_applied_once)
{
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    const char *count_sql = "SELECT count(*) FROM schema_migrations";

    struct store *s = open_store(&cfg, 2);
    CHECK_INT(store_schema_version(s), 2);
    store_close(s);
    CHECK_INT(raw_count(t.path, count_sql), 2);
    CHECK_INT(raw_count(t.path, "SELECT count(*) FROM parents"), 1);
    CHECK_INT(raw_count(t.path, "SELECT count(*) FROM schema_migrations "
                                "WHERE length(applied_at) = 20 "
                                "AND applied_at LIKE '____-__-__T__:__:__Z'"),
              2);

    /* Reapplying version 2 would fail on the parent's primary key. */
    s = open_store(&cfg, 2);
    CHECK_INT(store_schema_version(s), 2);
    store_close(s);
    CHECK_INT(raw_count(t.path, count_sql), 2);

    s = open_store(&cfg, 3);
    CHECK_INT(store_schema_version(s), 3);
    store_close(s);
    CHECK_INT(raw_count(t.path, count_sql), 3);
    CHECK_INT(raw_count(t.path, "SELECT count(*) FROM sqlite_master "
                                "WHERE name = 'items_owner'"),
              1);
    tmp_db_remove(&t);
}

/*
 * Child of migrations_concurrent_first_opens: waits on the gate, opens the
 * store, and exits 0 only if it opened at the newest version.
 */
static void race_child(const struct store_config *cfg, int gate)
{
    char byte;
    struct store *s = NULL;
    int status = 1;

    /* Returns 0 (end of file) once the parent closes its end. */
    if (read(gate, &byte, 1) == 0 &&
        store_open(cfg, migrations, 3, &s) == ERR_OK &&
        store_schema_version(s) == 3)
        status = 0;
    store_close(s);
    _exit(status);
}

/*
 * Several instances of a service started together open one database that
 * does not exist yet: every one of them opens it, and each migration is
 * applied once.  Switching a new file to WAL is what used to fail here.
 */
TEST(migrations_concurrent_first_opens)
{
    for (int round = 0; round < RACE_ROUNDS; round++) {
        struct tmp_db t;
        tmp_db_make(&t);
        struct store_config cfg = test_config(&t);
        pid_t pids[RACE_PROCS];
        int gate[2];

        CHECK_INT(pipe(gate), 0);
        for (int i = 0; i < RACE_PROCS; i++) {
            pids[i] = fork();
            CHECK(pids[i] >= 0);
            if (pids[i] == 0) {
                close(gate[1]);
                race_child(&cfg, gate[0]);
            }
        }
        close(gate[0]);
        close(gate[1]); /* all children go */

        int failed = 0;
        for (int i = 0; i < RACE_PROCS; i++) {
            int status = 0;

            CHECK_INT(waitpid(pids[i], &status, 0), pids[i]);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                failed++;
        }
        CHECK_INT(failed, 0);
        CHECK_INT(raw_count(t.path, "SELECT count(*) FROM schema_migrations"),
                  3);
        CHECK_INT(raw_count(t.path, "SELECT count(*) FROM parents"), 1);
        tmp_db_remove(&t);
    }
}

TEST(migrations_none_gives_version_zero)
{
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);

    struct store *s = open_store(&cfg, 0);
    CHECK_INT(store_schema_version(s), 0);
    store_close(s);
    tmp_db_remove(&t);
}

TEST(migrations_database_newer_is_corrupt)
{
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = open_store(&cfg, 3);
    store_close(s);

    s = NULL;
    CHECK_INT(store_open(&cfg, migrations, 2, &s), ERR_CORRUPT);
    CHECK(s == NULL);
    /* Nothing was rolled back or reapplied by the refused open. */
    CHECK_INT(raw_count(t.path, "SELECT max(version) FROM schema_migrations"),
              3);
    tmp_db_remove(&t);
}

TEST(migrations_failure_rolls_back_that_step)
{
    static const struct store_migration broken[] = {
        {1, "items", "CREATE TABLE items (id INTEGER PRIMARY KEY)"},
        {2, "broken",
         "CREATE TABLE extra (a INTEGER); INSERT INTO nosuch VALUES (1)"},
    };
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = NULL;

    CHECK_INT(store_open(&cfg, broken, 2, &s), ERR_DB);
    CHECK(s == NULL);
    CHECK_INT(raw_count(t.path, "SELECT max(version) FROM schema_migrations"),
              1);
    CHECK_INT(raw_count(t.path, "SELECT count(*) FROM sqlite_master "
                                "WHERE name = 'extra'"),
              0);

    CHECK_INT(store_open(&cfg, broken, 1, &s), ERR_OK);
    CHECK_INT(store_schema_version(s), 1);
    store_close(s);
    tmp_db_remove(&t);
}

/* Configuration --------------------------------------------------------- */

static int pragma_sync_seen;

static int read_pragma_sync(struct store_conn *c, void *arg)
{
    static const char sql[] = "PRAGMA synchronous";
    struct store_stmt *st;
    int rc = store_prepare(c, sql, &st);

    (void)arg;
    if (rc == ERR_OK)
        rc = store_step(st);
    if (rc != STORE_ROW)
        return ERR_DB;
    pragma_sync_seen = (int)store_col_int(st, 0);
    return ERR_OK;
}

TEST(config_synchronous_full_by_default_normal_allowed)
{
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);

    cfg.synchronous = NULL;
    struct store *s = open_store(&cfg, 1);
    pragma_sync_seen = -1;
    CHECK_INT(store_write_sync(s, read_pragma_sync, NULL), ERR_OK);
    CHECK_INT(pragma_sync_seen, 2); /* FULL */
    store_close(s);

    cfg.synchronous = "normal";
    s = open_store(&cfg, 1);
    pragma_sync_seen = -1;
    CHECK_INT(store_write_sync(s, read_pragma_sync, NULL), ERR_OK);
    CHECK_INT(pragma_sync_seen, 1); /* NORMAL */
    store_close(s);
    tmp_db_remove(&t);
}

TEST(config_bad_synchronous_refused_and_logged)
{
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    enum log_level level = log_get_level();
    char line[512] = "";
    FILE *f = tmpfile();
    struct store *s = NULL;

    CHECK(f != NULL);
    log_set_fd(fileno(f));
    log_set_level(LOG_ERROR);
    cfg.synchronous = "fast";
    int rc = store_open(&cfg, migrations, 1, &s);
    log_set_level(level);
    log_set_fd(STDERR_FILENO);

    rewind(f);
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    line[n] = '\0';
    fclose(f);
    CHECK_INT(rc, ERR_CONFIG);
    CHECK(s == NULL);
    CHECK(strstr(line, "bad_config key=store.synchronous value=\"fast\"") !=
          NULL);
    CHECK(strchr(line, '\n') == line + n - 1); /* one line */
    tmp_db_remove(&t);
}

TEST(config_memory_path_and_unknown_backend_refused)
{
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = NULL;

    cfg.path = ":memory:";
    CHECK_INT(store_open(&cfg, migrations, 1, &s), ERR_CONFIG);
    cfg.path = NULL;
    CHECK_INT(store_open(&cfg, migrations, 1, &s), ERR_CONFIG);
    cfg = test_config(&t);
    cfg.backend = "oracle";
    CHECK_INT(store_open(&cfg, migrations, 1, &s), ERR_CONFIG);
    cfg = test_config(&t);
    cfg.queue_max = -1;
    CHECK_INT(store_open(&cfg, migrations, 1, &s), ERR_CONFIG);
    CHECK(s == NULL);
    tmp_db_remove(&t);
}

TEST(config_wal_and_read_only_readers)
{
    static const char mode_sql[] = "PRAGMA journal_mode";
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = open_store(&cfg, 2);
    struct store_conn *c;
    struct store_stmt *st;

    CHECK_INT(store_conn_open(s, &c), ERR_OK);
    CHECK_INT(store_prepare(c, mode_sql, &st), ERR_OK);
    CHECK_INT(store_step(st), STORE_ROW);
    CHECK_STR(store_col_text(st, 0), "wal");
    CHECK_INT(store_step(st), ERR_OK);

    /* Only the writer writes. */
    CHECK_INT(store_exec(c, "INSERT INTO parents (id) VALUES (5)"), ERR_DB);
    store_conn_close(c);
    store_close(s);
    CHECK_INT(raw_count(t.path, "SELECT count(*) FROM parents"), 1);
    tmp_db_remove(&t);
}

/* Statements ------------------------------------------------------------ */

struct insert_args {
    int64_t changes;
    int64_t last_id;
};

static int insert_three(struct store_conn *c, void *arg)
{
    struct insert_args *a = arg;
    int rc = insert_item(c, 10, 1, "ten");

    if (rc == ERR_OK)
        rc = insert_item(c, 11, 1, NULL);
    if (rc == ERR_OK)
        rc = insert_item(c, 12, 2, "twelve");
    a->changes = store_changes(c);
    a->last_id = store_last_insert_id(c);
    return rc;
}

TEST(statements_bind_step_columns)
{
    static const char select_sql[] =
        "SELECT id, note, owner FROM items WHERE owner = ? ORDER BY id";
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = open_store(&cfg, 3);
    struct insert_args a = {0, 0};
    struct store_conn *c;
    struct store_stmt *st;

    CHECK_INT(store_write_sync(s, insert_three, &a), ERR_OK);
    CHECK_INT(a.changes, 1);
    CHECK_INT(a.last_id, 12);

    CHECK_INT(store_conn_open(s, &c), ERR_OK);
    CHECK_INT(store_begin_read(c), ERR_OK);
    CHECK_INT(store_prepare(c, select_sql, &st), ERR_OK);
    CHECK_INT(store_bind_int(st, 1, 1), ERR_OK);
    CHECK_INT(store_step(st), STORE_ROW);
    CHECK_INT(store_col_int(st, 0), 10);
    CHECK_STR(store_col_text(st, 1), "ten");
    CHECK(!store_col_is_null(st, 1));
    CHECK_INT(store_col_int(st, 2), 1);
    CHECK_INT(store_step(st), STORE_ROW);
    CHECK_INT(store_col_int(st, 0), 11);
    CHECK_STR(store_col_text(st, 1), "");
    CHECK(store_col_is_null(st, 1));
    CHECK_INT(store_step(st), ERR_OK);
    CHECK_INT(store_end_read(c), ERR_OK);

    /* A bad index is refused, not ignored. */
    CHECK_INT(store_prepare(c, select_sql, &st), ERR_OK);
    CHECK(store_bind_int(st, 2, 1) != ERR_OK);
    CHECK(store_bind_text(st, 0, "x") != ERR_OK);

    CHECK(store_prepare(c, "SELECT nonsense FROM nowhere", &st) != ERR_OK);
    CHECK_INT(store_prepare(c, "SELECT 1; SELECT 2", &st), ERR_INVALID);
    store_conn_close(c);
    store_close(s);
    tmp_db_remove(&t);
}

static int insert_duplicate(struct store_conn *c, void *arg)
{
    (void)arg;
    return insert_item(c, 1, 1, NULL);
}

static int insert_orphan(struct store_conn *c, void *arg)
{
    (void)arg;
    return store_exec(c, "INSERT INTO children (id, parent) VALUES (1, 99)");
}

static int insert_null_owner(struct store_conn *c, void *arg)
{
    struct store_stmt *st;
    int rc = store_prepare(c, insert_item_sql, &st);

    (void)arg;
    if (rc == ERR_OK)
        rc = store_bind_int(st, 1, 50);
    if (rc == ERR_OK)
        rc = store_bind_null(st, 2);
    if (rc == ERR_OK)
        rc = store_step(st);
    return rc;
}

TEST(statements_constraint_is_conflict)
{
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = open_store(&cfg, 2);

    CHECK_INT(store_write_sync(s, insert_duplicate, NULL), ERR_OK);
    CHECK_INT(store_write_sync(s, insert_duplicate, NULL), ERR_CONFLICT);
    /* foreign_keys=ON makes an orphan a conflict too. */
    CHECK_INT(store_write_sync(s, insert_orphan, NULL), ERR_CONFLICT);
    CHECK_INT(store_write_sync(s, insert_null_owner, NULL), ERR_CONFLICT);

    struct store_stats st;
    store_get_stats(s, &st);
    CHECK_INT(st.writes, 4);
    CHECK_INT(st.write_errors, 3);
    CHECK_INT(st.commits, 4);
    store_close(s);
    CHECK_INT(raw_count(t.path, "SELECT count(*) FROM items"), 1);
    CHECK_INT(raw_count(t.path, "SELECT count(*) FROM children"), 0);
    tmp_db_remove(&t);
}

TEST(statements_cache_same_statement_reset)
{
    static const char echo_sql[] = "SELECT ?";
    static const char one_a[] = "SELECT 1";
    static const char one_b[] = "SELECT 1";
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = open_store(&cfg, 1);
    struct store_conn *c;
    struct store_stmt *st1, *st2, *st3;

    CHECK_INT(store_conn_open(s, &c), ERR_OK);
    CHECK_INT(store_prepare(c, echo_sql, &st1), ERR_OK);
    CHECK_INT(store_bind_int(st1, 1, 7), ERR_OK);
    CHECK_INT(store_step(st1), STORE_ROW);
    CHECK_INT(store_col_int(st1, 0), 7);

    /* Left mid-run and bound: it comes back reset, bindings cleared. */
    CHECK_INT(store_prepare(c, echo_sql, &st2), ERR_OK);
    CHECK(st1 == st2);
    CHECK_INT(store_step(st2), STORE_ROW);
    CHECK(store_col_is_null(st2, 0));
    CHECK_INT(store_step(st2), ERR_OK);

    /* The key is the address, not the text. */
    CHECK_INT(store_prepare(c, one_a, &st1), ERR_OK);
    CHECK_INT(store_prepare(c, one_b, &st2), ERR_OK);
    CHECK_INT(store_prepare(c, one_a, &st3), ERR_OK);
    CHECK(st1 != st2);
    CHECK(st1 == st3);
    CHECK_INT(c->ncached, 3);
    store_conn_close(c);
    store_close(s);
    tmp_db_remove(&t);
}

static bool cache_holds(const struct store_conn *c, const char *sql)
{
    for (size_t i = 0; i < c->ncached; i++) {
        if (c->cache[i].sql == sql)
            return true;
    }
    return false;
}

TEST(statements_cache_evicts_least_recent)
{
    static char texts[STORE_STMT_CACHE_MAX + 1][32];
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = open_store(&cfg, 1);
    struct store_conn *c;
    struct store_stmt *st, *first;

    CHECK_INT(store_conn_open(s, &c), ERR_OK);
    for (int i = 0; i <= STORE_STMT_CACHE_MAX; i++)
        snprintf(texts[i], sizeof(texts[i]), "SELECT %d", i);
    for (int i = 0; i < STORE_STMT_CACHE_MAX; i++)
        CHECK_INT(store_prepare(c, texts[i], &st), ERR_OK);
    CHECK_INT(c->ncached, STORE_STMT_CACHE_MAX);

    /* Touch text 0 so text 1 is now the least recently used. */
    CHECK_INT(store_prepare(c, texts[0], &first), ERR_OK);
    CHECK_INT(store_prepare(c, texts[STORE_STMT_CACHE_MAX], &st), ERR_OK);
    CHECK_INT(c->ncached, STORE_STMT_CACHE_MAX);
    CHECK(!cache_holds(c, texts[1]));
    CHECK(cache_holds(c, texts[0]));
    CHECK_INT(store_prepare(c, texts[0], &st), ERR_OK);
    CHECK(st == first);

    /* An evicted text is simply prepared again, and still runs. */
    CHECK_INT(store_prepare(c, texts[1], &st), ERR_OK);
    CHECK_INT(store_step(st), STORE_ROW);
    CHECK_INT(store_col_int(st, 0), 1);
    store_conn_close(c);
    store_close(s);
    tmp_db_remove(&t);
}

/* Steps a fresh count query once and leaves it on its row. */
static int64_t count_rows_left_open(struct store_conn *c, const char *sql,
                                    struct store_stmt **out)
{
    if (store_prepare(c, sql, out) != ERR_OK || store_step(*out) != STORE_ROW)
        return -1;
    return store_col_int(*out, 0);
}

TEST(statements_reset_releases_snapshot)
{
    static const char count_a[] = "SELECT count(*) FROM items";
    static const char count_b[] = "SELECT count(*) FROM items WHERE 1";
    static const char count_c[] = "SELECT count(*) FROM items WHERE 2";
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = open_store(&cfg, 1);
    struct store_conn *c;
    struct store_stmt *a, *b, *cst;

    CHECK_INT(store_conn_open(s, &c), ERR_OK);
    CHECK_INT(count_rows_left_open(c, count_a, &a), 0);
    CHECK_INT(store_write_sync(s, insert_duplicate, NULL), ERR_OK);

    /* a was left on its row: the connection still reads its snapshot. */
    CHECK_INT(count_rows_left_open(c, count_b, &b), 0);

    CHECK_INT(store_reset(a), ERR_OK);
    CHECK_INT(store_reset(b), ERR_OK);
    CHECK_INT(count_rows_left_open(c, count_c, &cst), 1);
    CHECK_INT(store_reset(cst), ERR_OK);
    store_conn_close(c);
    store_close(s);
    tmp_db_remove(&t);
}

TEST(statements_end_read_resets_open_statements)
{
    static const char count_a[] = "SELECT count(*) FROM items";
    static const char count_b[] = "SELECT count(*) FROM items WHERE 1";
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = open_store(&cfg, 1);
    struct store_conn *c;
    struct store_stmt *a, *b;

    CHECK_INT(store_conn_open(s, &c), ERR_OK);
    CHECK_INT(store_begin_read(c), ERR_OK);
    CHECK_INT(count_rows_left_open(c, count_a, &a), 0);
    CHECK_INT(store_end_read(c), ERR_OK);

    CHECK_INT(store_write_sync(s, insert_duplicate, NULL), ERR_OK);
    CHECK_INT(count_rows_left_open(c, count_b, &b), 1);
    CHECK_INT(store_reset(b), ERR_OK);
    store_conn_close(c);
    store_close(s);
    tmp_db_remove(&t);
}

/* The writer ------------------------------------------------------------ */

/* Leaves a writing statement on its first row, as a careless job might. */
static int apply_leaves_returning(struct store_conn *c, void *arg)
{
    static const char sql[] = "INSERT INTO items (id, owner) "
                              "VALUES (?, 1), (?, 1) RETURNING id";
    int64_t *first = arg;
    struct store_stmt *st;
    int rc = store_prepare(c, sql, &st);

    if (rc == ERR_OK)
        rc = store_bind_int(st, 1, *first);
    if (rc == ERR_OK)
        rc = store_bind_int(st, 2, *first + 1);
    if (rc == ERR_OK)
        rc = store_step(st);
    return rc == STORE_ROW ? ERR_OK : ERR_DB;
}

TEST(writer_resets_statements_a_job_left_open)
{
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = open_store(&cfg, 1);
    int64_t first = 1;

    CHECK_INT(store_write_sync(s, apply_leaves_returning, &first), ERR_OK);
    first = 3;
    CHECK_INT(store_write_sync(s, apply_leaves_returning, &first), ERR_OK);
    store_close(s);
    CHECK_INT(raw_count(t.path, "SELECT count(*) FROM items"), 4);
    tmp_db_remove(&t);
}

TEST(writer_failing_job_rolled_back_alone)
{
    static struct gate gate;
    static struct item_job jobs[3];
    static _Atomic int done_total;
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = open_store(&cfg, 2);

    atomic_store(&done_total, 0);
    for (int i = 0; i < 3; i++) {
        item_job_init(&jobs[i], i + 1);
        jobs[i].done_total = &done_total;
    }
    jobs[1].w.apply = item_apply_clash;

    /* Held behind the gate, the three jobs form one batch. */
    gate_enter(&gate, s);
    for (int i = 0; i < 3; i++)
        CHECK_INT(store_submit(s, &jobs[i].w), ERR_OK);
    gate_open(&gate);
    CHECK(wait_for(&done_total, 3));

    struct store_stats st;
    store_get_stats(s, &st);
    CHECK_INT(st.batch_max_seen, 3);
    CHECK_INT(st.commits, 2);
    CHECK_INT(st.write_errors, 1);
    store_close(s);
    gate_destroy(&gate);

    CHECK_INT(jobs[0].done_rc, ERR_OK);
    CHECK_INT(jobs[1].done_rc, ERR_CONFLICT);
    CHECK_INT(jobs[2].done_rc, ERR_OK);
    for (int i = 0; i < 3; i++)
        CHECK_INT(atomic_load(&jobs[i].done_calls), 1);
    CHECK_INT(raw_count(t.path, "SELECT count(*) FROM items"), 2);
    CHECK_INT(raw_count(t.path, "SELECT sum(id) FROM items"), 1 + 3);
    tmp_db_remove(&t);
}

TEST(writer_done_runs_after_commit)
{
    enum { n = 20 };
    static struct gate gate;
    static struct item_job jobs[n];
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = open_store(&cfg, 1);

    gate_enter(&gate, s);
    for (int i = 0; i < n; i++) {
        item_job_init(&jobs[i], i + 1);
        jobs[i].path = t.path;
        jobs[i].seen_in_apply = -1;
        jobs[i].seen_in_done = -1;
        CHECK_INT(store_submit(s, &jobs[i].w), ERR_OK);
    }
    gate_open(&gate);
    store_close(s);
    gate_destroy(&gate);

    for (int i = 0; i < n; i++) {
        CHECK_INT(jobs[i].done_rc, ERR_OK);
        /* Another handle cannot see the row before COMMIT, and can after. */
        CHECK_INT(jobs[i].seen_in_apply, 0);
        CHECK_INT(jobs[i].seen_in_done, 1);
    }
    tmp_db_remove(&t);
}

struct submitter {
    struct store *s;
    struct item_job *jobs;
    pthread_barrier_t *start;
    _Atomic int *submitted;
    int refused;
};

static void *submitter_main(void *arg)
{
    struct submitter *sub = arg;

    pthread_barrier_wait(sub->start);
    for (int i = 0; i < SUBMITS_PER_THREAD; i++) {
        if (store_submit(sub->s, &sub->jobs[i].w) == ERR_OK)
            atomic_fetch_add(sub->submitted, 1);
        else
            sub->refused++;
    }
    return NULL;
}

TEST(writer_concurrent_submits_group_commit)
{
    static struct gate gate;
    static struct item_job jobs[SUBMITS_TOTAL];
    static _Atomic int submitted, done_total;
    struct submitter subs[SUBMIT_THREADS];
    pthread_t threads[SUBMIT_THREADS];
    pthread_barrier_t start;
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = open_store(&cfg, 3);

    atomic_store(&submitted, 0);
    atomic_store(&done_total, 0);
    for (int i = 0; i < SUBMITS_TOTAL; i++) {
        item_job_init(&jobs[i], i + 1);
        jobs[i].done_total = &done_total;
    }

    /*
     * The writer is held while the threads start together, and let go once
     * a quarter is queued: the rest is submitted while it commits, and the
     * first batch after the gate is full for certain.
     */
    gate_enter(&gate, s);
    pthread_barrier_init(&start, NULL, SUBMIT_THREADS + 1);
    for (int i = 0; i < SUBMIT_THREADS; i++) {
        subs[i] = (struct submitter){.s = s,
                                     .jobs = &jobs[i * SUBMITS_PER_THREAD],
                                     .start = &start,
                                     .submitted = &submitted};
        CHECK_INT(pthread_create(&threads[i], NULL, submitter_main, &subs[i]),
                  0);
    }
    pthread_barrier_wait(&start);
    bool quarter = wait_for(&submitted, SUBMITS_TOTAL / 4);
    gate_open(&gate);
    for (int i = 0; i < SUBMIT_THREADS; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
    CHECK(quarter);
    for (int i = 0; i < SUBMIT_THREADS; i++)
        CHECK_INT(subs[i].refused, 0);

    CHECK(wait_for(&done_total, SUBMITS_TOTAL));
    struct store_stats st;
    store_get_stats(s, &st);
    CHECK_INT(st.writes, SUBMITS_TOTAL + 1);
    CHECK_INT(st.write_errors, 0);
    CHECK_INT(st.queue_full, 0);
    CHECK_INT(st.batch_max_seen, STORE_BATCH_MAX_DEFAULT);
    CHECK(st.commits < st.writes / 2);
    store_close(s);
    gate_destroy(&gate);

    for (int i = 0; i < SUBMITS_TOTAL; i++) {
        CHECK_INT(atomic_load(&jobs[i].done_calls), 1);
        CHECK_INT(jobs[i].done_rc, ERR_OK);
    }
    CHECK_INT(atomic_load(&done_total), SUBMITS_TOTAL);
    CHECK_INT(raw_count(t.path, "SELECT count(*) FROM items"), SUBMITS_TOTAL);
    CHECK_INT(raw_count(t.path, "SELECT sum(id) FROM items"),
              (int64_t)SUBMITS_TOTAL * (SUBMITS_TOTAL + 1) / 2);
    tmp_db_remove(&t);
}

/* A sample of the process's metrics registry, by its exact name. */
static double process_metric(const char *name)
{
    char *text = NULL, key[96];
    size_t len;
    double v = -1;

    CHECK_INT(metrics_render(metrics_process(), &text, &len), ERR_OK);
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *p = strstr(text, key);
    if (p != NULL)
        v = strtod(p + strlen(key), NULL);
    free(text);
    return v;
}

TEST(writer_queue_bound_gives_full)
{
    enum { queue_max = 4 };
    static struct gate gate;
    static struct item_job jobs[queue_max + 1];
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    cfg.queue_max = queue_max;
    struct store *s = open_store(&cfg, 1);

    for (int i = 0; i <= queue_max; i++)
        item_job_init(&jobs[i], i + 1);
    double full0 = process_metric("marquee_store_queue_full_total");
    double writes0 = process_metric("marquee_store_writes_total");
    double batches0 = process_metric("marquee_store_commit_batch_size_count");
    gate_enter(&gate, s);
    for (int i = 0; i < queue_max; i++)
        CHECK_INT(store_submit(s, &jobs[i].w), ERR_OK);
    CHECK_INT(store_submit(s, &jobs[queue_max].w), ERR_FULL);
    CHECK(process_metric("marquee_store_queue_depth") == queue_max);
    CHECK(process_metric("marquee_store_queue_full_total") == full0 + 1);

    struct store_stats st;
    store_get_stats(s, &st);
    CHECK_INT(st.queue_full, 1);
    gate_open(&gate);
    store_close(s);
    gate_destroy(&gate);
    /* The gate's own job and the four behind it, in two batches at least;
     * every batch is one observation of its size. */
    CHECK(process_metric("marquee_store_queue_depth") == 0);
    CHECK(process_metric("marquee_store_writes_total") ==
          writes0 + queue_max + 1);
    double batches = process_metric("marquee_store_commit_batch_size_count");
    CHECK(batches >= batches0 + 2 && batches <= batches0 + queue_max + 1);
    CHECK(process_metric("marquee_store_commit_duration_seconds_count") ==
          process_metric("marquee_store_commit_batch_size_count"));

    for (int i = 0; i < queue_max; i++)
        CHECK_INT(jobs[i].done_rc, ERR_OK);
    CHECK_INT(atomic_load(&jobs[queue_max].done_calls), 0);
    CHECK_INT(raw_count(t.path, "SELECT count(*) FROM items"), queue_max);
    tmp_db_remove(&t);
}

static void *closer_main(void *arg)
{
    store_close(arg);
    return NULL;
}

TEST(writer_close_drains_queue)
{
    enum { n = 10 };
    static struct gate gate;
    static struct item_job jobs[n + 1];
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = open_store(&cfg, 1);
    pthread_t closer;

    for (int i = 0; i <= n; i++)
        item_job_init(&jobs[i], i + 1);
    gate_enter(&gate, s);
    for (int i = 0; i < n; i++)
        CHECK_INT(store_submit(s, &jobs[i].w), ERR_OK);

    /* The closer waits on the gated writer, so s stays valid meanwhile. */
    CHECK_INT(pthread_create(&closer, NULL, closer_main, s), 0);
    bool closing = false;
    for (int waited = 0; waited < WAIT_MS_MAX && !closing; waited++) {
        closing = !store_ready(s);
        if (!closing)
            sleep_ms(1);
    }
    int late_rc = closing ? store_submit(s, &jobs[n].w) : ERR_OK;
    gate_open(&gate);
    pthread_join(closer, NULL);
    gate_destroy(&gate);

    CHECK(closing);
    CHECK_INT(late_rc, ERR_CLOSED);
    CHECK_INT(atomic_load(&gate.done_calls), 1);
    for (int i = 0; i < n; i++) {
        CHECK_INT(atomic_load(&jobs[i].done_calls), 1);
        CHECK_INT(jobs[i].done_rc, ERR_OK);
    }
    CHECK_INT(atomic_load(&jobs[n].done_calls), 0);
    CHECK_INT(raw_count(t.path, "SELECT count(*) FROM items"), n);
    tmp_db_remove(&t);
}

static int apply_fails(struct store_conn *c, void *arg)
{
    int rc = insert_item(c, 77, 1, NULL);

    (void)arg;
    return rc == ERR_OK ? ERR_INVALID : rc;
}

TEST(writer_sync_returns_apply_result)
{
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = open_store(&cfg, 1);

    CHECK_INT(store_write_sync(s, insert_duplicate, NULL), ERR_OK);
    CHECK_INT(store_write_sync(s, apply_fails, NULL), ERR_INVALID);
    store_close(s);
    CHECK_INT(raw_count(t.path, "SELECT count(*) FROM items"), 1);
    CHECK_INT(raw_count(t.path, "SELECT count(*) FROM items WHERE id = 77"), 0);
    tmp_db_remove(&t);
}

TEST(writer_exec_runs_one_statement_and_forgets_it)
{
    struct tmp_db t;
    struct insert_args a = {0};
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    struct store *s = open_store(&cfg, 1);

    CHECK_INT(store_write_sync(s, insert_three, &a), ERR_OK);
    /* A statement that fails is logged, counted and freed; the next runs. */
    CHECK_INT(store_submit_exec(s, "DELETE FROM nowhere WHERE id < ?", 1),
              ERR_OK);
    CHECK_INT(store_submit_exec(s, "DELETE FROM items WHERE owner < ?", 2),
              ERR_OK);
    store_close(s); /* drains the queue */
    CHECK_INT(raw_count(t.path, "SELECT count(*) FROM items"), 1);
    CHECK_INT(raw_count(t.path, "SELECT id FROM items"), 12);
    tmp_db_remove(&t);
}

TEST(writer_busy_database_retried_then_busy)
{
    struct tmp_db t;
    tmp_db_make(&t);
    struct store_config cfg = test_config(&t);
    cfg.busy_timeout_ms = 10;
    struct store *s = open_store(&cfg, 1);
    sqlite3 *other = NULL;

    /* Another process holds the write lock for the whole attempt. */
    CHECK_INT(sqlite3_open_v2(t.path, &other, SQLITE_OPEN_READWRITE, NULL),
              SQLITE_OK);
    CHECK_INT(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL),
              SQLITE_OK);
    int busy_rc = store_write_sync(s, insert_duplicate, NULL);
    sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(other);

    struct store_stats st;
    store_get_stats(s, &st);
    CHECK_INT(busy_rc, ERR_BUSY);
    CHECK_INT(st.busy_retries, 4);
    CHECK_INT(st.writes, 0);
    CHECK_INT(st.commits, 0);

    /* Once the lock is gone the writer carries on. */
    CHECK_INT(store_write_sync(s, insert_duplicate, NULL), ERR_OK);
    store_close(s);
    CHECK_INT(raw_count(t.path, "SELECT count(*) FROM items"), 1);
    tmp_db_remove(&t);
}

HARNESS_MAIN(T(migrations_applied_once),
             T(migrations_concurrent_first_opens), T(migrations_none_gives_version_zero),
             T(migrations_database_newer_is_corrupt),
             T(migrations_failure_rolls_back_that_step),
             T(config_synchronous_full_by_default_normal_allowed),
             T(config_bad_synchronous_refused_and_logged),
             T(config_memory_path_and_unknown_backend_refused),
             T(config_wal_and_read_only_readers),
             T(statements_bind_step_columns),
             T(statements_constraint_is_conflict),
             T(statements_cache_same_statement_reset),
             T(statements_cache_evicts_least_recent),
             T(statements_reset_releases_snapshot),
             T(statements_end_read_resets_open_statements),
             T(writer_resets_statements_a_job_left_open),
             T(writer_failing_job_rolled_back_alone),
             T(writer_done_runs_after_commit),
             T(writer_concurrent_submits_group_commit),
             T(writer_queue_bound_gives_full), T(writer_close_drains_queue),
             T(writer_sync_returns_apply_result),
             T(writer_exec_runs_one_statement_and_forgets_it),
             T(writer_busy_database_retried_then_busy))
