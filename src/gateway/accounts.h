/*
 * accounts.h - the gateway's accounts database: customers and admins who
 * sign in with an email and a password, their refresh tokens, and the
 * partners' API keys.
 *
 * Passwords are stored as Argon2id hashes (libsodium crypto_pwhash_str,
 * the "interactive" level by default: 2 passes over 64 MiB), each with
 * its own salt in the encoded string.  Refresh tokens and API keys are
 * stored only as SHA-256 digests: each is 32 random bytes from the
 * kernel, so nobody can search 2^256 inputs for a digest and a slow hash
 * would buy nothing, while a fast one lets a key be found by its digest
 * through an index (or, for API keys, a table in memory).
 *
 * Refresh tokens rotate: each refresh hands out a new token of the same
 * family and marks the old one used.  A used token presented again means
 * that two parties hold the family (one of them stole it), so the whole
 * family is revoked and both must sign in again (OAuth 2.0 Security BCP,
 * "refresh token rotation").  A family lives at most family_max_ms.
 *
 * Failed sign-ins are limited in memory, per account (the email as
 * given, also for emails with no account, so that the limit says nothing
 * of which exist) and per client address: a fixed window opens at the
 * first failure, and once account_fails (or address_fails) failures are
 * counted in it, sign-ins for that account (address) are refused until
 * the window ends, without checking the password.  A success clears the
 * account's count, not the address's.  The table holds track_max keys
 * (GW_SIGNIN_TRACK_MAX by default); past that, of the GW_SIGNIN_PROBE_MAX
 * slots probed for a new key, the one with the fewest failures (then the
 * oldest) is forgotten, so that a flood of one-off failures cannot free a
 * limited account.  Time comes from the injected clock (wall ms).
 *
 * Every function that touches the database or hashes a password blocks
 * (a hash takes tens of ms): call them from worker threads, never from an
 * event loop.  gw_accounts_key_find() alone is for the request path: it
 * reads an in-memory table under a read lock.  All functions are
 * thread-safe.
 */
#ifndef MARQUEE_GATEWAY_ACCOUNTS_H
#define MARQUEE_GATEWAY_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/token.h"
#include "http/http.h"

struct clock;
struct store_config;

/* Input bounds, bytes. */
#define GW_EMAIL_MIN    3
#define GW_EMAIL_MAX    254 /* RFC 5321's longest path */
#define GW_PASSWORD_MIN 8
#define GW_PASSWORD_MAX 128
#define GW_NAME_MAX     400 /* 100 characters of up to 4 bytes */
#define GW_KEY_NAME_MAX 400
/* Names in characters, as the HTTP handlers count them. */
#define GW_NAME_CHARS_MAX 100

/* Refresh tokens and API keys: a prefix, then 32 random bytes base64url. */
#define GW_SECRET_BYTES    32
#define GW_REFRESH_PREFIX  "rt1_"
#define GW_API_KEY_PREFIX  "mqk_"
#define GW_SECRET_TEXT_MAX (4 + 43)
/* API keys held in memory (every live one), and sign-in limit slots. */
#define GW_API_KEYS_MAX     4096
#define GW_SIGNIN_TRACK_MAX 16384
#define GW_SIGNIN_PROBE_MAX 8
/* Expired refresh tokens deleted per sweep. */
#define GW_SWEEP_BATCH 1000

/* Partner API key scopes, a bit each. */
#define GW_SCOPES(X)                                                           \
    X(GW_SCOPE_CATALOG_READ, 1u << 0, "catalog:read")                          \
    X(GW_SCOPE_HOLDS_WRITE, 1u << 1, "holds:write")                            \
    X(GW_SCOPE_BOOKINGS_READ, 1u << 2, "bookings:read")                        \
    X(GW_SCOPE_BOOKINGS_WRITE, 1u << 3, "bookings:write")

enum gw_scope {
#define GW_SCOPE_ENUM(name, bit, text) name = bit,
    GW_SCOPES(GW_SCOPE_ENUM)
#undef GW_SCOPE_ENUM
};
#define GW_SCOPE_ALL 0xfu

/* The bit of a scope name, or 0 for none. */
unsigned gw_scope_parse(const char *name);
/* The names of the bits of scopes as a JSON array of strings (new ref). */
json_t *gw_scopes_json(unsigned scopes);

struct gw_accounts_config {
    struct clock *clock;         /* wall time; not owned */
    unsigned long long opslimit; /* Argon2id passes */
    size_t memlimit;             /* Argon2id memory, bytes */
    int64_t refresh_ttl_ms;      /* life of one refresh token */
    int64_t family_max_ms;       /* life of a family of refresh tokens */
    int account_fails;           /* failed sign-ins per account per window */
    int address_fails;           /* failed sign-ins per address per window */
    int64_t fail_window_ms;
    size_t track_max; /* sign-in limit slots; 0: the default */
};

/* Whether opslimit and memlimit are within libsodium's Argon2id bounds. */
bool gw_accounts_hash_params_ok(unsigned long long opslimit, size_t memlimit);

struct gw_accounts;

/*
 * Opens (creating and migrating) the database of sc and loads the live
 * API keys.  Computes one password hash, for the timing of sign-ins of
 * unknown emails.  ERR_OK with *out owned by the caller
 * (gw_accounts_close); ERR_INVALID (bad hash parameters), ERR_NOMEM,
 * ERR_FULL (more than GW_API_KEYS_MAX live keys), or store_open()'s error.
 */
int gw_accounts_open(const struct store_config *sc,
                     const struct gw_accounts_config *cfg,
                     struct gw_accounts **out);
void gw_accounts_close(struct gw_accounts *a);

/*
 * Lower-cases email into out (GW_EMAIL_MAX + 1) after checking it is
 * GW_EMAIL_MIN..GW_EMAIL_MAX printable ASCII without spaces, with one '@'
 * that is neither first nor last.  false when it is not an email.
 */
bool gw_email_normalize(const char *email, char *out);

/*
 * Creates an account.  email must pass gw_email_normalize, password be
 * GW_PASSWORD_MIN..GW_PASSWORD_MAX bytes, name 1..GW_NAME_MAX bytes.
 * ERR_OK with the new id in *id; ERR_INVALID (checked by the caller first,
 * so a bug), ERR_CONFLICT (the email has an account), ERR_NOMEM (hashing
 * could not get its memory), ERR_FULL (the writer's queue), ERR_DB.
 */
int gw_accounts_signup(struct gw_accounts *a, const char *email,
                       const char *password, const char *name,
                       enum gw_role role, int64_t *id);

/* What a sign-in or a refresh hands out. */
struct gw_session {
    int64_t account_id;
    char customer[HTTP_CUSTOMER_MAX + 1]; /* "cust-<id>", the token's sub */
    enum gw_role role;
    char refresh[GW_SECRET_TEXT_MAX + 1];
    int64_t refresh_expires_ms;
};

/* The customer id of an account: "cust-<id>". */
void gw_accounts_customer_id(int64_t account_id,
                             char out[HTTP_CUSTOMER_MAX + 1]);

/*
 * Signs in from address (the client's, may be "").  ERR_OK with *out
 * filled (a new refresh token family); ERR_DENIED (no such account or
 * wrong password: the two are not told apart); ERR_AGAIN when the account
 * or the address is limited, *retry_after_ms set (> 0) and no password
 * checked; ERR_NOMEM, ERR_FULL, ERR_DB.
 */
int gw_accounts_signin(struct gw_accounts *a, const char *email,
                       const char *password, const char *address,
                       struct gw_session *out, int64_t *retry_after_ms);

/*
 * Rotates a refresh token.  ERR_OK with the new token in *out; ERR_DENIED
 * when it is unknown, expired, revoked, or was already used (then its
 * whole family is revoked, and *reused is set when reused is not NULL);
 * ERR_FULL, ERR_DB.
 */
int gw_accounts_refresh(struct gw_accounts *a, const char *refresh,
                        struct gw_session *out, bool *reused);

/*
 * Revokes the family of a refresh token (sign-out everywhere that family
 * reached).  ERR_OK, also when it was already revoked; ERR_NOTFOUND for an
 * unknown token; ERR_FULL, ERR_DB.
 */
int gw_accounts_revoke(struct gw_accounts *a, const char *refresh);

/*
 * Creates a partner API key with scopes (a non-zero subset of
 * GW_SCOPE_ALL).  ERR_OK with the key's text in key (shown once, never
 * stored) and its id in *id; ERR_INVALID, ERR_FULL (GW_API_KEYS_MAX live
 * keys, or the writer's queue), ERR_SYS (no randomness), ERR_DB.
 */
int gw_accounts_key_create(struct gw_accounts *a, const char *name,
                           unsigned scopes, char key[GW_SECRET_TEXT_MAX + 1],
                           int64_t *id);

/*
 * Revokes the API key with this id, in the database and then in memory:
 * from the return on, gw_accounts_key_find() no longer finds it.  Its
 * place in memory stays taken until the next start (it counts towards
 * GW_API_KEYS_MAX until then).  ERR_OK; ERR_NOTFOUND when no live key has
 * that id; ERR_FULL, ERR_DB.
 */
int gw_accounts_key_revoke(struct gw_accounts *a, int64_t id);

/*
 * Looks up an API key in memory; never blocks on I/O.  true with its id
 * and scopes; false for an unknown key.
 */
bool gw_accounts_key_find(struct gw_accounts *a, const char *key, int64_t *id,
                          unsigned *scopes);

/*
 * Deletes refresh tokens expired for a day, GW_SWEEP_BATCH at most, by a
 * write nobody waits for.  ERR_OK once queued, or store_submit_exec's error.
 */
int gw_accounts_sweep(struct gw_accounts *a);

#endif
