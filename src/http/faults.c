/*
 * faults.c - what happens to a request between its arrival and its
 * handler: the fault switch of resilience tests, then its deadline.
 *
 * The fault switch (http.faults) lets a test make a service fail on
 * purpose through PUT /internal/v1/faults: answer a given status, with a
 * given probability, after a given delay.  The three values live packed
 * in one atomic word of the server, so every loop thread reads a
 * consistent set without a lock.  A delay is a timer on the request's
 * own thread: the loop goes on serving others meanwhile.
 *
 * Deadlines: X-Deadline-Ms carries the caller's remaining budget.  Work
 * whose caller has already given up is wasted, so a request whose budget
 * is spent when its handler would run gets 504 without running it.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "http/internal.h"

/* Longest X-Deadline-Ms value accepted: 86400000 has 8 digits. */
#define DEADLINE_DIGITS_MAX 8

struct fault {
    int status;   /* 0: none */
    int delay_ms; /* 0..HTTP_FAULT_DELAY_MAX */
    uint32_t rate_ppm;
};

static uint64_t fault_pack(struct fault f)
{
    return (uint64_t)f.status | (uint64_t)f.delay_ms << 10 |
           (uint64_t)f.rate_ppm << 26;
}

static struct fault fault_unpack(uint64_t v)
{
    struct fault f = {
        .status = (int)(v & 0x3ff),
        .delay_ms = (int)(v >> 10 & 0xffff),
        .rate_ppm = (uint32_t)(v >> 26 & 0xfffff),
    };
    return f;
}

static bool path_is(const struct http_req *req, const char *p)
{
    size_t n = strlen(p), len = strlen(req->path);

    /* A trailing slash names the same resource, as in routing. */
    if (len == n + 1 && req->path[n] == '/')
        len = n;
    return len == n && memcmp(req->path, p, n) == 0;
}

static bool deadline_exempt(const struct http_req *req)
{
    return path_is(req, "/healthz") || path_is(req, "/readyz") ||
           path_is(req, "/metrics");
}

/* /readyz follows faults, so that health checks see a failing service. */
static bool fault_exempt(const struct http_req *req)
{
    return path_is(req, "/healthz") || path_is(req, "/metrics") ||
           path_is(req, HTTP_FAULTS_PATH);
}

/* --- deadlines ----------------------------------------------------------- */

/* Reads X-Deadline-Ms at arrival; false when it is malformed. */
static bool deadline_read(struct http_req *req)
{
    h2o_req_t *h = req->h2o;
    ssize_t i =
        h2o_find_header_by_str(&h->headers, H2O_STRLIT("x-deadline-ms"), -1);
    int64_t budget = 0;

    if (i < 0)
        return true;
    h2o_iovec_t v = h->headers.entries[i].value;
    if (v.len == 0 || v.len > DEADLINE_DIGITS_MAX)
        return false;
    for (size_t k = 0; k < v.len; k++) {
        if (v.base[k] < '0' || v.base[k] > '9')
            return false;
        budget = budget * 10 + (v.base[k] - '0');
    }
    if (budget > HTTP_DEADLINE_MAX_MS)
        return false;
    req->deadline_ms = req->start_ms + budget;
    /* Monotonic time is far past 0 ms in practice; 0 means "none". */
    if (req->deadline_ms == 0)
        req->deadline_ms = 1;
    return true;
}

int64_t http_req_deadline_ms(struct http_req *req)
{
    return req->deadline_ms;
}

bool http_req_deadline_passed(struct http_req *req)
{
    return req->deadline_ms != 0 && http_mono_ms() >= req->deadline_ms;
}

/* The checks that guard a handler, then the handler. */
static void run_guarded(struct http_req *req)
{
    if (!deadline_exempt(req) && http_req_deadline_passed(req)) {
        http_respond_problem(req, 504, "deadline-exceeded", "Deadline exceeded",
                             "the request's X-Deadline-Ms budget was spent "
                             "before it could be handled");
        return;
    }
    http_route_run(req);
}

/* --- faults -------------------------------------------------------------- */

static void answer_fault(struct http_req *req, int status)
{
    if (status == 503 || status == 429)
        http_set_header(req, "Retry-After", "1");
    http_respond_problem(req, status, "injected-fault", "Injected fault",
                         "this answer was injected through %s",
                         HTTP_FAULTS_PATH);
}

static void on_fault_delay(void *arg)
{
    struct http_req *req = arg;
    struct fault f = fault_unpack(atomic_load(&req->thread->server->faults));

    req->delay = NULL;
    /* The status is the one in force when the delay ends. */
    if (f.status != 0)
        answer_fault(req, f.status);
    else
        run_guarded(req);
}

void http_dispatch(struct http_req *req)
{
    struct http_server *s = req->thread->server;

    if (!deadline_exempt(req) && !deadline_read(req)) {
        http_respond_problem(req, 400, "bad-deadline", "Bad deadline",
                             "X-Deadline-Ms must be a whole number of "
                             "milliseconds from 0 to %d",
                             HTTP_DEADLINE_MAX_MS);
        return;
    }

    struct fault f = fault_unpack(atomic_load(&s->faults));
    bool hit = (f.status != 0 || f.delay_ms > 0) && !fault_exempt(req) &&
               rand_below(&req->thread->rng, HTTP_FAULT_RATE_ONE) < f.rate_ppm;
    if (!hit) {
        run_guarded(req);
        return;
    }
    if (f.delay_ms > 0) {
        req->delay = http_timer_start(s, req->thread->index, f.delay_ms,
                                      on_fault_delay, req);
        if (req->delay != NULL)
            return;
        /* No timer (shutting down, out of memory): answer at once. */
    }
    if (f.status != 0)
        answer_fault(req, f.status);
    else
        run_guarded(req);
}

/* --- the endpoint -------------------------------------------------------- */

static json_t *fault_json(struct fault f)
{
    return json_pack("{s:i, s:f, s:i}", "status", f.status, "rate",
                     (double)f.rate_ppm / HTTP_FAULT_RATE_ONE, "delay_ms",
                     f.delay_ms);
}

void http_handle_faults_get(struct http_req *req, void *app)
{
    struct fault f = fault_unpack(atomic_load(&req->thread->server->faults));

    (void)app;
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200, fault_json(f));
}

static void field_error(json_t *errors, const char *field, const char *code,
                        const char *detail)
{
    json_array_append_new(errors, json_pack("{s:s, s:s, s:s}", "field", field,
                                            "code", code, "detail", detail));
}

/* An integer member in [min, max]; absent gives def. */
static int int_member(json_t *body, const char *key, int def, int min, int max,
                      json_t *errors)
{
    json_t *v = json_object_get(body, key);

    if (v == NULL)
        return def;
    if (!json_is_integer(v)) {
        field_error(errors, key, "wrong-type", "must be an integer");
        return def;
    }
    json_int_t n = json_integer_value(v);
    if (n < min || n > max) {
        char detail[96];
        snprintf(detail, sizeof(detail), "must be from %d to %d", min, max);
        field_error(errors, key, "out-of-range", detail);
        return def;
    }
    return (int)n;
}

/* status 0 clears the fault; otherwise 400..599. */
static int status_member(json_t *body, json_t *errors)
{
    if (json_object_get(body, "status") == NULL) {
        field_error(errors, "status", "required",
                    "status is required (0 clears the fault)");
        return 0;
    }
    int st = int_member(body, "status", 0, 0, 599, errors);
    if (st != 0 && st < 400)
        field_error(errors, "status", "out-of-range",
                    "must be 0 (no fault) or from 400 to 599");
    return st;
}

static uint32_t rate_member(json_t *body, json_t *errors)
{
    json_t *v = json_object_get(body, "rate");

    if (v == NULL)
        return HTTP_FAULT_RATE_ONE;
    if (!json_is_number(v)) {
        field_error(errors, "rate", "wrong-type", "must be a number");
        return 0;
    }
    double r = json_number_value(v);
    if (!(r >= 0 && r <= 1)) {
        field_error(errors, "rate", "out-of-range", "must be from 0 to 1");
        return 0;
    }
    return (uint32_t)(r * HTTP_FAULT_RATE_ONE + 0.5);
}

void http_handle_faults_put(struct http_req *req, void *app)
{
    json_t *body = http_req_json(req);
    json_t *errors;
    const char *key;
    json_t *v;
    struct fault f;

    (void)app;
    if (body == NULL)
        return;
    errors = json_array();
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "status") != 0 && strcmp(key, "rate") != 0 &&
            strcmp(key, "delay_ms") != 0)
            field_error(errors, key, "unknown-field",
                        "only status, rate and delay_ms are known");
    }
    f.status = status_member(body, errors);
    f.rate_ppm = rate_member(body, errors);
    f.delay_ms =
        int_member(body, "delay_ms", 0, 0, HTTP_FAULT_DELAY_MAX, errors);
    if (json_array_size(errors) > 0) {
        http_respond_problem_ext(req, 422, "validation-failed",
                                 "Validation failed",
                                 "the fault setting has invalid fields",
                                 json_pack("{s:o}", "errors", errors));
        return;
    }
    json_decref(errors);
    atomic_store(&req->thread->server->faults, fault_pack(f));
    log_warn("http", "faults_set service=%s status=%d rate=%.3f delay_ms=%d",
             req->thread->server->cfg.name, f.status,
             (double)f.rate_ppm / HTTP_FAULT_RATE_ONE, f.delay_ms);
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200, fault_json(f));
}
