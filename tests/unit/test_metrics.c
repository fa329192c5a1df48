/*
 * test_metrics.c - series updates, the exposition text line by line,
 * label escaping and the series limit, collectors and the process family,
 * and counts that stay exact when many threads update one series.
 */
#include "harness.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/err.h"
#include "metrics/metrics.h"

#define THREADS    8
#define PER_THREAD 200000

/* The exposition of m; the caller frees it. */
static char *render(struct metrics *m)
{
    char *text = NULL;
    size_t len = 0;

    CHECK_INT(metrics_render(m, &text, &len), ERR_OK);
    CHECK_INT(strlen(text), len);
    return text;
}

/* Whether the text has this exact line. */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);

    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

#define CHECK_LINE(text, line)                                                 \
    do {                                                                       \
        if (!has_line((text), (line)))                                         \
            harness_fail(__FILE__, __LINE__, "no line \"%s\" in:\n%s", (line), \
                         (text));                                              \
    } while (0)

TEST(counter_and_gauge_exposition)
{
    struct metrics *m = metrics_create();
    struct metrics_series *c =
        metrics_counter(m, "marquee_things_total", "Things done.");
    struct metrics_series *g = metrics_gauge(m, "marquee_level", "A level.");

    metrics_inc(c);
    metrics_add(c, 41);
    metrics_set(g, 2.5);
    metrics_gauge_add(g, -1);
    CHECK(metrics_value(c) == 42);
    CHECK(metrics_value(g) == 1.5);

    char *text = render(m);
    CHECK_LINE(text, "# HELP marquee_things_total Things done.");
    CHECK_LINE(text, "# TYPE marquee_things_total counter");
    CHECK_LINE(text, "marquee_things_total 42");
    CHECK_LINE(text, "# TYPE marquee_level gauge");
    CHECK_LINE(text, "marquee_level 1.5");
    /* Registration order is kept. */
    CHECK(strstr(text, "marquee_things_total") < strstr(text, "marquee_level"));
    free(text);
    metrics_free(m);
}

TEST(histogram_buckets_are_cumulative)
{
    static const double bounds[] = {0.1, 0.5, 1};
    struct metrics *m = metrics_create();
    struct metrics_series *h =
        metrics_histogram(m, "marquee_wait_seconds", "Waits.", bounds, 3);

    metrics_observe(h, 0.05);
    metrics_observe(h, 0.1); /* on the bound: counts in that bucket */
    metrics_observe(h, 0.7);
    metrics_observe(h, 30);
    CHECK(metrics_value(h) == 4);

    char *text = render(m);
    CHECK_LINE(text, "# TYPE marquee_wait_seconds histogram");
    CHECK_LINE(text, "marquee_wait_seconds_bucket{le=\"0.1\"} 2");
    CHECK_LINE(text, "marquee_wait_seconds_bucket{le=\"0.5\"} 2");
    CHECK_LINE(text, "marquee_wait_seconds_bucket{le=\"1\"} 3");
    CHECK_LINE(text, "marquee_wait_seconds_bucket{le=\"+Inf\"} 4");
    CHECK_LINE(text, "marquee_wait_seconds_sum 30.85");
    CHECK_LINE(text, "marquee_wait_seconds_count 4");
    free(text);
    metrics_free(m);
}

TEST(labelled_series_share_one_family)
{
    static const char *const names[] = {"route", "code"};
    struct metrics *m = metrics_create();
    struct metrics_family *f =
        metrics_family(m, METRICS_COUNTER, "marquee_req_total", "Requests.", 2,
                       names, NULL, 0);
    const char *ok[] = {"/v1/shows/{id}", "2xx"};
    const char *bad[] = {"/v1/shows/{id}", "5xx"};
    struct metrics_series *a = metrics_series(f, ok);
    struct metrics_series *b = metrics_series(f, bad);

    CHECK(a != b);
    CHECK(metrics_series(f, ok) == a); /* the same values, the same series */
    /* The same family asked again is the first one. */
    CHECK(metrics_family(m, METRICS_COUNTER, "marquee_req_total", "x", 2, names,
                         NULL, 0) == f);
    metrics_add(a, 3);
    metrics_inc(b);

    char *text = render(m);
    CHECK_LINE(text,
               "marquee_req_total{route=\"/v1/shows/{id}\",code=\"2xx\"} 3");
    CHECK_LINE(text,
               "marquee_req_total{route=\"/v1/shows/{id}\",code=\"5xx\"} 1");
    /* One HELP and TYPE for the family. */
    CHECK(strstr(strstr(text, "# TYPE") + 1, "# TYPE") == NULL);
    free(text);
    metrics_free(m);
}

TEST(labelled_histogram_puts_le_last)
{
    static const char *const names[] = {"route"};
    static const double bounds[] = {1};
    struct metrics *m = metrics_create();
    struct metrics_family *f = metrics_family(
        m, METRICS_HISTOGRAM, "marquee_d_seconds", "D.", 1, names, bounds, 1);
    const char *v[] = {"/a"};

    metrics_observe(metrics_series(f, v), 2);
    char *text = render(m);
    CHECK_LINE(text, "marquee_d_seconds_bucket{route=\"/a\",le=\"1\"} 0");
    CHECK_LINE(text, "marquee_d_seconds_bucket{route=\"/a\",le=\"+Inf\"} 1");
    CHECK_LINE(text, "marquee_d_seconds_sum{route=\"/a\"} 2");
    CHECK_LINE(text, "marquee_d_seconds_count{route=\"/a\"} 1");
    free(text);
    metrics_free(m);
}

TEST(label_values_are_escaped)
{
    static const char *const names[] = {"path"};
    struct metrics *m = metrics_create();
    struct metrics_family *f =
        metrics_family(m, METRICS_GAUGE, "marquee_g",
                       "Help with \\ and\nnewline.", 1, names, NULL, 0);
    const char *v[] = {"a\"b\\c\nd"};

    metrics_set(metrics_series(f, v), 1);
    char *text = render(m);
    CHECK_LINE(text, "# HELP marquee_g Help with \\\\ and\\nnewline.");
    CHECK_LINE(text, "marquee_g{path=\"a\\\"b\\\\c\\nd\"} 1");
    free(text);
    metrics_free(m);
}

TEST(escape_cuts_long_values_at_a_character)
{
    char dst[8];

    /* "é" is two bytes: 3 of them fit in 7, the fourth would be cut. */
    metrics_escape("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", dst, sizeof(dst));
    CHECK_STR(dst, "\xc3\xa9\xc3\xa9\xc3\xa9");
    /* An escape is never split either. */
    metrics_escape("abcdef\"", dst, sizeof(dst));
    CHECK_STR(dst, "abcdef");
    metrics_escape("", dst, sizeof(dst));
    CHECK_STR(dst, "");
}

TEST(series_past_the_limit_fold_into_other)
{
    static const char *const names[] = {"show"};
    struct metrics *m = metrics_create();
    struct metrics_family *f = metrics_family(
        m, METRICS_COUNTER, "marquee_per_show_total", "P.", 1, names, NULL, 0);
    struct metrics_series *first = NULL, *last = NULL;
    char id[16];
    const char *v[] = {id};

    for (int i = 0; i < METRICS_SERIES_MAX * 2; i++) {
        snprintf(id, sizeof(id), "%d", i);
        last = metrics_series(f, v);
        CHECK(last != NULL);
        metrics_inc(last);
        if (i == 0)
            first = last;
    }
    CHECK(metrics_value(first) == 1);
    /* Everything past the limit went to one series. */
    CHECK(metrics_value(last) == METRICS_SERIES_MAX + 1);

    char *text = render(m);
    CHECK_LINE(text, "marquee_per_show_total{show=\"0\"} 1");
    char line[64];
    snprintf(line, sizeof(line), "marquee_per_show_total{show=\"other\"} %d",
             METRICS_SERIES_MAX + 1);
    CHECK_LINE(text, line);
    size_t series = 0;
    for (const char *p = text; (p = strstr(p, "\nmarquee_per_show_total{"));
         p++)
        series++;
    CHECK_INT(series, METRICS_SERIES_MAX);
    free(text);
    metrics_free(m);
}

TEST(null_series_and_family_do_nothing)
{
    metrics_inc(NULL);
    metrics_add(NULL, 3);
    metrics_set(NULL, 1);
    metrics_gauge_add(NULL, 1);
    metrics_observe(NULL, 1);
    CHECK(metrics_series(NULL, NULL) == NULL);
    CHECK(metrics_value(NULL) == 0);
    CHECK(metrics_counter(NULL, "marquee_x_total", "") == NULL);
}

static void collect_two(struct metrics_out *out, void *arg)
{
    int *calls = arg;

    (*calls)++;
    metrics_out_family(out, "marquee_queue_depth", METRICS_GAUGE, "Depth.");
    metrics_out_sample(out, "marquee_queue_depth", "queue=\"a\"", 7);
    metrics_out_sample(out, "marquee_queue_depth", NULL, NAN);
}

TEST(collectors_run_at_each_render)
{
    struct metrics *m = metrics_create();
    int calls = 0;

    CHECK_INT(metrics_add_collector(m, collect_two, &calls), ERR_OK);
    CHECK_INT(metrics_add_collector(m, collect_two, &calls), ERR_OK); /* once */
    char *text = render(m);
    CHECK_INT(calls, 1);
    CHECK_LINE(text, "# TYPE marquee_queue_depth gauge");
    CHECK_LINE(text, "marquee_queue_depth{queue=\"a\"} 7");
    CHECK_LINE(text, "marquee_queue_depth NaN");
    free(text);
    text = render(m);
    CHECK_INT(calls, 2);
    free(text);
    metrics_remove_collector(m, collect_two, &calls);
    text = render(m);
    CHECK_INT(calls, 2);
    CHECK(strstr(text, "marquee_queue_depth") == NULL);
    free(text);
    metrics_free(m);
}

TEST(process_family_reads_this_process)
{
    struct metrics *m = metrics_create();

    CHECK_INT(metrics_add_process_collector(m), ERR_OK);
    /* Burn a little CPU so the counter cannot read zero on a fast box. */
    volatile double x = 0;
    for (int i = 0; i < 20000000; i++)
        x += i * 0.5;
    char *text = render(m);
    const char *names[] = {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char key[80];
        snprintf(key, sizeof(key), "\n%s ", names[i]);
        const char *p = strstr(text, key);
        if (p == NULL)
            harness_fail(__FILE__, __LINE__, "no %s in:\n%s", names[i], text);
        double v = strtod(p + strlen(key), NULL);
        if (!(v > 0))
            harness_fail(__FILE__, __LINE__, "%s = %g", names[i], v);
    }
    /* Started within the last day, by the wall clock. */
    double start =
        strtod(strstr(text, "\nprocess_start_time_seconds ") + 28, NULL);
    CHECK(start > (double)time(NULL) - 86400 &&
          start <= (double)time(NULL) + 1);
    free(text);
    metrics_free(m);
}

struct hammer {
    struct metrics_series *counter, *hist, *gauge;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;

    for (int i = 0; i < PER_THREAD; i++) {
        metrics_inc(h->counter);
        metrics_observe(h->hist, (i % 4) * 0.25);
        metrics_gauge_add(h->gauge, 1);
    }
    return NULL;
}

TEST(concurrent_updates_lose_nothing)
{
    static const double bounds[] = {0.1, 0.3, 0.6};
    struct metrics *m = metrics_create();
    struct hammer h = {
        metrics_counter(m, "marquee_hits_total", "Hits."),
        metrics_histogram(m, "marquee_lat_seconds", "Lat.", bounds, 3),
        metrics_gauge(m, "marquee_up_down", "Sum of adds."),
    };
    pthread_t th[THREADS];

    for (int i = 0; i < THREADS; i++)
        CHECK_INT(pthread_create(&th[i], NULL, hammer_main, &h), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);

    double total = (double)THREADS * PER_THREAD;
    CHECK(metrics_value(h.counter) == total);
    CHECK(metrics_value(h.hist) == total);
    CHECK(metrics_value(h.gauge) == total);
    char *text = render(m);
    char line[96];
    /* Values 0, 0.25, 0.5, 0.75 a quarter each; sum = total * 0.375. */
    snprintf(line, sizeof(line), "marquee_lat_seconds_bucket{le=\"0.1\"} %.0f",
             total / 4);
    CHECK_LINE(text, line);
    snprintf(line, sizeof(line), "marquee_lat_seconds_bucket{le=\"0.6\"} %.0f",
             total * 3 / 4);
    CHECK_LINE(text, line);
    snprintf(line, sizeof(line), "marquee_lat_seconds_sum %.0f", total * 0.375);
    CHECK_LINE(text, line);
    free(text);
    metrics_free(m);
}

TEST(process_registry_is_one)
{
    CHECK(metrics_process() != NULL);
    CHECK(metrics_process() == metrics_process());
}

HARNESS_MAIN(T(counter_and_gauge_exposition),
             T(histogram_buckets_are_cumulative),
             T(labelled_series_share_one_family),
             T(labelled_histogram_puts_le_last), T(label_values_are_escaped),
             T(escape_cuts_long_values_at_a_character),
             T(series_past_the_limit_fold_into_other),
             T(null_series_and_family_do_nothing),
             T(collectors_run_at_each_render),
             T(process_family_reads_this_process),
             T(concurrent_updates_lose_nothing), T(process_registry_is_one))
