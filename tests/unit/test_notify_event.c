/*
 * test_notify_event.c - booking events as notify reads them: both types in
 * full, extra fields accepted, each way a body can be unusable with its
 * reason, and the messages sent to customers.
 */
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "harness.h"
#include "services/notify/internal.h"

#define CONFIRMED                                                              \
    "{\"id\": \"ev-1\", \"type\": \"booking.confirmed\", \"booking_id\": "     \
    "\"27-00ab\", \"show_id\": 27, \"customer_id\": \"cust-42\", \"seats\": "  \
    "[\"A1\", \"A2\"], \"total\": 50000, \"currency\": \"INR\", "              \
    "\"occurred_at\": 1764800000000, \"hold_id\": \"extra\"}"
#define CANCELLED                                                              \
    "{\"id\": \"ev-2\", \"type\": \"booking.cancelled\", \"booking_id\": "     \
    "\"27-00ab\", \"show_id\": 27, \"customer_id\": \"cust-42\", \"seats\": "  \
    "[\"A2\"], \"remaining_seats\": [\"A1\"], \"refund\": 22500, \"fee\": "    \
    "2500, \"currency\": \"INR\", \"reason\": \"customer\", "                  \
    "\"occurred_at\": 1764800000001}"

static int parse(const char *body, struct notify_event *ev, char *err)
{
    return notify_event_parse(body, strlen(body), ev, err, NOTIFY_ERROR_MAX);
}

TEST(confirmed_in_full)
{
    struct notify_event ev;
    char err[NOTIFY_ERROR_MAX];

    CHECK_INT(parse(CONFIRMED, &ev, err), ERR_OK);
    CHECK_INT(ev.type, NOTIFY_EV_CONFIRMED);
    CHECK_STR(ev.id, "ev-1");
    CHECK_STR(ev.booking_id, "27-00ab");
    CHECK_INT(ev.show_id, 27);
    CHECK_STR(ev.customer, "cust-42");
    CHECK_INT(ev.nseats, 2);
    CHECK_STR(ev.seats[0], "A1");
    CHECK_STR(ev.seats[1], "A2");
    CHECK_INT(ev.total, 50000);
    CHECK_STR(ev.currency, "INR");
    CHECK_INT(ev.occurred_at, 1764800000000LL);
}

TEST(cancelled_in_full)
{
    struct notify_event ev;
    char err[NOTIFY_ERROR_MAX];

    CHECK_INT(parse(CANCELLED, &ev, err), ERR_OK);
    CHECK_INT(ev.type, NOTIFY_EV_CANCELLED);
    CHECK_INT(ev.nseats, 1);
    CHECK_STR(ev.seats[0], "A2");
    CHECK_INT(ev.nremaining, 1);
    CHECK_STR(ev.remaining[0], "A1");
    CHECK_INT(ev.refund, 22500);
    CHECK_INT(ev.fee, 2500);
    CHECK_STR(ev.reason, "customer");
}

/* Replaces the first `from` in base by `to` and expects a refusal whose
 * reason contains `reason`. */
static void refused(const char *base, const char *from, const char *to,
                    const char *reason, int line)
{
    char body[2048], err[NOTIFY_ERROR_MAX];
    const char *at = strstr(base, from);
    struct notify_event ev;

    if (at == NULL)
        harness_fail(__FILE__, line, "no \"%s\" in the base body", from);
    snprintf(body, sizeof(body), "%.*s%s%s", (int)(at - base), base, to,
             at + strlen(from));
    if (parse(body, &ev, err) != ERR_INVALID)
        harness_fail(__FILE__, line, "accepted: %s", body);
    if (strstr(err, reason) == NULL)
        harness_fail(__FILE__, line, "reason \"%s\" lacks \"%s\"", err, reason);
    if (strchr(err, '"') != NULL)
        harness_fail(__FILE__, line, "reason has a quote: %s", err);
}

#define REFUSED(base, from, to, reason)                                        \
    refused(base, from, to, reason, __LINE__)

TEST(unusable_bodies_say_why)
{
    REFUSED(CONFIRMED, "{", "[", "not JSON");
    REFUSED(CONFIRMED, "\"id\": \"ev-1\"", "\"ix\": \"ev-1\"",
            "missing field id");
    REFUSED(CONFIRMED, "\"id\": \"ev-1\"", "\"id\": 7",
            "field id must be a string");
    REFUSED(CONFIRMED, "\"id\": \"ev-1\"", "\"id\": \"\"", "1 to 128 bytes");
    REFUSED(CONFIRMED, "\"id\": \"ev-1\"", "\"id\": \"ev 1\"",
            "field id must be visible ASCII");
    REFUSED(CONFIRMED, "\"id\": \"ev-1\"", "\"id\": \"ev\\\"1\"",
            "field id must be visible ASCII");
    REFUSED(CONFIRMED, "booking.confirmed", "booking.held",
            "unknown event type booking.held");
    REFUSED(CONFIRMED, "booking.confirmed", "booking.\\\"x",
            "unknown event type booking.?x");
    REFUSED(CONFIRMED, "\"27-00ab\"", "\"28-00ab\"",
            "booking_id must be the show id 27");
    REFUSED(CONFIRMED, "\"show_id\": 27", "\"show_id\": 0",
            "field show_id must be an integer from 1");
    REFUSED(CONFIRMED, "\"show_id\": 27", "\"show_id\": \"27\"",
            "field show_id must be an integer");
    REFUSED(CONFIRMED, "cust-42", "cust 42", "customer_id holds");
    REFUSED(CONFIRMED, "[\"A1\", \"A2\"]", "[]", "field seats must be a list");
    REFUSED(CONFIRMED, "[\"A1\", \"A2\"]", "[\"A1\", \"A1\"]",
            "seats[1] repeats seat A1");
    REFUSED(CONFIRMED, "[\"A1\", \"A2\"]", "[\"A1\", \"A 2\"]",
            "seats[1] must be a seat id");
    REFUSED(CONFIRMED, "[\"A1\", \"A2\"]", "[\"A1\", 2]",
            "seats[1] must be a seat id");
    REFUSED(CONFIRMED, "\"total\": 50000", "\"total\": -1",
            "field total must be an integer from 0");
    REFUSED(CONFIRMED, "\"total\": 50000", "\"totl\": 50000",
            "missing field total");
    REFUSED(CONFIRMED, "\"INR\"", "\"inr\"", "currency must be three");
    REFUSED(CONFIRMED, "\"occurred_at\": 1764800000000", "\"occurred_at\": 1.5",
            "field occurred_at must be an integer");
    REFUSED(CONFIRMED, "\"hold_id\"", "\"id\"", "not JSON"); /* duplicate */
    REFUSED(CANCELLED, "\"reason\": \"customer\"", "\"reason\": \"bored\"",
            "reason must be customer or show_cancelled");
    REFUSED(CANCELLED, "[\"A1\"]", "[\"A2\"]",
            "seat A2 is both cancelled and remaining");
    REFUSED(CANCELLED, "\"fee\": 2500, ", "", "missing field fee");
    REFUSED(CANCELLED, "\"remaining_seats\": [\"A1\"], ", "",
            "missing field remaining_seats");
    REFUSED(CANCELLED, "\"refund\": 22500", "\"refund\": null",
            "field refund must be an integer");
}

TEST(not_an_object)
{
    struct notify_event ev;
    char err[NOTIFY_ERROR_MAX];

    CHECK_INT(parse("[1, 2]", &ev, err), ERR_INVALID);
    CHECK_STR(err, "body is not a JSON object");
    CHECK_INT(parse("", &ev, err), ERR_INVALID);
    CHECK(strncmp(err, "body is not JSON", 16) == 0);
}

TEST(full_cancellation_leaves_no_seat)
{
    struct notify_event ev;
    char body[1024], err[NOTIFY_ERROR_MAX];
    const char *at = strstr(CANCELLED, "[\"A1\"]");

    snprintf(body, sizeof(body), "%.*s[]%s", (int)(at - CANCELLED), CANCELLED,
             at + strlen("[\"A1\"]"));
    CHECK_INT(parse(body, &ev, err), ERR_OK);
    CHECK_INT(ev.nremaining, 0);
}

TEST(messages)
{
    struct notify_event ev;
    char err[NOTIFY_ERROR_MAX], out[NOTIFY_MESSAGE_MAX];
    const char *left[] = {"A1"};

    CHECK_INT(parse(CONFIRMED, &ev, err), ERR_OK);
    notify_message_confirmed(&ev, "tk_000102030405060708090a0b", out,
                             sizeof(out));
    CHECK_STR(out, "Your tickets for show 27, seats A1, A2: booking 27-00ab, "
                   "ticket tk_000102030405060708090a0b, paid INR 500.00. "
                   "Show the QR code at the door.");

    CHECK_INT(parse(CANCELLED, &ev, err), ERR_OK);
    notify_message_cancelled(&ev, left, 1, out, sizeof(out));
    CHECK_STR(out, "Seats A2 of booking 27-00ab for show 27 are cancelled as "
                   "you asked. Refund INR 225.00 (cancellation fee INR "
                   "25.00). Your ticket stays valid for seats A1.");
    snprintf(ev.reason, sizeof(ev.reason), "show_cancelled");
    ev.fee = 0;
    ev.refund = 5;
    notify_message_cancelled(&ev, NULL, 0, out, sizeof(out));
    CHECK_STR(out, "Seats A2 of booking 27-00ab for show 27 are cancelled "
                   "because the show is cancelled. Refund INR 0.05. Your "
                   "ticket is cancelled.");

    /* Each currency with its own decimals (ISO 4217). */
    snprintf(ev.currency, sizeof(ev.currency), "JPY");
    ev.refund = 1500;
    notify_message_cancelled(&ev, NULL, 0, out, sizeof(out));
    CHECK(strstr(out, "Refund JPY 1500. ") != NULL);
    snprintf(ev.currency, sizeof(ev.currency), "KWD");
    ev.refund = 1505;
    notify_message_cancelled(&ev, NULL, 0, out, sizeof(out));
    CHECK(strstr(out, "Refund KWD 1.505. ") != NULL);

    /* A short buffer cuts the message, and it stays a string. */
    notify_message_cancelled(&ev, NULL, 0, out, 12);
    CHECK_STR(out, "Seats A2 of");
}

HARNESS_MAIN(T(confirmed_in_full), T(cancelled_in_full),
             T(unusable_bodies_say_why), T(not_an_object),
             T(full_cancellation_leaves_no_seat), T(messages))
