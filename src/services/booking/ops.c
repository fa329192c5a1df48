/*
 * ops.c - moving a request's work to the thread that owns its show, and
 * its answer back to the thread that holds the request.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "services/booking/internal.h"

struct booking_op *booking_op_new(struct booking *b, enum booking_op_kind k)
{
    struct booking_op *op = calloc(1, sizeof(*op));

    if (op == NULL)
        return NULL;
    op->b = b;
    op->kind = k;
    op->w.arg = op;
    return op;
}

void booking_op_free(struct booking_op *op)
{
    if (op == NULL)
        return;
    json_decref(op->body);
    free(op->response);
    free(op->seats_json);
    free(op);
}

void booking_op_fail(struct booking_op *op, int status, const char *slug,
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

static void answer_op(struct http_req *req, void *arg)
{
    struct booking_op *op = arg;

    if (req == NULL) {
        idem_end(op->b, op);
        booking_op_free(op);
        return;
    }
    /*
     * The key leaves the set in flight before the answer goes out: a
     * client that has its answer and repeats the request at once must
     * find the stored answer (committed with the change), not "in
     * flight".  A refusal's record is queued here and keeps the key in
     * flight until it is written.
     */
    idem_end(op->b, op);
    if (op->status == 503) {
        http_respond_unavailable(
            req, op->retry_after_s > 0 ? op->retry_after_s : 1, op->detail);
    } else if (op->status >= 400) {
        /* The body stays with the op: idem_end stores it for replays. */
        http_respond_problem_ext(req, op->status, op->slug, op->title,
                                 op->detail, json_incref(op->body));
    } else if (op->kind == OP_SEATS) {
        json_t *body = op->body;
        op->body = NULL;
        http_respond_cacheable(req, body, "no-cache");
    } else {
        if (op->status == 201) {
            char location[64];
            if (op->kind == OP_CHECKOUT)
                snprintf(location, sizeof(location), "/v1/bookings/%s",
                         op->booking_id);
            else
                snprintf(location, sizeof(location), "/v1/holds/%s",
                         op->hold_id);
            http_set_header(req, "Location", location);
        }
        http_respond_bytes(req, op->status, "application/json", op->response,
                           strlen(op->response));
    }
    booking_op_free(op);
}

void booking_op_finish(struct booking_op *op)
{
    http_async_post(op->async, answer_op, op);
}

static void on_op_arrive(void *thread_data, void *arg)
{
    booking_run_op(thread_data, arg);
}

void booking_op_dispatch(struct http_req *req, struct booking_op *op)
{
    struct booking *b = op->b;

    op->owner = booking_owner(b, op->show_id);
    op->async = http_req_defer(req);
    /* The request's own thread owns the show: no hand-off needed. */
    if (http_server_on_thread(b->server, op->owner)) {
        booking_run_op(http_req_thread_data(req), op);
        return;
    }
    if (!http_server_post(b->server, op->owner, on_op_arrive, op)) {
        booking_op_fail(op, 503, "unavailable", "Service unavailable",
                        "the service is shutting down");
        booking_op_finish(op);
    }
}

void booking_run_op(struct booking_thread *t, struct booking_op *op)
{
    struct show_inv *inv = booking_show_for(t, op);

    if (inv == NULL)
        return; /* waits for the show, or was answered */
    switch (op->kind) {
    case OP_SEATS: booking_op_seats(t, op, inv); break;
    case OP_HOLD: booking_op_hold(t, op, inv); break;
    case OP_RELEASE: booking_op_release(t, op, inv); break;
    case OP_EXTEND: booking_op_extend(t, op, inv); break;
    case OP_CHECKOUT: booking_op_checkout(t, op, inv); break;
    case OP_CANCEL: booking_op_cancel(t, op, inv); break;
    }
}
