/*
 * auth.c - who a request acts for: the customer the gateway names, and the
 * admin bearer token that every role's /admin/ routes share.
 *
 * The customer comes in X-Customer-Id.  A service believes it only when the
 * request also proves it came through the gateway, by the shared secret of
 * http.gateway_secret in X-Gateway-Secret (the gateway removes both headers
 * from what clients send and sets its own).  Without a configured secret
 * the header is believed as before, and only the loopback binding of the
 * services keeps strangers from setting it.
 */
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "http/http.h"
#include "http/internal.h"

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

bool http_gateway_secret_ok(const char *secret)
{
    if (secret == NULL || secret[0] == '\0' ||
        strlen(secret) >= HTTP_GATEWAY_SECRET_MIN)
        return true;
    log_error("http",
              "bad_config key=http.gateway_secret reason=too_short min=%d",
              HTTP_GATEWAY_SECRET_MIN);
    return false;
}

/* Whether the request may name a customer: trust off, or the secret. */
static bool from_gateway(struct http_req *req)
{
    const char *secret = req->thread->server->cfg.gateway_secret;
    const char *given;

    if (secret == NULL || secret[0] == '\0')
        return true;
    given = http_req_header(req, HTTP_GATEWAY_SECRET_HEADER);
    return given != NULL && token_equal(given, secret);
}

const char *http_req_customer(struct http_req *req)
{
    const char *customer;

    if (!from_gateway(req)) {
        http_respond_problem(req, 403, "untrusted-customer",
                             "Customer not vouched for",
                             "X-Customer-Id is accepted only from the "
                             "gateway: X-Gateway-Secret is missing or wrong");
        return NULL;
    }
    customer = http_req_header(req, "x-customer-id");
    if (!http_customer_ok(customer)) {
        http_respond_problem(req, 400, "invalid-customer", "Invalid customer",
                             "X-Customer-Id must be 1 to %d characters of "
                             "letters, digits, '.', '_' or '-'",
                             HTTP_CUSTOMER_MAX);
        return NULL;
    }
    return customer;
}
