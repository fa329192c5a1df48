/*
 * metrics.h - counters, gauges and histograms, and their Prometheus text
 * exposition (format 0.0.4).
 *
 * A registry holds families; a family is one metric name with a type, a
 * help text and fixed label names; a series is one set of label values of
 * a family, and holds the numbers.  Callers look a series up once (it
 * takes the family's lock) and keep the pointer: updating a series is a
 * few relaxed atomic operations and never locks, so it is cheap enough for
 * every request on every event-loop thread.
 *
 * Cardinality is bounded: a family holds at most METRICS_SERIES_MAX
 * series.  Past that, every new label set is folded into one series whose
 * label values are all "other", and a warning is logged once.
 *
 * Every function accepts a NULL series or family and then does nothing, so
 * code that failed to allocate its metrics (or runs without any) keeps
 * working; metrics never stop the service.
 *
 * Registering a family twice with the same name, type and labels returns
 * the first one, and asking a family for the same label values twice
 * returns the same series: two servers in one process share their series,
 * as the process is what Prometheus scrapes.  Registering one name with a
 * different type or labels is a programming error and asserts.
 */
#ifndef MARQUEE_METRICS_METRICS_H
#define MARQUEE_METRICS_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct metrics;
struct metrics_family;
struct metrics_series;
struct metrics_out;

/* Named limits. */
#define METRICS_FAMILIES_MAX    256
#define METRICS_SERIES_MAX      512 /* per family, the overflow series too */
#define METRICS_LABELS_MAX      4   /* label names per family */
#define METRICS_BUCKETS_MAX     24  /* histogram bounds, +Inf not counted */
#define METRICS_COLLECTORS_MAX  32
#define METRICS_NAME_MAX        128
#define METRICS_LABEL_VALUE_MAX 128 /* longer values are cut (UTF-8-safe) */
#define METRICS_RENDER_MAX      (8u << 20) /* bytes of one exposition */

enum metrics_type {
    METRICS_COUNTER,
    METRICS_GAUGE,
    METRICS_HISTOGRAM,
};

/* Bucket bounds in seconds for request and commit latencies. */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_nbuckets;

/* A registry.  NULL when out of memory. */
struct metrics *metrics_create(void);

/*
 * Frees the registry, its families and series.  No other thread may use
 * any of its series any more.
 */
void metrics_free(struct metrics *m);

/*
 * The process's registry, created on first use and never freed (its
 * series are reachable until exit).  NULL only when out of memory.
 */
struct metrics *metrics_process(void);

/*
 * Registers (or finds) a family.  name and label names follow Prometheus'
 * rules ([a-zA-Z_:][a-zA-Z0-9_:]*, labels without ':'); counters end in
 * "_total".  labels holds nlabels names (at most METRICS_LABELS_MAX).
 * buckets (histograms only) are nbuckets increasing finite bounds, at most
 * METRICS_BUCKETS_MAX; +Inf is implied.  Strings are copied.  Returns
 * NULL when out of memory or when the registry is full.
 */
struct metrics_family *metrics_family(struct metrics *m, enum metrics_type type,
                                      const char *name, const char *help,
                                      size_t nlabels, const char *const *labels,
                                      const double *buckets, size_t nbuckets);

/*
 * The series of a family for these label values (nlabels of them, in the
 * family's order; any UTF-8 text).  Found or created under the family's
 * lock: call it once and keep the result.
 */
struct metrics_series *metrics_series(struct metrics_family *f,
                                      const char *const *values);

/* Shorthands for a family without labels and its one series. */
struct metrics_series *metrics_counter(struct metrics *m, const char *name,
                                       const char *help);
struct metrics_series *metrics_gauge(struct metrics *m, const char *name,
                                     const char *help);
struct metrics_series *metrics_histogram(struct metrics *m, const char *name,
                                         const char *help,
                                         const double *buckets,
                                         size_t nbuckets);

/* Counters only go up. */
void metrics_inc(struct metrics_series *s);
void metrics_add(struct metrics_series *s, uint64_t n);

/* Gauges. */
void metrics_set(struct metrics_series *s, double v);
void metrics_gauge_add(struct metrics_series *s, double delta);

/* Histograms: counts v in the first bucket whose bound is >= v. */
void metrics_observe(struct metrics_series *s, double v);

/* The current value: a counter's count, a gauge's value, a histogram's
 * number of observations.  For tests and for code that reports it. */
double metrics_value(const struct metrics_series *s);

/*
 * A collector writes families whose values are read at scrape time (the
 * process's CPU, a queue's depth) into the exposition through the
 * metrics_out_* calls.  It runs on the scraping thread, with no registry
 * lock held, and must be quick and must not block.  Collectors stay until
 * the registry is freed, or until metrics_remove_collector.
 */
typedef void (*metrics_collect_fn)(struct metrics_out *out, void *arg);
int metrics_add_collector(struct metrics *m, metrics_collect_fn fn, void *arg);
void metrics_remove_collector(struct metrics *m, metrics_collect_fn fn,
                              void *arg);

/*
 * For collectors: starts a family in the output (its # HELP and # TYPE
 * lines), then one sample per call.  labels is the inside of the braces
 * already formatted (`thread="0"`), or NULL for none; a caller formatting
 * label values from outside data escapes them with metrics_escape.
 */
void metrics_out_family(struct metrics_out *out, const char *name,
                        enum metrics_type type, const char *help);
void metrics_out_sample(struct metrics_out *out, const char *name,
                        const char *labels, double value);

/*
 * Escapes a label value (backslash, double quote, newline) into dst of
 * size cap, NUL-terminated, cut at a character boundary when too long.
 */
void metrics_escape(const char *value, char *dst, size_t cap);

/*
 * The whole exposition, families in registration order, then the
 * collectors' output.  On ERR_OK *text is malloc'd (NUL-terminated, the
 * caller frees it) and *len its length; ERR_NOMEM, or ERR_TOOBIG past
 * METRICS_RENDER_MAX.
 */
int metrics_render(struct metrics *m, char **text, size_t *len);

/* The content type of the exposition. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/*
 * Adds the process family collector to m: process_cpu_seconds_total,
 * process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds, process_start_time_seconds, read from
 * /proc at scrape time.  Adding it twice adds it once.
 */
int metrics_add_process_collector(struct metrics *m);

#endif
