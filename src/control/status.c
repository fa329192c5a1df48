/*
 * status.c - `marquee status`: what `marquee up` runs, read from its
 * /status, printed in aligned columns for a terminal.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/program.h"
#include "control/control.h"
#include "http/client.h"

#define STATUS_TIMEOUT_MS 3000

static const struct config_key status_keys[] = {
    /* Its own words say what failed; the HTTP client's warning would only
     * repeat them. */
    {"log.level", CONFIG_STRING, "error", 0, 0,
     "debug, info, warn, error or off"},
    {"status.url", CONFIG_STRING, "http://127.0.0.1:8090", 0, 0,
     "the admin address of marquee up (its http.port)"},
};

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s != NULL ? s : "-";
}

/* The gateway's view of one instance address: health, in flight. */
static json_t *pool_instance(json_t *pools, const char *addr, json_t **pool)
{
    size_t i, k;
    json_t *p, *in;

    json_array_foreach(pools, i, p)
    {
        json_array_foreach(json_object_get(p, "instances"), k, in)
        {
            if (strcmp(str(in, "address"), addr) == 0) {
                *pool = p;
                return in;
            }
        }
    }
    return NULL;
}

static void print_instances(json_t *doc)
{
    json_t *roles = json_object_get(doc, "roles");
    json_t *pools = json_object_get(doc, "pools");
    size_t i, k;
    json_t *r, *in;

    printf("%-12s %-16s %-9s %7s %8s %-10s %-8s %9s %-8s\n", "INSTANCE",
           "ADDRESS", "STATE", "PID", "RESTARTS", "LAST EXIT", "GATEWAY",
           "IN FLIGHT", "BREAKER");
    json_array_foreach(roles, i, r)
    {
        json_array_foreach(json_object_get(r, "instances"), k, in)
        {
            json_t *pool = NULL;
            json_t *g = pool_instance(pools, str(in, "address"), &pool);
            char flight[24] = "-";
            const char *health = "-", *breaker = "-";

            if (g != NULL) {
                health = json_is_true(json_object_get(g, "ejected"))
                             ? "ejected"
                             : str(g, "health");
                snprintf(flight, sizeof(flight), "%lld",
                         (long long)json_integer_value(
                             json_object_get(g, "in_flight")));
                breaker = str(json_object_get(pool, "breaker"), "state");
            }
            printf(
                "%-12s %-16s %-9s %7lld %8lld %-10s %-8s %9s %-8s%s\n",
                str(in, "name"), str(in, "address"), str(in, "state"),
                (long long)json_integer_value(json_object_get(in, "pid")),
                (long long)json_integer_value(json_object_get(in, "restarts")),
                str(in, "last_exit")[0] != '\0' ? str(in, "last_exit") : "-",
                health, flight, breaker,
                json_is_true(json_object_get(in, "crash_loop")) ? "  CRASH LOOP"
                                                                : "");
        }
    }
}

static void print_roles(json_t *doc)
{
    size_t i;
    json_t *r;

    printf("\n%-10s %5s %9s %4s %4s\n", "ROLE", "COUNT", "AUTOSCALE", "MIN",
           "MAX");
    json_array_foreach(json_object_get(doc, "roles"), i, r)
    {
        json_t *lim = json_object_get(r, "limits");
        char min[16] = "-", max[16] = "-";

        if (lim != NULL) {
            snprintf(
                min, sizeof(min), "%lld",
                (long long)json_integer_value(json_object_get(lim, "min")));
            snprintf(
                max, sizeof(max), "%lld",
                (long long)json_integer_value(json_object_get(lim, "max")));
        }
        printf("%-10s %5lld %9s %4s %4s\n", str(r, "role"),
               (long long)json_integer_value(json_object_get(r, "count")),
               lim != NULL ? "yes" : "no", min, max);
    }
}

static void print_decisions(json_t *doc)
{
    json_t *list = json_object_get(doc, "decisions");
    size_t i;
    json_t *d;

    printf("\nRECENT SCALING DECISIONS (newest first)\n");
    if (json_array_size(list) == 0) {
        printf("  none\n");
        return;
    }
    printf("%-20s %-8s %4s %4s %4s %-10s %-11s\n", "AT", "ROLE", "FROM", "TO",
           "REC", "METRIC", "REASON");
    json_array_foreach(list, i, d)
    {
        printf("%-20s %-8s %4lld %4lld %4lld %-10s %-11s\n", str(d, "at"),
               str(d, "role"),
               (long long)json_integer_value(json_object_get(d, "current")),
               (long long)json_integer_value(json_object_get(d, "desired")),
               (long long)json_integer_value(json_object_get(d, "recommended")),
               str(d, "metric"), str(d, "reason"));
    }
}

int status_main(int argc, char **argv)
{
    struct config cfg;
    struct http_client_response r;
    json_t *doc;
    json_error_t jerr;
    const char *url;
    int exit_code = 1, rc;

    rc = program_start(&cfg, status_keys,
                       sizeof(status_keys) / sizeof(status_keys[0]), argc, argv,
                       "status",
                       "Shows what marquee up runs: instances, health, "
                       "restarts, scaling decisions.");
    if (rc != ERR_OK)
        return rc == PROGRAM_HELPED ? 2 : 1;
    url = config_str(&cfg, "status.url");
    if (!http_client_url_valid(url)) {
        fprintf(stderr, "status: bad status.url \"%s\"\n", url);
        goto out_config;
    }
    rc = http_client_request(url, "GET", "/status", NULL, NULL, 0,
                             STATUS_TIMEOUT_MS, &r);
    if (rc != ERR_OK || r.status != 200) {
        fprintf(stderr,
                "status: marquee up does not answer at %s (%s); is it "
                "running?\n",
                url, rc != ERR_OK ? err_msg(rc) : "not 200");
        http_client_response_free(&r);
        goto out_config;
    }
    doc = json_loadb(r.body, r.len, 0, &jerr);
    http_client_response_free(&r);
    if (doc == NULL) {
        fprintf(stderr, "status: unreadable answer from %s: %s\n", url,
                jerr.text);
        goto out_config;
    }
    printf("marquee up: %s, gateway %s, data in %s", str(doc, "state"),
           str(doc, "gateway"), str(doc, "data_dir"));
    if (json_is_integer(json_object_get(doc, "pools_age_ms")))
        printf(", gateway pools read %lld ms ago",
               (long long)json_integer_value(
                   json_object_get(doc, "pools_age_ms")));
    printf("\n\n");
    print_instances(doc);
    print_roles(doc);
    print_decisions(doc);
    json_decref(doc);
    exit_code = 0;

out_config:
    config_free(&cfg);
    return exit_code;
}
