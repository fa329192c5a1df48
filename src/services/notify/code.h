/*
 * code.h - the e-ticket code: what a door scanner reads from the QR code.
 *
 *   MQT1.<ticket id>.<booking id>.<signature>
 *
 * "MQT1" names the format and its version.  The ticket id is "tk_" and 24
 * lower-case hex digits (96 random bits).  The booking id is booking's own
 * ("27-00ab3f9c1d2e4b5a": the show id's digits, '-', then letters, digits,
 * '_' or '-').  The signature is HMAC-SHA256, under the ticket key, of
 * everything before the last '.', in base64url without padding (43
 * characters).  No field may hold a '.', so the code splits one way only.
 *
 * Pure functions: no I/O, no global state; callable from any thread.
 */
#ifndef MARQUEE_SERVICES_NOTIFY_CODE_H
#define MARQUEE_SERVICES_NOTIFY_CODE_H

#include <stdbool.h>
#include <stddef.h>

#define NOTIFY_CODE_PREFIX    "MQT1."
#define NOTIFY_TICKET_ID_LEN  27 /* "tk_" + 24 hex digits */
#define NOTIFY_BOOKING_ID_MAX 64
#define NOTIFY_SIG_B64_LEN    43 /* 32 bytes in base64url, no padding */
#define NOTIFY_KEY_MIN        32 /* bytes of a ticket key, at least */
#define NOTIFY_KEY_MAX        1024
/* The longest code: prefix, the three fields, two dots, NUL. */
#define NOTIFY_CODE_MAX                                                        \
    (sizeof(NOTIFY_CODE_PREFIX) - 1 + NOTIFY_TICKET_ID_LEN + 1 +               \
     NOTIFY_BOOKING_ID_MAX + 1 + NOTIFY_SIG_B64_LEN + 1)

/* A ticket key: its bytes are the HMAC key.  Not owned. */
struct notify_key {
    const unsigned char *bytes;
    size_t len;
};

/* Whether s is a ticket id: "tk_" and 24 lower-case hex digits. */
bool notify_ticket_id_ok(const char *s);

/*
 * Whether s is a booking id of show show_id (0: of any show): the show's
 * digits, '-', then 1 or more of [A-Za-z0-9_-], NOTIFY_BOOKING_ID_MAX bytes
 * at most.
 */
bool notify_booking_id_ok(const char *s, long long show_id);

/*
 * Makes a new ticket id from the kernel's random source into out.
 * ERR_OK or ERR_SYS.
 */
int notify_ticket_id_new(char out[NOTIFY_TICKET_ID_LEN + 1]);

/*
 * Writes the signed code of (ticket_id, booking_id) into out (cap bytes,
 * NOTIFY_CODE_MAX is always enough).  ERR_OK; ERR_INVALID when an id is
 * malformed (a bug of the caller); ERR_TOOBIG when cap is short.
 */
int notify_code_sign(const struct notify_key *key, const char *ticket_id,
                     const char *booking_id, char *out, size_t cap);

/* What notify_code_verify() found. */
enum notify_code_verdict {
    NOTIFY_CODE_GOOD,      /* well formed and signed with this key */
    NOTIFY_CODE_MALFORMED, /* not a code of this format */
    NOTIFY_CODE_FORGED,    /* well formed, but the signature is wrong */
};

/*
 * Checks code.  On NOTIFY_CODE_GOOD and NOTIFY_CODE_FORGED the ids it
 * names are copied out (so a forged code can be logged); on
 * NOTIFY_CODE_MALFORMED they are "".  The signature is compared in
 * constant time.
 */
enum notify_code_verdict
notify_code_verify(const struct notify_key *key, const char *code,
                   char ticket_id[NOTIFY_TICKET_ID_LEN + 1],
                   char booking_id[NOTIFY_BOOKING_ID_MAX + 1]);

#endif
