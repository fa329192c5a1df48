/*
 * mq_int.h - the table a messaging backend implements, shared by mq.c and
 * the backends and seen by nothing else.
 *
 * mq.c checks every argument (names, sizes, limits), keeps the metrics and
 * dispatches here, so a backend receives only valid input: names and ids
 * within their limits, a body of at most MQ_BODY_MAX bytes, max within
 * 1..MQ_PREFETCH_MAX, error text NUL-terminated within MQ_ERROR_MAX.  Every
 * function may be called from several threads at once and must be safe
 * so; each returns a code from base/err.h.
 */
#ifndef MARQUEE_MQ_MQ_INT_H
#define MARQUEE_MQ_MQ_INT_H

#include "mq/mq.h"

/* A backend's own state, opaque to mq.c. */
struct mq_backend;

struct mq_ops {
    const char *name;

    /* cfg has its defaults filled in and a clock; it outlives the backend. */
    int (*open)(const struct mq_config *cfg, struct mq_backend **out);
    void (*close)(struct mq_backend *b);

    int (*declare)(struct mq_backend *b, const char *queue,
                   const char *const *patterns, size_t npatterns);

    /* *stored: queues that received a copy; -1 for an id seen before. */
    int (*publish)(struct mq_backend *b, const char *topic, const char *id,
                   const void *body, size_t len, int *stored);

    /*
     * Fills out (cap >= max, n = 0 on entry) with up to max messages
     * claimed under one lease; *dead counts messages it moved to the dead
     * letters because their last allowed lease had ended.
     */
    int (*consume)(struct mq_backend *b, const char *queue, size_t max,
                   struct mq_batch *out, int *dead);

    int (*ack)(struct mq_backend *b, const struct mq_message *m);
    int (*nack)(struct mq_backend *b, const struct mq_message *m, int delay_ms,
                const char *error, bool *dead);

    int (*dead_list)(struct mq_backend *b, const char *queue, int64_t after_tag,
                     size_t max, struct mq_batch *out);
    int (*requeue)(struct mq_backend *b, const char *queue, int64_t tag);
    int (*depth)(struct mq_backend *b, const char *queue, struct mq_depth *out);
};

extern const struct mq_ops mq_sqlite_ops;
extern const struct mq_ops mq_rabbitmq_ops;

/*
 * For backends: gives m a zeroed body buffer of len bytes plus a NUL,
 * owned by the batch, and returns it; NULL when out of memory.
 */
unsigned char *mq_message_body_alloc(struct mq_message *m, size_t len);

/* Copies src into dst of size cap, cut to fit, always NUL-terminated. */
void mq_copy_text(char *dst, size_t cap, const char *src);

#endif
