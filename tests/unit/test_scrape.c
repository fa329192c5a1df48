/*
 * test_scrape.c - reading an instance's /metrics for the autoscaler: the
 * process CPU, requests in flight less the scrape itself, a queue's ready
 * depth by labels, the latency buckets summed over client routes only; and
 * the p99 between two reads, interpolated as histogram_quantile() does.
 */
#include "harness.h"

#include <math.h>

#include "control/scrape.h"

static const char first[] =
    "# HELP process_cpu_seconds_total CPU.\n"
    "# TYPE process_cpu_seconds_total counter\n"
    "process_cpu_seconds_total 12.5\n"
    "marquee_http_requests_in_flight 3\n"
    "marquee_mq_messages{queue=\"notify.bookings\",state=\"ready\"} 40\n"
    "marquee_mq_messages{queue=\"notify.bookings\",state=\"leased\"} 7\n"
    "marquee_mq_messages{queue=\"other\",state=\"ready\"} 999\n"
    "marquee_http_request_duration_seconds_bucket{route=\"/v1/a\","
    "method=\"GET\",le=\"0.1\"} 10\n"
    "marquee_http_request_duration_seconds_bucket{route=\"/v1/a\","
    "method=\"GET\",le=\"0.5\"} 10\n"
    "marquee_http_request_duration_seconds_bucket{route=\"/v1/a\","
    "method=\"GET\",le=\"+Inf\"} 10\n"
    "marquee_http_request_duration_seconds_bucket{route=\"/metrics\","
    "method=\"GET\",le=\"0.1\"} 500\n"
    "marquee_http_request_duration_seconds_bucket{route=\"/metrics\","
    "method=\"GET\",le=\"0.5\"} 500\n"
    "marquee_http_request_duration_seconds_bucket{route=\"/metrics\","
    "method=\"GET\",le=\"+Inf\"} 500\n";

TEST(scrape_reads_the_numbers)
{
    struct scrape s;

    scrape_parse(first, sizeof(first) - 1, "notify.bookings", &s);
    CHECK(s.has_cpu);
    CHECK(s.cpu_seconds == 12.5);
    CHECK(s.has_in_flight);
    CHECK(s.in_flight == 2); /* the scrape itself is not load */
    CHECK(s.has_queue);
    CHECK(s.queue_ready == 40);
    CHECK_INT(s.nbuckets, 3);
    CHECK(s.le[0] == 0.1 && s.le[1] == 0.5 && isinf(s.le[2]));
    CHECK(s.count[0] == 10 && s.count[2] == 10); /* /metrics left out */

    scrape_parse(first, sizeof(first) - 1, NULL, &s);
    CHECK(!s.has_queue);
    scrape_parse("garbage\n{}\nx y z\n", 16, NULL, &s);
    CHECK(!s.has_cpu && !s.has_in_flight && s.nbuckets == 0);
}

TEST(scrape_quantile_between_reads)
{
    struct scrape a = {0}, b;
    double q = -1;

    a.nbuckets = 3;
    a.le[0] = 0.1;
    a.le[1] = 0.5;
    a.le[2] = INFINITY;
    a.count[0] = a.count[1] = a.count[2] = 10;
    b = a;
    /* Nothing new: no quantile. */
    CHECK(!scrape_quantile(&a, &b, 0.99, &q));
    /* 100 new requests: 50 under 0.1 s, 50 in (0.1, 0.5]: rank 99 is
     * 49/50 of the way through the second bucket. */
    b.count[0] = 60;
    b.count[1] = b.count[2] = 110;
    CHECK(scrape_quantile(&a, &b, 0.99, &q));
    CHECK(fabs(q - (0.1 + 0.4 * 49.0 / 50.0)) < 1e-9);
    /* Past the last bound: the largest finite bound. */
    b.count[2] = 210;
    CHECK(scrape_quantile(&a, &b, 0.99, &q));
    CHECK(q == 0.5);
    /* Bounds that differ (a restart in between): no answer. */
    b.le[1] = 0.25;
    CHECK(!scrape_quantile(&a, &b, 0.99, &q));
}

HARNESS_MAIN(T(scrape_reads_the_numbers), T(scrape_quantile_between_reads))
