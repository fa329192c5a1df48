/*
 * store.h - the storage interface every service uses.
 *
 * A `struct store` is one database owned by one service.  It has:
 *   - one writer thread with its own connection, which applies queued write
 *     jobs in batches: many jobs share one transaction and one durable
 *     COMMIT (group commit), and each job's `done` callback runs only after
 *     that COMMIT returned;
 *   - any number of read connections, one per event-loop thread, opened with
 *     store_conn_open() and used only by the thread that opened it.
 *
 * Backends (SQLite now, PostgreSQL later) implement `struct store_ops`; the
 * services never see which one runs.  SQL uses `?` placeholders, and all
 * values reach the database through bind calls: SQL is never built from
 * input.
 *
 * Return codes are from base/err.h; store_step() also returns STORE_ROW.
 */
#ifndef MARQUEE_STORE_STORE_H
#define MARQUEE_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;
struct store_conn;
struct store_stmt;

/* store_step() result when a row is available (ERR_OK means done). */
#define STORE_ROW 1

/* Named limits. */
#define STORE_BATCH_MAX_DEFAULT 256  /* jobs per group commit */
#define STORE_QUEUE_MAX_DEFAULT 4096 /* queued write jobs before ERR_FULL */
#define STORE_STMT_CACHE_MAX    64   /* cached statements per connection */

struct store_config {
    const char *backend;     /* "sqlite" (NULL means "sqlite") */
    const char *path;        /* database file; ":memory:" is refused */
    int busy_timeout_ms;     /* wait for another process's lock */
    const char *synchronous; /* SQLite: "full" (default) or "normal" */
    int batch_max;           /* 0 = STORE_BATCH_MAX_DEFAULT */
    int queue_max;           /* 0 = STORE_QUEUE_MAX_DEFAULT */
};

/*
 * The store.* configuration keys, for a program's key table (its database
 * file by default at default_path), and a reader that fills a
 * store_config from them.  The strings stay owned by cfg.
 */
/* clang-format off */
#define STORE_CONFIG_KEYS(default_path)                                        \
    {"store.path", CONFIG_STRING, default_path, 0, 0,                          \
     "the service's SQLite database file"},                                    \
    {"store.synchronous", CONFIG_STRING, "full", 0, 0,                         \
     "SQLite synchronous setting: full or normal"},                            \
    {"store.busy_timeout_ms", CONFIG_INT, "5000", 0, 600000,                   \
     "how long to wait for another process's write lock"}
/* clang-format on */

struct config;
void store_config_from(struct store_config *out, const struct config *cfg);

/* One schema step; versions start at 1 and increase by 1. */
struct store_migration {
    int version;
    const char *name;
    const char *sql; /* one or more statements, static text */
};

/*
 * Opens the database, applies every migration newer than the recorded
 * schema version (each in its own transaction), and starts the writer.
 * Fails with ERR_CORRUPT if the database is newer than the migrations
 * given.  On success *out is owned by the caller: free with store_close().
 */
int store_open(const struct store_config *cfg,
               const struct store_migration *migrations, size_t nmigrations,
               struct store **out);

/*
 * Stops taking writes, finishes every queued job (their done callbacks
 * run), stops the writer and closes the database.  Read connections must
 * be closed before.
 */
void store_close(struct store *s);

/* True once open and migrated, until store_close() begins. */
bool store_ready(const struct store *s);

/* The schema version after migrations. */
int store_schema_version(const struct store *s);

/*
 * Opens a read connection for the calling thread; close it on that thread.
 * It is read-only: every write goes through the writer.
 */
int store_conn_open(struct store *s, struct store_conn **out);
void store_conn_close(struct store_conn *c);

/*
 * Returns a prepared statement for sql on c, reset and with bindings
 * cleared.  Statements are cached per connection by the address of sql, so
 * pass string constants.  The statement stays owned by the connection.
 * sql holds one statement.
 *
 * The cache holds STORE_STMT_CACHE_MAX statements; when it is full the one
 * handed out least recently is finalized.  So a statement stays valid until
 * STORE_STMT_CACHE_MAX other SQL texts have been prepared on c after it.
 * Use it within the write job or read transaction (below) that prepared it:
 * statements left unfinished are reset when that ends.
 */
int store_prepare(struct store_conn *c, const char *sql,
                  struct store_stmt **out);

/*
 * Ends a statement's use: resets it so that it holds no read snapshot or
 * lock.  Call it when done with a statement, before returning to the event
 * loop; a statement left mid-result would pin an old snapshot.
 */
int store_reset(struct store_stmt *st);

/* Bind by 1-based index. */
int store_bind_int(struct store_stmt *st, int idx, int64_t v);
int store_bind_text(struct store_stmt *st, int idx, const char *v);
int store_bind_null(struct store_stmt *st, int idx);

/* STORE_ROW, ERR_OK when done, or an error (ERR_CONFLICT on a constraint). */
int store_step(struct store_stmt *st);

/* Columns by 0-based index, valid until the next step or reset. */
int64_t store_col_int(struct store_stmt *st, int col);
const char *store_col_text(struct store_stmt *st, int col); /* "" if NULL */
bool store_col_is_null(struct store_stmt *st, int col);

/* Rows changed by the last statement, and the last inserted row id. */
int64_t store_changes(struct store_conn *c);
int64_t store_last_insert_id(struct store_conn *c);

/* Runs static SQL with no parameters (schema, pragmas).  Not for input. */
int store_exec(struct store_conn *c, const char *sql);

/*
 * Explicit transactions on a read connection (consistent multi-query read).
 * store_end_read() resets the statements prepared since store_begin_read().
 */
int store_begin_read(struct store_conn *c);
int store_end_read(struct store_conn *c);

/*
 * A write job.  apply() runs on the writer thread inside the batch's
 * transaction, wrapped in a savepoint: if it returns an error its changes
 * alone are rolled back and the others in the batch still commit.  done()
 * runs on the writer thread after the batch's COMMIT returned (rc is
 * apply's result, or the commit's error) and must not block; typically it
 * posts the result to the caller's event loop.  The job's memory belongs
 * to the caller and must stay valid until done() runs.
 */
struct store_write {
    int (*apply)(struct store_conn *c, void *arg);
    void (*done)(void *arg, int rc);
    void *arg;
    struct store_write *next; /* private to the store */
};

/*
 * Queues a write.  ERR_FULL when the queue holds queue_max jobs (the caller
 * answers 503), ERR_CLOSED after store_close() began.  On error done() is
 * not called.
 */
int store_submit(struct store *s, struct store_write *w);

/*
 * Queues one statement with one integer parameter (?1 = value), for
 * housekeeping whose outcome nobody waits for, such as deleting expired
 * rows in bounded batches.  sql must outlive the write (a string
 * literal).  ERR_OK once queued, else ERR_NOMEM or store_submit()'s error;
 * a failure at commit is logged by the backend and counted in
 * write_errors.
 */
int store_submit_exec(struct store *s, const char *sql, int64_t value);

/*
 * Submits apply(arg) and waits until it is committed; returns its result.
 * For start-up code and tools, never for an event-loop thread.
 */
int store_write_sync(struct store *s, int (*apply)(struct store_conn *, void *),
                     void *arg);

struct store_stats {
    uint64_t commits;      /* batches committed */
    uint64_t writes;       /* jobs whose apply() ran */
    uint64_t write_errors; /* jobs whose apply() failed */
    uint64_t busy_retries; /* BEGIN retried after ERR_BUSY */
    uint64_t batch_max_seen;
    uint64_t queue_full; /* submits refused with ERR_FULL */
};

/* A consistent-enough snapshot of the writer's counters (relaxed reads). */
void store_get_stats(const struct store *s, struct store_stats *out);

/*
 * Backend table.  A backend folder (store/sqlite/) provides one of these;
 * store.c holds the generic parts (statement cache, writer, migrations).
 * reset() also clears the bindings.  in_transaction() lets the writer tell
 * whether a failed COMMIT left a transaction to roll back, since some
 * failures end it on their own.
 */
struct store_ops {
    const char *name;
    int (*open)(const struct store_config *cfg, bool writer,
                struct store_conn **out);
    void (*close)(struct store_conn *c);
    int (*exec)(struct store_conn *c, const char *sql);
    int (*prepare)(struct store_conn *c, const char *sql,
                   struct store_stmt **out);
    void (*finalize)(struct store_stmt *st);
    int (*reset)(struct store_stmt *st);
    int (*bind_int)(struct store_stmt *st, int idx, int64_t v);
    int (*bind_text)(struct store_stmt *st, int idx, const char *v);
    int (*bind_null)(struct store_stmt *st, int idx);
    int (*step)(struct store_stmt *st);
    int64_t (*col_int)(struct store_stmt *st, int col);
    const char *(*col_text)(struct store_stmt *st, int col);
    bool (*col_is_null)(struct store_stmt *st, int col);
    int64_t (*changes)(struct store_conn *c);
    int64_t (*last_insert_id)(struct store_conn *c);
    bool (*in_transaction)(struct store_conn *c);
};

extern const struct store_ops store_sqlite_ops;

#endif
