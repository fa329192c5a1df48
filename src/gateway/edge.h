/*
 * edge.h - who is calling, and may they: the gateway's accounts and
 * sign-in, access tokens, partner API keys and the waiting rooms of hot
 * sales, as HTTP handlers and as checks for the request path.
 *
 * One `struct gw_edge` per gateway process holds the accounts database
 * (accounts.h), the keys that sign access tokens and waiting-room passes
 * (both derived from gateway.token_secret), the hot sales' waiting rooms
 * (waitroom.h) and the worker threads that hash passwords and talk to the
 * database, so that no event loop ever waits for either.
 *
 * Handlers (each `void fn(struct http_req *req, void *app)` with app a
 * `struct gw_edge *`; they read ids from the path themselves, so they work
 * under the patterns below or behind a catch-all that calls
 * gw_edge_dispatch):
 *
 *   POST   /v1/accounts                     gw_edge_signup
 *   POST   /v1/sessions                     gw_edge_signin
 *   POST   /v1/sessions/refresh             gw_edge_refresh
 *   DELETE /v1/sessions                     gw_edge_signout
 *   POST   /admin/api-keys                  gw_edge_key_create   (admin)
 *   DELETE /admin/api-keys/{id}             gw_edge_key_revoke   (admin)
 *   POST   /admin/hot-sales                 gw_edge_hot_sale     (admin)
 *   DELETE /admin/hot-sales/{show_id}       gw_edge_hot_sale_end (admin)
 *   POST   /v1/shows/{show_id}/queue        gw_edge_queue_join
 *   GET    /v1/shows/{show_id}/queue/{visitor}  gw_edge_queue_status
 *
 * Admin routes take `Authorization: Bearer` with gateway.admin_token or
 * with an access token whose role is admin.  Bodies, answers and problem
 * slugs: docs/internals/gateway.md, "Accounts, tokens and the waiting
 * room".
 *
 * Threads: every function here may be called from any event-loop thread
 * at once.  Accounts handlers defer their answer to a worker; the queue
 * of work is bounded (gateway.auth_queue_max) and a full one is 503.
 */
#ifndef MARQUEE_GATEWAY_EDGE_H
#define MARQUEE_GATEWAY_EDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "gateway/accounts.h"
#include "http/http.h"

struct clock;

/* Named limits. */
#define GW_HOT_SALES_MAX    64 /* shows with a waiting room at once */
#define GW_AUTH_WORKERS_MAX 16 /* password hashing threads */
#define GW_EDGE_RETRY_S     1  /* Retry-After of a full work queue */
#define GW_PASS_HEADER      "x-queue-pass"
#define GW_API_KEY_HEADER   "x-api-key"

/* clang-format off */
#define GW_EDGE_CONFIG_KEYS                                                    \
    {"gateway.accounts.path", CONFIG_STRING, "var/gateway.db", 0, 0,           \
     "the gateway's accounts database (SQLite file)"},                         \
    {"gateway.token_secret", CONFIG_STRING, "", 0, 0,                          \
     "signs access tokens and queue passes, 32+ bytes, the same on every "     \
     "gateway; empty: a random one per process"},                              \
    {"gateway.access_token_ttl_s", CONFIG_INT, "900", 10, 86400,               \
     "life of an access token"},                                               \
    {"gateway.refresh_token_ttl_s", CONFIG_INT, "1209600", 60, 7776000,        \
     "life of one refresh token (each refresh hands out a new one)"},          \
    {"gateway.refresh_family_max_s", CONFIG_INT, "2592000", 60, 31536000,      \
     "longest a sign-in lasts through refreshes; >= the refresh token's"},     \
    {"gateway.password_opslimit", CONFIG_INT, "2", 1, 16,                      \
     "Argon2id passes (2 is libsodium's interactive level)"},                  \
    {"gateway.password_memlimit_kib", CONFIG_INT, "65536", 8, 1048576,         \
     "Argon2id memory in KiB (65536 is the interactive level)"},               \
    {"gateway.signin_account_fails", CONFIG_INT, "5", 1, 1000,                 \
     "failed sign-ins per account per window before it is refused"},           \
    {"gateway.signin_address_fails", CONFIG_INT, "20", 1, 100000,              \
     "failed sign-ins per client address per window"},                         \
    {"gateway.signin_window_s", CONFIG_INT, "900", 1, 86400,                   \
     "the window of the sign-in limits, from its first failure"},              \
    {"gateway.auth_workers", CONFIG_INT, "2", 1, GW_AUTH_WORKERS_MAX,          \
     "threads that hash passwords and write accounts"},                        \
    {"gateway.auth_queue_max", CONFIG_INT, "32", 1, 65536,                     \
     "account requests waiting for a worker; more get 503"},                   \
    {"gateway.waitroom.visitors_max", CONFIG_INT, "200000", 1, 4194304,        \
     "visitors of one waiting room when the hot sale does not say"},           \
    {"gateway.waitroom.pass_ttl_s", CONFIG_INT, "300", 1, 3600,                \
     "life of a queue pass when the hot sale does not say"}
/* clang-format on */

/*
 * The same keys as an array, for a program that builds its table at run
 * time; gw_edge_open() also reads gateway.admin_token, which gateway.c
 * declares.
 */
extern const struct config_key gw_edge_config_keys[];
extern const size_t gw_edge_config_nkeys;

struct gw_edge;

/*
 * Opens the accounts database, derives the keys, starts the workers.
 * ERR_OK with *out owned by the caller (gw_edge_close); ERR_CONFIG (a
 * token secret under GW_TOKEN_SECRET_MIN bytes, a family shorter than a
 * refresh token), or gw_accounts_open()'s error.  Logs the cause.
 */
int gw_edge_open(const struct config *cfg, struct gw_edge **out);

/* The same with the wall clock given (tests); clock is not owned. */
int gw_edge_open_clock(const struct config *cfg, struct clock *clock,
                       struct gw_edge **out);

/*
 * Stops the workers after the queued work is done and frees everything.
 * Call it after http_server_run() returned and before http_server_free():
 * a worker answers through the server.  e may be NULL.
 */
void gw_edge_close(struct gw_edge *e);

/* --- the handlers ----------------------------------------------------- */

void gw_edge_signup(struct http_req *req, void *app);
void gw_edge_signin(struct http_req *req, void *app);
void gw_edge_refresh(struct http_req *req, void *app);
void gw_edge_signout(struct http_req *req, void *app);
void gw_edge_key_create(struct http_req *req, void *app);
void gw_edge_key_revoke(struct http_req *req, void *app);
void gw_edge_hot_sale(struct http_req *req, void *app);
void gw_edge_hot_sale_end(struct http_req *req, void *app);
void gw_edge_queue_join(struct http_req *req, void *app);
void gw_edge_queue_status(struct http_req *req, void *app);

/* The routes above with their patterns, for http_server_create(). */
extern const struct http_route gw_edge_routes[];
extern const size_t gw_edge_nroutes;

/*
 * When req's method and path are one of the routes above, handles it and
 * returns true; else returns false without answering.  For a catch-all
 * handler: `if (gw_edge_dispatch(req, edge)) return;`.
 */
bool gw_edge_dispatch(struct http_req *req, struct gw_edge *e);

/* --- checks for the request path -------------------------------------- */

enum gw_ident_kind {
    GW_IDENT_ANONYMOUS, /* no credentials */
    GW_IDENT_CUSTOMER,  /* an access token of role customer */
    GW_IDENT_ADMIN,     /* gateway.admin_token, or a token of role admin */
    GW_IDENT_PARTNER,   /* an X-Api-Key */
};

struct gw_ident {
    enum gw_ident_kind kind;
    /*
     * The customer the request acts for, to send upstream as X-Customer-Id
     * ("" for anonymous and for the admin token): the token's subject
     * ("cust-<id>"), or "key-<id>" for a partner.
     */
    char customer[HTTP_CUSTOMER_MAX + 1];
    int64_t key_id;    /* GW_IDENT_PARTNER */
    unsigned scopes;   /* GW_IDENT_PARTNER: GW_SCOPE_* bits */
    int64_t expires_s; /* access tokens: exp */
};

/*
 * Who the request comes from: `Authorization: Bearer <access token or
 * gateway.admin_token>` or `X-Api-Key: <key>`, or nobody.  Returns true
 * with *out filled; false after answering 401 (invalid-token: a bad,
 * altered, expired or not yet valid token, with WWW-Authenticate; or
 * invalid-api-key) or 400 conflicting-credentials (both headers).  Never
 * blocks: tokens are checked by HMAC, keys in memory.
 */
bool gw_edge_identify(struct gw_edge *e, struct http_req *req,
                      struct gw_ident *out);

/*
 * The scope a partner needs for method and path: bookings:read or
 * bookings:write under /v1/bookings, holds:write for writes under
 * /v1/holds and /v1/shows/{id}/holds, catalog:read for other reads under
 * /v1/; 0 when no scope allows it (partners may not).
 */
unsigned gw_edge_scope_needed(const char *method, const char *path);

/*
 * Whether id may make this request: always for non-partners; for a
 * partner, when its scopes hold gw_edge_scope_needed().  false after
 * answering 403 insufficient-scope.
 */
bool gw_edge_scope_ok(struct http_req *req, const struct gw_ident *id);

/*
 * For a request that creates a hold on show_id: true when the show's sale
 * is not hot, or X-Queue-Pass carries a valid pass for it made for the
 * caller (the customer its credentials name, as gw_edge_identify() finds
 * it; an anonymous caller has no valid pass); false after answering 403
 * pass-required, pass-expired or pass-forged (another customer's pass, or
 * one for another show, is pass-forged too, its detail says which).
 * Never blocks.
 */
bool gw_edge_pass_ok(struct gw_edge *e, struct http_req *req, int64_t show_id);

/* Whether show_id has a waiting room now. */
bool gw_edge_is_hot(struct gw_edge *e, int64_t show_id);

#endif
