/*
 * test_topology.c - the topology file of `marquee up`: roles in start order
 * whatever the file's order, the gateway always there, flags of every JSON
 * type turned into --key=value, autoscale fields and their defaults, the
 * first instance's port; and the defaults with and without notify.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/err.h"
#include "control/topology.h"

static struct topology topo; /* 176 KB: not on the stack */

static int load_text(const char *text, char *err, size_t cap)
{
    char path[] = "/tmp/marquee-topology-XXXXXX";
    int fd = mkstemp(path);
    FILE *f;
    int rc;

    CHECK(fd >= 0);
    f = fdopen(fd, "w");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
    rc = topo_load(path, &topo, err, cap);
    unlink(path);
    return rc;
}

TEST(topology_file_order_flags_autoscale)
{
    char err[512] = "";
    struct topo_role *b;

    CHECK_INT(load_text("{\"roles\": {"
                        " \"catalog\": {\"port\": 8081, \"flags\": {"
                        "   \"catalog.demo\": true, \"catalog.x\": 3,"
                        "   \"catalog.y\": 0.5, \"catalog.z\": \"a b\"}},"
                        " \"booking\": {\"instances\": 2, \"autoscale\": {"
                        "   \"min\": 1, \"max\": 4, \"cpu\": 0.5,"
                        "   \"p99_ms\": 250, \"down_window_ms\": 6000}},"
                        " \"payment\": {}}}",
                        err, sizeof(err)),
              ERR_OK);
    /* Start order, and the gateway added. */
    CHECK_INT(topo.nroles, 4);
    CHECK_STR(topo.roles[0].name, "payment");
    CHECK_STR(topo.roles[1].name, "booking");
    CHECK_STR(topo.roles[2].name, "catalog");
    CHECK_STR(topo.roles[3].name, "gateway");
    CHECK(topo_find(&topo, "notify") == NULL);

    CHECK_INT(topo.roles[2].port, 8081);
    CHECK_INT(topo.roles[2].nflags, 4);
    CHECK_STR(topo.roles[2].flags[0], "--catalog.demo=true");
    CHECK_STR(topo.roles[2].flags[1], "--catalog.x=3");
    CHECK_STR(topo.roles[2].flags[2], "--catalog.y=0.5");
    CHECK_STR(topo.roles[2].flags[3], "--catalog.z=a b");
    CHECK(!topo.roles[2].autoscale);

    b = topo_find(&topo, "booking");
    CHECK(b != NULL && b->autoscale && b->window_given);
    CHECK_INT(b->instances, 2);
    CHECK_INT(b->policy.min, 1);
    CHECK_INT(b->policy.max, 4);
    CHECK(b->policy.target[AS_CPU] == 0.5);
    CHECK(b->policy.target[AS_P99] == 0.25);
    CHECK(b->policy.target[AS_IN_FLIGHT] == 0);
    CHECK(b->policy.tolerance == 0.1);
    CHECK_INT(b->policy.down_window_ms, 6000);
    CHECK_INT(topo_find(&topo, "payment")->instances, 1);
}

TEST(topology_refusals_name_the_field)
{
    static const struct {
        const char *text;
        const char *words;
    } table[] = {
        {"[]", "expected a JSON object"},
        {"{\"roles\": {}, \"extra\": 1}", "extra: unknown field"},
        {"{\"roles\": {\"booking\": {\"instances\": 0}}}",
         "roles.booking.instances: an integer from 1 to 32"},
        {"{\"roles\": {\"booking\": {\"color\": 1}}}",
         "roles.booking.color: unknown field"},
        {"{\"roles\": {\"gateway\": {\"port\": 80}}}", "roles.gateway.port"},
        {"{\"roles\": {\"catalog\": {\"flags\": {\"store.path\": \"x\"}}}}",
         "roles.catalog.flags.store.path: set by marquee up itself"},
        {"{\"roles\": {\"catalog\": {\"flags\": {\"a\": [1]}}}}",
         "expected a string, number or boolean"},
        {"{\"roles\": {\"booking\": {\"autoscale\": {\"cpu\": -1}}}}",
         "roles.booking.autoscale.cpu: expected a number >= 0"},
        {"{\"roles\": {\"booking\": {\"autoscale\": {\"speed\": 1}}}}",
         "roles.booking.autoscale.speed: unknown field"},
    };

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        char err[512] = "";

        CHECK_INT(load_text(table[i].text, err, sizeof(err)), ERR_CONFIG);
        if (strstr(err, table[i].words) == NULL)
            harness_fail(__FILE__, __LINE__, "case %zu: \"%s\" lacks \"%s\"", i,
                         err, table[i].words);
    }
}

TEST(topology_defaults)
{
    struct topo_role *n;

    topo_defaults(&topo, true);
    CHECK_INT(topo.nroles, 5);
    CHECK_STR(topo.roles[0].name, "payment");
    CHECK_STR(topo.roles[4].name, "gateway");
    n = topo_find(&topo, "notify");
    CHECK(n != NULL && n->autoscale);
    CHECK_STR(n->queue, "notify.bookings");
    CHECK_INT(topo_find(&topo, "booking")->instances, 2);
    CHECK_INT(topo_find(&topo, "catalog")->instances, 1);

    topo_defaults(&topo, false);
    CHECK_INT(topo.nroles, 4);
    CHECK(topo_find(&topo, "notify") == NULL);
}

HARNESS_MAIN(T(topology_file_order_flags_autoscale),
             T(topology_refusals_name_the_field), T(topology_defaults))
