/*
 * ops.c - the life of a charge or refund attempt: made on the request's
 * thread, answered there at the end, wherever its work ran between.
 */
#include <ctype.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "services/payment/internal.h"

struct pay_op *pay_op_new(struct payment *p, enum pay_kind kind)
{
    struct pay_op *op = calloc(1, sizeof(*op));

    if (op == NULL)
        return NULL;
    op->p = p;
    op->kind = kind;
    op->w.arg = op;
    snprintf(op->scope, sizeof(op->scope), "%s",
             kind == PAY_CHARGE ? "charges" : "refunds");
    return op;
}

void pay_op_free(struct pay_op *op)
{
    if (op == NULL)
        return;
    json_decref(op->ext);
    free(op->response);
    free(op);
}

void pay_op_fail(struct pay_op *op, int status, const char *slug,
                 const char *title, const char *fmt, ...)
{
    va_list ap;

    op->status = status;
    snprintf(op->slug, sizeof(op->slug), "%s", slug);
    snprintf(op->title, sizeof(op->title), "%s", title);
    va_start(ap, fmt);
    vsnprintf(op->detail, sizeof(op->detail), fmt, ap);
    va_end(ap);
}

char *pay_op_problem_text(const struct pay_op *op)
{
    char type[64];
    json_t *doc;
    char *text;

    snprintf(type, sizeof(type), "/problems/%s", op->slug);
    doc = json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title", op->title,
                    "status", op->status, "detail", op->detail);
    if (doc == NULL)
        return NULL;
    if (op->ext != NULL)
        json_object_update(doc, op->ext);
    text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

static void set_location(struct http_req *req, const char *scope,
                         const char *id)
{
    char location[64];

    snprintf(location, sizeof(location), "/v1/%s/%s", scope, id);
    http_set_header(req, "Location", location);
}

static void answer(struct http_req *req, void *arg)
{
    struct pay_op *op = arg;
    struct payment *p = op->p;

    /* The outcome is stored: the key leaves the set in flight before the
     * answer goes out, so a client that repeats the request as soon as it
     * has the answer gets the answer again, not "in flight". */
    pay_idem_end(p, op);
    if (req == NULL) {
        /* The client left; the outcome is stored for its retry. */
    } else if (op->status >= 400) {
        if (op->status == 503) {
            char v[16];
            snprintf(v, sizeof(v), "%d",
                     strcmp(op->slug, "provider-unavailable") == 0
                         ? PAY_OUTAGE_RETRY_S
                         : PAY_RETRY_AFTER_S);
            http_set_header(req, "Retry-After", v);
        }
        /* The members stay with the op until it is freed. */
        http_respond_problem_ext(req, op->status, op->slug, op->title,
                                 op->detail, json_incref(op->ext));
    } else {
        set_location(req, op->scope, op->id);
        http_respond_bytes(req, op->status, "application/json", op->response,
                           strlen(op->response));
    }
    pay_op_free(op);
}

void pay_op_finish(struct pay_op *op)
{
    /* Past the server's run its loops take no posts: the outcome (if
     * any) is stored, and the client's retry will find it. */
    if (atomic_load(&op->p->closing)) {
        log_warn("payment", "answer_dropped_at_shutdown kind=%s",
                 op->kind == PAY_CHARGE ? "charge" : "refund");
        answer(NULL, op);
        return;
    }
    http_async_post(op->async, answer, op);
}

void pay_new_id(struct rand *rng, const char *prefix, char out[PAY_ID_LEN])
{
    snprintf(out, PAY_ID_LEN, "%s_%016llx", prefix,
             (unsigned long long)rand_next(rng));
}

bool pay_id_ok(const char *id, const char *prefix)
{
    size_t n = strlen(prefix);

    if (id == NULL || strncmp(id, prefix, n) != 0 || id[n] != '_' ||
        strlen(id + n + 1) != 16)
        return false;
    for (const char *c = id + n + 1; *c != '\0'; c++)
        if (!isxdigit((unsigned char)*c) || isupper((unsigned char)*c))
            return false;
    return true;
}
