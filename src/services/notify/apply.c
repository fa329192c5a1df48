/*
 * apply.c - one booking event applied to notify's database, inside the
 * store writer's savepoint (so all of it commits, or none of it).
 *
 * The order is: has this event id been applied?  (yes: a duplicate, and
 * nothing else happens); then the effect; then the event id is recorded
 * with what came of it.  A failure anywhere returns an error, the
 * savepoint rolls back, the id stays unrecorded, and the consumer nacks
 * the message so it comes again.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "services/notify/internal.h"
#include "store/store.h"

static const char SQL_EVENT_SEEN[] = "SELECT 1 FROM events WHERE id = ?";
static const char SQL_EVENT_ADD[] =
    "INSERT INTO events (id, type, booking_id, outcome, processed_at) "
    "VALUES (?, ?, ?, ?, ?)";
static const char SQL_TICKET_OF_BOOKING[] =
    "SELECT id, customer_id FROM tickets WHERE booking_id = ?";
static const char SQL_TICKET_ADD[] =
    "INSERT INTO tickets (id, booking_id, show_id, customer_id, status, code, "
    "total, currency, event_id, issued_at) "
    "VALUES (?, ?, ?, ?, 'valid', ?, ?, ?, ?, ?)";
static const char SQL_SEAT_ADD[] =
    "INSERT INTO ticket_seats (ticket_id, seat, pos, state) "
    "VALUES (?, ?, ?, 'valid')";
static const char SQL_SEAT_STATE[] =
    "SELECT state FROM ticket_seats WHERE ticket_id = ? AND seat = ?";
static const char SQL_SEAT_CANCEL[] =
    "UPDATE ticket_seats SET state = 'cancelled', cancelled_at = ? "
    "WHERE ticket_id = ? AND seat = ? AND state = 'valid'";
static const char SQL_SEATS_VALID[] =
    "SELECT seat FROM ticket_seats WHERE ticket_id = ? AND state = 'valid' "
    "ORDER BY pos";
static const char SQL_TICKET_CANCEL[] =
    "UPDATE tickets SET status = 'cancelled', cancelled_at = ? "
    "WHERE id = ? AND status = 'valid'";
static const char SQL_DELIVERY_ADD[] =
    "INSERT INTO deliveries (customer_id, booking_id, event_id, kind, "
    "message, created_at) VALUES (?, ?, ?, ?, ?, ?)";

const char *notify_outcome_name(enum notify_outcome o)
{
    switch (o) {
    case NOTIFY_ISSUED: return "issued";
    case NOTIFY_DUPLICATE: return "duplicate";
    case NOTIFY_CANCELLED: return "cancelled";
    }
    return "unknown";
}

static int refuse(struct notify_job *job, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct notify_job *job, int rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(job->error, sizeof(job->error), fmt, ap);
    va_end(ap);
    return rc;
}

/* A statement's failure: the error names what was being done. */
static int db_failed(struct notify_job *job, int rc, const char *what)
{
    return refuse(job, rc, "database error while %s: %s", what, err_msg(rc));
}

/* Runs a prepared, bound statement that returns no row. */
static int run(struct store_stmt *st)
{
    int rc = store_step(st);

    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

static int event_seen(struct store_conn *c, const char *id, bool *seen)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_EVENT_SEEN, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, id);
    rc = store_step(st);
    store_reset(st);
    *seen = rc == STORE_ROW;
    return rc < 0 ? rc : ERR_OK;
}

static int event_add(struct store_conn *c, const struct notify_job *job)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_EVENT_ADD, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, job->ev.id);
    store_bind_text(st, 2,
                    job->ev.type == NOTIFY_EV_CONFIRMED ? "booking.confirmed"
                                                        : "booking.cancelled");
    store_bind_text(st, 3, job->ev.booking_id);
    store_bind_text(st, 4, notify_outcome_name(job->outcome));
    store_bind_int(st, 5, job->now_ms);
    return run(st);
}

/* The ticket of the job's booking: *found, its id and customer. */
static int ticket_of_booking(struct store_conn *c, const char *booking_id,
                             bool *found, char id[NOTIFY_TICKET_ID_LEN + 1],
                             char customer[HTTP_CUSTOMER_MAX + 1])
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_TICKET_OF_BOOKING, &st);

    *found = false;
    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, booking_id);
    if ((rc = store_step(st)) == STORE_ROW) {
        *found = true;
        snprintf(id, NOTIFY_TICKET_ID_LEN + 1, "%s", store_col_text(st, 0));
        snprintf(customer, HTTP_CUSTOMER_MAX + 1, "%s", store_col_text(st, 1));
    }
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

static int delivery_add(struct store_conn *c, const struct notify_job *job,
                        const char *kind, const char *message)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_DELIVERY_ADD, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, job->ev.customer);
    store_bind_text(st, 2, job->ev.booking_id);
    store_bind_text(st, 3, job->ev.id);
    store_bind_text(st, 4, kind);
    store_bind_text(st, 5, message);
    store_bind_int(st, 6, job->now_ms);
    return run(st);
}

static int ticket_add(struct store_conn *c, const struct notify_job *job)
{
    const struct notify_event *ev = &job->ev;
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_TICKET_ADD, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, job->ticket_id);
    store_bind_text(st, 2, ev->booking_id);
    store_bind_int(st, 3, ev->show_id);
    store_bind_text(st, 4, ev->customer);
    store_bind_text(st, 5, job->code);
    store_bind_int(st, 6, ev->total);
    store_bind_text(st, 7, ev->currency);
    store_bind_text(st, 8, ev->id);
    store_bind_int(st, 9, job->now_ms);
    if ((rc = run(st)) != ERR_OK)
        return rc;

    for (size_t i = 0; i < ev->nseats; i++) {
        if ((rc = store_prepare(c, SQL_SEAT_ADD, &st)) != ERR_OK)
            return rc;
        store_bind_text(st, 1, job->ticket_id);
        store_bind_text(st, 2, ev->seats[i]);
        store_bind_int(st, 3, (int64_t)i);
        if ((rc = run(st)) != ERR_OK)
            return rc;
    }
    return ERR_OK;
}

static int apply_confirmed(struct store_conn *c, struct notify_job *job)
{
    char message[NOTIFY_MESSAGE_MAX];
    char known[NOTIFY_TICKET_ID_LEN + 1], customer[HTTP_CUSTOMER_MAX + 1];
    bool found;
    int rc = ticket_of_booking(c, job->ev.booking_id, &found, known, customer);

    if (rc != ERR_OK)
        return db_failed(job, rc, "reading the booking's ticket");
    if (found) {
        /* Another event id confirmed this booking already (I4). */
        job->outcome = NOTIFY_DUPLICATE;
        snprintf(job->ticket_id, sizeof(job->ticket_id), "%s", known);
        return ERR_OK;
    }
    if ((rc = ticket_add(c, job)) != ERR_OK)
        return db_failed(job, rc, "writing the ticket");
    notify_message_confirmed(&job->ev, job->ticket_id, message,
                             sizeof(message));
    if ((rc = delivery_add(c, job, "tickets", message)) != ERR_OK)
        return db_failed(job, rc, "writing the message");
    job->outcome = NOTIFY_ISSUED;
    return ERR_OK;
}

/* Checks that every seat of the event is on the ticket. */
static int seats_on_ticket(struct store_conn *c, struct notify_job *job)
{
    struct store_stmt *st;
    int rc;

    for (size_t i = 0; i < job->ev.nseats; i++) {
        if ((rc = store_prepare(c, SQL_SEAT_STATE, &st)) != ERR_OK)
            return db_failed(job, rc, "reading a seat");
        store_bind_text(st, 1, job->ticket_id);
        store_bind_text(st, 2, job->ev.seats[i]);
        rc = store_step(st);
        store_reset(st);
        if (rc < 0)
            return db_failed(job, rc, "reading a seat");
        if (rc != STORE_ROW)
            return refuse(job, ERR_INVALID,
                          "seat %s is not on the ticket of booking %s",
                          job->ev.seats[i], job->ev.booking_id);
    }
    return ERR_OK;
}

/* Cancels the event's seats still valid; *changed counts them. */
static int seats_cancel(struct store_conn *c, struct notify_job *job,
                        size_t *changed)
{
    struct store_stmt *st;
    int rc;

    *changed = 0;
    for (size_t i = 0; i < job->ev.nseats; i++) {
        if ((rc = store_prepare(c, SQL_SEAT_CANCEL, &st)) != ERR_OK)
            return rc;
        store_bind_int(st, 1, job->now_ms);
        store_bind_text(st, 2, job->ticket_id);
        store_bind_text(st, 3, job->ev.seats[i]);
        if ((rc = run(st)) != ERR_OK)
            return rc;
        *changed += (size_t)store_changes(c);
    }
    return ERR_OK;
}

/* The ticket's seats still valid, in booking order. */
static int seats_valid(struct store_conn *c, const char *ticket_id,
                       char (*out)[NOTIFY_SEAT_MAX + 1], size_t *n)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_SEATS_VALID, &st);

    *n = 0;
    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, ticket_id);
    while ((rc = store_step(st)) == STORE_ROW && *n < NOTIFY_SEATS_MAX)
        snprintf(out[(*n)++], NOTIFY_SEAT_MAX + 1, "%s", store_col_text(st, 0));
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

/* Whether the event's remaining_seats name the same seats as ours. */
static bool same_seats(const struct notify_event *ev,
                       char (*ours)[NOTIFY_SEAT_MAX + 1], size_t n)
{
    if (n != ev->nremaining)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < n && !found; j++)
            found = strcmp(ours[i], ev->remaining[j]) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* The ticket's last valid seat went: the ticket is cancelled. */
static int ticket_cancel(struct store_conn *c, const struct notify_job *job)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_TICKET_CANCEL, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_int(st, 1, job->now_ms);
    store_bind_text(st, 2, job->ticket_id);
    return run(st);
}

static int apply_cancelled(struct store_conn *c, struct notify_job *job)
{
    char customer[HTTP_CUSTOMER_MAX + 1], message[NOTIFY_MESSAGE_MAX];
    char remaining[NOTIFY_SEATS_MAX][NOTIFY_SEAT_MAX + 1];
    const char *names[NOTIFY_SEATS_MAX];
    size_t changed, nremaining;
    bool found;
    int rc = ticket_of_booking(c, job->ev.booking_id, &found, job->ticket_id,
                               customer);

    if (rc != ERR_OK)
        return db_failed(job, rc, "reading the booking's ticket");
    /* Its confirmation may still be on its way (a retry reorders). */
    if (!found)
        return refuse(job, ERR_NOTFOUND,
                      "booking %s has no ticket yet: its confirmation has not "
                      "been applied",
                      job->ev.booking_id);
    if (strcmp(customer, job->ev.customer) != 0)
        return refuse(job, ERR_INVALID,
                      "booking %s belongs to another customer than the "
                      "event's",
                      job->ev.booking_id);
    if ((rc = seats_on_ticket(c, job)) != ERR_OK)
        return rc;
    if ((rc = seats_cancel(c, job, &changed)) != ERR_OK)
        return db_failed(job, rc, "cancelling seats");
    if (changed == 0) {
        /* Another event id cancelled these seats already. */
        job->outcome = NOTIFY_DUPLICATE;
        return ERR_OK;
    }

    if ((rc = seats_valid(c, job->ticket_id, remaining, &nremaining)) != ERR_OK)
        return db_failed(job, rc, "reading the remaining seats");
    if (!same_seats(&job->ev, remaining, nremaining))
        log_warn("notify",
                 "remaining_seats_differ event=%s booking=%s ours=%zu "
                 "event_has=%zu",
                 job->ev.id, job->ev.booking_id, nremaining,
                 job->ev.nremaining);
    if (nremaining == 0 && (rc = ticket_cancel(c, job)) != ERR_OK)
        return db_failed(job, rc, "cancelling the ticket");
    for (size_t i = 0; i < nremaining; i++)
        names[i] = remaining[i];
    notify_message_cancelled(&job->ev, names, nremaining, message,
                             sizeof(message));
    if ((rc = delivery_add(c, job, "cancellation", message)) != ERR_OK)
        return db_failed(job, rc, "writing the message");
    job->outcome = NOTIFY_CANCELLED;
    return ERR_OK;
}

int notify_job_apply(struct store_conn *c, struct notify_job *job)
{
    bool seen;
    int rc;

    /* A parsed event: the parser bounds every list. */
    assert(job->ev.nseats >= 1 && job->ev.nseats <= NOTIFY_SEATS_MAX);
    assert(job->ev.type == NOTIFY_EV_CANCELLED ||
           notify_ticket_id_ok(job->ticket_id));
    rc = event_seen(c, job->ev.id, &seen);

    job->error[0] = '\0';
    if (rc != ERR_OK)
        return db_failed(job, rc, "looking the event id up");
    if (seen) {
        job->outcome = NOTIFY_DUPLICATE;
        return ERR_OK;
    }
    rc = job->ev.type == NOTIFY_EV_CONFIRMED ? apply_confirmed(c, job)
                                             : apply_cancelled(c, job);
    if (rc != ERR_OK)
        return rc;
    if ((rc = event_add(c, job)) != ERR_OK)
        return db_failed(job, rc, "recording the event id");
    return ERR_OK;
}
