/*
 * client.h - a small blocking HTTP/1.1 client, for worker threads.
 *
 * One request per connection (`Connection: close`), spoken over a
 * non-blocking socket with poll(), so a single deadline bounds connecting,
 * sending and reading the whole response.  It blocks the calling thread for
 * up to that deadline: never call it from an event-loop thread.
 *
 * What it sends: the request line, `Host`, `User-Agent: marquee`,
 * `Connection: close`, `Content-Length` (whenever a body is given, and for
 * every method but GET and HEAD), `Content-Type: application/json` when a
 * body is given and the extra headers carry no Content-Type, then the extra
 * headers and the body.
 *
 * What it reads: a status line (HTTP/1.0 or 1.1), headers up to
 * HTTP_CLIENT_HEADER_MAX bytes in all, and a body framed by
 * `Transfer-Encoding: chunked`, `Content-Length`, or the end of the
 * connection.  1xx interim answers are skipped; HEAD answers and 204 and
 * 304 have no body.  Bodies are returned as they come (no decompression:
 * Accept-Encoding is never sent).
 *
 * Names in base_url are resolved with getaddrinfo(), which the deadline
 * does not bound; configure IP literals where that matters.
 */
#ifndef MARQUEE_HTTP_CLIENT_H
#define MARQUEE_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_CLIENT_BODY_MAX   (4u << 20)  /* largest response body accepted */
#define HTTP_CLIENT_HEADER_MAX (16u << 10) /* status line + headers, bytes */
#define HTTP_CLIENT_HOST_MAX   255         /* host part of base_url */
#define HTTP_CLIENT_PATH_MAX   4096        /* request target */
#define HTTP_CLIENT_METHOD_MAX 16

struct http_client_response {
    int status;
    char *body; /* NUL-terminated, malloc'd, owned by the response */
    size_t len;
    /* The Content-Type value, cut to fit; "" when the answer had none. */
    char content_type[64];
};

/*
 * Sends one request and reads the whole response.
 *
 * base_url: "http://host:port" (an IPv4 literal, an IPv6 literal in
 * brackets, or a name; the port defaults to 80; one trailing '/' is
 * allowed).  method: upper-case letters.  path: starts with '/', no spaces
 * or control characters.  headers: extra header lines, each ending in
 * "\r\n", or NULL.  body: body_len bytes, or NULL for no body.  timeout_ms
 * (> 0) covers connect + send + the whole response.
 *
 * Returns ERR_OK when a whole response was read, whatever its status; then
 * *out owns a body that is never NULL ("" when there was none): free it
 * with http_client_response_free().  Otherwise ERR_TIMEOUT, ERR_IO
 * (refused, reset, closed early), ERR_TOOBIG (body over
 * HTTP_CLIENT_BODY_MAX), ERR_INVALID (bad arguments or URL, malformed
 * response, headers over HTTP_CLIENT_HEADER_MAX) or ERR_NOMEM, with *out
 * zeroed and owning nothing.  A failure is logged once, as a warning,
 * without bodies or header values.
 */
int http_client_request(const char *base_url, const char *method,
                        const char *path, const char *headers, const char *body,
                        size_t body_len, int timeout_ms,
                        struct http_client_response *out);

/* Frees what r owns and zeroes it; r may be zeroed already. */
void http_client_response_free(struct http_client_response *r);

/*
 * Whether base_url is one http_client_request() accepts, without any I/O.
 * Added so that services can refuse a bad URL in their configuration at
 * start-up instead of at the first request.
 */
bool http_client_url_valid(const char *base_url);

#endif
