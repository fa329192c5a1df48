#include "gateway/health.h"

#include <assert.h>
#include <limits.h>

#include "base/err.h"

void gw_health_config_default(struct gw_health_config *c)
{
    c->interval_ms = 2000;
    c->fast_interval_ms = 500;
    c->timeout_ms = 1000;
    c->rise = 2;
    c->fall = 3;
    c->slow_start_ms = 10000;
}

int gw_health_config_check(const struct gw_health_config *c)
{
    if (c->interval_ms <= 0 || c->fast_interval_ms <= 0 || c->timeout_ms <= 0)
        return ERR_CONFIG;
    if (c->rise < 1 || c->fall < 1 || c->slow_start_ms < 0)
        return ERR_CONFIG;
    return ERR_OK;
}

void gw_health_init(struct gw_health *h, const struct gw_health_config *c,
                    int64_t now_ms, bool start_up)
{
    assert(gw_health_config_check(c) == ERR_OK);
    h->up = start_up;
    h->ramping = false;
    h->passes = 0;
    h->failures = 0;
    h->up_since_ms = now_ms;
    h->next_check_ms = now_ms;
}

bool gw_health_due(const struct gw_health *h, int64_t now_ms)
{
    return now_ms >= h->next_check_ms;
}

/* Runs saturate: only "at least rise/fall" matters, never the exact count. */
static int health_count_up(int count)
{
    return count < INT_MAX ? count + 1 : count;
}

bool gw_health_record(struct gw_health *h, const struct gw_health_config *c,
                      int64_t now_ms, bool passed)
{
    bool was_up = h->up;

    assert(gw_health_config_check(c) == ERR_OK);
    if (passed) {
        h->failures = 0;
        h->passes = health_count_up(h->passes);
        if (!h->up && h->passes >= c->rise) {
            h->up = true;
            h->ramping = true;
            h->up_since_ms = now_ms;
        }
    } else {
        h->passes = 0;
        h->failures = health_count_up(h->failures);
        if (h->up && h->failures >= c->fall) {
            h->up = false;
            h->ramping = false;
        }
    }

    /* An outcome against the current state is confirmed or dismissed soon. */
    bool changing = h->up ? h->failures > 0 : h->passes > 0;
    h->next_check_ms =
        now_ms + (changing ? c->fast_interval_ms : c->interval_ms);
    return h->up != was_up;
}

bool gw_health_up(const struct gw_health *h)
{
    return h->up;
}

double gw_health_weight(const struct gw_health *h,
                        const struct gw_health_config *c, int64_t now_ms)
{
    if (!h->up)
        return 0.0;
    if (!h->ramping || c->slow_start_ms <= 0)
        return 1.0;

    int64_t elapsed = now_ms - h->up_since_ms;
    if (elapsed >= c->slow_start_ms)
        return 1.0;
    if (elapsed <= 0)
        return GW_HEALTH_SLOW_START_FLOOR;
    return GW_HEALTH_SLOW_START_FLOOR + (1.0 - GW_HEALTH_SLOW_START_FLOOR) *
                                            (double)elapsed /
                                            (double)c->slow_start_ms;
}

void gw_outlier_config_default(struct gw_outlier_config *c)
{
    c->consecutive = 5;
    c->base_ejection_ms = 30000;
    c->max_ejection_ms = 300000;
    c->max_ejected_percent = 50;
    c->jitter = 0.1;
}

int gw_outlier_config_check(const struct gw_outlier_config *c)
{
    if (c->consecutive < 1)
        return ERR_CONFIG;
    if (c->base_ejection_ms <= 0 || c->max_ejection_ms < c->base_ejection_ms)
        return ERR_CONFIG;
    if (c->max_ejected_percent < 0 || c->max_ejected_percent > 100)
        return ERR_CONFIG;
    /* The negated test also refuses NaN. */
    if (!(c->jitter >= 0.0 && c->jitter <= 1.0))
        return ERR_CONFIG;
    return ERR_OK;
}

void gw_outlier_init(struct gw_outlier *o)
{
    o->failures = 0;
    o->times_ejected = 0;
    o->ejected_until_ms = INT64_MIN;
    o->ejections_total = 0;
}

bool gw_outlier_ejected(const struct gw_outlier *o, int64_t now_ms)
{
    return now_ms < o->ejected_until_ms;
}

/* Whether the pool's share of ejected instances has room for one more. */
static bool outlier_room(const struct gw_outlier_config *c, size_t pool_size,
                         size_t pool_ejected)
{
    size_t allowed = pool_size * (size_t)c->max_ejected_percent / 100;

    if (allowed < 1)
        allowed = 1;
    return pool_ejected + 1 <= allowed;
}

/* Ejects o at now_ms for the time its (already counted) ejections earn. */
static void outlier_eject(struct gw_outlier *o,
                          const struct gw_outlier_config *c, int64_t now_ms,
                          struct rand *r)
{
    /* Past this many, the time is max_ejection_ms anyway; no overflow. */
    int64_t times_cap = c->max_ejection_ms / c->base_ejection_ms + 1;

    if (o->times_ejected < times_cap && o->times_ejected < INT_MAX)
        o->times_ejected++;

    int64_t d = c->base_ejection_ms * o->times_ejected;
    if (d > c->max_ejection_ms)
        d = c->max_ejection_ms;

    /* Jitter keeps instances ejected together from returning together. */
    double u = r != NULL ? rand_unit(r) : 0.0;
    d += (int64_t)((double)d * c->jitter * u);

    o->ejected_until_ms = now_ms + d;
    o->failures = 0;
    o->ejections_total++;
}

bool gw_outlier_record(struct gw_outlier *o, const struct gw_outlier_config *c,
                       int64_t now_ms, bool failed, size_t pool_size,
                       size_t pool_ejected, struct rand *r)
{
    assert(gw_outlier_config_check(c) == ERR_OK);

    /* Back and well for max_ejection_ms: the next ejection is a first. */
    if (o->times_ejected > 0 &&
        now_ms - c->max_ejection_ms >= o->ejected_until_ms)
        o->times_ejected = 0;

    if (gw_outlier_ejected(o, now_ms))
        return false;
    if (!failed) {
        o->failures = 0;
        return false;
    }

    if (o->failures < c->consecutive)
        o->failures++;
    if (o->failures < c->consecutive)
        return false;
    if (!outlier_room(c, pool_size, pool_ejected))
        return false;
    outlier_eject(o, c, now_ms, r);
    return true;
}
