/*
 * observe.c - what every HTTP server reports about itself on GET /metrics:
 * requests per route, method and status class, their duration, requests
 * in flight, open connections, and each event loop's lag.
 *
 * The series of every route are looked up once, when the server is made,
 * so counting a request takes no lock: two relaxed atomic additions and a
 * histogram observation.  Label values are the route's pattern, never the
 * raw path, so cardinality is bounded by the route table.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "base/log.h"
#include "http/internal.h"

/* How often each loop's lag probe fires, and the window it reports on. */
#define HTTP_LAG_PROBE_MS  100
#define HTTP_LAG_WINDOW_MS 1000
/* The route label of requests that matched no route. */
#define HTTP_UNMATCHED "unmatched"

static const char *const status_classes[HTTP_STATUS_CLASSES] = {
    "1xx", "2xx", "3xx", "4xx", "5xx",
};

int64_t http_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void route_metrics_make(struct http_route_metrics *rm,
                               struct metrics_family *requests,
                               struct metrics_family *duration,
                               const char *route, const char *method)
{
    for (int c = 0; c < HTTP_STATUS_CLASSES; c++) {
        const char *values[] = {route, method, status_classes[c]};
        rm->requests[c] = metrics_series(requests, values);
    }
    const char *values[] = {route, method};
    rm->duration = metrics_series(duration, values);
}

void http_metrics_setup(struct http_server *s)
{
    static const char *const req_labels[] = {"route", "method", "code"};
    struct metrics *m = metrics_process();
    struct metrics_family *requests = metrics_family(
        m, METRICS_COUNTER, "marquee_http_requests_total",
        "HTTP requests answered, by route pattern, method and status class.", 3,
        req_labels, NULL, 0);
    struct metrics_family *duration = metrics_family(
        m, METRICS_HISTOGRAM, "marquee_http_request_duration_seconds",
        "Time from a request's arrival until its answer was written.", 2,
        req_labels, metrics_latency_buckets, metrics_latency_nbuckets);

    for (size_t i = 0; i < s->nroutes; i++) {
        struct http_route_compiled *r = &s->routes[i];
        route_metrics_make(&r->metrics, requests, duration, r->pattern,
                           r->method);
    }
    route_metrics_make(&s->unmatched, requests, duration, HTTP_UNMATCHED,
                       "other");
    s->inflight = metrics_gauge(m, "marquee_http_requests_in_flight",
                                "HTTP requests received and not yet answered.");
    s->connections = metrics_gauge(m, "marquee_http_connections",
                                   "Open client connections.");
    metrics_add_process_collector(m);
}

void http_metrics_request_start(struct http_req *req)
{
    req->start_ns = http_now_ns();
    metrics_gauge_add(req->thread->server->inflight, 1);
}

void http_metrics_request_end(struct http_req *req)
{
    struct http_server *s = req->thread->server;
    const struct http_route_metrics *rm =
        req->route != NULL ? &req->route->metrics : &s->unmatched;

    metrics_gauge_add(s->inflight, -1);
    /* A request whose client left before it was answered has no status:
     * neither the server's success nor its failure. */
    if (req->status < 100 || req->status > 599)
        return;
    metrics_inc(rm->requests[req->status / 100 - 1]);
    metrics_observe(rm->duration,
                    (double)(http_now_ns() - req->start_ns) / 1e9);
}

/* --- GET /metrics ------------------------------------------------------- */

void http_handle_metrics(struct http_req *req, void *app)
{
    char *text = NULL;
    size_t len = 0;

    (void)app;
    int rc = metrics_render(metrics_process(), &text, &len);
    if (rc != ERR_OK) {
        log_error("http", "metrics_render_failed err=%s", err_name(rc));
        http_respond_unavailable(req, 1, "metrics could not be rendered");
        return;
    }
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_bytes(req, 200, METRICS_CONTENT_TYPE, text, len);
    free(text);
}

/* --- event-loop lag ----------------------------------------------------- */

/*
 * A timer armed every HTTP_LAG_PROBE_MS fires late by as long as the loop
 * was busy with other work.  The gauge shows the worst lateness of the
 * last complete window, so a scrape every few seconds still sees a stall
 * of one long callback.
 */
static void on_lag_probe(h2o_timeout_entry_t *entry)
{
    struct http_thread *t =
        H2O_STRUCT_FROM_MEMBER(struct http_thread, lag_entry, entry);
    int64_t now = http_now_ns();
    int64_t late = now - t->lag_due_ns;

    if (late > t->lag_window_max_ns)
        t->lag_window_max_ns = late;
    if (now - t->lag_window_start_ns >= (int64_t)HTTP_LAG_WINDOW_MS * 1000000) {
        metrics_set(t->lag, (double)t->lag_window_max_ns / 1e9);
        t->lag_window_max_ns = 0;
        t->lag_window_start_ns = now;
    }
    t->lag_due_ns = now + (int64_t)HTTP_LAG_PROBE_MS * 1000000;
    h2o_timeout_link(t->ctx.loop, &t->lag_timeout, &t->lag_entry);
}

void http_metrics_lag_start(struct http_thread *t)
{
    static const char *const labels[] = {"thread"};
    struct metrics_family *f = metrics_family(
        metrics_process(), METRICS_GAUGE, "marquee_event_loop_lag_seconds",
        "How late the event loop's periodic timer fired, worst over the last "
        "second.",
        1, labels, NULL, 0);
    char index[16];

    snprintf(index, sizeof(index), "%d", t->index);
    const char *values[] = {index};
    t->lag = metrics_series(f, values);
    metrics_set(t->lag, 0);
    h2o_timeout_init(t->ctx.loop, &t->lag_timeout, HTTP_LAG_PROBE_MS);
    t->lag_entry.cb = on_lag_probe;
    t->lag_window_start_ns = http_now_ns();
    t->lag_due_ns =
        t->lag_window_start_ns + (int64_t)HTTP_LAG_PROBE_MS * 1000000;
    h2o_timeout_link(t->ctx.loop, &t->lag_timeout, &t->lag_entry);
    t->lag_armed = true;
}

void http_metrics_lag_stop(struct http_thread *t)
{
    if (!t->lag_armed)
        return;
    if (h2o_timeout_is_linked(&t->lag_entry))
        h2o_timeout_unlink(&t->lag_entry);
    h2o_timeout_dispose(t->ctx.loop, &t->lag_timeout);
    t->lag_armed = false;
}
