/*
 * test_check.c - the pure parts of `marquee check`: how a charge's refunds
 * and a currency's money are judged, the read-only URI of a path, and the
 * human form of a finding.
 */
#include <jansson.h>
#include <string.h>

#include "base/err.h"
#include "harness.h"
#include "tools/check.h"

TEST(refunds_judged_against_done_and_due)
{
    CHECK_INT(check_refund_judge(0, 0, 0), CHECK_REFUND_MATCH);
    CHECK_INT(check_refund_judge(500, 500, 0), CHECK_REFUND_MATCH);
    CHECK_INT(check_refund_judge(500, 500, 300), CHECK_REFUND_MATCH);
    /* Payment refunded what booking still has due: sent, not recorded. */
    CHECK_INT(check_refund_judge(800, 500, 300), CHECK_REFUND_IN_FLIGHT);
    CHECK_INT(check_refund_judge(600, 500, 300), CHECK_REFUND_IN_FLIGHT);
    /* More than booking ever asked for. */
    CHECK_INT(check_refund_judge(801, 500, 300), CHECK_REFUND_EXTRA);
    CHECK_INT(check_refund_judge(1, 0, 0), CHECK_REFUND_EXTRA);
    /* Booking says done, payment never refunded it. */
    CHECK_INT(check_refund_judge(400, 500, 300), CHECK_REFUND_MISSING);
    CHECK_INT(check_refund_judge(0, 1, 0), CHECK_REFUND_MISSING);
}

TEST(money_judged_with_work_in_flight)
{
    CHECK_INT(check_money_judge(1000, 900, 100, 0, 0), CHECK_MONEY_MATCH);
    CHECK_INT(check_money_judge(1000, 900, 100, 500, 0), CHECK_MONEY_MATCH);
    /* A charge booking has not settled yet explains the difference. */
    CHECK_INT(check_money_judge(1500, 900, 100, 500, 0), CHECK_MONEY_PENDING);
    /* A refund payment made and booking has not recorded yet. */
    CHECK_INT(check_money_judge(900, 900, 100, 0, 100), CHECK_MONEY_PENDING);
    CHECK_INT(check_money_judge(1400, 900, 100, 500, 100), CHECK_MONEY_PENDING);
    /* Nothing in flight, or not the amount in flight. */
    CHECK_INT(check_money_judge(1001, 900, 100, 0, 0), CHECK_MONEY_DIFFERS);
    CHECK_INT(check_money_judge(1499, 900, 100, 500, 0), CHECK_MONEY_DIFFERS);
    CHECK_INT(check_money_judge(0, 0, 1, 0, 0), CHECK_MONEY_DIFFERS);
}

TEST(uri_escapes_what_sqlite_would_read)
{
    char out[64];

    CHECK_INT(check_uri("/var/booking.db", out, sizeof(out)), ERR_OK);
    CHECK_STR(out, "file:/var/booking.db?mode=ro");
    /* '?' would start the query, '#' a fragment, '%' an escape. */
    CHECK_INT(check_uri("/a b/x?y#z%.db", out, sizeof(out)), ERR_OK);
    CHECK_STR(out, "file:/a%20b/x%3Fy%23z%25.db?mode=ro");
    CHECK_INT(check_uri("rel/p-1_2~.db", out, sizeof(out)), ERR_OK);
    CHECK_STR(out, "file:rel/p-1_2~.db?mode=ro");
    CHECK_INT(check_uri("", out, sizeof(out)), ERR_INVALID);
    CHECK_INT(check_uri(NULL, out, sizeof(out)), ERR_INVALID);
}

TEST(uri_refuses_what_does_not_fit)
{
    char out[24];

    /* "file:" + 10 + "?mode=ro" + NUL = 24: fits exactly. */
    CHECK_INT(check_uri("/123456789", out, sizeof(out)), ERR_OK);
    CHECK_STR(out, "file:/123456789?mode=ro");
    CHECK_INT(check_uri("/1234567890", out, sizeof(out)), ERR_TOOBIG);
    /* An escape takes three bytes. */
    CHECK_INT(check_uri("/12345678?", out, sizeof(out)), ERR_TOOBIG);
    CHECK_INT(check_uri("/a", out, 4), ERR_TOOBIG);
}

TEST(line_has_invariant_ids_and_detail)
{
    char line[256];
    json_t *item =
        json_pack("{s:s, s:s, s:s, s:I, s:s, s:[s, s], s:n, s:s}", "invariant",
                  "I1", "status", "violation", "kind", "seat-claimed-twice",
                  "show_id", (json_int_t)7, "seat", "A4", "claims", "hold:7-h1",
                  "booking:7-b2", "hold_id", "detail", "2 claims");

    CHECK(item != NULL);
    check_line_format(item, line, sizeof(line));
    CHECK_STR(line, "I1 violation seat-claimed-twice show_id=7 seat=A4 "
                    "claims=hold:7-h1,booking:7-b2 hold_id=null: 2 claims");
    json_decref(item);
}

TEST(line_is_cut_and_terminated)
{
    char line[16];
    json_t *item =
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "invariant", "I4", "status",
                  "pending", "kind", "booking-without-ticket", "booking_id",
                  "27-b0123456789abcdef", "detail", "not yet");

    check_line_format(item, line, sizeof(line));
    CHECK_INT(strlen(line), sizeof(line) - 1);
    CHECK(strncmp(line, "I4 pending book", sizeof(line) - 1) == 0);
    json_decref(item);
}

HARNESS_MAIN(T(refunds_judged_against_done_and_due),
             T(money_judged_with_work_in_flight),
             T(uri_escapes_what_sqlite_would_read),
             T(uri_refuses_what_does_not_fit),
             T(line_has_invariant_ids_and_detail),
             T(line_is_cut_and_terminated))
