/*
 * internal.h - what the files of the booking service share.
 *
 * Every show is owned by one event-loop thread (show id modulo threads).
 * A request arrives on any thread, is checked there, and is posted to the
 * owner, which alone reads and changes that show's seats in memory
 * (src/domain/inventory.h).  Writes go to the store's group-commit writer;
 * its completion is posted back to the owner, which then posts the answer
 * to the request's own thread.  Nothing locks a show: one thread owns it.
 */
#ifndef MARQUEE_SERVICES_BOOKING_INTERNAL_H
#define MARQUEE_SERVICES_BOOKING_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/clock.h"
#include "base/rand.h"
#include "domain/inventory.h"
#include "http/http.h"
#include "services/booking/booking.h"
#include "store/store.h"

#define BOOKING_SEATS_PER_REQUEST_MAX 64   /* hard cap; the limit is lower */
#define BOOKING_FETCH_QUEUE_MAX       256  /* shows waiting to be fetched */
#define BOOKING_WAITERS_MAX           4096 /* requests waiting for one show */
#define BOOKING_SWEEP_PER_TICK_MAX    512  /* expired holds freed per tick */
#define BOOKING_IDEM_KEY_MAX          128
#define BOOKING_IDEM_BATCH_MAX        128   /* stored answers per write */
#define BOOKING_IDEM_RUNNING_MAX      65536 /* keys in flight at once */
#define BOOKING_IDEM_TTL_MS           (24LL * 3600 * 1000)
#define BOOKING_MISSING_RETRY_MS      2000 /* a show the catalog lacks */
#define BOOKING_FETCH_TIMEOUT_MS      3000 /* one show's fetch, all tries */
#define BOOKING_SHOW_TABLE_MIN        64
#define BOOKING_SEATMAPS_MAX          4096 /* distinct layouts shared */

/* Checkout, bookings and refunds. */
#define BOOKING_TOKEN_MAX             64 /* a card token, as payment takes it */
#define BOOKING_INTENT_ID_MAX         64 /* "<hold id>.<16 hex>" and a NUL */
#define BOOKING_ID_MAX                INV_HOLD_ID_MAX /* "<show>-b<16 hex>" */
#define BOOKING_PAY_ID_MAX            40  /* payment's "ch_..." and "re_..." */
#define BOOKING_REFUND_ID_MAX         24  /* "rf_<16 hex>" and a NUL */
#define BOOKING_WORKERS_MAX           64  /* payment worker threads */
#define BOOKING_LIST_MAX              100 /* bookings on one page */
#define BOOKING_LIST_DEFAULT          20
#define BOOKING_RECONCILE_BATCH_MAX   32    /* rows of each kind per round */
#define BOOKING_REFUND_BACKOFF_MAX_MS 60000 /* longest wait between tries */
#define BOOKING_PAY_RETRY_AFTER_S     2 /* Retry-After when payment is down */

struct booking_fetcher;
struct booking_pay;
struct booking_reconciler;
struct mq_outbox;
struct booking_consumer;
struct booking_auditor;
struct mq_config;
struct seatmap_cache;
struct idem_running;
struct metrics_series;

/* The series the service reports on GET /metrics (audit.c). */
struct booking_metrics {
    struct metrics_series *holds_created, *hold_conflicts, *database_refusals;
    struct metrics_series *holds_released, *holds_expired;
    struct metrics_series *seats_held; /* the sum of every thread's share */
    struct metrics_series *oversell, *audits;
    /* Checkouts by outcome (enum checkout_outcome), refunds by state. */
    struct metrics_series *checkouts[6];
    struct metrics_series *refunds_due, *refunds_done; /* counters */
    struct metrics_series *refunds_pending;            /* gauge */
    struct metrics_series *cancellations_customer, *cancellations_show;
    struct metrics_series *outbox_unsent; /* gauge */
    struct metrics_series *breaker_state; /* gauge: 0 closed, 1 open, 2 half */
    struct metrics_series *intents_settled; /* by the reconciler */
};

enum checkout_outcome {
    CHECKOUT_CONFIRMED,
    CHECKOUT_DECLINED,
    CHECKOUT_FAILED,      /* payment's provider failed: nothing charged */
    CHECKOUT_UNAVAILABLE, /* payment down, slow or breaker open: 503 */
    CHECKOUT_REFUNDED,    /* charged after the hold ended: refunded */
    CHECKOUT_REFUSED,     /* the hold could not be checked out: 4xx */
};

struct booking {
    struct store *store;
    struct clock *clock;
    struct http_server *server;
    int nthreads;
    struct inv_limits limits;
    int max_extensions;
    int64_t max_hold_life_ms;
    /* booking.catalog_url: the catalog instances shows are read from,
     * tried in turn by the fetcher until one answers. */
    char catalog_urls[BOOKING_CATALOG_URLS_MAX][BOOKING_CATALOG_URL_LEN];
    size_t ncatalog_urls;
    struct booking_fetcher *fetcher;
    struct booking_consumer *consumer; /* NULL unless booking.events=queue */
    struct idem_running *running;
    struct booking_auditor *auditor;
    struct booking_metrics metrics;
    struct seatmap_cache *maps; /* the loader's, then the fetcher's alone */
    /* Payment, checkout and refunds. */
    const char *payment_url;
    int payment_timeout_ms;
    int64_t reconcile_after_ms; /* an open intent this old is settled */
    int reconcile_interval_ms;
    int refund_retry_ms; /* first wait before a refund is sent again */
    struct booking_pay *pay;
    struct booking_reconciler *reconciler;
    struct mq_outbox *relay; /* NULL: events stay in the outbox */
    /* Shows read from the database at start, handed to their owners. */
    struct show_inv **loaded;
    size_t nloaded;
    pthread_mutex_t loaded_lock;
};

/* A show in its owner's table: installed, or waited for. */
struct show_entry {
    int64_t show_id;
    struct show_inv *inv; /* NULL until installed */
    struct booking_op *waiters;
    size_t nwaiters;
    bool fetching;
    int64_t missing_until_ms; /* the catalog said 404: answer 404 till then */
};

struct booking_thread {
    struct booking *b;
    int index;
    struct store_conn *conn;
    struct rand rng;
    struct show_entry **shows; /* open addressing by show id */
    size_t nshows, shows_cap;
    size_t seats_held; /* this thread's share of the seats_held gauge */
};

enum booking_op_kind {
    OP_SEATS,
    OP_HOLD,
    OP_RELEASE,
    OP_EXTEND,
    OP_CHECKOUT,
    OP_CANCEL,
};

/*
 * One request's work, travelling request thread -> owner -> writer ->
 * owner -> request thread.  Owned by whichever stage holds it.
 */
struct booking_op {
    struct booking_op *next; /* in a show's waiters */
    enum booking_op_kind kind;
    struct booking *b;
    struct http_async *async;
    int owner;
    /* The caller's deadline on the HTTP layer's monotonic clock
     * (http_req_deadline_ms), 0 for none. */
    int64_t deadline_ms;
    int64_t show_id;
    char hold_id[INV_HOLD_ID_MAX];
    char customer[INV_CUSTOMER_MAX + 1];
    /* Idempotency: the key ("" for none) and the request's hash. */
    char idem_key[BOOKING_IDEM_KEY_MAX + 1];
    char request_hash[20];
    bool idem_stored; /* the writer stored the answer with the change */
    /* Seats asked for, by id, and once resolved, by index. */
    char seat_ids[BOOKING_SEATS_PER_REQUEST_MAX][INV_SEAT_ID_MAX];
    uint32_t seats[BOOKING_SEATS_PER_REQUEST_MAX];
    size_t nseats;
    /* The database write. */
    struct store_write w;
    uint32_t slot;
    int64_t now_ms, expires_at, max_expires_at, total;
    int64_t hold_version;
    int hold_seconds;
    char currency[4];
    char *seats_json; /* the hold's seats as stored, owned */
    int rc;
    uint32_t conflicts[BOOKING_SEATS_PER_REQUEST_MAX];
    size_t nconflicts;
    /* The answer. */
    int status;
    char slug[40];
    char title[64];
    char detail[256];
    json_t *body;   /* success body, or problem extensions; owned */
    char *response; /* serialized success body, owned */
    /* Checkout and cancellation. */
    char token[BOOKING_TOKEN_MAX + 1];
    char intent_id[BOOKING_INTENT_ID_MAX];
    char booking_id[BOOKING_ID_MAX];
    char refund_id[BOOKING_REFUND_ID_MAX];
    bool resume;       /* checkout: the same attempt again */
    bool resume_ended; /* ... for a hold that has ended meanwhile */
    bool all_seats;    /* cancel: every seat still booked */
    int retry_after_s; /* with a 503 */
    int64_t booking_version;
    enum checkout_outcome outcome;
};

/* holds.c, shared with checkout.c */
struct hold_row {
    char id[INV_HOLD_ID_MAX];
    int64_t show_id;
    char customer[INV_CUSTOMER_MAX + 1];
    char status[16];
    char *seats; /* JSON text, owned */
    int64_t total;
    char currency[4];
    int64_t created_at, expires_at, max_expires_at;
    int extensions;
    int64_t version;
    uint32_t idx[BOOKING_SEATS_PER_REQUEST_MAX]; /* seat indexes */
    size_t nidx;
};
/* Reads a hold; ERR_NOTFOUND when there is none.  Free row->seats. */
int booking_hold_read(struct store_conn *c, const char *id,
                      struct hold_row *row);
/* "<show id>-<16 hex>" (hold) or "<show id>-b<16 hex>" (booking, with
 * booking true): the show names the owner. */
bool booking_id_parse(const char *id, bool booking, int64_t *show_id);

/* schema.c */
extern const struct store_migration booking_migrations[];
extern const size_t booking_nmigrations;

/* shows.c: the owner's table of shows, loading and fetching them. */
int booking_load_all(struct booking *b);
struct seatmap_cache *booking_maps_new(void);
void booking_maps_free(struct seatmap_cache *c);
struct booking_fetcher *booking_fetcher_start(struct booking *b);
void booking_fetcher_stop(struct booking_fetcher *f);
void booking_thread_adopt(struct booking_thread *t);
void booking_thread_free_shows(struct booking_thread *t);
/* On the owner: an installed show, or NULL. */
struct show_inv *booking_show_get(struct booking_thread *t, int64_t id);
void booking_thread_each_show(struct booking_thread *t,
                              void (*fn)(struct booking_thread *,
                                         struct show_inv *, void *),
                              void *arg);
int booking_owner(const struct booking *b, int64_t show_id);
/*
 * On the owner: the installed show, or NULL after queueing op to run
 * again once the show is known (or answering it when it cannot be).
 */
struct show_inv *booking_show_for(struct booking_thread *t,
                                  struct booking_op *op);
void booking_run_op(struct booking_thread *t, struct booking_op *op);
void booking_handle_show_event(struct http_req *req, void *app);

/*
 * What came of a refresh: rc is ERR_OK (the owner has the show, at the
 * catalog version `version`), ERR_NOTFOUND (the catalog has no such show),
 * ERR_IO (the catalog could not be read), ERR_NOMEM, or ERR_CLOSED (the
 * server stopped before the owner could take it).  Runs on the owner
 * thread, or on the fetcher thread when the owner is gone; must not block.
 */
typedef void (*booking_refresh_done_fn)(void *arg, int rc, int64_t version);

/*
 * Queues a re-read of the show from the catalog, as a show event asks:
 * the fetcher reads it and posts it to its owner, which installs it or
 * takes its new state (cancelled, times).  done (may be NULL) is called
 * exactly once afterwards if this returns true; false means the fetch
 * queue is full or stopping, and done is never called.  Any thread.
 */
bool booking_show_refresh(struct booking *b, int64_t show_id,
                          booking_refresh_done_fn done, void *done_arg);
void booking_handle_seats(struct http_req *req, void *app);
void booking_op_seats(struct booking_thread *t, struct booking_op *op,
                      struct show_inv *inv);
/* Reads the seats and live holds of one show from the database. */
int booking_read_show_state(struct store_conn *c, struct show_inv *inv,
                            const uint32_t *only, size_t nonly);

/* holds.c */
void booking_handle_create_hold(struct http_req *req, void *app);
void booking_handle_get_hold(struct http_req *req, void *app);
void booking_handle_release_hold(struct http_req *req, void *app);
void booking_handle_extend_hold(struct http_req *req, void *app);
void booking_op_hold(struct booking_thread *t, struct booking_op *op,
                     struct show_inv *inv);
void booking_op_release(struct booking_thread *t, struct booking_op *op,
                        struct show_inv *inv);
void booking_op_extend(struct booking_thread *t, struct booking_op *op,
                       struct show_inv *inv);
void booking_sweep(struct booking_thread *t, int64_t now_ms);

/* events_consumer.c: show events from the message queue. */
#define BOOKING_EVENTS_QUEUE     "booking.shows"
#define BOOKING_EVENTS_BATCH_MAX 32   /* messages claimed at once */
#define BOOKING_EVENTS_IDLE_MS   250  /* wait after an empty claim */
#define BOOKING_EVENTS_RETRY_MS  2000 /* nack delay, and after a queue error */
#define BOOKING_EVENTS_DEPTH_MS  2000 /* how often the depth gauges move */
/*
 * Opens the queue of cfg, declares BOOKING_EVENTS_QUEUE bound to "show.*"
 * and starts the consumer thread; call after the server and the fetcher
 * exist.  NULL on failure (logged).  Stop it before the fetcher: it waits
 * for the refreshes it asked for.
 */
struct booking_consumer *booking_consumer_start(struct booking *b,
                                                const struct mq_config *cfg);
void booking_consumer_stop(struct booking_consumer *c);

/* audit.c */
void booking_metrics_setup(struct booking_metrics *bm);
/* Starts the auditor thread (NULL on failure, logged); stop joins it. */
struct booking_auditor *booking_auditor_start(struct booking *b,
                                              int interval_ms);
void booking_auditor_stop(struct booking_auditor *a);

/* ops.c: moving ops between threads, and answering them. */
struct booking_op *booking_op_new(struct booking *b, enum booking_op_kind k);
void booking_op_free(struct booking_op *op);
/* Defers req and posts op to its show's owner; answers 503 if it cannot. */
void booking_op_dispatch(struct http_req *req, struct booking_op *op);
/* From the owner: sends the answer to the request's thread. */
void booking_op_finish(struct booking_op *op);
void booking_op_fail(struct booking_op *op, int status, const char *slug,
                     const char *title, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* idem.c: Idempotency-Key handling. */
struct idem_running *idem_running_new(void);
void idem_running_free(struct idem_running *r);
/*
 * On the request thread, before the work: returns true when the request
 * was answered (a replay, a key in flight, a key reused with another
 * body); false to go on, the key then marked in flight.
 */
bool idem_begin(struct booking *b, struct http_req *req, struct booking_op *op);
/* After the answer: records it (unless the writer did) and frees the key. */
void idem_end(struct booking *b, struct booking_op *op);
/* Inside a writer job: stores the op's answer under its key. */
int idem_store(struct store_conn *c, const struct booking_op *op, int status,
               const char *response);
/* Learns which keys have stored answers, before the port opens. */
int idem_load(struct booking *b);
/* Writes the answers waiting to be stored (every tick, and at the end). */
void idem_flush(struct booking *b);
/* Queues the deletion of keys older than BOOKING_IDEM_TTL_MS. */
void idem_expire_old(struct booking *b, int64_t now_ms);

/* payclient.c: the payment service, its breaker, and the worker pool that
 * makes the blocking calls (never an event-loop thread). */
enum pay_result {
    PAY_OK,       /* charged, refunded, or listed */
    PAY_DECLINED, /* 402: nothing charged, a new attempt may succeed */
    PAY_FAILED,   /* 502/504 stored by payment: nothing charged */
    PAY_UNSENT,   /* breaker open or payment's 503: nothing was done */
    PAY_UNKNOWN,  /* no answer (timeout, reset, 409 in flight): maybe */
    PAY_REFUSED,  /* another 4xx: the request or the state is wrong */
};

struct pay_answer {
    enum pay_result result;
    int status;                  /* payment's HTTP status, 0 for none */
    char id[BOOKING_PAY_ID_MAX]; /* charge or refund id */
    char code[40];               /* decline code, or what failed */
    int64_t amount;              /* of the charge found */
    int retry_after_s;           /* with PAY_UNSENT and PAY_UNKNOWN */
};

/*
 * Starts `workers` threads, each with its own read connection, taking jobs
 * from a FIFO of at most queue_max.  NULL on failure (logged).
 */
struct booking_pay *booking_pay_start(struct booking *b, int workers,
                                      int queue_max, int64_t breaker_open_ms);
/* Runs the jobs still queued, then joins the workers. */
void booking_pay_stop(struct booking_pay *p);
/* Takes room for one job; false when the queue is full or stopping. */
bool booking_pay_reserve(struct booking_pay *p);
/* Queues fn(conn, arg) into room taken by booking_pay_reserve. */
void booking_pay_queue(struct booking_pay *p,
                       void (*fn)(struct store_conn *c, void *arg), void *arg);
/* Whether the breaker lets calls through now; else *retry_after_s. */
bool booking_pay_open(struct booking_pay *p, int *retry_after_s);
/* Blocking calls (workers and the reconciler only). */
void booking_pay_charge(struct booking_pay *p, const char *key,
                        const char *reference, const char *customer,
                        int64_t amount, const char *currency, const char *token,
                        struct pay_answer *out);
void booking_pay_refund(struct booking_pay *p, const char *key,
                        const char *charge_id, int64_t amount,
                        const char *reason, struct pay_answer *out);
/* A succeeded charge of reference: PAY_OK with its id ("" when none; then
 * code is "declined" or "failed" if such attempts were recorded). */
void booking_pay_find_charge(struct booking_pay *p, const char *reference,
                             struct pay_answer *out);

/* checkout.c */
void booking_handle_checkout(struct http_req *req, void *app);
void booking_op_checkout(struct booking_thread *t, struct booking_op *op,
                         struct show_inv *inv);

/* What settling a charge came to (checkout worker and reconciler). */
struct settle {
    /* In. */
    struct booking *b;
    const char *intent_id;
    const char *charge_id;
    int64_t amount;
    struct booking_op *op;   /* NULL from the reconciler: nothing to store */
    struct store_conn *conn; /* the caller's read connection */
    /* Out. */
    char booking_id[BOOKING_ID_MAX];
    char refund_id[BOOKING_REFUND_ID_MAX];
    int64_t show_id;
    char hold_id[INV_HOLD_ID_MAX];
    char *response; /* the booking as answered (201), owned */
};
/*
 * Turns the intent's hold into a booking, or when the hold is no longer
 * live, records the charge's refund as due and sends it once.  ERR_OK
 * with s->booking_id set, or ERR_CONFLICT with s->refund_id set, or a
 * store error (the intent stays open; the reconciler retries).  Blocks.
 */
int booking_settle_charge(struct settle *s);
/* Posts the seats of a new booking to the show's owner (memory: sold). */
void booking_post_sold(struct booking *b, int64_t show_id, const char *hold_id);

/* bookings.c */
void booking_handle_get_booking(struct http_req *req, void *app);
void booking_handle_list_bookings(struct http_req *req, void *app);
void booking_handle_cancel_booking(struct http_req *req, void *app);
void booking_op_cancel(struct booking_thread *t, struct booking_op *op,
                       struct show_inv *inv);
/* The booking as clients see it, read through c (new reference), or
 * ERR_NOTFOUND / a store error. */
int booking_render(struct store_conn *c, const char *id, json_t **out);
/* The same as JSON text (malloc'd), or NULL. */
char *booking_render_text(struct store_conn *c, const char *id);

/* A cancellation's write (customer or show cancelled). */
struct cancel_job {
    struct store_write w;
    struct booking *b;
    struct booking_op *op; /* the customer's request, or NULL */
    char booking_id[BOOKING_ID_MAX];
    char refund_id[BOOKING_REFUND_ID_MAX];
    const char *reason; /* "customer" or "show_cancelled" */
    int fee_percent;
    int64_t version; /* the booking's, or -1: not checked */
    uint32_t seats[BOOKING_SEATS_PER_REQUEST_MAX]; /* none: all left */
    size_t nseats;
    int64_t now_ms;
    /* Out. */
    int64_t show_id, refund, fee;
    uint32_t freed[BOOKING_SEATS_PER_REQUEST_MAX];
    size_t nfreed;
};
int booking_cancel_apply(struct store_conn *c, void *arg);
/* Frees seats in the owner's memory (after a cancellation). */
void booking_post_freed(struct booking *b, int64_t show_id,
                        const uint32_t *seats, size_t n);

/* outbox.c: booking events, written with the change, relayed to the queue
 * by the shared relay (src/mq/outbox.h, which sets the limits). */
#define BOOKING_EVENT_ID_MAX 80
#define BOOKING_NOTIFY_QUEUE "notify.bookings"
/* Inside a writer job: adds the event (body is an object, taken). */
int booking_outbox_add(struct store_conn *c, const char *event_id,
                       const char *topic, json_t *body, int64_t now_ms);
/* Opens the queue, declares BOOKING_NOTIFY_QUEUE and starts the relay;
 * NULL on failure (logged). */
struct mq_outbox *booking_relay_start(struct booking *b,
                                      const struct mq_config *cfg);
/* After a commit that added events (any thread; NULL does nothing). */
void booking_relay_wake(struct mq_outbox *r);
/* Sends what is committed (unless the queue is failing), stops; NULL ok. */
void booking_relay_stop(struct mq_outbox *r);

/* reconcile.c: open intents, due refunds and cancelled shows. */
struct booking_reconciler *booking_reconciler_start(struct booking *b);
void booking_reconciler_wake(struct booking_reconciler *r);
void booking_reconciler_stop(struct booking_reconciler *r);
/*
 * Sends one due refund (read through c, a read connection of the calling
 * thread) and records what came of it; true when payment confirmed it.
 * Blocks: workers and the reconciler only.
 */
bool booking_refund_send(struct booking *b, struct store_conn *c,
                         const char *refund_id);
/* The refund as a problem document shows it ({id, amount, ...}), or NULL. */
json_t *booking_refund_json(struct store_conn *c, const char *refund_id);

#endif
