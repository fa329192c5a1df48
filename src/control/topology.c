/*
 * topology.c - the topology file of `marquee up`; see topology.h.
 */
#include "control/topology.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"

/* Flags up sets itself: a topology that set them would break the wiring. */
static const char *const reserved_flags[] = {
    "http.host",      "http.port",           "store.path", "gateway.registry",
    "gateway.routes", "gateway.admin_token", NULL};

static int fail(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return ERR_CONFIG;
}

static void policy_defaults(struct as_policy *p, int min, int max)
{
    memset(p, 0, sizeof(*p));
    p->min = min;
    p->max = max;
    p->tolerance = 0.1;
    p->max_up_factor = 2.0;
    p->max_up_step = 4;
    p->down_window_ms = 300000;
}

static struct topo_role *role_add(struct topology *t, const char *name,
                                  int instances)
{
    struct topo_role *r = &t->roles[t->nroles++];

    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->instances = instances;
    return r;
}

void topo_defaults(struct topology *t, bool with_notify)
{
    struct topo_role *r;

    memset(t, 0, sizeof(*t));
    role_add(t, "payment", 1);
    if (with_notify) {
        r = role_add(t, "notify", 1);
        r->autoscale = true;
        policy_defaults(&r->policy, 1, 3);
        r->policy.target[AS_QUEUE] = 100;
        snprintf(r->queue, sizeof(r->queue), "notify.bookings");
    }
    r = role_add(t, "booking", 2);
    r->autoscale = true;
    policy_defaults(&r->policy, 2, 4);
    r->policy.target[AS_CPU] = 0.6;
    r->policy.target[AS_IN_FLIGHT] = 64;
    r->policy.target[AS_P99] = 0.25;
    r = role_add(t, "catalog", 1);
    r->autoscale = true;
    policy_defaults(&r->policy, 1, 3);
    r->policy.target[AS_CPU] = 0.6;
    r->policy.target[AS_IN_FLIGHT] = 64;
    role_add(t, "gateway", 1);
}

struct topo_role *topo_find(struct topology *t, const char *name)
{
    for (size_t i = 0; i < t->nroles; i++)
        if (strcmp(t->roles[i].name, name) == 0)
            return &t->roles[i];
    return NULL;
}

static bool is_reserved(const char *key)
{
    for (size_t i = 0; reserved_flags[i] != NULL; i++)
        if (strcmp(key, reserved_flags[i]) == 0)
            return true;
    return false;
}

static int flags_read(const char *path, struct topo_role *r, json_t *flags,
                      char *err, size_t cap)
{
    const char *key;
    json_t *v;

    if (!json_is_object(flags))
        return fail(err, cap, "%s: roles.%s.flags: expected an object", path,
                    r->name);
    if (json_object_size(flags) > TOPO_FLAGS_MAX)
        return fail(err, cap, "%s: roles.%s.flags: at most %d", path, r->name,
                    TOPO_FLAGS_MAX);
    json_object_foreach(flags, key, v)
    {
        char text[64];
        const char *value = text;
        int n;

        if (is_reserved(key))
            return fail(err, cap,
                        "%s: roles.%s.flags.%s: set by marquee up itself", path,
                        r->name, key);
        if (json_is_string(v))
            value = json_string_value(v);
        else if (json_is_boolean(v))
            value = json_is_true(v) ? "true" : "false";
        else if (json_is_integer(v))
            snprintf(text, sizeof(text), "%lld",
                     (long long)json_integer_value(v));
        else if (json_is_real(v))
            snprintf(text, sizeof(text), "%.17g", json_real_value(v));
        else
            return fail(err, cap,
                        "%s: roles.%s.flags.%s: expected a string, number or "
                        "boolean",
                        path, r->name, key);
        n = snprintf(r->flags[r->nflags], TOPO_FLAG_MAX, "--%s=%s", key, value);
        if (n < 0 || n >= TOPO_FLAG_MAX)
            return fail(err, cap, "%s: roles.%s.flags.%s: longer than %d", path,
                        r->name, key, TOPO_FLAG_MAX - 4);
        r->nflags++;
    }
    return ERR_OK;
}

/* A number field of the autoscale object; absent leaves *out alone. */
static int number_read(const char *path, const char *role, json_t *o,
                       const char *key, double scale, double *out, char *err,
                       size_t cap)
{
    json_t *v = json_object_get(o, key);

    if (v == NULL)
        return ERR_OK;
    if (!json_is_number(v) || json_number_value(v) < 0)
        return fail(err, cap,
                    "%s: roles.%s.autoscale.%s: expected a number >= 0", path,
                    role, key);
    *out = json_number_value(v) * scale;
    return ERR_OK;
}

static int autoscale_read(const char *path, struct topo_role *r, json_t *o,
                          char *err, size_t cap)
{
    static const char *const keys[] = {"min",
                                       "max",
                                       "cpu",
                                       "in_flight",
                                       "p99_ms",
                                       "queue",
                                       "queue_depth",
                                       "tolerance",
                                       "max_up_factor",
                                       "max_up_step",
                                       "down_window_ms",
                                       NULL};
    struct as_policy *p = &r->policy;
    double min = r->instances, max = r->instances, step = 4, window = -1;
    const char *key, *why;
    json_t *v;
    int rc = ERR_OK;

    if (!json_is_object(o))
        return fail(err, cap, "%s: roles.%s.autoscale: expected an object",
                    path, r->name);
    json_object_foreach(o, key, v)
    {
        size_t i = 0;

        while (keys[i] != NULL && strcmp(keys[i], key) != 0)
            i++;
        if (keys[i] == NULL)
            return fail(err, cap, "%s: roles.%s.autoscale.%s: unknown field",
                        path, r->name, key);
    }
    policy_defaults(p, 1, 1);
    if (rc == ERR_OK)
        rc = number_read(path, r->name, o, "min", 1, &min, err, cap);
    if (rc == ERR_OK)
        rc = number_read(path, r->name, o, "max", 1, &max, err, cap);
    if (rc == ERR_OK)
        rc = number_read(path, r->name, o, "cpu", 1, &p->target[AS_CPU], err,
                         cap);
    if (rc == ERR_OK)
        rc = number_read(path, r->name, o, "in_flight", 1,
                         &p->target[AS_IN_FLIGHT], err, cap);
    if (rc == ERR_OK)
        rc = number_read(path, r->name, o, "p99_ms", 0.001, &p->target[AS_P99],
                         err, cap);
    if (rc == ERR_OK)
        rc = number_read(path, r->name, o, "queue_depth", 1,
                         &p->target[AS_QUEUE], err, cap);
    if (rc == ERR_OK)
        rc = number_read(path, r->name, o, "tolerance", 1, &p->tolerance, err,
                         cap);
    if (rc == ERR_OK)
        rc = number_read(path, r->name, o, "max_up_factor", 1,
                         &p->max_up_factor, err, cap);
    if (rc == ERR_OK)
        rc = number_read(path, r->name, o, "max_up_step", 1, &step, err, cap);
    if (rc == ERR_OK)
        rc = number_read(path, r->name, o, "down_window_ms", 1, &window, err,
                         cap);
    if (rc != ERR_OK)
        return rc;

    p->min = min > AS_INSTANCES_MAX ? AS_INSTANCES_MAX + 1 : (int)min;
    p->max = max > AS_INSTANCES_MAX ? AS_INSTANCES_MAX + 1 : (int)max;
    p->max_up_step = step > AS_INSTANCES_MAX ? AS_INSTANCES_MAX : (int)step;
    if (window >= 0) {
        p->down_window_ms = window > 86400000.0 ? 86400000 : (int64_t)window;
        r->window_given = true;
    }
    v = json_object_get(o, "queue");
    if (v != NULL) {
        if (!json_is_string(v) || json_string_length(v) == 0 ||
            json_string_length(v) >= TOPO_QUEUE_MAX)
            return fail(err, cap,
                        "%s: roles.%s.autoscale.queue: a queue name of 1 to %d "
                        "bytes",
                        path, r->name, TOPO_QUEUE_MAX - 1);
        snprintf(r->queue, sizeof(r->queue), "%s", json_string_value(v));
    }
    if ((p->target[AS_QUEUE] > 0) != (r->queue[0] != '\0'))
        return fail(err, cap,
                    "%s: roles.%s.autoscale: queue and queue_depth go together",
                    path, r->name);
    if (!as_policy_valid(p, &why))
        return fail(err, cap, "%s: roles.%s.autoscale: %s", path, r->name, why);
    if (r->instances < p->min || r->instances > p->max)
        return fail(err, cap,
                    "%s: roles.%s.instances: must be within autoscale min and "
                    "max",
                    path, r->name);
    r->autoscale = true;
    return ERR_OK;
}

static int role_read(const char *path, struct topo_role *r, json_t *o,
                     char *err, size_t cap)
{
    const char *key;
    json_t *v, *n;
    int rc;

    if (!json_is_object(o))
        return fail(err, cap, "%s: roles.%s: expected an object", path,
                    r->name);
    json_object_foreach(o, key, v)
    {
        if (strcmp(key, "instances") != 0 && strcmp(key, "flags") != 0 &&
            strcmp(key, "autoscale") != 0 && strcmp(key, "port") != 0)
            return fail(err, cap, "%s: roles.%s.%s: unknown field", path,
                        r->name, key);
    }
    n = json_object_get(o, "instances");
    if (n != NULL) {
        if (!json_is_integer(n) || json_integer_value(n) < 1 ||
            json_integer_value(n) > TOPO_INSTANCES_MAX)
            return fail(err, cap,
                        "%s: roles.%s.instances: an integer from 1 to %d", path,
                        r->name, TOPO_INSTANCES_MAX);
        r->instances = (int)json_integer_value(n);
    }
    /* The gateway is the one public port; payment has one URL that
     * booking is given (docs/internals/control.md says what more would
     * need). */
    if ((strcmp(r->name, "gateway") == 0 || strcmp(r->name, "payment") == 0) &&
        (r->instances != 1 || json_object_get(o, "autoscale") != NULL))
        return fail(err, cap,
                    "%s: roles.%s: runs exactly one instance, not autoscaled",
                    path, r->name);
    n = json_object_get(o, "port");
    if (n != NULL) {
        if (!json_is_integer(n) || json_integer_value(n) < 1 ||
            json_integer_value(n) > 65535 || strcmp(r->name, "gateway") == 0)
            return fail(err, cap,
                        "%s: roles.%s.port: a port from 1 to 65535 (the "
                        "gateway's is up.gateway_port)",
                        path, r->name);
        r->port = (int)json_integer_value(n);
    }
    v = json_object_get(o, "flags");
    if (v != NULL && (rc = flags_read(path, r, v, err, cap)) != ERR_OK)
        return rc;
    v = json_object_get(o, "autoscale");
    if (v != NULL && (rc = autoscale_read(path, r, v, err, cap)) != ERR_OK)
        return rc;
    return ERR_OK;
}

static int roles_read(const char *path, struct topology *t, json_t *roles,
                      char *err, size_t cap)
{
    static const char *const order[] = TOPO_ORDER;
    const char *key;
    json_t *v;
    int rc;

    json_object_foreach(roles, key, v)
    {
        size_t i = 0;

        while (i < TOPO_ROLES_MAX && strcmp(order[i], key) != 0)
            i++;
        if (i == TOPO_ROLES_MAX)
            return fail(err, cap,
                        "%s: roles.%s: unknown role (payment, notify, booking, "
                        "catalog, gateway)",
                        path, key);
    }
    for (size_t i = 0; i < TOPO_ROLES_MAX; i++) {
        struct topo_role *r;

        v = json_object_get(roles, order[i]);
        if (v == NULL && strcmp(order[i], "gateway") != 0)
            continue;
        r = role_add(t, order[i], 1);
        if (v != NULL && (rc = role_read(path, r, v, err, cap)) != ERR_OK)
            return rc;
    }
    return ERR_OK;
}

int topo_load(const char *path, struct topology *t, char *err, size_t cap)
{
    json_error_t jerr;
    json_t *root, *roles;
    const char *key;
    json_t *v;
    int rc = ERR_CONFIG;

    memset(t, 0, sizeof(*t));
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        fail(err, cap, "%s: line %d column %d: %s", path, jerr.line,
             jerr.column, jerr.text);
        return jerr.line <= 0 ? ERR_IO : ERR_CONFIG;
    }
    if (!json_is_object(root)) {
        fail(err, cap, "%s: expected a JSON object", path);
        goto out_root;
    }
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "roles") != 0 && strcmp(key, "comment") != 0) {
            fail(err, cap, "%s: %s: unknown field", path, key);
            goto out_root;
        }
    }
    roles = json_object_get(root, "roles");
    if (!json_is_object(roles)) {
        fail(err, cap, "%s: roles: required, an object", path);
        goto out_root;
    }
    rc = roles_read(path, t, roles, err, cap);

out_root:
    json_decref(root);
    return rc;
}
