/*
 * store_int.h - what store.c and the backends share, and nothing else sees.
 *
 * Every backend's connection starts with a `struct store_conn`, and every
 * backend statement with a `struct store_stmt`: the generic code finds the
 * ops table (and for a connection, the statement cache) there, and the
 * backend casts to its own larger struct.  A backend's open() and prepare()
 * allocate the whole struct zeroed and set `ops`; close() frees the
 * connection after store.c has finalized every cached statement.
 */
#ifndef MARQUEE_STORE_STORE_INT_H
#define MARQUEE_STORE_STORE_INT_H

#include <stdint.h>

#include "store/store.h"

/* One cached statement; `sql` is the key, compared by address. */
struct store_cache_entry {
    const char *sql;
    struct store_stmt *st;
    uint64_t used; /* value of the connection's tick when last handed out */
};

struct store_stmt {
    const struct store_ops *ops;
};

struct store_conn {
    const struct store_ops *ops;
    uint64_t tick;       /* counts store_prepare() calls on this connection */
    uint64_t quiet_tick; /* tick when every handed-out statement was reset */
    size_t ncached;
    struct store_cache_entry cache[STORE_STMT_CACHE_MAX];
};

#endif
