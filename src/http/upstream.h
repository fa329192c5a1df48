/*
 * upstream.h - an asynchronous HTTP/1.1 client for event-loop threads.
 *
 * The gateway's proxy path: a request to one upstream instance (an IP
 * literal and a port) is sent from a loop thread of an http_server, and
 * its answer, read whole into memory, comes back through a callback on
 * that same thread.  Nothing blocks and no lock is taken per call.
 *
 * Each instance keeps, per loop thread, a pool of idle keep-alive
 * connections (h2o sockets left on their loop, answers parsed with
 * picohttpparser): at most max_idle of them, each closed after
 * HTTP_UPSTREAM_IDLE_MS unused or as soon as the upstream closes it.  A
 * connection returns to its pool only when its answer was complete, with
 * nothing after it, and the upstream allowed keep-alive.
 *
 * One-shot timers (http_timer_start, http_timer_cancel) and the loop's
 * clock (http_loop_now_ms) are declared in http/http.h, which this header
 * includes.
 */
#ifndef MARQUEE_HTTP_UPSTREAM_H
#define MARQUEE_HTTP_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

struct http_upstream;      /* one upstream instance (host:port) */
struct http_upstream_call; /* one request in progress */

/* Idle keep-alive connections per instance per loop thread, at most. */
#define HTTP_UPSTREAM_IDLE_MAX 64
/* An idle pooled connection is closed after this long unused; below the
 * services' own idle limit (http.request_timeout_ms), so that the client,
 * not the server, closes it and a reused connection is rarely dead. */
#define HTTP_UPSTREAM_IDLE_MS 2000
/* Longest timeout of a call; larger values are cut to it. */
#define HTTP_UPSTREAM_TIMEOUT_MAX_MS 600000
/* Response header fields at most (h2o's parser limit). */
#define HTTP_UPSTREAM_HEADERS_MAX 100

/*
 * Creates an instance for server s: host is an IPv4 or IPv6 literal
 * ("127.0.0.1", "::1", no brackets), port 1..65535, max_idle
 * 1..HTTP_UPSTREAM_IDLE_MAX.  Callable from any thread once the server
 * exists (also before it runs).  On ERR_OK *out holds one reference.
 * Returns ERR_OK, ERR_INVALID (bad host, port or max_idle) or ERR_NOMEM.
 */
int http_upstream_create(struct http_server *s, const char *host, int port,
                         int max_idle, struct http_upstream **out);

/*
 * Reference counting, from any thread: an instance that left the
 * gateway's pool may still have calls in flight on several threads.  The
 * last release frees it; its per-thread pools are closed on their own
 * threads (or by those threads when they stop).  Calls in flight keep
 * their own reference, so releasing while they run is safe.
 */
void http_upstream_retain(struct http_upstream *u);
void http_upstream_release(struct http_upstream *u);

/* "host:port" of the instance ("[::1]:8080" for IPv6), owned by u. */
const char *http_upstream_name(const struct http_upstream *u);

struct http_upstream_request {
    const char *method; /* "GET", ...: upper-case letters */
    const char *target; /* path and query, "/v1/shows/7?x=1" */
    /* Sent as given, in order, except Host, Content-Length, Connection,
     * Keep-Alive and Transfer-Encoding, which the client sets itself, and
     * any field whose name or value holds CR, LF or NUL. */
    const struct http_header_kv *headers;
    size_t nheaders;
    const void *body; /* body_len 0: none */
    size_t body_len;
    int connect_timeout_ms;    /* to have a connection (new or pooled) */
    int first_byte_timeout_ms; /* from sending to the answer's first byte */
    int total_timeout_ms;      /* the whole call */
    size_t max_response_bytes; /* a body larger than this fails TOOBIG */
};

enum http_upstream_result {
    HTTP_UPSTREAM_OK,
    HTTP_UPSTREAM_CONNECT, /* refused, unreachable, connect timeout: nothing
                              was sent */
    HTTP_UPSTREAM_TIMEOUT, /* first-byte or total timeout */
    HTTP_UPSTREAM_IO,      /* reset, closed early, malformed answer */
    HTTP_UPSTREAM_TOOBIG,  /* answer over max_response_bytes */
};
#define HTTP_UPSTREAM_RESULTS 5

/* "ok", "connect", "timeout", "io", "toobig". */
const char *http_upstream_result_name(enum http_upstream_result r);

/* An answer; header names in lower case.  Owned by the client. */
struct http_upstream_response {
    int status;
    const struct http_header_kv *headers;
    size_t nheaders;
    const char *body; /* NUL-terminated for convenience; "" when none */
    size_t body_len;
};

/*
 * resp is NULL unless result is OK; it is valid only during the call.
 * first_byte tells whether any byte of an answer arrived (a TIMEOUT or IO
 * after the first byte must not be retried by the caller).
 */
typedef void (*http_upstream_done_fn)(void *arg,
                                      enum http_upstream_result result,
                                      const struct http_upstream_response *resp,
                                      bool first_byte);

/*
 * Sends one request.  Must be called on loop thread `thread` of the
 * server (a handler, a task, a timer or a done callback there); done runs
 * later on that thread exactly once, never inside this call, unless the
 * call is cancelled first.  rq and everything it points to are copied
 * before this returns.  Timeouts are 1..HTTP_UPSTREAM_TIMEOUT_MAX_MS
 * (larger are cut, smaller become 1).  Host, Content-Length (when there
 * is a body, and always for POST, PUT and PATCH) and Connection:
 * keep-alive are set by the client.
 *
 * A connection is reused when the previous answer was complete and
 * keep-alive; a reused connection that turns out closed by the peer
 * before any byte is answered is retried once on a new connection (as
 * browsers and proxies do: the upstream cannot have acted on it).
 *
 * Returns the call, valid until done starts or the call is cancelled, or
 * NULL (and done is never called) only when out of memory or once the
 * thread has finished its shutdown drain; calls still in flight then end
 * with HTTP_UPSTREAM_IO.  The call keeps a reference to u.
 */
struct http_upstream_call *
http_upstream_send(struct http_upstream *u, int thread,
                   const struct http_upstream_request *rq,
                   http_upstream_done_fn done, void *arg);

/*
 * Abandons a call; done is then never called.  Its connection is closed
 * (it may be mid-answer).  Must be called on the call's thread, before
 * done has started.
 */
void http_upstream_cancel(struct http_upstream_call *c);

#endif
