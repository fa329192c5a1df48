/*
 * supervise.c - the life of one instance under `marquee up`: start it, see
 * it ready, put it in the gateway's registry, check it, restart it with
 * backoff when it dies or stops answering, drain it before it stops.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "control/up_int.h"
#include "http/client.h"
#include "metrics/metrics.h"
#include "services/booking/booking.h"

/* argv strings of one child, built before the fork. */
#define UP_ARG_MAX 1200

static const char *const state_names[] = {"empty",   "starting", "ready",
                                          "backoff", "draining", "stopping"};
static const char *const reason_names[UP_REASONS] = {"exit", "unresponsive",
                                                     "not_ready"};

const char *up_state_name(enum up_state s)
{
    return state_names[s];
}

int64_t up_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct up_role *up_role_find(struct up *up, const char *name)
{
    for (size_t i = 0; i < up->nroles; i++)
        if (strcmp(up->roles[i].topo->name, name) == 0)
            return &up->roles[i];
    return NULL;
}

int up_role_count(const struct up_role *r)
{
    int n = 0;

    for (size_t i = 0; i < TOPO_INSTANCES_MAX; i++) {
        const struct up_instance *in = &r->inst[i];

        if (!in->retiring && (in->state == UP_STARTING ||
                              in->state == UP_READY || in->state == UP_BACKOFF))
            n++;
    }
    return n;
}

bool up_in_registry(const struct up_instance *in)
{
    return in->state == UP_READY && !in->killed && !in->retiring &&
           !in->must_leave;
}

static bool port_used(const struct up *up, int port)
{
    for (size_t i = 0; i < up->nroles; i++)
        for (size_t k = 0; k < TOPO_INSTANCES_MAX; k++)
            if ((up->roles[i].inst[k].state != UP_EMPTY ||
                 up->roles[i].inst[k].reserved) &&
                up->roles[i].inst[k].port == port)
                return true;
    return false;
}

/* A port of the documented range that no instance has and nothing binds. */
static int port_pick(const struct up *up)
{
    for (int p = up->port_base; p < up->port_base + up->port_count; p++)
        if (p <= 65535 && !port_used(up, p) && proc_port_free(p))
            return p;
    return 0;
}

/*
 * "http://127.0.0.1:P1,http://127.0.0.1:P2,..." of at most max of a role's
 * instances (the running and the reserved) into out; "" when it has none.
 * Instances the autoscaler adds later are not in a list given at start.
 */
static void role_urls(struct up *up, const char *role, size_t max, char *out,
                      size_t size)
{
    struct up_role *r = up_role_find(up, role);
    size_t used = 0, listed = 0;

    out[0] = '\0';
    for (size_t i = 0; r != NULL && i < TOPO_INSTANCES_MAX && listed < max;
         i++) {
        if (r->inst[i].state == UP_EMPTY && !r->inst[i].reserved)
            continue;
        int n = snprintf(out + used, size - used, "%shttp://127.0.0.1:%d",
                         used > 0 ? "," : "", r->inst[i].port);
        if (n < 0 || (size_t)n >= size - used) {
            /* No room for this one: the list keeps those before it. */
            out[used] = '\0';
            return;
        }
        used += (size_t)n;
        listed++;
    }
}

int up_ports_reserve(struct up *up)
{
    for (size_t i = 0; i < up->nroles; i++) {
        struct up_role *r = &up->roles[i];
        bool gateway = strcmp(r->topo->name, "gateway") == 0;

        for (int k = 0; k < r->topo->instances; k++) {
            int port = gateway ? up->gateway_port : port_pick(up);

            if (k == 0 && r->topo->port > 0) {
                port = r->topo->port;
                if (port_used(up, port) || !proc_port_free(port)) {
                    log_error("up",
                              "port_in_use role=%s port=%d reason=\"the "
                              "topology's port is taken\"",
                              r->topo->name, port);
                    return ERR_CONFIG;
                }
            }

            if (port == 0) {
                log_error("up",
                          "no_free_port role=%s range=%d-%d reason=\"every "
                          "port of up.port_base and up.port_count is taken\"",
                          r->topo->name, up->port_base,
                          up->port_base + up->port_count - 1);
                return ERR_FULL;
            }
            r->inst[k].port = port;
            r->inst[k].reserved = true;
        }
    }
    return ERR_OK;
}

#define UP_SECRETS_MAX 4 /* secrets one child gets in its environment */

/*
 * A child's command line and environment.  Secrets (admin tokens, the
 * gateway's secret, the token secret) go in the environment as
 * MARQUEE_<KEY>, which config_load reads: a command line is readable by
 * every local user (ps, /proc/<pid>/cmdline), an environment only by the
 * process's owner.
 */
struct up_args {
    size_t n;
    char *argv[PROC_ARGS_MAX];
    char text[PROC_ARGS_MAX][UP_ARG_MAX];
    size_t nsecrets;
    char secret[UP_SECRETS_MAX][UP_ARG_MAX];
    char *envp[PROC_ENV_MAX];
};

static void arg_add(struct up_args *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void arg_add(struct up_args *a, const char *fmt, ...)
{
    va_list ap;

    if (a->n + 1 >= PROC_ARGS_MAX)
        return;
    va_start(ap, fmt);
    vsnprintf(a->text[a->n], UP_ARG_MAX, fmt, ap);
    va_end(ap);
    a->argv[a->n] = a->text[a->n];
    a->n++;
    a->argv[a->n] = NULL;
}

/* Adds MARQUEE_<KEY>=value ("gateway.admin_token" -> MARQUEE_GATEWAY_
 * ADMIN_TOKEN, as config_load_env names it) to the child's secrets. */
static void secret_add(struct up_args *a, const char *key, const char *value)
{
    assert(a->nsecrets < UP_SECRETS_MAX);
    char *out = a->secret[a->nsecrets++];
    size_t n = (size_t)snprintf(out, UP_ARG_MAX, "MARQUEE_");

    for (const char *p = key; *p != '\0' && n + 1 < UP_ARG_MAX; p++)
        out[n++] =
            *p == '.' || *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    snprintf(out + n, UP_ARG_MAX - n, "=%s", value);
}

/* The supervisor's own environment, less any variable a secret sets,
 * then the secrets. */
static void env_build(struct up_args *a)
{
    extern char **environ;
    size_t n = 0, room = PROC_ENV_MAX - 1 - a->nsecrets;
    bool cut = false;

    for (char **e = environ; e != NULL && *e != NULL; e++) {
        bool replaced = false;
        for (size_t i = 0; i < a->nsecrets && !replaced; i++) {
            size_t name = (size_t)(strchr(a->secret[i], '=') - a->secret[i]);
            replaced = strncmp(*e, a->secret[i], name + 1) == 0;
        }
        if (replaced)
            continue;
        if (n == room) {
            cut = true;
            break;
        }
        a->envp[n++] = *e;
    }
    if (cut)
        log_warn("up", "child_environment_cut kept=%zu", n);
    for (size_t i = 0; i < a->nsecrets; i++)
        a->envp[n++] = a->secret[i];
    a->envp[n] = NULL;
}

static void args_build(struct up *up, const struct up_instance *in,
                       struct up_args *a)
{
    const struct topo_role *t = in->role->topo;
    const char *role = t->name;
    bool gateway = strcmp(role, "gateway") == 0;

    a->n = 0;
    a->nsecrets = 0;
    arg_add(a, "%s", up->bin);
    arg_add(a, "%s", role);
    arg_add(a, "--http.host=127.0.0.1");
    arg_add(a, "--http.port=%d", in->port);
    arg_add(a, "--log.level=%s", up->child_log_level);
    if (in->role->has_store)
        arg_add(a, "--store.path=%s/%s.db", up->data_dir, role);
    if (in->role->has_accounts)
        arg_add(a, "--gateway.accounts.path=%s/accounts.db", up->data_dir);
    if (in->role->has_gateway_secret && up->gateway_secret[0] != '\0')
        secret_add(a, "http.gateway_secret", up->gateway_secret);
    if (in->role->has_token_secret)
        secret_add(a, "gateway.token_secret", up->token_secret);
    if (strcmp(role, "booking") == 0 || strcmp(role, "catalog") == 0 ||
        strcmp(role, "notify") == 0)
        arg_add(a, "--mq.path=%s/queue.db", up->data_dir);
    if (strcmp(role, "booking") == 0) {
        char urls[BOOKING_CATALOG_URLS_MAX * 32];

        role_urls(up, "payment", 1, urls, sizeof(urls));
        if (urls[0] != '\0')
            arg_add(a, "--booking.payment_url=%s", urls);
        role_urls(up, "catalog", BOOKING_CATALOG_URLS_MAX, urls, sizeof(urls));
        if (urls[0] != '\0')
            arg_add(a, "--booking.catalog_url=%s", urls);
    }
    if (strcmp(role, "catalog") == 0 || strcmp(role, "payment") == 0 ||
        strcmp(role, "notify") == 0) {
        char key[64];
        snprintf(key, sizeof(key), "%s.admin_token", role);
        secret_add(a, key, up->token);
    }
    if (gateway) {
        arg_add(a, "--gateway.routes=%s", up->routes_out);
        arg_add(a, "--gateway.registry=%s", up->registry);
        secret_add(a, "gateway.admin_token", up->token);
    }
    /* The topology's flags come last, so they win over the defaults. */
    for (size_t i = 0; i < t->nflags; i++)
        arg_add(a, "%s", t->flags[i]);
}

static int instance_spawn(struct up *up, struct up_instance *in, int64_t now_ms)
{
    static struct up_args args; /* control thread only; 77 KB */
    char log_path[UP_PATH_MAX + 64], header[256];
    int rc;

    /* A gateway that restarts starts from the routes file: give it the
     * instances ready now, not those of the first start. */
    if (strcmp(in->role->topo->name, "gateway") == 0)
        up_routes_write(up);
    args_build(up, in, &args);
    snprintf(log_path, sizeof(log_path), "%s/logs/%s.log", up->data_dir,
             in->name);
    snprintf(header, sizeof(header), "---- marquee up: start %s port %d\n",
             in->name, in->port);
    env_build(&args);
    rc = proc_spawn(args.argv, args.envp, log_path, header, &in->pid);
    in->started_ms = now_ms;
    in->next_check_ms = now_ms;
    in->check_failures = 0;
    in->killed = false;
    in->has_prev = false;
    if (rc != ERR_OK) {
        in->pid = 0;
        in->state = UP_BACKOFF;
        in->restart_at_ms = now_ms + up->backoff_cap_ms;
        return rc;
    }
    in->state = UP_STARTING;
    log_info("up", "instance_started instance=%s pid=%d port=%d log=\"%s\"",
             in->name, (int)in->pid, in->port, log_path);
    return ERR_OK;
}

struct up_instance *up_instance_add(struct up *up, struct up_role *r,
                                    int64_t now_ms)
{
    bool gateway = strcmp(r->topo->name, "gateway") == 0;
    struct up_instance *in = NULL;
    int reserved;

    for (size_t i = 0; i < TOPO_INSTANCES_MAX && in == NULL; i++)
        if (r->inst[i].state == UP_EMPTY)
            in = &r->inst[i];
    if (in == NULL)
        return NULL;
    reserved = in->reserved ? in->port : 0;
    memset(in, 0, sizeof(*in));
    in->role = r;
    in->slot = (int)(in - r->inst) + 1;
    snprintf(in->name, sizeof(in->name), "%s-%d", r->topo->name, in->slot);
    in->port = reserved ? reserved : gateway ? up->gateway_port : port_pick(up);
    if (in->port == 0) {
        log_error("up",
                  "no_free_port instance=%s range=%d-%d reason=\"every port of "
                  "up.port_base and up.port_count is taken\"",
                  in->name, up->port_base, up->port_base + up->port_count - 1);
        return NULL;
    }
    instance_spawn(up, in, now_ms);
    return in;
}

static void crash_gauge_update(struct up_role *r)
{
    bool any = false;

    for (size_t i = 0; i < TOPO_INSTANCES_MAX; i++)
        any |= r->inst[i].state != UP_EMPTY && r->inst[i].crash_loop;
    metrics_set(r->m_crash_loop, any ? 1 : 0);
}

/* An instance ended without being asked to: count it, choose the delay. */
static void instance_died(struct up *up, struct up_instance *in, int64_t now_ms)
{
    enum up_reason why = in->killed ? in->kill_reason : UP_EXIT;
    bool loop;
    int64_t delay;

    if (in->state == UP_READY && now_ms - in->ready_ms >= up->backoff_reset_ms)
        in->attempt = 0;
    backoff_history_record(&in->history, now_ms);
    in->restarts++;
    metrics_inc(in->role->m_restarts[why]);
    loop = backoff_crash_loop(&in->history, now_ms, up->crash_loop_window_ms,
                              (size_t)up->crash_loop_restarts);
    delay = loop ? up->backoff_cap_ms
                 : backoff_delay_ms(up->backoff_base_ms, up->backoff_cap_ms,
                                    in->attempt, &up->rng);
    if (in->attempt < UP_ATTEMPT_MAX)
        in->attempt++;
    if (loop && !in->crash_loop)
        log_error("up",
                  "crash_loop instance=%s restarts=%zu window_ms=%lld "
                  "backoff_ms=%lld last_status=\"%s\"",
                  in->name,
                  backoff_history_count(&in->history, now_ms,
                                        up->crash_loop_window_ms),
                  (long long)up->crash_loop_window_ms, (long long)delay,
                  in->last_exit);
    in->crash_loop = loop;
    crash_gauge_update(in->role);
    log_warn("up",
             "instance_exited instance=%s status=\"%s\" reason=%s ran_ms=%lld "
             "restart_in_ms=%lld restarts=%llu",
             in->name, in->last_exit, reason_names[why],
             (long long)(now_ms - in->started_ms), (long long)delay,
             (unsigned long long)in->restarts);
    if (in->state == UP_READY)
        up->registry_dirty = true;
    /* The gateway keeps an instance's state (ejection, health) while the
     * registry names it; one that died and came back before the gateway
     * read the registry would come back still ejected.  So it rejoins only
     * once the gateway has dropped it. */
    in->must_leave = in->role->routed;
    in->died_ms = now_ms;
    in->state = UP_BACKOFF;
    in->restart_at_ms = now_ms + delay;
    in->killed = false;
}

static void instance_exited(struct up *up, struct up_instance *in, int status,
                            int64_t now_ms)
{
    proc_exit_text(status, in->last_exit);
    in->pid = 0;
    if (in->state == UP_STOPPING || in->retiring || atomic_load(&up->stop)) {
        log_info("up", "instance_stopped instance=%s status=\"%s\"", in->name,
                 in->last_exit);
        in->state = UP_EMPTY;
        crash_gauge_update(in->role);
        return;
    }
    instance_died(up, in, now_ms);
}

void up_reap(struct up *up, int64_t now_ms)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < up->nroles; i++)
            for (size_t k = 0; k < TOPO_INSTANCES_MAX; k++)
                if (up->roles[i].inst[k].pid == pid)
                    instance_exited(up, &up->roles[i].inst[k], status, now_ms);
    }
}

static void instance_kill(struct up_instance *in, enum up_reason why)
{
    if (in->pid > 0 && !in->killed && kill(in->pid, SIGKILL) != 0)
        log_warn("up", "kill_failed instance=%s pid=%d errno=%d", in->name,
                 (int)in->pid, errno);
    in->killed = true;
    in->kill_reason = why;
}

static bool gateway_lists(const struct up *up, const struct up_instance *in);

/* Whether the gateway's view since the instance died no longer names it. */
static void leave_check(struct up *up, struct up_instance *in, int64_t now_ms)
{
    struct up_role *g = up_role_find(up, "gateway");
    bool gateway_up =
        g != NULL && g->inst[0].state == UP_READY && !g->inst[0].killed;

    if (!in->must_leave)
        return;
    if (gateway_up && now_ms - in->died_ms < UP_LEAVE_WAIT_MS &&
        (up->pools_ms <= in->died_ms || gateway_lists(up, in)))
        return;
    in->must_leave = false;
    up->registry_dirty = true;
}

static void tick_starting(struct up *up, struct up_instance *in, int64_t now_ms)
{
    if (in->killed || now_ms < in->next_check_ms)
        return;
    in->next_check_ms = now_ms + UP_START_POLL_MS;
    if (proc_http_ok(in->port, "/readyz", up->check_timeout_ms)) {
        in->state = UP_READY;
        in->ready_ms = now_ms;
        in->next_check_ms = now_ms + up->check_interval_ms;
        up->registry_dirty = true;
        log_info("up", "instance_ready instance=%s port=%d after_ms=%lld",
                 in->name, in->port, (long long)(now_ms - in->started_ms));
        return;
    }
    if (now_ms - in->started_ms >= up->ready_timeout_ms) {
        log_warn("up", "instance_not_ready instance=%s after_ms=%lld", in->name,
                 (long long)(now_ms - in->started_ms));
        instance_kill(in, UP_NOT_READY);
    }
}

static void tick_ready(struct up *up, struct up_instance *in, int64_t now_ms)
{
    leave_check(up, in, now_ms);
    if ((in->attempt > 0 || in->crash_loop) &&
        now_ms - in->ready_ms >= up->backoff_reset_ms) {
        if (in->crash_loop)
            log_info("up", "crash_loop_over instance=%s", in->name);
        in->attempt = 0;
        in->crash_loop = false;
        crash_gauge_update(in->role);
    }
    if (in->killed || now_ms < in->next_check_ms)
        return;
    in->next_check_ms = now_ms + up->check_interval_ms;
    if (proc_http_ok(in->port, "/readyz", up->check_timeout_ms)) {
        in->check_failures = 0;
        return;
    }
    in->check_failures++;
    log_warn("up", "check_failed instance=%s failures=%d of=%d", in->name,
             in->check_failures, up->check_failures);
    if (in->check_failures >= up->check_failures) {
        log_warn("up", "instance_unresponsive instance=%s pid=%d action=kill",
                 in->name, (int)in->pid);
        instance_kill(in, UP_UNRESPONSIVE);
        up->registry_dirty = true;
    }
}

/* Whether the gateway's last pools view lists the instance's address. */
static bool gateway_lists(const struct up *up, const struct up_instance *in)
{
    char addr[64];
    size_t i, k;
    json_t *p, *inst;

    if (up->pools == NULL)
        return false;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", in->port);
    json_array_foreach(up->pools, i, p)
    {
        json_t *list = json_object_get(p, "instances");

        json_array_foreach(list, k, inst)
        {
            const char *a = json_string_value(json_object_get(inst, "address"));

            if (a != NULL && strcmp(a, addr) == 0)
                return true;
        }
    }
    return false;
}

/* Requests the instance is still answering, from its own /metrics; -1
 * when it does not say. */
static double in_flight_of(const struct up *up, const struct up_instance *in)
{
    struct http_client_response r;
    struct scrape s;
    char url[64];
    double n = -1;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d", in->port);
    if (http_client_request(url, "GET", "/metrics", NULL, NULL, 0,
                            up->check_timeout_ms, &r) != ERR_OK)
        return -1;
    if (r.status == 200) {
        scrape_parse(r.body, r.len, NULL, &s);
        if (s.has_in_flight)
            n = s.in_flight;
    }
    http_client_response_free(&r);
    return n;
}

static void stop_now(struct up *up, struct up_instance *in, int64_t now_ms)
{
    if (in->pid > 0 && kill(in->pid, SIGTERM) != 0)
        log_warn("up", "kill_failed instance=%s pid=%d errno=%d", in->name,
                 (int)in->pid, errno);
    in->state = in->pid > 0 ? UP_STOPPING : UP_EMPTY;
    in->deadline_ms = now_ms + up->stop_timeout_ms;
}

static void tick_draining(struct up *up, struct up_instance *in, int64_t now_ms)
{
    bool late = now_ms >= in->deadline_ms;
    double busy;

    if (!in->left_gateway) {
        struct up_role *g = up_role_find(up, "gateway");

        /* Out of the registry is not yet out of the gateway: it reads the
         * file once a second, and up reads its pools once a second, so
         * only a view taken after the drain began counts. */
        if (g != NULL && up_in_registry(&g->inst[0]) && !late &&
            (up->pools_ms <= in->drain_ms || gateway_lists(up, in)))
            return;
        in->left_gateway = true;
    }
    busy = in_flight_of(up, in);
    if (busy > 0 && !late)
        return;
    log_info("up", "instance_drained instance=%s in_flight=%.0f timed_out=%s",
             in->name, busy, late ? "true" : "false");
    stop_now(up, in, now_ms);
}

void up_instance_tick(struct up *up, struct up_instance *in, int64_t now_ms)
{
    switch (in->state) {
    case UP_EMPTY: break;
    case UP_STARTING: tick_starting(up, in, now_ms); break;
    case UP_READY: tick_ready(up, in, now_ms); break;
    case UP_BACKOFF:
        if (now_ms >= in->restart_at_ms) {
            log_info("up", "instance_restarting instance=%s attempt=%u",
                     in->name, in->attempt);
            instance_spawn(up, in, now_ms);
        }
        break;
    case UP_DRAINING: tick_draining(up, in, now_ms); break;
    case UP_STOPPING:
        if (now_ms >= in->deadline_ms && !in->killed) {
            log_warn("up", "stop_timeout instance=%s pid=%d action=kill",
                     in->name, (int)in->pid);
            instance_kill(in, UP_EXIT);
        }
        break;
    }
}

void up_instance_retire(struct up *up, struct up_instance *in, int64_t now_ms)
{
    in->retiring = true;
    switch (in->state) {
    case UP_BACKOFF:
        in->state = UP_EMPTY;
        crash_gauge_update(in->role);
        break;
    case UP_STARTING: stop_now(up, in, now_ms); break;
    case UP_READY:
        in->state = UP_DRAINING;
        in->drain_ms = now_ms;
        in->deadline_ms = now_ms + up->drain_timeout_ms;
        in->left_gateway = false;
        up->registry_dirty = true;
        log_info("up", "instance_draining instance=%s", in->name);
        break;
    default: break;
    }
}

void up_instance_stop(struct up *up, struct up_instance *in, int64_t now_ms)
{
    if (in->state == UP_EMPTY || in->state == UP_STOPPING)
        return;
    if (in->state == UP_BACKOFF) {
        in->state = UP_EMPTY;
        return;
    }
    stop_now(up, in, now_ms);
}

/* --- the gateway's files ------------------------------------------------ */

/* Writes text to path through a temporary file and a rename, so the
 * gateway never reads half a file. */
static int file_replace(const char *path, const char *text, size_t len)
{
    char tmp[UP_PATH_MAX + 8];
    FILE *f;
    bool ok;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (f == NULL) {
        log_error("up", "file_write_failed path=\"%s\" errno=%d", tmp, errno);
        return ERR_IO;
    }
    ok = fwrite(text, 1, len, f) == len;
    ok &= fflush(f) == 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        log_error("up", "file_write_failed path=\"%s\" errno=%d", path, errno);
        unlink(tmp);
        return ERR_IO;
    }
    return ERR_OK;
}

static json_t *addresses(const struct up_role *r)
{
    json_t *list = json_array();
    char addr[64];

    for (size_t i = 0; i < TOPO_INSTANCES_MAX; i++) {
        if (!up_in_registry(&r->inst[i]))
            continue;
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", r->inst[i].port);
        json_array_append_new(list, json_string(addr));
    }
    return list;
}

/*
 * " booking=127.0.0.1:8082,127.0.0.1:8100 catalog=..." for the log line
 * of a registry write: one key per routed pool, no quotes or newlines.
 * A pool with no instance reads "pool=-"; a list too long ends at the
 * buffer, which log_write would cut anyway.
 */
static void pools_text(const struct up *up, char *out, size_t size)
{
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; i < up->nroles && used < size; i++) {
        const struct up_role *r = &up->roles[i];
        const char *sep = "=";
        int n;

        if (!r->routed)
            continue;
        n = snprintf(out + used, size - used, " %s", r->topo->name);
        used += n > 0 ? (size_t)n : 0;
        for (size_t k = 0; k < TOPO_INSTANCES_MAX && used < size; k++) {
            if (!up_in_registry(&r->inst[k]))
                continue;
            n = snprintf(out + used, size - used, "%s127.0.0.1:%d", sep,
                         r->inst[k].port);
            used += n > 0 ? (size_t)n : 0;
            sep = ",";
        }
        if (*sep == '=' && used < size) {
            n = snprintf(out + used, size - used, "=-");
            used += n > 0 ? (size_t)n : 0;
        }
    }
}

int up_registry_write(struct up *up)
{
    json_t *pools = json_object();
    json_t *root = json_pack("{s:o}", "pools", pools);
    char *text;
    size_t len;
    int rc;

    for (size_t i = 0; i < up->nroles; i++) {
        json_t *list = addresses(&up->roles[i]);

        metrics_set(up->roles[i].m_ready, (double)json_array_size(list));
        if (up->roles[i].routed)
            json_object_set_new(pools, up->roles[i].topo->name, list);
        else
            json_decref(list);
    }
    text = json_dumps(root, JSON_SORT_KEYS);
    json_decref(root);
    if (text == NULL)
        return ERR_NOMEM;
    len = strlen(text);
    /* The gateway sees a change by the file's mtime and size; one port for
     * another keeps the size, and two writes may share an mtime tick, so
     * a file of the same size as the last one gets a trailing newline. */
    if ((long long)len == up->registry_size) {
        char *longer = realloc(text, len + 2);

        if (longer == NULL) {
            free(text);
            return ERR_NOMEM;
        }
        text = longer;
        text[len++] = '\n';
        text[len] = '\0';
    }
    rc = file_replace(up->registry, text, len);
    if (rc == ERR_OK) {
        up->registry_size = (long long)len;
        up->registry_dirty = false;
        char pools_line[1024];

        pools_text(up, pools_line, sizeof(pools_line));
        log_info("up", "registry_written path=\"%s\"%s", up->registry,
                 pools_line);
    }
    free(text);
    return rc;
}

int up_routes_write(struct up *up)
{
    json_error_t jerr;
    json_t *root =
        json_load_file(up->routes_src, JSON_REJECT_DUPLICATES, &jerr);
    json_t *pools;
    char *text;
    int rc;

    if (root == NULL) {
        log_error("up", "routes_unreadable path=\"%s\" line=%d reason=\"%s\"",
                  up->routes_src, jerr.line, jerr.text);
        return ERR_CONFIG;
    }
    /* The gateway starts with the instances ready now, so it serves at
     * once; the registry keeps the pools current from then on. */
    pools = json_object_get(root, "pools");
    for (size_t i = 0; i < up->nroles; i++) {
        json_t *p = json_object_get(pools, up->roles[i].topo->name);

        up->roles[i].routed = json_is_object(p);
        if (up->roles[i].routed)
            json_object_set_new(p, "instances", addresses(&up->roles[i]));
    }
    text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (text == NULL)
        return ERR_NOMEM;
    rc = file_replace(up->routes_out, text, strlen(text));
    free(text);
    return rc;
}

void up_pools_poll(struct up *up, int64_t now_ms)
{
    struct up_role *g = up_role_find(up, "gateway");
    struct http_client_response r;
    char url[64], auth[UP_TOKEN_MAX + 32];
    json_t *doc, *pools;

    if (g == NULL || now_ms < up->next_pools_ms || !up_in_registry(&g->inst[0]))
        return;
    up->next_pools_ms = now_ms + UP_POOLS_POLL_MS;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", g->inst[0].port);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", up->token);
    if (http_client_request(url, "GET", "/admin/pools", auth, NULL, 0,
                            up->check_timeout_ms, &r) != ERR_OK)
        return;
    doc = r.status == 200 ? json_loadb(r.body, r.len, 0, NULL) : NULL;
    http_client_response_free(&r);
    pools = json_object_get(doc, "pools");
    if (json_is_array(pools)) {
        json_decref(up->pools);
        up->pools = json_incref(pools);
        up->pools_ms = now_ms;
    }
    json_decref(doc);
}
