/*
 * loadgen.c - `marquee loadgen`, an open-loop load generator for the
 * flash-sale benchmark.
 *
 * The first half holds the pure parts declared in loadgen.h (schedule,
 * histogram, parsers, seat maps); the second half is the network side: one
 * thread, one epoll set, a pool of non-blocking keep-alive connections with
 * one request in flight each, a timerfd for the schedule and a signalfd for
 * SIGINT and SIGTERM.  docs/internals/loadgen.md says why it works so.
 */
#include "tools/loadgen.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/program.h"

#define NS_PER_S  INT64_C(1000000000)
#define NS_PER_MS INT64_C(1000000)

/* --- schedule ------------------------------------------------------------- */

/* Past this the schedule is over anyway; keeps the products below in range. */
#define SCHEDULE_ELAPSED_MAX_NS                                                \
    ((int64_t)(LOADGEN_DURATION_MAX_S + 3600) * NS_PER_S)

int64_t loadgen_schedule_offset_ns(int64_t rate, uint64_t i)
{
    assert(rate >= 1 && rate <= LOADGEN_RATE_MAX);
    /* i < rate * 3600 * 24 keeps i * 1e9 inside 63 bits. */
    assert(i <= (uint64_t)rate * 86400);
    return (int64_t)(i * (uint64_t)NS_PER_S / (uint64_t)rate);
}

uint64_t loadgen_schedule_due(int64_t rate, int64_t elapsed_ns)
{
    assert(rate >= 1 && rate <= LOADGEN_RATE_MAX);
    if (elapsed_ns < 0)
        return 0;
    if (elapsed_ns > SCHEDULE_ELAPSED_MAX_NS)
        elapsed_ns = SCHEDULE_ELAPSED_MAX_NS;
    /*
     * Request i is due when floor(i * 1e9 / rate) <= e, that is when
     * i * 1e9 < (e + 1) * rate: the count is ceil((e + 1) * rate / 1e9).
     */
    uint64_t top = ((uint64_t)elapsed_ns + 1) * (uint64_t)rate;
    return (top + (uint64_t)NS_PER_S - 1) / (uint64_t)NS_PER_S;
}

uint64_t loadgen_schedule_total(int64_t rate, int64_t duration_s)
{
    assert(rate >= 1 && rate <= LOADGEN_RATE_MAX);
    assert(duration_s >= 0 && duration_s <= LOADGEN_DURATION_MAX_S);
    return (uint64_t)rate * (uint64_t)duration_s;
}

/* --- latency histogram ---------------------------------------------------- */

#define HIST_SUB  (1u << LOADGEN_HIST_SUB_BITS)
#define HIST_HALF (HIST_SUB / 2)

_Static_assert(LOADGEN_HIST_BUCKETS ==
                   HIST_SUB + (LOADGEN_HIST_MAX_BITS - LOADGEN_HIST_SUB_BITS) *
                                  HIST_HALF,
               "bucket count");

size_t loadgen_hist_bucket(uint64_t us)
{
    if (us > LOADGEN_HIST_MAX_US)
        us = LOADGEN_HIST_MAX_US;
    if (us < HIST_SUB)
        return (size_t)us;

    /* Above the linear part: the power of two, then the top bits. */
    int msb = 63 - __builtin_clzll(us);
    int shift = msb - (LOADGEN_HIST_SUB_BITS - 1);
    uint64_t top = us >> shift; /* HIST_HALF .. HIST_SUB - 1 */
    size_t b = HIST_SUB + (size_t)(shift - 1) * HIST_HALF + (top - HIST_HALF);

    assert(b < LOADGEN_HIST_BUCKETS);
    return b;
}

uint64_t loadgen_hist_bucket_high(size_t bucket)
{
    assert(bucket < LOADGEN_HIST_BUCKETS);
    if (bucket < HIST_SUB)
        return bucket;

    size_t k = bucket - HIST_SUB;
    int shift = (int)(k / HIST_HALF) + 1;
    uint64_t top = HIST_HALF + k % HIST_HALF;

    return ((top + 1) << shift) - 1;
}

void loadgen_hist_reset(struct loadgen_hist *h)
{
    memset(h, 0, sizeof(*h));
}

void loadgen_hist_record(struct loadgen_hist *h, uint64_t us)
{
    h->buckets[loadgen_hist_bucket(us)]++;
    h->count++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
}

uint64_t loadgen_hist_percentile(const struct loadgen_hist *h, double pct)
{
    if (h->count == 0)
        return 0;
    if (!(pct > 0))
        pct = 0;
    if (pct > 100)
        pct = 100;

    /* In thousandths of a percent, so 99.9 of 1000 values is exactly 999. */
    uint64_t milli = (uint64_t)llround(pct * 1000);
    uint64_t rank = (h->count * milli + 99999) / 100000;
    uint64_t seen = 0;

    if (rank == 0)
        rank = 1;
    for (size_t b = 0; b < LOADGEN_HIST_BUCKETS; b++) {
        seen += h->buckets[b];
        if (seen >= rank) {
            uint64_t high = loadgen_hist_bucket_high(b);
            return high < h->max_us ? high : h->max_us;
        }
    }
    assert(!"histogram counts do not add up");
    return h->max_us;
}

/* --- settings ------------------------------------------------------------- */

/* Reads decimal digits at *s into *out (at most max); advances *s. */
static int parse_uint(const char **s, int64_t max, int64_t *out)
{
    const char *p = *s;
    int64_t v = 0;

    if (*p < '0' || *p > '9')
        return ERR_INVALID;
    for (; *p >= '0' && *p <= '9'; p++) {
        int d = *p - '0';
        if (v > (max - d) / 10)
            return ERR_INVALID;
        v = v * 10 + d;
    }
    *s = p;
    *out = v;
    return ERR_OK;
}

int loadgen_range_parse(const char *s, int64_t *lo, int64_t *hi)
{
    int64_t a, b;

    if (*s == '\0') {
        *lo = 1;
        *hi = 0;
        return ERR_OK;
    }
    if (parse_uint(&s, INT64_MAX, &a) != ERR_OK || a < 1)
        return ERR_INVALID;
    b = a;
    if (*s == '-') {
        s++;
        if (parse_uint(&s, INT64_MAX, &b) != ERR_OK || b < a)
            return ERR_INVALID;
    }
    if (*s != '\0')
        return ERR_INVALID;
    *lo = a;
    *hi = b;
    return ERR_OK;
}

int loadgen_target_parse(const char *url, char host[LOADGEN_HOST_MAX],
                         int *port)
{
    static const char scheme[] = "http://";
    const char *p = url, *h, *end;
    int64_t n = 80;

    if (strncmp(p, scheme, sizeof(scheme) - 1) != 0)
        return ERR_INVALID;
    p += sizeof(scheme) - 1;
    if (*p == '[') {
        h = ++p;
        end = strchr(p, ']');
        if (end == NULL)
            return ERR_INVALID;
        p = end + 1;
    } else {
        h = p;
        end = p + strcspn(p, ":/");
        p = end;
    }
    if (end == h || (size_t)(end - h) >= LOADGEN_HOST_MAX)
        return ERR_INVALID;
    if (*p == ':') {
        p++;
        if (parse_uint(&p, 65535, &n) != ERR_OK || n < 1)
            return ERR_INVALID;
    }
    if (*p == '/')
        p++;
    if (*p != '\0')
        return ERR_INVALID;
    memcpy(host, h, (size_t)(end - h));
    host[end - h] = '\0';
    *port = (int)n;
    return ERR_OK;
}

/* --- HTTP/1.1 answers ----------------------------------------------------- */

/* The end of the header section (after its blank line), or NULL. */
static const char *find_head_end(const char *buf, size_t len)
{
    for (size_t i = 0; i + 3 < len; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' &&
            buf[i + 3] == '\n')
            return buf + i + 4;
    return NULL;
}

struct head {
    int status;
    bool http10;
    bool chunked;
    bool close;
    bool keep_alive;
    bool has_length;
    int64_t length;
    int retry_after_s;
};

static bool header_is(const char *line, size_t name_len, const char *name)
{
    return strlen(name) == name_len && strncasecmp(line, name, name_len) == 0;
}

/* Whether the comma-separated value [v, end) has the token tok. */
static bool value_has(const char *v, const char *end, const char *tok)
{
    size_t n = strlen(tok);

    for (const char *p = v; p + n <= end; p++)
        if (strncasecmp(p, tok, n) == 0)
            return true;
    return false;
}

static int parse_header_line(const char *line, const char *eol, struct head *hd)
{
    const char *colon = memchr(line, ':', (size_t)(eol - line));
    const char *v;

    if (colon == NULL || colon == line)
        return ERR_INVALID;
    v = colon + 1;
    while (v < eol && (*v == ' ' || *v == '\t'))
        v++;

    size_t name_len = (size_t)(colon - line);
    if (header_is(line, name_len, "content-length")) {
        const char *p = v;
        if (parse_uint(&p, LOADGEN_RESPONSE_MAX, &hd->length) != ERR_OK)
            return *p >= '0' && *p <= '9' ? ERR_TOOBIG : ERR_INVALID;
        hd->has_length = true;
    } else if (header_is(line, name_len, "transfer-encoding")) {
        hd->chunked = value_has(v, eol, "chunked");
    } else if (header_is(line, name_len, "connection")) {
        hd->close = value_has(v, eol, "close");
        hd->keep_alive = value_has(v, eol, "keep-alive");
    } else if (header_is(line, name_len, "retry-after")) {
        const char *p = v;
        int64_t s;
        if (parse_uint(&p, 86400, &s) == ERR_OK)
            hd->retry_after_s = (int)s;
    }
    return ERR_OK;
}

static int parse_head(const char *buf, const char *head_end, struct head *hd)
{
    const char *p = buf, *eol;

    memset(hd, 0, sizeof(*hd));
    hd->retry_after_s = -1;
    /* "HTTP/1.1 201 Created" */
    if (head_end - p < 12 || strncmp(p, "HTTP/1.", 7) != 0 ||
        (p[7] != '0' && p[7] != '1') || p[8] != ' ')
        return ERR_INVALID;
    hd->http10 = p[7] == '0';
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return ERR_INVALID;
        hd->status = hd->status * 10 + (p[i] - '0');
    }
    if (hd->status < 100)
        return ERR_INVALID;

    p = (const char *)memmem(p, (size_t)(head_end - p), "\r\n", 2) + 2;
    while (p < head_end - 2) {
        eol = p;
        while (!(eol[0] == '\r' && eol[1] == '\n'))
            eol++;
        int rc = parse_header_line(p, eol, hd);
        if (rc != ERR_OK)
            return rc;
        p = eol + 2;
    }
    return ERR_OK;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

/*
 * Walks a chunked body from p; with decode, joins the chunks' data at p.
 * Returns ERR_OK with *end after the last CRLF and *body_len, ERR_AGAIN,
 * ERR_INVALID or ERR_TOOBIG.
 */
static int walk_chunks(char *p, const char *limit, bool decode, char **end,
                       size_t *body_len)
{
    char *w = p;
    size_t total = 0;

    for (;;) {
        uint64_t size = 0;
        char *q = p;
        int digits = 0;

        for (int d; q < limit && (d = hex_digit(*q)) >= 0; q++, digits++) {
            size = size * 16 + (uint64_t)d;
            if (size > LOADGEN_RESPONSE_MAX)
                return ERR_TOOBIG;
        }
        while (q < limit && *q != '\r') /* chunk extensions */
            q++;
        if (q + 2 > limit)
            return ERR_AGAIN;
        if (digits == 0 || q[1] != '\n')
            return ERR_INVALID;
        q += 2;
        if (size == 0) {
            /* Trailer lines, then the blank line. */
            for (;;) {
                char *eol = q;
                while (eol + 1 < limit && !(eol[0] == '\r' && eol[1] == '\n'))
                    eol++;
                if (eol + 1 >= limit)
                    return ERR_AGAIN;
                if (eol == q) {
                    *end = eol + 2;
                    *body_len = total;
                    return ERR_OK;
                }
                q = eol + 2;
            }
        }
        if ((size_t)(limit - q) < size + 2)
            return ERR_AGAIN;
        if (q[size] != '\r' || q[size + 1] != '\n')
            return ERR_INVALID;
        total += size;
        if (total > LOADGEN_RESPONSE_MAX)
            return ERR_TOOBIG;
        if (decode) {
            memmove(w, q, size);
            w += size;
        }
        p = q + size + 2;
    }
}

int loadgen_response_parse(char *buf, size_t len, struct loadgen_response *out)
{
    struct head hd;
    const char *head_end;
    char *body, *end;
    size_t body_len;
    int rc;

    head_end = find_head_end(
        buf, len < LOADGEN_HEADERS_MAX ? len : LOADGEN_HEADERS_MAX);
    if (head_end == NULL)
        return len >= LOADGEN_HEADERS_MAX ? ERR_TOOBIG : ERR_AGAIN;
    rc = parse_head(buf, head_end, &hd);
    if (rc != ERR_OK)
        return rc;

    body = buf + (head_end - buf);
    if (hd.status < 200 || hd.status == 204 || hd.status == 304) {
        end = body;
        body_len = 0;
    } else if (hd.chunked) {
        rc = walk_chunks(body, buf + len, false, &end, &body_len);
        if (rc != ERR_OK)
            return rc;
        walk_chunks(body, buf + len, true, &end, &body_len);
    } else if (hd.has_length) {
        if ((size_t)(buf + len - body) < (size_t)hd.length)
            return ERR_AGAIN;
        body_len = (size_t)hd.length;
        end = body + body_len;
    } else {
        return ERR_INVALID;
    }

    out->status = hd.status;
    out->close = hd.close || (hd.http10 && !hd.keep_alive);
    out->consumed = (size_t)(end - buf);
    out->body = body;
    out->body_len = body_len;
    out->retry_after_s = hd.retry_after_s;
    return ERR_OK;
}

/* --- sessions ------------------------------------------------------------ */

/* Whether s is 1..max-1 bytes, each accepted by ok. */
static bool text_ok(const char *s, size_t max, bool (*ok)(char))
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n >= max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!ok(s[i]))
            return false;
    return true;
}

/* base64url and the dots of a JWT. */
static bool token_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.';
}

/* Printable ASCII without space: safe inside a report or a log line. */
static bool id_char_ok(char ch)
{
    return ch > ' ' && ch < 127 && ch != '"' && ch != '\\';
}

int loadgen_session_parse(const char *body, size_t len,
                          struct loadgen_session *out)
{
    json_t *doc = json_loadb(body, len, 0, NULL);
    const char *token = json_string_value(json_object_get(doc, "access_token"));
    const char *type = json_string_value(json_object_get(doc, "token_type"));
    const char *id = json_string_value(json_object_get(doc, "customer_id"));
    json_t *ttl = json_object_get(doc, "expires_in");
    int rc = ERR_INVALID;

    if (text_ok(token, LOADGEN_TOKEN_MAX, token_char_ok) &&
        text_ok(id, LOADGEN_CUSTOMER_ID_MAX, id_char_ok) && type != NULL &&
        strcmp(type, "Bearer") == 0 && json_is_integer(ttl) &&
        json_integer_value(ttl) > 0) {
        snprintf(out->token, sizeof(out->token), "%s", token);
        snprintf(out->customer_id, sizeof(out->customer_id), "%s", id);
        out->expires_in_s = json_integer_value(ttl);
        rc = ERR_OK;
    }
    json_decref(doc);
    return rc;
}

/* --- seat maps ------------------------------------------------------------ */

void loadgen_show_free(struct loadgen_show *show)
{
    free(show->seat_ids);
    free(show->starts);
    memset(show, 0, sizeof(*show));
}

/* Counts the seats of rows, checking their shape; ERR_OK or ERR_INVALID. */
static int count_seats(json_t *rows, uint32_t *nseats)
{
    size_t i;
    json_t *row;
    uint64_t n = 0;

    json_array_foreach(rows, i, row)
    {
        const char *label = json_string_value(json_object_get(row, "label"));
        json_t *seats = json_object_get(row, "seats");
        json_t *states = json_object_get(row, "states");
        size_t j;
        json_t *s;

        if (label == NULL || label[0] == '\0' || strlen(label) > 4 ||
            !json_is_array(seats))
            return ERR_INVALID;
        if (states != NULL &&
            (!json_is_string(states) ||
             json_string_length(states) != json_array_size(seats)))
            return ERR_INVALID;
        json_array_foreach(seats, j, s)
        {
            if (json_is_integer(s) && json_integer_value(s) >= 1 &&
                json_integer_value(s) <= 999)
                n++;
            else if (!json_is_null(s))
                return ERR_INVALID;
        }
    }
    if (n == 0 || n > LOADGEN_SEATS_PER_SHOW_MAX)
        return ERR_INVALID;
    *nseats = (uint32_t)n;
    return ERR_OK;
}

/* Records the picks a run of adjacent usable seats allows. */
static void add_run(struct loadgen_show *show, uint32_t first, uint32_t len)
{
    for (uint32_t k = 0; k + show->want <= len; k++)
        show->starts[show->nstarts++] = first + k;
}

/* Fills seat ids and starts, one row at a time. */
static void index_rows(json_t *rows, struct loadgen_show *show)
{
    size_t i;
    json_t *row;
    uint32_t seat = 0;

    json_array_foreach(rows, i, row)
    {
        const char *label = json_string_value(json_object_get(row, "label"));
        const char *states = json_string_value(json_object_get(row, "states"));
        json_t *seats = json_object_get(row, "seats");
        uint32_t run_first = 0, run_len = 0;
        size_t j;
        json_t *s;

        json_array_foreach(seats, j, s)
        {
            bool usable =
                json_is_integer(s) && (states == NULL || states[j] != 'B');

            if (json_is_integer(s)) {
                snprintf(show->seat_ids[seat], LOADGEN_SEAT_ID_MAX, "%s%lld",
                         label, (long long)json_integer_value(s));
                seat++;
            }
            if (usable) {
                if (run_len == 0)
                    run_first = seat - 1;
                run_len++;
            } else {
                add_run(show, run_first, run_len);
                run_len = 0;
            }
        }
        add_run(show, run_first, run_len);
    }
    assert(seat == show->nseats);
}

int loadgen_show_parse(json_t *doc, uint32_t want, struct loadgen_show *show)
{
    json_t *rows = json_object_get(doc, "rows");
    uint32_t nseats;
    int rc;

    assert(want >= 1 && want <= LOADGEN_SEATS_PER_HOLD_MAX);
    memset(show, 0, sizeof(*show));
    if (!json_is_array(rows) || count_seats(rows, &nseats) != ERR_OK)
        return ERR_INVALID;

    show->id = json_integer_value(json_object_get(doc, "show_id"));
    show->nseats = nseats;
    show->want = want;
    show->seat_ids = calloc(nseats, sizeof(*show->seat_ids));
    show->starts = calloc(nseats, sizeof(*show->starts));
    if (show->seat_ids == NULL || show->starts == NULL) {
        rc = ERR_NOMEM;
        goto out_free;
    }
    index_rows(rows, show);
    if (show->nstarts == 0) {
        rc = ERR_NOTFOUND;
        goto out_free;
    }
    return ERR_OK;

out_free:
    loadgen_show_free(show);
    return rc;
}

void loadgen_show_pick(const struct loadgen_show *show, struct rand *r,
                       uint32_t *out)
{
    assert(show->nstarts > 0);
    uint32_t first = show->starts[rand_below(r, show->nstarts)];

    for (uint32_t k = 0; k < show->want; k++)
        out[k] = first + k;
    assert(out[show->want - 1] < show->nseats);
}

/* --- the network side ----------------------------------------------------- */

#define LG_REQUEST_MAX       3072  /* bytes of one request: token included */
#define LG_ANSWER_MAX        16384 /* bytes of one answer during the run */
#define LG_EVENTS_MAX        256   /* epoll events per wake-up */
#define LG_SWEEP_MS          10    /* timeouts and reconnects are checked */
#define LG_RECONNECT_MS      100   /* after a failed connect */
#define LG_POOL_WAIT_MS      5000  /* for the pool to connect before t=0 */
#define LG_FETCH_TRIES       40    /* per seat map: 503s and lost links */
#define LG_FETCH_BACKOFF_MS  250
#define LG_DRAIN_EXTRA_MS    1000 /* after the last timeout could fire */
#define LG_HOLD_ID_MAX       64
#define LG_SIGNUP_TRIES      40  /* per step of a sign-up: 503s, lost links */
#define LG_SIGNUP_ANSWER_MAX 200 /* bytes of a refusal quoted in the log */
#define LG_PASSWORD_MAX      64

/* epoll tags of the two fds that are not connections. */
#define TAG_TIMER  UINT64_C(0xffffffff00000001)
#define TAG_SIGNAL UINT64_C(0xffffffff00000002)

static const struct config_key loadgen_keys[] = {
    PROGRAM_LOG_KEY,
    {"loadgen.target", CONFIG_STRING, "http://127.0.0.1:8082", 0, 0,
     "the booking service, or a gateway before it: http://HOST:PORT"},
    {"loadgen.rate", CONFIG_INT, "1000", 1, LOADGEN_RATE_MAX,
     "hold requests per second, sent on a fixed schedule"},
    {"loadgen.duration_s", CONFIG_INT, "10", 1, LOADGEN_DURATION_MAX_S,
     "seconds of scheduled requests"},
    {"loadgen.connections", CONFIG_INT, "64", 1, LOADGEN_CONNECTIONS_MAX,
     "keep-alive connections, one request in flight on each"},
    {"loadgen.hot_show", CONFIG_INT, "1", 1, INT32_MAX,
     "the show that hot_share percent of holds go to"},
    {"loadgen.cold_shows", CONFIG_STRING, "2-100", 0, 0,
     "the other shows, a range such as 2-100; empty for none"},
    {"loadgen.hot_share", CONFIG_INT, "80", 0, 100,
     "percent of holds on the hot show"},
    {"loadgen.seats_per_hold", CONFIG_INT, "2", 1, LOADGEN_SEATS_PER_HOLD_MAX,
     "adjacent seats in one row per hold"},
    {"loadgen.release_share", CONFIG_INT, "0", 0, 100,
     "percent of successful holds released right after"},
    {"loadgen.idempotency_keys", CONFIG_BOOL, "true", 0, 0,
     "send an Idempotency-Key with every hold (and resend lost ones)"},
    {"loadgen.timeout_ms", CONFIG_INT, "5000", 1, 600000,
     "an answer not in this long after its scheduled time is a timeout"},
    {"loadgen.seed", CONFIG_INT, "0", 0, INT64_MAX,
     "random seed; 0 seeds from the kernel"},
    {"loadgen.customers", CONFIG_INT, "0", 0, LOADGEN_CUSTOMERS_MAX,
     "customers to sign up and in through the target (a gateway) before "
     "the run; holds then carry their access tokens in turn; 0 sends "
     "X-Customer-Id"},
    {"loadgen.signups_in_flight", CONFIG_INT, "4", 1, LOADGEN_SIGNUPS_MAX,
     "sign-ups sent at once (each on its own connection)"},
    {"loadgen.gateway_secret", CONFIG_STRING, "", 0, 0,
     "with customers 0: sent as X-Gateway-Secret beside X-Customer-Id, for a "
     "booking started with http.gateway_secret"},
};

enum lg_kind { LG_HOLD, LG_RELEASE };
enum lg_state { LG_DOWN, LG_CONNECTING, LG_IDLE, LG_BUSY };

struct lg_conn {
    int fd;
    enum lg_state state;
    enum lg_kind kind;
    bool want_out;       /* EPOLLOUT is in its epoll mask */
    int idle_pos;        /* index in run->idle, or -1 */
    int64_t since_ns;    /* LG_BUSY: scheduled time; LG_CONNECTING: start */
    int64_t retry_at_ns; /* LG_DOWN: when to connect again */
    uint64_t seq;        /* of the hold request in flight, names its customer */
    bool resend;         /* c->out is to be sent again once connected */
    bool resent;         /* the hold in c->out was already sent twice */
    int64_t resend_sched_ns;
    size_t out_len, out_off, in_len;
    char out[LG_REQUEST_MAX];
    char in[LG_ANSWER_MAX];
};

struct lg_counts {
    uint64_t sent, created, conflicts, client_errors, server_errors, other;
    uint64_t rate_limited, shed; /* 429 and 503, also in the two above */
    uint64_t timeouts, io_errors, connect_errors, dropped;
    uint64_t releases_sent, releases_ok, releases_failed;
    uint64_t resent; /* holds sent again after a connection was lost */
};

struct lg_run {
    /* Settings. */
    char host[LOADGEN_HOST_MAX];
    int port;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int64_t rate, duration_s, timeout_ns;
    int nconns, hot_share, release_share;
    bool keys; /* send an Idempotency-Key with every hold */
    uint32_t seats_per_hold;
    uint64_t seed;
    int64_t hot_id, cold_lo, cold_hi;
    char secret[LOADGEN_SECRET_MAX]; /* X-Gateway-Secret, or "" */
    int64_t ncustomers;              /* signed-in customers, or 0 */
    int signups_in_flight;

    /* Customers signed in before the run: ncustomers entries. */
    struct loadgen_session *sessions;
    int64_t signup_ns;        /* how long signing them up took */
    int64_t tokens_expire_ns; /* the first of their tokens to expire */

    /* Shows: [0] is the hot one, the rest cold. */
    struct loadgen_show *shows;
    size_t nshows;

    /* The run. */
    struct rand rng;
    char tag[24]; /* makes customers and idempotency keys unique per run */
    uint64_t seq;
    int epfd, tfd, sfd;
    struct lg_conn *conns;
    int *idle;
    int nidle, nbusy, nresend;
    int64_t *backlog; /* ring of scheduled times, LOADGEN_BACKLOG_MAX */
    size_t bl_head, bl_len, bl_peak;
    int64_t start_ns;
    uint64_t next_i, total;
    int signals;
    struct lg_counts n, n_last;
    struct loadgen_hist all, created, second;
};

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* --- connections ---------------------------------------------------------- */

static void idle_push(struct lg_run *run, struct lg_conn *c)
{
    assert(c->idle_pos < 0 && run->nidle < run->nconns);
    c->state = LG_IDLE;
    c->idle_pos = run->nidle;
    run->idle[run->nidle++] = (int)(c - run->conns);
}

static void idle_remove(struct lg_run *run, struct lg_conn *c)
{
    int last = run->idle[--run->nidle];

    assert(c->idle_pos >= 0 && c->idle_pos <= run->nidle);
    run->idle[c->idle_pos] = last;
    run->conns[last].idle_pos = c->idle_pos;
    c->idle_pos = -1;
}

static void conn_set_out(struct lg_run *run, struct lg_conn *c, bool on)
{
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
                             .data.u64 = (uint64_t)(c - run->conns)};

    if (c->want_out == on)
        return;
    if (epoll_ctl(run->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        log_error("loadgen", "epoll_ctl_failed op=mod errno=%d", errno);
    c->want_out = on;
}

/* Closes c; it connects again at retry_at_ns. */
static void conn_close(struct lg_run *run, struct lg_conn *c,
                       int64_t retry_at_ns)
{
    if (c->state == LG_IDLE)
        idle_remove(run, c);
    if (c->state == LG_BUSY)
        run->nbusy--;
    if (c->fd >= 0)
        close(c->fd); /* leaves the epoll set with it */
    c->fd = -1;
    c->state = LG_DOWN;
    c->want_out = false;
    c->in_len = 0;
    c->retry_at_ns = retry_at_ns;
}

static void conn_open(struct lg_run *run, struct lg_conn *c, int64_t now);

/*
 * The request in flight on c failed (reset, bad answer, timeout).  A hold
 * that got no byte of answer is sent once more, the same bytes on a new
 * connection in the same slot, keeping its scheduled time: a server may
 * close an idle keep-alive connection just as a request leaves on it, and
 * the request's idempotency key makes a second copy harmless.  It still
 * times out timeout_ms after its scheduled time.
 */
static void conn_fail(struct lg_run *run, struct lg_conn *c, bool timeout,
                      int64_t now)
{
    bool resend = false;

    if (c->state == LG_BUSY && c->kind == LG_RELEASE) {
        run->n.releases_failed++;
    } else if (c->state == LG_BUSY && timeout) {
        run->n.timeouts++;
    } else if (c->state == LG_BUSY && c->in_len == 0 && !c->resent &&
               run->keys) {
        resend = true;
        c->resent = true;
        c->resend_sched_ns = c->since_ns;
        run->n.resent++;
        run->nresend++;
    } else if (c->state == LG_BUSY) {
        run->n.io_errors++;
    }
    conn_close(run, c, now);
    c->resend = resend;
    if (resend)
        conn_open(run, c, now);
}

/* A hold waiting to be sent again gives up at its deadline. */
static void resend_give_up(struct lg_run *run, struct lg_conn *c)
{
    assert(c->resend && run->nresend > 0);
    c->resend = false;
    run->nresend--;
    run->n.timeouts++;
}

static void conn_open(struct lg_run *run, struct lg_conn *c, int64_t now)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,
                             .data.u64 = (uint64_t)(c - run->conns)};
    int one = 1;

    assert(c->state == LG_DOWN && c->fd < 0);
    c->fd = socket(run->addr.ss_family,
                   SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        log_error("loadgen", "socket_failed errno=%d", errno);
        goto out_failed;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&run->addr, run->addrlen) != 0 &&
        errno != EINPROGRESS)
        goto out_failed;
    if (epoll_ctl(run->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        log_error("loadgen", "epoll_ctl_failed op=add errno=%d", errno);
        goto out_failed;
    }
    c->state = LG_CONNECTING;
    c->want_out = true;
    c->since_ns = now;
    return;

out_failed:
    run->n.connect_errors++;
    conn_close(run, c, now + LG_RECONNECT_MS * NS_PER_MS);
}

/* Writes what is left of c's request; a failure ends the request. */
static void conn_flush(struct lg_run *run, struct lg_conn *c, int64_t now)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            conn_set_out(run, c, true);
            return;
        } else {
            conn_fail(run, c, false, now);
            return;
        }
    }
    conn_set_out(run, c, false);
}

/* --- requests ------------------------------------------------------------- */

static const struct loadgen_show *pick_show(struct lg_run *run)
{
    if (run->nshows == 1 ||
        rand_below(&run->rng, 100) < (uint64_t)run->hot_share)
        return &run->shows[0];
    return &run->shows[1 + rand_below(&run->rng, run->nshows - 1)];
}

/*
 * The header lines that say whom request seq acts for: the access token of
 * one of the signed-in customers in turn, or a customer id of its own (with
 * the gateway secret when one is set).  Returns the bytes written.
 */
static size_t identity_headers(const struct lg_run *run, uint64_t seq,
                               char *buf, size_t size)
{
    int n;

    if (run->ncustomers > 0) {
        const struct loadgen_session *s =
            &run->sessions[(seq - 1) % (uint64_t)run->ncustomers];
        n = snprintf(buf, size, "Authorization: Bearer %s\r\n", s->token);
    } else if (run->secret[0] != '\0') {
        n = snprintf(buf, size,
                     "X-Customer-Id: %s-%llu\r\n"
                     "X-Gateway-Secret: %s\r\n",
                     run->tag, (unsigned long long)seq, run->secret);
    } else {
        n = snprintf(buf, size, "X-Customer-Id: %s-%llu\r\n", run->tag,
                     (unsigned long long)seq);
    }
    assert(n > 0 && (size_t)n < size);
    return (size_t)n;
}

/* Writes a hold request for random adjacent seats into c->out. */
static void build_hold(struct lg_run *run, struct lg_conn *c)
{
    const struct loadgen_show *show = pick_show(run);
    uint32_t seats[LOADGEN_SEATS_PER_HOLD_MAX];
    char body[32 + LOADGEN_SEATS_PER_HOLD_MAX * (LOADGEN_SEAT_ID_MAX + 3)];
    size_t blen = 0;
    uint64_t seq = ++run->seq;
    int n;

    c->seq = seq;
    c->resent = false;

    loadgen_show_pick(show, &run->rng, seats);
    blen += (size_t)snprintf(body, sizeof(body), "{\"seats\":[");
    for (uint32_t k = 0; k < show->want; k++)
        blen += (size_t)snprintf(body + blen, sizeof(body) - blen, "%s\"%s\"",
                                 k > 0 ? "," : "", show->seat_ids[seats[k]]);
    blen += (size_t)snprintf(body + blen, sizeof(body) - blen, "]}");
    assert(blen < sizeof(body));

    char key[64] = "";
    char who[LOADGEN_TOKEN_MAX + LOADGEN_SECRET_MAX + 64];
    if (run->keys)
        snprintf(key, sizeof(key), "Idempotency-Key: %s-%llu\r\n", run->tag,
                 (unsigned long long)seq);
    identity_headers(run, seq, who, sizeof(who));
    n = snprintf(c->out, sizeof(c->out),
                 "POST /v1/shows/%lld/holds HTTP/1.1\r\n"
                 "Host: %s:%d\r\n"
                 "Content-Type: application/json\r\n"
                 "%s"
                 "%s"
                 "Content-Length: %zu\r\n"
                 "\r\n"
                 "%s",
                 (long long)show->id, run->host, run->port, who, key, blen,
                 body);
    assert(n > 0 && (size_t)n < sizeof(c->out));
    c->out_len = (size_t)n;
    c->out_off = 0;
}

static void send_hold(struct lg_run *run, struct lg_conn *c, int64_t sched,
                      int64_t now)
{
    assert(c->state == LG_IDLE && c->in_len == 0);
    idle_remove(run, c);
    build_hold(run, c);
    c->state = LG_BUSY;
    c->kind = LG_HOLD;
    c->since_ns = sched;
    run->nbusy++;
    run->n.sent++;
    conn_flush(run, c, now);
}

/* c has nothing to do: it takes the oldest waiting request, or idles. */
static void conn_free(struct lg_run *run, struct lg_conn *c, int64_t now)
{
    idle_push(run, c);
    while (run->bl_len > 0) {
        int64_t sched = run->backlog[run->bl_head];

        run->bl_head = (run->bl_head + 1) % LOADGEN_BACKLOG_MAX;
        run->bl_len--;
        if (now - sched > run->timeout_ns) {
            run->n.timeouts++;
            continue;
        }
        send_hold(run, c, sched, now);
        return;
    }
}

/* A request is due: on a free connection, else in the backlog. */
static void issue(struct lg_run *run, int64_t sched, int64_t now)
{
    if (run->nidle > 0) {
        send_hold(run, &run->conns[run->idle[run->nidle - 1]], sched, now);
    } else if (run->bl_len < LOADGEN_BACKLOG_MAX) {
        run->backlog[(run->bl_head + run->bl_len) % LOADGEN_BACKLOG_MAX] =
            sched;
        run->bl_len++;
        if (run->bl_len > run->bl_peak)
            run->bl_peak = run->bl_len;
    } else {
        run->n.dropped++;
    }
}

static bool hold_id_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.';
}

/* Turns c, just answered 201, into a DELETE of that hold; false if not. */
static bool start_release(struct lg_run *run, struct lg_conn *c,
                          const struct loadgen_response *r, int64_t now)
{
    json_t *doc = json_loadb(r->body, r->body_len, 0, NULL);
    const char *id = json_string_value(json_object_get(doc, "id"));
    size_t len = id != NULL ? strlen(id) : 0;
    char who[LOADGEN_TOKEN_MAX + LOADGEN_SECRET_MAX + 64];
    int n = -1;

    /* The release acts for the customer who made the hold. */
    identity_headers(run, c->seq, who, sizeof(who));

    if (len > 0 && len < LG_HOLD_ID_MAX &&
        strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789-_.") == len &&
        hold_id_char_ok(id[0]))
        n = snprintf(c->out, sizeof(c->out),
                     "DELETE /v1/holds/%s HTTP/1.1\r\n"
                     "Host: %s:%d\r\n"
                     "%s"
                     "Content-Length: 0\r\n"
                     "\r\n",
                     id, run->host, run->port, who);
    json_decref(doc);
    run->n.releases_sent++;
    if (n <= 0 || (size_t)n >= sizeof(c->out)) {
        run->n.releases_failed++;
        return false;
    }
    c->out_len = (size_t)n;
    c->out_off = 0;
    c->kind = LG_RELEASE;
    c->since_ns = now;
    conn_flush(run, c, now);
    return true;
}

static void count_hold_answer(struct lg_run *run, int status, uint64_t us)
{
    loadgen_hist_record(&run->all, us);
    loadgen_hist_record(&run->second, us);
    if (status == 201) {
        run->n.created++;
        loadgen_hist_record(&run->created, us);
    } else if (status == 409) {
        run->n.conflicts++;
    } else if (status >= 400 && status < 500) {
        run->n.client_errors++;
        run->n.rate_limited += status == 429;
    } else if (status >= 500) {
        run->n.server_errors++;
        run->n.shed += status == 503;
    } else {
        run->n.other++;
    }
}

/* A whole answer arrived on c. */
static void on_answer(struct lg_run *run, struct lg_conn *c,
                      const struct loadgen_response *r, int64_t now)
{
    int64_t waited = now - c->since_ns;
    bool close_after = r->close || r->consumed != c->in_len;

    c->in_len = 0;
    if (c->kind == LG_RELEASE) {
        if (r->status >= 200 && r->status < 300)
            run->n.releases_ok++;
        else
            run->n.releases_failed++;
    } else if (waited > run->timeout_ns) {
        run->n.timeouts++;
    } else {
        count_hold_answer(run, r->status, (uint64_t)(waited / 1000));
        if (r->status == 201 && run->release_share > 0 && !close_after &&
            rand_below(&run->rng, 100) < (uint64_t)run->release_share &&
            start_release(run, c, r, now))
            return;
    }

    run->nbusy--;
    c->state = LG_DOWN; /* neither busy nor idle for a moment */
    if (close_after)
        conn_close(run, c, now);
    else
        conn_free(run, c, now);
}

/* Reads what c has; on a whole answer, handles it. */
static void conn_on_readable(struct lg_run *run, struct lg_conn *c)
{
    struct loadgen_response r;
    bool eof = false;
    int64_t now;
    int rc;

    while (c->in_len < sizeof(c->in)) {
        ssize_t n =
            recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
        } else if (n == 0) {
            eof = true;
            break;
        } else if (errno == EAGAIN || errno == EINTR) {
            break;
        } else {
            eof = true;
            break;
        }
    }
    now = now_ns();
    if (c->state != LG_BUSY) {
        /* The server closed an idle keep-alive link: connect again. */
        if (eof || c->in_len > 0)
            conn_close(run, c, now);
        return;
    }
    rc = loadgen_response_parse(c->in, c->in_len, &r);
    if (rc == ERR_AGAIN && !eof && c->in_len < sizeof(c->in))
        return;
    if (rc != ERR_OK) {
        conn_fail(run, c, false, now);
        return;
    }
    if (eof)
        r.close = true;
    on_answer(run, c, &r, now);
}

static void conn_on_writable(struct lg_run *run, struct lg_conn *c, int64_t now)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (c->state == LG_BUSY) {
        conn_flush(run, c, now);
        return;
    }
    if (c->state != LG_CONNECTING)
        return;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        run->n.connect_errors++;
        conn_close(run, c, now + LG_RECONNECT_MS * NS_PER_MS);
        return;
    }
    /* An event of the slot's previous socket may come first: not yet. */
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof(peer);
    if (getpeername(c->fd, (struct sockaddr *)&peer, &peer_len) != 0)
        return;
    conn_set_out(run, c, false);
    if (c->resend) {
        /* The lost hold goes out again, with its first scheduled time. */
        c->resend = false;
        run->nresend--;
        c->state = LG_BUSY;
        c->kind = LG_HOLD;
        c->since_ns = c->resend_sched_ns;
        c->out_off = 0;
        run->nbusy++;
        conn_flush(run, c, now);
        return;
    }
    conn_free(run, c, now);
}

/* --- the loop ------------------------------------------------------------- */

static bool schedule_over(const struct lg_run *run)
{
    return run->next_i >= run->total;
}

/* Every LG_SWEEP_MS: timeouts, stuck connects, reconnects, old backlog. */
static void sweep(struct lg_run *run, int64_t now)
{
    for (int i = 0; i < run->nconns; i++) {
        struct lg_conn *c = &run->conns[i];

        if (c->resend && now - c->resend_sched_ns > run->timeout_ns)
            resend_give_up(run, c);
        if (c->state == LG_BUSY && now - c->since_ns > run->timeout_ns) {
            conn_fail(run, c, true, now);
        } else if (c->state == LG_CONNECTING &&
                   now - c->since_ns > run->timeout_ns) {
            run->n.connect_errors++;
            conn_close(run, c, now);
        } else if (c->state == LG_DOWN && c->retry_at_ns <= now &&
                   (!schedule_over(run) || run->bl_len > 0 || c->resend)) {
            conn_open(run, c, now);
        }
    }
    while (run->bl_len > 0 &&
           now - run->backlog[run->bl_head] > run->timeout_ns) {
        run->bl_head = (run->bl_head + 1) % LOADGEN_BACKLOG_MAX;
        run->bl_len--;
        run->n.timeouts++;
    }
}

static double us_to_ms(uint64_t us)
{
    return round((double)us) / 1000.0;
}

/* One line a second on stderr: what the last second did. */
static void progress(struct lg_run *run, int64_t now)
{
    const struct lg_counts *a = &run->n, *b = &run->n_last;

    log_info("loadgen",
             "progress t_s=%lld sent=%llu created=%llu conflicts=%llu "
             "errors=%llu timeouts=%llu dropped=%llu backlog=%zu busy=%d "
             "p50_ms=%.3f p99_ms=%.3f",
             (long long)((now - run->start_ns) / NS_PER_S),
             (unsigned long long)(a->sent - b->sent),
             (unsigned long long)(a->created - b->created),
             (unsigned long long)(a->conflicts - b->conflicts),
             (unsigned long long)(a->client_errors + a->server_errors +
                                  a->other + a->io_errors -
                                  (b->client_errors + b->server_errors +
                                   b->other + b->io_errors)),
             (unsigned long long)(a->timeouts - b->timeouts),
             (unsigned long long)(a->dropped - b->dropped), run->bl_len,
             run->nbusy, us_to_ms(loadgen_hist_percentile(&run->second, 50)),
             us_to_ms(loadgen_hist_percentile(&run->second, 99)));
    run->n_last = run->n;
    loadgen_hist_reset(&run->second);
}

/* Sends every request whose time has come. */
static void issue_due(struct lg_run *run, int64_t now)
{
    while (!schedule_over(run)) {
        int64_t sched =
            run->start_ns + loadgen_schedule_offset_ns(run->rate, run->next_i);

        if (sched > now)
            break;
        issue(run, sched, now);
        run->next_i++;
    }
}

/* Arms the timerfd for the next scheduled request. */
static void arm_timer(struct lg_run *run)
{
    struct itimerspec its = {0};
    int64_t at;

    if (schedule_over(run))
        return;
    at = run->start_ns + loadgen_schedule_offset_ns(run->rate, run->next_i);
    its.it_value.tv_sec = at / NS_PER_S;
    its.it_value.tv_nsec = at % NS_PER_S;
    if (timerfd_settime(run->tfd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
        log_error("loadgen", "timerfd_settime_failed errno=%d", errno);
}

/* SIGINT or SIGTERM: the first ends the schedule, a second the drain. */
static void on_signal(struct lg_run *run)
{
    struct signalfd_siginfo si;

    while (read(run->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        run->signals++;
        log_warn("loadgen", "signal signo=%u action=%s", si.ssi_signo,
                 run->signals == 1 ? "stop_schedule" : "stop_now");
        if (run->total > run->next_i)
            run->total = run->next_i;
    }
}

static void dispatch(struct lg_run *run, const struct epoll_event *ev)
{
    uint64_t expirations;

    if (ev->data.u64 == TAG_TIMER) {
        if (read(run->tfd, &expirations, sizeof(expirations)) < 0 &&
            errno != EAGAIN)
            log_error("loadgen", "timerfd_read_failed errno=%d", errno);
        return;
    }
    if (ev->data.u64 == TAG_SIGNAL) {
        on_signal(run);
        return;
    }

    struct lg_conn *c = &run->conns[ev->data.u64];
    if (c->state == LG_CONNECTING) {
        conn_on_writable(run, c, now_ns());
        return;
    }
    if (c->fd >= 0 && (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        conn_on_readable(run, c);
    /* A connection opened again while reading waits for its own event. */
    if (c->fd >= 0 && c->state != LG_CONNECTING && (ev->events & EPOLLOUT))
        conn_on_writable(run, c, now_ns());
}

/* Waits up to LG_POOL_WAIT_MS for the connections to open. */
static int open_pool(struct lg_run *run)
{
    struct epoll_event events[LG_EVENTS_MAX];
    int64_t deadline = now_ns() + LG_POOL_WAIT_MS * NS_PER_MS;

    for (int i = 0; i < run->nconns; i++)
        conn_open(run, &run->conns[i], now_ns());
    while (run->nidle < run->nconns && now_ns() < deadline) {
        int n = epoll_wait(run->epfd, events, LG_EVENTS_MAX, LG_SWEEP_MS);
        for (int i = 0; i < n; i++)
            dispatch(run, &events[i]);
        if (run->signals > 0)
            return ERR_CLOSED;
    }
    if (run->nidle == 0) {
        log_error("loadgen", "connect_failed host=%s port=%d connections=%d",
                  run->host, run->port, run->nconns);
        return ERR_IO;
    }
    if (run->nidle < run->nconns)
        log_warn("loadgen", "pool_partial open=%d wanted=%d", run->nidle,
                 run->nconns);
    return ERR_OK;
}

/* Nothing waits for a connection, for an answer or to be sent again. */
static bool all_answered(const struct lg_run *run)
{
    return run->bl_len == 0 && run->nbusy == 0 && run->nresend == 0;
}

static void drive(struct lg_run *run)
{
    struct epoll_event events[LG_EVENTS_MAX];
    int64_t now = now_ns(), next_sweep = now, next_progress, hard_stop;

    run->start_ns = now + NS_PER_MS;
    next_progress = run->start_ns + NS_PER_S;
    for (;;) {
        now = now_ns();
        issue_due(run, now);
        if (now >= next_sweep) {
            sweep(run, now);
            next_sweep = now + LG_SWEEP_MS * NS_PER_MS;
        }
        if (now >= next_progress) {
            progress(run, now);
            next_progress += NS_PER_S;
        }
        hard_stop = run->start_ns +
                    loadgen_schedule_offset_ns(run->rate, run->total) +
                    run->timeout_ns + LG_DRAIN_EXTRA_MS * NS_PER_MS;
        if (schedule_over(run) &&
            (all_answered(run) || now > hard_stop || run->signals > 1))
            break;
        arm_timer(run);

        int n = epoll_wait(run->epfd, events, LG_EVENTS_MAX, LG_SWEEP_MS);
        for (int i = 0; i < n; i++)
            dispatch(run, &events[i]);
    }

    /* What is still out never got its answer in time. */
    for (int i = 0; i < run->nconns; i++) {
        if (run->conns[i].state == LG_BUSY)
            conn_fail(run, &run->conns[i], true, now);
        if (run->conns[i].resend)
            resend_give_up(run, &run->conns[i]);
    }
    run->n.timeouts += run->bl_len;
    run->bl_len = 0;
}

/* --- seat maps at start --------------------------------------------------- */

/* A blocking keep-alive link for the seat-map reads before the run. */
struct lg_fetch {
    int fd;
    char *buf;
    size_t len, cap;
};

static void fetch_close(struct lg_fetch *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    f->len = 0;
}

static int fetch_connect(struct lg_run *run, struct lg_fetch *f)
{
    struct timeval tv = {.tv_sec = run->timeout_ns / NS_PER_S,
                         .tv_usec = (run->timeout_ns % NS_PER_S) / 1000};

    f->fd = socket(run->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (f->fd < 0)
        return ERR_SYS;
    setsockopt(f->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(f->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(f->fd, (struct sockaddr *)&run->addr, run->addrlen) != 0) {
        log_debug("loadgen", "fetch_connect_failed errno=%d", errno);
        fetch_close(f);
        return ERR_IO;
    }
    return ERR_OK;
}

/*
 * One request on f: a GET when body is NULL, else a POST of that JSON.  On
 * ERR_OK, r describes the answer inside f->buf.
 */
static int fetch_once(struct lg_run *run, struct lg_fetch *f, const char *path,
                      const char *body, struct loadgen_response *r)
{
    char req[LG_REQUEST_MAX];
    size_t blen = body != NULL ? strlen(body) : 0;
    int n, rc;

    if (f->fd < 0 && fetch_connect(run, f) != ERR_OK)
        return ERR_IO;
    n = snprintf(req, sizeof(req),
                 "%s %s HTTP/1.1\r\nHost: %s:%d\r\n"
                 "Accept: application/json\r\n"
                 "Content-Type: application/json\r\n"
                 "Content-Length: %zu\r\n\r\n%s",
                 body != NULL ? "POST" : "GET", path, run->host, run->port,
                 blen, body != NULL ? body : "");
    assert(n > 0 && (size_t)n < sizeof(req));
    if (send(f->fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        goto out_close;
    f->len = 0;
    for (;;) {
        if (f->len == f->cap) {
            size_t cap = f->cap == 0 ? 65536 : f->cap * 2;
            char *nb =
                cap <= LOADGEN_RESPONSE_MAX ? realloc(f->buf, cap) : NULL;
            if (nb == NULL)
                goto out_close;
            f->buf = nb;
            f->cap = cap;
        }
        ssize_t got = recv(f->fd, f->buf + f->len, f->cap - f->len, 0);
        if (got <= 0)
            goto out_close;
        f->len += (size_t)got;
        rc = loadgen_response_parse(f->buf, f->len, r);
        if (rc == ERR_OK)
            break;
        if (rc != ERR_AGAIN)
            goto out_close;
    }
    if (r->close || r->consumed != f->len) {
        close(f->fd);
        f->fd = -1;
    }
    return ERR_OK;

out_close:
    fetch_close(f);
    return ERR_IO;
}

/*
 * Reads the seat map of show id into show.  ERR_OK, ERR_NOTFOUND (the
 * show does not exist or has no block of seats to pick), or ERR_IO.
 */
static int fetch_show(struct lg_run *run, struct lg_fetch *f, int64_t id,
                      struct loadgen_show *show)
{
    char path[64];
    struct loadgen_response r = {.retry_after_s = -1};

    snprintf(path, sizeof(path), "/v1/shows/%lld/seats", (long long)id);
    for (int attempt = 0; attempt < LG_FETCH_TRIES; attempt++) {
        on_signal(run); /* the loop does not run yet: look by hand */
        if (run->signals > 0)
            return ERR_CLOSED;
        if (fetch_once(run, f, path, NULL, &r) != ERR_OK || r.status >= 500) {
            int wait_ms = LG_FETCH_BACKOFF_MS;
            if (r.retry_after_s > 0 && r.retry_after_s < 5)
                wait_ms = r.retry_after_s * 1000;
            r.retry_after_s = -1;
            usleep((useconds_t)wait_ms * 1000);
            continue;
        }
        if (r.status == 404)
            return ERR_NOTFOUND;
        if (r.status != 200) {
            log_error("loadgen", "seat_map_refused show=%lld status=%d",
                      (long long)id, r.status);
            return ERR_IO;
        }
        json_t *doc = json_loadb(r.body, r.body_len, 0, NULL);
        int rc = doc != NULL
                     ? loadgen_show_parse(doc, run->seats_per_hold, show)
                     : ERR_INVALID;
        json_decref(doc);
        if (rc == ERR_OK)
            show->id = id;
        else if (rc == ERR_INVALID)
            log_error("loadgen", "seat_map_invalid show=%lld", (long long)id);
        return rc == ERR_INVALID ? ERR_IO : rc;
    }
    log_error("loadgen", "seat_map_unavailable show=%lld tries=%d",
              (long long)id, LG_FETCH_TRIES);
    return ERR_IO;
}

/* Reads the hot show, then every cold one; the hot one must be there. */
static int fetch_shows(struct lg_run *run)
{
    struct lg_fetch f = {.fd = -1};
    int64_t ncold = run->cold_hi - run->cold_lo + 1;
    size_t skipped = 0;
    int rc;

    run->shows = calloc((size_t)ncold + 1, sizeof(*run->shows));
    if (run->shows == NULL)
        return ERR_NOMEM;
    rc = fetch_show(run, &f, run->hot_id, &run->shows[0]);
    if (rc != ERR_OK) {
        log_error("loadgen", "hot_show_unusable show=%lld error=%s",
                  (long long)run->hot_id, err_name(rc));
        goto out_fetch;
    }
    run->nshows = 1;
    for (int64_t id = run->cold_lo; id <= run->cold_hi; id++) {
        if (id == run->hot_id)
            continue;
        rc = fetch_show(run, &f, id, &run->shows[run->nshows]);
        if (rc == ERR_NOTFOUND) {
            skipped++;
            continue;
        }
        if (rc != ERR_OK)
            goto out_fetch;
        run->nshows++;
    }
    if (skipped > 0)
        log_warn("loadgen", "cold_shows_skipped count=%zu reason=\"%s\"",
                 skipped, "not found or no adjacent seats");
    log_info("loadgen", "seat_maps_read hot=%lld cold=%zu hot_seats=%u",
             (long long)run->hot_id, run->nshows - 1, run->shows[0].nseats);
    rc = ERR_OK;

out_fetch:
    fetch_close(&f);
    free(f.buf);
    return rc;
}

/* --- customers at start --------------------------------------------------- */

/* What the sign-up threads share. */
struct lg_signup {
    struct lg_run *run;
    char password[LG_PASSWORD_MAX]; /* one per run, never logged */
    pthread_mutex_t lock;           /* the fields below, the signal fd */
    int64_t next;                   /* the next customer to sign up */
    bool failed;
};

/* Whether sign-ups should stop: one failed, or a signal came. */
static bool signup_stopped(struct lg_signup *su)
{
    bool stop;

    pthread_mutex_lock(&su->lock);
    on_signal(su->run);
    stop = su->failed || su->run->signals > 0;
    pthread_mutex_unlock(&su->lock);
    return stop;
}

/*
 * POSTs body to path, again after a 503 (the gateway's sign-in queue is
 * full) or a lost link, at most LG_SIGNUP_TRIES times.  *resent tells
 * whether an earlier copy may have reached the gateway.  ERR_OK with the
 * answer in r, ERR_CLOSED after a signal or another thread's failure, or
 * ERR_IO.
 */
static int signup_post(struct lg_signup *su, struct lg_fetch *f,
                       const char *path, const char *body,
                       struct loadgen_response *r, bool *resent)
{
    *resent = false;
    for (int attempt = 0; attempt < LG_SIGNUP_TRIES; attempt++) {
        int wait_ms = LG_FETCH_BACKOFF_MS;

        if (signup_stopped(su))
            return ERR_CLOSED;
        r->retry_after_s = -1;
        if (fetch_once(su->run, f, path, body, r) == ERR_OK) {
            if (r->status != 503)
                return ERR_OK;
            if (r->retry_after_s > 0 && r->retry_after_s < 5)
                wait_ms = r->retry_after_s * 1000;
        } else {
            *resent = true;
        }
        usleep((useconds_t)wait_ms * 1000);
    }
    log_error("loadgen", "signup_unavailable path=%s tries=%d", path,
              LG_SIGNUP_TRIES);
    return ERR_IO;
}

/* Logs a refused sign-up with the answer, made safe for one log line. */
static void signup_refused(const char *step, const struct loadgen_response *r)
{
    char answer[LG_SIGNUP_ANSWER_MAX + 1];
    size_t n =
        r->body_len < LG_SIGNUP_ANSWER_MAX ? r->body_len : LG_SIGNUP_ANSWER_MAX;

    for (size_t i = 0; i < n; i++) {
        char ch = r->body[i];
        answer[i] = ch >= ' ' && ch < 127 && ch != '"' ? ch : '\'';
    }
    answer[n] = '\0';
    const char *why = r->status == 404 || r->status == 405
                          ? "the target is not a gateway (no accounts)"
                          : "the gateway refused it";
    log_error("loadgen",
              "signup_refused step=%s status=%d reason=\"%s\" answer=\"%s\"",
              step, r->status, why, answer);
}

/* Makes customer i's account, then signs it in. */
static int signup_one(struct lg_signup *su, struct lg_fetch *f, int64_t i)
{
    struct lg_run *run = su->run;
    struct loadgen_response r;
    char body[384];
    bool resent;
    int64_t asked, expires;
    int rc;

    snprintf(body, sizeof(body),
             "{\"email\":\"%s-%lld@loadgen.invalid\",\"password\":\"%s\","
             "\"name\":\"loadgen customer %lld\"}",
             run->tag, (long long)i, su->password, (long long)i);
    rc = signup_post(su, f, "/v1/accounts", body, &r, &resent);
    if (rc != ERR_OK)
        return rc;
    /* A 409 after a lost answer is our own account, made the first time. */
    if (r.status != 201 && !(r.status == 409 && resent)) {
        signup_refused("account", &r);
        return ERR_IO;
    }

    snprintf(body, sizeof(body),
             "{\"email\":\"%s-%lld@loadgen.invalid\",\"password\":\"%s\"}",
             run->tag, (long long)i, su->password);
    asked = now_ns();
    rc = signup_post(su, f, "/v1/sessions", body, &r, &resent);
    if (rc != ERR_OK)
        return rc;
    if (r.status != 201) {
        signup_refused("session", &r);
        return ERR_IO;
    }
    if (loadgen_session_parse(r.body, r.body_len, &run->sessions[i]) !=
        ERR_OK) {
        log_error("loadgen", "session_answer_invalid customer=%lld",
                  (long long)i);
        return ERR_IO;
    }

    /* Counted from before the request: the token may be older than that. */
    expires = asked + run->sessions[i].expires_in_s * NS_PER_S;
    pthread_mutex_lock(&su->lock);
    if (expires < run->tokens_expire_ns)
        run->tokens_expire_ns = expires;
    pthread_mutex_unlock(&su->lock);
    return ERR_OK;
}

/* A sign-up thread: takes the next customer until none is left. */
static void *signup_worker(void *arg)
{
    struct lg_signup *su = arg;
    struct lg_fetch f = {.fd = -1};

    for (;;) {
        int64_t i;

        pthread_mutex_lock(&su->lock);
        i = su->failed ? su->run->ncustomers : su->next++;
        pthread_mutex_unlock(&su->lock);
        if (i >= su->run->ncustomers)
            break;
        if (signup_one(su, &f, i) != ERR_OK) {
            pthread_mutex_lock(&su->lock);
            su->failed = true;
            pthread_mutex_unlock(&su->lock);
            break;
        }
    }
    fetch_close(&f);
    free(f.buf);
    return NULL;
}

/*
 * Signs ncustomers fresh customers up and in through the target, with at
 * most signups_in_flight at once, one blocking connection each.
 */
static int sign_up(struct lg_run *run)
{
    struct lg_signup su = {.run = run};
    pthread_t threads[LOADGEN_SIGNUPS_MAX];
    int nthreads = run->signups_in_flight, started = 0;
    uint8_t pw[16];
    int64_t t0 = now_ns();

    if (nthreads > run->ncustomers)
        nthreads = (int)run->ncustomers;
    run->sessions = calloc((size_t)run->ncustomers, sizeof(*run->sessions));
    if (run->sessions == NULL)
        return ERR_NOMEM;
    if (rand_secure_bytes(pw, sizeof(pw)) != ERR_OK) {
        log_error("loadgen", "getrandom_failed errno=%d", errno);
        return ERR_SYS;
    }
    for (size_t k = 0; k < sizeof(pw); k++)
        snprintf(su.password + 2 * k, sizeof(su.password) - 2 * k, "%02x",
                 pw[k]);
    run->tokens_expire_ns = INT64_MAX;
    pthread_mutex_init(&su.lock, NULL);

    for (; started < nthreads; started++) {
        int rc = pthread_create(&threads[started], NULL, signup_worker, &su);
        if (rc != 0) {
            log_error("loadgen", "thread_create_failed errno=%d", rc);
            pthread_mutex_lock(&su.lock);
            su.failed = true;
            pthread_mutex_unlock(&su.lock);
            break;
        }
    }
    for (int k = 0; k < started; k++)
        pthread_join(threads[k], NULL);
    pthread_mutex_destroy(&su.lock);
    explicit_bzero(su.password, sizeof(su.password));

    run->signup_ns = now_ns() - t0;
    if (run->signals > 0)
        return ERR_CLOSED;
    if (su.failed)
        return ERR_IO;
    log_info(
        "loadgen", "customers_signed_in count=%lld seconds=%.3f in_flight=%d",
        (long long)run->ncustomers, (double)run->signup_ns / 1e9, nthreads);
    return ERR_OK;
}

/*
 * Access tokens are not refreshed during a run: one that expired would
 * turn every later hold of its customer into a 401, which would read as
 * the platform's failure.  LOADGEN_DURATION_MAX_S is under the gateway's
 * default life of 900 s, so only a shorter life, or a sign-up that took
 * long, refuses a run here, before it starts.
 */
static int check_token_life(const struct lg_run *run)
{
    int64_t end = now_ns() + NS_PER_MS +
                  loadgen_schedule_offset_ns(run->rate, run->total) +
                  run->timeout_ns + LG_DRAIN_EXTRA_MS * NS_PER_MS;

    if (run->ncustomers == 0 || run->tokens_expire_ns >= end)
        return ERR_OK;
    static const char why[] = "an access token would expire during the "
                              "run: shorten loadgen.duration_s or lengthen "
                              "gateway.access_token_ttl_s";
    log_error("loadgen",
              "tokens_expire_too_soon left_s=%.1f run_s=%.1f reason=\"%s\"",
              (double)(run->tokens_expire_ns - now_ns()) / 1e9,
              (double)(end - now_ns()) / 1e9, why);
    return ERR_CONFIG;
}

/* --- settings, set-up and report ------------------------------------------ */

static int resolve_target(struct lg_run *run, const char *url)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[8];
    int rc;

    if (loadgen_target_parse(url, run->host, &run->port) != ERR_OK) {
        fprintf(stderr,
                "config: bad value key=loadgen.target value=\"%s\" "
                "reason=\"expected http://HOST:PORT\"\n",
                url);
        return ERR_CONFIG;
    }
    snprintf(port, sizeof(port), "%d", run->port);
    rc = getaddrinfo(run->host, port, &hints, &res);
    if (rc != 0 || res == NULL || res->ai_addrlen > sizeof(run->addr)) {
        log_error("loadgen", "resolve_failed host=%s reason=\"%s\"", run->host,
                  gai_strerror(rc));
        if (res != NULL)
            freeaddrinfo(res);
        return ERR_CONFIG;
    }
    memcpy(&run->addr, res->ai_addr, res->ai_addrlen);
    run->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return ERR_OK;
}

/* The secret goes into header lines as it is; never printed. */
static int read_secret(struct lg_run *run, const char *secret)
{
    size_t n = strlen(secret);
    const char *why = NULL;

    if (n >= sizeof(run->secret))
        why = "longer than 255 bytes";
    else if (strcspn(secret, "\r\n") != n)
        why = "holds a line break";
    else if (n > 0 && run->ncustomers > 0)
        why = "customers sign in through a gateway, which sends its own";
    if (why != NULL) {
        fprintf(stderr,
                "config: bad value key=loadgen.gateway_secret "
                "reason=\"%s\"\n",
                why);
        return ERR_CONFIG;
    }
    memcpy(run->secret, secret, n + 1);
    return ERR_OK;
}

static int read_settings(struct lg_run *run, const struct config *cfg)
{
    const char *cold = config_str(cfg, "loadgen.cold_shows");

    run->rate = config_int(cfg, "loadgen.rate");
    run->duration_s = config_int(cfg, "loadgen.duration_s");
    run->nconns = (int)config_int(cfg, "loadgen.connections");
    run->hot_id = config_int(cfg, "loadgen.hot_show");
    run->hot_share = (int)config_int(cfg, "loadgen.hot_share");
    run->seats_per_hold = (uint32_t)config_int(cfg, "loadgen.seats_per_hold");
    run->release_share = (int)config_int(cfg, "loadgen.release_share");
    run->keys = config_bool(cfg, "loadgen.idempotency_keys");
    run->timeout_ns = config_int(cfg, "loadgen.timeout_ms") * NS_PER_MS;
    run->seed = (uint64_t)config_int(cfg, "loadgen.seed");
    run->ncustomers = config_int(cfg, "loadgen.customers");
    run->signups_in_flight = (int)config_int(cfg, "loadgen.signups_in_flight");
    if (read_secret(run, config_str(cfg, "loadgen.gateway_secret")) != ERR_OK)
        return ERR_CONFIG;
    if (loadgen_range_parse(cold, &run->cold_lo, &run->cold_hi) != ERR_OK ||
        run->cold_hi - run->cold_lo >= LOADGEN_SHOWS_MAX) {
        fprintf(stderr,
                "config: bad value key=loadgen.cold_shows value=\"%s\" "
                "reason=\"expected FIRST-LAST, at most %d shows\"\n",
                cold, LOADGEN_SHOWS_MAX);
        return ERR_CONFIG;
    }
    return resolve_target(run, config_str(cfg, "loadgen.target"));
}

/* The tag that makes customer ids and idempotency keys unique per run. */
static int make_tag(struct lg_run *run)
{
    uint64_t r;

    if (rand_secure_bytes(&r, sizeof(r)) != ERR_OK) {
        log_error("loadgen", "getrandom_failed errno=%d", errno);
        return ERR_SYS;
    }
    /* A seed drawn here is reported, so that a run can be repeated. */
    if (run->seed == 0)
        run->seed = (r >> 1) | 1;
    rand_seed(&run->rng, run->seed);
    snprintf(run->tag, sizeof(run->tag), "lg%012llx",
             (unsigned long long)(r & 0xffffffffffffULL));
    return ERR_OK;
}

static int setup_loop(struct lg_run *run)
{
    struct epoll_event ev = {.events = EPOLLIN};
    sigset_t set;

    run->conns = calloc((size_t)run->nconns, sizeof(*run->conns));
    run->idle = calloc((size_t)run->nconns, sizeof(*run->idle));
    run->backlog = calloc(LOADGEN_BACKLOG_MAX, sizeof(*run->backlog));
    if (run->conns == NULL || run->idle == NULL || run->backlog == NULL)
        return ERR_NOMEM;
    for (int i = 0; i < run->nconns; i++) {
        run->conns[i].fd = -1;
        run->conns[i].idle_pos = -1;
    }

    /*
     * main() blocked SIGINT and SIGTERM; they arrive here instead.  A shell
     * starts background jobs with SIGINT ignored, and an ignored signal
     * never reaches a signalfd: back to the default, which blocking keeps
     * from ending the process.
     */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    run->epfd = epoll_create1(EPOLL_CLOEXEC);
    run->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    run->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (run->epfd < 0 || run->tfd < 0 || run->sfd < 0) {
        log_error("loadgen", "event_setup_failed errno=%d", errno);
        return ERR_SYS;
    }
    ev.data.u64 = TAG_TIMER;
    epoll_ctl(run->epfd, EPOLL_CTL_ADD, run->tfd, &ev);
    ev.data.u64 = TAG_SIGNAL;
    epoll_ctl(run->epfd, EPOLL_CTL_ADD, run->sfd, &ev);
    return ERR_OK;
}

static void teardown(struct lg_run *run)
{
    for (int i = 0; run->conns != NULL && i < run->nconns; i++)
        if (run->conns[i].fd >= 0)
            close(run->conns[i].fd);
    for (size_t i = 0; i < run->nshows; i++)
        loadgen_show_free(&run->shows[i]);
    free(run->shows);
    if (run->sessions != NULL)
        explicit_bzero(run->sessions,
                       (size_t)run->ncustomers * sizeof(*run->sessions));
    free(run->sessions);
    free(run->conns);
    free(run->idle);
    free(run->backlog);
    if (run->epfd >= 0)
        close(run->epfd);
    if (run->tfd >= 0)
        close(run->tfd);
    if (run->sfd >= 0)
        close(run->sfd);
}

static json_t *latency_json(const struct loadgen_hist *h)
{
    double mean = h->count > 0 ? (double)h->sum_us / (double)h->count : 0;

    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "count",
                     (json_int_t)h->count, "mean", us_to_ms((uint64_t)mean),
                     "p50", us_to_ms(loadgen_hist_percentile(h, 50)), "p90",
                     us_to_ms(loadgen_hist_percentile(h, 90)), "p99",
                     us_to_ms(loadgen_hist_percentile(h, 99)), "p99_9",
                     us_to_ms(loadgen_hist_percentile(h, 99.9)), "max",
                     us_to_ms(h->max_us));
}

static double per_s(uint64_t n, double seconds)
{
    return seconds > 0 ? round((double)n / seconds * 100) / 100 : 0;
}

/* The signed-in customers: how many, how long it took, their emails. */
static json_t *customers_json(const struct lg_run *run)
{
    double secs = (double)run->signup_ns / 1e9;
    char prefix[sizeof(run->tag) + 1];

    snprintf(prefix, sizeof(prefix), "%s-", run->tag);
    return json_pack("{s:I, s:f, s:f, s:s}", "count",
                     (json_int_t)run->ncustomers, "signup_s",
                     round(secs * 1000) / 1000, "signups_per_s",
                     per_s((uint64_t)run->ncustomers, secs), "email_prefix",
                     run->ncustomers > 0 ? prefix : "");
}

static void report(const struct lg_run *run)
{
    const struct lg_counts *n = &run->n;
    /* The span of the schedule that ran (shorter after a signal). */
    double secs = (double)run->total / (double)run->rate;
    json_t *status = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "201",
        (json_int_t)n->created, "409", (json_int_t)n->conflicts, "429",
        (json_int_t)n->rate_limited, "503", (json_int_t)n->shed, "4xx_other",
        (json_int_t)n->client_errors, "5xx", (json_int_t)n->server_errors,
        "other", (json_int_t)n->other, "timeouts", (json_int_t)n->timeouts,
        "io_errors", (json_int_t)n->io_errors, "connect_errors",
        (json_int_t)n->connect_errors, "dropped", (json_int_t)n->dropped);
    json_t *out = json_pack(
        "{s:s, s:I, s:f, s:i, s:I, s:I, s:I, s:I, s:i, s:i, s:I, s:o, s:f, "
        "s:f, s:{s:I, s:I, s:I}, s:{s:o, s:o}}",
        "target_host", run->host, "offered_rate", (json_int_t)run->rate,
        "duration_s", secs, "connections", run->nconns, "seed",
        (json_int_t)run->seed, "hot_show", (json_int_t)run->hot_id,
        "cold_shows", (json_int_t)(run->nshows - 1), "scheduled",
        (json_int_t)run->total, "hot_share", run->hot_share, "release_share",
        run->release_share, "sent", (json_int_t)n->sent, "status", status,
        "holds_per_s", per_s(n->created, secs), "conflicts_per_s",
        per_s(n->conflicts, secs), "releases", "sent",
        (json_int_t)n->releases_sent, "ok", (json_int_t)n->releases_ok,
        "failed", (json_int_t)n->releases_failed, "latency_ms", "all",
        latency_json(&run->all), "created", latency_json(&run->created));

    json_object_set_new(out, "resent", json_integer((json_int_t)n->resent));
    json_object_set_new(out, "backlog_peak",
                        json_integer((json_int_t)run->bl_peak));
    json_object_set_new(out, "customers", customers_json(run));
    json_dumpf(out, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    fputc('\n', stdout);
    fflush(stdout);
    json_decref(out);
}

int loadgen_main(int argc, char **argv)
{
    struct config cfg;
    struct lg_run *run;
    int rc, exit_code = 1;

    rc = program_start(&cfg, loadgen_keys,
                       sizeof(loadgen_keys) / sizeof(loadgen_keys[0]), argc,
                       argv, "loadgen",
                       "Sends hold requests to a booking service, or through "
                       "a gateway as signed-in\ncustomers, at a fixed rate "
                       "and prints one JSON object of counts and\nlatencies "
                       "on stdout.");
    if (rc != ERR_OK)
        return rc == PROGRAM_HELPED ? 2 : 1;
    run = calloc(1, sizeof(*run));
    if (run == NULL) {
        config_free(&cfg);
        return 1;
    }
    run->epfd = run->tfd = run->sfd = -1;
    if (read_settings(run, &cfg) != ERR_OK)
        goto out_config;
    run->total = loadgen_schedule_total(run->rate, run->duration_s);

    if (make_tag(run) != ERR_OK || setup_loop(run) != ERR_OK ||
        (run->ncustomers > 0 && sign_up(run) != ERR_OK) ||
        fetch_shows(run) != ERR_OK || open_pool(run) != ERR_OK ||
        check_token_life(run) != ERR_OK)
        goto out_run;
    log_info("loadgen",
             "start rate=%lld duration_s=%lld connections=%d hot_show=%lld "
             "cold_shows=%zu hot_share=%d release_share=%d customers=%lld "
             "tag=%s",
             (long long)run->rate, (long long)run->duration_s, run->nconns,
             (long long)run->hot_id, run->nshows - 1, run->hot_share,
             run->release_share, (long long)run->ncustomers, run->tag);
    drive(run);
    report(run);
    exit_code = 0;

out_run:
    teardown(run);
out_config:
    config_free(&cfg);
    free(run);
    return exit_code;
}
