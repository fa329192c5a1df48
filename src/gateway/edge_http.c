/*
 * edge_http.c - the HTTP side of accounts, tokens, API keys and waiting
 * rooms (edge.h), and the checks the request path calls.
 *
 * Handlers check their input on the loop thread; work that hashes a
 * password or touches the database goes to a bounded queue served by
 * gateway.auth_workers threads, and the answer comes back to the loop
 * through http_async_post.  Waiting rooms live in memory: a table of
 * GW_HOT_SALES_MAX under a read-write lock, each room with its own mutex
 * held only for the room's pure calls.
 */
#include "gateway/edge.h"

#include <assert.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/rand.h"
#include "domain/validate.h"
#include "gateway/waitroom.h"
#include "metrics/metrics.h"
#include "store/store.h"

#define BEARER         "Bearer "
#define BEARER_LEN     (sizeof(BEARER) - 1)
#define PATH_SEGS_MAX  6
#define ADDRESS_MAX    64
#define SWEEP_EVERY_MS (10 * 60 * 1000LL)
/* How often a queued visitor is told to ask again, at most. */
#define POLL_MAX_MS 5000
/* Retry-After of a full waiting room: the crowd thins slowly. */
#define WAITROOM_FULL_RETRY_S 30

const struct config_key gw_edge_config_keys[] = {GW_EDGE_CONFIG_KEYS};
const size_t gw_edge_config_nkeys =
    sizeof(gw_edge_config_keys) / sizeof(gw_edge_config_keys[0]);

struct hot_sale {
    int64_t show_id; /* 0: free */
    struct gw_waitroom *room;
    struct rand rand;
    pthread_mutex_t lock; /* the room and rand */
};

enum job_kind {
    JOB_SIGNUP,
    JOB_SIGNIN,
    JOB_REFRESH,
    JOB_SIGNOUT,
    JOB_KEY,
    JOB_KEY_REVOKE,
};

/* Counted outcomes: marquee_gateway_auth_total{event}. */
#define EDGE_EVENTS(X)                                                         \
    X(EV_SIGNUP, "signup")                                                     \
    X(EV_SIGNIN_OK, "signin_ok")                                               \
    X(EV_SIGNIN_DENIED, "signin_denied")                                       \
    X(EV_SIGNIN_LIMITED, "signin_limited")                                     \
    X(EV_REFRESH_OK, "refresh_ok")                                             \
    X(EV_REFRESH_DENIED, "refresh_denied")                                     \
    X(EV_REFRESH_REUSED, "refresh_reused")                                     \
    X(EV_QUEUE_FULL, "queue_full")                                             \
    X(EV_INVALID_TOKEN, "invalid_token")                                       \
    X(EV_INVALID_KEY, "invalid_api_key")                                       \
    X(EV_PASS_OK, "pass_ok")                                                   \
    X(EV_PASS_REFUSED, "pass_refused")                                         \
    X(EV_WAITROOM_JOIN, "waitroom_join")                                       \
    X(EV_WAITROOM_FULL, "waitroom_full")

enum edge_event {
#define EDGE_EVENT_ENUM(name, text) name,
    EDGE_EVENTS(EDGE_EVENT_ENUM)
#undef EDGE_EVENT_ENUM
        EV_COUNT
};

struct job {
    struct job *next;
    enum job_kind kind;
    struct gw_edge *e;
    struct http_async *async;

    char email[GW_EMAIL_MAX + 1];
    char password[GW_PASSWORD_MAX + 1];
    char name[GW_NAME_MAX + 1];
    char address[ADDRESS_MAX];
    char refresh[GW_SECRET_TEXT_MAX + 1];
    enum gw_role role;
    unsigned scopes;

    int rc;
    int64_t id;
    bool reused;
    int64_t retry_after_ms;
    struct gw_session session;
    char access[GW_TOKEN_MAX + 1];
    char key[GW_SECRET_TEXT_MAX + 1];
};

struct gw_edge {
    struct clock *clock;
    struct gw_accounts *accounts;
    struct gw_token_key token_key, pass_key;
    const char *admin_token; /* owned by the config */
    int64_t access_ttl_s;
    uint32_t visitors_max;
    int64_t pass_ttl_ms;

    pthread_rwlock_t hot_lock; /* the table; rooms have their own */
    struct hot_sale hot[GW_HOT_SALES_MAX];

    pthread_mutex_t q_lock;
    pthread_cond_t q_cond;
    struct job *q_head, *q_tail;
    size_t q_len, q_max;
    bool stopping;
    int64_t swept_ms;
    int nworkers;
    pthread_t workers[GW_AUTH_WORKERS_MAX];

    struct metrics_series *m_events[EV_COUNT]; /* NULL without a registry */
};

static void count(struct gw_edge *e, enum edge_event ev)
{
    metrics_inc(e->m_events[ev]);
}

static void metrics_setup(struct gw_edge *e)
{
    static const char *const names[] = {
#define EDGE_EVENT_NAME(name, text) text,
        EDGE_EVENTS(EDGE_EVENT_NAME)
#undef EDGE_EVENT_NAME
    };
    static const char *const labels[] = {"event"};
    struct metrics *m = metrics_process();
    struct metrics_family *f =
        m == NULL
            ? NULL
            : metrics_family(m, METRICS_COUNTER, "marquee_gateway_auth_total",
                             "sign-ups, sign-ins, refreshes, refused "
                             "credentials and queue passes, by event",
                             1, labels, NULL, 0);

    for (size_t i = 0; i < EV_COUNT && f != NULL; i++)
        e->m_events[i] = metrics_series(f, &names[i]);
}

/* --- small helpers ---------------------------------------------------- */

static int64_t now_ms(struct gw_edge *e)
{
    return clock_wall_ms(e->clock);
}

static void no_store(struct http_req *req)
{
    http_set_header(req, "Cache-Control", "no-store");
}

/* The segments of a path, pointing into it (not NUL-terminated). */
struct segs {
    int n;
    const char *s[PATH_SEGS_MAX];
    size_t len[PATH_SEGS_MAX];
};

/*
 * Splits path; false when it does not start with '/', has an empty
 * segment ("//"), or more than PATH_SEGS_MAX.  One trailing '/' is
 * ignored, as the HTTP layer's routing does.
 */
static bool path_split(const char *path, struct segs *out)
{
    const char *p = path;

    out->n = 0;
    if (*p != '/')
        return false;
    while (*p == '/' && p[1] != '\0') {
        const char *end = strchr(p + 1, '/');
        size_t len = end != NULL ? (size_t)(end - p - 1) : strlen(p + 1);

        if (out->n == PATH_SEGS_MAX || len == 0)
            return false;
        out->s[out->n] = p + 1;
        out->len[out->n++] = len;
        p += 1 + len;
    }
    return *p == '\0' || (*p == '/' && p[1] == '\0');
}

static bool seg_is(const struct segs *g, int i, const char *lit)
{
    return i < g->n && g->len[i] == strlen(lit) &&
           memcmp(g->s[i], lit, g->len[i]) == 0;
}

/* A segment as an id 1..10^18, like http_req_param_id; 0 when not one. */
static int64_t seg_id(const struct segs *g, int i)
{
    int64_t v = 0;

    if (i >= g->n || g->len[i] == 0 || g->len[i] > 18 || g->s[i][0] == '0')
        return 0;
    for (size_t k = 0; k < g->len[i]; k++) {
        char c = g->s[i][k];

        if (c < '0' || c > '9')
            return 0;
        v = v * 10 + (c - '0');
    }
    return v;
}

/* The show id of segment i of the request's path, or 0 after a 404. */
static int64_t path_show_id(struct http_req *req, int i)
{
    struct segs g;
    int64_t id = 0;

    if (path_split(http_req_path(req), &g))
        id = seg_id(&g, i);
    if (id == 0)
        http_respond_problem(req, 404, "not-found", "Not found",
                             "no show has that id");
    return id;
}

static void respond_invalid(struct http_req *req, const struct verrs *v)
{
    http_respond_problem_ext(req, 422, "validation-failed", "Validation failed",
                             "the body has errors, listed in errors",
                             json_pack("{s:o}", "errors", verr_to_json(v)));
}

/* The bearer token of the request, or NULL (nothing answered). */
static const char *bearer(struct http_req *req)
{
    const char *auth = http_req_header(req, "authorization");

    if (auth == NULL || strncasecmp(auth, BEARER, BEARER_LEN) != 0)
        return NULL;
    auth += BEARER_LEN;
    while (*auth == ' ')
        auth++;
    return auth;
}

/*
 * Admin routes: an access token of role admin, or gateway.admin_token
 * (http_req_admin_ok answers 401 or 403 when it is not that either).
 */
static bool admin_ok(struct gw_edge *e, struct http_req *req)
{
    const char *tok = bearer(req);
    struct gw_token_claims c;

    if (tok != NULL && gw_token_verify(&e->token_key, tok, now_ms(e) / 1000, &c,
                                       NULL) == ERR_OK) {
        if (c.role == GW_ROLE_ADMIN)
            return true;
        http_respond_problem(req, 403, "admin-required", "Admin required",
                             "this route is for admins; the token is a "
                             "customer's");
        return false;
    }
    return http_req_admin_ok(req, e->admin_token);
}

/* --- the work queue ---------------------------------------------------- */

static void job_free(struct job *j)
{
    sodium_memzero(j, sizeof(*j));
    free(j);
}

static void job_finish(struct http_req *req, void *arg);

static void run_job(struct job *j)
{
    struct gw_edge *e = j->e;

    switch (j->kind) {
    case JOB_SIGNUP:
        j->rc = gw_accounts_signup(e->accounts, j->email, j->password, j->name,
                                   j->role, &j->id);
        break;
    case JOB_SIGNIN:
        j->rc = gw_accounts_signin(e->accounts, j->email, j->password,
                                   j->address, &j->session, &j->retry_after_ms);
        break;
    case JOB_REFRESH:
        j->rc = gw_accounts_refresh(e->accounts, j->refresh, &j->session,
                                    &j->reused);
        break;
    case JOB_SIGNOUT:
        j->rc = gw_accounts_revoke(e->accounts, j->refresh);
        break;
    case JOB_KEY:
        j->rc = gw_accounts_key_create(e->accounts, j->name, j->scopes, j->key,
                                       &j->id);
        break;
    case JOB_KEY_REVOKE:
        j->rc = gw_accounts_key_revoke(e->accounts, j->id);
        break;
    }
    sodium_memzero(j->password, sizeof(j->password));

    /* A session gets its access token here, off the loop. */
    if (j->rc == ERR_OK && (j->kind == JOB_SIGNIN || j->kind == JOB_REFRESH)) {
        struct gw_token_claims c = {.role = j->session.role};
        int64_t now_s = now_ms(e) / 1000;

        memcpy(c.sub, j->session.customer, sizeof(c.sub));
        c.iat_s = now_s;
        c.exp_s = now_s + e->access_ttl_s;
        j->rc = gw_token_jti_new(c.jti);
        if (j->rc == ERR_OK)
            j->rc =
                gw_token_sign(&e->token_key, &c, j->access, sizeof(j->access));
    }
}

static void *worker_main(void *arg)
{
    struct gw_edge *e = arg;

    for (;;) {
        struct job *j;
        bool sweep = false;
        int64_t now;

        pthread_mutex_lock(&e->q_lock);
        while (e->q_head == NULL && !e->stopping)
            pthread_cond_wait(&e->q_cond, &e->q_lock);
        j = e->q_head;
        if (j == NULL) {
            pthread_mutex_unlock(&e->q_lock);
            return NULL;
        }
        e->q_head = j->next;
        if (e->q_head == NULL)
            e->q_tail = NULL;
        e->q_len--;
        now = now_ms(e);
        if (now - e->swept_ms >= SWEEP_EVERY_MS) {
            e->swept_ms = now;
            sweep = true;
        }
        pthread_mutex_unlock(&e->q_lock);

        run_job(j);
        http_async_post(j->async, job_finish, j);
        if (sweep)
            gw_accounts_sweep(e->accounts);
    }
}

static void job_busy(struct http_req *req, void *arg)
{
    struct job *j = arg;

    count(j->e, EV_QUEUE_FULL);
    job_free(j);
    if (req != NULL)
        http_respond_unavailable(req, GW_EDGE_RETRY_S,
                                 "too many account requests are waiting");
}

/* Defers req and queues j; a full queue answers 503 at once. */
static void job_submit(struct http_req *req, struct job *j)
{
    struct gw_edge *e = j->e;
    bool queued = false;

    j->async = http_req_defer(req);
    pthread_mutex_lock(&e->q_lock);
    if (e->q_len < e->q_max && !e->stopping) {
        if (e->q_tail != NULL)
            e->q_tail->next = j;
        else
            e->q_head = j;
        e->q_tail = j;
        e->q_len++;
        queued = true;
        pthread_cond_signal(&e->q_cond);
    }
    pthread_mutex_unlock(&e->q_lock);
    if (!queued)
        http_async_post(j->async, job_busy, j);
}

static struct job *job_new(struct http_req *req, struct gw_edge *e,
                           enum job_kind kind)
{
    struct job *j = calloc(1, sizeof(*j));

    if (j == NULL) {
        http_respond_unavailable(req, GW_EDGE_RETRY_S, "out of memory");
        return NULL;
    }
    j->kind = kind;
    j->e = e;
    return j;
}

/* --- answers ------------------------------------------------------------ */

static void respond_session(struct http_req *req, struct job *j)
{
    int64_t refresh_s =
        (j->session.refresh_expires_ms - now_ms(j->e) + 999) / 1000;

    no_store(req);
    http_respond_json(
        req, j->kind == JOB_SIGNIN ? 201 : 200,
        json_pack("{s:s, s:s, s:I, s:s, s:I, s:s, s:s}", "access_token",
                  j->access, "token_type", "Bearer", "expires_in",
                  (json_int_t)j->e->access_ttl_s, "refresh_token",
                  j->session.refresh, "refresh_expires_in",
                  (json_int_t)refresh_s, "customer_id", j->session.customer,
                  "role", gw_role_name(j->session.role)));
}

/* The answer to the errors every job shares. */
static void respond_job_error(struct http_req *req, int rc)
{
    if (rc == ERR_FULL || rc == ERR_NOMEM || rc == ERR_BUSY)
        http_respond_unavailable(req, GW_EDGE_RETRY_S,
                                 "the accounts database is busy");
    else
        http_respond_problem(req, 500, "internal", "Internal error",
                             "the accounts database failed: %s", err_msg(rc));
}

static void finish_signup(struct http_req *req, struct job *j)
{
    char customer[HTTP_CUSTOMER_MAX + 1];

    if (j->rc == ERR_CONFLICT) {
        http_respond_problem(req, 409, "email-taken", "Email taken",
                             "an account with this email exists already");
        return;
    }
    if (j->rc != ERR_OK) {
        respond_job_error(req, j->rc);
        return;
    }
    count(j->e, EV_SIGNUP);
    gw_accounts_customer_id(j->id, customer);
    gw_email_normalize(j->email, j->email);
    http_respond_json(req, 201,
                      json_pack("{s:I, s:s, s:s, s:s, s:s}", "id",
                                (json_int_t)j->id, "customer_id", customer,
                                "email", j->email, "name", j->name, "role",
                                gw_role_name(j->role)));
}

static void finish_signin(struct http_req *req, struct job *j)
{
    char after[24];

    if (j->rc == ERR_OK) {
        count(j->e, EV_SIGNIN_OK);
        respond_session(req, j);
    } else if (j->rc == ERR_DENIED) {
        count(j->e, EV_SIGNIN_DENIED);
        http_respond_problem(req, 401, "invalid-credentials",
                             "Invalid credentials",
                             "the email or the password is wrong");
    } else if (j->rc == ERR_AGAIN) {
        int64_t s = (j->retry_after_ms + 999) / 1000;

        count(j->e, EV_SIGNIN_LIMITED);
        snprintf(after, sizeof(after), "%" PRId64, s);
        http_set_header(req, "Retry-After", after);
        http_respond_problem(req, 429, "too-many-sign-ins", "Too many sign-ins",
                             "too many failed sign-ins for this account or "
                             "from this address; try again in %" PRId64 " s",
                             s);
    } else {
        respond_job_error(req, j->rc);
    }
}

static void finish_refresh(struct http_req *req, struct job *j)
{
    if (j->rc == ERR_DENIED)
        count(j->e, j->reused ? EV_REFRESH_REUSED : EV_REFRESH_DENIED);
    else if (j->rc == ERR_OK)
        count(j->e, EV_REFRESH_OK);

    if (j->rc == ERR_OK)
        respond_session(req, j);
    else if (j->rc == ERR_DENIED && j->reused)
        http_respond_problem(req, 401, "invalid-refresh-token",
                             "Invalid refresh token",
                             "this refresh token was already used, so every "
                             "token of its sign-in is now revoked; sign in "
                             "again");
    else if (j->rc == ERR_DENIED)
        http_respond_problem(req, 401, "invalid-refresh-token",
                             "Invalid refresh token",
                             "the refresh token is unknown, expired or "
                             "revoked; sign in again");
    else
        respond_job_error(req, j->rc);
}

static void finish_signout(struct http_req *req, struct job *j)
{
    if (j->rc == ERR_OK)
        http_respond_bytes(req, 204, "application/json", "", 0);
    else if (j->rc == ERR_NOTFOUND)
        http_respond_problem(req, 401, "invalid-refresh-token",
                             "Invalid refresh token",
                             "no sign-in has this refresh token");
    else
        respond_job_error(req, j->rc);
}

static void finish_key(struct http_req *req, struct job *j)
{
    if (j->rc == ERR_FULL) {
        http_respond_problem(req, 409, "api-keys-full", "Too many API keys",
                             "the gateway holds %d API keys at most",
                             GW_API_KEYS_MAX);
        return;
    }
    if (j->rc != ERR_OK) {
        respond_job_error(req, j->rc);
        return;
    }
    no_store(req);
    http_respond_json(req, 201,
                      json_pack("{s:I, s:s, s:o, s:s}", "id", (json_int_t)j->id,
                                "name", j->name, "scopes",
                                gw_scopes_json(j->scopes), "key", j->key));
}

static void finish_key_revoke(struct http_req *req, struct job *j)
{
    if (j->rc == ERR_OK)
        http_respond_bytes(req, 204, "application/json", "", 0);
    else if (j->rc == ERR_NOTFOUND)
        http_respond_problem(req, 404, "not-found", "Not found",
                             "no live API key has the id %" PRId64, j->id);
    else
        respond_job_error(req, j->rc);
}

static void job_finish(struct http_req *req, void *arg)
{
    struct job *j = arg;

    if (req != NULL) {
        switch (j->kind) {
        case JOB_SIGNUP: finish_signup(req, j); break;
        case JOB_SIGNIN: finish_signin(req, j); break;
        case JOB_REFRESH: finish_refresh(req, j); break;
        case JOB_SIGNOUT: finish_signout(req, j); break;
        case JOB_KEY: finish_key(req, j); break;
        case JOB_KEY_REVOKE: finish_key_revoke(req, j); break;
        }
    }
    job_free(j);
}

/* --- accounts handlers -------------------------------------------------- */

/*
 * The handlers count characters; the accounts count bytes.  A password of
 * GW_PASSWORD_MAX characters may be longer in bytes: refused, never cut.
 */
static void password_bytes(const char *password, struct verrs *v)
{
    if (strlen(password) > GW_PASSWORD_MAX)
        verr_add(v, "password", "too-long",
                 "password must be at most %d bytes of UTF-8", GW_PASSWORD_MAX);
}

static const char *const signup_fields[] = {"email", "password", "name", "role",
                                            NULL};

void gw_edge_signup(struct http_req *req, void *app)
{
    struct gw_edge *e = app;
    json_t *body = http_req_json(req);
    const char *email = NULL, *password = NULL, *name = NULL, *role = NULL;
    char norm[GW_EMAIL_MAX + 1];
    enum gw_role r = GW_ROLE_CUSTOMER;
    struct verrs v = {0};
    struct job *j;

    if (body == NULL)
        return;
    jv_no_unknown(body, "", signup_fields, &v);
    if (jv_string(body, "email", "email", true, GW_EMAIL_MIN, GW_EMAIL_MAX,
                  &email, &v) &&
        !gw_email_normalize(email, norm))
        verr_add(&v, "email", "invalid-format",
                 "email must be printable characters without spaces, with "
                 "one '@' between a name and a domain");
    if (jv_string(body, "password", "password", true, GW_PASSWORD_MIN,
                  GW_PASSWORD_MAX, &password, &v))
        password_bytes(password, &v);
    jv_string(body, "name", "name", true, 1, GW_NAME_CHARS_MAX, &name, &v);
    if (jv_string(body, "role", "role", false, 1, 16, &role, &v) &&
        !gw_role_parse(role, &r))
        verr_add(&v, "role", "invalid-format",
                 "role must be \"customer\" or \"admin\"");
    if (verr_any(&v)) {
        respond_invalid(req, &v);
        return;
    }
    /* Only an admin makes an admin. */
    if (r == GW_ROLE_ADMIN && !admin_ok(e, req))
        return;

    if ((j = job_new(req, e, JOB_SIGNUP)) == NULL)
        return;
    snprintf(j->email, sizeof(j->email), "%s", email);
    snprintf(j->password, sizeof(j->password), "%s", password);
    snprintf(j->name, sizeof(j->name), "%s", name);
    j->role = r;
    job_submit(req, j);
}

static const char *const signin_fields[] = {"email", "password", NULL};

void gw_edge_signin(struct http_req *req, void *app)
{
    struct gw_edge *e = app;
    json_t *body = http_req_json(req);
    const char *email = NULL, *password = NULL;
    struct verrs v = {0};
    struct job *j;

    if (body == NULL)
        return;
    jv_no_unknown(body, "", signin_fields, &v);
    jv_string(body, "email", "email", true, 1, GW_EMAIL_MAX, &email, &v);
    if (jv_string(body, "password", "password", true, 1, GW_PASSWORD_MAX,
                  &password, &v))
        password_bytes(password, &v);
    if (verr_any(&v)) {
        respond_invalid(req, &v);
        return;
    }
    if ((j = job_new(req, e, JOB_SIGNIN)) == NULL)
        return;
    snprintf(j->email, sizeof(j->email), "%s", email);
    snprintf(j->password, sizeof(j->password), "%s", password);
    snprintf(j->address, sizeof(j->address), "%s", http_req_peer(req));
    job_submit(req, j);
}

static const char *const refresh_fields[] = {"refresh_token", NULL};

/* A refresh or sign-out job from {"refresh_token": "..."}; NULL after an
 * answer. */
static struct job *refresh_job(struct http_req *req, struct gw_edge *e,
                               enum job_kind kind)
{
    json_t *body = http_req_json(req);
    const char *tok = NULL;
    struct verrs v = {0};
    struct job *j;

    if (body == NULL)
        return NULL;
    jv_no_unknown(body, "", refresh_fields, &v);
    jv_string(body, "refresh_token", "refresh_token", true, 1,
              GW_SECRET_TEXT_MAX, &tok, &v);
    if (verr_any(&v)) {
        respond_invalid(req, &v);
        return NULL;
    }
    if ((j = job_new(req, e, kind)) == NULL)
        return NULL;
    snprintf(j->refresh, sizeof(j->refresh), "%s", tok);
    return j;
}

void gw_edge_refresh(struct http_req *req, void *app)
{
    struct job *j = refresh_job(req, app, JOB_REFRESH);

    if (j != NULL)
        job_submit(req, j);
}

void gw_edge_signout(struct http_req *req, void *app)
{
    struct job *j = refresh_job(req, app, JOB_SIGNOUT);

    if (j != NULL)
        job_submit(req, j);
}

static const char *const key_fields[] = {"name", "scopes", NULL};

void gw_edge_key_create(struct http_req *req, void *app)
{
    struct gw_edge *e = app;
    json_t *body, *scopes = NULL;
    const char *name = NULL;
    unsigned bits = 0;
    struct verrs v = {0};
    struct job *j;

    if (!admin_ok(e, req) || (body = http_req_json(req)) == NULL)
        return;
    jv_no_unknown(body, "", key_fields, &v);
    jv_string(body, "name", "name", true, 1, GW_NAME_CHARS_MAX, &name, &v);
    if (jv_array(body, "scopes", "scopes", true, 1, 8, &scopes, &v)) {
        for (size_t i = 0; i < json_array_size(scopes); i++) {
            const char *s = json_string_value(json_array_get(scopes, i));
            char field[VERR_FIELD_MAX];
            unsigned bit = s != NULL ? gw_scope_parse(s) : 0;

            jv_path_index(field, "scopes", i);
            if (bit == 0)
                verr_add(&v, field, "unknown-scope",
                         "a scope is one of catalog:read, holds:write, "
                         "bookings:read, bookings:write");
            bits |= bit;
        }
    }
    if (verr_any(&v)) {
        respond_invalid(req, &v);
        return;
    }
    if ((j = job_new(req, e, JOB_KEY)) == NULL)
        return;
    snprintf(j->name, sizeof(j->name), "%s", name);
    j->scopes = bits;
    job_submit(req, j);
}

void gw_edge_key_revoke(struct http_req *req, void *app)
{
    struct gw_edge *e = app;
    struct job *j;
    struct segs g;
    int64_t id = 0;

    if (!admin_ok(e, req))
        return;
    if (path_split(http_req_path(req), &g))
        id = seg_id(&g, 2);
    if (id == 0) {
        http_respond_problem(req, 404, "not-found", "Not found",
                             "no API key has that id");
        return;
    }
    if ((j = job_new(req, e, JOB_KEY_REVOKE)) == NULL)
        return;
    j->id = id;
    job_submit(req, j);
}

/* --- hot sales and waiting rooms --------------------------------------- */

/* The slot of show_id; hot_lock held (either way).  NULL when not hot. */
static struct hot_sale *hot_find(struct gw_edge *e, int64_t show_id)
{
    for (size_t i = 0; i < GW_HOT_SALES_MAX; i++)
        if (e->hot[i].show_id == show_id)
            return &e->hot[i];
    return NULL;
}

bool gw_edge_is_hot(struct gw_edge *e, int64_t show_id)
{
    bool hot;

    pthread_rwlock_rdlock(&e->hot_lock);
    hot = show_id > 0 && hot_find(e, show_id) != NULL;
    pthread_rwlock_unlock(&e->hot_lock);
    return hot;
}

static const char *const hot_fields[] = {
    "show_id", "opens_at", "rate_per_s", "pass_ttl_s", "visitors_max", NULL};

/* Reads a hot sale's body into c and *show; false after a 422. */
static bool hot_sale_body(struct http_req *req, struct gw_edge *e, json_t *body,
                          struct gw_waitroom_config *c, int64_t *show)
{
    const char *opens = NULL, *why = NULL;
    int64_t rate = 0, ttl_s = e->pass_ttl_ms / 1000, max = e->visitors_max;
    struct verrs v = {0};

    jv_no_unknown(body, "", hot_fields, &v);
    jv_int(body, "show_id", "show_id", true, 1, 1000000000000000000LL, show,
           &v);
    if (jv_string(body, "opens_at", "opens_at", true, 1, 64, &opens, &v) &&
        clock_parse_rfc3339(opens, &c->opens_at_ms) != ERR_OK)
        verr_add(&v, "opens_at", "invalid-format",
                 "opens_at must be RFC 3339 with an offset, "
                 "2026-12-24T10:00:00Z");
    jv_int(body, "rate_per_s", "rate_per_s", true, 1, GW_WAITROOM_RATE_MAX,
           &rate, &v);
    jv_int(body, "pass_ttl_s", "pass_ttl_s", false, 1,
           GW_WAITROOM_PASS_TTL_MAX_MS / 1000, &ttl_s, &v);
    jv_int(body, "visitors_max", "visitors_max", false, 1,
           GW_WAITROOM_VISITORS_MAX, &max, &v);
    c->rate_per_s = (int)rate;
    c->pass_ttl_ms = ttl_s * 1000;
    c->visitors_max = (uint32_t)max;
    if (!verr_any(&v) && gw_waitroom_config_check(c, now_ms(e), &why) != ERR_OK)
        verr_add(&v, "opens_at", "out-of-range", "%s", why);
    if (verr_any(&v)) {
        respond_invalid(req, &v);
        return false;
    }
    return true;
}

/* Installs a room for show; 0 (ERR_OK), ERR_CONFLICT, ERR_FULL, ERR_NOMEM
 * or ERR_SYS. */
static int hot_install(struct gw_edge *e, int64_t show,
                       const struct gw_waitroom_config *c)
{
    struct hot_sale *slot;
    struct gw_waitroom *room = NULL;
    uint64_t epoch;
    int rc = rand_secure_bytes(&epoch, sizeof(epoch));

    if (rc != ERR_OK)
        return rc;
    rc = gw_waitroom_new(show, epoch, c, &e->pass_key, &room);
    if (rc != ERR_OK)
        return rc;
    pthread_rwlock_wrlock(&e->hot_lock);
    if (hot_find(e, show) != NULL)
        rc = ERR_CONFLICT;
    else if ((slot = hot_find(e, 0)) == NULL)
        rc = ERR_FULL;
    else if ((rc = rand_seed_secure(&slot->rand)) == ERR_OK) {
        slot->room = room;
        slot->show_id = show;
        room = NULL;
    }
    pthread_rwlock_unlock(&e->hot_lock);
    gw_waitroom_free(room);
    return rc;
}

void gw_edge_hot_sale(struct http_req *req, void *app)
{
    struct gw_edge *e = app;
    struct gw_waitroom_config c = {0};
    char opens[CLOCK_RFC3339_LEN];
    int64_t show = 0;
    json_t *body;
    int rc;

    if (!admin_ok(e, req) || (body = http_req_json(req)) == NULL ||
        !hot_sale_body(req, e, body, &c, &show))
        return;

    rc = hot_install(e, show, &c);
    if (rc == ERR_CONFLICT) {
        http_respond_problem(req, 409, "hot-sale-exists", "Hot sale exists",
                             "show %" PRId64 " has a waiting room already; "
                             "end it first (DELETE /admin/hot-sales/%" PRId64
                             ")",
                             show, show);
        return;
    }
    if (rc == ERR_FULL) {
        http_respond_problem(req, 409, "hot-sales-full", "Too many hot sales",
                             "at most %d shows have a waiting room at once",
                             GW_HOT_SALES_MAX);
        return;
    }
    if (rc != ERR_OK) {
        http_respond_unavailable(req, GW_EDGE_RETRY_S,
                                 "the waiting room could not be made");
        return;
    }
    clock_format_rfc3339(c.opens_at_ms, opens);
    log_info("gateway", "hot_sale_marked show=%" PRId64 " opens_at=%s rate=%d",
             show, opens, c.rate_per_s);
    http_respond_json(req, 201,
                      json_pack("{s:I, s:s, s:i, s:I, s:I}", "show_id",
                                (json_int_t)show, "opens_at", opens,
                                "rate_per_s", c.rate_per_s, "pass_ttl_s",
                                (json_int_t)(c.pass_ttl_ms / 1000),
                                "visitors_max", (json_int_t)c.visitors_max));
}

void gw_edge_hot_sale_end(struct http_req *req, void *app)
{
    struct gw_edge *e = app;
    struct gw_waitroom *room = NULL;
    struct hot_sale *slot;
    int64_t show;

    if (!admin_ok(e, req) || (show = path_show_id(req, 2)) == 0)
        return;
    pthread_rwlock_wrlock(&e->hot_lock);
    if ((slot = hot_find(e, show)) != NULL) {
        room = slot->room;
        slot->room = NULL;
        slot->show_id = 0;
    }
    pthread_rwlock_unlock(&e->hot_lock);
    if (room == NULL) {
        http_respond_problem(req, 404, "not-hot", "Not a hot sale",
                             "show %" PRId64 " has no waiting room", show);
        return;
    }
    log_info("gateway", "hot_sale_ended show=%" PRId64 " visitors=%u", show,
             gw_waitroom_count(room));
    gw_waitroom_free(room);
    http_respond_bytes(req, 204, "application/json", "", 0);
}

static const char *state_name(enum gw_waitroom_state s)
{
    switch (s) {
    case GW_WAITROOM_BEFORE_OPENING: return "before-opening";
    case GW_WAITROOM_QUEUED: return "queued";
    case GW_WAITROOM_ADMITTED: return "admitted";
    case GW_WAITROOM_EXPIRED: return "expired";
    }
    return "unknown";
}

/* The status document of a visitor; room locked by the caller. */
/* Who owns a place: a digest of the customer id, never 0. */
static uint64_t owner_of(const char *customer)
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    uint64_t v;

    SHA256((const unsigned char *)customer, strlen(customer), d);
    memcpy(&v, d, sizeof(v));
    return v == 0 ? 1 : v;
}

/*
 * The visitor's status; an admitted one gets its pass when customer (the
 * caller, who has claimed the place) is not "".  Room locked.
 */
static json_t *status_json(const struct gw_waitroom *room, int64_t show,
                           const char *visitor,
                           const struct gw_waitroom_status *st,
                           const char *customer)
{
    char opens[CLOCK_RFC3339_LEN], t[CLOCK_RFC3339_LEN];
    char pass[GW_WAITROOM_PASS_MAX + 1];
    json_t *o;

    clock_format_rfc3339(gw_waitroom_config(room)->opens_at_ms, opens);
    o = json_pack("{s:I, s:s, s:s, s:s}", "show_id", (json_int_t)show,
                  "visitor", visitor, "state", state_name(st->state),
                  "opens_at", opens);
    if (o == NULL)
        return NULL;
    if (st->state == GW_WAITROOM_BEFORE_OPENING ||
        st->state == GW_WAITROOM_QUEUED) {
        int64_t poll = st->wait_ms < POLL_MAX_MS ? st->wait_ms : POLL_MAX_MS;

        json_object_set_new(o, "estimated_wait_ms", json_integer(st->wait_ms));
        json_object_set_new(o, "poll_after_ms",
                            json_integer(poll < 100 ? 100 : poll));
    }
    if (st->state == GW_WAITROOM_QUEUED)
        json_object_set_new(o, "position",
                            json_integer((json_int_t)st->position));
    if (st->state == GW_WAITROOM_ADMITTED) {
        clock_format_rfc3339(st->pass_expires_ms, t);
        json_object_set_new(o, "pass_expires_at", json_string(t));
        if (customer[0] != '\0' &&
            gw_waitroom_pass(room, st, customer, pass) == ERR_OK)
            json_object_set_new(o, "pass", json_string(pass));
        else
            json_object_set_new(o, "pass_needs_sign_in", json_true());
    }
    return o;
}

void gw_edge_queue_join(struct http_req *req, void *app)
{
    struct gw_edge *e = app;
    char visitor[GW_WAITROOM_VISITOR_TEXT_MAX + 1];
    char location[128];
    struct gw_waitroom_status st;
    struct hot_sale *slot;
    struct gw_ident id;
    json_t *doc = NULL;
    int64_t show, now;
    uint32_t seq;
    int rc = ERR_NOTFOUND;

    /* A signed-in visitor's place is theirs from the start. */
    if ((show = path_show_id(req, 2)) == 0 || !gw_edge_identify(e, req, &id))
        return;
    now = now_ms(e);
    pthread_rwlock_rdlock(&e->hot_lock);
    if ((slot = hot_find(e, show)) != NULL) {
        pthread_mutex_lock(&slot->lock);
        rc = gw_waitroom_join(slot->room, now, &slot->rand, visitor, &seq);
        if (rc == ERR_OK && id.customer[0] != '\0')
            gw_waitroom_claim(slot->room, seq, owner_of(id.customer));
        if (rc == ERR_OK &&
            gw_waitroom_status(slot->room, visitor, now, &st) == ERR_OK)
            doc = status_json(slot->room, show, visitor, &st, id.customer);
        pthread_mutex_unlock(&slot->lock);
    }
    pthread_rwlock_unlock(&e->hot_lock);

    if (rc == ERR_NOTFOUND) {
        http_respond_problem(req, 404, "not-hot", "Not a hot sale",
                             "show %" PRId64 " has no waiting room: its sale "
                             "is not marked hot",
                             show);
    } else if (rc == ERR_FULL) {
        count(e, EV_WAITROOM_FULL);
        http_respond_unavailable(req, WAITROOM_FULL_RETRY_S,
                                 "the waiting room is full");
    } else if (rc != ERR_OK || doc == NULL) {
        json_decref(doc);
        http_respond_unavailable(req, GW_EDGE_RETRY_S, "out of memory");
    } else {
        snprintf(location, sizeof(location), "/v1/shows/%" PRId64 "/queue/%s",
                 show, visitor);
        count(e, EV_WAITROOM_JOIN);
        http_set_header(req, "Location", location);
        no_store(req);
        http_respond_json(req, 201, doc);
    }
}

void gw_edge_queue_status(struct http_req *req, void *app)
{
    struct gw_edge *e = app;
    struct gw_waitroom_status st;
    struct hot_sale *slot;
    struct segs g;
    char visitor[GW_WAITROOM_VISITOR_TEXT_MAX + 1] = "";
    struct gw_ident id;
    json_t *doc = NULL;
    int64_t show;
    int rc = ERR_INVALID;

    if ((show = path_show_id(req, 2)) == 0 || !gw_edge_identify(e, req, &id))
        return;
    if (path_split(http_req_path(req), &g) && g.n == 5 &&
        g.len[4] <= GW_WAITROOM_VISITOR_TEXT_MAX) {
        memcpy(visitor, g.s[4], g.len[4]);
        visitor[g.len[4]] = '\0';
    }
    pthread_rwlock_rdlock(&e->hot_lock);
    if ((slot = hot_find(e, show)) != NULL) {
        pthread_mutex_lock(&slot->lock);
        rc = gw_waitroom_status(slot->room, visitor, now_ms(e), &st);
        /* The pass goes to the first customer who asks for it. */
        if (rc == ERR_OK && st.state == GW_WAITROOM_ADMITTED &&
            id.customer[0] != '\0')
            rc = gw_waitroom_claim(slot->room, st.seq, owner_of(id.customer));
        if (rc == ERR_OK)
            doc = status_json(slot->room, show, visitor, &st, id.customer);
        pthread_mutex_unlock(&slot->lock);
    }
    pthread_rwlock_unlock(&e->hot_lock);

    if (rc == ERR_DENIED)
        http_respond_problem(req, 403, "visitor-claimed", "Place claimed",
                             "another customer holds this place's pass");
    else if (slot == NULL)
        http_respond_problem(req, 404, "not-hot", "Not a hot sale",
                             "show %" PRId64 " has no waiting room", show);
    else if (rc != ERR_OK)
        http_respond_problem(req, 404, "unknown-visitor", "Unknown visitor",
                             "this waiting room gave out no such visitor id");
    else if (doc == NULL)
        http_respond_unavailable(req, GW_EDGE_RETRY_S, "out of memory");
    else {
        no_store(req);
        http_respond_json(req, 200, doc);
    }
}

/* --- routes -------------------------------------------------------------- */

const struct http_route gw_edge_routes[] = {
    {"POST", "/v1/accounts", gw_edge_signup},
    {"POST", "/v1/sessions", gw_edge_signin},
    {"POST", "/v1/sessions/refresh", gw_edge_refresh},
    {"DELETE", "/v1/sessions", gw_edge_signout},
    {"POST", "/admin/api-keys", gw_edge_key_create},
    {"DELETE", "/admin/api-keys/{id}", gw_edge_key_revoke},
    {"POST", "/admin/hot-sales", gw_edge_hot_sale},
    {"DELETE", "/admin/hot-sales/{show_id}", gw_edge_hot_sale_end},
    {"POST", "/v1/shows/{show_id}/queue", gw_edge_queue_join},
    {"GET", "/v1/shows/{show_id}/queue/{visitor}", gw_edge_queue_status},
};
const size_t gw_edge_nroutes =
    sizeof(gw_edge_routes) / sizeof(gw_edge_routes[0]);

bool gw_edge_dispatch(struct http_req *req, struct gw_edge *e)
{
    const char *m = http_req_method(req);
    struct segs g;

    if (!path_split(http_req_path(req), &g))
        return false;
    for (size_t i = 0; i < gw_edge_nroutes; i++) {
        const struct http_route *r = &gw_edge_routes[i];
        struct segs p;
        bool match;

        if (strcmp(r->method, m) != 0 || !path_split(r->pattern, &p) ||
            p.n != g.n)
            continue;
        match = true;
        for (int k = 0; k < p.n && match; k++)
            match = p.s[k][0] == '{' || (p.len[k] == g.len[k] &&
                                         memcmp(p.s[k], g.s[k], p.len[k]) == 0);
        if (match) {
            r->fn(req, e);
            return true;
        }
    }
    return false;
}

/* --- checks for the request path ---------------------------------------- */

static bool unauthorized(struct http_req *req, const char *detail)
{
    char www[256];

    snprintf(www, sizeof(www),
             "Bearer realm=\"marquee\", error=\"invalid_token\", "
             "error_description=\"%s\"",
             detail);
    http_set_header(req, "WWW-Authenticate", www);
    http_respond_problem(req, 401, "invalid-token", "Invalid token", "%s",
                         detail);
    return false;
}

/* Why credentials were refused, by ident(). */
enum ident_fault {
    IDENT_OK,
    IDENT_BOTH,       /* Authorization and X-Api-Key */
    IDENT_BAD_KEY,    /* no such API key */
    IDENT_NOT_BEARER, /* Authorization of another scheme */
    IDENT_BAD_TOKEN,  /* *tf says why */
};

/* gw_edge_identify without the answer: who, or why not. */
static enum ident_fault ident(struct gw_edge *e, struct http_req *req,
                              struct gw_ident *out, enum gw_token_fault *tf)
{
    const char *auth = http_req_header(req, "authorization");
    const char *key = http_req_header(req, GW_API_KEY_HEADER);
    struct gw_token_claims c;
    const char *tok;

    memset(out, 0, sizeof(*out));
    out->kind = GW_IDENT_ANONYMOUS;
    if (auth != NULL && key != NULL)
        return IDENT_BOTH;
    if (key != NULL) {
        if (!gw_accounts_key_find(e->accounts, key, &out->key_id, &out->scopes))
            return IDENT_BAD_KEY;
        out->kind = GW_IDENT_PARTNER;
        snprintf(out->customer, sizeof(out->customer), "key-%" PRId64,
                 out->key_id);
        return IDENT_OK;
    }
    if (auth == NULL)
        return IDENT_OK;
    if ((tok = bearer(req)) == NULL)
        return IDENT_NOT_BEARER;
    if (e->admin_token[0] != '\0' && gw_token_text_equal(tok, e->admin_token)) {
        out->kind = GW_IDENT_ADMIN;
        return IDENT_OK;
    }
    if (gw_token_verify(&e->token_key, tok, now_ms(e) / 1000, &c, tf) != ERR_OK)
        return IDENT_BAD_TOKEN;
    out->kind = c.role == GW_ROLE_ADMIN ? GW_IDENT_ADMIN : GW_IDENT_CUSTOMER;
    memcpy(out->customer, c.sub, sizeof(out->customer));
    out->expires_s = c.exp_s;
    return IDENT_OK;
}

bool gw_edge_identify(struct gw_edge *e, struct http_req *req,
                      struct gw_ident *out)
{
    enum gw_token_fault tf = GW_TOKEN_VALID;

    switch (ident(e, req, out, &tf)) {
    case IDENT_OK: return true;
    case IDENT_BOTH:
        http_respond_problem(req, 400, "conflicting-credentials",
                             "Conflicting credentials",
                             "send either Authorization or X-Api-Key, not "
                             "both");
        return false;
    case IDENT_BAD_KEY:
        count(e, EV_INVALID_KEY);
        http_respond_problem(req, 401, "invalid-api-key", "Invalid API key",
                             "X-Api-Key names no API key of this platform");
        return false;
    case IDENT_NOT_BEARER:
        count(e, EV_INVALID_TOKEN);
        return unauthorized(req, "Authorization must be Bearer <token>");
    case IDENT_BAD_TOKEN:
        count(e, EV_INVALID_TOKEN);
        return unauthorized(req, gw_token_fault_text(tf));
    }
    return false;
}

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

unsigned gw_edge_scope_needed(const char *method, const char *path)
{
    bool read = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    struct segs g;

    if (has_prefix(path, "/v1/bookings/") || strcmp(path, "/v1/bookings") == 0)
        return read ? GW_SCOPE_BOOKINGS_READ : GW_SCOPE_BOOKINGS_WRITE;
    if (has_prefix(path, "/v1/holds/") || strcmp(path, "/v1/holds") == 0)
        return read ? GW_SCOPE_CATALOG_READ : GW_SCOPE_HOLDS_WRITE;
    if (!read && path_split(path, &g) && g.n == 4 && seg_is(&g, 0, "v1") &&
        seg_is(&g, 1, "shows") && seg_is(&g, 3, "holds"))
        return GW_SCOPE_HOLDS_WRITE;
    if (read && has_prefix(path, "/v1/") && !has_prefix(path, "/v1/admin/"))
        return GW_SCOPE_CATALOG_READ;
    return 0;
}

bool gw_edge_scope_ok(struct http_req *req, const struct gw_ident *id)
{
    unsigned need;
    json_t *names;

    if (id->kind != GW_IDENT_PARTNER)
        return true;
    need = gw_edge_scope_needed(http_req_method(req), http_req_path(req));
    if (need != 0 && (id->scopes & need) == need)
        return true;
    names = need != 0 ? gw_scopes_json(need) : json_array();
    http_set_header(req, "WWW-Authenticate",
                    "Bearer realm=\"marquee\", error=\"insufficient_scope\"");
    http_respond_problem_ext(
        req, 403, "insufficient-scope", "Insufficient scope",
        need != 0 ? "the API key lacks the scope this request needs"
                  : "API keys may not make this request",
        json_pack("{s:o}", "required_scopes", names));
    return false;
}

bool gw_edge_pass_ok(struct gw_edge *e, struct http_req *req, int64_t show_id)
{
    struct gw_ident id;
    enum gw_token_fault tf;
    const char *pass;
    enum gw_pass_fault f;

    if (!gw_edge_is_hot(e, show_id))
        return true;
    /* A pass is good for the customer it was made for: the caller's id,
     * "" when anonymous (ident() answers nothing; the request path has
     * identified the caller already). */
    if (ident(e, req, &id, &tf) != IDENT_OK)
        id.customer[0] = '\0';
    pass = http_req_header(req, GW_PASS_HEADER);
    f = pass != NULL
            ? gw_pass_check(&e->pass_key, pass, show_id, id.customer, now_ms(e))
            : GW_PASS_FORGED;
    count(e, pass != NULL && f == GW_PASS_VALID ? EV_PASS_OK : EV_PASS_REFUSED);
    if (pass == NULL) {
        http_respond_problem(req, 403, "pass-required", "Queue pass required",
                             "show %" PRId64 "'s sale is hot: join its "
                             "waiting room (POST /v1/shows/%" PRId64
                             "/queue) and send the pass in X-Queue-Pass",
                             show_id, show_id);
        return false;
    }
    switch (f) {
    case GW_PASS_VALID: return true;
    case GW_PASS_EXPIRED:
        http_respond_problem(req, 403, "pass-expired", "Queue pass expired",
                             "the queue pass has expired: join the waiting "
                             "room again");
        return false;
    case GW_PASS_WRONG_SHOW:
        http_respond_problem(req, 403, "pass-forged", "Queue pass invalid",
                             "the queue pass is for another show");
        return false;
    case GW_PASS_FORGED: break;
    }
    http_respond_problem(req, 403, "pass-forged", "Queue pass invalid",
                         "the queue pass was not issued by this platform, "
                         "or not to this customer");
    return false;
}

/* --- open and close ------------------------------------------------------ */

static int keys_from(struct gw_edge *e, const char *secret)
{
    unsigned char random[GW_TOKEN_KEY_LEN];
    size_t n = strlen(secret);

    if (n == 0) {
        int rc = rand_secure_bytes(random, sizeof(random));

        if (rc != ERR_OK)
            return rc;
        /* Tokens and passes then die with the process and are good on
         * this gateway only. */
        log_warn("gateway", "token_secret_random reason=empty");
        secret = (const char *)random;
        n = sizeof(random);
    } else if (n < GW_TOKEN_SECRET_MIN) {
        log_error("gateway",
                  "bad_config key=gateway.token_secret reason=too_short min=%d",
                  GW_TOKEN_SECRET_MIN);
        return ERR_CONFIG;
    }
    gw_token_key_derive(&e->token_key, secret, n, "access-token");
    gw_token_key_derive(&e->pass_key, secret, n, "waitroom-pass");
    sodium_memzero(random, sizeof(random));
    return ERR_OK;
}

static int accounts_from(struct gw_edge *e, const struct config *cfg)
{
    struct store_config sc = {
        .backend = "sqlite",
        .path = config_str(cfg, "gateway.accounts.path"),
        .busy_timeout_ms = 5000,
        .synchronous = "full",
    };
    struct gw_accounts_config ac = {
        .clock = e->clock,
        .opslimit =
            (unsigned long long)config_int(cfg, "gateway.password_opslimit"),
        .memlimit =
            (size_t)config_int(cfg, "gateway.password_memlimit_kib") * 1024,
        .refresh_ttl_ms = config_int(cfg, "gateway.refresh_token_ttl_s") * 1000,
        .family_max_ms = config_int(cfg, "gateway.refresh_family_max_s") * 1000,
        .account_fails = (int)config_int(cfg, "gateway.signin_account_fails"),
        .address_fails = (int)config_int(cfg, "gateway.signin_address_fails"),
        .fail_window_ms = config_int(cfg, "gateway.signin_window_s") * 1000,
    };
    int rc;

    if (ac.family_max_ms < ac.refresh_ttl_ms) {
        log_error("gateway",
                  "bad_config key=gateway.refresh_family_max_s reason=short");
        return ERR_CONFIG;
    }
    rc = gw_accounts_open(&sc, &ac, &e->accounts);
    if (rc != ERR_OK)
        log_error("gateway", "accounts_open_failed path=%s error=%s", sc.path,
                  err_name(rc));
    return rc;
}

int gw_edge_open_clock(const struct config *cfg, struct clock *clock,
                       struct gw_edge **out)
{
    struct gw_edge *e = calloc(1, sizeof(*e));
    int rc;

    if (e == NULL)
        return ERR_NOMEM;
    e->clock = clock;
    e->admin_token = config_str(cfg, "gateway.admin_token");
    e->access_ttl_s = config_int(cfg, "gateway.access_token_ttl_s");
    e->visitors_max =
        (uint32_t)config_int(cfg, "gateway.waitroom.visitors_max");
    e->pass_ttl_ms = config_int(cfg, "gateway.waitroom.pass_ttl_s") * 1000;
    e->q_max = (size_t)config_int(cfg, "gateway.auth_queue_max");
    e->swept_ms = now_ms(e);
    metrics_setup(e);
    pthread_rwlock_init(&e->hot_lock, NULL);
    for (size_t i = 0; i < GW_HOT_SALES_MAX; i++)
        pthread_mutex_init(&e->hot[i].lock, NULL);
    pthread_mutex_init(&e->q_lock, NULL);
    pthread_cond_init(&e->q_cond, NULL);

    if ((rc = keys_from(e, config_str(cfg, "gateway.token_secret"))) !=
            ERR_OK ||
        (rc = accounts_from(e, cfg)) != ERR_OK)
        goto out_close_edge;

    for (int n = (int)config_int(cfg, "gateway.auth_workers"); e->nworkers < n;
         e->nworkers++) {
        if (pthread_create(&e->workers[e->nworkers], NULL, worker_main, e) !=
            0) {
            log_error("gateway", "worker_start_failed index=%d", e->nworkers);
            rc = ERR_SYS;
            goto out_close_edge;
        }
    }
    log_info("gateway", "accounts_ready workers=%d access_ttl_s=%" PRId64,
             e->nworkers, e->access_ttl_s);
    *out = e;
    return ERR_OK;

out_close_edge:
    gw_edge_close(e);
    return rc;
}

int gw_edge_open(const struct config *cfg, struct gw_edge **out)
{
    return gw_edge_open_clock(cfg, clock_system(), out);
}

void gw_edge_close(struct gw_edge *e)
{
    if (e == NULL)
        return;
    pthread_mutex_lock(&e->q_lock);
    e->stopping = true;
    pthread_cond_broadcast(&e->q_cond);
    pthread_mutex_unlock(&e->q_lock);
    for (int i = 0; i < e->nworkers; i++)
        pthread_join(e->workers[i], NULL);
    assert(e->q_head == NULL);

    gw_accounts_close(e->accounts);
    for (size_t i = 0; i < GW_HOT_SALES_MAX; i++) {
        gw_waitroom_free(e->hot[i].room);
        pthread_mutex_destroy(&e->hot[i].lock);
    }
    pthread_rwlock_destroy(&e->hot_lock);
    pthread_cond_destroy(&e->q_cond);
    pthread_mutex_destroy(&e->q_lock);
    sodium_memzero(e, sizeof(*e));
    free(e);
}
