/*
 * token.c - HS256 JWTs: sign and verify.  See token.h for the rules.
 */
#include "gateway/token.h"

#include <assert.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/rand.h"
#include "http/http.h"

#define B64_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING

/* The header is always the same; only its encoding is checked on verify
 * through parsing, since another gateway may order the members otherwise. */
#define TOKEN_HEADER_JSON "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
/* Decoded header and claims are at most this long (the token is bounded). */
#define TOKEN_PART_MAX GW_TOKEN_MAX
#define JTI_BYTES      16

const char *gw_token_fault_text(enum gw_token_fault f)
{
    switch (f) {
    case GW_TOKEN_VALID: return "valid";
    case GW_TOKEN_MALFORMED: return "the token is malformed";
    case GW_TOKEN_BAD_ALG: return "the token's algorithm is not HS256";
    case GW_TOKEN_BAD_SIGNATURE: return "the token's signature does not match";
    case GW_TOKEN_EXPIRED: return "the token has expired";
    case GW_TOKEN_NOT_YET_VALID: return "the token is not valid yet";
    }
    return "the token is invalid";
}

static void mac(const struct gw_token_key *key, const void *msg, size_t len,
                unsigned char out[SHA256_DIGEST_LENGTH])
{
    unsigned int n = 0;
    unsigned char *r =
        HMAC(EVP_sha256(), key->bytes, GW_TOKEN_KEY_LEN, msg, len, out, &n);

    /* HMAC with a built-in digest fails only when memory runs out, which
     * nothing here could answer better than a crash. */
    assert(r != NULL && n == SHA256_DIGEST_LENGTH);
    (void)r;
}

void gw_token_key_derive(struct gw_token_key *out, const void *secret,
                         size_t secret_len, const char *purpose)
{
    char label[128];
    unsigned int n = 0;
    int len = snprintf(label, sizeof(label), "marquee/%s", purpose);

    assert(len > 0 && (size_t)len < sizeof(label));
    HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)label,
         (size_t)len, out->bytes, &n);
    assert(n == GW_TOKEN_KEY_LEN);
}

void gw_token_mac_text(const struct gw_token_key *key, const void *msg,
                       size_t len, char out[GW_TOKEN_MAC_TEXT_LEN + 1])
{
    unsigned char d[SHA256_DIGEST_LENGTH];

    mac(key, msg, len, d);
    sodium_bin2base64(out, GW_TOKEN_MAC_TEXT_LEN + 1, d, sizeof(d),
                      B64_VARIANT);
}

bool gw_token_text_equal(const char *a, const char *b)
{
    unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];

    /* Comparing digests takes the same time whatever the lengths. */
    SHA256((const unsigned char *)a, strlen(a), da);
    SHA256((const unsigned char *)b, strlen(b), db);
    return CRYPTO_memcmp(da, db, sizeof(da)) == 0;
}

int gw_token_jti_new(char jti[GW_TOKEN_JTI_LEN + 1])
{
    unsigned char b[JTI_BYTES];
    int rc = rand_secure_bytes(b, sizeof(b));

    if (rc != ERR_OK)
        return rc;
    sodium_bin2base64(jti, GW_TOKEN_JTI_LEN + 1, b, sizeof(b), B64_VARIANT);
    return ERR_OK;
}

bool gw_role_parse(const char *s, enum gw_role *out)
{
    if (s != NULL && strcmp(s, "customer") == 0) {
        *out = GW_ROLE_CUSTOMER;
        return true;
    }
    if (s != NULL && strcmp(s, "admin") == 0) {
        *out = GW_ROLE_ADMIN;
        return true;
    }
    return false;
}

const char *gw_role_name(enum gw_role r)
{
    return r == GW_ROLE_ADMIN ? "admin" : "customer";
}

/* Appends base64url(data) to out at *pos; false when it does not fit. */
static bool put_b64(char *out, size_t cap, size_t *pos, const void *data,
                    size_t len)
{
    size_t need = sodium_base64_ENCODED_LEN(len, B64_VARIANT);

    if (*pos + need > cap)
        return false;
    sodium_bin2base64(out + *pos, need, data, len, B64_VARIANT);
    *pos += strlen(out + *pos);
    return true;
}

int gw_token_sign(const struct gw_token_key *key,
                  const struct gw_token_claims *c, char *out, size_t cap)
{
    unsigned char sig[SHA256_DIGEST_LENGTH];
    size_t pos = 0;
    char *claims;
    json_t *o;
    bool fits;

    if (!http_customer_ok(c->sub) || c->jti[0] == '\0')
        return ERR_INVALID;
    o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:s}", "sub", c->sub, "role",
                  gw_role_name(c->role), "iat", (json_int_t)c->iat_s, "nbf",
                  (json_int_t)c->iat_s, "exp", (json_int_t)c->exp_s, "jti",
                  c->jti);
    if (o == NULL)
        return ERR_NOMEM;
    claims = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (claims == NULL)
        return ERR_NOMEM;

    fits =
        put_b64(out, cap, &pos, TOKEN_HEADER_JSON, strlen(TOKEN_HEADER_JSON)) &&
        pos + 1 < cap;
    if (fits) {
        out[pos++] = '.';
        fits = put_b64(out, cap, &pos, claims, strlen(claims)) && pos + 1 < cap;
    }
    free(claims);
    if (!fits)
        return ERR_TOOBIG;

    mac(key, out, pos, sig);
    out[pos++] = '.';
    if (!put_b64(out, cap, &pos, sig, sizeof(sig)))
        return ERR_TOOBIG;
    return ERR_OK;
}

/* Decodes one base64url part [s, s+len) into buf; its length, or -1. */
static long get_b64(const char *s, size_t len, unsigned char *buf, size_t cap)
{
    size_t n = 0;
    const char *end = NULL;

    if (len == 0 ||
        sodium_base642bin(buf, cap, s, len, NULL, &n, &end, B64_VARIANT) != 0 ||
        end != s + len)
        return -1;
    return (long)n;
}

static json_t *get_json(const char *s, size_t len)
{
    unsigned char buf[TOKEN_PART_MAX];
    long n = get_b64(s, len, buf, sizeof(buf));
    json_t *o;

    if (n < 0)
        return NULL;
    o = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    if (o != NULL && !json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static enum gw_token_fault check_header(const char *s, size_t len)
{
    json_t *h = get_json(s, len);
    const char *alg, *typ;
    enum gw_token_fault f = GW_TOKEN_VALID;

    if (h == NULL)
        return GW_TOKEN_MALFORMED;
    alg = json_string_value(json_object_get(h, "alg"));
    typ = json_string_value(json_object_get(h, "typ"));
    if (alg == NULL || strcmp(alg, "HS256") != 0)
        f = GW_TOKEN_BAD_ALG;
    else if (typ != NULL && strcmp(typ, "JWT") != 0)
        f = GW_TOKEN_MALFORMED;
    /* "crit" names extensions the verifier must understand; none are. */
    else if (json_object_get(h, "crit") != NULL)
        f = GW_TOKEN_MALFORMED;
    json_decref(h);
    return f;
}

static bool get_time(json_t *o, const char *name, int64_t *out)
{
    json_t *v = json_object_get(o, name);

    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = json_integer_value(v);
    return true;
}

static enum gw_token_fault check_claims(json_t *o, int64_t now_s,
                                        struct gw_token_claims *out)
{
    const char *sub = json_string_value(json_object_get(o, "sub"));
    const char *role = json_string_value(json_object_get(o, "role"));
    const char *jti = json_string_value(json_object_get(o, "jti"));
    int64_t nbf;

    if (!http_customer_ok(sub) || !gw_role_parse(role, &out->role) ||
        jti == NULL || jti[0] == '\0' || strlen(jti) > GW_TOKEN_JTI_LEN ||
        !get_time(o, "iat", &out->iat_s) || !get_time(o, "nbf", &nbf) ||
        !get_time(o, "exp", &out->exp_s))
        return GW_TOKEN_MALFORMED;
    memcpy(out->sub, sub, strlen(sub) + 1);
    memcpy(out->jti, jti, strlen(jti) + 1);

    if (now_s >= out->exp_s)
        return GW_TOKEN_EXPIRED;
    if (nbf > now_s + GW_TOKEN_SKEW_S || out->iat_s > now_s + GW_TOKEN_SKEW_S)
        return GW_TOKEN_NOT_YET_VALID;
    return GW_TOKEN_VALID;
}

static enum gw_token_fault verify(const struct gw_token_key *key,
                                  const char *token, int64_t now_s,
                                  struct gw_token_claims *out)
{
    size_t len = strnlen(token, GW_TOKEN_MAX + 1);
    const char *dot1, *dot2;
    unsigned char want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH + 1];
    enum gw_token_fault f;
    json_t *claims;

    if (len > GW_TOKEN_MAX)
        return GW_TOKEN_MALFORMED;
    dot1 = memchr(token, '.', len);
    dot2 = dot1 != NULL
               ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token))
               : NULL;
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
        return GW_TOKEN_MALFORMED;

    f = check_header(token, (size_t)(dot1 - token));
    if (f != GW_TOKEN_VALID)
        return f;

    /* The signature is checked before the claims are even parsed. */
    mac(key, token, (size_t)(dot2 - token), want);
    if (get_b64(dot2 + 1, len - (size_t)(dot2 + 1 - token), got, sizeof(got)) !=
            SHA256_DIGEST_LENGTH ||
        CRYPTO_memcmp(want, got, sizeof(want)) != 0)
        return GW_TOKEN_BAD_SIGNATURE;

    claims = get_json(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (claims == NULL)
        return GW_TOKEN_MALFORMED;
    f = check_claims(claims, now_s, out);
    json_decref(claims);
    return f;
}

int gw_token_verify(const struct gw_token_key *key, const char *token,
                    int64_t now_s, struct gw_token_claims *out,
                    enum gw_token_fault *fault)
{
    enum gw_token_fault f = verify(key, token, now_s, out);

    if (fault != NULL)
        *fault = f;
    return f == GW_TOKEN_VALID ? ERR_OK : ERR_DENIED;
}
