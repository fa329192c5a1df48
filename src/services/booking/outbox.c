/*
 * outbox.c - booking events (booking.confirmed, booking.cancelled) through
 * a transactional outbox and the message queue.
 *
 * The write that confirms or cancels a booking inserts its event row in
 * its own transaction (booking_outbox_add), so the event exists exactly
 * when the change does.  The relay that publishes the rows in commit
 * order and marks them sent after the queue's confirm is the one every
 * producer shares (src/mq/outbox.h).  What is booking's own: the bodies
 * (JSON objects the callers build), the backlog gauge, and the queue
 * notify consumes, declared before the first publish so that events are
 * kept even before notify first runs.
 */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "mq/mq.h"
#include "mq/outbox.h"
#include "services/booking/internal.h"

_Static_assert(BOOKING_EVENT_ID_MAX <= MQ_ID_MAX, "an event id is an mq id");

int booking_outbox_add(struct store_conn *c, const char *event_id,
                       const char *topic, json_t *body, int64_t now_ms)
{
    char *text = json_dumps(body, JSON_COMPACT);
    int rc;

    json_decref(body);
    if (text == NULL)
        return ERR_NOMEM;
    rc = mq_outbox_add(c, event_id, topic, text, now_ms);
    free(text);
    return rc;
}

void booking_relay_wake(struct mq_outbox *r)
{
    (void)mq_outbox_wake(r);
}

void booking_relay_stop(struct mq_outbox *r)
{
    struct mq_outbox_stats st;

    if (r == NULL)
        return;
    mq_outbox_stop(r, &st);
    log_info("booking", "booking_events_closed relayed=%llu",
             (unsigned long long)st.relayed);
}

struct mq_outbox *booking_relay_start(struct booking *b,
                                      const struct mq_config *cfg)
{
    static const char *const patterns[] = {"booking.#"};
    static const struct mq_outbox_declare notify = {BOOKING_NOTIFY_QUEUE,
                                                    patterns, 1};
    struct mq_outbox_config oc = {
        .subsystem = "booking",
        .clock = b->clock,
        .unsent = b->metrics.outbox_unsent,
        .declare = &notify,
        .ndeclare = 1,
    };
    struct mq_outbox *r;

    if (mq_outbox_start(b->store, cfg, &oc, &r) != ERR_OK)
        return NULL;
    log_info("booking", "booking_events_open queue=%s declared=%s", cfg->path,
             BOOKING_NOTIFY_QUEUE);
    return r;
}
