/*
 * code.c - signing and checking e-ticket codes (code.h).
 *
 * The signature is compared as text: the expected one is encoded and the
 * two 43-character strings are compared with CRYPTO_memcmp, whose time does
 * not depend on where they differ.  Comparing the encodings rather than
 * decoded bytes also refuses the other spellings base64 allows for the
 * same bytes (the last character's two spare bits), so one ticket has
 * exactly one valid code.
 */
#include "services/notify/code.h"

#include <assert.h>
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/rand.h"

#define TICKET_ID_PREFIX     "tk_"
#define TICKET_ID_PREFIX_LEN 3
#define TICKET_ID_RANDOM     12 /* bytes, 24 hex digits */
#define SIG_BYTES            32

_Static_assert(TICKET_ID_PREFIX_LEN + 2 * TICKET_ID_RANDOM ==
                   NOTIFY_TICKET_ID_LEN,
               "ticket id length");

bool notify_ticket_id_ok(const char *s)
{
    if (s == NULL || strlen(s) != NOTIFY_TICKET_ID_LEN ||
        strncmp(s, TICKET_ID_PREFIX, TICKET_ID_PREFIX_LEN) != 0)
        return false;
    for (s += TICKET_ID_PREFIX_LEN; *s != '\0'; s++)
        if (!isdigit((unsigned char)*s) && !(*s >= 'a' && *s <= 'f'))
            return false;
    return true;
}

bool notify_booking_id_ok(const char *s, long long show_id)
{
    const char *p = s;
    size_t n = s != NULL ? strnlen(s, NOTIFY_BOOKING_ID_MAX + 1) : 0;

    if (n == 0 || n > NOTIFY_BOOKING_ID_MAX || *p == '0')
        return false;
    while (isdigit((unsigned char)*p))
        p++;
    if (p == s || *p != '-' || p[1] == '\0' || p - s > 18)
        return false;
    if (show_id > 0) {
        char digits[24];
        snprintf(digits, sizeof(digits), "%lld", show_id);
        if ((size_t)(p - s) != strlen(digits) ||
            strncmp(s, digits, (size_t)(p - s)) != 0)
            return false;
    }
    for (p++; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            return false;
    return true;
}

int notify_ticket_id_new(char out[NOTIFY_TICKET_ID_LEN + 1])
{
    unsigned char r[TICKET_ID_RANDOM];
    int rc = rand_secure_bytes(r, sizeof(r));

    if (rc != ERR_OK)
        return rc;
    memcpy(out, TICKET_ID_PREFIX, TICKET_ID_PREFIX_LEN);
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(out + TICKET_ID_PREFIX_LEN + 2 * i, 3, "%02x", r[i]);
    return ERR_OK;
}

/* The signature of the first len bytes of text, base64url, into sig. */
static int sign_text(const struct notify_key *key, const char *text, size_t len,
                     char sig[NOTIFY_SIG_B64_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;

    assert(key->len >= NOTIFY_KEY_MIN && key->len <= NOTIFY_KEY_MAX);
    if (HMAC(EVP_sha256(), key->bytes, (int)key->len,
             (const unsigned char *)text, len, mac, &mac_len) == NULL ||
        mac_len != SIG_BYTES)
        return ERR_SYS;
    sodium_bin2base64(sig, NOTIFY_SIG_B64_LEN + 1, mac, SIG_BYTES,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return ERR_OK;
}

int notify_code_sign(const struct notify_key *key, const char *ticket_id,
                     const char *booking_id, char *out, size_t cap)
{
    char sig[NOTIFY_SIG_B64_LEN + 1];
    int n, rc;

    if (!notify_ticket_id_ok(ticket_id) || !notify_booking_id_ok(booking_id, 0))
        return ERR_INVALID;
    n = snprintf(out, cap, NOTIFY_CODE_PREFIX "%s.%s", ticket_id, booking_id);
    if (n < 0 || (size_t)n + 1 + NOTIFY_SIG_B64_LEN >= cap)
        return ERR_TOOBIG;
    if ((rc = sign_text(key, out, (size_t)n, sig)) != ERR_OK)
        return rc;
    out[n] = '.';
    memcpy(out + n + 1, sig, NOTIFY_SIG_B64_LEN + 1);
    return ERR_OK;
}

static bool b64url_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
            return false;
    return true;
}

enum notify_code_verdict
notify_code_verify(const struct notify_key *key, const char *code,
                   char ticket_id[NOTIFY_TICKET_ID_LEN + 1],
                   char booking_id[NOTIFY_BOOKING_ID_MAX + 1])
{
    const size_t prefix = sizeof(NOTIFY_CODE_PREFIX) - 1;
    size_t n = code != NULL ? strnlen(code, NOTIFY_CODE_MAX) : 0;
    char expected[NOTIFY_SIG_B64_LEN + 1];
    const char *tid, *bid, *sig;
    size_t tid_len, bid_len;

    ticket_id[0] = booking_id[0] = '\0';
    if (n == 0 || n >= NOTIFY_CODE_MAX ||
        strncmp(code, NOTIFY_CODE_PREFIX, prefix) != 0)
        return NOTIFY_CODE_MALFORMED;

    /* Three fields after the prefix, split at the only two dots. */
    tid = code + prefix;
    bid = strchr(tid, '.');
    sig = bid != NULL ? strchr(bid + 1, '.') : NULL;
    if (sig == NULL || strchr(sig + 1, '.') != NULL)
        return NOTIFY_CODE_MALFORMED;
    tid_len = (size_t)(bid - tid);
    bid_len = (size_t)(sig - bid - 1);
    bid++;
    sig++;
    if (tid_len != NOTIFY_TICKET_ID_LEN || bid_len > NOTIFY_BOOKING_ID_MAX ||
        strlen(sig) != NOTIFY_SIG_B64_LEN || !b64url_ok(sig, strlen(sig)))
        return NOTIFY_CODE_MALFORMED;
    memcpy(ticket_id, tid, tid_len);
    ticket_id[tid_len] = '\0';
    memcpy(booking_id, bid, bid_len);
    booking_id[bid_len] = '\0';
    if (!notify_ticket_id_ok(ticket_id) ||
        !notify_booking_id_ok(booking_id, 0)) {
        ticket_id[0] = booking_id[0] = '\0';
        return NOTIFY_CODE_MALFORMED;
    }

    if (sign_text(key, code, (size_t)(sig - 1 - code), expected) != ERR_OK)
        return NOTIFY_CODE_FORGED; /* cannot vouch for it */
    return CRYPTO_memcmp(expected, sig, NOTIFY_SIG_B64_LEN) == 0
               ? NOTIFY_CODE_GOOD
               : NOTIFY_CODE_FORGED;
}
