/*
 * test_gw_accounts.c - accounts on a real SQLite database in a temporary
 * directory: sign-up and sign-in (Argon2id at libsodium's minimum cost, to
 * keep the run short), refresh token rotation and the revocation of a
 * family whose used token comes back, revocation, expiry against a manual
 * clock, the sign-in limits per account and per address with their exact
 * figures (also with eight threads trying at once), and API keys with
 * scopes, kept across a reopen.
 */
#include "harness.h"

#include <dirent.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "gateway/accounts.h"
#include "store/store.h"

#define WINDOW_MS (15 * 60 * 1000LL)
#define TTL_MS    (60 * 1000LL)

struct fixture {
    char dir[64];
    char path[96];
    struct clock_manual clock;
    struct store_config sc;
    struct gw_accounts_config cfg;
    struct gw_accounts *a;
};

static void fx_open(struct fixture *f)
{
    CHECK_INT(gw_accounts_open(&f->sc, &f->cfg, &f->a), ERR_OK);
}

static void fx_init(struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/marquee-accounts-XXXXXX");
    CHECK(mkdtemp(f->dir) != NULL);
    snprintf(f->path, sizeof(f->path), "%s/accounts.db", f->dir);
    clock_manual_init(&f->clock, 1800000000000LL);
    f->sc = (struct store_config){.backend = "sqlite",
                                  .path = f->path,
                                  .busy_timeout_ms = 5000,
                                  .synchronous = "normal"};
    f->cfg = (struct gw_accounts_config){
        .clock = &f->clock.base,
        .opslimit = crypto_pwhash_OPSLIMIT_MIN,
        .memlimit = crypto_pwhash_MEMLIMIT_MIN,
        .refresh_ttl_ms = TTL_MS,
        .family_max_ms = 5 * TTL_MS,
        .account_fails = 5,
        .address_fails = 20,
        .fail_window_ms = WINDOW_MS,
    };
    fx_open(f);
}

static void fx_done(struct fixture *f)
{
    DIR *d;
    struct dirent *e;

    gw_accounts_close(f->a);
    d = opendir(f->dir);
    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            CHECK_INT(unlinkat(dirfd(d), e->d_name, 0), 0);
    closedir(d);
    CHECK_INT(rmdir(f->dir), 0);
}

/* One text column of the first row of sql, read with plain SQLite. */
static void db_text(struct fixture *f, const char *sql, char *out, size_t cap)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    CHECK_INT(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL),
              SQLITE_OK);
    CHECK_INT(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static int64_t signup(struct fixture *f, const char *email)
{
    int64_t id = 0;

    CHECK_INT(gw_accounts_signup(f->a, email, "correct horse", "Ann",
                                 GW_ROLE_CUSTOMER, &id),
              ERR_OK);
    return id;
}

static int signin(struct fixture *f, const char *email, const char *pw,
                  const char *addr, struct gw_session *s, int64_t *wait)
{
    *wait = 0;
    return gw_accounts_signin(f->a, email, pw, addr, s, wait);
}

TEST(signup_and_signin)
{
    struct fixture f;
    struct gw_session s;
    char text[256];
    int64_t id, id2 = 0, wait;

    fx_init(&f);
    id = signup(&f, "Ann@Example.com");
    CHECK(id > 0);
    CHECK_INT(gw_accounts_signup(f.a, "ann@example.COM", "another pw", "A",
                                 GW_ROLE_CUSTOMER, &id2),
              ERR_CONFLICT);
    CHECK_INT(gw_accounts_signup(f.a, "bob@example.com", "short", "Bob",
                                 GW_ROLE_CUSTOMER, &id2),
              ERR_INVALID);
    CHECK_INT(gw_accounts_signup(f.a, "bob.example.com", "long enough", "Bob",
                                 GW_ROLE_CUSTOMER, &id2),
              ERR_INVALID);

    CHECK_INT(
        signin(&f, "ANN@example.com", "correct horse", "10.0.0.1", &s, &wait),
        ERR_OK);
    CHECK_INT(s.account_id, id);
    CHECK_INT(s.role, GW_ROLE_CUSTOMER);
    snprintf(text, sizeof(text), "cust-%lld", (long long)id);
    CHECK_STR(s.customer, text);
    CHECK(strncmp(s.refresh, GW_REFRESH_PREFIX, 4) == 0);
    CHECK_INT(strlen(s.refresh), GW_SECRET_TEXT_MAX);
    CHECK_INT(s.refresh_expires_ms, clock_wall_ms(&f.clock.base) + TTL_MS);

    CHECK_INT(
        signin(&f, "ann@example.com", "wrong horse", "10.0.0.1", &s, &wait),
        ERR_DENIED);
    CHECK_INT(signin(&f, "nobody@example.com", "correct horse", "10.0.0.1", &s,
                     &wait),
              ERR_DENIED);

    /* Stored: an Argon2id string, and a digest, never the token. */
    db_text(&f, "SELECT password_hash FROM accounts", text, sizeof(text));
    CHECK(strncmp(text, "$argon2id$", 10) == 0);
    CHECK(strstr(text, "correct horse") == NULL);
    db_text(&f, "SELECT digest FROM refresh_tokens", text, sizeof(text));
    CHECK_INT(strlen(text), 64);
    CHECK(strstr(text, s.refresh + 4) == NULL);
    fx_done(&f);
}

TEST(refresh_rotates_and_reuse_revokes_the_family)
{
    struct fixture f;
    struct gw_session s1, s2, s3, other, x;
    bool reused = false;
    int64_t wait;

    fx_init(&f);
    signup(&f, "ann@example.com");
    CHECK_INT(signin(&f, "ann@example.com", "correct horse", "a", &s1, &wait),
              ERR_OK);
    CHECK_INT(
        signin(&f, "ann@example.com", "correct horse", "a", &other, &wait),
        ERR_OK);

    CHECK_INT(gw_accounts_refresh(f.a, s1.refresh, &s2, &reused), ERR_OK);
    CHECK(!reused);
    CHECK(strcmp(s1.refresh, s2.refresh) != 0);
    CHECK_STR(s2.customer, s1.customer);
    CHECK_INT(gw_accounts_refresh(f.a, s2.refresh, &s3, &reused), ERR_OK);

    /* The first token again: someone else has it.  The family dies. */
    CHECK_INT(gw_accounts_refresh(f.a, s1.refresh, &x, &reused), ERR_DENIED);
    CHECK(reused);
    CHECK_INT(gw_accounts_refresh(f.a, s3.refresh, &x, &reused), ERR_DENIED);
    CHECK(!reused);
    /* The other sign-in's family is untouched. */
    CHECK_INT(gw_accounts_refresh(f.a, other.refresh, &x, &reused), ERR_OK);

    CHECK_INT(gw_accounts_refresh(f.a, "rt1_nonsense", &x, NULL), ERR_DENIED);
    fx_done(&f);
}

TEST(refresh_expires_and_family_has_a_maximum)
{
    struct fixture f;
    struct gw_session s, n;
    int64_t wait;

    fx_init(&f);
    signup(&f, "ann@example.com");
    CHECK_INT(signin(&f, "ann@example.com", "correct horse", "a", &s, &wait),
              ERR_OK);
    clock_manual_advance(&f.clock, TTL_MS - 1);
    CHECK_INT(gw_accounts_refresh(f.a, s.refresh, &n, NULL), ERR_OK);
    clock_manual_advance(&f.clock, TTL_MS);
    CHECK_INT(gw_accounts_refresh(f.a, n.refresh, &s, NULL), ERR_DENIED);

    /* Refreshed just in time, a family still ends at 5 x TTL. */
    CHECK_INT(signin(&f, "ann@example.com", "correct horse", "a", &s, &wait),
              ERR_OK);
    for (int i = 0; i < 4; i++) {
        clock_manual_advance(&f.clock, TTL_MS - 1);
        CHECK_INT(gw_accounts_refresh(f.a, s.refresh, &n, NULL), ERR_OK);
        s = n;
    }
    /* 4 x (TTL - 1) in: what is left of the family is TTL + 4 ms. */
    CHECK_INT(s.refresh_expires_ms, clock_wall_ms(&f.clock.base) + TTL_MS);
    clock_manual_advance(&f.clock, TTL_MS - 1);
    CHECK_INT(gw_accounts_refresh(f.a, s.refresh, &n, NULL), ERR_OK);
    CHECK_INT(n.refresh_expires_ms, clock_wall_ms(&f.clock.base) + 5);
    clock_manual_advance(&f.clock, 5);
    CHECK_INT(gw_accounts_refresh(f.a, n.refresh, &s, NULL), ERR_DENIED);
    fx_done(&f);
}

TEST(revoke_ends_the_family)
{
    struct fixture f;
    struct gw_session s, n, x;
    int64_t wait;

    fx_init(&f);
    signup(&f, "ann@example.com");
    CHECK_INT(signin(&f, "ann@example.com", "correct horse", "a", &s, &wait),
              ERR_OK);
    CHECK_INT(gw_accounts_refresh(f.a, s.refresh, &n, NULL), ERR_OK);
    /* Revoking through the old (used) token still ends the family. */
    CHECK_INT(gw_accounts_revoke(f.a, s.refresh), ERR_OK);
    CHECK_INT(gw_accounts_refresh(f.a, n.refresh, &x, NULL), ERR_DENIED);
    CHECK_INT(gw_accounts_revoke(f.a, n.refresh), ERR_OK);
    CHECK_INT(gw_accounts_revoke(f.a, "rt1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                                      "AAAAAAAA"),
              ERR_NOTFOUND);
    CHECK_INT(gw_accounts_revoke(f.a, "garbage"), ERR_NOTFOUND);
    fx_done(&f);
}

TEST(signin_limited_per_account)
{
    struct fixture f;
    struct gw_session s;
    int64_t wait;

    fx_init(&f);
    signup(&f, "ann@example.com");
    /* Four failures, then a success: the account's count starts over. */
    for (int i = 0; i < 4; i++)
        CHECK_INT(signin(&f, "ann@example.com", "bad pw 123", "a", &s, &wait),
                  ERR_DENIED);
    CHECK_INT(signin(&f, "ann@example.com", "correct horse", "a", &s, &wait),
              ERR_OK);

    /* Five failures in the window, from five addresses, 1 s apart. */
    for (int i = 0; i < 5; i++) {
        char addr[32];

        snprintf(addr, sizeof(addr), "10.0.0.%d", i);
        CHECK_INT(signin(&f, "ann@example.com", "bad pw 123", addr, &s, &wait),
                  ERR_DENIED);
        clock_manual_advance(&f.clock, 1000);
    }
    /* The sixth try is refused, even with the right password, until the
     * window that opened at the first failure (5 s ago) ends. */
    CHECK_INT(
        signin(&f, "ANN@example.com", "correct horse", "10.9.9.9", &s, &wait),
        ERR_AGAIN);
    CHECK_INT(wait, WINDOW_MS - 5000);
    clock_manual_advance(&f.clock, WINDOW_MS - 5000 - 1);
    CHECK_INT(signin(&f, "ann@example.com", "correct horse", "b", &s, &wait),
              ERR_AGAIN);
    CHECK_INT(wait, 1);
    clock_manual_advance(&f.clock, 1);
    CHECK_INT(signin(&f, "ann@example.com", "correct horse", "b", &s, &wait),
              ERR_OK);

    /* An email with no account is limited the same way. */
    for (int i = 0; i < 5; i++)
        CHECK_INT(signin(&f, "ghost@example.com", "x1234567", "c", &s, &wait),
                  ERR_DENIED);
    CHECK_INT(signin(&f, "ghost@example.com", "x1234567", "c", &s, &wait),
              ERR_AGAIN);
    CHECK_INT(wait, WINDOW_MS);
    fx_done(&f);
}

TEST(signin_limited_per_address)
{
    struct fixture f;
    struct gw_session s;
    int64_t wait;

    fx_init(&f);
    signup(&f, "ann@example.com");
    /* Twenty failures from one address over twenty emails. */
    for (int i = 0; i < 20; i++) {
        char email[64];

        snprintf(email, sizeof(email), "user%d@example.com", i);
        CHECK_INT(signin(&f, email, "guess 1234", "192.0.2.7", &s, &wait),
                  ERR_DENIED);
    }
    clock_manual_advance(&f.clock, 2000);
    CHECK_INT(
        signin(&f, "ann@example.com", "correct horse", "192.0.2.7", &s, &wait),
        ERR_AGAIN);
    CHECK_INT(wait, WINDOW_MS - 2000);
    /* Another address is not affected, nor is the account. */
    CHECK_INT(
        signin(&f, "ann@example.com", "correct horse", "192.0.2.8", &s, &wait),
        ERR_OK);
    clock_manual_advance(&f.clock, WINDOW_MS - 2000);
    CHECK_INT(
        signin(&f, "ann@example.com", "correct horse", "192.0.2.7", &s, &wait),
        ERR_OK);
    fx_done(&f);
}

TEST(flood_of_addresses_cannot_free_a_limited_account)
{
    struct fixture f;
    struct gw_session s;
    int64_t wait;

    /* A table of 16 slots, so that a flood overflows it many times. */
    fx_init(&f);
    gw_accounts_close(f.a);
    f.cfg.track_max = 16;
    fx_open(&f);
    signup(&f, "ann@example.com");
    for (int i = 0; i < 5; i++)
        CHECK_INT(signin(&f, "ann@example.com", "bad pw 123", "a", &s, &wait),
                  ERR_DENIED);
    /* 200 one-off failures, each of a new email from a new address. */
    for (int i = 0; i < 200; i++) {
        char email[64], addr[32];

        snprintf(email, sizeof(email), "bot%d@example.com", i);
        snprintf(addr, sizeof(addr), "203.0.113.%d", i);
        CHECK_INT(signin(&f, email, "guess 1234", addr, &s, &wait), ERR_DENIED);
    }
    CHECK_INT(signin(&f, "ann@example.com", "correct horse", "b", &s, &wait),
              ERR_AGAIN);
    fx_done(&f);
}

/*
 * With two slots, the account's and the address's keys probe the same
 * run: the address must never take the slot the account has just been
 * given, or the account's failures go uncounted.  Where each key lands
 * depends on the table's random hash key, so the case is opened afresh
 * many times (a table that aliased them would pass each time with
 * probability 1/2).
 */
TEST(account_and_address_never_share_a_slot)
{
    for (int round = 0; round < 24; round++) {
        struct fixture f;
        struct gw_session s;
        int64_t wait;

        fx_init(&f);
        gw_accounts_close(f.a);
        f.cfg.track_max = 2;
        fx_open(&f);
        signup(&f, "ann@example.com");
        for (int i = 0; i < 5; i++)
            CHECK_INT(
                signin(&f, "ann@example.com", "bad pw 123", "a", &s, &wait),
                ERR_DENIED);
        CHECK_INT(
            signin(&f, "ann@example.com", "correct horse", "a", &s, &wait),
            ERR_AGAIN);
        fx_done(&f);
    }
}

struct racer {
    struct fixture *f;
    pthread_barrier_t *go;
    int rc;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct gw_session s;
    int64_t wait = 0;

    pthread_barrier_wait(r->go);
    r->rc = gw_accounts_signin(r->f->a, "ann@example.com", "bad pw 123",
                               "198.51.100.1", &s, &wait);
    return NULL;
}

TEST(signin_limit_holds_under_concurrency)
{
    enum { N = 8 };
    struct fixture f;
    struct racer r[N];
    pthread_t t[N];
    pthread_barrier_t go;
    int denied = 0, again = 0;

    fx_init(&f);
    signup(&f, "ann@example.com");
    pthread_barrier_init(&go, NULL, N);
    for (int i = 0; i < N; i++) {
        r[i] = (struct racer){.f = &f, .go = &go};
        CHECK_INT(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        denied += r[i].rc == ERR_DENIED;
        again += r[i].rc == ERR_AGAIN;
    }
    pthread_barrier_destroy(&go);
    /* Exactly five were checked, however the eight interleaved. */
    CHECK_INT(denied, 5);
    CHECK_INT(again, 3);
    fx_done(&f);
}

TEST(api_keys_with_scopes)
{
    struct fixture f;
    char key[GW_SECRET_TEXT_MAX + 1], key2[GW_SECRET_TEXT_MAX + 1];
    int64_t id = 0, id2 = 0, found_id = 0;
    unsigned scopes = 0;
    json_t *names;
    char saved;

    fx_init(&f);
    CHECK_INT(gw_scope_parse("holds:write"), GW_SCOPE_HOLDS_WRITE);
    CHECK_INT(gw_scope_parse("catalog:read"), GW_SCOPE_CATALOG_READ);
    CHECK_INT(gw_scope_parse("holds:read"), 0);
    CHECK_INT(gw_accounts_key_create(
                  f.a, "acme", GW_SCOPE_CATALOG_READ | GW_SCOPE_HOLDS_WRITE,
                  key, &id),
              ERR_OK);
    CHECK_INT(gw_accounts_key_create(f.a, "other", GW_SCOPE_BOOKINGS_READ, key2,
                                     &id2),
              ERR_OK);
    CHECK(strncmp(key, GW_API_KEY_PREFIX, 4) == 0);
    CHECK(id != id2);
    CHECK_INT(gw_accounts_key_create(f.a, "none", 0, key2, &id2), ERR_INVALID);
    CHECK_INT(gw_accounts_key_create(f.a, "bad", 1u << 9, key2, &id2),
              ERR_INVALID);

    CHECK(gw_accounts_key_find(f.a, key, &found_id, &scopes));
    CHECK_INT(found_id, id);
    CHECK_INT(scopes, GW_SCOPE_CATALOG_READ | GW_SCOPE_HOLDS_WRITE);
    names = gw_scopes_json(scopes);
    CHECK_INT(json_array_size(names), 2);
    CHECK_STR(json_string_value(json_array_get(names, 0)), "catalog:read");
    CHECK_STR(json_string_value(json_array_get(names, 1)), "holds:write");
    json_decref(names);

    /* A key with one character changed, or of another shape, is unknown. */
    saved = key[10];
    key[10] = saved == 'A' ? 'B' : 'A';
    CHECK(!gw_accounts_key_find(f.a, key, &found_id, &scopes));
    key[10] = saved;
    CHECK(!gw_accounts_key_find(f.a, "mqk_short", &found_id, &scopes));

    /* Reopened, the keys are found again from their digests. */
    gw_accounts_close(f.a);
    fx_open(&f);
    CHECK(gw_accounts_key_find(f.a, key, &found_id, &scopes));
    CHECK_INT(found_id, id);
    CHECK(gw_accounts_key_find(f.a, key2, &found_id, &scopes));
    CHECK_INT(scopes, GW_SCOPE_BOOKINGS_READ);

    /* Revoked: not found from then on, nor after a reopen; the other
     * key is untouched. */
    CHECK_INT(gw_accounts_key_revoke(f.a, id), ERR_OK);
    CHECK(!gw_accounts_key_find(f.a, key, &found_id, &scopes));
    CHECK(gw_accounts_key_find(f.a, key2, &found_id, &scopes));
    CHECK_INT(gw_accounts_key_revoke(f.a, id), ERR_NOTFOUND);
    CHECK_INT(gw_accounts_key_revoke(f.a, 999), ERR_NOTFOUND);
    gw_accounts_close(f.a);
    fx_open(&f);
    CHECK(!gw_accounts_key_find(f.a, key, &found_id, &scopes));
    CHECK(gw_accounts_key_find(f.a, key2, &found_id, &scopes));
    fx_done(&f);
}

TEST(email_normalization)
{
    char out[GW_EMAIL_MAX + 1];
    char longer[GW_EMAIL_MAX + 8];

    CHECK(gw_email_normalize("Ann.Lee@Example.COM", out));
    CHECK_STR(out, "ann.lee@example.com");
    CHECK(!gw_email_normalize("no-at-sign", out));
    CHECK(!gw_email_normalize("@example.com", out));
    CHECK(!gw_email_normalize("ann@", out));
    CHECK(!gw_email_normalize("a@b@c", out));
    CHECK(!gw_email_normalize("ann lee@example.com", out));
    CHECK(!gw_email_normalize("ann\x01@example.com", out));
    memset(longer, 'a', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    longer[5] = '@';
    CHECK(!gw_email_normalize(longer, out));
    longer[GW_EMAIL_MAX] = '\0';
    CHECK(gw_email_normalize(longer, out));
}

HARNESS_MAIN(T(signup_and_signin),
             T(refresh_rotates_and_reuse_revokes_the_family),
             T(refresh_expires_and_family_has_a_maximum),
             T(revoke_ends_the_family), T(signin_limited_per_account),
             T(signin_limited_per_address),
             T(signin_limit_holds_under_concurrency),
             T(flood_of_addresses_cannot_free_a_limited_account),
             T(account_and_address_never_share_a_slot), T(api_keys_with_scopes),
             T(email_normalization))
