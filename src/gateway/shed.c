/*
 * shed.c - the gates of load shedding.
 */
#include <assert.h>
#include <stddef.h>

#include "base/err.h"
#include "gateway/shed.h"

int gw_shed_init(struct gw_shed *g, int64_t bound,
                 const int percent[GW_SHED_CLASSES])
{
    if (bound < 0 || bound > GW_SHED_BOUND_MAX)
        return ERR_INVALID;
    for (int c = 0; c < GW_SHED_CLASSES; c++)
        if (percent[c] < 1 || percent[c] > 100 ||
            (c > 0 && percent[c] < percent[c - 1]))
            return ERR_INVALID;
    atomic_init(&g->in_flight, 0);
    g->bound = bound;
    for (int c = 0; c < GW_SHED_CLASSES; c++) {
        g->threshold[c] = (bound * percent[c] + 99) / 100;
        atomic_init(&g->shed[c], 0);
    }
    return ERR_OK;
}

bool gw_shed_enter(struct gw_shed *g, enum gw_shed_class c)
{
    int_fast64_t cur;

    assert(c >= 0 && c < GW_SHED_CLASSES);
    if (g->bound == 0) {
        atomic_fetch_add_explicit(&g->in_flight, 1, memory_order_relaxed);
        return true;
    }
    cur = atomic_load_explicit(&g->in_flight, memory_order_relaxed);
    do {
        if (cur >= g->threshold[c]) {
            atomic_fetch_add_explicit(&g->shed[c], 1, memory_order_relaxed);
            return false;
        }
    } while (!atomic_compare_exchange_weak_explicit(
        &g->in_flight, &cur, cur + 1, memory_order_relaxed,
        memory_order_relaxed));
    return true;
}

void gw_shed_leave(struct gw_shed *g)
{
    int_fast64_t was =
        atomic_fetch_sub_explicit(&g->in_flight, 1, memory_order_relaxed);

    assert(was > 0 && "a shed slot given back twice");
    (void)was;
}

bool gw_shed_enter2(struct gw_shed *a, struct gw_shed *b, enum gw_shed_class c)
{
    if (!gw_shed_enter(a, c))
        return false;
    if (b != NULL && !gw_shed_enter(b, c)) {
        gw_shed_leave(a);
        return false;
    }
    return true;
}

const char *gw_shed_class_name(enum gw_shed_class c)
{
    static const char *const names[GW_SHED_CLASSES] = {"anonymous", "signed",
                                                       "critical"};

    assert(c >= 0 && c < GW_SHED_CLASSES);
    return names[c];
}
