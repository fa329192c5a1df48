/*
 * test_notify_apply.c - booking events applied to a real notify database
 * (SQLite in a temporary directory, through the store's writer): one
 * ticket per booking whatever is repeated, cancellations seat by seat,
 * and refusals that leave nothing behind.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "harness.h"
#include "services/notify/internal.h"
#include "store/store.h"

static const unsigned char key_bytes[] = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";
static const struct notify_key key = {key_bytes, 32};

struct fixture {
    char dir[64], path[96];
    struct store *store;
    struct store_conn *conn;
};

static void setup(struct fixture *f)
{
    struct store_config cfg = {
        .backend = "sqlite", .busy_timeout_ms = 5000, .synchronous = "normal"};

    snprintf(f->dir, sizeof(f->dir), "/tmp/marquee-notify-XXXXXX");
    CHECK(mkdtemp(f->dir) != NULL);
    snprintf(f->path, sizeof(f->path), "%s/notify.db", f->dir);
    cfg.path = f->path;
    CHECK_INT(
        store_open(&cfg, notify_migrations, notify_nmigrations, &f->store),
        ERR_OK);
    CHECK_INT(store_conn_open(f->store, &f->conn), ERR_OK);
}

static void teardown(struct fixture *f)
{
    DIR *d;
    struct dirent *e;

    store_conn_close(f->conn);
    store_close(f->store);
    CHECK((d = opendir(f->dir)) != NULL);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            CHECK_INT(unlinkat(dirfd(d), e->d_name, 0), 0);
    closedir(d);
    CHECK_INT(rmdir(f->dir), 0);
}

static int apply_fn(struct store_conn *c, void *arg)
{
    return notify_job_apply(c, arg);
}

/* Applies one event (JSON text) as the consumer would; returns the rc. */
static int apply(struct fixture *f, const char *body, struct notify_job *job)
{
    char err[NOTIFY_ERROR_MAX];

    memset(job, 0, sizeof(*job));
    CHECK_INT(
        notify_event_parse(body, strlen(body), &job->ev, err, sizeof(err)),
        ERR_OK);
    job->now_ms = 1764800000000LL;
    if (job->ev.type == NOTIFY_EV_CONFIRMED) {
        CHECK_INT(notify_ticket_id_new(job->ticket_id), ERR_OK);
        CHECK_INT(notify_code_sign(&key, job->ticket_id, job->ev.booking_id,
                                   job->code, sizeof(job->code)),
                  ERR_OK);
    }
    return store_write_sync(f->store, apply_fn, job);
}

static int64_t count(struct fixture *f, const char *sql)
{
    struct store_stmt *st;
    int64_t n;

    CHECK_INT(store_prepare(f->conn, sql, &st), ERR_OK);
    CHECK_INT(store_step(st), STORE_ROW);
    n = store_col_int(st, 0);
    store_reset(st);
    return n;
}

static void confirmed(char *out, size_t cap, const char *id,
                      const char *booking, const char *customer)
{
    snprintf(out, cap,
             "{\"id\": \"%s\", \"type\": \"booking.confirmed\", "
             "\"booking_id\": \"%s\", \"show_id\": 27, \"customer_id\": "
             "\"%s\", \"seats\": [\"A1\", \"A2\"], \"total\": 50000, "
             "\"currency\": \"INR\", \"occurred_at\": 1}",
             id, booking, customer);
}

static void cancelled(char *out, size_t cap, const char *id,
                      const char *customer, const char *seats,
                      const char *remaining)
{
    snprintf(out, cap,
             "{\"id\": \"%s\", \"type\": \"booking.cancelled\", "
             "\"booking_id\": \"27-b1\", \"show_id\": 27, \"customer_id\": "
             "\"%s\", \"seats\": %s, \"remaining_seats\": %s, \"refund\": "
             "22500, \"fee\": 2500, \"currency\": \"INR\", \"reason\": "
             "\"customer\", \"occurred_at\": 2}",
             id, customer, seats, remaining);
}

static const char SQL_TICKETS[] = "SELECT count(*) FROM tickets";
static const char SQL_SEATS[] = "SELECT count(*) FROM ticket_seats";
static const char SQL_SEATS_VALID[] =
    "SELECT count(*) FROM ticket_seats WHERE state = 'valid'";
static const char SQL_DELIVERIES[] = "SELECT count(*) FROM deliveries";
static const char SQL_EVENTS[] = "SELECT count(*) FROM events";
static const char SQL_CANCELLED[] =
    "SELECT count(*) FROM tickets WHERE status = 'cancelled'";

TEST(one_ticket_per_booking)
{
    struct fixture f;
    struct notify_job job;
    char body[1024], first[NOTIFY_TICKET_ID_LEN + 1];

    setup(&f);
    confirmed(body, sizeof(body), "ev-1", "27-b1", "cust-1");
    CHECK_INT(apply(&f, body, &job), ERR_OK);
    CHECK_INT(job.outcome, NOTIFY_ISSUED);
    snprintf(first, sizeof(first), "%s", job.ticket_id);

    /* The same event again: nothing at all. */
    CHECK_INT(apply(&f, body, &job), ERR_OK);
    CHECK_INT(job.outcome, NOTIFY_DUPLICATE);
    /* Another event id for the same booking: recorded, no second ticket. */
    confirmed(body, sizeof(body), "ev-1b", "27-b1", "cust-1");
    CHECK_INT(apply(&f, body, &job), ERR_OK);
    CHECK_INT(job.outcome, NOTIFY_DUPLICATE);
    CHECK_STR(job.ticket_id, first);

    CHECK_INT(count(&f, SQL_TICKETS), 1);
    CHECK_INT(count(&f, SQL_SEATS), 2);
    CHECK_INT(count(&f, SQL_DELIVERIES), 1);
    CHECK_INT(count(&f, SQL_EVENTS), 2);

    /* Another booking is another ticket. */
    confirmed(body, sizeof(body), "ev-2", "27-b2", "cust-1");
    CHECK_INT(apply(&f, body, &job), ERR_OK);
    CHECK_INT(job.outcome, NOTIFY_ISSUED);
    CHECK_INT(count(&f, SQL_TICKETS), 2);
    teardown(&f);
}

TEST(cancellations_seat_by_seat)
{
    struct fixture f;
    struct notify_job job;
    char body[1024];

    setup(&f);
    confirmed(body, sizeof(body), "ev-1", "27-b1", "cust-1");
    CHECK_INT(apply(&f, body, &job), ERR_OK);

    cancelled(body, sizeof(body), "ev-c1", "cust-1", "[\"A2\"]", "[\"A1\"]");
    CHECK_INT(apply(&f, body, &job), ERR_OK);
    CHECK_INT(job.outcome, NOTIFY_CANCELLED);
    CHECK_INT(count(&f, SQL_SEATS_VALID), 1);
    CHECK_INT(count(&f, SQL_CANCELLED), 0);
    CHECK_INT(count(&f, SQL_DELIVERIES), 2);

    /* The same seat under another event id changes nothing. */
    cancelled(body, sizeof(body), "ev-c1b", "cust-1", "[\"A2\"]", "[\"A1\"]");
    CHECK_INT(apply(&f, body, &job), ERR_OK);
    CHECK_INT(job.outcome, NOTIFY_DUPLICATE);
    CHECK_INT(count(&f, SQL_DELIVERIES), 2);

    cancelled(body, sizeof(body), "ev-c2", "cust-1", "[\"A1\"]", "[]");
    CHECK_INT(apply(&f, body, &job), ERR_OK);
    CHECK_INT(job.outcome, NOTIFY_CANCELLED);
    CHECK_INT(count(&f, SQL_SEATS_VALID), 0);
    CHECK_INT(count(&f, SQL_CANCELLED), 1);
    CHECK_INT(count(&f, SQL_DELIVERIES), 3);
    teardown(&f);
}

TEST(refusals_leave_nothing)
{
    struct fixture f;
    struct notify_job job;
    char body[1024];

    setup(&f);
    /* Before its confirmation: retried later, not recorded now. */
    cancelled(body, sizeof(body), "ev-c1", "cust-1", "[\"A2\"]", "[\"A1\"]");
    CHECK_INT(apply(&f, body, &job), ERR_NOTFOUND);
    CHECK(strstr(job.error, "has no ticket yet") != NULL);
    CHECK_INT(count(&f, SQL_EVENTS), 0);

    confirmed(body, sizeof(body), "ev-1", "27-b1", "cust-1");
    CHECK_INT(apply(&f, body, &job), ERR_OK);
    /* A seat the ticket does not have: none of the event's seats go. */
    cancelled(body, sizeof(body), "ev-c2", "cust-1", "[\"A1\", \"Z9\"]",
              "[\"A2\"]");
    CHECK_INT(apply(&f, body, &job), ERR_INVALID);
    CHECK(strstr(job.error, "seat Z9 is not on the ticket") != NULL);
    /* Someone else's booking. */
    cancelled(body, sizeof(body), "ev-c3", "cust-2", "[\"A1\"]", "[\"A2\"]");
    CHECK_INT(apply(&f, body, &job), ERR_INVALID);
    CHECK(strstr(job.error, "another customer") != NULL);

    CHECK_INT(count(&f, SQL_SEATS_VALID), 2);
    CHECK_INT(count(&f, SQL_EVENTS), 1);
    CHECK_INT(count(&f, SQL_DELIVERIES), 1);

    /* The refused event id was not recorded: once fixable, it applies. */
    cancelled(body, sizeof(body), "ev-c1", "cust-1", "[\"A2\"]", "[\"A1\"]");
    CHECK_INT(apply(&f, body, &job), ERR_OK);
    CHECK_INT(job.outcome, NOTIFY_CANCELLED);
    teardown(&f);
}

HARNESS_MAIN(T(one_ticket_per_booking), T(cancellations_seat_by_seat),
             T(refusals_leave_nothing))
