/*
 * mq.h - the messaging interface every service uses.
 *
 * The model is RabbitMQ's, so that its backend fits under the same calls:
 *   - a message is published to a topic ("booking.confirmed") with an id
 *     chosen by the publisher and a body of bytes;
 *   - a queue is named and durable, and bound to one or more topic
 *     patterns: words separated by '.', where '*' stands for exactly one
 *     word and '#' for zero or more ("booking.*", "show.#", "#");
 *   - a publish stores one copy of the message in every queue whose
 *     bindings match its topic, and returns once every copy is durable
 *     (the publisher confirm).  A message that matches no binding is
 *     dropped, as RabbitMQ drops an unroutable message;
 *   - a consumer claims up to `prefetch` messages of one queue under a
 *     lease, then acks each one (done: removed) or nacks it (back to the
 *     queue after a delay).  A lease that ends without an ack gives the
 *     message back, so delivery is at least once: consumers deduplicate
 *     by message id;
 *   - a message delivered max_attempts times and then nacked, or whose
 *     lease then expires, moves to its queue's dead letters, with the last
 *     error; an operator lists them and requeues them.
 *
 * The default backend is a durable queue in SQLite (mq/sqlite/); the
 * second is a RabbitMQ broker (mq/rabbitmq/, mq.backend = rabbitmq and
 * mq.url).  The services never see which backend runs.
 * docs/internals/mq.md says how each is built and why it is correct under
 * concurrency, and lists where RabbitMQ differs by design: it does not
 * deduplicate by id, *stored is only 0 or 1, and a lease ends when its
 * holder's connection closes or the holder claims again after lease_ms,
 * not by time alone.
 *
 * Threads: after mq_open() returns, every call below may be made from any
 * thread at the same time, and several processes may open the same queue
 * file.  The calls block until the backend answered (the SQLite backend:
 * until its write transaction committed; RabbitMQ: until the broker
 * answered, at most 5 s, the calls of one handle taking turns on its one
 * connection), so call them from a worker thread, never from an
 * event-loop thread.  mq_close() must not overlap
 * any other call on the same handle.  A handle does not survive fork():
 * each process opens its own.
 *
 * Return codes are from base/err.h.
 */
#ifndef MARQUEE_MQ_MQ_H
#define MARQUEE_MQ_MQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct clock;
struct config;
struct mq;

/* Named limits. */
#define MQ_BODY_MAX     (64 * 1024) /* bytes of one message body */
#define MQ_NAME_MAX     64          /* bytes of a queue name */
#define MQ_TOPIC_MAX    128         /* bytes of a topic or a pattern */
#define MQ_ID_MAX       128         /* bytes of a message id */
#define MQ_ERROR_MAX    256         /* bytes of error text kept (longer: cut) */
#define MQ_PREFETCH_MAX 256         /* messages claimed at once */
#define MQ_BINDINGS_MAX 16          /* patterns in one mq_declare() call */
#define MQ_QUEUES_MAX   64          /* queues one handle reports metrics of */
#define MQ_ATTEMPTS_MAX 100         /* highest max_attempts accepted */
#define MQ_LEASE_MS_MAX (24 * 3600 * 1000) /* longest lease and nack delay */

/* How long a published id is remembered to refuse a second copy. */
#define MQ_DEDUP_WINDOW_MS_DEFAULT (7LL * 24 * 3600 * 1000)

struct mq_config {
    const char *backend;     /* "sqlite" or "rabbitmq" (NULL: "sqlite") */
    const char *path;        /* the queue file (SQLite) */
    const char *url;         /* RabbitMQ: amqp://user:pass@host:port/vhost */
    int max_attempts;        /* deliveries before dead-lettering, 1.. */
    int lease_ms;            /* how long a claim holds its messages */
    int prefetch;            /* default and largest claim of mq_consume() */
    int busy_timeout_ms;     /* wait for another process's write lock */
    const char *synchronous; /* SQLite: "full" (default) or "normal" */
    int64_t dedup_window_ms; /* 0 = MQ_DEDUP_WINDOW_MS_DEFAULT */
    struct clock *clock;     /* wall time of leases; NULL = clock_system() */
};

/*
 * The mq.* configuration keys, for a program's key table, and a reader
 * that fills an mq_config from them.  The strings stay owned by cfg; the
 * clock is the system's.
 */
/* clang-format off */
#define MQ_CONFIG_KEYS                                                         \
    {"mq.backend", CONFIG_STRING, "sqlite", 0, 0,                              \
     "messaging backend: sqlite or rabbitmq"},                                 \
    {"mq.path", CONFIG_STRING, "var/queue.db", 0, 0,                           \
     "the SQLite queue file, shared by every process of the machine"},         \
    {"mq.url", CONFIG_STRING, "amqp://guest:guest@localhost:5672/", 0, 0,      \
     "the RabbitMQ broker: amqp://user:pass@host:port/vhost"},                 \
    {"mq.max_attempts", CONFIG_INT, "5", 1, MQ_ATTEMPTS_MAX,                   \
     "deliveries of a message before it goes to the dead letters"},            \
    {"mq.lease_ms", CONFIG_INT, "30000", 1, MQ_LEASE_MS_MAX,                   \
     "how long a consumer holds claimed messages before they come back"},      \
    {"mq.prefetch", CONFIG_INT, "32", 1, MQ_PREFETCH_MAX,                      \
     "messages a consumer claims at once"}
/* clang-format on */

void mq_config_from(struct mq_config *out, const struct config *cfg);

/*
 * Whether cfg names a queue at all: mq.path or mq.backend given (not left
 * at its default).  Services that may run without a queue ask this
 * before they open one.
 */
bool mq_configured(const struct config *cfg);

/*
 * One delivered message, or one dead letter.  The strings are
 * NUL-terminated; body holds len bytes followed by a NUL (so a text body
 * can be read as a string) and belongs to the batch.
 */
struct mq_message {
    int64_t tag;   /* the backend's handle of this copy */
    int64_t lease; /* the claim holding it; 0 for a dead letter */
    char queue[MQ_NAME_MAX + 1];
    char id[MQ_ID_MAX + 1];
    char topic[MQ_TOPIC_MAX + 1];
    unsigned char *body;
    size_t len;
    int attempt;                  /* deliveries so far, this one included */
    char error[MQ_ERROR_MAX + 1]; /* last nack's error, "" if none */
    int64_t dead_ms;              /* wall time it was dead-lettered, 0 if not */
};

/* What mq_consume() and mq_dead_list() fill; free with mq_batch_free(). */
struct mq_batch {
    size_t n;
    size_t cap;
    struct mq_message msgs[];
};

void mq_batch_free(struct mq_batch *b);

/* Counts of one queue's messages. */
struct mq_depth {
    int64_t ready;  /* waiting, including those delayed by a nack */
    int64_t leased; /* claimed and not yet acked (leases may have ended) */
    int64_t dead;   /* in the dead letters */
};

/*
 * Opens the backend named by cfg (copied; its strings too).  ERR_CONFIG
 * with a log line naming the key when a setting is out of range or the
 * backend unknown; otherwise the backend's error (ERR_DB, ERR_BUSY, ...).
 * RabbitMQ opens while the broker is down: calls fail with ERR_IO until
 * it is reachable, and the handle reconnects on its own.
 * On success *out is owned by the caller: free with mq_close().
 */
int mq_open(const struct mq_config *cfg, struct mq **out);

/* Closes the handle.  Messages stay in the queue file. */
void mq_close(struct mq *q);

/*
 * Declares a durable queue (created if missing) and binds it to
 * npatterns patterns (1..MQ_BINDINGS_MAX).  Idempotent and additive:
 * bindings already there stay.  Queue names are 1..MQ_NAME_MAX bytes of
 * [a-z0-9_.-]; a pattern is words of [a-z0-9_-], '*' or '#' joined by
 * '.'.  ERR_INVALID for a bad name or pattern.
 */
int mq_declare(struct mq *q, const char *queue, const char *const *patterns,
               size_t npatterns);

/*
 * Publishes body (len bytes, at most MQ_BODY_MAX) under topic (words of
 * [a-z0-9_-] joined by '.') and id (1..MQ_ID_MAX printable ASCII bytes,
 * no space).  Returns ERR_OK once the message is durable in every bound
 * queue.  An id already published within the dedup window is not stored
 * again: ERR_OK, and *stored (if not NULL) is 0.  Otherwise *stored is
 * the number of queues that received a copy (0 when none is bound).
 * ERR_TOOBIG for a body over MQ_BODY_MAX, ERR_INVALID for a bad topic or
 * id, ERR_FULL when the backend's queue of writes is full, or the
 * backend's error; a failed publish stored nothing and may be retried
 * with the same id.  RabbitMQ: no dedup (a second publish of an id is
 * stored again), *stored is 1 when some queue took a copy, and a publish
 * that failed with ERR_IO or ERR_TIMEOUT may have been stored.
 */
int mq_publish(struct mq *q, const char *topic, const char *id,
               const void *body, size_t len, int *stored);

/*
 * Claims up to max messages of queue (0 means the configured prefetch;
 * more than it is cut to it) that are ready, oldest first, under one
 * lease of lease_ms.  No other consumer gets them until the lease ends;
 * then they are delivered again with attempt + 1.  On ERR_OK *out is a
 * batch (possibly empty) owned by the caller.  ERR_NOTFOUND if the queue
 * was never declared.
 */
int mq_consume(struct mq *q, const char *queue, size_t max,
               struct mq_batch **out);

/*
 * Acks a delivered message: it is removed.  ERR_CONFLICT if its lease was
 * lost (it ended and another consumer claimed the message, or it was
 * dead-lettered): the message is someone else's now.
 */
int mq_ack(struct mq *q, const struct mq_message *m);

/*
 * Nacks a delivered message: it becomes ready again after delay_ms
 * (0..MQ_LEASE_MS_MAX), with error (may be NULL; cut to MQ_ERROR_MAX
 * bytes) kept as its last error.  If it has already been delivered
 * max_attempts times it goes to the dead letters instead, and *dead (if
 * not NULL) is set true.  ERR_CONFLICT if its lease was lost.
 */
int mq_nack(struct mq *q, const struct mq_message *m, int delay_ms,
            const char *error, bool *dead);

/*
 * Lists up to max (1..MQ_PREFETCH_MAX) dead letters of queue whose tag is
 * greater than after_tag, lowest tag first: pass the last tag seen to
 * page on.  On ERR_OK *out is a batch owned by the caller.
 */
int mq_dead_list(struct mq *q, const char *queue, int64_t after_tag, size_t max,
                 struct mq_batch **out);

/*
 * Operator action: puts the dead letter `tag` of queue back, ready now,
 * with its attempts counted from zero again.  ERR_NOTFOUND if the queue
 * holds no such dead letter.
 */
int mq_requeue(struct mq *q, const char *queue, int64_t tag);

/*
 * Counts queue's messages into *out and sets its depth gauges.
 * ERR_NOTFOUND if the queue was never declared.
 */
int mq_depth(struct mq *q, const char *queue, struct mq_depth *out);

/*
 * True if topic matches pattern under the rules above.  Both must be
 * valid (mq_topic_valid, mq_pattern_valid).
 */
bool mq_topic_match(const char *pattern, const char *topic);
bool mq_topic_valid(const char *topic);
bool mq_pattern_valid(const char *pattern);
bool mq_queue_name_valid(const char *name);

#endif
