/*
 * test_loadgen.c - the pure parts of the load generator: the schedule of
 * send times, the latency histogram against known data, range and target
 * parsing, the parser of HTTP/1.1 answers, and the choice of adjacent
 * seats from a seat map.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/rand.h"
#include "tools/loadgen.h"

/* --- schedule ------------------------------------------------------------ */

TEST(schedule_offsets_at_whole_rates)
{
    CHECK_INT(loadgen_schedule_offset_ns(1000, 0), 0);
    CHECK_INT(loadgen_schedule_offset_ns(1000, 1), 1000000);
    CHECK_INT(loadgen_schedule_offset_ns(1000, 1000), 1000000000);
    CHECK_INT(loadgen_schedule_offset_ns(1, 5), 5000000000LL);
    /* Exact at the end of the longest run: no accumulated drift. */
    CHECK_INT(loadgen_schedule_offset_ns(LOADGEN_RATE_MAX,
                                         (uint64_t)LOADGEN_RATE_MAX * 600),
              600000000000LL);
}

TEST(schedule_offsets_at_uneven_rates)
{
    CHECK_INT(loadgen_schedule_offset_ns(3, 1), 333333333);
    CHECK_INT(loadgen_schedule_offset_ns(3, 2), 666666666);
    CHECK_INT(loadgen_schedule_offset_ns(3, 3), 1000000000);
    CHECK_INT(loadgen_schedule_offset_ns(7, 700), 100000000000LL);
    /* Offsets never go back and the gaps differ by at most 1 ns. */
    for (uint64_t i = 1; i < 10000; i++) {
        int64_t gap = loadgen_schedule_offset_ns(999983, i) -
                      loadgen_schedule_offset_ns(999983, i - 1);
        CHECK(gap == 1000 || gap == 1001);
    }
}

TEST(schedule_due_counts_requests_at_or_before)
{
    CHECK_INT(loadgen_schedule_due(1000, -1), 0);
    CHECK_INT(loadgen_schedule_due(1000, 0), 1);
    CHECK_INT(loadgen_schedule_due(1000, 999999), 1);
    CHECK_INT(loadgen_schedule_due(1000, 1000000), 2);
    CHECK_INT(loadgen_schedule_due(1000, 1000000000), 1001);

    /* Against the offsets themselves, at a few rates and many times. */
    static const int64_t rates[] = {1, 3, 7, 1000, 999983};
    struct rand r;
    rand_seed(&r, 42);
    for (size_t k = 0; k < sizeof(rates) / sizeof(rates[0]); k++) {
        for (int n = 0; n < 2000; n++) {
            int64_t e = (int64_t)rand_below(&r, 3000000000ULL);
            uint64_t due = loadgen_schedule_due(rates[k], e);
            CHECK(loadgen_schedule_offset_ns(rates[k], due - 1) <= e);
            CHECK(loadgen_schedule_offset_ns(rates[k], due) > e);
        }
    }
}

TEST(schedule_total)
{
    CHECK_INT(loadgen_schedule_total(1000, 10), 10000);
    CHECK_INT(loadgen_schedule_total(7, 600), 4200);
    CHECK_INT(loadgen_schedule_total(5, 0), 0);
}

/* --- histogram ----------------------------------------------------------- */

/* Whether got is within the histogram's precision (1/128) of want. */
static bool near(uint64_t got, uint64_t want)
{
    uint64_t d = got > want ? got - want : want - got;
    return d * 128 <= want;
}

TEST(hist_empty_and_single)
{
    static struct loadgen_hist h;

    loadgen_hist_reset(&h);
    CHECK_INT(loadgen_hist_percentile(&h, 50), 0);
    CHECK_INT(loadgen_hist_percentile(&h, 100), 0);
    loadgen_hist_record(&h, 12345);
    CHECK_INT(h.count, 1);
    CHECK_INT(loadgen_hist_percentile(&h, 0), 12345);
    CHECK_INT(loadgen_hist_percentile(&h, 50), 12345);
    CHECK_INT(loadgen_hist_percentile(&h, 100), 12345);
}

TEST(hist_linear_part_is_exact)
{
    static struct loadgen_hist h;

    loadgen_hist_reset(&h);
    for (uint64_t v = 1; v <= 200; v++)
        loadgen_hist_record(&h, v);
    CHECK_INT(loadgen_hist_percentile(&h, 50), 100);
    CHECK_INT(loadgen_hist_percentile(&h, 90), 180);
    CHECK_INT(loadgen_hist_percentile(&h, 99), 198);
    CHECK_INT(loadgen_hist_percentile(&h, 100), 200);
    CHECK_INT(h.sum_us, 200 * 201 / 2);
}

TEST(hist_percentiles_of_a_uniform_range)
{
    static struct loadgen_hist h;

    loadgen_hist_reset(&h);
    for (uint64_t v = 1; v <= 100000; v++)
        loadgen_hist_record(&h, v);
    CHECK(near(loadgen_hist_percentile(&h, 50), 50000));
    CHECK(near(loadgen_hist_percentile(&h, 90), 90000));
    CHECK(near(loadgen_hist_percentile(&h, 99), 99000));
    CHECK(near(loadgen_hist_percentile(&h, 99.9), 99900));
    CHECK_INT(loadgen_hist_percentile(&h, 100), 100000);
    CHECK_INT(h.max_us, 100000);
    /* Reported values never fall below the true ones. */
    CHECK(loadgen_hist_percentile(&h, 50) >= 50000);
    CHECK(loadgen_hist_percentile(&h, 99.9) >= 99900);
}

TEST(hist_tail_of_a_skewed_set)
{
    static struct loadgen_hist h;

    /* 990 fast answers and 10 stalls: p99 is fast, p99.9 is a stall. */
    loadgen_hist_reset(&h);
    for (int i = 0; i < 990; i++)
        loadgen_hist_record(&h, 800);
    for (int i = 0; i < 10; i++)
        loadgen_hist_record(&h, 2000000);
    CHECK(near(loadgen_hist_percentile(&h, 50), 800));
    CHECK(near(loadgen_hist_percentile(&h, 99), 800));
    CHECK(near(loadgen_hist_percentile(&h, 99.1), 2000000));
    CHECK(near(loadgen_hist_percentile(&h, 99.9), 2000000));
    CHECK_INT(loadgen_hist_percentile(&h, 100), 2000000);
}

TEST(hist_buckets_tile_the_range)
{
    CHECK_INT(loadgen_hist_bucket(0), 0);
    CHECK_INT(loadgen_hist_bucket(255), 255);
    CHECK_INT(loadgen_hist_bucket(256), 256);
    for (size_t b = 0; b + 1 < LOADGEN_HIST_BUCKETS; b++) {
        uint64_t high = loadgen_hist_bucket_high(b);
        CHECK_INT(loadgen_hist_bucket(high), b);
        CHECK_INT(loadgen_hist_bucket(high + 1), b + 1);
    }
    CHECK_INT(loadgen_hist_bucket_high(LOADGEN_HIST_BUCKETS - 1),
              LOADGEN_HIST_MAX_US);
    /* Larger values land in the last bucket; the maximum stays exact. */
    CHECK_INT(loadgen_hist_bucket(UINT64_MAX), LOADGEN_HIST_BUCKETS - 1);

    static struct loadgen_hist h;
    loadgen_hist_reset(&h);
    loadgen_hist_record(&h, LOADGEN_HIST_MAX_US + 5);
    CHECK_INT(loadgen_hist_percentile(&h, 50), LOADGEN_HIST_MAX_US);
    CHECK_INT(h.max_us, LOADGEN_HIST_MAX_US + 5);
}

/* --- settings ------------------------------------------------------------ */

TEST(range_parse_good)
{
    int64_t lo, hi;

    CHECK_INT(loadgen_range_parse("2-100", &lo, &hi), ERR_OK);
    CHECK_INT(lo, 2);
    CHECK_INT(hi, 100);
    CHECK_INT(loadgen_range_parse("7", &lo, &hi), ERR_OK);
    CHECK_INT(lo, 7);
    CHECK_INT(hi, 7);
    CHECK_INT(loadgen_range_parse("5-5", &lo, &hi), ERR_OK);
    CHECK_INT(hi - lo + 1, 1);
    CHECK_INT(loadgen_range_parse("", &lo, &hi), ERR_OK);
    CHECK_INT(hi - lo + 1, 0);
}

TEST(range_parse_bad)
{
    static const char *const bad[] = {
        "0",
        "0-3",
        "-1",
        "5-2",
        "a",
        "2-",
        "-",
        "2-3x",
        " 2",
        "2 -3",
        "2-+3",
        "+2",
        "1-99999999999999999999",
        "99999999999999999999",
    };
    int64_t lo = 11, hi = 12;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (loadgen_range_parse(bad[i], &lo, &hi) != ERR_INVALID)
            harness_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
    }
    CHECK_INT(lo, 11);
    CHECK_INT(hi, 12);
}

TEST(target_parse)
{
    char host[LOADGEN_HOST_MAX];
    int port = 0;

    CHECK_INT(loadgen_target_parse("http://127.0.0.1:8082", host, &port),
              ERR_OK);
    CHECK_STR(host, "127.0.0.1");
    CHECK_INT(port, 8082);
    CHECK_INT(loadgen_target_parse("http://localhost/", host, &port), ERR_OK);
    CHECK_STR(host, "localhost");
    CHECK_INT(port, 80);
    CHECK_INT(loadgen_target_parse("http://[::1]:9000", host, &port), ERR_OK);
    CHECK_STR(host, "::1");
    CHECK_INT(port, 9000);

    static const char *const bad[] = {
        "127.0.0.1:8082",   "https://127.0.0.1", "http://",
        "http://:80",       "http://h:0",        "http://h:65536",
        "http://h:80/path", "http://[::1",       "http://h:8x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (loadgen_target_parse(bad[i], host, &port) != ERR_INVALID)
            harness_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
}

/* --- answers ------------------------------------------------------------- */

/* Parses a string literal copied into a buffer the parser may change. */
static int parse(const char *text, char *buf, size_t cap,
                 struct loadgen_response *r)
{
    size_t len = strlen(text);

    CHECK(len < cap);
    memcpy(buf, text, len + 1);
    return loadgen_response_parse(buf, len, r);
}

TEST(answer_with_length)
{
    static const char text[] = "HTTP/1.1 201 Created\r\n"
                               "Content-Type: application/json\r\n"
                               "content-length: 9\r\n"
                               "\r\n"
                               "{\"id\":1}\n";
    char buf[256];
    struct loadgen_response r;

    CHECK_INT(parse(text, buf, sizeof(buf), &r), ERR_OK);
    CHECK_INT(r.status, 201);
    CHECK(!r.close);
    CHECK_INT(r.consumed, strlen(text));
    CHECK_INT(r.body_len, 9);
    CHECK(memcmp(r.body, "{\"id\":1}\n", 9) == 0);
    CHECK_INT(r.retry_after_s, -1);

    /* Every shorter prefix asks for more. */
    for (size_t n = 0; n < strlen(text); n++)
        CHECK_INT(loadgen_response_parse(buf, n, &r), ERR_AGAIN);
}

TEST(answer_chunked_is_joined)
{
    static const char text[] = "HTTP/1.1 409 Conflict\r\n"
                               "Transfer-Encoding: chunked\r\n"
                               "Connection: close\r\n"
                               "\r\n"
                               "4;ext=1\r\n{\"se\r\n"
                               "B\r\nats\":[\"A1\"]\r\n"
                               "1\r\n}\r\n"
                               "0\r\n"
                               "X-Trailer: yes\r\n"
                               "\r\n";
    char buf[512];
    struct loadgen_response r;

    for (size_t n = 0; n < strlen(text); n++) {
        memcpy(buf, text, n);
        CHECK_INT(loadgen_response_parse(buf, n, &r), ERR_AGAIN);
    }
    CHECK_INT(parse(text, buf, sizeof(buf), &r), ERR_OK);
    CHECK_INT(r.status, 409);
    CHECK(r.close);
    CHECK_INT(r.consumed, strlen(text));
    CHECK_INT(r.body_len, 16);
    CHECK(memcmp(r.body, "{\"seats\":[\"A1\"]}", 16) == 0);
}

TEST(answer_headers_and_kinds)
{
    char buf[512];
    struct loadgen_response r;

    CHECK_INT(parse("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\n"
                    "Content-Length: 0\r\n\r\n",
                    buf, sizeof(buf), &r),
              ERR_OK);
    CHECK_INT(r.status, 503);
    CHECK_INT(r.retry_after_s, 2);
    CHECK_INT(r.body_len, 0);

    CHECK_INT(parse("HTTP/1.1 204 No Content\r\n\r\n", buf, sizeof(buf), &r),
              ERR_OK);
    CHECK_INT(r.status, 204);

    /* HTTP/1.0 closes unless it says keep-alive. */
    CHECK_INT(parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", buf,
                    sizeof(buf), &r),
              ERR_OK);
    CHECK(r.close);
    CHECK_INT(parse("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n"
                    "Content-Length: 0\r\n\r\n",
                    buf, sizeof(buf), &r),
              ERR_OK);
    CHECK(!r.close);

    /* Two answers back to back: the first is taken alone. */
    CHECK_INT(parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1",
                    buf, sizeof(buf), &r),
              ERR_OK);
    CHECK_INT(r.consumed, 40);
}

TEST(answer_malformed)
{
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r\n", /* no length */
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
    };
    char buf[512];
    struct loadgen_response r;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse(bad[i], buf, sizeof(buf), &r) != ERR_INVALID)
            harness_fail(__FILE__, __LINE__, "accepted answer %zu", i);
    CHECK_INT(parse("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
                    buf, sizeof(buf), &r),
              ERR_TOOBIG);
}

TEST(answer_header_section_too_big)
{
    size_t len = LOADGEN_HEADERS_MAX + 10;
    char *buf = malloc(len);
    struct loadgen_response r;

    CHECK(buf != NULL);
    memset(buf, 'a', len);
    memcpy(buf, "HTTP/1.1 200 OK\r\n", 17);
    CHECK_INT(loadgen_response_parse(buf, len, &r), ERR_TOOBIG);
    CHECK_INT(loadgen_response_parse(buf, 1000, &r), ERR_AGAIN);
    free(buf);
}

/* --- seat maps ----------------------------------------------------------- */

/*
 * Row A: 1 2 | 3 4 5, row B: 1 2 3 4 with B3 blocked, row C: a single
 * seat.  Blocks of two: A1-A2, A3-A4, A4-A5, B1-B2.
 */
static const char seat_map[] =
    "{\"show_id\":7,\"status\":\"scheduled\",\"rows\":["
    "{\"label\":\"A\",\"category\":\"p\",\"seats\":[1,2,null,3,4,5],"
    "\"states\":\"FH.SFF\"},"
    "{\"label\":\"B\",\"category\":\"p\",\"seats\":[1,2,3,4],"
    "\"states\":\"FFBF\"},"
    "{\"label\":\"C\",\"category\":\"p\",\"seats\":[null,1,null],"
    "\"states\":\".F.\"}]}";

/* The number part of a seat id: 12 for "A12". */
static long seat_number(const char *id)
{
    while (*id >= 'A' && *id <= 'Z')
        id++;
    return strtol(id, NULL, 10);
}

static int show_from(const char *text, uint32_t want, struct loadgen_show *s)
{
    json_t *doc = json_loads(text, 0, NULL);
    int rc;

    CHECK(doc != NULL);
    rc = loadgen_show_parse(doc, want, s);
    json_decref(doc);
    return rc;
}

TEST(seat_map_ids_and_blocks)
{
    struct loadgen_show s;

    CHECK_INT(show_from(seat_map, 2, &s), ERR_OK);
    CHECK_INT(s.id, 7);
    CHECK_INT(s.nseats, 10);
    CHECK_STR(s.seat_ids[0], "A1");
    CHECK_STR(s.seat_ids[4], "A5");
    CHECK_STR(s.seat_ids[7], "B3");
    CHECK_STR(s.seat_ids[9], "C1");
    CHECK_INT(s.nstarts, 4);
    CHECK_INT(s.starts[0], 0); /* A1 */
    CHECK_INT(s.starts[1], 2); /* A3 */
    CHECK_INT(s.starts[2], 3); /* A4 */
    CHECK_INT(s.starts[3], 5); /* B1 */
    loadgen_show_free(&s);

    CHECK_INT(show_from(seat_map, 1, &s), ERR_OK);
    CHECK_INT(s.nstarts, 9); /* every seat but B3 */
    loadgen_show_free(&s);

    CHECK_INT(show_from(seat_map, 3, &s), ERR_OK);
    CHECK_INT(s.nstarts, 1); /* A3-A5 */
    loadgen_show_free(&s);

    CHECK_INT(show_from(seat_map, 4, &s), ERR_NOTFOUND);
    CHECK(s.seat_ids == NULL && s.starts == NULL);
}

TEST(seat_picks_are_adjacent_and_cover_every_block)
{
    struct loadgen_show s;
    struct rand r;
    uint32_t seats[2];
    int seen[10] = {0};

    CHECK_INT(show_from(seat_map, 2, &s), ERR_OK);
    rand_seed(&r, 7);
    for (int n = 0; n < 4000; n++) {
        loadgen_show_pick(&s, &r, seats);
        const char *a = s.seat_ids[seats[0]], *b = s.seat_ids[seats[1]];

        /* Same row, numbers one apart, neither blocked nor across a gap. */
        CHECK(a[0] == b[0]);
        CHECK_INT(seat_number(b) - seat_number(a), 1);
        CHECK(strcmp(a, "B3") != 0 && strcmp(b, "B3") != 0);
        CHECK(strcmp(a, "A2") != 0);
        seen[seats[0]]++;
    }
    /* Each of the 4 blocks drawn about 1000 times. */
    static const int starts[] = {0, 2, 3, 5};
    for (size_t k = 0; k < 4; k++)
        CHECK(seen[starts[k]] > 850 && seen[starts[k]] < 1150);
    loadgen_show_free(&s);
}

TEST(seat_map_bad_shapes)
{
    static const char *const bad[] = {
        "{}",
        "{\"rows\":[]}",
        "{\"rows\":[{\"seats\":[1]}]}",
        "{\"rows\":[{\"label\":\"A\",\"seats\":[\"1\"]}]}",
        "{\"rows\":[{\"label\":\"A\",\"seats\":[0]}]}",
        "{\"rows\":[{\"label\":\"A\",\"seats\":[1,2],\"states\":\"F\"}]}",
        "{\"rows\":[{\"label\":\"ABCDE\",\"seats\":[1,2]}]}",
        "{\"rows\":[{\"label\":\"A\",\"seats\":[null]}]}",
    };
    struct loadgen_show s;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (show_from(bad[i], 1, &s) != ERR_INVALID)
            harness_fail(__FILE__, __LINE__, "accepted map %zu", i);
}

/* --- sessions ------------------------------------------------------------ */

static int session_from(const char *body, struct loadgen_session *out)
{
    return loadgen_session_parse(body, strlen(body), out);
}

TEST(session_answer_good)
{
    struct loadgen_session s;

    CHECK_INT(session_from("{\"access_token\":\"eyJh.eyJz.c2ln-_\","
                           "\"token_type\":\"Bearer\",\"expires_in\":900,"
                           "\"refresh_token\":\"rt1_x\",\"customer_id\":"
                           "\"cust-7\",\"role\":\"customer\"}",
                           &s),
              ERR_OK);
    CHECK_STR(s.token, "eyJh.eyJz.c2ln-_");
    CHECK_STR(s.customer_id, "cust-7");
    CHECK_INT(s.expires_in_s, 900);
}

TEST(session_answer_bad)
{
    /* A token of the longest size the gateway accepts passes; one more
     * byte does not fit. */
    static char longest[LOADGEN_TOKEN_MAX + 128];
    static char too_long[LOADGEN_TOKEN_MAX + 128];
    static const char *const bad[] = {
        "",
        "{}",
        "[1]",
        /* no token, empty token, a header break inside the token */
        "{\"token_type\":\"Bearer\",\"expires_in\":9,\"customer_id\":\"c\"}",
        "{\"access_token\":\"\",\"token_type\":\"Bearer\",\"expires_in\":9,"
        "\"customer_id\":\"c\"}",
        "{\"access_token\":\"a\\r\\nX: y\",\"token_type\":\"Bearer\","
        "\"expires_in\":9,\"customer_id\":\"c\"}",
        "{\"access_token\":\"a b\",\"token_type\":\"Bearer\",\"expires_in\":9,"
        "\"customer_id\":\"c\"}",
        /* another type, no or a bad life, no or a bad customer */
        "{\"access_token\":\"a\",\"token_type\":\"MAC\",\"expires_in\":9,"
        "\"customer_id\":\"c\"}",
        "{\"access_token\":\"a\",\"token_type\":\"Bearer\","
        "\"customer_id\":\"c\"}",
        "{\"access_token\":\"a\",\"token_type\":\"Bearer\",\"expires_in\":0,"
        "\"customer_id\":\"c\"}",
        "{\"access_token\":\"a\",\"token_type\":\"Bearer\",\"expires_in\":"
        "\"9\",\"customer_id\":\"c\"}",
        "{\"access_token\":\"a\",\"token_type\":\"Bearer\",\"expires_in\":9}",
        "{\"access_token\":\"a\",\"token_type\":\"Bearer\",\"expires_in\":9,"
        "\"customer_id\":\"c d\"}",
    };
    struct loadgen_session s;
    char token[LOADGEN_TOKEN_MAX + 1];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (session_from(bad[i], &s) != ERR_INVALID)
            harness_fail(__FILE__, __LINE__, "accepted answer %zu", i);

    memset(token, 'a', sizeof(token));
    token[LOADGEN_TOKEN_MAX - 1] = '\0';
    snprintf(longest, sizeof(longest),
             "{\"access_token\":\"%s\",\"token_type\":\"Bearer\","
             "\"expires_in\":9,\"customer_id\":\"c\"}",
             token);
    CHECK_INT(session_from(longest, &s), ERR_OK);
    CHECK_INT(strlen(s.token), LOADGEN_TOKEN_MAX - 1);
    token[LOADGEN_TOKEN_MAX - 1] = 'a';
    token[LOADGEN_TOKEN_MAX] = '\0';
    snprintf(too_long, sizeof(too_long),
             "{\"access_token\":\"%s\",\"token_type\":\"Bearer\","
             "\"expires_in\":9,\"customer_id\":\"c\"}",
             token);
    CHECK_INT(session_from(too_long, &s), ERR_INVALID);
}

HARNESS_MAIN(T(schedule_offsets_at_whole_rates),
             T(schedule_offsets_at_uneven_rates),
             T(schedule_due_counts_requests_at_or_before), T(schedule_total),
             T(hist_empty_and_single), T(hist_linear_part_is_exact),
             T(hist_percentiles_of_a_uniform_range),
             T(hist_tail_of_a_skewed_set), T(hist_buckets_tile_the_range),
             T(range_parse_good), T(range_parse_bad), T(target_parse),
             T(answer_with_length), T(answer_chunked_is_joined),
             T(answer_headers_and_kinds), T(answer_malformed),
             T(answer_header_section_too_big), T(seat_map_ids_and_blocks),
             T(seat_picks_are_adjacent_and_cover_every_block),
             T(seat_map_bad_shapes), T(session_answer_good),
             T(session_answer_bad))
