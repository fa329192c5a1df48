/*
 * idem.c - Idempotency-Key: a POST repeated with the same key gets the
 * first answer back instead of doing the work twice.
 *
 * Answers are stored in the database, the successful ones in the same
 * transaction as the change they report, so a crash cannot leave a hold
 * without its key or a key without its hold.  Keys in flight are kept in
 * memory behind one mutex (held for a hash lookup, never across I/O), so
 * a second request with a key still running gets 409 at once.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/keyset.h"
#include "base/log.h"
#include "services/booking/internal.h"

#define RUNNING_TEXT (INV_CUSTOMER_MAX + BOOKING_IDEM_KEY_MAX + 2)
_Static_assert(RUNNING_TEXT - 1 <= KEYSET_TEXT_MAX, "keys fit the set");

/* An answer to store after the fact: a refusal, or a change's answer that
 * its own write did not carry. */
struct idem_record {
    struct idem_record *next;
    char customer[INV_CUSTOMER_MAX + 1];
    char key[BOOKING_IDEM_KEY_MAX + 1];
    char hash[20];
    int status;
    char *response;
    int64_t now_ms;
};

/*
 * Which keys may have a stored answer: a Bloom filter over customer and
 * key.  A key it has never seen has none, so the database is not asked;
 * that is nearly every key in a flash sale.  False positives only cost a
 * lookup.  Bits are set with atomic OR, from any thread.
 */
#define IDEM_FILTER_BITS   (1u << 24) /* 2 MiB; about 0.2% false at 1M keys */
#define IDEM_FILTER_HASHES 4

struct idem_running {
    _Atomic uint64_t filter[IDEM_FILTER_BITS / 64];
    struct keyset *keys;  /* "customer\nkey" of requests in flight */
    pthread_mutex_t lock; /* guards pending */
    /* Records waiting to be written, many to a job: in a flash sale most
     * answers are refusals, and one write each would busy the writer. */
    struct idem_record *pending;
    size_t npending;
};

static void filter_add(struct idem_running *r, const char *customer,
                       const char *key);

/* The one filter of the process, for writer jobs that see no booking. */
static struct idem_running *filter_owner;

struct idem_running *idem_running_new(void)
{
    struct idem_running *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->keys = keyset_new(BOOKING_IDEM_RUNNING_MAX);
    if (r->keys == NULL) {
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->lock, NULL);
    filter_owner = r;
    return r;
}

static const char SQL_IDEM_KEYS[] =
    "SELECT customer_id, key FROM idempotency WHERE created_at > ?";

int idem_load(struct booking *b)
{
    struct store_conn *c;
    struct store_stmt *st;
    size_t n = 0;
    int rc = store_conn_open(b->store, &c);

    if (rc != ERR_OK)
        return rc;
    if ((rc = store_prepare(c, SQL_IDEM_KEYS, &st)) == ERR_OK) {
        store_bind_int(st, 1, clock_wall_ms(b->clock) - BOOKING_IDEM_TTL_MS);
        while ((rc = store_step(st)) == STORE_ROW) {
            filter_add(b->running, store_col_text(st, 0),
                       store_col_text(st, 1));
            n++;
        }
        store_reset(st);
    }
    store_conn_close(c);
    log_info("booking", "idempotency_keys_loaded keys=%zu", n);
    return rc < 0 ? rc : ERR_OK;
}

void idem_running_free(struct idem_running *r)
{
    if (r == NULL)
        return;
    while (r->pending != NULL) {
        struct idem_record *next = r->pending->next;
        free(r->pending->response);
        free(r->pending);
        r->pending = next;
    }
    keyset_free(r->keys);
    pthread_mutex_destroy(&r->lock);
    if (filter_owner == r)
        filter_owner = NULL;
    free(r);
}

static uint64_t fnv64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ULL;
    return h;
}

/* Double hashing: bit i is h1 + i * h2. */
static void filter_bits(const char *customer, const char *key,
                        uint32_t out[IDEM_FILTER_HASHES])
{
    uint64_t h = fnv64(1469598103934665603ULL, customer, strlen(customer));
    h = fnv64(h, "\n", 1);
    h = fnv64(h, key, strlen(key));
    uint32_t h1 = (uint32_t)h, h2 = (uint32_t)(h >> 32) | 1;

    for (uint32_t i = 0; i < IDEM_FILTER_HASHES; i++)
        out[i] = (h1 + i * h2) % IDEM_FILTER_BITS;
}

static void filter_add(struct idem_running *r, const char *customer,
                       const char *key)
{
    uint32_t bits[IDEM_FILTER_HASHES];

    filter_bits(customer, key, bits);
    for (int i = 0; i < IDEM_FILTER_HASHES; i++)
        atomic_fetch_or_explicit(&r->filter[bits[i] / 64],
                                 1ULL << (bits[i] % 64), memory_order_release);
}

static bool filter_may_have(struct idem_running *r, const char *customer,
                            const char *key)
{
    uint32_t bits[IDEM_FILTER_HASHES];

    filter_bits(customer, key, bits);
    for (int i = 0; i < IDEM_FILTER_HASHES; i++)
        if ((atomic_load_explicit(&r->filter[bits[i] / 64],
                                  memory_order_acquire) &
             (1ULL << (bits[i] % 64))) == 0)
            return false;
    return true;
}

static void running_text(const char *customer, const char *key,
                         char out[RUNNING_TEXT])
{
    snprintf(out, RUNNING_TEXT, "%s\n%s", customer, key);
}

static bool key_ok(const char *key)
{
    size_t n = strlen(key);

    if (n == 0 || n > BOOKING_IDEM_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (key[i] < 0x21 || key[i] > 0x7e)
            return false;
    return true;
}

static const char SQL_IDEM_GET[] =
    "SELECT request_hash, status, content_type, response FROM idempotency "
    "WHERE customer_id = ? AND key = ? AND created_at > ?";

/* The Location of a replayed 201: the hold or the booking (a booking
 * names its hold) in its body. */
static void set_location(struct http_req *req, const char *body)
{
    json_t *doc = json_loads(body, 0, NULL);
    const char *id = json_string_value(json_object_get(doc, "id"));
    bool booking = json_object_get(doc, "hold_id") != NULL;
    char location[64];

    if (id != NULL) {
        snprintf(location, sizeof(location), "/v1/%s/%s",
                 booking ? "bookings" : "holds", id);
        http_set_header(req, "Location", location);
    }
    json_decref(doc);
}

/* Answers from a stored record; true when one was found. */
static bool replay(struct booking *b, struct http_req *req,
                   struct booking_op *op, const char *key)
{
    struct booking_thread *t = http_req_thread_data(req);
    struct store_stmt *st;
    bool found = false;

    if (store_prepare(t->conn, SQL_IDEM_GET, &st) != ERR_OK) {
        http_respond_unavailable(req, 1, "the booking database is unavailable");
        return true;
    }
    store_bind_text(st, 1, op->customer);
    store_bind_text(st, 2, key);
    store_bind_int(st, 3, clock_wall_ms(b->clock) - BOOKING_IDEM_TTL_MS);
    if (store_step(st) == STORE_ROW) {
        found = true;
        if (strcmp(store_col_text(st, 0), op->request_hash) != 0) {
            http_respond_problem(req, 422, "idempotency-key-reused",
                                 "Idempotency key reused",
                                 "this Idempotency-Key was used for a "
                                 "different request");
        } else {
            const char *body = store_col_text(st, 3);
            http_set_header(req, "Idempotent-Replayed", "true");
            if (store_col_int(st, 1) == 201)
                set_location(req, body);
            http_respond_bytes(req, (int)store_col_int(st, 1),
                               store_col_text(st, 2), body, strlen(body));
        }
    }
    store_reset(st);
    return found;
}

bool idem_begin(struct booking *b, struct http_req *req, struct booking_op *op)
{
    const char *key = http_req_header(req, "idempotency-key");
    char text[RUNNING_TEXT];
    size_t len;
    const char *body = http_req_body(req, &len);

    if (key == NULL)
        return false;
    if (!key_ok(key)) {
        http_respond_problem(req, 400, "invalid-idempotency-key",
                             "Invalid Idempotency-Key",
                             "Idempotency-Key must be 1 to %d visible ASCII "
                             "characters",
                             BOOKING_IDEM_KEY_MAX);
        return true;
    }
    uint64_t h = fnv64(1469598103934665603ULL, http_req_method(req),
                       strlen(http_req_method(req)));
    h = fnv64(h, http_req_path(req), strlen(http_req_path(req)));
    /* No body and an empty object say the same. */
    if (len == 0) {
        body = "{}";
        len = 2;
    }
    h = fnv64(h, body, len);
    snprintf(op->request_hash, sizeof(op->request_hash), "%016llx",
             (unsigned long long)h);

    running_text(op->customer, key, text);
    int added = keyset_add(b->running->keys, text);
    if (added == 0) {
        http_respond_problem(req, 409, "idempotency-key-in-flight",
                             "Request in progress",
                             "a request with this Idempotency-Key is still "
                             "running; retry later");
        return true;
    }
    if (added < 0) {
        http_respond_unavailable(req, 1, "too many requests in flight");
        return true;
    }
    if (filter_may_have(b->running, op->customer, key) &&
        replay(b, req, op, key)) {
        keyset_remove(b->running->keys, text);
        return true;
    }
    snprintf(op->idem_key, sizeof(op->idem_key), "%s", key);
    return false;
}

static const char SQL_IDEM_PUT[] =
    "INSERT OR IGNORE INTO idempotency (customer_id, key, request_hash, "
    "status, content_type, response, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)";

static int store_record(struct store_conn *c, const char *customer,
                        const char *key, const char *hash, int status,
                        const char *response, int64_t now_ms);

int idem_store(struct store_conn *c, const struct booking_op *op, int status,
               const char *response)
{
    return store_record(c, op->customer, op->idem_key, op->request_hash, status,
                        response, op->now_ms);
}

static int store_record(struct store_conn *c, const char *customer,
                        const char *key, const char *hash, int status,
                        const char *response, int64_t now_ms)
{
    struct store_stmt *st;
    int rc = store_prepare(c, SQL_IDEM_PUT, &st);

    if (rc != ERR_OK)
        return rc;
    /* Before the commit: the key stays in flight until after it, so no
     * replay can look between the two. */
    filter_add(filter_owner, customer, key);
    store_bind_text(st, 1, customer);
    store_bind_text(st, 2, key);
    store_bind_text(st, 3, hash);
    store_bind_int(st, 4, status);
    store_bind_text(
        st, 5, status >= 400 ? "application/problem+json" : "application/json");
    store_bind_text(st, 6, response);
    store_bind_int(st, 7, now_ms);
    rc = store_step(st);
    store_reset(st);
    return rc < 0 ? rc : ERR_OK;
}

struct idem_batch {
    struct store_write w;
    struct booking *b;
    struct idem_record *records;
};

static int batch_apply(struct store_conn *c, void *arg)
{
    struct idem_batch *j = arg;
    int rc = ERR_OK;

    for (struct idem_record *r = j->records; r != NULL && rc == ERR_OK;
         r = r->next)
        rc = store_record(c, r->customer, r->key, r->hash, r->status,
                          r->response, r->now_ms);
    return rc;
}

static void records_free(struct idem_running *run, struct idem_record *r)
{
    char text[RUNNING_TEXT];

    while (r != NULL) {
        struct idem_record *next = r->next;
        running_text(r->customer, r->key, text);
        keyset_remove(run->keys, text);
        free(r->response);
        free(r);
        r = next;
    }
}

static void batch_done(void *arg, int rc)
{
    struct idem_batch *j = arg;

    if (rc != ERR_OK)
        log_warn("booking", "idempotency_store_failed error=%s", err_name(rc));
    records_free(j->b->running, j->records);
    free(j);
}

static void submit_records(struct booking *b, struct idem_record *records)
{
    struct idem_batch *j;

    if (records == NULL)
        return;
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        records_free(b->running, records);
        return;
    }
    j->b = b;
    j->records = records;
    j->w.apply = batch_apply;
    j->w.done = batch_done;
    j->w.arg = j;
    if (store_submit(b->store, &j->w) != ERR_OK) {
        records_free(b->running, records);
        free(j);
    }
}

void idem_flush(struct booking *b)
{
    struct idem_running *run = b->running;
    struct idem_record *records;

    pthread_mutex_lock(&run->lock);
    records = run->pending;
    run->pending = NULL;
    run->npending = 0;
    pthread_mutex_unlock(&run->lock);
    submit_records(b, records);
}

/* The problem document the client got, to replay it. */
static char *problem_text(const struct booking_op *op)
{
    json_t *doc =
        json_pack("{s:s, s:s, s:i, s:s}", "type", "", "title", op->title,
                  "status", op->status, "detail", op->detail);
    char type[64];

    snprintf(type, sizeof(type), "/problems/%s", op->slug);
    json_object_set_new(doc, "type", json_string(type));
    if (op->body != NULL)
        json_object_update(doc, op->body);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

void idem_end(struct booking *b, struct booking_op *op)
{
    struct idem_running *run = b->running;
    char text[RUNNING_TEXT];
    struct idem_record *full = NULL;

    if (op->idem_key[0] == '\0')
        return;
    running_text(op->customer, op->idem_key, text);
    /* Stored with the change, or not to be kept: a 503 or a 504 (deadline)
     * may succeed later, and a show unknown now (404) may be announced
     * later. */
    if (op->idem_stored || op->status == 503 || op->status == 504 ||
        op->status == 404 || op->status == 0) {
        keyset_remove(run->keys, text);
        return;
    }
    struct idem_record *r = calloc(1, sizeof(*r));
    if (r != NULL)
        r->response = op->status >= 400
                          ? problem_text(op)
                          : strdup(op->response ? op->response : "{}");
    if (r == NULL || r->response == NULL) {
        free(r);
        keyset_remove(run->keys, text);
        return;
    }
    memcpy(r->customer, op->customer, sizeof(r->customer));
    memcpy(r->key, op->idem_key, sizeof(r->key));
    memcpy(r->hash, op->request_hash, sizeof(r->hash));
    r->status = op->status;
    r->now_ms = clock_wall_ms(b->clock);

    /* Queued until a batch fills or the next tick: the key stays in flight
     * until its answer is stored, so a replay meanwhile is told to wait. */
    pthread_mutex_lock(&run->lock);
    r->next = run->pending;
    run->pending = r;
    if (++run->npending >= BOOKING_IDEM_BATCH_MAX) {
        full = run->pending;
        run->pending = NULL;
        run->npending = 0;
    }
    pthread_mutex_unlock(&run->lock);
    submit_records(b, full);
}

static const char SQL_IDEM_EXPIRE[] =
    "DELETE FROM idempotency WHERE (customer_id, key) IN (SELECT "
    "customer_id, key FROM idempotency WHERE created_at < ? LIMIT 1000)";

void idem_expire_old(struct booking *b, int64_t now_ms)
{
    /* Bounded batches (LIMIT in the statement): a caller ticks often. */
    (void)store_submit_exec(b->store, SQL_IDEM_EXPIRE,
                            now_ms - BOOKING_IDEM_TTL_MS);
}
