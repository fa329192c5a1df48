/*
 * check.c - `marquee check` (check.h), the invariant checker.
 *
 * One read-only SQLite connection: booking's database is `main`,
 * payment's is ATTACHed as `pay` and notify's as `ntf`, so every check is
 * one SQL statement joining the services' tables, stepped row by row: the
 * checker holds one row at a time whatever the size of the installation.
 * It talks to SQLite directly rather than through src/store, which opens
 * databases to write them (migrations, a writer thread); a checker must
 * not be able to.
 *
 * The three snapshots are taken in one read transaction, in the order
 * the services write: notify, then booking, then payment.  A ticket is
 * made only after booking committed its booking, and booking commits a
 * booking only after payment committed the charge, so a later snapshot
 * can only know more of what an earlier one refers to: no finding comes
 * from the gap between two snapshots except "not there yet", which the
 * grace period covers.
 */
#include "tools/check.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/err.h"
#include "base/log.h"

enum check_inv { INV_I1, INV_I2, INV_I3, INV_I4, INV_I5, INV_I6, INV_COUNT };
static const char *const inv_names[INV_COUNT] = {"I1", "I2", "I3",
                                                 "I4", "I5", "I6"};

static const struct config_key check_keys[] = {
    {"log.level", CONFIG_STRING, "warn", 0, 0,
     "debug, info, warn, error or off"},
    {"booking.db", CONFIG_STRING, "", 0, 0, "booking's database (required)"},
    {"payment.db", CONFIG_STRING, "", 0, 0, "payment's database (required)"},
    {"notify.db", CONFIG_STRING, "", 0, 0,
     "notify's database; without it I4 is not checked"},
    /* Booking's own keys and defaults, so its settings apply as they are. */
    {"booking.max_extensions", CONFIG_INT, "2", 0, 100,
     "extensions a hold may have had (booking's setting)"},
    {"booking.max_hold_life_s", CONFIG_INT, "1200", 1, 86400,
     "longest life of a hold from its creation (booking's setting)"},
};
#define NKEYS (sizeof(check_keys) / sizeof(check_keys[0]))

static const char usage_text[] =
    "usage: marquee check --booking.db=PATH --payment.db=PATH "
    "[--notify.db=PATH]\n"
    "                     [--booking.max_hold_life_s=N "
    "--booking.max_extensions=N]\n"
    "                     [--grace-ms=N] [--limit=N] [--json]\n"
    "\n"
    "Reads the databases (never writes them) and reports every violation\n"
    "of invariants I1-I6, one line each, then a summary line.\n"
    "\n"
    "  --grace-ms=N  work younger than this is pending, not a violation\n"
    "                (default 60000)\n"
    "  --limit=N     findings printed per invariant (default 100); the\n"
    "                summary counts them all\n"
    "  --json        one JSON object per line\n"
    "\n"
    "exit status: 0 clean, 1 violations found, 2 misuse or a database\n"
    "that cannot be read\n"
    "\n"
    "keys:\n";

/* Money not yet settled, per currency, for the comparison over all. */
struct check_money {
    char currency[8];
    int64_t in_charges, in_refunds;
};

struct check_run {
    sqlite3 *db;
    bool json, have_notify;
    int64_t now_ms, grace_ms, limit, max_life_ms, max_ext;
    int64_t found[INV_COUNT], pending[INV_COUNT];
    struct check_money money[CHECK_CURRENCIES_MAX];
    size_t nmoney;
    /* What was looked at, for the summary. */
    int64_t bookings, live_holds, charges, tickets;
};

/* What the command line says. */
struct check_args {
    bool json;
    const char *grace, *limit;
    char *cfg_argv[CHECK_ARGS_MAX + 1]; /* [0] is a program name */
    int cfg_argc;
};

static int misuse(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage(void)
{
    fprintf(stderr, "%s", usage_text);
    config_print_help(check_keys, NKEYS, 2);
    return CHECK_EXIT_MISUSE;
}

static int misuse(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "marquee check: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n");
    return usage();
}

/* --- pure parts ---------------------------------------------------------- */

enum check_refund_verdict check_refund_judge(int64_t paid, int64_t done,
                                             int64_t due)
{
    if (paid == done)
        return CHECK_REFUND_MATCH;
    if (paid < done)
        return CHECK_REFUND_MISSING;
    return paid - done <= due ? CHECK_REFUND_IN_FLIGHT : CHECK_REFUND_EXTRA;
}

enum check_money_verdict check_money_judge(int64_t net, int64_t kept,
                                           int64_t due, int64_t in_charges,
                                           int64_t in_refunds)
{
    if (net == kept + due)
        return CHECK_MONEY_MATCH;
    if ((in_charges != 0 || in_refunds != 0) &&
        net == kept + due + in_charges - in_refunds)
        return CHECK_MONEY_PENDING;
    return CHECK_MONEY_DIFFERS;
}

int check_uri(const char *path, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    static const char prefix[] = "file:", suffix[] = "?mode=ro";
    size_t n = 0;

    if (path == NULL || path[0] == '\0')
        return ERR_INVALID;
    if (size < sizeof(prefix))
        return ERR_TOOBIG;
    memcpy(out, prefix, sizeof(prefix) - 1);
    n = sizeof(prefix) - 1;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || strchr("-._~/", *p) != NULL;
        if (n + (plain ? 1 : 3) + sizeof(suffix) > size)
            return ERR_TOOBIG;
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    memcpy(out + n, suffix, sizeof(suffix));
    return ERR_OK;
}

/* Appends to out[*n..size-1], cutting what does not fit. */
static void line_add(char *out, size_t size, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void line_add(char *out, size_t size, size_t *n, const char *fmt, ...)
{
    va_list ap;
    int w;

    if (*n + 1 >= size)
        return;
    va_start(ap, fmt);
    w = vsnprintf(out + *n, size - *n, fmt, ap);
    va_end(ap);
    if (w > 0)
        *n = *n + (size_t)w < size ? *n + (size_t)w : size - 1;
}

static void value_add(const json_t *v, char *out, size_t size, size_t *n)
{
    size_t i;
    json_t *e;

    switch (json_typeof(v)) {
    case JSON_STRING: line_add(out, size, n, "%s", json_string_value(v)); break;
    case JSON_INTEGER:
        line_add(out, size, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_ARRAY:
        json_array_foreach(v, i, e)
        {
            if (i > 0)
                line_add(out, size, n, ",");
            value_add(e, out, size, n);
        }
        break;
    case JSON_TRUE: line_add(out, size, n, "true"); break;
    case JSON_FALSE: line_add(out, size, n, "false"); break;
    default: line_add(out, size, n, "null"); break;
    }
}

static bool is_head_key(const char *k)
{
    return strcmp(k, "invariant") == 0 || strcmp(k, "status") == 0 ||
           strcmp(k, "kind") == 0 || strcmp(k, "detail") == 0;
}

void check_line_format(const json_t *item, char *out, size_t size)
{
    const char *k;
    json_t *v;
    size_t n = 0;

    out[0] = '\0';
    line_add(out, size, &n, "%s %s %s",
             json_string_value(json_object_get(item, "invariant")),
             json_string_value(json_object_get(item, "status")),
             json_string_value(json_object_get(item, "kind")));
    json_object_foreach((json_t *)item, k, v)
    {
        if (is_head_key(k))
            continue;
        line_add(out, size, &n, " %s=", k);
        value_add(v, out, size, &n);
    }
    line_add(out, size, &n, ": %s",
             json_string_value(json_object_get(item, "detail")));
}

/* --- reporting ----------------------------------------------------------- */

/* Prints j on one line and drops it (takes the reference). */
static void print_json(json_t *j)
{
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

    if (text != NULL)
        printf("%s\n", text);
    free(text);
    json_decref(j);
}

/*
 * One finding: ids is an object of the ids involved (taken), the detail a
 * sentence.  Counted always, printed while under the limit.
 */
static void report(struct check_run *r, enum check_inv inv, bool pending,
                   const char *kind, json_t *ids, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void report(struct check_run *r, enum check_inv inv, bool pending,
                   const char *kind, json_t *ids, const char *fmt, ...)
{
    int64_t *count = pending ? &r->pending[inv] : &r->found[inv];
    char detail[CHECK_LINE_MAX / 2];
    va_list ap;
    json_t *item;

    (*count)++;
    if (*count > r->limit) {
        json_decref(ids);
        return;
    }
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);

    item = json_pack("{s:s, s:s, s:s}", "invariant", inv_names[inv], "status",
                     pending ? "pending" : "violation", "kind", kind);
    if (item == NULL) {
        json_decref(ids);
        return;
    }
    if (ids != NULL)
        json_object_update(item, ids);
    json_decref(ids);
    json_object_set_new(item, "detail", json_string(detail));
    if (r->json) {
        print_json(json_incref(item));
    } else {
        char line[CHECK_LINE_MAX];
        check_line_format(item, line, sizeof(line));
        printf("%s\n", line);
    }
    json_decref(item);
}

/* Money charged or refunded and not yet recorded by booking. */
static void money_pending(struct check_run *r, const char *currency,
                          int64_t charges, int64_t refunds)
{
    size_t i;

    if (currency == NULL)
        return;
    for (i = 0; i < r->nmoney; i++)
        if (strcmp(r->money[i].currency, currency) == 0)
            break;
    if (i == r->nmoney) {
        if (r->nmoney == CHECK_CURRENCIES_MAX)
            return; /* the comparison over all then calls it a difference */
        snprintf(r->money[i].currency, sizeof(r->money[i].currency), "%s",
                 currency);
        r->nmoney++;
    }
    r->money[i].in_charges += charges;
    r->money[i].in_refunds += refunds;
}

/* --- running one statement ----------------------------------------------- */

typedef void (*check_row_fn)(struct check_run *r, sqlite3_stmt *st);

static const char *col_s(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

static int64_t col_i(sqlite3_stmt *st, int i)
{
    return sqlite3_column_int64(st, i);
}

static bool col_null(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL;
}

static void bind_named(sqlite3_stmt *st, const char *name, int64_t v)
{
    int i = sqlite3_bind_parameter_index(st, name);

    if (i > 0)
        sqlite3_bind_int64(st, i, v);
}

/* Steps sql, calling fn on each row; ERR_OK or ERR_DB (said on stderr). */
static int run_query(struct check_run *r, const char *what, const char *sql,
                     check_row_fn fn)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(r->db, sql, -1, &st, NULL);

    if (rc != SQLITE_OK) {
        fprintf(stderr, "marquee check: %s: cannot prepare: %s\n", what,
                sqlite3_errmsg(r->db));
        return ERR_DB;
    }
    bind_named(st, ":now", r->now_ms);
    bind_named(st, ":cutoff", r->now_ms - r->grace_ms);
    bind_named(st, ":life", r->max_life_ms);
    bind_named(st, ":ext", r->max_ext);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(r, st);
    if (rc != SQLITE_DONE)
        fprintf(stderr, "marquee check: %s: cannot read: %s\n", what,
                sqlite3_errmsg(r->db));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? ERR_OK : ERR_DB;
}

/* --- I1: one seat, one claim --------------------------------------------- */

/* Seats claimed by more than one live hold or confirmed booking. */
static const char SQL_I1_CLAIMS[] =
    "SELECT show_id, idx, max(seat), count(*), group_concat(claim, ',') "
    "FROM (SELECT h.show_id AS show_id, CAST(j.value AS INTEGER) AS idx, "
    "  json_extract(h.seats, '$[' || j.key || '].id') AS seat, "
    "  'hold:' || h.id AS claim "
    "  FROM main.holds h, json_each(h.seat_idx) j "
    "  WHERE h.status = 'active' AND h.expires_at > :now "
    " UNION ALL "
    " SELECT b.show_id, s.idx, s.seat, 'booking:' || b.id "
    "  FROM main.booking_seats s JOIN main.bookings b ON b.id = s.booking_id "
    "  WHERE s.status = 'confirmed') "
    "GROUP BY show_id, idx HAVING count(*) > 1 ORDER BY show_id, idx";

static json_t *claims_json(const char *text)
{
    json_t *a = json_array();
    size_t n = 0;

    while (text != NULL && *text != '\0' && n < CHECK_CLAIMS_MAX) {
        const char *end = strchr(text, ',');
        size_t len = end != NULL ? (size_t)(end - text) : strlen(text);
        json_array_append_new(a, json_stringn(text, len));
        n++;
        text = end != NULL ? end + 1 : NULL;
    }
    return a;
}

static void row_i1_claims(struct check_run *r, sqlite3_stmt *st)
{
    report(r, INV_I1, false, "seat-claimed-twice",
           json_pack("{s:I, s:I, s:s?, s:o}", "show_id",
                     (json_int_t)col_i(st, 0), "seat_index",
                     (json_int_t)col_i(st, 1), "seat", col_s(st, 2), "claims",
                     claims_json(col_s(st, 4))),
           "%" PRId64 " live holds and confirmed bookings claim this seat",
           col_i(st, 3));
}

/* A confirmed booking seat must be sold to that booking in `seats`. */
static const char SQL_I1_BOOKED[] =
    "SELECT b.show_id, s.idx, s.seat, b.id, t.state, t.booking_id, "
    "  t.hold_id "
    "FROM main.booking_seats s JOIN main.bookings b ON b.id = s.booking_id "
    "LEFT JOIN main.seats t ON t.show_id = b.show_id AND t.idx = s.idx "
    "WHERE s.status = 'confirmed' AND (t.state IS NOT 2 "
    "  OR t.booking_id IS NOT b.id)";

static void row_i1_booked(struct check_run *r, sqlite3_stmt *st)
{
    report(r, INV_I1, false, "booked-seat-not-sold",
           json_pack(
               "{s:I, s:I, s:s?, s:s?, s:o, s:s?, s:s?}", "show_id",
               (json_int_t)col_i(st, 0), "seat_index", (json_int_t)col_i(st, 1),
               "seat", col_s(st, 2), "booking_id", col_s(st, 3), "seat_state",
               col_null(st, 4) ? json_null() : json_integer(col_i(st, 4)),
               "seat_booking_id", col_s(st, 5), "seat_hold_id", col_s(st, 6)),
           "the booking holds this seat confirmed but the seat table does "
           "not have it sold to that booking (free, held, or sold to "
           "another), so it can be sold again");
}

/* A sold seat must belong to a confirmed seat of its booking. */
static const char SQL_I1_SOLD[] =
    "SELECT t.show_id, t.idx, t.booking_id FROM main.seats t "
    "WHERE t.state = 2 AND NOT EXISTS (SELECT 1 FROM main.booking_seats s "
    "  JOIN main.bookings b ON b.id = s.booking_id "
    "  WHERE s.booking_id = t.booking_id AND s.idx = t.idx "
    "  AND s.status = 'confirmed' AND b.show_id = t.show_id)";

static void row_i1_sold(struct check_run *r, sqlite3_stmt *st)
{
    report(r, INV_I1, false, "sold-seat-without-booking",
           json_pack("{s:I, s:I, s:s?}", "show_id", (json_int_t)col_i(st, 0),
                     "seat_index", (json_int_t)col_i(st, 1), "booking_id",
                     col_s(st, 2)),
           "the seat table has this seat sold, but no confirmed seat of "
           "that booking is this one");
}

/* --- I5: holds end by their deadline ------------------------------------- */

static const char SQL_I5_HOLDS[] =
    "SELECT id, show_id, status, created_at, expires_at, max_expires_at, "
    "  extensions, ended_at FROM main.holds "
    "WHERE expires_at > max_expires_at OR max_expires_at > created_at + "
    "  :life OR extensions > :ext OR (status = 'converted' AND "
    "  ended_at >= expires_at) OR (status != 'active' AND ended_at IS NULL)";

static json_t *hold_ids(sqlite3_stmt *st)
{
    return json_pack("{s:s?, s:I, s:s?}", "hold_id", col_s(st, 0), "show_id",
                     (json_int_t)col_i(st, 1), "hold_status", col_s(st, 2));
}

static void row_i5_holds(struct check_run *r, sqlite3_stmt *st)
{
    int64_t created = col_i(st, 3), expires = col_i(st, 4),
            max_exp = col_i(st, 5), ext = col_i(st, 6);
    const char *status = col_s(st, 2);

    if (expires > max_exp)
        report(r, INV_I5, false, "hold-past-maximum", hold_ids(st),
               "expires_at %" PRId64 " is %" PRId64
               " ms past its max_expires_at %" PRId64,
               expires, expires - max_exp, max_exp);
    if (max_exp > created + r->max_life_ms)
        report(r, INV_I5, false, "hold-life-too-long", hold_ids(st),
               "max_expires_at is %" PRId64 " ms after creation, more than "
               "booking.max_hold_life_s (%" PRId64 " ms)",
               max_exp - created, r->max_life_ms);
    if (ext > r->max_ext)
        report(r, INV_I5, false, "too-many-extensions", hold_ids(st),
               "%" PRId64 " extensions, more than booking.max_extensions "
               "(%" PRId64 ")",
               ext, r->max_ext);
    if (status != NULL && strcmp(status, "converted") == 0 &&
        !col_null(st, 7) && col_i(st, 7) >= expires)
        report(r, INV_I5, false, "converted-after-deadline", hold_ids(st),
               "became a booking at %" PRId64 ", %" PRId64
               " ms after its deadline",
               col_i(st, 7), col_i(st, 7) - expires);
    if (status != NULL && strcmp(status, "active") != 0 && col_null(st, 7))
        report(r, INV_I5, false, "ended-without-time", hold_ids(st),
               "the hold ended but has no ended_at");
}

/* A live held seat must belong to a live hold with the same deadline. */
static const char SQL_I5_SEATS[] =
    "SELECT t.show_id, t.idx, t.hold_id, t.expires_at, h.id, h.status, "
    "  h.expires_at, h.show_id, EXISTS (SELECT 1 FROM json_each(h.seat_idx) "
    "  j WHERE j.value = t.idx) "
    "FROM main.seats t LEFT JOIN main.holds h ON h.id = t.hold_id "
    "WHERE t.state = 1 AND t.expires_at > :now AND (h.id IS NULL OR "
    "  h.status != 'active' OR h.expires_at != t.expires_at OR "
    "  h.show_id != t.show_id OR NOT EXISTS (SELECT 1 FROM "
    "  json_each(h.seat_idx) j WHERE j.value = t.idx))";

static void row_i5_seats(struct check_run *r, sqlite3_stmt *st)
{
    json_t *ids = json_pack("{s:I, s:I, s:s?}", "show_id",
                            (json_int_t)col_i(st, 0), "seat_index",
                            (json_int_t)col_i(st, 1), "hold_id", col_s(st, 2));
    const char *status = col_s(st, 5);

    if (col_null(st, 4))
        report(r, INV_I5, false, "seat-held-by-no-hold", ids,
               "the seat is held until %" PRId64 " by a hold that does not "
               "exist",
               col_i(st, 3));
    else if (strcmp(status, "active") != 0)
        report(r, INV_I5, false, "seat-held-by-ended-hold", ids,
               "the seat is held until %" PRId64 " by a hold that is %s",
               col_i(st, 3), status);
    else if (col_i(st, 7) != col_i(st, 0) || col_i(st, 8) == 0)
        report(r, INV_I5, false, "seat-not-in-hold", ids,
               "the seat is held by a hold that does not list it");
    else
        report(r, INV_I5, false, "seat-deadline-differs", ids,
               "the seat is held until %" PRId64 ", its hold ends at %" PRId64,
               col_i(st, 3), col_i(st, 6));
}

/* A live hold's every seat must be held by it in the seat table. */
static const char SQL_I5_HOLD_SEATS[] =
    "SELECT h.id, h.show_id, CAST(j.value AS INTEGER), t.state, t.hold_id "
    "FROM main.holds h, json_each(h.seat_idx) j "
    "LEFT JOIN main.seats t ON t.show_id = h.show_id AND t.idx = j.value "
    "WHERE h.status = 'active' AND h.expires_at > :now AND "
    "  (t.state IS NOT 1 OR t.hold_id IS NOT h.id)";

static void row_i5_hold_seats(struct check_run *r, sqlite3_stmt *st)
{
    report(r, INV_I5, false, "hold-without-seat",
           json_pack("{s:s?, s:I, s:I, s:o, s:s?}", "hold_id", col_s(st, 0),
                     "show_id", (json_int_t)col_i(st, 1), "seat_index",
                     (json_int_t)col_i(st, 2), "seat_state",
                     col_null(st, 3) ? json_null() : json_integer(col_i(st, 3)),
                     "seat_hold_id", col_s(st, 4)),
           "the hold is live, but the seat table does not have this seat "
           "held by it");
}

/* --- I3 and I6 per charge ------------------------------------------------ */

/*
 * Every succeeded charge with what booking knows of its attempt (the
 * charge's reference is the intent id), its booking, and the refunds on
 * both sides.  Each lookup uses a key or an index of its table.
 */
static const char SQL_CHARGES[] =
    "SELECT c.id, c.reference, c.amount, c.currency, c.refunded, "
    "  (SELECT coalesce(sum(pr.amount), 0) FROM pay.refunds pr "
    "   WHERE pr.charge_id = c.id), "
    "  i.id, i.state, i.updated_at, i.amount, "
    "  b.id, b.charge_id, "
    "  (SELECT coalesce(sum(r.amount), 0) FROM main.refunds r "
    "   WHERE r.booking_id = b.id AND r.state = 'done'), "
    "  (SELECT coalesce(sum(r.amount), 0) FROM main.refunds r "
    "   WHERE r.booking_id = b.id AND r.state = 'due'), "
    "  u.id, u.amount, u.state, u.charge_id "
    "FROM pay.charges c "
    "LEFT JOIN main.intents i ON i.id = c.reference "
    "LEFT JOIN main.bookings b ON b.intent_id = c.reference "
    "LEFT JOIN main.refunds u ON u.booking_id IS NULL "
    "  AND u.intent_id = c.reference "
    "WHERE c.status = 'succeeded'";

enum {
    CH_ID,
    CH_REF,
    CH_AMOUNT,
    CH_CURRENCY,
    CH_REFUNDED,
    CH_PAY_REFUNDS,
    IN_ID,
    IN_STATE,
    IN_UPDATED,
    IN_AMOUNT,
    BK_ID,
    BK_CHARGE,
    BK_DONE,
    BK_DUE,
    UB_ID,
    UB_AMOUNT,
    UB_STATE,
    UB_CHARGE,
};

static json_t *charge_ids(sqlite3_stmt *st)
{
    return json_pack("{s:s?, s:s?, s:I, s:s?}", "charge_id", col_s(st, CH_ID),
                     "reference", col_s(st, CH_REF), "amount",
                     (json_int_t)col_i(st, CH_AMOUNT), "currency",
                     col_s(st, CH_CURRENCY));
}

/* I6: payment's refunds of the charge against booking's. */
static void charge_refunds(struct check_run *r, sqlite3_stmt *st, int64_t done,
                           int64_t due)
{
    int64_t paid = col_i(st, CH_REFUNDED);

    switch (check_refund_judge(paid, done, due)) {
    case CHECK_REFUND_MATCH: break;
    case CHECK_REFUND_IN_FLIGHT:
        report(r, INV_I6, true, "refund-in-flight", charge_ids(st),
               "payment refunded %" PRId64 ", booking recorded %" PRId64
               " done and %" PRId64 " due: a refund sent, not yet recorded",
               paid, done, due);
        money_pending(r, col_s(st, CH_CURRENCY), 0, paid - done);
        break;
    case CHECK_REFUND_MISSING:
        report(r, INV_I6, false, "refund-missing-at-payment", charge_ids(st),
               "booking recorded %" PRId64 " refunded (done) but payment "
               "refunded %" PRId64,
               done, paid);
        break;
    case CHECK_REFUND_EXTRA:
        report(r, INV_I6, false, "refund-unrecorded", charge_ids(st),
               "payment refunded %" PRId64 ", more than booking's %" PRId64
               " done and %" PRId64 " due",
               paid, done, due);
        break;
    }
}

/* I3 for a charge whose attempt booking recorded as confirmed. */
static void charge_confirmed(struct check_run *r, sqlite3_stmt *st)
{
    if (col_null(st, BK_ID))
        return; /* the intent names a booking that is gone: I2 says so */
    if (!col_null(st, UB_ID))
        report(r, INV_I3, false, "booked-and-refunded", charge_ids(st),
               "the attempt has booking %s and also refund %s of the whole "
               "charge",
               col_s(st, BK_ID), col_s(st, UB_ID));
    if (strcmp(col_s(st, BK_CHARGE), col_s(st, CH_ID)) != 0) {
        report(r, INV_I3, false, "second-charge", charge_ids(st),
               "booking %s is paid by charge %s; this charge of the same "
               "attempt has no booking and no refund",
               col_s(st, BK_ID), col_s(st, BK_CHARGE));
        return;
    }
    charge_refunds(r, st, col_i(st, BK_DONE), col_i(st, BK_DUE));
}

/* I3 for a charge whose attempt booking is refunding (no booking). */
static void charge_refunding(struct check_run *r, sqlite3_stmt *st)
{
    const char *ub_state = col_s(st, UB_STATE);
    bool done;

    if (!col_null(st, BK_ID))
        report(r, INV_I3, false, "booked-and-refunded", charge_ids(st),
               "the attempt is being refunded but has booking %s",
               col_s(st, BK_ID));
    if (col_null(st, UB_ID)) {
        report(r, INV_I3, false, "refund-missing", charge_ids(st),
               "booking marked the attempt refunding but has no refund row "
               "for it");
        return;
    }
    if (strcmp(col_s(st, UB_CHARGE), col_s(st, CH_ID)) != 0) {
        report(r, INV_I3, false, "second-charge", charge_ids(st),
               "refund %s is for charge %s; this charge of the same attempt "
               "has no booking and no refund",
               col_s(st, UB_ID), col_s(st, UB_CHARGE));
        return;
    }
    if (col_i(st, UB_AMOUNT) != col_i(st, CH_AMOUNT))
        report(r, INV_I3, false, "refund-not-full", charge_ids(st),
               "refund %s of the unbooked charge is %" PRId64 ", not the "
               "whole %" PRId64,
               col_s(st, UB_ID), col_i(st, UB_AMOUNT), col_i(st, CH_AMOUNT));
    done = ub_state != NULL && strcmp(ub_state, "done") == 0;
    charge_refunds(r, st, done ? col_i(st, UB_AMOUNT) : 0,
                   done ? 0 : col_i(st, UB_AMOUNT));
}

static void row_charges(struct check_run *r, sqlite3_stmt *st)
{
    const char *state = col_s(st, IN_STATE);

    if (col_i(st, CH_PAY_REFUNDS) != col_i(st, CH_REFUNDED))
        report(r, INV_I6, false, "payment-refunds-differ", charge_ids(st),
               "payment's charge says %" PRId64 " refunded, its refunds sum "
               "to %" PRId64,
               col_i(st, CH_REFUNDED), col_i(st, CH_PAY_REFUNDS));
    if (col_null(st, IN_ID)) {
        report(r, INV_I3, false, "charge-without-attempt", charge_ids(st),
               "the charge succeeded but booking has no payment attempt "
               "with its reference: no booking, no refund");
        return;
    }
    if (col_i(st, IN_AMOUNT) != col_i(st, CH_AMOUNT))
        report(r, INV_I3, false, "charge-amount-differs", charge_ids(st),
               "the attempt was for %" PRId64 ", payment charged %" PRId64,
               col_i(st, IN_AMOUNT), col_i(st, CH_AMOUNT));
    if (strcmp(state, "confirmed") == 0) {
        charge_confirmed(r, st);
    } else if (strcmp(state, "refunding") == 0) {
        charge_refunding(r, st);
    } else if (strcmp(state, "pending") == 0 || strcmp(state, "unsent") == 0) {
        bool young = col_i(st, IN_UPDATED) > r->now_ms - r->grace_ms;
        report(r, INV_I3, young, "charge-not-settled", charge_ids(st),
               "charged, and booking's attempt is still %s, last touched "
               "%" PRId64 " ms ago",
               state, r->now_ms - col_i(st, IN_UPDATED));
        if (young)
            money_pending(r, col_s(st, CH_CURRENCY), col_i(st, CH_AMOUNT), 0);
    } else {
        report(r, INV_I3, false, "charge-on-closed-attempt", charge_ids(st),
               "the charge succeeded but booking recorded the attempt as "
               "%s: no booking, no refund",
               state);
    }
}

/* Every booking is paid by a succeeded charge of its attempt. */
static const char SQL_BOOKING_CHARGE[] =
    "SELECT b.id, b.charge_id, b.charged, b.currency, b.intent_id, c.id, "
    "  c.status, c.amount, c.currency, c.reference "
    "FROM main.bookings b LEFT JOIN pay.charges c ON c.id = b.charge_id "
    "WHERE c.id IS NULL OR c.status != 'succeeded' OR c.amount != b.charged "
    "  OR c.currency != b.currency OR c.reference != b.intent_id";

static void row_booking_charge(struct check_run *r, sqlite3_stmt *st)
{
    json_t *ids =
        json_pack("{s:s?, s:s?, s:s?}", "booking_id", col_s(st, 0), "charge_id",
                  col_s(st, 1), "intent_id", col_s(st, 4));

    if (col_null(st, 5))
        report(r, INV_I3, false, "booking-without-charge", ids,
               "payment has no charge with the booking's charge id");
    else
        report(r, INV_I3, false, "booking-charge-differs", ids,
               "booking says %" PRId64 " %s charged for this attempt; "
               "payment's charge is %s, %" PRId64 " %s, reference %s",
               col_i(st, 2), col_s(st, 3), col_s(st, 6), col_i(st, 7),
               col_s(st, 8), col_s(st, 9));
}

/* A refund of an attempt whose charge did not succeed gives back nothing. */
static const char SQL_REFUNDING_UNCHARGED[] =
    "SELECT i.id, i.charge_id, c.status FROM main.intents i "
    "LEFT JOIN pay.charges c ON c.id = i.charge_id "
    "WHERE i.state = 'refunding' AND (c.id IS NULL OR "
    "  c.status != 'succeeded')";

static void row_refunding_uncharged(struct check_run *r, sqlite3_stmt *st)
{
    report(r, INV_I3, false, "refund-of-no-charge",
           json_pack("{s:s?, s:s?}", "intent_id", col_s(st, 0), "charge_id",
                     col_s(st, 1)),
           "booking refunds the attempt's charge, but payment has %s",
           col_null(st, 2) ? "no such charge" : "it not succeeded");
}

/* --- I6 per booking and over all ----------------------------------------- */

static const char SQL_I6_BOOKINGS[] =
    "SELECT id, charged, refunded, fee_retained, live, ramount, rfee "
    "FROM (SELECT b.id, b.charged, b.refunded, b.fee_retained, "
    "  (SELECT coalesce(sum(s.price), 0) FROM main.booking_seats s "
    "   WHERE s.booking_id = b.id AND s.status = 'confirmed') AS live, "
    "  (SELECT coalesce(sum(x.amount), 0) FROM main.refunds x "
    "   WHERE x.booking_id = b.id) AS ramount, "
    "  (SELECT coalesce(sum(x.fee), 0) FROM main.refunds x "
    "   WHERE x.booking_id = b.id) AS rfee FROM main.bookings b) "
    "WHERE charged - refunded != live + fee_retained OR "
    "  ramount != refunded OR rfee != fee_retained";

static void row_i6_bookings(struct check_run *r, sqlite3_stmt *st)
{
    int64_t charged = col_i(st, 1), refunded = col_i(st, 2), fee = col_i(st, 3),
            live = col_i(st, 4);

    if (charged - refunded != live + fee)
        report(r, INV_I6, false, "booking-sum-differs",
               json_pack("{s:s?}", "booking_id", col_s(st, 0)),
               "charged %" PRId64 " - refunded %" PRId64 " = %" PRId64
               ", but live seats %" PRId64 " + fee retained %" PRId64
               " = %" PRId64,
               charged, refunded, charged - refunded, live, fee, live + fee);
    if (col_i(st, 5) != refunded)
        report(r, INV_I6, false, "refund-sum-differs",
               json_pack("{s:s?}", "booking_id", col_s(st, 0)),
               "the booking says %" PRId64 " refunded, its refunds sum to "
               "%" PRId64,
               refunded, col_i(st, 5));
    if (col_i(st, 6) != fee)
        report(r, INV_I6, false, "fee-sum-differs",
               json_pack("{s:s?}", "booking_id", col_s(st, 0)),
               "the booking says %" PRId64 " fee retained, its refunds' fees "
               "sum to %" PRId64,
               fee, col_i(st, 6));
}

/*
 * Per currency: payment's net, booking's kept value (live seats and fees)
 * and booking's refunds still due.
 */
static const char SQL_I6_MONEY[] =
    "SELECT currency, sum(net), sum(kept), sum(due) FROM ("
    " SELECT currency, amount AS net, 0 AS kept, 0 AS due FROM pay.charges "
    "  WHERE status = 'succeeded' "
    " UNION ALL SELECT currency, -amount, 0, 0 FROM pay.refunds "
    " UNION ALL SELECT b.currency, 0, b.fee_retained + (SELECT "
    "  coalesce(sum(s.price), 0) FROM main.booking_seats s "
    "  WHERE s.booking_id = b.id AND s.status = 'confirmed'), 0 "
    "  FROM main.bookings b "
    " UNION ALL SELECT currency, 0, 0, amount FROM main.refunds "
    "  WHERE state = 'due') "
    "GROUP BY currency ORDER BY currency";

static void row_i6_money(struct check_run *r, sqlite3_stmt *st)
{
    const char *cur = col_s(st, 0);
    int64_t net = col_i(st, 1), kept = col_i(st, 2), due = col_i(st, 3);
    int64_t in_c = 0, in_r = 0;

    for (size_t i = 0; cur != NULL && i < r->nmoney; i++)
        if (strcmp(r->money[i].currency, cur) == 0) {
            in_c = r->money[i].in_charges;
            in_r = r->money[i].in_refunds;
        }
    if (r->json)
        print_json(json_pack(
            "{s:{s:s?, s:I, s:I, s:I, s:I, s:I}}", "money", "currency", cur,
            "payment_net", (json_int_t)net, "kept", (json_int_t)kept,
            "refunds_due", (json_int_t)due, "charges_unsettled",
            (json_int_t)in_c, "refunds_unrecorded", (json_int_t)in_r));
    else
        printf("money currency=%s payment_net=%" PRId64 " kept=%" PRId64
               " refunds_due=%" PRId64 " charges_unsettled=%" PRId64
               " refunds_unrecorded=%" PRId64 "\n",
               cur != NULL ? cur : "null", net, kept, due, in_c, in_r);

    switch (check_money_judge(net, kept, due, in_c, in_r)) {
    case CHECK_MONEY_MATCH: break;
    case CHECK_MONEY_PENDING:
        report(r, INV_I6, true, "money-unsettled",
               json_pack("{s:s?}", "currency", cur),
               "payment's net %" PRId64 " differs from kept %" PRId64
               " + due %" PRId64 " only by work in flight",
               net, kept, due);
        break;
    case CHECK_MONEY_DIFFERS:
        report(r, INV_I6, false, "money-differs",
               json_pack("{s:s?}", "currency", cur),
               "payment's net (charges - refunds) is %" PRId64
               ", booking kept %" PRId64 " and owes %" PRId64
               " in refunds due: %" PRId64 " apart",
               net, kept, due, net - kept - due);
        break;
    }
}

/* --- I4: one ticket per booking ------------------------------------------ */

static const char SQL_I4_MISSING[] =
    "SELECT b.id, b.created_at, o.id IS NOT NULL AND o.sent_at IS NULL "
    "FROM main.bookings b LEFT JOIN main.outbox o "
    "  ON o.event_id = 'booking.confirmed.' || b.id "
    "WHERE NOT EXISTS (SELECT 1 FROM ntf.tickets t "
    "  WHERE t.booking_id = b.id)";

static void row_i4_missing(struct check_run *r, sqlite3_stmt *st)
{
    bool unsent = col_i(st, 2) != 0;
    bool young = col_i(st, 1) > r->now_ms - r->grace_ms;

    report(r, INV_I4, unsent || young, "booking-without-ticket",
           json_pack("{s:s?}", "booking_id", col_s(st, 0)), "%s",
           unsent  ? "no ticket yet: its booking.confirmed event is still "
                     "in booking's outbox"
           : young ? "no ticket yet: the booking is younger than the grace "
                     "period"
                   : "the booking has no ticket in notify");
}

static const char SQL_I4_DIFFERS[] =
    "SELECT t.id, t.booking_id, t.customer_id, b.customer_id, t.show_id, "
    "  b.show_id, t.total, b.total "
    "FROM ntf.tickets t JOIN main.bookings b ON b.id = t.booking_id "
    "WHERE t.customer_id != b.customer_id OR t.show_id != b.show_id OR "
    "  t.total != b.total";

static void row_i4_differs(struct check_run *r, sqlite3_stmt *st)
{
    report(r, INV_I4, false, "ticket-differs",
           json_pack("{s:s?, s:s?}", "ticket_id", col_s(st, 0), "booking_id",
                     col_s(st, 1)),
           "the ticket is for customer %s, show %" PRId64 ", total %" PRId64
           "; the booking for customer %s, show %" PRId64 ", total %" PRId64,
           col_s(st, 2), col_i(st, 4), col_i(st, 6), col_s(st, 3), col_i(st, 5),
           col_i(st, 7));
}

/*
 * Seats whose state differs between the ticket and the booking.  A seat
 * cancelled in booking but valid on the ticket is pending while its
 * cancellation is young or its event unsent; the reverse never is.
 */
static const char SQL_I4_SEATS[] =
    "SELECT t.id, t.booking_id, s.seat, s.status, ts.state, s.cancelled_at, "
    "  EXISTS (SELECT 1 FROM main.outbox o WHERE o.sent_at IS NULL AND "
    "  o.topic = 'booking.cancelled' AND "
    "  json_extract(o.body, '$.booking_id') = t.booking_id) "
    "FROM ntf.tickets t JOIN main.booking_seats s ON s.booking_id = "
    "  t.booking_id "
    "LEFT JOIN ntf.ticket_seats ts ON ts.ticket_id = t.id AND "
    "  ts.seat = s.seat "
    "WHERE ts.state IS NULL OR (s.status = 'confirmed') != "
    "  (ts.state = 'valid')";

static void row_i4_seats(struct check_run *r, sqlite3_stmt *st)
{
    const char *bstate = col_s(st, 3), *tstate = col_s(st, 4);
    bool pending = false;

    if (tstate != NULL && strcmp(bstate, "cancelled") == 0)
        pending = col_i(st, 6) != 0 || col_null(st, 5) ||
                  col_i(st, 5) > r->now_ms - r->grace_ms;
    report(r, INV_I4, pending, "ticket-seat-differs",
           json_pack("{s:s?, s:s?, s:s?}", "ticket_id", col_s(st, 0),
                     "booking_id", col_s(st, 1), "seat", col_s(st, 2)),
           "the seat is %s in booking and %s on the ticket", bstate,
           tstate != NULL ? tstate : "missing");
}

/* --- I2: what the other services know exists in booking ------------------ */

static const char SQL_I2_TICKETS[] =
    "SELECT t.id, t.booking_id, t.issued_at FROM ntf.tickets t "
    "WHERE NOT EXISTS (SELECT 1 FROM main.bookings b "
    "  WHERE b.id = t.booking_id)";

static void row_i2_tickets(struct check_run *r, sqlite3_stmt *st)
{
    report(r, INV_I2, false, "ticket-without-booking",
           json_pack("{s:s?, s:s?}", "ticket_id", col_s(st, 0), "booking_id",
                     col_s(st, 1)),
           "notify issued a ticket for a booking that booking does not "
           "have: a confirmed booking was lost");
}

static const char SQL_I2_INTENTS[] =
    "SELECT i.id, i.booking_id, i.charge_id FROM main.intents i "
    "WHERE i.state = 'confirmed' AND NOT EXISTS (SELECT 1 FROM "
    "  main.bookings b WHERE b.id = i.booking_id)";

static void row_i2_intents(struct check_run *r, sqlite3_stmt *st)
{
    report(r, INV_I2, false, "booking-lost",
           json_pack("{s:s?, s:s?, s:s?}", "intent_id", col_s(st, 0),
                     "booking_id", col_s(st, 1), "charge_id", col_s(st, 2)),
           "the paid attempt is confirmed with this booking, which booking "
           "does not have");
}

/*
 * What booking acknowledged: a 201 stored under an Idempotency-Key is the
 * answer a client got, written in the transaction of the hold or booking
 * it names.  A checkout's answer has a charge_id, a hold's does not.
 */
static const char SQL_I2_ACKED[] =
    "SELECT i.customer_id, i.key, json_extract(i.response, '$.id'), "
    "  json_extract(i.response, '$.charge_id') IS NOT NULL "
    "FROM main.idempotency i "
    "WHERE i.status = 201 AND json_valid(i.response) AND "
    "  json_type(i.response, '$.id') = 'text' AND "
    "  CASE WHEN json_extract(i.response, '$.charge_id') IS NOT NULL "
    "  THEN NOT EXISTS (SELECT 1 FROM main.bookings b "
    "    WHERE b.id = json_extract(i.response, '$.id')) "
    "  ELSE json_type(i.response, '$.max_expires_at') IS NOT NULL AND "
    "    NOT EXISTS (SELECT 1 FROM main.holds h "
    "    WHERE h.id = json_extract(i.response, '$.id')) END";

static void row_i2_acked(struct check_run *r, sqlite3_stmt *st)
{
    bool booking = col_i(st, 3) != 0;

    report(r, INV_I2, false,
           booking ? "acknowledged-booking-lost" : "acknowledged-hold-lost",
           json_pack("{s:s?, s:s?, s:s?}", "customer_id", col_s(st, 0),
                     "idempotency_key", col_s(st, 1),
                     booking ? "booking_id" : "hold_id", col_s(st, 2)),
           "booking answered 201 with this %s under the key, and does not "
           "have it",
           booking ? "booking" : "hold");
}

/* --- opening ------------------------------------------------------------- */

/* The tables each database must have, schema by schema. */
struct check_schema {
    const char *schema, *role, *tables[10];
};
static const struct check_schema schemas[] = {
    {"ntf", "notify", {"tickets", "ticket_seats", NULL}},
    {"main",
     "booking",
     {"shows", "seats", "holds", "intents", "bookings", "booking_seats",
      "refunds", "outbox", "idempotency", NULL}},
    {"pay", "payment", {"charges", "refunds", NULL}},
};

static bool file_readable(const char *role, const char *path)
{
    struct stat sb;

    if (stat(path, &sb) != 0) {
        fprintf(stderr, "marquee check: cannot read the %s database %s: %s\n",
                role, path, strerror(errno));
        return false;
    }
    if (!S_ISREG(sb.st_mode)) {
        fprintf(stderr,
                "marquee check: the %s database %s is not a regular file\n",
                role, path);
        return false;
    }
    return true;
}

/*
 * Reads the schema's table list, which starts its snapshot; a file that
 * is not a database fails here.  ERR_OK or ERR_DB (said on stderr).
 */
static int schema_ready(struct check_run *r, const struct check_schema *s,
                        const char *path)
{
    char sql[128];
    sqlite3_stmt *st;
    int rc;

    snprintf(sql, sizeof(sql),
             "SELECT 1 FROM %s.sqlite_master WHERE type = 'table' "
             "AND name = ?",
             s->schema);
    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK)
        goto out_unreadable;
    for (size_t i = 0; s->tables[i] != NULL; i++) {
        sqlite3_bind_text(st, 1, s->tables[i], -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_DONE) {
            fprintf(stderr,
                    "marquee check: %s has no table %s: not a %s database, "
                    "or one from before this version\n",
                    path, s->tables[i], s->role);
            sqlite3_finalize(st);
            return ERR_DB;
        }
        if (rc != SQLITE_ROW) {
            sqlite3_finalize(st);
            goto out_unreadable;
        }
    }
    sqlite3_finalize(st);
    return ERR_OK;

out_unreadable:
    fprintf(stderr, "marquee check: cannot read the %s database %s: %s\n",
            s->role, path, sqlite3_errmsg(r->db));
    return ERR_DB;
}

static int attach(struct check_run *r, const char *path, const char *schema,
                  const char *role)
{
    char uri[CHECK_URI_MAX], sql[64];
    sqlite3_stmt *st;
    int rc;

    if (check_uri(path, uri, sizeof(uri)) != ERR_OK) {
        fprintf(stderr, "marquee check: the %s database path is too long\n",
                role);
        return ERR_DB;
    }
    snprintf(sql, sizeof(sql), "ATTACH ?1 AS %s", schema);
    rc = sqlite3_prepare_v2(r->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, uri, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
    }
    if (rc != SQLITE_DONE && rc != SQLITE_OK) {
        fprintf(stderr, "marquee check: cannot open the %s database %s: %s\n",
                role, path, sqlite3_errmsg(r->db));
        return ERR_DB;
    }
    return ERR_OK;
}

/*
 * Opens booking's database read-only and attaches the others, read-only
 * too (a URI in ATTACH keeps its mode).  Checkpoint on close is turned off
 * and query_only set, so no path through SQLite can write.
 */
static int open_all(struct check_run *r, const char *booking,
                    const char *payment, const char *notify)
{
    char uri[CHECK_URI_MAX];
    int rc;

    if (!file_readable("booking", booking) ||
        !file_readable("payment", payment) ||
        (notify != NULL && !file_readable("notify", notify)))
        return ERR_DB;
    if (check_uri(booking, uri, sizeof(uri)) != ERR_OK) {
        fprintf(stderr, "marquee check: the booking database path is too "
                        "long\n");
        return ERR_DB;
    }
    rc = sqlite3_open_v2(uri, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI,
                         NULL);
    if (rc != SQLITE_OK) {
        fprintf(stderr,
                "marquee check: cannot open the booking database %s: "
                "%s\n",
                booking,
                r->db != NULL ? sqlite3_errmsg(r->db) : sqlite3_errstr(rc));
        return ERR_DB;
    }
    sqlite3_db_config(r->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    sqlite3_busy_timeout(r->db, CHECK_BUSY_MS);
    if (sqlite3_exec(r->db, "PRAGMA query_only = 1", NULL, NULL, NULL) !=
        SQLITE_OK)
        return ERR_DB;
    if (attach(r, payment, "pay", "payment") != ERR_OK)
        return ERR_DB;
    if (notify != NULL && attach(r, notify, "ntf", "notify") != ERR_OK)
        return ERR_DB;
    return ERR_OK;
}

/* One read transaction; snapshots in the order notify, booking, payment. */
static int begin_snapshots(struct check_run *r, const char *paths[3])
{
    if (sqlite3_exec(r->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "marquee check: cannot begin a read: %s\n",
                sqlite3_errmsg(r->db));
        return ERR_DB;
    }
    for (size_t i = 0; i < 3; i++) {
        if (paths[i] == NULL)
            continue;
        if (schema_ready(r, &schemas[i], paths[i]) != ERR_OK)
            return ERR_DB;
    }
    r->now_ms = clock_wall_ms(clock_system());
    return ERR_OK;
}

/* What the snapshots hold, so that a reader sees what was checked. */
static const char SQL_COUNTS[] =
    "SELECT (SELECT count(*) FROM main.bookings), (SELECT count(*) FROM "
    "  main.holds WHERE status = 'active' AND expires_at > :now), "
    "  (SELECT count(*) FROM pay.charges WHERE status = 'succeeded')";
static const char SQL_COUNT_TICKETS[] = "SELECT count(*) FROM ntf.tickets";

static void row_counts(struct check_run *r, sqlite3_stmt *st)
{
    r->bookings = col_i(st, 0);
    r->live_holds = col_i(st, 1);
    r->charges = col_i(st, 2);
}

static void row_count_tickets(struct check_run *r, sqlite3_stmt *st)
{
    r->tickets = col_i(st, 0);
}

/* --- the run ------------------------------------------------------------- */

struct check_query {
    enum check_inv inv;
    bool needs_notify;
    const char *what, *sql;
    check_row_fn fn;
};

static const struct check_query queries[] = {
    {INV_I1, false, "counts", SQL_COUNTS, row_counts},
    {INV_I4, true, "ticket count", SQL_COUNT_TICKETS, row_count_tickets},
    {INV_I1, false, "I1 seats claimed twice", SQL_I1_CLAIMS, row_i1_claims},
    {INV_I1, false, "I1 booked seats", SQL_I1_BOOKED, row_i1_booked},
    {INV_I1, false, "I1 sold seats", SQL_I1_SOLD, row_i1_sold},
    {INV_I2, true, "I2 tickets", SQL_I2_TICKETS, row_i2_tickets},
    {INV_I2, false, "I2 confirmed attempts", SQL_I2_INTENTS, row_i2_intents},
    {INV_I2, false, "I2 acknowledged answers", SQL_I2_ACKED, row_i2_acked},
    {INV_I3, false, "I3 charges", SQL_CHARGES, row_charges},
    {INV_I3, false, "I3 bookings", SQL_BOOKING_CHARGE, row_booking_charge},
    {INV_I3, false, "I3 refunding attempts", SQL_REFUNDING_UNCHARGED,
     row_refunding_uncharged},
    {INV_I4, true, "I4 bookings", SQL_I4_MISSING, row_i4_missing},
    {INV_I4, true, "I4 tickets", SQL_I4_DIFFERS, row_i4_differs},
    {INV_I4, true, "I4 ticket seats", SQL_I4_SEATS, row_i4_seats},
    {INV_I5, false, "I5 holds", SQL_I5_HOLDS, row_i5_holds},
    {INV_I5, false, "I5 held seats", SQL_I5_SEATS, row_i5_seats},
    {INV_I5, false, "I5 seats of live holds", SQL_I5_HOLD_SEATS,
     row_i5_hold_seats},
    {INV_I6, false, "I6 bookings", SQL_I6_BOOKINGS, row_i6_bookings},
    /* Last: it uses the pending money the charge scan found. */
    {INV_I6, false, "I6 money", SQL_I6_MONEY, row_i6_money},
};

static void print_summary(const struct check_run *r)
{
    json_t *v = json_object(), *p = json_object(), *s;
    int64_t total = 0;

    for (int i = 0; i < INV_COUNT; i++) {
        bool skipped = !r->have_notify && i == INV_I4;
        json_object_set_new(v, inv_names[i],
                            skipped ? json_null() : json_integer(r->found[i]));
        json_object_set_new(p, inv_names[i],
                            skipped ? json_null()
                                    : json_integer(r->pending[i]));
        total += r->found[i];
    }
    s = json_pack(
        "{s:{s:I, s:o, s:o, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:o}}}", "summary",
        "violations_total", (json_int_t)total, "violations", v, "pending", p,
        "now_ms", (json_int_t)r->now_ms, "grace_ms", (json_int_t)r->grace_ms,
        "limit", (json_int_t)r->limit, "checked", "bookings",
        (json_int_t)r->bookings, "live_holds", (json_int_t)r->live_holds,
        "charges", (json_int_t)r->charges, "tickets",
        r->have_notify ? json_integer(r->tickets) : json_null());
    if (r->json) {
        print_json(json_incref(s));
    } else {
        printf("summary violations=%" PRId64, total);
        for (int i = 0; i < INV_COUNT; i++)
            if (!r->have_notify && i == INV_I4)
                printf(" I4=unchecked");
            else
                printf(" %s=%" PRId64, inv_names[i], r->found[i]);
        printf(" pending:");
        for (int i = 0; i < INV_COUNT; i++)
            if (r->have_notify || i != INV_I4)
                printf(" %s=%" PRId64, inv_names[i], r->pending[i]);
        printf(" checked: bookings=%" PRId64 " live_holds=%" PRId64
               " charges=%" PRId64,
               r->bookings, r->live_holds, r->charges);
        if (r->have_notify)
            printf(" tickets=%" PRId64, r->tickets);
        printf(" now_ms=%" PRId64 " grace_ms=%" PRId64
               " shown_per_invariant=%" PRId64 "%s\n",
               r->now_ms, r->grace_ms, r->limit,
               r->have_notify ? "" : " (no --notify.db: I4 not checked)");
    }
    json_decref(s);
}

static int check_all(struct check_run *r)
{
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        if (queries[i].needs_notify && !r->have_notify)
            continue;
        if (run_query(r, queries[i].what, queries[i].sql, queries[i].fn) !=
            ERR_OK)
            return ERR_DB;
    }
    return ERR_OK;
}

/* --- the command line ---------------------------------------------------- */

static bool parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || errno != 0 || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* Splits argv[1..] into our options and configuration flags. */
static int split_args(int argc, char **argv, struct check_args *a)
{
    a->cfg_argv[a->cfg_argc++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0)
            return misuse("unexpected argument \"%s\"", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const char **slot = NULL;
        if (len == 4 && strncmp(name, "json", 4) == 0) {
            if (eq != NULL)
                return misuse("--json takes no value");
            a->json = true;
            continue;
        }
        if (len == 8 && strncmp(name, "grace-ms", 8) == 0)
            slot = &a->grace;
        else if (len == 5 && strncmp(name, "limit", 5) == 0)
            slot = &a->limit;
        if (slot == NULL) {
            /* A configuration key; config_load names an unknown one. */
            a->cfg_argv[a->cfg_argc++] = argv[i];
            if (eq == NULL && i + 1 < argc && strncmp(argv[i + 1], "--", 2))
                a->cfg_argv[a->cfg_argc++] = argv[++i];
            continue;
        }
        if (*slot != NULL)
            return misuse("--%.*s is given twice", (int)len, name);
        if (eq != NULL)
            *slot = eq + 1;
        else if (i + 1 < argc)
            *slot = argv[++i];
        else
            return misuse("--%.*s needs a value", (int)len, name);
    }
    return CHECK_EXIT_CLEAN;
}

/* Loads the keys; CHECK_EXIT_CLEAN, or CHECK_EXIT_MISUSE after saying why. */
static int load_config(struct config *cfg, struct check_args *a)
{
    enum log_level level;
    int rc = config_init(cfg, check_keys, NKEYS);

    if (rc == ERR_OK)
        rc = config_load(cfg, a->cfg_argc, a->cfg_argv, 1);
    if (rc != ERR_OK) {
        fprintf(stderr, "marquee check: %s\n", cfg->err);
        config_free(cfg);
        return CHECK_EXIT_MISUSE;
    }
    if (log_level_parse(config_str(cfg, "log.level"), &level) != ERR_OK) {
        config_free(cfg);
        return misuse("log.level must be debug, info, warn, error or off");
    }
    log_set_level(level);
    return CHECK_EXIT_CLEAN;
}

static int settings(struct check_run *r, const struct check_args *a,
                    const struct config *cfg)
{
    r->json = a->json;
    r->grace_ms = CHECK_GRACE_DEFAULT_MS;
    r->limit = CHECK_SHOWN_DEFAULT;
    if (a->grace != NULL &&
        !parse_i64(a->grace, 0, CHECK_GRACE_MAX_MS, &r->grace_ms))
        return misuse("--grace-ms must be a whole number from 0 to %d",
                      CHECK_GRACE_MAX_MS);
    if (a->limit != NULL && !parse_i64(a->limit, 0, CHECK_SHOWN_MAX, &r->limit))
        return misuse("--limit must be a whole number from 0 to %d",
                      CHECK_SHOWN_MAX);
    if (config_str(cfg, "booking.db")[0] == '\0' ||
        config_str(cfg, "payment.db")[0] == '\0')
        return misuse("--booking.db and --payment.db are required");
    r->have_notify = config_str(cfg, "notify.db")[0] != '\0';
    r->max_life_ms = config_int(cfg, "booking.max_hold_life_s") * 1000;
    r->max_ext = config_int(cfg, "booking.max_extensions");
    return CHECK_EXIT_CLEAN;
}

int check_main(int argc, char **argv)
{
    struct check_args a = {0};
    struct check_run r = {0};
    struct config cfg;
    int status;

    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage();
    if (argc > CHECK_ARGS_MAX)
        return misuse("more than %d words", CHECK_ARGS_MAX);
    if ((status = split_args(argc, argv, &a)) != CHECK_EXIT_CLEAN)
        return status;
    if ((status = load_config(&cfg, &a)) != CHECK_EXIT_CLEAN)
        return status;
    if ((status = settings(&r, &a, &cfg)) != CHECK_EXIT_CLEAN)
        goto out_config;

    const char *notify = r.have_notify ? config_str(&cfg, "notify.db") : NULL;
    const char *paths[3] = {notify, config_str(&cfg, "booking.db"),
                            config_str(&cfg, "payment.db")};
    status = CHECK_EXIT_MISUSE;
    if (open_all(&r, paths[1], paths[2], notify) != ERR_OK)
        goto out_close_db;
    if (begin_snapshots(&r, paths) != ERR_OK || check_all(&r) != ERR_OK)
        goto out_close_db;
    print_summary(&r);
    status = CHECK_EXIT_CLEAN;
    for (int i = 0; i < INV_COUNT; i++)
        if (r.found[i] > 0)
            status = CHECK_EXIT_VIOLATED;

out_close_db:
    fflush(stdout);
    if (r.db != NULL) {
        sqlite3_exec(r.db, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(r.db);
    }
out_config:
    config_free(&cfg);
    return status;
}
