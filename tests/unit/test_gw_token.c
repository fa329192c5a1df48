/*
 * test_gw_token.c - HS256 access tokens: a round trip, and every way a
 * token must be refused: expired, not yet valid, altered claims, another
 * key, alg "none" and other algorithms, bad base64, extra parts.
 */
#include "harness.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "gateway/token.h"

#define NOW    1800000000LL
#define SECRET "0123456789abcdef0123456789abcdef-test"
#define B64    sodium_base64_VARIANT_URLSAFE_NO_PADDING

static struct gw_token_key key(const char *purpose)
{
    struct gw_token_key k;

    gw_token_key_derive(&k, SECRET, strlen(SECRET), purpose);
    return k;
}

static void claims(struct gw_token_claims *c, int64_t iat, int64_t exp)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->sub, sizeof(c->sub), "cust-42");
    c->role = GW_ROLE_CUSTOMER;
    c->iat_s = iat;
    c->exp_s = exp;
    CHECK_INT(gw_token_jti_new(c->jti), ERR_OK);
    CHECK_INT(strlen(c->jti), GW_TOKEN_JTI_LEN);
}

static enum gw_token_fault verify(const struct gw_token_key *k, const char *t,
                                  int64_t now)
{
    struct gw_token_claims out;
    enum gw_token_fault f = GW_TOKEN_VALID;
    int rc = gw_token_verify(k, t, now, &out, &f);

    CHECK_INT(rc, f == GW_TOKEN_VALID ? ERR_OK : ERR_DENIED);
    return f;
}

/* A token assembled from a header and claims text, signed with k. */
static void forge(const struct gw_token_key *k, const char *header,
                  const char *body, char *out, size_t cap)
{
    unsigned char sig[32];
    unsigned int n = 0;
    size_t pos;

    sodium_bin2base64(out, cap, (const unsigned char *)header, strlen(header),
                      B64);
    pos = strlen(out);
    out[pos++] = '.';
    sodium_bin2base64(out + pos, cap - pos, (const unsigned char *)body,
                      strlen(body), B64);
    pos += strlen(out + pos);
    HMAC(EVP_sha256(), k->bytes, GW_TOKEN_KEY_LEN, (unsigned char *)out, pos,
         sig, &n);
    out[pos++] = '.';
    sodium_bin2base64(out + pos, cap - pos, sig, sizeof(sig), B64);
}

TEST(round_trip)
{
    struct gw_token_key k = key("access-token");
    struct gw_token_claims c, out;
    char t[GW_TOKEN_MAX + 1];

    claims(&c, NOW, NOW + 300);
    c.role = GW_ROLE_ADMIN;
    CHECK_INT(gw_token_sign(&k, &c, t, sizeof(t)), ERR_OK);
    CHECK_INT(gw_token_verify(&k, t, NOW, &out, NULL), ERR_OK);
    CHECK_STR(out.sub, "cust-42");
    CHECK_INT(out.role, GW_ROLE_ADMIN);
    CHECK_INT(out.iat_s, NOW);
    CHECK_INT(out.exp_s, NOW + 300);
    CHECK_STR(out.jti, c.jti);
    /* Valid through the last second before exp, and not at exp. */
    CHECK_INT(verify(&k, t, NOW + 299), GW_TOKEN_VALID);
    CHECK_INT(verify(&k, t, NOW + 300), GW_TOKEN_EXPIRED);
    CHECK_INT(verify(&k, t, NOW + 100000), GW_TOKEN_EXPIRED);
}

TEST(not_yet_valid_beyond_skew)
{
    struct gw_token_key k = key("access-token");
    struct gw_token_claims c;
    char t[GW_TOKEN_MAX + 1];

    claims(&c, NOW, NOW + 300);
    CHECK_INT(gw_token_sign(&k, &c, t, sizeof(t)), ERR_OK);
    CHECK_INT(verify(&k, t, NOW - GW_TOKEN_SKEW_S), GW_TOKEN_VALID);
    CHECK_INT(verify(&k, t, NOW - GW_TOKEN_SKEW_S - 1), GW_TOKEN_NOT_YET_VALID);
}

TEST(other_key_or_purpose_refused)
{
    struct gw_token_key k = key("access-token");
    struct gw_token_key pass = key("waitroom-pass");
    struct gw_token_key other;
    struct gw_token_claims c;
    char t[GW_TOKEN_MAX + 1];

    gw_token_key_derive(&other, "another secret of thirty-two bytes!", 35,
                        "access-token");
    claims(&c, NOW, NOW + 300);
    CHECK_INT(gw_token_sign(&k, &c, t, sizeof(t)), ERR_OK);
    CHECK_INT(verify(&other, t, NOW), GW_TOKEN_BAD_SIGNATURE);
    CHECK_INT(verify(&pass, t, NOW), GW_TOKEN_BAD_SIGNATURE);
    CHECK(memcmp(k.bytes, pass.bytes, GW_TOKEN_KEY_LEN) != 0);
}

TEST(tampered_claims_refused)
{
    struct gw_token_key k = key("access-token");
    struct gw_token_claims c;
    char t[GW_TOKEN_MAX + 1], body[256], b64[512];
    char *dot1, *dot2;
    char *tampered;
    size_t n;

    claims(&c, NOW, NOW + 300);
    CHECK_INT(gw_token_sign(&k, &c, t, sizeof(t)), ERR_OK);
    dot1 = strchr(t, '.');
    dot2 = strchr(dot1 + 1, '.');

    /* Same signature, claims that make the bearer an admin. */
    snprintf(body, sizeof(body),
             "{\"sub\":\"cust-42\",\"role\":\"admin\",\"iat\":%lld,"
             "\"nbf\":%lld,\"exp\":%lld,\"jti\":\"%s\"}",
             NOW, NOW, NOW + 300, c.jti);
    sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)body,
                      strlen(body), B64);
    n = (size_t)(dot1 - t) + 1;
    tampered = malloc(n + strlen(b64) + strlen(dot2) + 1);
    CHECK(tampered != NULL);
    memcpy(tampered, t, n);
    memcpy(tampered + n, b64, strlen(b64));
    memcpy(tampered + n + strlen(b64), dot2, strlen(dot2) + 1);
    CHECK_INT(verify(&k, tampered, NOW), GW_TOKEN_BAD_SIGNATURE);
    free(tampered);

    /* One flipped character anywhere in the signed part or signature. */
    for (size_t i = 0; t[i] != '\0'; i += 7) {
        char copy[GW_TOKEN_MAX + 1];

        memcpy(copy, t, strlen(t) + 1);
        if (copy[i] == '.')
            continue;
        copy[i] = copy[i] == 'A' ? 'B' : 'A';
        CHECK(verify(&k, copy, NOW) != GW_TOKEN_VALID);
    }
}

TEST(wrong_alg_refused)
{
    struct gw_token_key k = key("access-token");
    char body[256], t[GW_TOKEN_MAX + 1], none[GW_TOKEN_MAX + 1];
    char *dot2;

    snprintf(body, sizeof(body),
             "{\"sub\":\"cust-1\",\"role\":\"customer\",\"iat\":%lld,"
             "\"nbf\":%lld,\"exp\":%lld,\"jti\":\"abc\"}",
             NOW, NOW, NOW + 60);
    forge(&k, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", body, t, sizeof(t));
    CHECK_INT(verify(&k, t, NOW), GW_TOKEN_VALID);

    forge(&k, "{\"alg\":\"HS512\",\"typ\":\"JWT\"}", body, t, sizeof(t));
    CHECK_INT(verify(&k, t, NOW), GW_TOKEN_BAD_ALG);
    forge(&k, "{\"alg\":\"none\"}", body, t, sizeof(t));
    CHECK_INT(verify(&k, t, NOW), GW_TOKEN_BAD_ALG);
    forge(&k, "{\"typ\":\"JWT\"}", body, t, sizeof(t));
    CHECK_INT(verify(&k, t, NOW), GW_TOKEN_BAD_ALG);

    /* alg none with an empty signature: three parts, the last empty. */
    forge(&k, "{\"alg\":\"none\"}", body, none, sizeof(none));
    dot2 = strrchr(none, '.');
    dot2[1] = '\0';
    CHECK_INT(verify(&k, none, NOW), GW_TOKEN_BAD_ALG);
    forge(&k, "{\"alg\":\"HS256\"}", body, none, sizeof(none));
    dot2 = strrchr(none, '.');
    dot2[1] = '\0';
    CHECK_INT(verify(&k, none, NOW), GW_TOKEN_BAD_SIGNATURE);

    /* A properly signed token with claims missing or mistyped. */
    forge(&k, "{\"alg\":\"HS256\"}", "{\"sub\":\"cust-1\"}", t, sizeof(t));
    CHECK_INT(verify(&k, t, NOW), GW_TOKEN_MALFORMED);
    snprintf(body, sizeof(body),
             "{\"sub\":\"cust 1\",\"role\":\"customer\",\"iat\":%lld,"
             "\"nbf\":%lld,\"exp\":%lld,\"jti\":\"abc\"}",
             NOW, NOW, NOW + 60);
    forge(&k, "{\"alg\":\"HS256\"}", body, t, sizeof(t));
    CHECK_INT(verify(&k, t, NOW), GW_TOKEN_MALFORMED);
    snprintf(body, sizeof(body),
             "{\"sub\":\"cust-1\",\"role\":\"root\",\"iat\":%lld,"
             "\"nbf\":%lld,\"exp\":%lld,\"jti\":\"abc\"}",
             NOW, NOW, NOW + 60);
    forge(&k, "{\"alg\":\"HS256\"}", body, t, sizeof(t));
    CHECK_INT(verify(&k, t, NOW), GW_TOKEN_MALFORMED);
    snprintf(body, sizeof(body),
             "{\"sub\":\"cust-1\",\"role\":\"customer\",\"iat\":%lld,"
             "\"nbf\":%lld,\"exp\":\"%lld\",\"jti\":\"abc\"}",
             NOW, NOW, NOW + 60);
    forge(&k, "{\"alg\":\"HS256\"}", body, t, sizeof(t));
    CHECK_INT(verify(&k, t, NOW), GW_TOKEN_MALFORMED);
    /* A nbf in the future, signed: not valid yet. */
    snprintf(body, sizeof(body),
             "{\"sub\":\"cust-1\",\"role\":\"customer\",\"iat\":%lld,"
             "\"nbf\":%lld,\"exp\":%lld,\"jti\":\"abc\"}",
             NOW, NOW + 120, NOW + 600);
    forge(&k, "{\"alg\":\"HS256\"}", body, t, sizeof(t));
    CHECK_INT(verify(&k, t, NOW), GW_TOKEN_NOT_YET_VALID);
    CHECK_INT(verify(&k, t, NOW + 120), GW_TOKEN_VALID);
}

TEST(malformed_refused)
{
    struct gw_token_key k = key("access-token");
    struct gw_token_claims c;
    char t[GW_TOKEN_MAX + 1], more[GW_TOKEN_MAX + 8], big[GW_TOKEN_MAX + 2];

    CHECK_INT(verify(&k, "", NOW), GW_TOKEN_MALFORMED);
    CHECK_INT(verify(&k, "abc", NOW), GW_TOKEN_MALFORMED);
    CHECK_INT(verify(&k, "a.b", NOW), GW_TOKEN_MALFORMED);
    CHECK_INT(verify(&k, "..", NOW), GW_TOKEN_MALFORMED);
    CHECK_INT(verify(&k, "e30.e30.e30.e30", NOW), GW_TOKEN_MALFORMED);
    CHECK_INT(verify(&k, "e3=.e30.AAAA", NOW), GW_TOKEN_MALFORMED);

    claims(&c, NOW, NOW + 60);
    CHECK_INT(gw_token_sign(&k, &c, t, sizeof(t)), ERR_OK);
    snprintf(more, sizeof(more), "%s.", t);
    CHECK_INT(verify(&k, more, NOW), GW_TOKEN_MALFORMED);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK_INT(verify(&k, big, NOW), GW_TOKEN_MALFORMED);

    /* Signing refuses a subject that is no customer id, and a short cap. */
    snprintf(c.sub, sizeof(c.sub), "bad sub");
    CHECK_INT(gw_token_sign(&k, &c, t, sizeof(t)), ERR_INVALID);
    snprintf(c.sub, sizeof(c.sub), "cust-1");
    CHECK_INT(gw_token_sign(&k, &c, t, 40), ERR_TOOBIG);
}

TEST(text_equal_and_roles)
{
    enum gw_role r;

    CHECK(gw_token_text_equal("abc", "abc"));
    CHECK(!gw_token_text_equal("abc", "abd"));
    CHECK(!gw_token_text_equal("abc", "abcd"));
    CHECK(gw_role_parse("admin", &r) && r == GW_ROLE_ADMIN);
    CHECK(gw_role_parse("customer", &r) && r == GW_ROLE_CUSTOMER);
    CHECK(!gw_role_parse("Admin", &r));
    CHECK(!gw_role_parse(NULL, &r));
}

HARNESS_MAIN(T(round_trip), T(not_yet_valid_beyond_skew),
             T(other_key_or_purpose_refused), T(tampered_claims_refused),
             T(wrong_alg_refused), T(malformed_refused),
             T(text_equal_and_roles))
