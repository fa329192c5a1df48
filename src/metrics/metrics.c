/*
 * metrics.c - the registry, series updates and the text exposition.
 *
 * A series' numbers are relaxed atomics: a scrape may see one update of a
 * histogram in its bucket but not yet in its sum, which Prometheus' own
 * clients also allow.  A histogram's count is the sum of its buckets, so
 * _count and the +Inf bucket always agree.  Gauges and sums are doubles
 * kept as their bit patterns and changed with compare-and-swap.
 */
#include "metrics/metrics.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"

const double metrics_latency_buckets[] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,    0.25,  0.5,    1,     2.5,  5,     10,
};
const size_t metrics_latency_nbuckets =
    sizeof(metrics_latency_buckets) / sizeof(metrics_latency_buckets[0]);

#define OVERFLOW_VALUE "other"
#define LABELS_TEXT_MAX                                                        \
    (METRICS_LABELS_MAX * (METRICS_NAME_MAX + 2 * METRICS_LABEL_VALUE_MAX + 4))

struct metrics_series {
    struct metrics_family *family;
    char *labels;              /* inside of the braces; "" without labels */
    _Atomic uint64_t value;    /* a counter's count, a gauge's double bits */
    _Atomic uint64_t sum;      /* a histogram's sum, as double bits */
    _Atomic uint64_t counts[]; /* a histogram's buckets, +Inf last */
};

struct metrics_family {
    enum metrics_type type;
    char *name;
    char *help;
    size_t nlabels;
    char *labels[METRICS_LABELS_MAX];
    double bounds[METRICS_BUCKETS_MAX];
    size_t nbounds;
    pthread_mutex_t lock; /* guards the series list, not the numbers */
    struct metrics_series *series[METRICS_SERIES_MAX];
    size_t nseries;
    struct metrics_series *overflow;
};

struct collector {
    metrics_collect_fn fn;
    void *arg;
};

struct metrics {
    pthread_mutex_t lock; /* guards the two lists */
    struct metrics_family *families[METRICS_FAMILIES_MAX];
    size_t nfamilies;
    struct collector collectors[METRICS_COLLECTORS_MAX];
    size_t ncollectors;
};

struct metrics_out {
    char *buf;
    size_t len, cap;
    int err;
};

/* --- doubles as bits --------------------------------------------------- */

static uint64_t bits_of(double v)
{
    uint64_t b;

    memcpy(&b, &v, sizeof(b));
    return b;
}

static double double_of(uint64_t b)
{
    double v;

    memcpy(&v, &b, sizeof(v));
    return v;
}

static void atomic_add_double(_Atomic uint64_t *p, double delta)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);

    while (!atomic_compare_exchange_weak_explicit(
        p, &old, bits_of(double_of(old) + delta), memory_order_relaxed,
        memory_order_relaxed)) {
    }
}

/* --- names and label text --------------------------------------------- */

static bool name_ok(const char *s, bool colon)
{
    size_t n = strlen(s);

    if (n == 0 || n >= METRICS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     c == '_' || (colon && c == ':');
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

/* Bytes of the UTF-8 character that starts with byte c (1 if malformed). */
static size_t utf8_len(unsigned char c)
{
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    if (c >= 0xE0)
        return c <= 0xEF ? 3 : 1;
    if (c >= 0xC2)
        return 2;
    return 1;
}

void metrics_escape(const char *value, char *dst, size_t cap)
{
    size_t o = 0;

    assert(cap > 0);
    for (const char *p = value; *p != '\0';) {
        const char *esc = NULL;
        size_t n = utf8_len((unsigned char)*p);

        switch (*p) {
        case '\\': esc = "\\\\"; break;
        case '"': esc = "\\\""; break;
        case '\n': esc = "\\n"; break;
        default: break;
        }
        if (esc != NULL)
            n = 2;
        else if (strnlen(p, n) < n)
            n = 1; /* a sequence cut short by the end: copy byte by byte */
        /* A character that does not fit whole is left out, and all after. */
        if (o + n >= cap)
            break;
        memcpy(dst + o, esc != NULL ? esc : p, n);
        o += n;
        p += esc != NULL ? 1 : n;
    }
    dst[o] = '\0';
}

/* `a="x",b="y"` for the family's label names and these values. */
static void labels_format(const struct metrics_family *f,
                          const char *const *values, char *dst, size_t cap)
{
    size_t o = 0;

    dst[0] = '\0';
    for (size_t i = 0; i < f->nlabels; i++) {
        char esc[METRICS_LABEL_VALUE_MAX];

        metrics_escape(values[i], esc, sizeof(esc));
        int n = snprintf(dst + o, cap - o, "%s%s=\"%s\"", i ? "," : "",
                         f->labels[i], esc);
        assert(n > 0 && (size_t)n < cap - o);
        o += (size_t)n;
    }
}

/*
 * The shortest text that reads back as the same double, as Prometheus
 * prints its own numbers: "0.25", not "0.25000000000000000".
 */
static void format_double(double v, char out[32])
{
    if (isnan(v)) {
        memcpy(out, "NaN", 4);
        return;
    }
    if (isinf(v)) {
        memcpy(out, v > 0 ? "+Inf" : "-Inf", 5);
        return;
    }
    /* Whole numbers (counts, bytes) in full, never as 1.6e+06. */
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, 32, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, 32, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

/* --- registry ---------------------------------------------------------- */

struct metrics *metrics_create(void)
{
    struct metrics *m = calloc(1, sizeof(*m));

    if (m != NULL)
        pthread_mutex_init(&m->lock, NULL);
    return m;
}

static void family_free(struct metrics_family *f)
{
    for (size_t i = 0; i < f->nseries; i++) {
        free(f->series[i]->labels);
        free(f->series[i]);
    }
    for (size_t i = 0; i < f->nlabels; i++)
        free(f->labels[i]);
    pthread_mutex_destroy(&f->lock);
    free(f->name);
    free(f->help);
    free(f);
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nfamilies; i++)
        family_free(m->families[i]);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static struct metrics *process_registry;
static pthread_once_t process_once = PTHREAD_ONCE_INIT;

static void process_registry_make(void)
{
    process_registry = metrics_create();
}

struct metrics *metrics_process(void)
{
    pthread_once(&process_once, process_registry_make);
    return process_registry;
}

static bool family_matches(const struct metrics_family *f,
                           enum metrics_type type, size_t nlabels,
                           const char *const *labels, const double *buckets,
                           size_t nbuckets)
{
    if (f->type != type || f->nlabels != nlabels)
        return false;
    for (size_t i = 0; i < nlabels; i++)
        if (strcmp(f->labels[i], labels[i]) != 0)
            return false;
    if (type != METRICS_HISTOGRAM)
        return true;
    if (f->nbounds != nbuckets)
        return false;
    for (size_t i = 0; i < nbuckets; i++)
        if (f->bounds[i] != buckets[i])
            return false;
    return true;
}

static struct metrics_family *family_new(enum metrics_type type,
                                         const char *name, const char *help,
                                         size_t nlabels,
                                         const char *const *labels,
                                         const double *buckets, size_t nbuckets)
{
    struct metrics_family *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return NULL;
    pthread_mutex_init(&f->lock, NULL);
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    bool ok = f->name != NULL && f->help != NULL;
    for (size_t i = 0; i < nlabels; i++) {
        f->labels[i] = strdup(labels[i]);
        f->nlabels = i + 1;
        ok = ok && f->labels[i] != NULL;
    }
    if (type == METRICS_HISTOGRAM) {
        memcpy(f->bounds, buckets, nbuckets * sizeof(double));
        f->nbounds = nbuckets;
    }
    if (!ok) {
        family_free(f);
        return NULL;
    }
    return f;
}

struct metrics_family *metrics_family(struct metrics *m, enum metrics_type type,
                                      const char *name, const char *help,
                                      size_t nlabels, const char *const *labels,
                                      const double *buckets, size_t nbuckets)
{
    struct metrics_family *f = NULL;

    if (m == NULL)
        return NULL;
    assert(name_ok(name, true));
    assert(nlabels <= METRICS_LABELS_MAX);
    for (size_t i = 0; i < nlabels; i++)
        assert(name_ok(labels[i], false) && strcmp(labels[i], "le") != 0);
    if (type == METRICS_HISTOGRAM) {
        assert(nbuckets > 0 && nbuckets <= METRICS_BUCKETS_MAX);
        for (size_t i = 0; i < nbuckets; i++)
            assert(isfinite(buckets[i]) &&
                   (i == 0 || buckets[i - 1] < buckets[i]));
    }

    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->nfamilies; i++) {
        if (strcmp(m->families[i]->name, name) == 0) {
            f = m->families[i];
            assert(
                family_matches(f, type, nlabels, labels, buckets, nbuckets) &&
                "one metric name registered with two shapes");
            goto out_unlock;
        }
    }
    if (m->nfamilies == METRICS_FAMILIES_MAX) {
        log_warn("metrics", "registry_full name=%s max=%d", name,
                 METRICS_FAMILIES_MAX);
        goto out_unlock;
    }
    f = family_new(type, name, help, nlabels, labels, buckets, nbuckets);
    if (f != NULL)
        m->families[m->nfamilies++] = f;

out_unlock:
    pthread_mutex_unlock(&m->lock);
    return f;
}

static struct metrics_series *series_new(struct metrics_family *f,
                                         const char *labels)
{
    size_t ncounts = f->type == METRICS_HISTOGRAM ? f->nbounds + 1 : 0;
    struct metrics_series *s =
        calloc(1, sizeof(*s) + ncounts * sizeof(s->counts[0]));

    if (s == NULL)
        return NULL;
    s->family = f;
    s->labels = strdup(labels);
    if (s->labels == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

/* The series that takes every label set past the limit; lock held. */
static struct metrics_series *family_overflow(struct metrics_family *f)
{
    const char *values[METRICS_LABELS_MAX];
    char text[LABELS_TEXT_MAX];

    if (f->overflow != NULL)
        return f->overflow;
    for (size_t i = 0; i < f->nlabels; i++)
        values[i] = OVERFLOW_VALUE;
    labels_format(f, values, text, sizeof(text));
    f->overflow = series_new(f, text);
    if (f->overflow != NULL) {
        f->series[f->nseries++] = f->overflow;
        log_warn("metrics", "series_limit name=%s max=%d folded_into=%s",
                 f->name, METRICS_SERIES_MAX, OVERFLOW_VALUE);
    }
    return f->overflow;
}

struct metrics_series *metrics_series(struct metrics_family *f,
                                      const char *const *values)
{
    char text[LABELS_TEXT_MAX];
    struct metrics_series *s = NULL;

    if (f == NULL)
        return NULL;
    labels_format(f, values, text, sizeof(text));

    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < f->nseries; i++) {
        if (strcmp(f->series[i]->labels, text) == 0) {
            s = f->series[i];
            goto out_unlock;
        }
    }
    /* The last slot is kept for the overflow series. */
    if (f->nseries + 1 >= METRICS_SERIES_MAX && f->nlabels > 0) {
        s = family_overflow(f);
        goto out_unlock;
    }
    s = series_new(f, text);
    if (s != NULL)
        f->series[f->nseries++] = s;

out_unlock:
    pthread_mutex_unlock(&f->lock);
    return s;
}

struct metrics_series *metrics_counter(struct metrics *m, const char *name,
                                       const char *help)
{
    return metrics_series(
        metrics_family(m, METRICS_COUNTER, name, help, 0, NULL, NULL, 0), NULL);
}

struct metrics_series *metrics_gauge(struct metrics *m, const char *name,
                                     const char *help)
{
    return metrics_series(
        metrics_family(m, METRICS_GAUGE, name, help, 0, NULL, NULL, 0), NULL);
}

struct metrics_series *metrics_histogram(struct metrics *m, const char *name,
                                         const char *help,
                                         const double *buckets, size_t nbuckets)
{
    return metrics_series(metrics_family(m, METRICS_HISTOGRAM, name, help, 0,
                                         NULL, buckets, nbuckets),
                          NULL);
}

/* --- updates ----------------------------------------------------------- */

void metrics_inc(struct metrics_series *s)
{
    metrics_add(s, 1);
}

void metrics_add(struct metrics_series *s, uint64_t n)
{
    if (s == NULL)
        return;
    assert(s->family->type == METRICS_COUNTER);
    atomic_fetch_add_explicit(&s->value, n, memory_order_relaxed);
}

void metrics_set(struct metrics_series *s, double v)
{
    if (s == NULL)
        return;
    assert(s->family->type == METRICS_GAUGE);
    atomic_store_explicit(&s->value, bits_of(v), memory_order_relaxed);
}

void metrics_gauge_add(struct metrics_series *s, double delta)
{
    if (s == NULL)
        return;
    assert(s->family->type == METRICS_GAUGE);
    atomic_add_double(&s->value, delta);
}

void metrics_observe(struct metrics_series *s, double v)
{
    if (s == NULL)
        return;
    const struct metrics_family *f = s->family;
    assert(f->type == METRICS_HISTOGRAM);

    /* Bounds are few (METRICS_BUCKETS_MAX): a scan beats a search here. */
    size_t i = 0;
    while (i < f->nbounds && v > f->bounds[i])
        i++;
    atomic_fetch_add_explicit(&s->counts[i], 1, memory_order_relaxed);
    atomic_add_double(&s->sum, v);
}

static uint64_t histogram_count(const struct metrics_series *s)
{
    uint64_t n = 0;

    for (size_t i = 0; i <= s->family->nbounds; i++)
        n += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
    return n;
}

double metrics_value(const struct metrics_series *s)
{
    if (s == NULL)
        return 0;
    uint64_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
    switch (s->family->type) {
    case METRICS_COUNTER: return (double)v;
    case METRICS_GAUGE: return double_of(v);
    case METRICS_HISTOGRAM: return (double)histogram_count(s);
    }
    return 0;
}

/* --- collectors -------------------------------------------------------- */

int metrics_add_collector(struct metrics *m, metrics_collect_fn fn, void *arg)
{
    int rc = ERR_OK;

    if (m == NULL)
        return ERR_INVALID;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->ncollectors; i++)
        if (m->collectors[i].fn == fn && m->collectors[i].arg == arg)
            goto out_unlock;
    if (m->ncollectors == METRICS_COLLECTORS_MAX) {
        rc = ERR_FULL;
        goto out_unlock;
    }
    m->collectors[m->ncollectors++] = (struct collector){fn, arg};

out_unlock:
    pthread_mutex_unlock(&m->lock);
    return rc;
}

void metrics_remove_collector(struct metrics *m, metrics_collect_fn fn,
                              void *arg)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->ncollectors; i++) {
        if (m->collectors[i].fn == fn && m->collectors[i].arg == arg) {
            m->collectors[i] = m->collectors[--m->ncollectors];
            break;
        }
    }
    pthread_mutex_unlock(&m->lock);
}

/* --- exposition -------------------------------------------------------- */

static void out_printf(struct metrics_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void out_printf(struct metrics_out *o, const char *fmt, ...)
{
    va_list ap;

    if (o->err != ERR_OK)
        return;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        assert(n >= 0);
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2;
        while (cap < o->len + (size_t)n + 1)
            cap *= 2;
        if (cap > METRICS_RENDER_MAX) {
            o->err = ERR_TOOBIG;
            return;
        }
        char *buf = realloc(o->buf, cap);
        if (buf == NULL) {
            o->err = ERR_NOMEM;
            return;
        }
        o->buf = buf;
        o->cap = cap;
    }
}

static const char *type_name(enum metrics_type t)
{
    switch (t) {
    case METRICS_COUNTER: return "counter";
    case METRICS_GAUGE: return "gauge";
    case METRICS_HISTOGRAM: return "histogram";
    }
    return "untyped";
}

void metrics_out_family(struct metrics_out *out, const char *name,
                        enum metrics_type type, const char *help)
{
    assert(name_ok(name, true));
    out_printf(out, "# HELP %s ", name);
    /* Help text escapes only backslash and newline. */
    for (const char *p = help; *p != '\0'; p++) {
        if (*p == '\\')
            out_printf(out, "\\\\");
        else if (*p == '\n')
            out_printf(out, "\\n");
        else
            out_printf(out, "%c", *p);
    }
    out_printf(out, "\n# TYPE %s %s\n", name, type_name(type));
}

void metrics_out_sample(struct metrics_out *out, const char *name,
                        const char *labels, double value)
{
    char num[32];

    format_double(value, num);
    if (labels != NULL && labels[0] != '\0')
        out_printf(out, "%s{%s} %s\n", name, labels, num);
    else
        out_printf(out, "%s %s\n", name, num);
}

static void render_histogram(struct metrics_out *o,
                             const struct metrics_family *f,
                             const struct metrics_series *s)
{
    const char *sep = s->labels[0] != '\0' ? "," : "";
    uint64_t cumulative = 0;
    char num[32];

    for (size_t i = 0; i <= f->nbounds; i++) {
        cumulative += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
        if (i < f->nbounds)
            format_double(f->bounds[i], num);
        else
            memcpy(num, "+Inf", 5);
        out_printf(o, "%s_bucket{%s%sle=\"%s\"} %llu\n", f->name, s->labels,
                   sep, num, (unsigned long long)cumulative);
    }
    format_double(
        double_of(atomic_load_explicit(&s->sum, memory_order_relaxed)), num);
    if (s->labels[0] != '\0') {
        out_printf(o, "%s_sum{%s} %s\n", f->name, s->labels, num);
        out_printf(o, "%s_count{%s} %llu\n", f->name, s->labels,
                   (unsigned long long)cumulative);
    } else {
        out_printf(o, "%s_sum %s\n%s_count %llu\n", f->name, num, f->name,
                   (unsigned long long)cumulative);
    }
}

static void render_family(struct metrics_out *o, struct metrics_family *f)
{
    pthread_mutex_lock(&f->lock);
    if (f->nseries > 0)
        metrics_out_family(o, f->name, f->type, f->help);
    for (size_t i = 0; i < f->nseries; i++) {
        const struct metrics_series *s = f->series[i];
        if (f->type == METRICS_HISTOGRAM)
            render_histogram(o, f, s);
        else
            metrics_out_sample(o, f->name, s->labels, metrics_value(s));
    }
    pthread_mutex_unlock(&f->lock);
}

int metrics_render(struct metrics *m, char **text, size_t *len)
{
    struct metrics_out o = {.cap = 4096};
    struct collector collectors[METRICS_COLLECTORS_MAX];
    size_t nfamilies, ncollectors;

    if (m == NULL)
        return ERR_INVALID;
    o.buf = malloc(o.cap);
    if (o.buf == NULL)
        return ERR_NOMEM;
    o.buf[0] = '\0';

    /* Families are never removed before metrics_free, so the pointers
     * stay good after the lock is let go. */
    pthread_mutex_lock(&m->lock);
    nfamilies = m->nfamilies;
    ncollectors = m->ncollectors;
    memcpy(collectors, m->collectors, ncollectors * sizeof(collectors[0]));
    pthread_mutex_unlock(&m->lock);

    for (size_t i = 0; i < nfamilies; i++)
        render_family(&o, m->families[i]);
    for (size_t i = 0; i < ncollectors; i++)
        collectors[i].fn(&o, collectors[i].arg);

    if (o.err != ERR_OK) {
        free(o.buf);
        return o.err;
    }
    *text = o.buf;
    *len = o.len;
    return ERR_OK;
}
