/*
 * accounts.c - accounts, refresh tokens, API keys and sign-in limits.
 * See accounts.h for the rules.
 *
 * Every database step runs as a write job through store_write_sync(),
 * reads included: a refresh must read and rotate in one transaction, and
 * the accounts database is small and quiet next to the writer's capacity.
 * Password hashing always happens before or after a job, never inside
 * one, so the writer thread is never held for tens of milliseconds.
 */
#include "gateway/accounts.h"

#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/rand.h"
#include "store/store.h"

#define B64_VARIANT    sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define DIGEST_HEX     (2 * SHA256_DIGEST_LENGTH)
#define KEY_SLOTS      (2 * GW_API_KEYS_MAX) /* open addressing, half full */
#define SWEEP_AFTER_MS (24 * 3600 * 1000LL)

static const struct store_migration migrations[] = {
    {1, "initial",
     "CREATE TABLE accounts ("
     "  id INTEGER PRIMARY KEY,"
     "  email TEXT NOT NULL UNIQUE,"
     "  name TEXT NOT NULL,"
     "  role TEXT NOT NULL CHECK (role IN ('customer', 'admin')),"
     "  password_hash TEXT NOT NULL,"
     "  created_at INTEGER NOT NULL"
     ");"
     "CREATE TABLE refresh_tokens ("
     "  digest TEXT PRIMARY KEY,"
     "  family TEXT NOT NULL,"
     "  account_id INTEGER NOT NULL REFERENCES accounts(id),"
     "  issued_at INTEGER NOT NULL,"
     "  expires_at INTEGER NOT NULL,"
     "  family_expires_at INTEGER NOT NULL,"
     "  used_at INTEGER,"
     "  revoked_at INTEGER"
     ");"
     "CREATE INDEX refresh_tokens_family ON refresh_tokens(family);"
     "CREATE INDEX refresh_tokens_expiry ON refresh_tokens(expires_at);"
     "CREATE TABLE api_keys ("
     "  id INTEGER PRIMARY KEY,"
     "  name TEXT NOT NULL,"
     "  digest TEXT NOT NULL UNIQUE,"
     "  scopes INTEGER NOT NULL CHECK (scopes > 0),"
     "  created_at INTEGER NOT NULL,"
     "  revoked_at INTEGER"
     ");"},
};

struct signin_slot {
    uint64_t h; /* keyed hash of the account or address; 0 = free */
    int64_t start_ms;
    int fails;
};

struct key_slot {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    int64_t id;
    unsigned scopes;
    bool used;    /* taken: probing goes on past it */
    bool revoked; /* taken until a restart, found by nobody */
};

struct gw_accounts {
    struct store *store;
    struct gw_accounts_config cfg;
    char dummy_hash[crypto_pwhash_STRBYTES];

    pthread_mutex_t limit_lock;
    unsigned char limit_key[crypto_shorthash_KEYBYTES];
    struct signin_slot *slots; /* track slots */
    size_t track;

    pthread_mutex_t create_lock; /* one key creation at a time */
    pthread_rwlock_t keys_lock;
    struct key_slot *keys; /* KEY_SLOTS */
    size_t nkeys;
};

/* --- small helpers -------------------------------------------------- */

unsigned gw_scope_parse(const char *name)
{
#define GW_SCOPE_MATCH(n, bit, text)                                           \
    if (strcmp(name, text) == 0)                                               \
        return bit;
    GW_SCOPES(GW_SCOPE_MATCH)
#undef GW_SCOPE_MATCH
    return 0;
}

json_t *gw_scopes_json(unsigned scopes)
{
    json_t *a = json_array();

#define GW_SCOPE_NAME(n, bit, text)                                            \
    if (a != NULL && (scopes & (bit)) != 0)                                    \
        json_array_append_new(a, json_string(text));
    GW_SCOPES(GW_SCOPE_NAME)
#undef GW_SCOPE_NAME
    return a;
}

bool gw_accounts_hash_params_ok(unsigned long long opslimit, size_t memlimit)
{
    return opslimit >= crypto_pwhash_OPSLIMIT_MIN &&
           opslimit <= crypto_pwhash_OPSLIMIT_MAX &&
           memlimit >= crypto_pwhash_MEMLIMIT_MIN &&
           memlimit <= crypto_pwhash_MEMLIMIT_MAX;
}

bool gw_email_normalize(const char *email, char *out)
{
    size_t n = strnlen(email, GW_EMAIL_MAX + 1);
    const char *at = strchr(email, '@');

    if (n < GW_EMAIL_MIN || n > GW_EMAIL_MAX || at == NULL || at == email ||
        at[1] == '\0' || strchr(at + 1, '@') != NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)email[i];

        if (ch <= ' ' || ch >= 0x7f)
            return false;
        out[i] = (char)tolower(ch);
    }
    out[n] = '\0';
    return true;
}

void gw_accounts_customer_id(int64_t account_id,
                             char out[HTTP_CUSTOMER_MAX + 1])
{
    snprintf(out, HTTP_CUSTOMER_MAX + 1, "cust-%" PRId64, account_id);
}

static void digest_hex(const char *text, char out[DIGEST_HEX + 1])
{
    unsigned char d[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)text, strlen(text), d);
    sodium_bin2hex(out, DIGEST_HEX + 1, d, sizeof(d));
}

/* prefix + base64url(32 random bytes) into out. */
static int secret_new(const char *prefix, char out[GW_SECRET_TEXT_MAX + 1])
{
    unsigned char b[GW_SECRET_BYTES];
    size_t n = strlen(prefix);
    int rc = rand_secure_bytes(b, sizeof(b));

    assert(n == 4);
    if (rc != ERR_OK)
        return rc;
    memcpy(out, prefix, n);
    sodium_bin2base64(out + n, GW_SECRET_TEXT_MAX + 1 - n, b, sizeof(b),
                      B64_VARIANT);
    return ERR_OK;
}

static bool secret_shaped(const char *s, const char *prefix)
{
    size_t n = strnlen(s, GW_SECRET_TEXT_MAX + 1);

    return n == GW_SECRET_TEXT_MAX && strncmp(s, prefix, 4) == 0;
}

/* --- sign-in limits ------------------------------------------------- */

static uint64_t limit_hash(struct gw_accounts *a, char kind, const char *s)
{
    unsigned char msg[GW_EMAIL_MAX + 64], h[crypto_shorthash_BYTES];
    size_t n = strnlen(s, sizeof(msg) - 2);
    uint64_t v;

    msg[0] = (unsigned char)kind;
    msg[1] = 0;
    memcpy(msg + 2, s, n);
    crypto_shorthash(h, msg, n + 2, a->limit_key);
    memcpy(&v, h, sizeof(v));
    return v == 0 ? 1 : v;
}

/* Whether s is a worse keeper than best: fewer failures, then older. */
static bool evict_before(const struct signin_slot *s,
                         const struct signin_slot *best)
{
    return best == NULL || s->fails < best->fails ||
           (s->fails == best->fails && s->start_ms < best->start_ms);
}

/*
 * The slot of h, its count reset when its window is over.  A new key
 * takes a free or stale slot of the probed run, else the live one with
 * the fewest failures (the oldest of those): a flood of one-off failures
 * from many addresses then pushes out its own kind before it could free
 * an account that reached its limit.  keep (may be NULL) is never taken:
 * the account's slot, found just before its address's, must not become
 * the address's too.  A slot taken starts its window now, so that it is
 * not stale while its first failure is being counted.  Locked by the
 * caller.
 */
static struct signin_slot *limit_slot(struct gw_accounts *a, uint64_t h,
                                      int64_t now,
                                      const struct signin_slot *keep)
{
    struct signin_slot *free_slot = NULL, *weakest = NULL, *victim;
    size_t at = (size_t)(h % a->track);
    size_t probes =
        a->track < GW_SIGNIN_PROBE_MAX ? a->track : GW_SIGNIN_PROBE_MAX;

    for (size_t i = 0; i < probes; i++) {
        struct signin_slot *s = &a->slots[(at + i) % a->track];
        bool stale = s->h == 0 || now >= s->start_ms + a->cfg.fail_window_ms;

        if (s->h == h) {
            if (stale)
                s->fails = 0;
            return s;
        }
        if (s == keep)
            continue;
        if (stale && free_slot == NULL)
            free_slot = s;
        else if (!stale && evict_before(s, weakest))
            weakest = s;
    }
    victim = free_slot != NULL ? free_slot : weakest;
    assert(victim != NULL); /* probes >= 2, and keep is one slot */
    victim->h = h;
    victim->fails = 0;
    victim->start_ms = now;
    return victim;
}

/*
 * Reserves one attempt against both counts, as if it would fail: so two
 * attempts at once cannot both slip under the limit.  ERR_AGAIN with the
 * wait when either count is full; nothing is reserved then.
 */
static int limit_reserve(struct gw_accounts *a, uint64_t acct, uint64_t addr,
                         int64_t now, int64_t *retry_after_ms)
{
    struct signin_slot *s1, *s2;
    int64_t wait = 0;

    pthread_mutex_lock(&a->limit_lock);
    s1 = limit_slot(a, acct, now, NULL);
    s2 = limit_slot(a, addr, now, s1);
    if (s1->fails >= a->cfg.account_fails)
        wait = s1->start_ms + a->cfg.fail_window_ms - now;
    if (s2->fails >= a->cfg.address_fails &&
        s2->start_ms + a->cfg.fail_window_ms - now > wait)
        wait = s2->start_ms + a->cfg.fail_window_ms - now;
    if (wait <= 0) {
        struct signin_slot *s[2] = {s1, s2};

        for (int i = 0; i < 2; i++)
            if (s[i]->fails++ == 0)
                s[i]->start_ms = now;
    }
    pthread_mutex_unlock(&a->limit_lock);
    if (wait > 0) {
        *retry_after_ms = wait;
        return ERR_AGAIN;
    }
    return ERR_OK;
}

/*
 * Gives back a reserved attempt that did not fail on its credentials: a
 * success (which also starts the account afresh) or a database error,
 * which must not lock anybody out.
 */
static void limit_release(struct gw_accounts *a, uint64_t acct, uint64_t addr,
                          int64_t now, bool success)
{
    struct signin_slot *s;

    pthread_mutex_lock(&a->limit_lock);
    s = limit_slot(a, acct, now, NULL);
    if (success)
        s->fails = 0;
    else if (s->fails > 0)
        s->fails--;
    s = limit_slot(a, addr, now, s);
    if (s->fails > 0)
        s->fails--;
    pthread_mutex_unlock(&a->limit_lock);
}

/* --- the in-memory API key table ------------------------------------ */

static struct key_slot *key_lookup(struct gw_accounts *a,
                                   const unsigned char d[SHA256_DIGEST_LENGTH])
{
    uint64_t h;
    size_t at;

    memcpy(&h, d, sizeof(h));
    at = (size_t)(h % KEY_SLOTS);
    /* Never more than half full, so a free slot ends every run. */
    for (;;) {
        struct key_slot *k = &a->keys[at];

        if (!k->used || memcmp(k->digest, d, SHA256_DIGEST_LENGTH) == 0)
            return k;
        at = (at + 1) % KEY_SLOTS;
    }
}

/* Adds a key; write-locked by the caller, room checked by the caller. */
static void key_add(struct gw_accounts *a,
                    const unsigned char d[SHA256_DIGEST_LENGTH], int64_t id,
                    unsigned scopes)
{
    struct key_slot *k = key_lookup(a, d);

    assert(a->nkeys < GW_API_KEYS_MAX);
    if (!k->used)
        a->nkeys++;
    memcpy(k->digest, d, SHA256_DIGEST_LENGTH);
    k->id = id;
    k->scopes = scopes;
    k->used = true;
}

bool gw_accounts_key_find(struct gw_accounts *a, const char *key, int64_t *id,
                          unsigned *scopes)
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    struct key_slot *k;
    bool found;

    if (!secret_shaped(key, GW_API_KEY_PREFIX))
        return false;
    SHA256((const unsigned char *)key, strlen(key), d);
    pthread_rwlock_rdlock(&a->keys_lock);
    k = key_lookup(a, d);
    found = k->used && !k->revoked;
    if (found) {
        *id = k->id;
        *scopes = k->scopes;
    }
    pthread_rwlock_unlock(&a->keys_lock);
    return found;
}

/* --- write jobs ------------------------------------------------------ */

#define SQL_KEYS_LOAD                                                          \
    "SELECT id, digest, scopes FROM api_keys WHERE revoked_at IS NULL"

static int keys_load_apply(struct store_conn *c, void *arg)
{
    struct gw_accounts *a = arg;
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_KEYS_LOAD, &st);

    if (rc != ERR_OK)
        return rc;
    while ((rc = store_step(st)) == STORE_ROW) {
        unsigned char d[SHA256_DIGEST_LENGTH];
        size_t n = 0;
        const char *hex = store_col_text(st, 1);

        if (a->nkeys >= GW_API_KEYS_MAX) {
            rc = ERR_FULL;
            break;
        }
        if (sodium_hex2bin(d, sizeof(d), hex, strlen(hex), NULL, &n, NULL) !=
                0 ||
            n != sizeof(d)) {
            rc = ERR_CORRUPT;
            break;
        }
        key_add(a, d, store_col_int(st, 0), (unsigned)store_col_int(st, 2));
    }
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

struct signup_job {
    struct gw_accounts *a;
    const char *email, *name, *hash;
    enum gw_role role;
    int64_t id;
};

#define SQL_SIGNUP                                                             \
    "INSERT INTO accounts (email, name, role, password_hash, created_at) "     \
    "VALUES (?, ?, ?, ?, ?)"

static int signup_apply(struct store_conn *c, void *arg)
{
    struct signup_job *j = arg;
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_SIGNUP, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, j->email);
    store_bind_text(st, 2, j->name);
    store_bind_text(st, 3, gw_role_name(j->role));
    store_bind_text(st, 4, j->hash);
    store_bind_int(st, 5, clock_wall_ms(j->a->cfg.clock));
    rc = store_step(st);
    store_reset(st);
    if (rc < 0)
        return rc;
    j->id = store_last_insert_id(c);
    return ERR_OK;
}

struct find_job {
    const char *email;
    int64_t id;
    enum gw_role role;
    char hash[crypto_pwhash_STRBYTES];
};

#define SQL_FIND "SELECT id, role, password_hash FROM accounts WHERE email = ?"

static int find_apply(struct store_conn *c, void *arg)
{
    struct find_job *j = arg;
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_FIND, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, j->email);
    rc = store_step(st);
    if (rc == STORE_ROW) {
        const char *h = store_col_text(st, 2);

        j->id = store_col_int(st, 0);
        if (!gw_role_parse(store_col_text(st, 1), &j->role) ||
            strlen(h) >= sizeof(j->hash))
            rc = ERR_CORRUPT;
        else {
            memcpy(j->hash, h, strlen(h) + 1);
            rc = ERR_OK;
        }
    } else if (rc == ERR_OK) {
        rc = ERR_NOTFOUND;
    }
    store_reset(st);
    return rc;
}

struct issue_job {
    struct gw_accounts *a;
    char digest[DIGEST_HEX + 1];
    char family[DIGEST_HEX + 1];
    int64_t account_id;
    int64_t now, expires, family_expires;
};

#define SQL_ISSUE                                                              \
    "INSERT INTO refresh_tokens (digest, family, account_id, issued_at, "      \
    "expires_at, family_expires_at) VALUES (?, ?, ?, ?, ?, ?)"

static int issue(struct store_conn *c, const struct issue_job *j)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_ISSUE, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, j->digest);
    store_bind_text(st, 2, j->family);
    store_bind_int(st, 3, j->account_id);
    store_bind_int(st, 4, j->now);
    store_bind_int(st, 5, j->expires);
    store_bind_int(st, 6, j->family_expires);
    rc = store_step(st);
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

static int issue_apply(struct store_conn *c, void *arg)
{
    return issue(c, arg);
}

/* Fills a session's refresh token and its job row for a new token. */
static int session_token(struct gw_accounts *a, struct gw_session *s,
                         struct issue_job *j)
{
    int rc = secret_new(GW_REFRESH_PREFIX, s->refresh);

    if (rc != ERR_OK)
        return rc;
    digest_hex(s->refresh, j->digest);
    j->a = a;
    j->account_id = s->account_id;
    j->expires = j->now + a->cfg.refresh_ttl_ms;
    if (j->expires > j->family_expires)
        j->expires = j->family_expires;
    s->refresh_expires_ms = j->expires;
    return ERR_OK;
}

enum refresh_outcome { REFRESH_OK, REFRESH_DENIED, REFRESH_REUSED };

struct refresh_job {
    struct issue_job next; /* the new token, its family filled in here */
    const char *old_digest;
    enum refresh_outcome outcome;
    enum gw_role role;
};

#define SQL_REFRESH_GET                                                        \
    "SELECT r.family, r.account_id, r.expires_at, r.family_expires_at, "       \
    "r.used_at IS NOT NULL, r.revoked_at IS NOT NULL, a.role "                 \
    "FROM refresh_tokens r JOIN accounts a ON a.id = r.account_id "            \
    "WHERE r.digest = ?"
#define SQL_REFRESH_USE                                                        \
    "UPDATE refresh_tokens SET used_at = ? WHERE digest = ? AND used_at IS "   \
    "NULL"
#define SQL_FAMILY_REVOKE                                                      \
    "UPDATE refresh_tokens SET revoked_at = ? "                                \
    "WHERE family = ? AND revoked_at IS NULL"

static int family_revoke(struct store_conn *c, const char *family, int64_t now)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_FAMILY_REVOKE, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_int(st, 1, now);
    store_bind_text(st, 2, family);
    rc = store_step(st);
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

static int refresh_apply(struct store_conn *c, void *arg)
{
    struct refresh_job *j = arg;
    struct store_stmt *st;
    bool used, revoked;
    int rc = store_prepare(c, SQL_REFRESH_GET, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, j->old_digest);
    rc = store_step(st);
    if (rc != STORE_ROW) {
        store_reset(st);
        j->outcome = REFRESH_DENIED;
        return rc < 0 ? rc : ERR_OK;
    }
    snprintf(j->next.family, sizeof(j->next.family), "%s",
             store_col_text(st, 0));
    j->next.account_id = store_col_int(st, 1);
    j->next.family_expires = store_col_int(st, 3);
    used = store_col_int(st, 4) != 0;
    revoked = store_col_int(st, 5) != 0;
    if (!gw_role_parse(store_col_text(st, 6), &j->role))
        rc = ERR_CORRUPT;
    else if (revoked || j->next.now >= store_col_int(st, 2))
        j->outcome = REFRESH_DENIED;
    else if (used)
        j->outcome = REFRESH_REUSED;
    else
        j->outcome = REFRESH_OK;
    store_reset(st);
    if (rc < 0)
        return rc;

    if (j->outcome == REFRESH_REUSED)
        return family_revoke(c, j->next.family, j->next.now);
    if (j->outcome != REFRESH_OK)
        return ERR_OK;

    if ((rc = store_prepare(c, SQL_REFRESH_USE, &st)) != ERR_OK)
        return rc;
    store_bind_int(st, 1, j->next.now);
    store_bind_text(st, 2, j->old_digest);
    rc = store_step(st);
    store_reset(st);
    if (rc < 0)
        return rc;
    /* The writer is the only one, so nobody used it since the read. */
    assert(store_changes(c) == 1);
    if (j->next.expires > j->next.family_expires)
        j->next.expires = j->next.family_expires;
    return issue(c, &j->next);
}

struct revoke_job {
    const char *digest;
    int64_t now;
    bool found;
};

#define SQL_FAMILY_OF "SELECT family FROM refresh_tokens WHERE digest = ?"

static int revoke_apply(struct store_conn *c, void *arg)
{
    struct revoke_job *j = arg;
    char family[DIGEST_HEX + 1];
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_FAMILY_OF, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, j->digest);
    rc = store_step(st);
    j->found = rc == STORE_ROW;
    if (j->found)
        snprintf(family, sizeof(family), "%s", store_col_text(st, 0));
    store_reset(st);
    if (rc < 0)
        return rc;
    return j->found ? family_revoke(c, family, j->now) : ERR_OK;
}

struct key_job {
    const char *name, *digest;
    unsigned scopes;
    int64_t now, id;
};

#define SQL_KEY_ADD                                                            \
    "INSERT INTO api_keys (name, digest, scopes, created_at) VALUES (?, ?, "   \
    "?, ?)"

static int key_apply(struct store_conn *c, void *arg)
{
    struct key_job *j = arg;
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_KEY_ADD, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_text(st, 1, j->name);
    store_bind_text(st, 2, j->digest);
    store_bind_int(st, 3, j->scopes);
    store_bind_int(st, 4, j->now);
    rc = store_step(st);
    store_reset(st);
    if (rc < 0)
        return rc;
    j->id = store_last_insert_id(c);
    return ERR_OK;
}

/* --- the operations -------------------------------------------------- */

int gw_accounts_open(const struct store_config *sc,
                     const struct gw_accounts_config *cfg,
                     struct gw_accounts **out)
{
    struct gw_accounts *a;
    int rc;

    if (!gw_accounts_hash_params_ok(cfg->opslimit, cfg->memlimit) ||
        cfg->account_fails < 1 || cfg->address_fails < 1 ||
        cfg->fail_window_ms < 1 || cfg->refresh_ttl_ms < 1 ||
        cfg->family_max_ms < cfg->refresh_ttl_ms)
        return ERR_INVALID;
    if (sodium_init() < 0)
        return ERR_SYS;
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return ERR_NOMEM;
    a->cfg = *cfg;
    a->track = cfg->track_max > 0 ? cfg->track_max : GW_SIGNIN_TRACK_MAX;
    if (a->track < 2) /* an account and an address need a slot each */
        a->track = 2;
    a->slots = calloc(a->track, sizeof(*a->slots));
    a->keys = calloc(KEY_SLOTS, sizeof(*a->keys));
    if (a->slots == NULL || a->keys == NULL) {
        rc = ERR_NOMEM;
        goto out_free;
    }
    pthread_mutex_init(&a->limit_lock, NULL);
    pthread_mutex_init(&a->create_lock, NULL);
    pthread_rwlock_init(&a->keys_lock, NULL);
    crypto_shorthash_keygen(a->limit_key);

    /* A real hash of a random password: a sign-in for an unknown email
     * verifies against it and takes as long as one for a known email. */
    {
        unsigned char pw[16];

        randombytes_buf(pw, sizeof(pw));
        if (crypto_pwhash_str(a->dummy_hash, (const char *)pw, sizeof(pw),
                              cfg->opslimit, cfg->memlimit) != 0) {
            rc = ERR_NOMEM;
            goto out_locks;
        }
    }

    rc = store_open(sc, migrations, sizeof(migrations) / sizeof(migrations[0]),
                    &a->store);
    if (rc != ERR_OK)
        goto out_locks;
    rc = store_write_sync(a->store, keys_load_apply, a);
    if (rc != ERR_OK) {
        log_error("accounts", "api_keys_load_failed error=%s", err_name(rc));
        goto out_close_store;
    }
    *out = a;
    return ERR_OK;

out_close_store:
    store_close(a->store);
out_locks:
    pthread_rwlock_destroy(&a->keys_lock);
    pthread_mutex_destroy(&a->create_lock);
    pthread_mutex_destroy(&a->limit_lock);
out_free:
    free(a->keys);
    free(a->slots);
    free(a);
    return rc;
}

void gw_accounts_close(struct gw_accounts *a)
{
    if (a == NULL)
        return;
    store_close(a->store);
    pthread_rwlock_destroy(&a->keys_lock);
    pthread_mutex_destroy(&a->create_lock);
    pthread_mutex_destroy(&a->limit_lock);
    free(a->keys);
    free(a->slots);
    free(a);
}

int gw_accounts_signup(struct gw_accounts *a, const char *email,
                       const char *password, const char *name,
                       enum gw_role role, int64_t *id)
{
    char norm[GW_EMAIL_MAX + 1], hash[crypto_pwhash_STRBYTES];
    size_t pw_len = strnlen(password, GW_PASSWORD_MAX + 1);
    size_t name_len = strnlen(name, GW_NAME_MAX + 1);
    struct signup_job j = {.a = a, .email = norm, .name = name, .role = role};
    int rc;

    if (!gw_email_normalize(email, norm) || pw_len < GW_PASSWORD_MIN ||
        pw_len > GW_PASSWORD_MAX || name_len < 1 || name_len > GW_NAME_MAX)
        return ERR_INVALID;
    if (crypto_pwhash_str(hash, password, pw_len, a->cfg.opslimit,
                          a->cfg.memlimit) != 0) {
        log_warn("accounts", "password_hash_failed memlimit=%zu",
                 a->cfg.memlimit);
        return ERR_NOMEM;
    }
    j.hash = hash;
    rc = store_write_sync(a->store, signup_apply, &j);
    sodium_memzero(hash, sizeof(hash));
    if (rc == ERR_OK) {
        *id = j.id;
        log_debug("accounts", "account_created id=%" PRId64 " role=%s", j.id,
                  gw_role_name(role));
    }
    return rc;
}

static void session_of(struct gw_session *s, int64_t account_id,
                       enum gw_role role)
{
    memset(s, 0, sizeof(*s));
    s->account_id = account_id;
    s->role = role;
    gw_accounts_customer_id(account_id, s->customer);
}

int gw_accounts_signin(struct gw_accounts *a, const char *email,
                       const char *password, const char *address,
                       struct gw_session *out, int64_t *retry_after_ms)
{
    char norm[GW_EMAIL_MAX + 1];
    struct find_job f = {.email = norm};
    struct issue_job j = {0};
    int64_t now = clock_wall_ms(a->cfg.clock);
    size_t pw_len = strnlen(password, GW_PASSWORD_MAX + 1);
    uint64_t hacct, haddr;
    bool known;
    int rc;

    if (!gw_email_normalize(email, norm))
        snprintf(norm, sizeof(norm), "%.*s", GW_EMAIL_MAX, email);
    hacct = limit_hash(a, 'a', norm);
    haddr = limit_hash(a, 'i', address);
    rc = limit_reserve(a, hacct, haddr, now, retry_after_ms);
    if (rc != ERR_OK)
        return rc;

    rc = store_write_sync(a->store, find_apply, &f);
    if (rc != ERR_OK && rc != ERR_NOTFOUND) {
        limit_release(a, hacct, haddr, now, false);
        return rc;
    }
    known = rc == ERR_OK;
    /* The same work whether the email is known or not. */
    if (crypto_pwhash_str_verify(known ? f.hash : a->dummy_hash, password,
                                 pw_len) != 0 ||
        !known || pw_len > GW_PASSWORD_MAX)
        return ERR_DENIED;

    limit_release(a, hacct, haddr, now, true);
    session_of(out, f.id, f.role);
    j.now = now;
    j.family_expires = now + a->cfg.family_max_ms;
    if ((rc = session_token(a, out, &j)) != ERR_OK)
        return rc;
    memcpy(j.family, j.digest, sizeof(j.family));
    return store_write_sync(a->store, issue_apply, &j);
}

int gw_accounts_refresh(struct gw_accounts *a, const char *refresh,
                        struct gw_session *out, bool *reused)
{
    char old[DIGEST_HEX + 1], fresh[GW_SECRET_TEXT_MAX + 1];
    struct refresh_job j = {.old_digest = old};
    int rc;

    if (reused != NULL)
        *reused = false;
    if (!secret_shaped(refresh, GW_REFRESH_PREFIX))
        return ERR_DENIED;
    digest_hex(refresh, old);
    if ((rc = secret_new(GW_REFRESH_PREFIX, fresh)) != ERR_OK)
        return rc;
    digest_hex(fresh, j.next.digest);
    j.next.now = clock_wall_ms(a->cfg.clock);
    j.next.expires = j.next.now + a->cfg.refresh_ttl_ms;

    rc = store_write_sync(a->store, refresh_apply, &j);
    if (rc != ERR_OK)
        return rc;
    if (j.outcome == REFRESH_REUSED) {
        log_warn("accounts",
                 "refresh_token_reused account=%" PRId64 " family_revoked=1",
                 j.next.account_id);
        if (reused != NULL)
            *reused = true;
    }
    if (j.outcome != REFRESH_OK)
        return ERR_DENIED;
    session_of(out, j.next.account_id, j.role);
    memcpy(out->refresh, fresh, sizeof(out->refresh));
    out->refresh_expires_ms = j.next.expires;
    return ERR_OK;
}

int gw_accounts_revoke(struct gw_accounts *a, const char *refresh)
{
    char d[DIGEST_HEX + 1];
    struct revoke_job j = {.digest = d};
    int rc;

    if (!secret_shaped(refresh, GW_REFRESH_PREFIX))
        return ERR_NOTFOUND;
    digest_hex(refresh, d);
    j.now = clock_wall_ms(a->cfg.clock);
    rc = store_write_sync(a->store, revoke_apply, &j);
    if (rc != ERR_OK)
        return rc;
    return j.found ? ERR_OK : ERR_NOTFOUND;
}

int gw_accounts_key_create(struct gw_accounts *a, const char *name,
                           unsigned scopes, char key[GW_SECRET_TEXT_MAX + 1],
                           int64_t *id)
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    char hex[DIGEST_HEX + 1];
    struct key_job j = {.name = name, .digest = hex, .scopes = scopes};
    size_t n = strnlen(name, GW_KEY_NAME_MAX + 1);
    int rc;

    if (scopes == 0 || (scopes & ~GW_SCOPE_ALL) != 0 || n < 1 ||
        n > GW_KEY_NAME_MAX)
        return ERR_INVALID;
    if ((rc = secret_new(GW_API_KEY_PREFIX, key)) != ERR_OK)
        return rc;
    SHA256((const unsigned char *)key, strlen(key), d);
    sodium_bin2hex(hex, sizeof(hex), d, sizeof(d));
    j.now = clock_wall_ms(a->cfg.clock);

    /* Creations one at a time, so the room checked is the room used;
     * finds take only the read lock and never wait for the database. */
    pthread_mutex_lock(&a->create_lock);
    pthread_rwlock_rdlock(&a->keys_lock);
    rc = a->nkeys >= GW_API_KEYS_MAX ? ERR_FULL : ERR_OK;
    pthread_rwlock_unlock(&a->keys_lock);
    if (rc == ERR_OK)
        rc = store_write_sync(a->store, key_apply, &j);
    if (rc == ERR_OK) {
        pthread_rwlock_wrlock(&a->keys_lock);
        key_add(a, d, j.id, scopes);
        pthread_rwlock_unlock(&a->keys_lock);
    }
    pthread_mutex_unlock(&a->create_lock);
    if (rc != ERR_OK) {
        sodium_memzero(key, GW_SECRET_TEXT_MAX + 1);
        return rc;
    }
    *id = j.id;
    log_info("accounts", "api_key_created id=%" PRId64 " scopes=%u", j.id,
             scopes);
    return ERR_OK;
}

struct revoke_key_job {
    int64_t id, now;
    bool found;
};

#define SQL_KEY_REVOKE                                                         \
    "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"

static int key_revoke_apply(struct store_conn *c, void *arg)
{
    struct revoke_key_job *j = arg;
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_KEY_REVOKE, &st);

    if (rc != ERR_OK)
        return rc;
    store_bind_int(st, 1, j->now);
    store_bind_int(st, 2, j->id);
    rc = store_step(st);
    store_reset(st);
    if (rc < 0)
        return rc;
    j->found = store_changes(c) == 1;
    return ERR_OK;
}

int gw_accounts_key_revoke(struct gw_accounts *a, int64_t id)
{
    struct revoke_key_job j = {.id = id, .now = clock_wall_ms(a->cfg.clock)};
    int rc;

    /* The database first: a key revoked in memory only would come back
     * at the next start. */
    pthread_mutex_lock(&a->create_lock);
    rc = store_write_sync(a->store, key_revoke_apply, &j);
    if (rc == ERR_OK && j.found) {
        pthread_rwlock_wrlock(&a->keys_lock);
        for (size_t i = 0; i < KEY_SLOTS; i++)
            if (a->keys[i].used && a->keys[i].id == id)
                a->keys[i].revoked = true;
        pthread_rwlock_unlock(&a->keys_lock);
    }
    pthread_mutex_unlock(&a->create_lock);
    if (rc != ERR_OK)
        return rc;
    if (!j.found)
        return ERR_NOTFOUND;
    log_info("accounts", "api_key_revoked id=%" PRId64, id);
    return ERR_OK;
}

#define STR_(x) #x
#define STR(x)  STR_(x)
#define SQL_SWEEP                                                              \
    "DELETE FROM refresh_tokens WHERE rowid IN (SELECT rowid FROM "            \
    "refresh_tokens WHERE expires_at < ?1 LIMIT " STR(GW_SWEEP_BATCH) ")"

int gw_accounts_sweep(struct gw_accounts *a)
{
    return store_submit_exec(a->store, SQL_SWEEP,
                             clock_wall_ms(a->cfg.clock) - SWEEP_AFTER_MS);
}
