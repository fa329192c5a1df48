/*
 * test_notify_code.c - e-ticket codes: the format, a pinned signature,
 * every kind of tampering, and the shapes of ids.
 */
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "harness.h"
#include "services/notify/code.h"

static const unsigned char key_bytes[] = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk";
static const struct notify_key key = {key_bytes, 32};
static const unsigned char other_bytes[] = "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkl";
static const struct notify_key other = {other_bytes, 32};

#define TICKET  "tk_000102030405060708090a0b"
#define BOOKING "27-00ab3f9c1d2e4b5a"
/* HMAC-SHA256 of "MQT1." TICKET "." BOOKING under 32 'k's, from Python's
 * hmac module: the format may never drift without this test noticing. */
#define SIGNATURE "Lr8Cu5NlKwwN6aI3hrDALs-I8dJExfFlfLF6xBAqEMo"

static enum notify_code_verdict check(const struct notify_key *k,
                                      const char *code)
{
    char tid[NOTIFY_TICKET_ID_LEN + 1], bid[NOTIFY_BOOKING_ID_MAX + 1];

    return notify_code_verify(k, code, tid, bid);
}

TEST(signs_the_pinned_vector)
{
    char code[NOTIFY_CODE_MAX];

    CHECK_INT(notify_code_sign(&key, TICKET, BOOKING, code, sizeof(code)),
              ERR_OK);
    CHECK_STR(code, "MQT1." TICKET "." BOOKING "." SIGNATURE);
}

TEST(verify_gives_back_the_ids)
{
    char code[NOTIFY_CODE_MAX];
    char tid[NOTIFY_TICKET_ID_LEN + 1], bid[NOTIFY_BOOKING_ID_MAX + 1];

    CHECK_INT(notify_code_sign(&key, TICKET, BOOKING, code, sizeof(code)),
              ERR_OK);
    CHECK_INT(notify_code_verify(&key, code, tid, bid), NOTIFY_CODE_GOOD);
    CHECK_STR(tid, TICKET);
    CHECK_STR(bid, BOOKING);
    CHECK_INT(notify_code_verify(&other, code, tid, bid), NOTIFY_CODE_FORGED);
    CHECK_STR(tid, TICKET); /* named, so that the forgery can be logged */
}

TEST(every_changed_signature_character_is_forged)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                   "qrstuvwxyz0123456789-_";
    char code[NOTIFY_CODE_MAX];
    size_t start;

    CHECK_INT(notify_code_sign(&key, TICKET, BOOKING, code, sizeof(code)),
              ERR_OK);
    start = strlen(code) - NOTIFY_SIG_B64_LEN;
    for (size_t i = start; i < strlen(code); i++) {
        char saved = code[i];
        const char *at = strchr(alphabet, saved);
        CHECK(at != NULL);
        /* The next letter of the alphabet; for the last character this
         * differs only in the two spare bits, which a lenient base64
         * decoder would ignore. */
        code[i] = alphabet[((size_t)(at - alphabet) ^ 1)];
        CHECK_INT(check(&key, code), NOTIFY_CODE_FORGED);
        code[i] = saved;
    }
    CHECK_INT(check(&key, code), NOTIFY_CODE_GOOD);
}

TEST(changed_ids_are_forged)
{
    CHECK_INT(
        check(&key, "MQT1.tk_000102030405060708090a0c." BOOKING "." SIGNATURE),
        NOTIFY_CODE_FORGED);
    CHECK_INT(check(&key, "MQT1." TICKET ".28-00ab3f9c1d2e4b5a." SIGNATURE),
              NOTIFY_CODE_FORGED);
    CHECK_INT(check(&key, "MQT1." TICKET "." BOOKING "x." SIGNATURE),
              NOTIFY_CODE_FORGED);
}

TEST(malformed_codes)
{
    static const char *const bad[] = {
        "",
        "MQT1.",
        "MQT2." TICKET "." BOOKING "." SIGNATURE,
        "mqt1." TICKET "." BOOKING "." SIGNATURE,
        "MQT1." TICKET "." BOOKING,
        "MQT1." TICKET "." BOOKING "." SIGNATURE ".x",
        "MQT1." TICKET "." BOOKING "." SIGNATURE "A",
        "MQT1." TICKET "." BOOKING
        ".Lr8Cu5NlKwwN6aI3hrDALs+I8dJExfFlfLF6xBAqEMo",
        "MQT1.tk_000102030405060708090A0B." BOOKING "." SIGNATURE,
        "MQT1.tk_000102030405060708090a0." BOOKING "." SIGNATURE,
        "MQT1." TICKET ".abc." SIGNATURE,
        "MQT1." TICKET ".27-a b." SIGNATURE,
        "MQT1.." BOOKING "." SIGNATURE,
        " MQT1." TICKET "." BOOKING "." SIGNATURE,
    };
    char tid[NOTIFY_TICKET_ID_LEN + 1], bid[NOTIFY_BOOKING_ID_MAX + 1];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (notify_code_verify(&key, bad[i], tid, bid) !=
            NOTIFY_CODE_MALFORMED) {
            harness_fail(__FILE__, __LINE__, "not malformed: %s", bad[i]);
        }
        CHECK_STR(tid, "");
        CHECK_STR(bid, "");
    }
    CHECK_INT(notify_code_verify(&key, NULL, tid, bid), NOTIFY_CODE_MALFORMED);
}

TEST(longest_booking_id_fits)
{
    char booking[NOTIFY_BOOKING_ID_MAX + 2], code[NOTIFY_CODE_MAX];

    memset(booking, 'a', sizeof(booking));
    memcpy(booking, "27-", 3);
    booking[NOTIFY_BOOKING_ID_MAX] = '\0';
    CHECK_INT(notify_code_sign(&key, TICKET, booking, code, sizeof(code)),
              ERR_OK);
    CHECK_INT(strlen(code) + 1, NOTIFY_CODE_MAX);
    CHECK_INT(check(&key, code), NOTIFY_CODE_GOOD);
    CHECK_INT(notify_code_sign(&key, TICKET, booking, code, sizeof(code) - 1),
              ERR_TOOBIG);
    booking[NOTIFY_BOOKING_ID_MAX] = 'a';
    booking[NOTIFY_BOOKING_ID_MAX + 1] = '\0';
    CHECK_INT(notify_code_sign(&key, TICKET, booking, code, sizeof(code)),
              ERR_INVALID);
}

TEST(ticket_ids)
{
    char a[NOTIFY_TICKET_ID_LEN + 1], b[NOTIFY_TICKET_ID_LEN + 1];

    CHECK_INT(notify_ticket_id_new(a), ERR_OK);
    CHECK_INT(notify_ticket_id_new(b), ERR_OK);
    CHECK(notify_ticket_id_ok(a));
    CHECK(notify_ticket_id_ok(b));
    CHECK(strcmp(a, b) != 0);
    CHECK(!notify_ticket_id_ok("tk_00010203040506070809"));
    CHECK(!notify_ticket_id_ok("tx_000102030405060708090a0b"));
    CHECK(!notify_ticket_id_ok("tk_000102030405060708090a0g"));
    CHECK(!notify_ticket_id_ok(NULL));
}

TEST(booking_ids)
{
    CHECK(notify_booking_id_ok("27-00ab", 27));
    CHECK(notify_booking_id_ok("27-00ab", 0));
    CHECK(notify_booking_id_ok("1-A_b-c", 1));
    CHECK(!notify_booking_id_ok("27-00ab", 2));
    CHECK(!notify_booking_id_ok("27-00ab", 270));
    CHECK(!notify_booking_id_ok("270-00ab", 27));
    CHECK(!notify_booking_id_ok("27-", 27));
    CHECK(!notify_booking_id_ok("-00ab", 0));
    CHECK(!notify_booking_id_ok("027-00ab", 27));
    CHECK(!notify_booking_id_ok("27-00.ab", 27));
    CHECK(!notify_booking_id_ok("27_00ab", 27));
    CHECK(!notify_booking_id_ok("", 0));
    CHECK(!notify_booking_id_ok(NULL, 0));
}

HARNESS_MAIN(T(signs_the_pinned_vector), T(verify_gives_back_the_ids),
             T(every_changed_signature_character_is_forged),
             T(changed_ids_are_forged), T(malformed_codes),
             T(longest_booking_id_fits), T(ticket_ids), T(booking_ids))
