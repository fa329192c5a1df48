/*
 * events.c - booking events as notify reads them, and the messages sent
 * to customers about them.
 *
 * The contract (docs/internals/notify.md) is booking's; this side accepts
 * extra fields, so booking may add some without breaking notify, and
 * refuses a body that lacks a field it needs or holds one of the wrong
 * type or form.  Such a body can never be applied however often it is
 * delivered: the consumer nacks it with the reason written here, and the
 * queue dead-letters it after mq.max_attempts deliveries.
 */
#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "services/notify/internal.h"

#define SHOW_ID_MAX 999999999999LL

static int fail(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    /* The reason travels in log values and problem texts: no quotes. */
    for (char *p = err; *p != '\0'; p++)
        if (*p == '"' || *p == '\\' || !isprint((unsigned char)*p))
            *p = '?';
    return ERR_INVALID;
}

bool notify_seat_ok(const char *s)
{
    size_t n = s != NULL ? strnlen(s, NOTIFY_SEAT_MAX + 1) : 0;

    if (n == 0 || n > NOTIFY_SEAT_MAX)
        return false;
    for (; *s != '\0'; s++)
        if (!isalnum((unsigned char)*s) && *s != '-')
            return false;
    return true;
}

/* A required string field of 1..max bytes; NULL after fail(). */
static const char *field_string(json_t *body, const char *key, size_t max,
                                char *err, size_t cap)
{
    json_t *v = json_object_get(body, key);
    size_t n;

    if (v == NULL) {
        fail(err, cap, "missing field %s", key);
        return NULL;
    }
    if (!json_is_string(v)) {
        fail(err, cap, "field %s must be a string", key);
        return NULL;
    }
    n = json_string_length(v);
    if (n == 0 || n > max || strlen(json_string_value(v)) != n) {
        fail(err, cap, "field %s must be 1 to %zu bytes", key, max);
        return NULL;
    }
    return json_string_value(v);
}

static bool field_int(json_t *body, const char *key, int64_t min, int64_t max,
                      int64_t *out, char *err, size_t cap)
{
    json_t *v = json_object_get(body, key);

    if (v == NULL) {
        fail(err, cap, "missing field %s", key);
        return false;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min ||
        json_integer_value(v) > max) {
        fail(err, cap, "field %s must be an integer from %lld to %lld", key,
             (long long)min, (long long)max);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

/* A list of distinct seat ids, min..NOTIFY_SEATS_MAX of them. */
static bool field_seats(json_t *body, const char *key, size_t min,
                        char (*out)[NOTIFY_SEAT_MAX + 1], size_t *n, char *err,
                        size_t cap)
{
    json_t *v = json_object_get(body, key), *seat;
    size_t i;

    if (v == NULL) {
        fail(err, cap, "missing field %s", key);
        return false;
    }
    if (!json_is_array(v) || json_array_size(v) < min ||
        json_array_size(v) > NOTIFY_SEATS_MAX) {
        fail(err, cap, "field %s must be a list of %zu to %d seat ids", key,
             min, NOTIFY_SEATS_MAX);
        return false;
    }
    json_array_foreach(v, i, seat)
    {
        const char *s = json_is_string(seat) ? json_string_value(seat) : NULL;
        if (!notify_seat_ok(s)) {
            fail(err, cap,
                 "%s[%zu] must be a seat id: 1 to %d letters, "
                 "digits or -",
                 key, i, NOTIFY_SEAT_MAX);
            return false;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(out[j], s) == 0) {
                fail(err, cap, "%s[%zu] repeats seat %s", key, i, s);
                return false;
            }
        }
        snprintf(out[i], NOTIFY_SEAT_MAX + 1, "%s", s);
    }
    *n = json_array_size(v);
    return true;
}

static bool currency_ok(const char *s)
{
    return s != NULL && strlen(s) == 3 && isupper((unsigned char)s[0]) &&
           isupper((unsigned char)s[1]) && isupper((unsigned char)s[2]);
}

/* Event ids go into log values and keys as they are: no space, quote or
 * backslash, nothing outside visible ASCII. */
static bool event_id_ok(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s < '!' || *s > '~' || *s == '"' || *s == '\\')
            return false;
    return true;
}

/* The fields both event types carry. */
static int parse_common(json_t *body, struct notify_event *ev, char *err,
                        size_t cap)
{
    const char *s;

    if ((s = field_string(body, "id", NOTIFY_EVENT_ID_MAX, err, cap)) == NULL)
        return ERR_INVALID;
    if (!event_id_ok(s))
        return fail(err, cap,
                    "field id must be visible ASCII with no quote "
                    "or backslash");
    snprintf(ev->id, sizeof(ev->id), "%s", s);
    if (!field_int(body, "show_id", 1, SHOW_ID_MAX, &ev->show_id, err, cap))
        return ERR_INVALID;
    if ((s = field_string(body, "booking_id", NOTIFY_BOOKING_ID_MAX, err,
                          cap)) == NULL)
        return ERR_INVALID;
    if (!notify_booking_id_ok(s, ev->show_id))
        return fail(err, cap,
                    "booking_id must be the show id %lld, - and letters, "
                    "digits, _ or -",
                    (long long)ev->show_id);
    snprintf(ev->booking_id, sizeof(ev->booking_id), "%s", s);
    if ((s = field_string(body, "customer_id", HTTP_CUSTOMER_MAX, err, cap)) ==
        NULL)
        return ERR_INVALID;
    if (!http_customer_ok(s))
        return fail(err, cap,
                    "customer_id holds a character other than "
                    "letters, digits, ., _ and -");
    snprintf(ev->customer, sizeof(ev->customer), "%s", s);
    if (!field_seats(body, "seats", 1, ev->seats, &ev->nseats, err, cap))
        return ERR_INVALID;
    if ((s = field_string(body, "currency", 3, err, cap)) == NULL)
        return ERR_INVALID;
    if (!currency_ok(s))
        return fail(err, cap, "currency must be three upper-case letters");
    snprintf(ev->currency, sizeof(ev->currency), "%s", s);
    if (!field_int(body, "occurred_at", 0, INT64_MAX, &ev->occurred_at, err,
                   cap))
        return ERR_INVALID;
    return ERR_OK;
}

static int parse_cancelled(json_t *body, struct notify_event *ev, char *err,
                           size_t cap)
{
    const char *s;

    if (!field_seats(body, "remaining_seats", 0, ev->remaining, &ev->nremaining,
                     err, cap) ||
        !field_int(body, "refund", 0, NOTIFY_AMOUNT_MAX, &ev->refund, err,
                   cap) ||
        !field_int(body, "fee", 0, NOTIFY_AMOUNT_MAX, &ev->fee, err, cap))
        return ERR_INVALID;
    if ((s = field_string(body, "reason", NOTIFY_REASON_MAX, err, cap)) == NULL)
        return ERR_INVALID;
    if (strcmp(s, "customer") != 0 && strcmp(s, "show_cancelled") != 0)
        return fail(err, cap,
                    "reason must be customer or show_cancelled, not %.32s", s);
    snprintf(ev->reason, sizeof(ev->reason), "%s", s);
    for (size_t i = 0; i < ev->nremaining; i++)
        for (size_t j = 0; j < ev->nseats; j++)
            if (strcmp(ev->remaining[i], ev->seats[j]) == 0)
                return fail(err, cap, "seat %s is both cancelled and remaining",
                            ev->seats[j]);
    return ERR_OK;
}

int notify_event_parse(const void *body, size_t len, struct notify_event *ev,
                       char *err, size_t cap)
{
    json_error_t jerr;
    json_t *doc;
    const char *type;
    int rc;

    memset(ev, 0, sizeof(*ev));
    err[0] = '\0';
    doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL)
        return fail(err, cap, "body is not JSON: %s at line %d column %d",
                    jerr.text, jerr.line, jerr.column);
    if (!json_is_object(doc)) {
        rc = fail(err, cap, "body is not a JSON object");
        goto out_doc;
    }
    if ((type = field_string(doc, "type", 64, err, cap)) == NULL) {
        rc = ERR_INVALID;
        goto out_doc;
    }
    if (strcmp(type, "booking.confirmed") == 0) {
        ev->type = NOTIFY_EV_CONFIRMED;
    } else if (strcmp(type, "booking.cancelled") == 0) {
        ev->type = NOTIFY_EV_CANCELLED;
    } else {
        rc = fail(err, cap, "unknown event type %.64s", type);
        goto out_doc;
    }
    if ((rc = parse_common(doc, ev, err, cap)) != ERR_OK)
        goto out_doc;
    if (ev->type == NOTIFY_EV_CONFIRMED)
        rc = field_int(doc, "total", 0, NOTIFY_AMOUNT_MAX, &ev->total, err, cap)
                 ? ERR_OK
                 : ERR_INVALID;
    else
        rc = parse_cancelled(doc, ev, err, cap);

out_doc:
    json_decref(doc);
    return rc;
}

/* --- messages ------------------------------------------------------------ */

struct text {
    char *out;
    size_t cap, len;
};

static void text_add(struct text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends, cutting at the end of out: a message is never a failure. */
static void text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->len + 1 >= t->cap)
        return;
    va_start(ap, fmt);
    n = vsnprintf(t->out + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n < t->cap - t->len ? (size_t)n : t->cap - t->len - 1;
}

static void text_seats(struct text *t, const char *const *seats, size_t n)
{
    for (size_t i = 0; i < n; i++)
        text_add(t, "%s%s", i > 0 ? ", " : "", seats[i]);
}

/*
 * Digits after the decimal point of a currency's minor unit (ISO 4217):
 * two but for these.  A currency missing here is printed with two.
 */
static int minor_digits(const char *currency)
{
    static const char none[] = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX "
                               "UYI VND VUV XAF XOF XPF";
    static const char three[] = "BHD IQD JOD KWD LYD OMR TND";

    if (strstr(none, currency) != NULL)
        return 0;
    if (strstr(three, currency) != NULL)
        return 3;
    return 2;
}

/* Money in minor units with its currency's decimals: INR 500.00. */
static void text_money(struct text *t, const char *currency, int64_t minor)
{
    int digits = minor_digits(currency);
    int64_t unit = digits == 0 ? 1 : digits == 3 ? 1000 : 100;

    if (digits == 0)
        text_add(t, "%s %" PRId64, currency, minor);
    else
        text_add(t, "%s %" PRId64 ".%0*" PRId64, currency, minor / unit, digits,
                 minor % unit);
}

static void seat_list(const struct notify_event *ev, const char **out)
{
    for (size_t i = 0; i < ev->nseats; i++)
        out[i] = ev->seats[i];
}

void notify_message_confirmed(const struct notify_event *ev,
                              const char *ticket_id, char *out, size_t cap)
{
    const char *seats[NOTIFY_SEATS_MAX];
    struct text t = {out, cap, 0};

    out[0] = '\0';
    seat_list(ev, seats);
    text_add(&t, "Your tickets for show %" PRId64 ", seats ", ev->show_id);
    text_seats(&t, seats, ev->nseats);
    text_add(&t, ": booking %s, ticket %s, paid ", ev->booking_id, ticket_id);
    text_money(&t, ev->currency, ev->total);
    text_add(&t, ". Show the QR code at the door.");
}

void notify_message_cancelled(const struct notify_event *ev,
                              const char *const *remaining, size_t nremaining,
                              char *out, size_t cap)
{
    const char *seats[NOTIFY_SEATS_MAX];
    struct text t = {out, cap, 0};

    out[0] = '\0';
    seat_list(ev, seats);
    text_add(&t, "Seats ");
    text_seats(&t, seats, ev->nseats);
    text_add(&t, " of booking %s for show %" PRId64 " are cancelled%s",
             ev->booking_id, ev->show_id,
             strcmp(ev->reason, "show_cancelled") == 0
                 ? " because the show is cancelled"
                 : " as you asked");
    text_add(&t, ". Refund ");
    text_money(&t, ev->currency, ev->refund);
    if (ev->fee > 0) {
        text_add(&t, " (cancellation fee ");
        text_money(&t, ev->currency, ev->fee);
        text_add(&t, ")");
    }
    if (nremaining > 0) {
        text_add(&t, ". Your ticket stays valid for seats ");
        text_seats(&t, remaining, nremaining);
    } else {
        text_add(&t, ". Your ticket is cancelled");
    }
    text_add(&t, ".");
}
