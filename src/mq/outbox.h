/*
 * outbox.h - the transactional outbox relay every producer shares.
 *
 * A service that announces its changes writes each event into its own
 * `outbox` table in the transaction of the change (mq_outbox_add), so the
 * event exists exactly when the change does.  The relay, one thread per
 * service process, publishes the unsent rows to the message queue in
 * commit order and marks a row sent only after mq_publish() returned
 * ERR_OK, the queue's confirm.  A crash between the publish and the mark
 * sends the row again; the SQLite queue refuses an id it has seen (within
 * its dedup window) and consumers deduplicate by message id anyway, so
 * delivery is at least once and subscribers see one copy.
 *
 * The table, created by the service's own migration:
 *
 *   CREATE TABLE outbox (id INTEGER PRIMARY KEY, event_id TEXT UNIQUE,
 *                        topic TEXT, body TEXT, created_at INTEGER,
 *                        sent_at INTEGER);      -- NULL until published
 *   CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
 *   CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
 *
 * The relay runs a round when woken (mq_outbox_wake, after a commit that
 * added events) and at least every idle_ms.  A round reads the oldest
 * unsent rows, batch_max at a time, publishes them in order with the
 * event id as message id, marks those that were confirmed, and goes on
 * until none is left.  The first failure ends the round: later rows wait,
 * so events leave in commit order.  After a failed round the next one
 * waits backoff_ms_min, doubling up to backoff_ms_max while rounds keep
 * failing; a wake-up does not cut a backoff short.  Now and then a round
 * deletes up to MQ_OUTBOX_PURGE_MAX rows sent more than keep_ms ago.
 * docs/internals/mq.md ("The outbox relay") has the details.
 *
 * Return codes are from base/err.h.
 */
#ifndef MARQUEE_MQ_OUTBOX_H
#define MARQUEE_MQ_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

struct clock;
struct metrics_series;
struct mq_config;
struct store;
struct store_conn;
struct mq_outbox;

/* Named limits and the defaults a zero setting means. */
#define MQ_OUTBOX_BODY_MAX        4096 /* bytes of a body, NUL included */
#define MQ_OUTBOX_BATCH_MAX       256  /* largest batch_max */
#define MQ_OUTBOX_BATCH_DEFAULT   64   /* rows read and published per step */
#define MQ_OUTBOX_IDLE_MS_DEFAULT 1000 /* a round at least this often */
#define MQ_OUTBOX_BACKOFF_MS_MIN  100  /* default first wait after failing */
#define MQ_OUTBOX_BACKOFF_MS_MAX  1000 /* default longest wait */
#define MQ_OUTBOX_KEEP_MS_DEFAULT (24LL * 3600 * 1000) /* sent rows kept */
#define MQ_OUTBOX_PURGE_MAX       256 /* sent rows deleted per purge */
#define MQ_OUTBOX_PURGE_EVERY_MS  (60 * 1000)
#define MQ_OUTBOX_WAIT_MS_MAX     (3600 * 1000) /* largest idle or backoff */
#define MQ_OUTBOX_DECLARE_MAX     4             /* queues declared at start */

/* A queue the relay declares before its first publish (mq_declare). */
struct mq_outbox_declare {
    const char *queue;
    const char *const *patterns;
    size_t npatterns;
};

/* What differs per service; zero fields take the defaults above. */
struct mq_outbox_config {
    const char *subsystem; /* log lines' subsystem: "catalog", "booking" */
    struct clock *clock;   /* NULL: clock_system() */
    int batch_max;         /* 1..MQ_OUTBOX_BATCH_MAX */
    int idle_ms;           /* 1..MQ_OUTBOX_WAIT_MS_MAX */
    int backoff_ms_min;    /* 1..backoff_ms_max */
    int backoff_ms_max;    /* backoff_ms_min..MQ_OUTBOX_WAIT_MS_MAX */
    int64_t keep_ms;       /* sent rows older than this are deleted */
    /* Gauge set to the count of unsent rows after every round; NULL: none. */
    struct metrics_series *unsent;
    /* Queues to declare (so that no event is dropped as unroutable before
     * its consumer first ran); ndeclare <= MQ_OUTBOX_DECLARE_MAX. */
    const struct mq_outbox_declare *declare;
    size_t ndeclare;
};

/* Counters of one relay, read with mq_outbox_get_stats(). */
struct mq_outbox_stats {
    uint64_t relayed;  /* rows published and marked sent */
    uint64_t failures; /* rounds that ended early: publish, read or mark */
    uint64_t purged;   /* sent rows deleted */
};

/*
 * Inside a store write job (the writer's connection c): inserts an unsent
 * row.  event_id is the message id (1..MQ_ID_MAX bytes), topic a valid mq
 * topic, body text shorter than MQ_OUTBOX_BODY_MAX.  An event id already
 * in the table is left as it is (ERR_OK), so repeating a write adds
 * nothing.  Returns ERR_OK, ERR_INVALID (bad id or topic), ERR_TOOBIG
 * (body), or the store's error: the caller fails its write with it, so
 * the change and its event commit together.
 */
int mq_outbox_add(struct store_conn *c, const char *event_id, const char *topic,
                  const char *body, int64_t now_ms);

/*
 * Opens the queue of mq (copied), declares cfg's queues and starts the
 * relay thread over the outbox table of s (s must outlive the relay: stop
 * it before closing the store).  cfg is copied; its strings, patterns and
 * gauge must outlive the relay.  Returns ERR_OK with *out to stop with
 * mq_outbox_stop(); ERR_INVALID for a setting out of range; mq_open's or
 * mq_declare's error; ERR_NOMEM or ERR_SYS.  Failures are logged under
 * cfg->subsystem; *out is NULL on failure.
 */
int mq_outbox_start(struct store *s, const struct mq_config *mq,
                    const struct mq_outbox_config *cfg, struct mq_outbox **out);

/*
 * Asks for a round soon (after a commit that added rows): never blocks
 * beyond a mutex, never does I/O, so an event-loop thread may call it.
 * Returns ERR_OK, or ERR_CLOSED once mq_outbox_stop() began.  NULL: does
 * nothing, ERR_OK.
 */
int mq_outbox_wake(struct mq_outbox *o);

/* Counters so far (relaxed reads); o may be NULL (zeroes). */
void mq_outbox_get_stats(const struct mq_outbox *o,
                         struct mq_outbox_stats *out);

/*
 * Stops the relay: one last round sends what is committed, unless the
 * last round failed (the queue is down: rows wait for the next start);
 * then closes the queue and frees o.  The final counters go to *final if
 * not NULL.  NULL: does nothing (*final zeroed).  No wake may run during
 * or after it.
 */
void mq_outbox_stop(struct mq_outbox *o, struct mq_outbox_stats *final);

#endif
