/*
 * scrape.h - the few numbers the autoscaler reads from an instance's
 * /metrics (Prometheus text format 0.0.4), and the p99 latency between
 * two scrapes.  Pure: text in, numbers out, no I/O.
 */
#ifndef MARQUEE_CONTROL_SCRAPE_H
#define MARQUEE_CONTROL_SCRAPE_H

#include <stdbool.h>
#include <stddef.h>

/* Bounds of the latency histogram kept, +Inf included. */
#define SCRAPE_BUCKETS_MAX 32

struct scrape {
    bool has_cpu;
    double cpu_seconds; /* process_cpu_seconds_total */
    bool has_in_flight;
    double in_flight; /* marquee_http_requests_in_flight, less the scrape */
    bool has_queue;
    double queue_ready; /* marquee_mq_messages{queue=Q,state="ready"} */
    /* marquee_http_request_duration_seconds_bucket summed over the routes
     * that serve clients (not /metrics, /healthz, /readyz): cumulative
     * counts per upper bound, bounds increasing, the last one +Inf. */
    size_t nbuckets;
    double le[SCRAPE_BUCKETS_MAX];
    double count[SCRAPE_BUCKETS_MAX];
};

/*
 * Parses an exposition.  queue names the queue whose ready depth is read,
 * or NULL.  Lines that do not parse are skipped: a scrape is best effort.
 */
void scrape_parse(const char *text, size_t len, const char *queue,
                  struct scrape *out);

/*
 * The q quantile (0 < q < 1) of the requests observed between prev and
 * cur, interpolated within its bucket as Prometheus' histogram_quantile()
 * does; a quantile in the +Inf bucket is the largest finite bound.
 * Returns false when no request was observed in between or the bounds
 * differ (the instance restarted).
 */
bool scrape_quantile(const struct scrape *prev, const struct scrape *cur,
                     double q, double *out);

#endif
