/*
 * outbox.c - show events through a transactional outbox and the message
 * queue: the "outbox" backend of struct show_events_ops (see events.h).
 *
 * A show write inserts its event row in its own transaction
 * (show_events_outbox_add, called from the write's apply function), so
 * the event exists exactly when the change does.  The relay that
 * publishes the rows in commit order and marks them sent after the
 * queue's confirm is the one every producer shares (src/mq/outbox.h);
 * what is the catalog's own is the event's id and body, and its log
 * lines at open and close.  publish() only wakes the relay.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "mq/mq.h"
#include "mq/outbox.h"
#include "services/catalog/events.h"
#include "store/store.h"

_Static_assert(CATALOG_EVENTS_ID_MAX <= MQ_ID_MAX, "an event id is an mq id");
_Static_assert(CATALOG_EVENTS_BODY_MAX <= MQ_OUTBOX_BODY_MAX,
               "a body fits the relay's rows");

int show_events_outbox_add(struct store_conn *c, const struct show_event *ev,
                           int64_t now_ms)
{
    char id[CATALOG_EVENTS_ID_MAX], body[CATALOG_EVENTS_BODY_MAX];

    if (ev->type == NULL || !mq_topic_valid(ev->type) ||
        strlen(ev->type) >= CATALOG_EVENTS_TYPE_MAX)
        return ERR_INVALID;
    snprintf(id, sizeof(id), "show.%" PRId64 ".v%" PRId64, ev->show_id,
             ev->version);
    snprintf(body, sizeof(body),
             "{\"type\":\"%s\",\"show_id\":%" PRId64 ",\"version\":%" PRId64
             "}",
             ev->type, ev->show_id, ev->version);
    return mq_outbox_add(c, id, ev->type, body, now_ms);
}

/* The row is committed already: only tell the relay to look. */
static int outbox_publish(void *impl, const struct show_event *ev)
{
    (void)ev;
    return mq_outbox_wake(impl);
}

/* Unsent rows stay in the table: the next start sends them. */
static void outbox_close(void *impl)
{
    struct mq_outbox_stats st;

    mq_outbox_stop(impl, &st);
    log_info("catalog", "show_events_closed backend=outbox relayed=%llu",
             (unsigned long long)st.relayed);
}

static const struct show_events_ops outbox_ops = {
    .name = "outbox",
    .publish = outbox_publish,
    .close = outbox_close,
};

bool show_events_uses_outbox(const struct show_events *ev)
{
    return ev->ops == &outbox_ops;
}

int show_events_outbox_open(struct store *s, const struct mq_config *mq,
                            struct show_events *out)
{
    const struct mq_outbox_config oc = {.subsystem = "catalog"};
    struct mq_outbox *relay;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = mq_outbox_start(s, mq, &oc, &relay)) != ERR_OK)
        return rc;
    out->ops = &outbox_ops;
    out->impl = relay;
    log_info("catalog", "show_events_open backend=%s queue=%s", outbox_ops.name,
             mq->path);
    return ERR_OK;
}
