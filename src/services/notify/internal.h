/*
 * internal.h - what the files of the notify service share.
 *
 * A booking event travels: the queue (notify.bookings) -> the consumer
 * thread, which parses it and prepares the ticket's id and signed code ->
 * the store's writer, which applies it in one savepoint of a group commit
 * (event id recorded, ticket and seats, message) -> back to the consumer,
 * which acks it only after that commit.  The HTTP threads only read.
 */
#ifndef MARQUEE_SERVICES_NOTIFY_INTERNAL_H
#define MARQUEE_SERVICES_NOTIFY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"
#include "mq/mq.h"
#include "services/notify/code.h"
#include "store/store.h"

struct clock;
struct metrics_series;
struct notify_consumer;

/* Named limits. */
#define NOTIFY_QUEUE         "notify.bookings"
#define NOTIFY_BINDING       "booking.#"
#define NOTIFY_EVENT_ID_MAX  MQ_ID_MAX
#define NOTIFY_SEATS_MAX     64             /* seats of one booking event */
#define NOTIFY_SEAT_MAX      16             /* bytes of a seat id ("A12") */
#define NOTIFY_REASON_MAX    32             /* bytes of a cancellation reason */
#define NOTIFY_AMOUNT_MAX    100000000000LL /* minor units */
#define NOTIFY_ERROR_MAX     200            /* bytes of an event's error text */
#define NOTIFY_MESSAGE_MAX   1600           /* bytes of a customer message */
#define NOTIFY_BATCH_MAX     32             /* messages claimed at once */
#define NOTIFY_IDLE_MS       200            /* wait after an empty claim */
#define NOTIFY_DEPTH_MS      2000 /* how often the depth gauges move */
#define NOTIFY_ACK_DELAY_MAX 600000
#define NOTIFY_LIST_MAX      100 /* deliveries per page */
#define NOTIFY_LIST_DEFAULT  50
#define NOTIFY_RETRY_AFTER_S 1 /* database busy */

/* --- events (events.c) ------------------------------------------------ */

enum notify_event_type { NOTIFY_EV_CONFIRMED, NOTIFY_EV_CANCELLED };

/* One booking event, as booking publishes it (docs/internals/notify.md). */
struct notify_event {
    enum notify_event_type type;
    char id[NOTIFY_EVENT_ID_MAX + 1];
    char booking_id[NOTIFY_BOOKING_ID_MAX + 1];
    int64_t show_id;
    char customer[HTTP_CUSTOMER_MAX + 1];
    size_t nseats;
    char seats[NOTIFY_SEATS_MAX][NOTIFY_SEAT_MAX + 1];
    size_t nremaining; /* cancelled only */
    char remaining[NOTIFY_SEATS_MAX][NOTIFY_SEAT_MAX + 1];
    int64_t total;       /* confirmed only */
    int64_t refund, fee; /* cancelled only */
    char currency[4];
    char reason[NOTIFY_REASON_MAX + 1]; /* cancelled only */
    int64_t occurred_at;                /* epoch ms */
};

/*
 * Parses a message body (len bytes) into *ev.  Fields the contract does
 * not name are ignored.  ERR_OK, or ERR_INVALID with a one-line reason in
 * err (cap bytes) that holds no double quote.
 */
int notify_event_parse(const void *body, size_t len, struct notify_event *ev,
                       char *err, size_t cap);

/* Whether s is a seat id: 1..NOTIFY_SEAT_MAX of [A-Za-z0-9-]. */
bool notify_seat_ok(const char *s);

/*
 * The customer's message for a confirmed booking, or for a cancellation
 * leaving `remaining` seats (a NULL-free list of nremaining ids), into out
 * (NOTIFY_MESSAGE_MAX bytes).
 */
void notify_message_confirmed(const struct notify_event *ev,
                              const char *ticket_id, char *out, size_t cap);
void notify_message_cancelled(const struct notify_event *ev,
                              const char *const *remaining, size_t nremaining,
                              char *out, size_t cap);

/* --- applying an event (apply.c) ------------------------------------- */

enum notify_outcome {
    NOTIFY_ISSUED,    /* a ticket and its message were written */
    NOTIFY_DUPLICATE, /* seen before: the event id, or its effect */
    NOTIFY_CANCELLED, /* seats were cancelled and the message written */
};

/* One event's write; the consumer fills the first part. */
struct notify_job {
    struct notify_event ev;
    char ticket_id[NOTIFY_TICKET_ID_LEN + 1]; /* a new ticket's id */
    char code[NOTIFY_CODE_MAX];               /* its signed code */
    int64_t now_ms;
    /* Set by notify_job_apply. */
    enum notify_outcome outcome;
    char error[NOTIFY_ERROR_MAX];
};

/*
 * Inside the writer's savepoint: records the event id and applies the
 * event.  ERR_OK with job->outcome; or an error with job->error set (the
 * savepoint is then rolled back, and the message must be nacked):
 * ERR_NOTFOUND for a cancellation of a booking with no ticket yet,
 * ERR_INVALID for an event that contradicts the ticket, or a database
 * error.
 */
int notify_job_apply(struct store_conn *c, struct notify_job *job);

const char *notify_outcome_name(enum notify_outcome o);

/* --- the service (notify.c) ------------------------------------------ */

struct notify_metrics {
    struct metrics_series *issued, *duplicate, *cancelled, *retried, *dead;
    struct metrics_series *tickets;
};

struct notify {
    struct store *store;
    struct clock *clock;
    struct http_server *server;
    struct notify_consumer *consumer;
    struct notify_key key;
    const char *admin_token; /* "" disables /admin/ */
    struct notify_metrics metrics;
};

struct notify_thread {
    struct notify *n;
    struct store_conn *conn;
};

/* --- the consumer (consumer.c) ---------------------------------------- */

struct notify_consumer_config {
    int retry_ms;     /* nack delay, and pause after a queue error */
    int ack_delay_ms; /* fault injection: pause between commit and acks */
};

/*
 * Opens the queue of mc, declares NOTIFY_QUEUE bound to NOTIFY_BINDING
 * (so events published from now on are kept even while the consumer is
 * down) and starts the consumer thread.  NULL on failure (logged).
 */
struct notify_consumer *
notify_consumer_start(struct notify *n, const struct mq_config *mc,
                      const struct notify_consumer_config *cc);

/* Stops the thread after its batch (its acks included) and closes the
 * queue; c may be NULL. */
void notify_consumer_stop(struct notify_consumer *c);

/* --- the routes (tickets.c) -------------------------------------------- */

void notify_handle_get_ticket(struct http_req *req, void *app);
void notify_handle_get_qr(struct http_req *req, void *app);
void notify_handle_verify(struct http_req *req, void *app);
void notify_handle_deliveries(struct http_req *req, void *app);

/* schema.c */
extern const struct store_migration notify_migrations[];
extern const size_t notify_nmigrations;

#endif
