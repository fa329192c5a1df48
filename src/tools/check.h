/*
 * check.h - `marquee check`: the invariant checker.
 *
 *   marquee check --booking.db=PATH --payment.db=PATH [--notify.db=PATH]
 *                 [--booking.max_hold_life_s=N --booking.max_extensions=N]
 *                 [--grace-ms=N] [--limit=N] [--json]
 *
 * It opens the services' SQLite databases read-only (URI mode=ro, one
 * connection, the others ATTACHed), never writes, migrates or checkpoints
 * them, and reports every finding against invariants I1-I6 of
 * docs/internals/check.md: one line each (or one JSON object each with
 * --json), then a summary.  Findings explained by work still in flight
 * (an event not yet relayed, a charge not yet settled, younger than
 * --grace-ms) are "pending", reported but not violations.
 *
 * Exit status: 0 no violation, 1 at least one violation, 2 misuse or a
 * database that cannot be read (the reason on stderr).
 *
 * The judging of money and the line format are pure and exported for the
 * unit test.
 */
#ifndef MARQUEE_TOOLS_CHECK_H
#define MARQUEE_TOOLS_CHECK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Named limits. */
#define CHECK_ARGS_MAX         64     /* command-line words */
#define CHECK_SHOWN_DEFAULT    100    /* findings printed per invariant */
#define CHECK_SHOWN_MAX        100000 /* largest --limit */
#define CHECK_GRACE_DEFAULT_MS 60000  /* --grace-ms */
#define CHECK_GRACE_MAX_MS     86400000
#define CHECK_CURRENCIES_MAX   16   /* currencies tracked for pending money */
#define CHECK_CLAIMS_MAX       16   /* claims of one seat listed */
#define CHECK_URI_MAX          8192 /* a database path as a file: URI */
#define CHECK_LINE_MAX         2048 /* one human line, cut beyond */
#define CHECK_BUSY_MS          5000 /* wait for a lock held by a writer */

/* The exit statuses. */
#define CHECK_EXIT_CLEAN    0
#define CHECK_EXIT_VIOLATED 1
#define CHECK_EXIT_MISUSE   2

/*
 * How a charge's refunds at payment compare with booking's record of them:
 * paid is what payment refunded, done and due booking's refunds of the
 * charge by state.
 */
enum check_refund_verdict {
    CHECK_REFUND_MATCH,     /* paid == done */
    CHECK_REFUND_IN_FLIGHT, /* done < paid <= done + due: sent, unrecorded */
    CHECK_REFUND_MISSING,   /* paid < done: booking says done, payment not */
    CHECK_REFUND_EXTRA,     /* paid > done + due: nobody asked for it */
};
enum check_refund_verdict check_refund_judge(int64_t paid, int64_t done,
                                             int64_t due);

/*
 * One currency over all: payment's net (succeeded charges minus refunds)
 * against booking's kept value plus its refunds due.  in_charges is money
 * charged whose attempt booking has not settled yet, in_refunds money
 * refunded that booking has not recorded yet (both pending, not wrong).
 */
enum check_money_verdict {
    CHECK_MONEY_MATCH,   /* net == kept + due */
    CHECK_MONEY_PENDING, /* net == kept + due + in_charges - in_refunds */
    CHECK_MONEY_DIFFERS, /* neither */
};
enum check_money_verdict check_money_judge(int64_t net, int64_t kept,
                                           int64_t due, int64_t in_charges,
                                           int64_t in_refunds);

/*
 * Writes path as a read-only SQLite URI ("file:/a%3Fb.db?mode=ro") into
 * out, percent-encoding every byte but unreserved ones and '/'.  Returns
 * ERR_OK, ERR_INVALID for an empty path, or ERR_TOOBIG if it does not fit.
 */
int check_uri(const char *path, char *out, size_t size);

/*
 * Formats one finding (an object with "invariant", "status", "kind",
 * "detail" and its ids) as a human line without newline:
 *   I3 violation charge-without-attempt charge_id=ch_1 amount=500: detail
 * Strings are written as they are, null as "null", arrays joined by ','.
 * Cut to size - 1 bytes; always NUL-terminated (size > 0).
 */
void check_line_format(const json_t *item, char *out, size_t size);

/* argv[0] is "check"; returns the exit status. */
int check_main(int argc, char **argv);

#endif
