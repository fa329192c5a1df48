/*
 * sqlite.c - the SQLite backend of the store.
 *
 * One sqlite3 handle per connection, opened with SQLITE_OPEN_NOMUTEX since
 * a connection is used by one thread.  The writer's handle switches the
 * file to WAL and sets `synchronous`; read handles are opened read-only.
 * Every failure is logged here, once, with SQLite's message and the start
 * of the SQL, and mapped to the store's codes.
 */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "store/store.h"
#include "store/store_int.h"

/* Characters of SQL, and of SQLite's message, quoted in a log line. */
#define STORE_SQL_LOG_MAX    80
#define STORE_ERRMSG_LOG_MAX 200

struct sqlite_conn {
    struct store_conn base; /* first: store.c sees only this */
    sqlite3 *db;
};

struct sqlite_stmt {
    struct store_stmt base; /* first: store.c sees only this */
    sqlite3_stmt *stmt;
    const char *sql; /* the caller's static text, for log lines */
};

static sqlite3 *conn_db(struct store_conn *c)
{
    return ((struct sqlite_conn *)c)->db;
}

static struct sqlite_stmt *stmt_of(struct store_stmt *st)
{
    return (struct sqlite_stmt *)st;
}

static int sqlite_map(int code)
{
    switch (code & 0xff) {
    case SQLITE_CONSTRAINT: return ERR_CONFLICT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return ERR_BUSY;
    default: return ERR_DB;
    }
}

/*
 * Copies at most cap - 1 bytes of in onto one line: runs of white space
 * and control bytes become one space and `"` becomes `'`, so a multi-line
 * query never splits a log line or breaks its quoting.
 */
static void sqlite_text_clean(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    bool space = false;

    for (; *in != '\0' && n + 1 < cap; in++) {
        unsigned char ch = (unsigned char)*in;

        if (ch <= ' ' || ch == 0x7f) {
            if (!space && n > 0)
                out[n++] = ' ';
            space = true;
            continue;
        }
        space = false;
        out[n++] = ch == '"' ? '\'' : (char)ch;
    }
    out[n] = '\0';
}

static void sqlite_log_failure(enum log_level level, const char *op, int code,
                               const char *err, const char *sql)
{
    char msg[STORE_ERRMSG_LOG_MAX + 1];
    char head[STORE_SQL_LOG_MAX + 1];

    if (!log_enabled(level))
        return;
    sqlite_text_clean(err, msg, sizeof(msg));
    sqlite_text_clean(sql, head, sizeof(head));
    log_write(level, "store", "%s_failed code=%d err=\"%s\" sql=\"%s\"", op,
              code, msg, head);
}

/*
 * Logs a failed call on db and returns its store code.  A conflict is an
 * answer callers expect (a seat already taken), so it is only a debug line;
 * lock contention is a warning; anything else is an error.
 */
static int sqlite_fail(sqlite3 *db, int code, const char *op, const char *sql)
{
    int rc = sqlite_map(code);
    enum log_level level = rc == ERR_CONFLICT ? LOG_DEBUG
                           : rc == ERR_BUSY   ? LOG_WARN
                                              : LOG_ERROR;

    sqlite_log_failure(level, op, code, sqlite3_errmsg(db), sql);
    return rc;
}

static int sqlite_exec_db(sqlite3 *db, const char *sql)
{
    int code = sqlite3_exec(db, sql, NULL, NULL, NULL);

    if (code != SQLITE_OK)
        return sqlite_fail(db, code, "exec", sql);
    return ERR_OK;
}

/* Picks the pragma for cfg->synchronous; ERR_CONFIG for other values. */
static int sqlite_sync_pragma(const struct store_config *cfg, const char **out)
{
    const char *v = cfg->synchronous;

    if (v == NULL || v[0] == '\0' || strcmp(v, "full") == 0) {
        *out = "PRAGMA synchronous=FULL";
        return ERR_OK;
    }
    if (strcmp(v, "normal") == 0) {
        *out = "PRAGMA synchronous=NORMAL";
        return ERR_OK;
    }
    log_error(
        "store",
        "bad_config key=store.synchronous value=\"%s\" expected=full|normal",
        v);
    return ERR_CONFIG;
}

static int sqlite_check_config(const struct store_config *cfg)
{
    const char *path = cfg->path;

    /* Each handle would open its own private in-memory database. */
    if (path == NULL || path[0] == '\0' || strcmp(path, ":memory:") == 0) {
        log_error("store",
                  "bad_config key=store.path value=\"%s\" expected=file",
                  path != NULL ? path : "");
        return ERR_CONFIG;
    }
    if (cfg->busy_timeout_ms < 0) {
        log_error("store", "bad_config key=store.busy_timeout_ms value=%d",
                  cfg->busy_timeout_ms);
        return ERR_CONFIG;
    }
    return ERR_OK;
}

/*
 * Pause between tries of switching a new file to WAL.  SQLite answers that
 * pragma with SQLITE_BUSY at once, without its busy handler, while another
 * process is switching the same new file (two instances of a service
 * started together); the tries together last about busy_timeout_ms.
 */
#define STORE_WAL_RETRY_MS 10

/* journal_mode answers with the mode in force, which may not be WAL. */
static int sqlite_set_wal(sqlite3 *db, const struct store_config *cfg)
{
    static const char sql[] = "PRAGMA journal_mode=WAL";
    int tries_left = cfg->busy_timeout_ms / STORE_WAL_RETRY_MS + 1;
    sqlite3_stmt *stmt;
    int rc = ERR_OK;
    int code = sqlite3_prepare_v3(db, sql, -1, 0, &stmt, NULL);

    if (code != SQLITE_OK)
        return sqlite_fail(db, code, "prepare", sql);
    while ((code = sqlite3_step(stmt)) == SQLITE_BUSY && --tries_left > 0) {
        sqlite3_reset(stmt);
        sqlite3_sleep(STORE_WAL_RETRY_MS);
    }
    if (code != SQLITE_ROW) {
        rc = sqlite_fail(db, code, "step", sql);
        goto out_finalize;
    }
    const char *mode = (const char *)sqlite3_column_text(stmt, 0);
    if (mode == NULL || strcmp(mode, "wal") != 0) {
        log_error("store", "wal_refused path=\"%s\" journal_mode=%s",
                  cfg->path, mode != NULL ? mode : "none");
        rc = ERR_DB;
    }

out_finalize:
    sqlite3_finalize(stmt);
    return rc;
}

static int sqlite_setup_writer(sqlite3 *db, const struct store_config *cfg,
                               const char *sync_pragma)
{
    int rc = sqlite_set_wal(db, cfg);

    if (rc == ERR_OK)
        rc = sqlite_exec_db(db, sync_pragma);
    if (rc == ERR_OK)
        rc = sqlite_exec_db(db, "PRAGMA foreign_keys=ON");
    return rc;
}

static int sqlite_open(const struct store_config *cfg, bool writer,
                       struct store_conn **out)
{
    const char *sync_pragma;
    int rc = sqlite_check_config(cfg);

    if (rc == ERR_OK)
        rc = sqlite_sync_pragma(cfg, &sync_pragma);
    if (rc != ERR_OK)
        return rc;

    struct sqlite_conn *sc = calloc(1, sizeof(*sc));
    if (sc == NULL) {
        log_error("store", "open_failed path=\"%s\" err=\"out of memory\"",
                  cfg->path);
        return ERR_NOMEM;
    }
    sc->base.ops = &store_sqlite_ops;

    int flags = SQLITE_OPEN_NOMUTEX;
    flags |= writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                    : SQLITE_OPEN_READONLY;
    int code = sqlite3_open_v2(cfg->path, &sc->db, flags, NULL);
    if (code != SQLITE_OK) {
        log_error("store", "open_failed path=\"%s\" code=%d err=\"%s\"",
                  cfg->path, code, sqlite3_errmsg(sc->db));
        rc = sqlite_map(code);
        goto out_close_db;
    }
    sqlite3_extended_result_codes(sc->db, 1);
    sqlite3_busy_timeout(sc->db, cfg->busy_timeout_ms);

    if (writer)
        rc = sqlite_setup_writer(sc->db, cfg, sync_pragma);
    else
        rc = sqlite_exec_db(sc->db, "PRAGMA foreign_keys=ON");
    /* Reads from memory-mapped pages instead of a read(2) per page. */
    if (rc == ERR_OK)
        rc = sqlite_exec_db(sc->db, "PRAGMA mmap_size=268435456");
    if (rc != ERR_OK)
        goto out_close_db;

    *out = &sc->base;
    return ERR_OK;

out_close_db:
    /* sqlite3_open_v2 allocates a handle even when it fails. */
    sqlite3_close(sc->db);
    free(sc);
    return rc;
}

static void sqlite_close(struct store_conn *c)
{
    struct sqlite_conn *sc = (struct sqlite_conn *)c;
    int code = sqlite3_close(sc->db);

    /* store.c finalizes every statement first, so this is a bug. */
    if (code != SQLITE_OK)
        sqlite_fail(sc->db, code, "close", "");
    free(sc);
}

static int sqlite_exec(struct store_conn *c, const char *sql)
{
    return sqlite_exec_db(conn_db(c), sql);
}

/* True when s holds nothing but white space and semicolons. */
static bool sql_is_blank(const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s != ';' && (unsigned char)*s > ' ')
            return false;
    }
    return true;
}

static int sqlite_prepare(struct store_conn *c, const char *sql,
                          struct store_stmt **out)
{
    sqlite3 *db = conn_db(c);
    sqlite3_stmt *stmt;
    const char *tail;
    int code = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt,
                                  &tail);

    if (code != SQLITE_OK)
        return sqlite_fail(db, code, "prepare", sql);

    /* A second statement would be ignored silently; that is a bug. */
    if (stmt == NULL || !sql_is_blank(tail)) {
        sqlite_log_failure(LOG_ERROR, "prepare", SQLITE_MISUSE,
                           "not one statement", sql);
        sqlite3_finalize(stmt);
        return ERR_INVALID;
    }

    struct sqlite_stmt *ss = calloc(1, sizeof(*ss));
    if (ss == NULL) {
        log_error("store", "prepare_failed err=\"out of memory\"");
        sqlite3_finalize(stmt);
        return ERR_NOMEM;
    }
    ss->base.ops = &store_sqlite_ops;
    ss->stmt = stmt;
    ss->sql = sql;
    *out = &ss->base;
    return ERR_OK;
}

static void sqlite_finalize(struct store_stmt *st)
{
    struct sqlite_stmt *ss = stmt_of(st);

    sqlite3_finalize(ss->stmt);
    free(ss);
}

/*
 * sqlite3_reset() repeats the error of the last step, which was logged and
 * returned then; here it only makes the statement ready to run again.
 */
static int sqlite_reset(struct store_stmt *st)
{
    struct sqlite_stmt *ss = stmt_of(st);

    sqlite3_reset(ss->stmt);
    sqlite3_clear_bindings(ss->stmt);
    return ERR_OK;
}

static int sqlite_bind_result(struct sqlite_stmt *ss, int code)
{
    if (code != SQLITE_OK)
        return sqlite_fail(sqlite3_db_handle(ss->stmt), code, "bind", ss->sql);
    return ERR_OK;
}

static int sqlite_bind_int(struct store_stmt *st, int idx, int64_t v)
{
    struct sqlite_stmt *ss = stmt_of(st);

    return sqlite_bind_result(ss, sqlite3_bind_int64(ss->stmt, idx, v));
}

/* SQLITE_TRANSIENT copies v: callers may bind from short-lived buffers. */
static int sqlite_bind_text(struct store_stmt *st, int idx, const char *v)
{
    struct sqlite_stmt *ss = stmt_of(st);

    if (v == NULL)
        return sqlite_bind_result(ss, sqlite3_bind_null(ss->stmt, idx));
    return sqlite_bind_result(
        ss, sqlite3_bind_text(ss->stmt, idx, v, -1, SQLITE_TRANSIENT));
}

static int sqlite_bind_null(struct store_stmt *st, int idx)
{
    struct sqlite_stmt *ss = stmt_of(st);

    return sqlite_bind_result(ss, sqlite3_bind_null(ss->stmt, idx));
}

static int sqlite_step(struct store_stmt *st)
{
    struct sqlite_stmt *ss = stmt_of(st);
    int code = sqlite3_step(ss->stmt);

    if (code == SQLITE_ROW)
        return STORE_ROW;
    if (code == SQLITE_DONE)
        return ERR_OK;
    return sqlite_fail(sqlite3_db_handle(ss->stmt), code, "step", ss->sql);
}

static int64_t sqlite_col_int(struct store_stmt *st, int col)
{
    return sqlite3_column_int64(stmt_of(st)->stmt, col);
}

static const char *sqlite_col_text(struct store_stmt *st, int col)
{
    const unsigned char *v = sqlite3_column_text(stmt_of(st)->stmt, col);

    return v != NULL ? (const char *)v : "";
}

static bool sqlite_col_is_null(struct store_stmt *st, int col)
{
    return sqlite3_column_type(stmt_of(st)->stmt, col) == SQLITE_NULL;
}

static int64_t sqlite_changes(struct store_conn *c)
{
    return sqlite3_changes64(conn_db(c));
}

static int64_t sqlite_last_insert_id(struct store_conn *c)
{
    return sqlite3_last_insert_rowid(conn_db(c));
}

static bool sqlite_in_transaction(struct store_conn *c)
{
    return sqlite3_get_autocommit(conn_db(c)) == 0;
}

const struct store_ops store_sqlite_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .exec = sqlite_exec,
    .prepare = sqlite_prepare,
    .finalize = sqlite_finalize,
    .reset = sqlite_reset,
    .bind_int = sqlite_bind_int,
    .bind_text = sqlite_bind_text,
    .bind_null = sqlite_bind_null,
    .step = sqlite_step,
    .col_int = sqlite_col_int,
    .col_text = sqlite_col_text,
    .col_is_null = sqlite_col_is_null,
    .changes = sqlite_changes,
    .last_insert_id = sqlite_last_insert_id,
    .in_transaction = sqlite_in_transaction,
};
