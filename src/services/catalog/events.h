/*
 * events.h - the catalog's show events, behind one table of functions.
 *
 * The catalog tells other services (booking) that a show was scheduled or
 * cancelled.  The event names the show and its version only: a subscriber
 * reads the show itself from GET /v1/shows/{id}, and fetches unknown shows
 * on demand anyway, so a lost event delays it and breaks nothing.
 *
 * Two backends:
 *   - "outbox" (outbox.c): the write that changes a show also inserts the
 *     event into the `outbox` table, in the same transaction
 *     (show_events_outbox_add); the shared relay (src/mq/outbox.h)
 *     publishes unsent rows to the message queue in order and marks
 *     them sent once the queue confirmed.  Nothing committed is lost, by
 *     crash or outage; a crash between publish and mark re-sends, and
 *     the queue drops the copy by its message id.  publish() only wakes
 *     the relay.
 *   - "http-notify" (events.c): a notifier thread with a bounded queue
 *     that POSTs each event to every subscriber's /internal/v1/show-events.
 *     Best effort: lost on a crash or when the queue is full.
 * docs/internals/catalog.md has the details.
 */
#ifndef MARQUEE_SERVICES_CATALOG_EVENTS_H
#define MARQUEE_SERVICES_CATALOG_EVENTS_H

#include <stdbool.h>
#include <stdint.h>

#define CATALOG_EVENTS_QUEUE_MAX       4096 /* events waiting; more dropped */
#define CATALOG_EVENTS_SUBSCRIBERS_MAX 8
#define CATALOG_EVENTS_URL_MAX         256  /* one subscriber's base URL */
#define CATALOG_EVENTS_TYPE_MAX        32   /* "show.scheduled", bytes + NUL */
#define CATALOG_EVENTS_TIMEOUT_MS      2000 /* one POST, all included */
#define CATALOG_EVENTS_TRIES_MAX       3    /* per event and subscriber */
#define CATALOG_EVENTS_BACKOFF_MS      100  /* before the 2nd try; doubles */
/* After close() is called, how long queued events may still be delivered
 * before the rest are dropped (one POST under way may add its timeout). */
#define CATALOG_EVENTS_DRAIN_MS 3000

/* The outbox: its relay and limits are src/mq/outbox.h's. */
#define CATALOG_EVENTS_ID_MAX   64 /* "show.<id>.v<version>" + NUL */
#define CATALOG_EVENTS_BODY_MAX 160

#define SHOW_EVENT_SCHEDULED "show.scheduled"
#define SHOW_EVENT_CANCELLED "show.cancelled"

struct show_event {
    const char *type; /* SHOW_EVENT_SCHEDULED or SHOW_EVENT_CANCELLED */
    int64_t show_id;
    int64_t version; /* the show's version after the change */
};

struct show_events_ops {
    const char *name;
    /*
     * Hands an event over; called from event-loop threads, so it never
     * blocks and never does I/O.  The event is copied.  Returns ERR_OK
     * (queued, or nobody subscribes), ERR_FULL (dropped: the queue is
     * full), ERR_INVALID (a type that is not lower-case letters and dots,
     * or too long) or ERR_CLOSED (close has begun).
     */
    int (*publish)(void *impl, const struct show_event *ev);
    /* Delivers what is queued (within the backend's bound), stops and
     * frees impl.  No publish may run during or after it. */
    void (*close)(void *impl);
};

struct show_events {
    const struct show_events_ops *ops; /* NULL: not open, publish is a no-op */
    void *impl;
};

/*
 * Opens the "http-notify" backend for urls, the comma-separated base URLs
 * of the subscribers ("http://host:port"); spaces around them are ignored,
 * and an empty list means no subscribers (publish does nothing, no thread
 * runs).  Returns ERR_OK with *out to close with show_events_close(),
 * ERR_CONFIG (logged, naming the URL) when a URL is bad, empty, too long or
 * one too many, or ERR_NOMEM / ERR_SYS; *out is zeroed on failure.
 */
int show_events_http_open(const char *urls, struct show_events *out);

struct mq_config;
struct store;
struct store_conn;

/*
 * Opens the "outbox" backend: starts the shared relay (mq_outbox_start)
 * on the queue of mq (copied), which reads and marks the outbox table of
 * s (s must outlive the backend: close it before the store).  Returns
 * ERR_OK with *out to close with show_events_close(), or mq_outbox_start's
 * error (logged): mq_open's, ERR_NOMEM, ERR_SYS; *out is zeroed on
 * failure.
 */
int show_events_outbox_open(struct store *s, const struct mq_config *mq,
                            struct show_events *out);

/*
 * Inside a store write job (the writer's connection c): inserts ev as an
 * unsent outbox row with id "show.<id>.v<version>", topic ev->type and a
 * JSON body {"type", "show_id", "version"}.  An event id already there is
 * left as it is (ERR_OK), so repeating a write adds nothing.  Returns
 * ERR_OK, ERR_INVALID for a bad type, or the store's error: the caller
 * fails its write with it, so the change and its event commit together.
 */
int show_events_outbox_add(struct store_conn *c, const struct show_event *ev,
                           int64_t now_ms);

/* Whether ev is the outbox backend (writes must then add their events). */
bool show_events_uses_outbox(const struct show_events *ev);

/* ev->ops->publish, or ERR_OK when ev is not open. */
int show_events_publish(struct show_events *ev, const struct show_event *e);

/* ev->ops->close if open, then zeroes ev; safe on a zeroed ev. */
void show_events_close(struct show_events *ev);

#endif
