/*
 * main.c - the `marquee` command: one binary, one subcommand per role.
 */
#include <stdio.h>
#include <string.h>

#include "control/control.h"
#include "gateway/gateway.h"
#include "http/http.h"
#include "services/booking/booking.h"
#include "services/catalog/catalog.h"
#include "services/notify/notify.h"
#include "services/payment/payment.h"
#include "tools/check.h"
#include "tools/loadgen.h"
#include "tools/mqctl.h"

struct role {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *help;
};

static const struct role roles[] = {
    {"gateway", gateway_main,
     "the public door: routing, balancing, health checks, breakers"},
    {"catalog", catalog_main,
     "cities, cinemas, screens, movies, shows and prices"},
    {"booking", booking_main,
     "seat inventory of every show, and holds on seats"},
    {"payment", payment_main,
     "charges and refunds against a (simulated) card provider"},
    {"notify", notify_main,
     "e-tickets and customer messages from booking events"},
    {"mq", mqctl_main, "operator tool over the message queue"},
    {"up", up_main, "starts, supervises and scales every role on one machine"},
    {"status", status_main,
     "what `marquee up` runs: instances, restarts, scaling"},
    {"loadgen", loadgen_main,
     "open-loop load generator for flash-sale benchmarks"},
    {"check", check_main,
     "invariant checker over the services' databases (read-only)"},
};

static int usage(FILE *out)
{
    fprintf(out, "usage: marquee ROLE [--key=value ...]\n\nroles:\n");
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        fprintf(out, "  %-10s %s\n", roles[i].name, roles[i].help);
    fprintf(out, "\n`marquee ROLE --help` lists a role's settings.\n");
    return out == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
    /* Before any thread starts, so only the HTTP server takes SIGTERM. */
    http_block_stop_signals();
    if (argc < 2)
        return usage(stderr);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)
        return usage(stdout);
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
        if (strcmp(argv[1], roles[i].name) == 0)
            return roles[i].main(argc - 1, argv + 1);
    fprintf(stderr, "marquee: unknown role \"%s\"\n", argv[1]);
    return usage(stderr);
}
