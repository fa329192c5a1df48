/*
 * test_gw_shed.c - load shedding gates (src/gateway/shed.c): the order in
 * which classes are refused as a gate fills, two gates taken together,
 * and the count under real concurrency.
 */
#include "harness.h"

#include <pthread.h>

#include "base/err.h"
#include "gateway/shed.h"

static const int shares[GW_SHED_CLASSES] = {70, 90, 100};

/* Fills a gate of 10 in steps; each line: class, expected answer, count
 * in flight after it. */
TEST(test_classes_shed_in_order)
{
    static const struct {
        enum gw_shed_class c;
        bool admitted;
        int64_t in_flight;
    } steps[] = {
        {GW_SHED_ANONYMOUS, true, 1}, {GW_SHED_ANONYMOUS, true, 2},
        {GW_SHED_ANONYMOUS, true, 3}, {GW_SHED_ANONYMOUS, true, 4},
        {GW_SHED_ANONYMOUS, true, 5}, {GW_SHED_ANONYMOUS, true, 6},
        {GW_SHED_ANONYMOUS, true, 7}, {GW_SHED_ANONYMOUS, false, 7},
        {GW_SHED_SIGNED, true, 8},    {GW_SHED_SIGNED, true, 9},
        {GW_SHED_SIGNED, false, 9},   {GW_SHED_ANONYMOUS, false, 9},
        {GW_SHED_CRITICAL, true, 10}, {GW_SHED_CRITICAL, false, 10},
        {GW_SHED_SIGNED, false, 10},
    };
    struct gw_shed g;

    CHECK_INT(gw_shed_init(&g, 10, shares), ERR_OK);
    CHECK_INT(g.threshold[GW_SHED_ANONYMOUS], 7);
    CHECK_INT(g.threshold[GW_SHED_SIGNED], 9);
    CHECK_INT(g.threshold[GW_SHED_CRITICAL], 10);
    for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
        bool got = gw_shed_enter(&g, steps[k].c);
        if (got != steps[k].admitted ||
            atomic_load(&g.in_flight) != steps[k].in_flight)
            harness_fail(__FILE__, __LINE__,
                         "step %zu: admitted %d, %lld in "
                         "flight",
                         k, got, (long long)atomic_load(&g.in_flight));
    }
    CHECK_INT(atomic_load(&g.shed[GW_SHED_ANONYMOUS]), 2);
    CHECK_INT(atomic_load(&g.shed[GW_SHED_SIGNED]), 2);
    CHECK_INT(atomic_load(&g.shed[GW_SHED_CRITICAL]), 1);

    /* Four leave: 6 in flight, browsing is back for one. */
    gw_shed_leave(&g);
    gw_shed_leave(&g);
    gw_shed_leave(&g);
    gw_shed_leave(&g);
    CHECK(gw_shed_enter(&g, GW_SHED_ANONYMOUS));
    CHECK(!gw_shed_enter(&g, GW_SHED_ANONYMOUS));
}

/* Thresholds round up: a bound of 3 still admits one anonymous read. */
TEST(test_small_bounds_round_up)
{
    struct gw_shed g;

    CHECK_INT(gw_shed_init(&g, 3, shares), ERR_OK);
    CHECK_INT(g.threshold[GW_SHED_ANONYMOUS], 3); /* ceil(2.1) */
    CHECK_INT(gw_shed_init(&g, 1, shares), ERR_OK);
    CHECK_INT(g.threshold[GW_SHED_ANONYMOUS], 1);
    CHECK(gw_shed_enter(&g, GW_SHED_ANONYMOUS));
    CHECK(!gw_shed_enter(&g, GW_SHED_CRITICAL));
}

TEST(test_unbounded_admits_all)
{
    struct gw_shed g;

    CHECK_INT(gw_shed_init(&g, 0, shares), ERR_OK);
    for (int k = 0; k < 1000; k++)
        CHECK(gw_shed_enter(&g, GW_SHED_ANONYMOUS));
    CHECK_INT(atomic_load(&g.in_flight), 1000);
}

/* Both gates or neither: a refusal by the second gives back the first. */
TEST(test_two_gates)
{
    struct gw_shed gw, route;

    CHECK_INT(gw_shed_init(&gw, 100, shares), ERR_OK);
    CHECK_INT(gw_shed_init(&route, 2, shares), ERR_OK);
    CHECK(gw_shed_enter2(&gw, &route, GW_SHED_CRITICAL));
    CHECK(gw_shed_enter2(&gw, &route, GW_SHED_CRITICAL));
    CHECK(!gw_shed_enter2(&gw, &route, GW_SHED_CRITICAL));
    CHECK_INT(atomic_load(&gw.in_flight), 2);
    CHECK_INT(atomic_load(&route.in_flight), 2);
    CHECK(gw_shed_enter2(&gw, NULL, GW_SHED_CRITICAL));
    CHECK_INT(atomic_load(&gw.in_flight), 3);
}

TEST(test_config_ranges)
{
    struct gw_shed g;
    const int decreasing[GW_SHED_CLASSES] = {90, 70, 100};
    const int zero[GW_SHED_CLASSES] = {0, 90, 100};

    CHECK_INT(gw_shed_init(&g, -1, shares), ERR_INVALID);
    CHECK_INT(gw_shed_init(&g, GW_SHED_BOUND_MAX + 1, shares), ERR_INVALID);
    CHECK_INT(gw_shed_init(&g, 10, decreasing), ERR_INVALID);
    CHECK_INT(gw_shed_init(&g, 10, zero), ERR_INVALID);
}

/* Threads racing for slots never pass the bound. */
#define RACERS 4
#define ROUNDS 20000

static struct gw_shed race_gate;
static atomic_int race_over;

static void *racer(void *arg)
{
    (void)arg;
    for (int k = 0; k < ROUNDS; k++) {
        if (!gw_shed_enter(&race_gate, GW_SHED_CRITICAL))
            continue;
        if (atomic_load(&race_gate.in_flight) > race_gate.bound)
            atomic_store(&race_over, 1);
        gw_shed_leave(&race_gate);
    }
    return NULL;
}

TEST(test_concurrent_bound)
{
    pthread_t t[RACERS];

    CHECK_INT(gw_shed_init(&race_gate, 3, shares), ERR_OK);
    for (int k = 0; k < RACERS; k++)
        CHECK_INT(pthread_create(&t[k], NULL, racer, NULL), 0);
    for (int k = 0; k < RACERS; k++)
        pthread_join(t[k], NULL);
    CHECK_INT(atomic_load(&race_over), 0);
    CHECK_INT(atomic_load(&race_gate.in_flight), 0);
}

HARNESS_MAIN(T(test_classes_shed_in_order), T(test_small_bounds_round_up),
             T(test_unbounded_admits_all), T(test_two_gates),
             T(test_config_ranges), T(test_concurrent_bound))
