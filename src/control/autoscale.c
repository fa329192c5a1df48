/*
 * autoscale.c - the desired instance count of a role; see autoscale.h.
 */
#include "control/autoscale.h"

#include <assert.h>
#include <math.h>

/* Slack for ceil(): 2.0000000001 instances is 2, not 3. */
#define AS_CEIL_SLACK 1e-9
/* A recommendation is cut here before any clamping: any number past every
 * max means the same, and the cut keeps the double-to-int cast defined. */
#define AS_RECOMMEND_MAX (AS_INSTANCES_MAX * 4)

static const char *const metric_names[AS_METRICS + 1] = {
    "cpu", "in_flight", "p99", "queue", "none"};

const char *as_metric_name(enum as_metric m)
{
    return m <= AS_METRICS ? metric_names[m] : "none";
}

void as_state_init(struct as_state *st)
{
    for (size_t i = 0; i < AS_SLOTS; i++) {
        st->slot[i] = -1;
        st->rec[i] = 0;
    }
}

bool as_policy_valid(const struct as_policy *p, const char **why)
{
    bool any = false;

    if (p->min < 1 || p->max < p->min || p->max > AS_INSTANCES_MAX) {
        *why = "min and max: 1 <= min <= max <= 32";
        return false;
    }
    if (!(p->tolerance >= 0 && p->tolerance < 1)) {
        *why = "tolerance: from 0 to below 1";
        return false;
    }
    if (!(p->max_up_factor >= 1) || p->max_up_step < 1) {
        *why = "max_up_factor >= 1 and max_up_step >= 1";
        return false;
    }
    if (p->down_window_ms < 0) {
        *why = "down_window_ms: >= 0";
        return false;
    }
    for (int m = 0; m < AS_METRICS; m++) {
        if (!(p->target[m] >= 0) || !isfinite(p->target[m])) {
            *why = "targets: finite and >= 0";
            return false;
        }
        any |= p->target[m] > 0;
    }
    if (!any) {
        *why = "targets: at least one metric";
        return false;
    }
    return true;
}

static int ceil_count(double x)
{
    double c = ceil(x - AS_CEIL_SLACK);

    if (c < 0)
        return 0;
    return c > AS_RECOMMEND_MAX ? AS_RECOMMEND_MAX : (int)c;
}

static bool within(double ratio, double tolerance)
{
    return fabs(ratio - 1.0) <= tolerance;
}

/* The queue is one for the whole role: its depth over the target. */
static int queue_rec(const struct as_policy *p, int current,
                     const struct as_sample *samples, size_t n, double *ratio)
{
    double target = p->target[AS_QUEUE], depth = -1;

    for (size_t i = 0; i < n; i++)
        if (samples[i].has[AS_QUEUE] && samples[i].value[AS_QUEUE] > depth)
            depth = samples[i].value[AS_QUEUE];
    if (depth < 0)
        return -1;
    *ratio = depth / ((current > 0 ? current : 1) * target);
    if (current > 0 && within(*ratio, p->tolerance))
        return current;
    return ceil_count(depth / target);
}

/* Per-instance metrics, with unready and silent instances counted on the
 * side that moves least. */
static int instance_rec(const struct as_policy *p, enum as_metric m,
                        int current, const struct as_sample *samples, size_t n,
                        double *ratio)
{
    double target = p->target[m], sum = 0, r, filled;
    int k = 0, missing;

    for (size_t i = 0; i < n; i++) {
        if (samples[i].ready && samples[i].has[m]) {
            sum += samples[i].value[m] < 0 ? 0 : samples[i].value[m];
            k++;
        }
    }
    if (k == 0)
        return -1;
    r = sum / k / target;
    *ratio = r;
    if (within(r, p->tolerance))
        return current;

    missing = current > k ? current - k : 0;
    if (missing == 0)
        return ceil_count(r * k);
    filled = r > 1 ? sum : sum + missing * target;
    filled = filled / ((double)(k + missing) * target);
    if (within(filled, p->tolerance) || (filled > 1) != (r > 1))
        return current;
    *ratio = filled;
    return ceil_count(filled * (k + missing));
}

static int64_t slot_ms(const struct as_policy *p)
{
    int64_t s = (p->down_window_ms + AS_WINDOW_STEPS - 1) / AS_WINDOW_STEPS;

    return s > 0 ? s : 1;
}

static void window_record(const struct as_policy *p, struct as_state *st,
                          int64_t now_ms, int rec)
{
    int64_t slot = now_ms / slot_ms(p);
    size_t i = (size_t)(slot % AS_SLOTS);

    if (st->slot[i] != slot) {
        st->slot[i] = slot;
        st->rec[i] = rec;
    } else if (rec > st->rec[i]) {
        st->rec[i] = rec;
    }
}

static int window_max(const struct as_policy *p, const struct as_state *st,
                      int64_t now_ms)
{
    int64_t len = slot_ms(p);
    int64_t last = now_ms / len;
    int64_t first = (now_ms - p->down_window_ms) / len;
    int best = 0;

    for (size_t i = 0; i < AS_SLOTS; i++)
        if (st->slot[i] >= first && st->slot[i] <= last && st->rec[i] > best)
            best = st->rec[i];
    return best;
}

static int clamp(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static int up_limit(const struct as_policy *p, int current)
{
    int by_factor = ceil_count(current * p->max_up_factor);
    int by_step = current + p->max_up_step;
    int limit = by_factor < by_step ? by_factor : by_step;

    return limit > current ? limit : current + 1;
}

int as_decide(const struct as_policy *p, struct as_state *st, int64_t now_ms,
              int current, const struct as_sample *samples, size_t n,
              struct as_decision *out)
{
    int best = -1, rec, win;

    assert(current >= 0 && now_ms >= 0);
    assert(n <= AS_INSTANCES_MAX);
    out->current = current;
    out->metric = AS_METRICS;
    for (int m = 0; m < AS_METRICS; m++) {
        int r = -1;

        out->ratio[m] = 0;
        if (p->target[m] > 0)
            r = m == AS_QUEUE
                    ? queue_rec(p, current, samples, n, &out->ratio[m])
                    : instance_rec(p, (enum as_metric)m, current, samples, n,
                                   &out->ratio[m]);
        out->per_metric[m] = r;
        if (r > best) {
            best = r;
            out->metric = (enum as_metric)m;
        }
    }

    if (best < 0) {
        out->recommended = current;
        out->desired = clamp(current, p->min, p->max);
        out->reason = "no_data";
        return out->desired;
    }

    rec = clamp(best, p->min, p->max);
    out->recommended = rec;
    window_record(p, st, now_ms, rec);
    if (rec > current) {
        int limit = up_limit(p, current);

        /* Below min (at the start, say) goes to min whatever the step. */
        out->desired = rec < limit ? rec : limit;
        if (out->desired < p->min)
            out->desired = p->min;
        out->reason = "scale_up";
    } else if (rec < current) {
        win = window_max(p, st, now_ms);
        assert(win >= rec);
        out->desired = win < current ? win : current;
        out->reason = out->desired < current ? "scale_down" : "stabilising";
    } else {
        out->desired = current;
        out->reason = "steady";
    }
    /* rec and every recorded recommendation are within [min, max]. */
    assert(out->desired >= p->min && out->desired <= p->max);
    return out->desired;
}
