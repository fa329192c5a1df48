/*
 * client.c - the blocking HTTP/1.1 client (see client.h).
 *
 * A request is one connection: resolve, connect, send the head and body in
 * one gathered write, then read the answer line by line through a buffer
 * that holds the longest line accepted.  Every wait goes through poll()
 * with what is left of the one deadline, so no step can hang past it.
 */
#include "http/client.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"

/* The read buffer holds the longest line accepted, its CRLF included. */
#define CLIENT_BUF_SIZE (HTTP_CLIENT_HEADER_MAX + 2)
/* Longest chunk-size line ("1a2b;name=value"), CRLF included. */
#define CLIENT_CHUNK_LINE_MAX 1024
/* Longest argument copied into a log line. */
#define CLIENT_LOG_ARG_MAX 200

struct client_url {
    char host[HTTP_CLIENT_HOST_MAX + 1]; /* an IPv6 literal without [] */
    char port[6];
    bool ipv6;
};

struct client_conn {
    int fd;
    int64_t deadline_ms; /* monotonic */
    size_t start, end;   /* unread bytes are buf[start..end) */
    bool eof;
    char why[128]; /* what failed, for the log line */
    char buf[CLIENT_BUF_SIZE];
};

/* What the status line and headers of an answer say. */
struct client_head {
    int status;
    bool chunked;
    bool has_length;
    uint64_t length;
    char content_type[64];
};

/* A growing body, bounded by HTTP_CLIENT_BODY_MAX. */
struct client_body {
    char *data;
    size_t len, cap;
};

/* --- arguments ----------------------------------------------------------- */

static bool is_host_char(char ch, bool ipv6)
{
    if (ipv6)
        return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
               (ch >= 'A' && ch <= 'F') || ch == ':' || ch == '.';
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
           (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '.';
}

static int url_parse(const char *s, struct client_url *u)
{
    static const char scheme[] = "http://";
    const char *host, *host_end, *p;
    unsigned long port = 80;

    if (s == NULL || strncmp(s, scheme, sizeof(scheme) - 1) != 0)
        return ERR_INVALID;
    p = s + sizeof(scheme) - 1;
    u->ipv6 = *p == '[';
    if (u->ipv6) {
        host = p + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL)
            return ERR_INVALID;
        p = host_end + 1;
    } else {
        host = p;
        while (*p != '\0' && *p != ':' && *p != '/')
            p++;
        host_end = p;
    }
    size_t n = (size_t)(host_end - host);
    if (n == 0 || n > HTTP_CLIENT_HOST_MAX)
        return ERR_INVALID;
    for (size_t i = 0; i < n; i++)
        if (!is_host_char(host[i], u->ipv6))
            return ERR_INVALID;
    memcpy(u->host, host, n);
    u->host[n] = '\0';

    if (*p == ':') {
        size_t digits = 0;
        port = 0;
        for (p++; *p >= '0' && *p <= '9' && digits < 6; p++, digits++)
            port = port * 10 + (unsigned long)(*p - '0');
        if (digits == 0 || digits > 5 || port < 1 || port > 65535)
            return ERR_INVALID;
    }
    if (*p == '/')
        p++;
    if (*p != '\0')
        return ERR_INVALID;
    snprintf(u->port, sizeof(u->port), "%lu", port);
    return ERR_OK;
}

bool http_client_url_valid(const char *base_url)
{
    struct client_url u;

    return url_parse(base_url, &u) == ERR_OK;
}

static bool method_valid(const char *m)
{
    size_t n = 0;

    for (; m[n] != '\0'; n++)
        if (m[n] < 'A' || m[n] > 'Z')
            return false;
    return n >= 1 && n <= HTTP_CLIENT_METHOD_MAX;
}

static bool path_valid(const char *p)
{
    size_t n = 0;

    if (p[0] != '/')
        return false;
    for (; p[n] != '\0'; n++)
        if ((unsigned char)p[n] <= 0x20 || (unsigned char)p[n] >= 0x7f)
            return false;
    return n <= HTTP_CLIENT_PATH_MAX;
}

/* Headers the client writes itself: a caller repeating one is refused. */
static const char *const reserved_headers[] = {
    "host", "content-length", "connection", "transfer-encoding", NULL};

/* Whether the line at `line` (up to ':') names header `name`. */
static bool line_names(const char *line, size_t name_len, const char *name)
{
    return strlen(name) == name_len && strncasecmp(line, name, name_len) == 0;
}

/*
 * Extra headers: lines "Name: value\r\n" with a token name and no other
 * CR or LF, none of them a header the client writes itself.  Sets
 * *has_type when one is Content-Type.
 */
static bool headers_valid(const char *h, bool *has_type)
{
    *has_type = false;
    while (*h != '\0') {
        const char *eol = strstr(h, "\r\n");
        const char *colon = strchr(h, ':');
        if (eol == NULL || colon == NULL || colon == h || colon > eol)
            return false;
        for (const char *p = h; p < colon; p++)
            if (*p <= 0x20 || *p >= 0x7f)
                return false;
        for (const char *p = colon; p < eol; p++)
            if (*p == '\r' || *p == '\n')
                return false;
        size_t name_len = (size_t)(colon - h);
        for (size_t i = 0; reserved_headers[i] != NULL; i++)
            if (line_names(h, name_len, reserved_headers[i]))
                return false;
        *has_type = *has_type || line_names(h, name_len, "content-type");
        h = eol + 2;
    }
    return true;
}

/* --- waiting and writing ------------------------------------------------- */

static int64_t now_ms(void)
{
    return clock_mono_ms(clock_system());
}

static void fail_sys(struct client_conn *c, const char *op, int errnum)
{
    char text[64];

    snprintf(c->why, sizeof(c->why), "%s: %s", op,
             strerror_r(errnum, text, sizeof(text)));
}

static int fail_with(struct client_conn *c, int rc, const char *why)
{
    snprintf(c->why, sizeof(c->why), "%s", why);
    return rc;
}

/* Waits until fd is ready for events, or the deadline passes. */
static int wait_fd(struct client_conn *c, short events, const char *op)
{
    for (;;) {
        int64_t left = c->deadline_ms - now_ms();
        if (left <= 0) {
            snprintf(c->why, sizeof(c->why), "deadline passed in %s", op);
            return ERR_TIMEOUT;
        }
        struct pollfd pfd = {.fd = c->fd, .events = events};
        int n = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (n > 0)
            return ERR_OK;
        if (n < 0 && errno != EINTR) {
            fail_sys(c, "poll", errno);
            return ERR_IO;
        }
    }
}

static int connect_one(struct client_conn *c, const struct addrinfo *ai)
{
    int err = 0;
    socklen_t err_len = sizeof(err);

    c->fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
               ai->ai_protocol);
    if (c->fd < 0) {
        fail_sys(c, "socket", errno);
        return ERR_IO;
    }
    if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            err = errno;
            goto out_close;
        }
        int rc = wait_fd(c, POLLOUT, "connect");
        if (rc != ERR_OK) {
            close(c->fd);
            c->fd = -1;
            return rc;
        }
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0)
            err = errno;
        if (err != 0)
            goto out_close;
    }
    return ERR_OK;

out_close:
    fail_sys(c, "connect", err);
    close(c->fd);
    c->fd = -1;
    return ERR_IO;
}

/* Connects to the first address of the host that accepts. */
static int conn_open(struct client_conn *c, const struct client_url *u)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res;
    int rc = ERR_IO;

    if (u->ipv6)
        hints.ai_flags |= AI_NUMERICHOST;
    int gai = getaddrinfo(u->host, u->port, &hints, &res);
    if (gai != 0) {
        snprintf(c->why, sizeof(c->why), "resolve: %s", gai_strerror(gai));
        return ERR_IO;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        rc = connect_one(c, ai);
        if (rc == ERR_OK || rc == ERR_TIMEOUT)
            break;
    }
    freeaddrinfo(res);
    return rc;
}

/* Writes every byte of iov[0..n); the entries are consumed as they go. */
static int conn_send(struct client_conn *c, struct iovec *iov, size_t n)
{
    while (n > 0 && iov->iov_len == 0) {
        iov++;
        n--;
    }
    while (n > 0) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
        ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(c, POLLOUT, "send");
            if (rc != ERR_OK)
                return rc;
            continue;
        }
        if (w < 0) {
            fail_sys(c, "send", errno);
            return ERR_IO;
        }
        size_t done = (size_t)w;
        while (n > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return ERR_OK;
}

/* --- reading ------------------------------------------------------------- */

/* Reads more into the buffer; at the end of the stream sets c->eof. */
static int conn_fill(struct client_conn *c)
{
    if (c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    /* read_line() asks for more only while a line fits the buffer. */
    if (c->end == sizeof(c->buf))
        return fail_with(c, ERR_INVALID, "line too long");
    for (;;) {
        ssize_t r = recv(c->fd, c->buf + c->end, sizeof(c->buf) - c->end, 0);
        if (r > 0) {
            c->end += (size_t)r;
            return ERR_OK;
        }
        if (r == 0) {
            c->eof = true;
            return ERR_OK;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            fail_sys(c, "recv", errno);
            return ERR_IO;
        }
        int rc = wait_fd(c, POLLIN, "recv");
        if (rc != ERR_OK)
            return rc;
    }
}

/*
 * The next line, its end (LF or CRLF) replaced by a NUL: *line points into
 * the buffer and stays valid until the next read.  max bounds the line,
 * its end included; *used says how many bytes it took.
 */
static int read_line(struct client_conn *c, size_t max, const char *what,
                     char **line, size_t *used)
{
    size_t scanned = 0;

    for (;;) {
        char *from = c->buf + c->start;
        char *nl = memchr(from + scanned, '\n', c->end - c->start - scanned);
        if (nl != NULL) {
            size_t n = (size_t)(nl - from) + 1, len = n - 1;
            if (n > max)
                break;
            if (len > 0 && from[len - 1] == '\r')
                len--;
            from[len] = '\0';
            if (memchr(from, '\0', len) != NULL) {
                snprintf(c->why, sizeof(c->why), "NUL in %s", what);
                return ERR_INVALID;
            }
            c->start += n;
            *line = from;
            *used = n;
            return ERR_OK;
        }
        scanned = c->end - c->start;
        if (scanned >= max)
            break;
        if (c->eof) {
            snprintf(c->why, sizeof(c->why), "closed early, in %s", what);
            return ERR_IO;
        }
        int rc = conn_fill(c);
        if (rc != ERR_OK)
            return rc;
    }
    snprintf(c->why, sizeof(c->why), "%s too long", what);
    return ERR_INVALID;
}

/* "HTTP/1.1 200 OK": version 1.0 or 1.1, three digits, maybe a reason. */
static int parse_status(const char *line, int *status)
{
    if (strncmp(line, "HTTP/1.", 7) != 0 ||
        (line[7] != '0' && line[7] != '1') || line[8] != ' ')
        return ERR_INVALID;
    const char *d = line + 9;
    for (int i = 0; i < 3; i++)
        if (d[i] < '0' || d[i] > '9')
            return ERR_INVALID;
    if (d[3] != '\0' && d[3] != ' ')
        return ERR_INVALID;
    *status = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    return *status >= 100 && *status <= 599 ? ERR_OK : ERR_INVALID;
}

/* A decimal Content-Length; values past the body limit become limit + 1. */
static bool parse_length(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return false;
        if (v <= HTTP_CLIENT_BODY_MAX)
            v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v > HTTP_CLIENT_BODY_MAX ? (uint64_t)HTTP_CLIENT_BODY_MAX + 1 : v;
    return true;
}

static bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* One "Name: value" line; records what framing and Content-Type need. */
static int parse_header(struct client_conn *c, char *line, size_t len,
                        struct client_head *h)
{
    char *colon = strchr(line, ':');

    if (colon == NULL || colon == line)
        return fail_with(c, ERR_INVALID, "header line without a name");
    for (char *p = line; p < colon; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return fail_with(c, ERR_INVALID, "bad header name");
    char *value = colon + 1, *end = line + len;
    while (is_ows(*value))
        value++;
    while (end > value && is_ows(end[-1]))
        end--;
    *end = '\0';

    size_t name_len = (size_t)(colon - line);
    if (line_names(line, name_len, "content-length")) {
        uint64_t v;
        if (!parse_length(value, &v) || (h->has_length && v != h->length))
            return fail_with(c, ERR_INVALID, "bad content-length");
        h->has_length = true;
        h->length = v;
    } else if (line_names(line, name_len, "transfer-encoding")) {
        /* Only chunked: no Accept-Encoding or TE is ever sent. */
        if (strcasecmp(value, "chunked") != 0)
            return fail_with(c, ERR_INVALID, "unsupported transfer-encoding");
        h->chunked = true;
    } else if (line_names(line, name_len, "content-type")) {
        snprintf(h->content_type, sizeof(h->content_type), "%s", value);
    }
    return ERR_OK;
}

/* Whether bytes seen so far cannot start an HTTP/1 status line. */
static bool not_http(const struct client_conn *c)
{
    static const char prefix[] = "HTTP/1.";
    size_t n = c->end - c->start;

    if (n > sizeof(prefix) - 1)
        n = sizeof(prefix) - 1;
    return memcmp(c->buf + c->start, prefix, n) != 0;
}

/* The status line and headers; 1xx interim answers are skipped. */
static int read_head(struct client_conn *c, struct client_head *h)
{
    size_t budget = HTTP_CLIENT_HEADER_MAX, used;
    char *line;
    int rc;

    do {
        memset(h, 0, sizeof(*h));
        rc = read_line(c, budget, "status line", &line, &used);
        if (rc == ERR_IO && c->end > c->start && not_http(c))
            return fail_with(c, ERR_INVALID, "not an HTTP answer");
        if (rc != ERR_OK)
            return rc;
        budget -= used;
        if (parse_status(line, &h->status) != ERR_OK || h->status == 101)
            return fail_with(c, ERR_INVALID, "malformed status line");
        for (;;) {
            if (budget == 0)
                return fail_with(c, ERR_INVALID, "headers too long");
            if ((rc = read_line(c, budget, "headers", &line, &used)) != ERR_OK)
                return rc;
            budget -= used;
            if (line[0] == '\0')
                break;
            if (is_ows(line[0]))
                return fail_with(c, ERR_INVALID, "folded header line");
            if ((rc = parse_header(c, line, strlen(line), h)) != ERR_OK)
                return rc;
        }
    } while (h->status < 200);
    return ERR_OK;
}

/* Makes room for extra more bytes (and a NUL) within the body limit. */
static int body_reserve(struct client_conn *c, struct client_body *b,
                        uint64_t extra)
{
    if (extra > HTTP_CLIENT_BODY_MAX - b->len)
        return fail_with(c, ERR_TOOBIG, "body over the limit");
    size_t need = b->len + (size_t)extra + 1;
    if (need <= b->cap)
        return ERR_OK;
    size_t cap = b->cap < 4096 ? 4096 : b->cap;
    while (cap < need)
        cap *= 2;
    if (cap > (size_t)HTTP_CLIENT_BODY_MAX + 1)
        cap = (size_t)HTTP_CLIENT_BODY_MAX + 1;
    char *data = realloc(b->data, cap);
    if (data == NULL)
        return fail_with(c, ERR_NOMEM, "out of memory");
    b->data = data;
    b->cap = cap;
    return ERR_OK;
}

/* Appends exactly n bytes of the stream (room already reserved). */
static int read_exact(struct client_conn *c, struct client_body *b, size_t n)
{
    while (n > 0) {
        if (c->start == c->end) {
            if (c->eof)
                return fail_with(c, ERR_IO, "closed early, in the body");
            int rc = conn_fill(c);
            if (rc != ERR_OK)
                return rc;
            continue;
        }
        size_t take = c->end - c->start;
        if (take > n)
            take = n;
        memcpy(b->data + b->len, c->buf + c->start, take);
        b->len += take;
        c->start += take;
        n -= take;
    }
    return ERR_OK;
}

/* Appends everything up to the end of the stream. */
static int read_to_close(struct client_conn *c, struct client_body *b)
{
    for (;;) {
        size_t take = c->end - c->start;
        int rc = body_reserve(c, b, take);
        if (rc != ERR_OK)
            return rc;
        rc = read_exact(c, b, take);
        if (rc != ERR_OK)
            return rc;
        if (c->eof)
            return ERR_OK;
        if ((rc = conn_fill(c)) != ERR_OK)
            return rc;
    }
}

/* "1a2b" or "1a2b;ext": sizes past the body limit become limit + 1. */
static bool parse_chunk_size(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;

    for (;; p++) {
        int d;
        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (*p >= 'a' && *p <= 'f')
            d = *p - 'a' + 10;
        else if (*p >= 'A' && *p <= 'F')
            d = *p - 'A' + 10;
        else
            break;
        if (v <= HTTP_CLIENT_BODY_MAX)
            v = v * 16 + (uint64_t)d;
    }
    while (is_ows(*p))
        p++;
    if (p == s || (*p != '\0' && *p != ';'))
        return false;
    *out = v > HTTP_CLIENT_BODY_MAX ? (uint64_t)HTTP_CLIENT_BODY_MAX + 1 : v;
    return true;
}

static int read_chunked(struct client_conn *c, struct client_body *b)
{
    size_t budget = HTTP_CLIENT_HEADER_MAX, used;
    uint64_t size;
    char *line;
    int rc;

    for (;;) {
        rc = read_line(c, CLIENT_CHUNK_LINE_MAX, "chunk size", &line, &used);
        if (rc != ERR_OK)
            return rc;
        if (!parse_chunk_size(line, &size))
            return fail_with(c, ERR_INVALID, "malformed chunk size");
        if (size == 0)
            break;
        if ((rc = body_reserve(c, b, size)) != ERR_OK ||
            (rc = read_exact(c, b, (size_t)size)) != ERR_OK)
            return rc;
        if ((rc = read_line(c, 2, "chunk end", &line, &used)) != ERR_OK)
            return rc;
        if (line[0] != '\0')
            return fail_with(c, ERR_INVALID, "chunk longer than its size");
    }
    /* Trailer fields are read and ignored, within the header limit. */
    do {
        if (budget == 0)
            return fail_with(c, ERR_INVALID, "trailers too long");
        if ((rc = read_line(c, budget, "trailers", &line, &used)) != ERR_OK)
            return rc;
        budget -= used;
    } while (line[0] != '\0');
    return ERR_OK;
}

static int read_response(struct client_conn *c, bool head_method,
                         struct http_client_response *out)
{
    struct client_head h;
    struct client_body b = {0};
    int rc = read_head(c, &h);

    if (rc != ERR_OK)
        return rc;
    if (head_method || h.status == 204 || h.status == 304)
        rc = ERR_OK;
    else if (h.chunked)
        rc = read_chunked(c, &b);
    else if (!h.has_length)
        rc = read_to_close(c, &b);
    else if ((rc = body_reserve(c, &b, h.length)) == ERR_OK)
        rc = read_exact(c, &b, (size_t)h.length);
    /* Room for the NUL, and a body even when there was none. */
    if (rc == ERR_OK)
        rc = body_reserve(c, &b, 0);
    if (rc != ERR_OK) {
        free(b.data);
        return rc;
    }
    b.data[b.len] = '\0';
    out->status = h.status;
    out->body = b.data;
    out->len = b.len;
    memcpy(out->content_type, h.content_type, sizeof(out->content_type));
    return ERR_OK;
}

/* --- the request --------------------------------------------------------- */

/* The request line and headers, malloc'd; NULL when out of memory. */
static char *build_head(const struct client_url *u, const char *method,
                        const char *path, const char *headers, bool has_type,
                        const char *body, size_t body_len, size_t *len)
{
    char host[HTTP_CLIENT_HOST_MAX + 16], length[48] = "";
    const char *type = "";
    bool send_length = body != NULL || (strcmp(method, "GET") != 0 &&
                                        strcmp(method, "HEAD") != 0);

    if (u->ipv6)
        snprintf(host, sizeof(host), "[%s]:%s", u->host, u->port);
    else
        snprintf(host, sizeof(host), "%s:%s", u->host, u->port);
    if (send_length)
        snprintf(length, sizeof(length), "Content-Length: %zu\r\n", body_len);
    if (body != NULL && !has_type)
        type = "Content-Type: application/json\r\n";

#define CLIENT_HEAD_FORMAT                                                     \
    "%s %s HTTP/1.1\r\nHost: %s\r\n%s%sUser-Agent: marquee\r\n"                \
    "Connection: close\r\n%s\r\n"
    int n = snprintf(NULL, 0, CLIENT_HEAD_FORMAT, method, path, host, length,
                     type, headers);
    char *out = n < 0 ? NULL : malloc((size_t)n + 1);
    if (out == NULL)
        return NULL;
    snprintf(out, (size_t)n + 1, CLIENT_HEAD_FORMAT, method, path, host, length,
             type, headers);
#undef CLIENT_HEAD_FORMAT
    *len = (size_t)n;
    return out;
}

/* Connects, sends head and body, and reads the answer into out. */
static int exchange(struct client_conn *c, const struct client_url *u,
                    char *head, size_t head_len, const char *body,
                    size_t body_len, bool head_method,
                    struct http_client_response *out)
{
    /* The body is only read from; iovec has no const member. */
    struct iovec iov[2] = {{head, head_len}, {(void *)body, body_len}};
    int rc = conn_open(c, u);

    if (rc != ERR_OK)
        return rc;
    rc = conn_send(c, iov, body != NULL ? 2 : 1);
    if (rc == ERR_OK)
        rc = read_response(c, head_method, out);
    close(c->fd);
    c->fd = -1;
    return rc;
}

/* A copy of s fit for a log line: printable ASCII only, cut short. */
static void log_safe(char *out, size_t size, const char *s)
{
    size_t i = 0;

    for (; s != NULL && s[i] != '\0' && i + 1 < size; i++)
        out[i] = s[i] > 0x20 && s[i] < 0x7f ? s[i] : '?';
    out[i] = '\0';
}

static void log_failure(const char *base_url, const char *method,
                        const char *path, int rc, const char *why)
{
    char url_s[CLIENT_LOG_ARG_MAX], method_s[32], path_s[CLIENT_LOG_ARG_MAX];

    log_safe(url_s, sizeof(url_s), base_url);
    log_safe(method_s, sizeof(method_s), method);
    log_safe(path_s, sizeof(path_s), path);
    log_warn("http",
             "client_failed url=%s method=%s path=%s error=%s reason=\"%s\"",
             url_s, method_s, path_s, err_name(rc), why);
}

/* Checks the arguments; sets *has_type from the extra headers. */
static const char *check_args(const char *method, const char *path,
                              const char *headers, const char *body,
                              size_t body_len, int timeout_ms, bool *has_type)
{
    *has_type = false;
    if (method == NULL || !method_valid(method))
        return "bad method";
    if (path == NULL || !path_valid(path))
        return "bad path";
    if (headers != NULL && !headers_valid(headers, has_type))
        return "bad extra headers";
    if (body == NULL && body_len != 0)
        return "body_len without a body";
    if (timeout_ms <= 0)
        return "timeout must be positive";
    return NULL;
}

int http_client_request(const char *base_url, const char *method,
                        const char *path, const char *headers, const char *body,
                        size_t body_len, int timeout_ms,
                        struct http_client_response *out)
{
    struct client_url u;
    struct client_conn *c;
    bool has_type;
    size_t head_len = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    const char *bad = check_args(method, path, headers, body, body_len,
                                 timeout_ms, &has_type);
    if (bad == NULL && url_parse(base_url, &u) != ERR_OK)
        bad = "bad url";
    if (bad != NULL) {
        log_failure(base_url, method, path, ERR_INVALID, bad);
        return ERR_INVALID;
    }
    if ((c = malloc(sizeof(*c))) == NULL) {
        log_failure(base_url, method, path, ERR_NOMEM, "out of memory");
        return ERR_NOMEM;
    }
    c->fd = -1;
    c->deadline_ms = now_ms() + timeout_ms;
    c->start = c->end = 0;
    c->eof = false;
    c->why[0] = '\0';

    char *head = build_head(&u, method, path, headers ? headers : "", has_type,
                            body, body_len, &head_len);
    if (head == NULL)
        rc = fail_with(c, ERR_NOMEM, "out of memory");
    else
        rc = exchange(c, &u, head, head_len, body, body_len,
                      strcmp(method, "HEAD") == 0, out);
    free(head);
    if (rc != ERR_OK) {
        log_failure(base_url, method, path, rc, c->why);
        memset(out, 0, sizeof(*out));
    }
    free(c);
    return rc;
}

void http_client_response_free(struct http_client_response *r)
{
    if (r == NULL)
        return;
    free(r->body);
    memset(r, 0, sizeof(*r));
}
