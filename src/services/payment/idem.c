/*
 * idem.c - Idempotency-Key: one key is one attempt.  The answer of an
 * attempt (a charge, a decline, a provider failure, a refund or its
 * refusal) is stored in the same transaction as the change it reports, so
 * a repeat of the attempt, even after a crash or a restart, gets that
 * answer back and is never charged again.
 *
 * Keys in flight are kept in memory behind one mutex (held for a hash
 * lookup, never across I/O), so a second request with a key still running
 * gets 409 at once.  Keys belong to a scope, the collection they create
 * in ("charges", "refunds"), and live PAY_IDEM_TTL_MS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/keyset.h"
#include "base/log.h"
#include "services/payment/internal.h"

#define RUNNING_TEXT (16 + PAY_KEY_MAX + 2) /* "scope\nkey" */
_Static_assert(RUNNING_TEXT - 1 <= KEYSET_TEXT_MAX, "keys fit the set");

#define FNV_START 1469598103934665603ULL

static uint64_t fnv64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

static void running_text(const struct pay_op *op, char out[RUNNING_TEXT])
{
    snprintf(out, RUNNING_TEXT, "%s\n%s", op->scope, op->key);
}

static bool key_ok(const char *key)
{
    size_t n = strlen(key);

    if (n == 0 || n > PAY_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (key[i] < 0x21 || key[i] > 0x7e)
            return false;
    return true;
}

static const char SQL_IDEM_GET[] =
    "SELECT request_hash, status, content_type, response FROM idempotency "
    "WHERE scope = ? AND key = ? AND created_at > ?";

/* The Location of a replayed 201: the resource named in its body. */
static void set_location(struct http_req *req, const char *scope,
                         const char *body)
{
    json_t *doc = json_loads(body, 0, NULL);
    const char *id = json_string_value(json_object_get(doc, "id"));
    char location[64];

    if (id != NULL) {
        snprintf(location, sizeof(location), "/v1/%s/%s", scope, id);
        http_set_header(req, "Location", location);
    }
    json_decref(doc);
}

/* Answers from a stored record; true when one was found (or on error). */
static bool replay(struct payment *p, struct http_req *req,
                   const struct pay_op *op)
{
    struct pay_thread *t = http_req_thread_data(req);
    struct store_stmt *st;
    bool found = false;

    if (t == NULL || t->conn == NULL ||
        store_prepare(t->conn, SQL_IDEM_GET, &st) != ERR_OK) {
        http_respond_unavailable(req, PAY_RETRY_AFTER_S,
                                 "the payment database is unavailable");
        return true;
    }
    store_bind_text(st, 1, op->scope);
    store_bind_text(st, 2, op->key);
    store_bind_int(st, 3, clock_wall_ms(p->clock) - PAY_IDEM_TTL_MS);
    if (store_step(st) == STORE_ROW) {
        found = true;
        if (strcmp(store_col_text(st, 0), op->request_hash) != 0) {
            http_respond_problem(req, 422, "idempotency-key-reused",
                                 "Idempotency key reused",
                                 "this Idempotency-Key was used for a "
                                 "different request");
        } else {
            const char *body = store_col_text(st, 3);
            int status = (int)store_col_int(st, 1);
            http_set_header(req, "Idempotent-Replayed", "true");
            if (status == 201)
                set_location(req, op->scope, body);
            http_respond_bytes(req, status, store_col_text(st, 2), body,
                               strlen(body));
        }
    }
    store_reset(st);
    return found;
}

bool pay_idem_begin(struct payment *p, struct http_req *req, struct pay_op *op)
{
    const char *key = http_req_header(req, "idempotency-key");
    char text[RUNNING_TEXT];
    size_t len;
    const char *body = http_req_body(req, &len);

    if (key == NULL) {
        http_respond_problem(req, 400, "idempotency-key-required",
                             "Idempotency-Key required",
                             "every %s attempt needs an Idempotency-Key "
                             "header, a new one per attempt",
                             op->kind == PAY_CHARGE ? "charge" : "refund");
        return true;
    }
    if (!key_ok(key)) {
        http_respond_problem(req, 400, "invalid-idempotency-key",
                             "Invalid Idempotency-Key",
                             "Idempotency-Key must be 1 to %d visible ASCII "
                             "characters",
                             PAY_KEY_MAX);
        return true;
    }
    snprintf(op->key, sizeof(op->key), "%s", key);
    uint64_t h =
        fnv64(FNV_START, http_req_path(req), strlen(http_req_path(req)));
    h = fnv64(h, "\n", 1);
    h = fnv64(h, body, len);
    snprintf(op->request_hash, sizeof(op->request_hash), "%016llx",
             (unsigned long long)h);

    running_text(op, text);
    int added = keyset_add(p->running, text);
    if (added == 0) {
        http_respond_problem(req, 409, "idempotency-key-in-flight",
                             "Request in progress",
                             "a request with this Idempotency-Key is still "
                             "running; retry later");
        op->key[0] = '\0';
        return true;
    }
    if (added < 0) {
        http_respond_unavailable(req, PAY_RETRY_AFTER_S,
                                 "too many requests in flight");
        op->key[0] = '\0';
        return true;
    }
    if (replay(p, req, op)) {
        keyset_remove(p->running, text);
        op->key[0] = '\0';
        return true;
    }
    return false;
}

void pay_idem_end(struct payment *p, struct pay_op *op)
{
    char text[RUNNING_TEXT];

    if (op->key[0] == '\0')
        return;
    running_text(op, text);
    keyset_remove(p->running, text);
    op->key[0] = '\0';
}

static const char SQL_IDEM_PUT[] =
    "INSERT INTO idempotency (scope, key, request_hash, status, "
    "content_type, response, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (scope, key) DO UPDATE SET request_hash = excluded."
    "request_hash, status = excluded.status, content_type = "
    "excluded.content_type, response = excluded.response, created_at = "
    "excluded.created_at";

int pay_idem_store(struct store_conn *c, const struct pay_op *op, int status,
                   const char *response)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_IDEM_PUT, &st);

    if (rc != ERR_OK)
        return rc;
    /* A record past its time may still be in the table: it is replaced,
     * as the key is free again. */
    store_bind_text(st, 1, op->scope);
    store_bind_text(st, 2, op->key);
    store_bind_text(st, 3, op->request_hash);
    store_bind_int(st, 4, status);
    store_bind_text(
        st, 5, status >= 400 ? "application/problem+json" : "application/json");
    store_bind_text(st, 6, response);
    store_bind_int(st, 7, op->now_ms);
    rc = store_step(st);
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

static const char SQL_IDEM_EXPIRE[] =
    "DELETE FROM idempotency WHERE (scope, key) IN (SELECT scope, key FROM "
    "idempotency WHERE created_at < ? LIMIT 1000)";

void pay_idem_expire_old(struct payment *p, int64_t now_ms)
{
    /* Bounded batches (LIMIT in the statement): a caller ticks often. */
    (void)store_submit_exec(p->store, SQL_IDEM_EXPIRE,
                            now_ms - PAY_IDEM_TTL_MS);
}
