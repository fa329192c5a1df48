/*
 * loadgen.h - `marquee loadgen`: an open-loop HTTP/1.1 load generator for
 * the flash-sale benchmark (docs/internals/loadgen.md).
 *
 * Requests leave on a fixed schedule (request i at i / rate seconds), not
 * when the previous answer comes back, and each latency is measured from
 * the request's scheduled time.  A server that stalls therefore shows its
 * stall in every request that was due meanwhile, instead of slowing the
 * generator down and hiding it (coordinated omission).
 *
 * The parts below are pure (no I/O, no clock) so that unit tests can check
 * them: the schedule, the latency histogram, range and target parsing,
 * the parser of HTTP/1.1 answers, and seat maps with the choice of adjacent
 * seats.  loadgen_main() is the network side.
 */
#ifndef MARQUEE_TOOLS_LOADGEN_H
#define MARQUEE_TOOLS_LOADGEN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/rand.h"

/* Named limits. */
#define LOADGEN_RATE_MAX           1000000 /* requests per second */
#define LOADGEN_DURATION_MAX_S     600
#define LOADGEN_CONNECTIONS_MAX    1024
#define LOADGEN_BACKLOG_MAX        65536 /* due requests waiting for a conn */
#define LOADGEN_SHOWS_MAX          20000 /* shows one run may use */
#define LOADGEN_SEATS_PER_HOLD_MAX 16
#define LOADGEN_SEATS_PER_SHOW_MAX 10000
#define LOADGEN_SEAT_ID_MAX        12 /* "ABCD999" and a NUL, with room */
#define LOADGEN_HOST_MAX           256
#define LOADGEN_HEADERS_MAX        16384   /* status line and header section */
#define LOADGEN_RESPONSE_MAX       4194304 /* a whole answer, seat maps too */
#define LOADGEN_CUSTOMERS_MAX      10000   /* signed-in customers of a run */
#define LOADGEN_SIGNUPS_MAX        16      /* sign-ups in flight at once */
#define LOADGEN_TOKEN_MAX          1024    /* an access token (the gateway's) */
#define LOADGEN_CUSTOMER_ID_MAX    64
#define LOADGEN_SECRET_MAX         256 /* loadgen.gateway_secret */

/* Runs the generator (argv[0] is "loadgen"); returns the exit code. */
int loadgen_main(int argc, char **argv);

/* --- schedule ------------------------------------------------------------- */

/*
 * The send time of request i (0-based) at rate requests per second, in
 * nanoseconds after the start: i * 1e9 / rate, exact (no drift however
 * long the run).  rate must be 1..LOADGEN_RATE_MAX.
 */
int64_t loadgen_schedule_offset_ns(int64_t rate, uint64_t i);

/*
 * How many requests are due at elapsed_ns after the start: those whose
 * send time is at or before it.  0 for a negative elapsed time.
 */
uint64_t loadgen_schedule_due(int64_t rate, int64_t elapsed_ns);

/* Requests in a run of duration_s seconds: rate * duration_s. */
uint64_t loadgen_schedule_total(int64_t rate, int64_t duration_s);

/* --- latency histogram ---------------------------------------------------- */

/*
 * A log-linear histogram of microseconds in fixed memory, like HdrHistogram:
 * values below 2^LOADGEN_HIST_SUB_BITS have a bucket each; above, every
 * power of two is split into 2^(LOADGEN_HIST_SUB_BITS - 1) equal buckets, so
 * a reported value is within 1/128 (0.8%) of the true one.  Values above
 * LOADGEN_HIST_MAX_US count in the last bucket; the exact maximum is kept
 * apart.
 */
#define LOADGEN_HIST_SUB_BITS 8
#define LOADGEN_HIST_MAX_BITS 36 /* 2^36 us: 19 hours */
#define LOADGEN_HIST_MAX_US   ((UINT64_C(1) << LOADGEN_HIST_MAX_BITS) - 1)
#define LOADGEN_HIST_BUCKETS                                                   \
    ((1 << LOADGEN_HIST_SUB_BITS) +                                            \
     (LOADGEN_HIST_MAX_BITS - LOADGEN_HIST_SUB_BITS) *                         \
         (1 << (LOADGEN_HIST_SUB_BITS - 1)))

struct loadgen_hist {
    uint64_t count;
    uint64_t max_us;
    uint64_t sum_us;
    uint64_t buckets[LOADGEN_HIST_BUCKETS];
};

void loadgen_hist_reset(struct loadgen_hist *h);
void loadgen_hist_record(struct loadgen_hist *h, uint64_t us);

/*
 * The value below which pct percent (0..100) of the recorded values lie:
 * the highest value of the bucket that holds the ceil(pct% * count)-th
 * value, never above the exact maximum.  0 when nothing was recorded.
 */
uint64_t loadgen_hist_percentile(const struct loadgen_hist *h, double pct);

/* The bucket of a value, and the highest value a bucket holds. */
size_t loadgen_hist_bucket(uint64_t us);
uint64_t loadgen_hist_bucket_high(size_t bucket);

/* --- settings ------------------------------------------------------------- */

/*
 * Parses an inclusive range of positive integers, "2-100" or "7", into
 * *lo and *hi.  "" is an empty range (*lo = 1, *hi = 0).  Returns ERR_OK,
 * or ERR_INVALID for anything else (signs, spaces, hi < lo, overflow).
 */
int loadgen_range_parse(const char *s, int64_t *lo, int64_t *hi);

/*
 * Parses "http://HOST:PORT" (an optional trailing "/") into host (at most
 * LOADGEN_HOST_MAX bytes with the NUL) and port; the port defaults to 80.
 * An IPv6 literal is written "[::1]".  ERR_OK or ERR_INVALID.
 */
int loadgen_target_parse(const char *url, char host[LOADGEN_HOST_MAX],
                         int *port);

/* --- HTTP/1.1 answers ----------------------------------------------------- */

struct loadgen_response {
    int status;
    bool close;        /* the server said Connection: close */
    size_t consumed;   /* bytes of the buffer this answer took */
    const char *body;  /* inside the buffer */
    size_t body_len;   /* decoded length (chunked bodies are joined) */
    int retry_after_s; /* Retry-After in seconds, -1 when absent */
};

/*
 * Parses one complete answer at the start of buf[0..len).  Returns ERR_OK
 * and fills out when the whole answer is there (a chunked body is then
 * decoded in place, so buf changes); ERR_AGAIN when more bytes are needed;
 * ERR_INVALID for a malformed answer; ERR_TOOBIG when the header section
 * passes LOADGEN_HEADERS_MAX or the body LOADGEN_RESPONSE_MAX.  Answers to
 * HEAD requests are not supported: every answer but 1xx, 204 and 304 must
 * carry Content-Length or a chunked body.
 */
int loadgen_response_parse(char *buf, size_t len, struct loadgen_response *out);

/* --- sessions ------------------------------------------------------------ */

/* One customer signed in through the gateway. */
struct loadgen_session {
    char token[LOADGEN_TOKEN_MAX];             /* access token, NUL ended */
    char customer_id[LOADGEN_CUSTOMER_ID_MAX]; /* "cust-7" */
    int64_t expires_in_s;                      /* the token's life */
};

/*
 * Reads the body of a 201 to POST /v1/sessions: access_token (1 to
 * LOADGEN_TOKEN_MAX - 1 bytes of base64url and dots), token_type "Bearer",
 * expires_in (> 0) and customer_id (1 to LOADGEN_CUSTOMER_ID_MAX - 1
 * bytes).  Returns ERR_OK and fills out, or ERR_INVALID for anything else
 * (out is then unspecified).  A token is written into request headers
 * as it is, so a character that could end a header line is refused.
 */
int loadgen_session_parse(const char *body, size_t len,
                          struct loadgen_session *out);

/* --- seat maps ------------------------------------------------------------ */

/*
 * One show as the generator sees it: its seat ids in layout order, and the
 * indexes where a block of `want` adjacent seats starts (same row, no gap
 * or blocked seat in between), so that a pick is one random draw.
 */
struct loadgen_show {
    int64_t id;
    uint32_t nseats;
    char (*seat_ids)[LOADGEN_SEAT_ID_MAX]; /* nseats entries */
    uint32_t *starts;                      /* nstarts entries */
    uint32_t nstarts;
    uint32_t want;
};

/*
 * Builds a show from the body of GET /v1/shows/{id}/seats ("rows" with
 * "label", "seats" and "states"), for picks of `want` adjacent seats
 * (1..LOADGEN_SEATS_PER_HOLD_MAX).  Seats marked B (blocked) are never
 * picked; the other states change during a run and are ignored.  Returns
 * ERR_OK (show owns its arrays: loadgen_show_free), ERR_INVALID for a body
 * of another shape, ERR_NOTFOUND when no block of `want` seats exists, or
 * ERR_NOMEM; on failure nothing is left to free.
 */
int loadgen_show_parse(json_t *doc, uint32_t want, struct loadgen_show *show);
void loadgen_show_free(struct loadgen_show *show);

/*
 * Picks show->want adjacent seats at random; writes their indexes into
 * out (show->want entries), left to right.  show->nstarts must be > 0.
 */
void loadgen_show_pick(const struct loadgen_show *show, struct rand *r,
                       uint32_t *out);

#endif
