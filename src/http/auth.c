/*
 * auth.c - who a request acts for: the customer the gateway names, and the
 * admin bearer token that every role's /admin/ routes share.
 */
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"

#define BEARER_PREFIX     "Bearer "
#define BEARER_PREFIX_LEN (sizeof(BEARER_PREFIX) - 1)

/*
 * Compares the digests, in constant time, rather than the strings: the
 * time taken then tells nothing of the token's bytes, nor of its length.
 */
static bool token_equal(const char *given, const char *token)
{
    unsigned char a[SHA256_DIGEST_LENGTH], b[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)given, strlen(given), a);
    SHA256((const unsigned char *)token, strlen(token), b);
    return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

bool http_req_admin_ok(struct http_req *req, const char *token)
{
    const char *auth = http_req_header(req, "authorization");

    if (token == NULL || token[0] == '\0') {
        http_respond_problem(req, 403, "admin-disabled", "Forbidden",
                             "admin routes are disabled: no admin token is "
                             "configured");
        return false;
    }
    if (auth == NULL ||
        strncasecmp(auth, BEARER_PREFIX, BEARER_PREFIX_LEN) != 0 ||
        !token_equal(auth + BEARER_PREFIX_LEN, token)) {
        http_set_header(req, "WWW-Authenticate",
                        "Bearer realm=\"marquee-admin\"");
        http_respond_problem(req, 401, "unauthorized", "Unauthorized",
                             "admin routes need Authorization: Bearer with "
                             "the admin token");
        return false;
    }
    return true;
}

bool http_customer_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n > HTTP_CUSTOMER_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && strchr("._-", s[i]) == NULL)
            return false;
    return true;
}

const char *http_req_customer(struct http_req *req)
{
    const char *customer = http_req_header(req, "x-customer-id");

    if (!http_customer_ok(customer)) {
        http_respond_problem(req, 400, "invalid-customer", "Invalid customer",
                             "X-Customer-Id must be 1 to %d characters of "
                             "letters, digits, '.', '_' or '-'",
                             HTTP_CUSTOMER_MAX);
        return NULL;
    }
    return customer;
}
