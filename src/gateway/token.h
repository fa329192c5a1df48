/*
 * token.h - the gateway's short-lived access token: a JWT (RFC 7519) in
 * the JWS compact form (RFC 7515) signed with HMAC-SHA256 ("HS256").
 *
 *   base64url({"alg":"HS256","typ":"JWT"}) "." base64url(claims) "."
 *   base64url(HMAC-SHA256(key, first two parts))
 *
 * Claims: sub (the account's customer id), role ("customer" or "admin"),
 * iat and nbf (issue time), exp (expiry), jti (16 random bytes,
 * base64url), times in whole seconds since the epoch (NumericDate).
 *
 * Verification takes nothing on trust: the header must say exactly
 * alg HS256 (so "none" and RS256-with-a-public-key tricks fail), the
 * signature is compared in constant time before the claims are parsed,
 * every claim must be present with its type, exp must be after now and
 * nbf/iat no later than now plus GW_TOKEN_SKEW_S (gateways' clocks differ
 * a little; expiry gets no such slack).
 *
 * Plain functions: no clock read (now is passed in), no lock, no I/O;
 * gw_token_jti_new() alone asks the kernel for random bytes.
 */
#ifndef MARQUEE_GATEWAY_TOKEN_H
#define MARQUEE_GATEWAY_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* HMAC-SHA256 key length, and the shortest secret a key is derived from. */
#define GW_TOKEN_KEY_LEN    32
#define GW_TOKEN_SECRET_MIN 32
/* The longest token accepted or made, NUL excluded. */
#define GW_TOKEN_MAX 1024
/* The longest subject (a customer id, see HTTP_CUSTOMER_MAX). */
#define GW_TOKEN_SUB_MAX 64
/* A jti: 16 random bytes in base64url without padding is 22 characters. */
#define GW_TOKEN_JTI_LEN 22
/* How far in the future iat and nbf may be: clock skew between gateways. */
#define GW_TOKEN_SKEW_S 30

enum gw_role { GW_ROLE_CUSTOMER, GW_ROLE_ADMIN };

struct gw_token_key {
    unsigned char bytes[GW_TOKEN_KEY_LEN];
};

struct gw_token_claims {
    char sub[GW_TOKEN_SUB_MAX + 1];
    enum gw_role role;
    int64_t iat_s; /* also written as nbf */
    int64_t exp_s;
    char jti[GW_TOKEN_JTI_LEN + 1];
};

/* Why a token was refused (GW_TOKEN_VALID when it was not). */
enum gw_token_fault {
    GW_TOKEN_VALID,
    GW_TOKEN_MALFORMED,     /* not three base64url parts, bad JSON, claims */
    GW_TOKEN_BAD_ALG,       /* header alg is not HS256 */
    GW_TOKEN_BAD_SIGNATURE, /* signed with another key, or altered */
    GW_TOKEN_EXPIRED,       /* now >= exp */
    GW_TOKEN_NOT_YET_VALID, /* nbf or iat later than now + skew */
};

/* A short lower-case phrase for a fault, for problem details; never NULL. */
const char *gw_token_fault_text(enum gw_token_fault f);

/*
 * Derives a key for one purpose ("access-token", "waitroom-pass") from the
 * configured secret: HMAC-SHA256(secret, "marquee/" purpose).  One secret
 * thus never signs two kinds of document with the same key, and a pass
 * can never be passed off as a token.  secret_len may be any length; the
 * caller enforces GW_TOKEN_SECRET_MIN.
 */
void gw_token_key_derive(struct gw_token_key *out, const void *secret,
                         size_t secret_len, const char *purpose);

/* Fills jti with a fresh random id; ERR_OK or ERR_SYS. */
int gw_token_jti_new(char jti[GW_TOKEN_JTI_LEN + 1]);

/* Whether role names a role; *out set when it does. */
bool gw_role_parse(const char *s, enum gw_role *out);
const char *gw_role_name(enum gw_role r);

/*
 * Writes the signed token for c into out (cap bytes, NUL included).
 * ERR_OK; ERR_INVALID when sub is not a customer id (http_customer_ok) or
 * jti is empty; ERR_TOOBIG when cap is too small.
 */
int gw_token_sign(const struct gw_token_key *key,
                  const struct gw_token_claims *c, char *out, size_t cap);

/*
 * Checks token against key at now_s (seconds since the epoch).  Returns
 * ERR_OK and fills *out, or ERR_DENIED with *fault saying why (out is
 * then unspecified).  fault may be NULL.
 */
int gw_token_verify(const struct gw_token_key *key, const char *token,
                    int64_t now_s, struct gw_token_claims *out,
                    enum gw_token_fault *fault);

/*
 * HMAC-SHA256 of msg under key, in base64url without padding, into out
 * (GW_TOKEN_MAC_TEXT_LEN + 1 bytes).  Shared with the waiting room's
 * passes and the accounts' visitor ids.
 */
#define GW_TOKEN_MAC_TEXT_LEN 43
void gw_token_mac_text(const struct gw_token_key *key, const void *msg,
                       size_t len, char out[GW_TOKEN_MAC_TEXT_LEN + 1]);

/* Constant-time equality of two NUL-terminated strings of any length. */
bool gw_token_text_equal(const char *a, const char *b);

#endif
