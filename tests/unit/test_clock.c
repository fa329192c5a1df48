/*
 * test_clock.c - the manual clock, RFC 3339 formatting and parsing, and the
 * civil calendar helpers.  gmtime_r() serves as an independent oracle.
 */
#include "harness.h"

#include <stdio.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/rand.h"

#define DAY_MS (86400LL * 1000)

/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, in seconds. */
#define YEAR_1_S        (-62135596800LL)
#define YEAR_9999_END_S 253402300799LL
/* 2100-01-01T00:00:00Z in seconds. */
#define YEAR_2100_S 4102444800LL

/* Formats from gmtime_r, the libc reading of the same instant. */
static void oracle_format(int64_t wall_ms, char out[CLOCK_RFC3339_LEN])
{
    int64_t secs = wall_ms / 1000 - (wall_ms % 1000 < 0);
    time_t t = (time_t)secs;
    struct tm tm;

    CHECK(gmtime_r(&t, &tm) != NULL);
    /* Not strftime: glibc's %Y does not pad years before 1000. */
    CHECK_INT(snprintf(out, CLOCK_RFC3339_LEN, "%04d-%02d-%02dT%02d:%02d:%02dZ",
                       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                       tm.tm_min, tm.tm_sec),
              CLOCK_RFC3339_LEN - 1);
}

static int64_t parse_ok(const char *s)
{
    int64_t ms = -1;
    int rc = clock_parse_rfc3339(s, &ms);

    if (rc != ERR_OK)
        harness_fail(__FILE__, __LINE__, "refused \"%s\": %s", s, err_name(rc));
    return ms;
}

TEST(clock_manual_moves_only_when_advanced)
{
    struct clock_manual m;
    struct clock *c = &m.base;

    clock_manual_init(&m, 1796322600000LL);
    CHECK_INT(clock_wall_ms(c), 1796322600000LL);
    int64_t mono0_ns = c->mono_ns(c);
    int64_t mono0_ms = clock_mono_ms(c);
    CHECK(mono0_ns > 0);
    CHECK_INT(mono0_ms, mono0_ns / 1000000);

    /* Reading does not move time. */
    CHECK_INT(clock_wall_ms(c), 1796322600000LL);
    CHECK_INT(c->mono_ns(c), mono0_ns);

    clock_manual_advance(&m, 250);
    CHECK_INT(clock_wall_ms(c), 1796322600250LL);
    CHECK_INT(c->mono_ns(c), mono0_ns + 250 * 1000000LL);
    CHECK_INT(clock_mono_ms(c), mono0_ms + 250);

    clock_manual_advance(&m, 0);
    CHECK_INT(clock_wall_ms(c), 1796322600250LL);
    clock_manual_advance(&m, 3 * DAY_MS);
    CHECK_INT(clock_wall_ms(c), 1796322600250LL + 3 * DAY_MS);
    CHECK_INT(clock_mono_ms(c), mono0_ms + 250 + 3 * DAY_MS);
}

TEST(clock_manual_instances_are_independent)
{
    struct clock_manual a, b;

    clock_manual_init(&a, 0);
    clock_manual_init(&b, 5000);
    clock_manual_advance(&a, 10);
    CHECK_INT(clock_wall_ms(&a.base), 10);
    CHECK_INT(clock_wall_ms(&b.base), 5000);
    CHECK_INT(clock_mono_ms(&a.base), clock_mono_ms(&b.base) + 10);
}

TEST(clock_system_reads_now)
{
    struct clock *c = clock_system();
    struct timespec ts;

    CHECK(c != NULL);
    CHECK(clock_system() == c);
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t wall_ms = clock_wall_ms(c);
    CHECK(wall_ms >= now_ms && wall_ms - now_ms < 5000);

    int64_t prev = c->mono_ns(c);
    for (int i = 0; i < 1000; i++) {
        int64_t cur = c->mono_ns(c);

        CHECK(cur >= prev);
        prev = cur;
    }
}

TEST(clock_format_known_instants)
{
    static const struct {
        int64_t ms;
        const char *text;
    } cases[] = {
        {0, "1970-01-01T00:00:00Z"},
        {999, "1970-01-01T00:00:00Z"},
        {1796322600000LL, "2026-12-03T18:30:00Z"},
        {1796322600999LL, "2026-12-03T18:30:00Z"},
        {1709208000000LL, "2024-02-29T12:00:00Z"},
        {951868800000LL, "2000-03-01T00:00:00Z"},
        {951868799000LL, "2000-02-29T23:59:59Z"},
        {-1, "1969-12-31T23:59:59Z"},
        {-1000, "1969-12-31T23:59:59Z"},
        {-1001, "1969-12-31T23:59:58Z"},
        {-DAY_MS, "1969-12-31T00:00:00Z"},
        {YEAR_2100_S * 1000, "2100-01-01T00:00:00Z"},
        {YEAR_9999_END_S * 1000, "9999-12-31T23:59:59Z"},
    };
    char out[CLOCK_RFC3339_LEN];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        clock_format_rfc3339(cases[i].ms, out);
        CHECK_STR(out, cases[i].text);
    }
}

TEST(clock_format_matches_gmtime)
{
    struct rand r;
    char got[CLOCK_RFC3339_LEN], want[CLOCK_RFC3339_LEN];

    rand_seed(&r, 20261203);
    for (int i = 0; i < 100000; i++) {
        uint64_t span = (uint64_t)(YEAR_9999_END_S - YEAR_1_S) * 1000;
        int64_t ms = YEAR_1_S * 1000 + (int64_t)rand_below(&r, span);

        clock_format_rfc3339(ms, got);
        oracle_format(ms, want);
        CHECK_STR(got, want);
    }
}

TEST(clock_parse_utc)
{
    CHECK_INT(parse_ok("1970-01-01T00:00:00Z"), 0);
    CHECK_INT(parse_ok("2026-12-03T18:30:00Z"), 1796322600000LL);
    CHECK_INT(parse_ok("2026-12-03t18:30:00z"), 1796322600000LL);
    CHECK_INT(parse_ok("2024-02-29T12:00:00Z"), 1709208000000LL);
    CHECK_INT(parse_ok("2000-03-01T00:00:00Z"), 951868800000LL);
    CHECK_INT(parse_ok("2000-02-29T23:59:59Z"), 951868799000LL);
    CHECK_INT(parse_ok("2026-12-31T23:59:59Z"),
              (clock_days_from_civil(2027, 1, 1) * 86400 - 1) * 1000);
}

TEST(clock_parse_offsets)
{
    const int64_t want = 1796322600000LL;

    CHECK_INT(parse_ok("2026-12-04T00:00:00+05:30"), want);
    CHECK_INT(parse_ok("2026-12-03T10:30:00-08:00"), want);
    CHECK_INT(parse_ok("2026-12-03T18:30:00+00:00"), want);
    CHECK_INT(parse_ok("2026-12-03T18:30:00-00:00"), want);
    CHECK_INT(parse_ok("2026-12-04T18:29:00+23:59"), want);
    CHECK_INT(parse_ok("2026-12-02T18:31:00-23:59"), want);
    /* An offset can carry the instant across a year boundary. */
    CHECK_INT(parse_ok("2026-12-31T20:00:00-05:00"),
              clock_days_from_civil(2027, 1, 1) * DAY_MS + 3600000);
    CHECK_INT(parse_ok("1970-01-01T00:30:00+01:00"), -1800000);
}

TEST(clock_parse_fractions)
{
    const int64_t base = 1796322600000LL;

    CHECK_INT(parse_ok("2026-12-03T18:30:00.5Z"), base + 500);
    CHECK_INT(parse_ok("2026-12-03T18:30:00.05Z"), base + 50);
    CHECK_INT(parse_ok("2026-12-03T18:30:00.123Z"), base + 123);
    CHECK_INT(parse_ok("2026-12-03T18:30:00.000Z"), base);
    /* Digits past milliseconds are dropped, not rounded. */
    CHECK_INT(parse_ok("2026-12-03T18:30:00.9999999Z"), base + 999);
    CHECK_INT(parse_ok("2026-12-03T18:30:00.123456789012345678Z"), base + 123);
    CHECK_INT(parse_ok("2026-12-04T00:00:00.250+05:30"), base + 250);
}

TEST(clock_parse_rejects)
{
    static const char *const bad[] = {
        "",
        "2026-12-03",
        "2026-12-03T18:30Z",
        "2026-12-03T18:30:0Z",
        "2026-12-03T18:30:00",
        "2026-12-03T18:30:00 ",
        "2026-12-03 18:30:00Z",
        "2026-12-03T18:30:00Zjunk",
        "2026-12-03T18:30:00Z ",
        "2026-12-03T18:30:00+05:30x",
        "2026-12-03T18:30:00+05:3",
        "2026-12-03T18:30:00+0530",
        "2026-12-03T18:30:00+5:30",
        "2026-12-03T18:30:00+24:00",
        "2026-12-03T18:30:00+05:60",
        "2026-12-03T18:30:00+",
        "2026-12-03T18:30:00.Z",
        "2026-12-03T18:30:00.",
        "2026-12-03T18:30:00,5Z",
        "2026-02-30T00:00:00Z",
        "2026-02-29T00:00:00Z",
        "2100-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-00-10T00:00:00Z",
        "2026-01-00T00:00:00Z",
        "2026-01-32T00:00:00Z",
        "2026-12-03T24:00:00Z",
        "2026-12-03T23:60:00Z",
        "2026-12-03T23:59:60Z",
        "2026-12-3T18:30:00Z",
        "2026/12/03T18:30:00Z",
        "20a6-12-03T18:30:00Z",
        "2026-12-03T1a:30:00Z",
        "2026-12-03T18:30:00Y",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms = 42;

        if (clock_parse_rfc3339(bad[i], &ms) != ERR_INVALID)
            harness_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
        CHECK_INT(ms, 42);
    }
}

TEST(clock_round_trip_random_instants)
{
    struct rand r;
    char text[CLOCK_RFC3339_LEN];

    rand_seed(&r, 7);
    for (int i = 0; i < 100000; i++) {
        int64_t ms = (int64_t)rand_below(&r, (uint64_t)YEAR_2100_S) * 1000;

        clock_format_rfc3339(ms, text);
        CHECK_INT(parse_ok(text), ms);
    }
    /* Milliseconds do not survive formatting: they are cut, not rounded. */
    for (int i = 0; i < 1000; i++) {
        int64_t ms = (int64_t)rand_below(&r, (uint64_t)YEAR_2100_S * 1000);

        clock_format_rfc3339(ms, text);
        CHECK_INT(parse_ok(text), ms - ms % 1000);
    }
}

TEST(clock_round_trip_with_offsets)
{
    struct rand r;
    char text[CLOCK_RFC3339_LEN], with_offset[40];

    rand_seed(&r, 11);
    for (int i = 0; i < 20000; i++) {
        int64_t ms =
            (int64_t)(rand_below(&r, (uint64_t)YEAR_2100_S - 86400) + 86400) *
            1000;
        int offset_min = (int)rand_below(&r, 2 * 1440 - 1) - 1439;
        int abs_min = offset_min < 0 ? -offset_min : offset_min;

        /* The local reading of the instant, then its offset instead of Z. */
        clock_format_rfc3339(ms + offset_min * 60000LL, text);
        snprintf(with_offset, sizeof(with_offset), "%.19s%c%02d:%02d", text,
                 offset_min < 0 ? '-' : '+', abs_min / 60, abs_min % 60);
        CHECK_INT(parse_ok(with_offset), ms);
    }
}

TEST(clock_days_from_civil_known_values)
{
    CHECK_INT(clock_days_from_civil(1970, 1, 1), 0);
    CHECK_INT(clock_days_from_civil(1970, 1, 2), 1);
    CHECK_INT(clock_days_from_civil(1969, 12, 31), -1);
    CHECK_INT(clock_days_from_civil(2000, 1, 1), 10957);
    CHECK_INT(clock_days_from_civil(2000, 3, 1), 11017);
    CHECK_INT(clock_days_from_civil(2024, 2, 29), 19782);
    CHECK_INT(clock_days_from_civil(2026, 12, 3), 20790);
    CHECK_INT(clock_days_from_civil(2100, 3, 1), 47541);
    CHECK_INT(clock_days_from_civil(1600, 3, 1), -135080);
    CHECK_INT(clock_days_from_civil(1, 1, 1), -719162);
    CHECK_INT(clock_days_from_civil(9999, 12, 31), 2932896);
    /* Year 0 and before, proleptic: year 0 is a leap year. */
    CHECK_INT(clock_days_from_civil(0, 3, 1), -719468);
    CHECK_INT(clock_days_from_civil(0, 1, 1), -719528);
    CHECK_INT(clock_days_from_civil(-1, 12, 31), -719529);
    CHECK_INT(clock_days_from_civil(-1, 3, 1), -719834);
    CHECK_INT(clock_days_from_civil(-400, 3, 1), -719468 - 146097);
}

TEST(clock_days_from_civil_matches_gmtime)
{
    /* Every day from 0001-01-01 to 9999-12-31, one after the other. */
    for (int64_t days = YEAR_1_S / 86400; days <= YEAR_9999_END_S / 86400;
         days++) {
        time_t t = (time_t)(days * 86400);
        struct tm tm;

        CHECK(gmtime_r(&t, &tm) != NULL);
        int64_t got = clock_days_from_civil(
            tm.tm_year + 1900LL, (unsigned)tm.tm_mon + 1, (unsigned)tm.tm_mday);
        if (got != days)
            harness_fail(__FILE__, __LINE__, "%04d-%02d-%02d: %lld != %lld",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                         (long long)got, (long long)days);
    }
}

TEST(clock_parse_date_valid)
{
    int64_t days = -1;

    CHECK_INT(clock_parse_date("1970-01-01", &days), ERR_OK);
    CHECK_INT(days, 0);
    CHECK_INT(clock_parse_date("2000-03-01", &days), ERR_OK);
    CHECK_INT(days, 11017);
    CHECK_INT(clock_parse_date("2024-02-29", &days), ERR_OK);
    CHECK_INT(days, 19782);
    CHECK_INT(clock_parse_date("2000-02-29", &days), ERR_OK);
    CHECK_INT(days, 11016);
    CHECK_INT(clock_parse_date("2026-12-03", &days), ERR_OK);
    CHECK_INT(days, 20790);
    CHECK_INT(clock_parse_date("2026-12-31", &days), ERR_OK);
    CHECK_INT(days, clock_days_from_civil(2027, 1, 1) - 1);
}

TEST(clock_parse_date_rejects)
{
    static const char *const bad[] = {
        "",
        "2026-12",
        "2026-12-3",
        "2026-12-03 ",
        "2026-12-03Z",
        "2026-12-031",
        "2026-02-30",
        "2023-02-29",
        "2100-02-29",
        "2026-04-31",
        "2026-13-01",
        "2026-00-01",
        "2026-01-00",
        "2026-1-003",
        "2026/12/03",
        "20x6-12-03",
        "2026-12-03T00:00:00Z",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t days = 42;

        if (clock_parse_date(bad[i], &days) != ERR_INVALID)
            harness_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
        CHECK_INT(days, 42);
    }
}

TEST(clock_parse_date_agrees_with_rfc3339)
{
    struct rand r;
    char text[CLOCK_RFC3339_LEN], date[16];

    rand_seed(&r, 3);
    for (int i = 0; i < 20000; i++) {
        int64_t days = (int64_t)rand_below(&r, (uint64_t)YEAR_2100_S / 86400);
        int64_t got = -1;

        clock_format_rfc3339(days * DAY_MS, text);
        snprintf(date, sizeof(date), "%.10s", text);
        CHECK_INT(clock_parse_date(date, &got), ERR_OK);
        CHECK_INT(got, days);
    }
}

HARNESS_MAIN(T(clock_manual_moves_only_when_advanced),
             T(clock_manual_instances_are_independent),
             T(clock_system_reads_now), T(clock_format_known_instants),
             T(clock_format_matches_gmtime), T(clock_parse_utc),
             T(clock_parse_offsets), T(clock_parse_fractions),
             T(clock_parse_rejects), T(clock_round_trip_random_instants),
             T(clock_round_trip_with_offsets),
             T(clock_days_from_civil_known_values),
             T(clock_days_from_civil_matches_gmtime), T(clock_parse_date_valid),
             T(clock_parse_date_rejects),
             T(clock_parse_date_agrees_with_rfc3339))
