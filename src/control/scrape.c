/*
 * scrape.c - reading an instance's /metrics; see scrape.h.
 */
#include "control/scrape.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Longest exposition line considered; longer ones are skipped. */
#define SCRAPE_LINE_MAX 1024

static const char *const probe_routes[] = {"/metrics", "/healthz", "/readyz",
                                           NULL};

/* The value of label name inside the braces text, copied into out. */
static bool label_get(const char *labels, const char *name, char *out,
                      size_t cap)
{
    size_t nlen = strlen(name);
    const char *p = labels;

    while ((p = strstr(p, name)) != NULL) {
        bool start = p == labels || p[-1] == ',' || p[-1] == '{';

        if (start && p[nlen] == '=' && p[nlen + 1] == '"') {
            const char *v = p + nlen + 2;
            size_t n = 0;

            while (v[n] != '\0' && v[n] != '"' && n + 1 < cap) {
                out[n] = v[n];
                n++;
            }
            out[n] = '\0';
            return v[n] == '"';
        }
        p += nlen;
    }
    return false;
}

static void bucket_add(struct scrape *s, double le, double count)
{
    size_t i = 0;

    while (i < s->nbuckets && s->le[i] < le)
        i++;
    if (i < s->nbuckets && s->le[i] == le) {
        s->count[i] += count;
        return;
    }
    if (s->nbuckets == SCRAPE_BUCKETS_MAX)
        return;
    memmove(&s->le[i + 1], &s->le[i], (s->nbuckets - i) * sizeof(double));
    memmove(&s->count[i + 1], &s->count[i], (s->nbuckets - i) * sizeof(double));
    s->le[i] = le;
    s->count[i] = count;
    s->nbuckets++;
}

static void line_take(const char *line, const char *queue, struct scrape *s)
{
    char name[128], labels[SCRAPE_LINE_MAX], v[128];
    const char *sp, *brace = strchr(line, '{');
    size_t nlen;
    double value;
    char *end;

    labels[0] = '\0';
    if (brace != NULL) {
        const char *close = strrchr(line, '}');

        if (close == NULL || close < brace)
            return;
        nlen = (size_t)(brace - line);
        memcpy(labels, brace, (size_t)(close - brace + 1));
        labels[close - brace + 1] = '\0';
        sp = close + 1;
    } else {
        sp = strchr(line, ' ');
        if (sp == NULL)
            return;
        nlen = (size_t)(sp - line);
    }
    if (nlen == 0 || nlen >= sizeof(name))
        return;
    memcpy(name, line, nlen);
    name[nlen] = '\0';
    value = strtod(sp, &end);
    if (end == sp || !isfinite(value))
        return;

    if (strcmp(name, "process_cpu_seconds_total") == 0) {
        s->has_cpu = true;
        s->cpu_seconds = value;
    } else if (strcmp(name, "marquee_http_requests_in_flight") == 0) {
        s->has_in_flight = true;
        s->in_flight = value > 1 ? value - 1 : 0;
    } else if (queue != NULL && strcmp(name, "marquee_mq_messages") == 0) {
        char q[128], state[32];

        if (label_get(labels, "queue", q, sizeof(q)) && strcmp(q, queue) == 0 &&
            label_get(labels, "state", state, sizeof(state)) &&
            strcmp(state, "ready") == 0) {
            s->has_queue = true;
            s->queue_ready = value;
        }
    } else if (strcmp(name, "marquee_http_request_duration_seconds_bucket") ==
               0) {
        char route[256];
        double le;

        if (!label_get(labels, "route", route, sizeof(route)) ||
            !label_get(labels, "le", v, sizeof(v)))
            return;
        for (size_t i = 0; probe_routes[i] != NULL; i++)
            if (strcmp(route, probe_routes[i]) == 0)
                return;
        le = strcmp(v, "+Inf") == 0 ? INFINITY : strtod(v, NULL);
        bucket_add(s, le, value);
    }
}

void scrape_parse(const char *text, size_t len, const char *queue,
                  struct scrape *out)
{
    char line[SCRAPE_LINE_MAX];
    size_t at = 0;

    memset(out, 0, sizeof(*out));
    while (at < len) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t n = nl != NULL ? (size_t)(nl - (text + at)) : len - at;

        if (n > 0 && n < sizeof(line) && text[at] != '#') {
            memcpy(line, text + at, n);
            line[n] = '\0';
            line_take(line, queue, out);
        }
        at += n + 1;
    }
}

bool scrape_quantile(const struct scrape *prev, const struct scrape *cur,
                     double q, double *out)
{
    size_t n = cur->nbuckets;
    double total, rank, below = 0, lower = 0;

    if (n == 0 || prev->nbuckets != n || !isinf(cur->le[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (prev->le[i] != cur->le[i])
            return false;
    total = cur->count[n - 1] - prev->count[n - 1];
    if (!(total > 0))
        return false;
    rank = q * total;
    for (size_t i = 0; i < n; i++) {
        double upto = cur->count[i] - prev->count[i];

        if (upto >= rank) {
            if (isinf(cur->le[i])) {
                *out = n >= 2 ? cur->le[n - 2] : 0;
                return true;
            }
            *out = lower +
                   (cur->le[i] - lower) *
                       (upto > below ? (rank - below) / (upto - below) : 1.0);
            return true;
        }
        below = upto;
        lower = cur->le[i];
    }
    return false;
}
