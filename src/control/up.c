/*
 * up.c - `marquee up`: configuration, the start in dependency order, the
 * control loop, the stop in reverse order, and the admin port (/status,
 * /metrics, /readyz).  docs/internals/control.md describes the whole.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/program.h"
#include "control/control.h"
#include "control/up_int.h"
#include "http/http.h"
#include "metrics/metrics.h"

static const struct config_key up_keys[] = {
    HTTP_CONFIG_KEYS(8090),
    PROGRAM_LOG_KEY,
    {"up.topology", CONFIG_STRING, "", 0, 0,
     "topology file (JSON); empty: the defaults (also the first argument)"},
    {"up.data_dir", CONFIG_STRING, "var", 0, 0,
     "databases, queue, logs and the gateway's registry go here"},
    {"up.bin", CONFIG_STRING, "", 0, 0,
     "the marquee binary the roles run; empty: this one"},
    {"up.routes", CONFIG_STRING, "deploy/gateway/routes.json", 0, 0,
     "the gateway's routes file; its pools get the instances up runs"},
    {"up.admin_token", CONFIG_STRING, "", 0, 0,
     "admin token of every role; empty: a random one"},
    {"up.gateway_secret", CONFIG_STRING, "random", 0, 0,
     "http.gateway_secret of every role: \"random\" makes one per run; "
     "empty leaves it unset, so roles trust X-Customer-Id as sent"},
    {"up.gateway_port", CONFIG_INT, "8080", 1, 65535,
     "the gateway's port, the one public port"},
    {"up.port_base", CONFIG_INT, "8100", 1, 65535,
     "first port of the range instances get theirs from"},
    {"up.port_count", CONFIG_INT, "100", 1, 10000, "ports in that range"},
    {"up.log_level", CONFIG_STRING, "info", 0, 0,
     "log.level of the roles (their logs: data_dir/logs/)"},
    {"up.ready_timeout_ms", CONFIG_INT, "30000", 100, 600000,
     "time a starting instance gets to answer /readyz before it is killed"},
    {"up.check_interval_ms", CONFIG_INT, "1000", 50, 600000,
     "time between readiness checks of a running instance"},
    {"up.check_timeout_ms", CONFIG_INT, "1000", 50, 60000,
     "time a readiness check or a metrics read may take"},
    {"up.check_failures", CONFIG_INT, "3", 1, 100,
     "failed checks in a row that get an instance killed and restarted"},
    {"up.backoff_base_ms", CONFIG_INT, "500", 1, 3600000,
     "restart delay ceiling after a first failure (doubles per failure)"},
    {"up.backoff_cap_ms", CONFIG_INT, "30000", 1, 3600000,
     "longest restart delay; a crash loop waits this long each time"},
    {"up.backoff_reset_ms", CONFIG_INT, "60000", 1, 86400000,
     "time ready after which an instance's failures are forgotten"},
    {"up.crash_loop_restarts", CONFIG_INT, "5", 1, BACKOFF_HISTORY_MAX,
     "restarts within up.crash_loop_window_ms that make a crash loop"},
    {"up.crash_loop_window_ms", CONFIG_INT, "300000", 1, 86400000,
     "the crash-loop window"},
    {"up.drain_timeout_ms", CONFIG_INT, "10000", 0, 600000,
     "time an instance leaving gets for its requests in flight"},
    {"up.stop_timeout_ms", CONFIG_INT, "15000", 100, 600000,
     "time from SIGTERM to SIGKILL"},
    {"up.scale_interval_ms", CONFIG_INT, "5000", 100, 600000,
     "time between autoscaling decisions"},
    {"up.scale_window_ms", CONFIG_INT, "300000", 0, 86400000,
     "scale-down stabilisation window of roles whose topology sets none"},
};

#define UP_NKEYS (sizeof(up_keys) / sizeof(up_keys[0]))

static void handle_status(struct http_req *req, void *app)
{
    struct up *up = app;
    char *copy = NULL;

    pthread_mutex_lock(&up->lock);
    if (up->status_text != NULL)
        copy = strdup(up->status_text);
    pthread_mutex_unlock(&up->lock);
    if (copy == NULL) {
        http_respond_unavailable(req, 1, "the status is not known yet");
        return;
    }
    http_respond_bytes(req, 200, "application/json", copy, strlen(copy));
    free(copy);
}

static const struct http_route up_routes[] = {
    {"GET", "/status", handle_status},
};

static bool up_is_ready(void *app)
{
    struct up *up = app;

    return atomic_load(&up->ready) && !atomic_load(&up->stopping);
}

/* --- the control loop ------------------------------------------------------
 */

static void loop_once(struct up *up, bool scale)
{
    int64_t now = up_now_ms();

    up_reap(up, now);
    for (size_t i = 0; i < up->nroles; i++)
        for (size_t k = 0; k < TOPO_INSTANCES_MAX; k++)
            up_instance_tick(up, &up->roles[i].inst[k], now);
    if (up->registry_dirty)
        up_registry_write(up);
    up_pools_poll(up, now);
    if (scale)
        up_scale_tick(up, now);
    up_status_render(up, now);
}

static void sleep_tick(void)
{
    struct timespec ts = {0, UP_TICK_MS * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static bool role_ready(const struct up_role *r)
{
    for (size_t i = 0; i < TOPO_INSTANCES_MAX; i++)
        if (r->inst[i].state != UP_EMPTY && r->inst[i].state != UP_READY)
            return false;
    return true;
}

/* Starts a role's instances and waits, with a bound, until all are ready:
 * the next role may depend on it. */
static void role_start(struct up *up, struct up_role *r)
{
    int64_t t0 = up_now_ms();
    int ready = 0;

    for (int k = 0; k < r->topo->instances; k++)
        if (up_instance_add(up, r, t0) == NULL)
            break;
    while (!atomic_load(&up->stop) && !role_ready(r) &&
           up_now_ms() - t0 < up->ready_timeout_ms + UP_START_POLL_MS) {
        loop_once(up, false);
        sleep_tick();
    }
    for (size_t i = 0; i < TOPO_INSTANCES_MAX; i++)
        ready += r->inst[i].state == UP_READY;
    if (!role_ready(r))
        log_warn("up",
                 "start_incomplete role=%s ready=%d wanted=%d reason=\"not "
                 "ready in time; still supervised, restarted with backoff\"",
                 r->topo->name, ready, r->topo->instances);
}

static void banner(struct up *up)
{
    printf("\nmarquee up: running (Ctrl-C stops everything)\n");
    printf("  %-12s %-22s %-8s %s\n", "instance", "address", "state", "pid");
    for (size_t i = 0; i < up->nroles; i++)
        for (size_t k = 0; k < TOPO_INSTANCES_MAX; k++) {
            const struct up_instance *in = &up->roles[i].inst[k];

            if (in->state != UP_EMPTY)
                printf("  %-12s http://127.0.0.1:%-5d %-8s %d\n", in->name,
                       in->port, up_state_name(in->state), (int)in->pid);
        }
    printf("  gateway (public): http://127.0.0.1:%d\n", up->gateway_port);
    printf("  status: marquee status --status.url=http://127.0.0.1:%d\n",
           http_server_port(up->server));
    printf("  logs:   %s/logs/\n\n", up->data_dir);
    fflush(stdout);
}

/* Stops every instance, the gateway first and then the rest in reverse
 * start order, each role given up.stop_timeout_ms before SIGKILL. */
static void stop_all(struct up *up)
{
    atomic_store(&up->stopping, true);
    log_info("up", "stopping roles=%zu", up->nroles);
    for (size_t i = up->nroles; i-- > 0;) {
        struct up_role *r = &up->roles[i];
        int64_t until = up_now_ms() + up->stop_timeout_ms + UP_STOP_GRACE_MS;
        bool left = true;

        for (size_t k = 0; k < TOPO_INSTANCES_MAX; k++)
            up_instance_stop(up, &r->inst[k], up_now_ms());
        while (left && up_now_ms() < until) {
            int64_t now = up_now_ms();

            up_reap(up, now);
            left = false;
            for (size_t k = 0; k < TOPO_INSTANCES_MAX; k++) {
                up_instance_tick(up, &r->inst[k], now);
                left |= r->inst[k].state != UP_EMPTY;
            }
            if (left)
                sleep_tick();
        }
        if (left)
            log_error("up", "stop_incomplete role=%s", r->topo->name);
    }
    log_info("up", "stopped");
}

static void *control_main(void *arg)
{
    struct up *up = arg;

    /* Which roles are pools of the routes file, before any registry. */
    if (up_ports_reserve(up) != ERR_OK || up_routes_write(up) != ERR_OK) {
        up->exit_code = 1;
        atomic_store(&up->stop, true);
    }
    for (size_t i = 0; i < up->nroles && !atomic_load(&up->stop); i++) {
        struct up_role *r = &up->roles[i];

        if (strcmp(r->topo->name, "gateway") == 0) {
            if (up_routes_write(up) != ERR_OK ||
                up_registry_write(up) != ERR_OK) {
                up->exit_code = 1;
                atomic_store(&up->stop, true);
                break;
            }
        }
        role_start(up, r);
    }
    if (!atomic_load(&up->stop)) {
        atomic_store(&up->ready, true);
        log_info("up", "ready gateway=http://127.0.0.1:%d", up->gateway_port);
        banner(up);
        up->next_scale_ms = up_now_ms() + up->scale_interval_ms;
    }
    while (!atomic_load(&up->stop)) {
        loop_once(up, true);
        sleep_tick();
    }
    stop_all(up);
    up_status_render(up, up_now_ms());
    /* A stop the control thread decided (a start that failed) ends the
     * admin server too; after a signal it has ended already. */
    http_server_stop(up->server);
    return NULL;
}

/* --- start-up ---------------------------------------------------------- */

static int token_make(char *out, size_t cap)
{
    unsigned char raw[32];

    if (rand_secure_bytes(raw, sizeof(raw)) != ERR_OK)
        return ERR_SYS;
    for (size_t i = 0; i < sizeof(raw) && 2 * i + 2 < cap; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return ERR_OK;
}

static int settings_read(struct up *up, const struct config *cfg)
{
    const char *bin = config_str(cfg, "up.bin");
    const char *token = config_str(cfg, "up.admin_token");
    const char *secret;
    ssize_t n;

    if (bin[0] != '\0') {
        snprintf(up->bin, sizeof(up->bin), "%s", bin);
    } else {
        n = readlink("/proc/self/exe", up->bin, sizeof(up->bin) - 1);
        if (n <= 0) {
            log_error("up", "bin_unknown errno=%d reason=\"set up.bin\"",
                      errno);
            return ERR_CONFIG;
        }
        up->bin[n] = '\0';
    }
    if (strlen(config_str(cfg, "up.data_dir")) >= sizeof(up->data_dir)) {
        log_error("up",
                  "bad_config key=up.data_dir reason=\"longer than %d "
                  "bytes\"",
                  UP_DIR_MAX - 1);
        return ERR_CONFIG;
    }
    snprintf(up->data_dir, sizeof(up->data_dir), "%s",
             config_str(cfg, "up.data_dir"));
    snprintf(up->routes_src, sizeof(up->routes_src), "%s",
             config_str(cfg, "up.routes"));
    snprintf(up->routes_out, sizeof(up->routes_out), "%s/gateway.routes.json",
             up->data_dir);
    snprintf(up->registry, sizeof(up->registry), "%s/gateway.registry",
             up->data_dir);
    if (token[0] != '\0')
        snprintf(up->token, sizeof(up->token), "%s", token);
    else if (token_make(up->token, sizeof(up->token)) != ERR_OK)
        return ERR_SYS;
    /* One of each for this run: the same across restarts of a role, so a
     * restarted gateway still honours the tokens it signed. */
    if (token_make(up->token_secret, sizeof(up->token_secret)) != ERR_OK)
        return ERR_SYS;
    secret = config_str(cfg, "up.gateway_secret");
    if (strcmp(secret, "random") != 0)
        snprintf(up->gateway_secret, sizeof(up->gateway_secret), "%s", secret);
    else if (token_make(up->gateway_secret, sizeof(up->gateway_secret)) !=
             ERR_OK)
        return ERR_SYS;
    up->child_log_level = config_str(cfg, "up.log_level");
    up->gateway_port = (int)config_int(cfg, "up.gateway_port");
    up->port_base = (int)config_int(cfg, "up.port_base");
    up->port_count = (int)config_int(cfg, "up.port_count");
    up->ready_timeout_ms = (int)config_int(cfg, "up.ready_timeout_ms");
    up->check_interval_ms = (int)config_int(cfg, "up.check_interval_ms");
    up->check_timeout_ms = (int)config_int(cfg, "up.check_timeout_ms");
    up->check_failures = (int)config_int(cfg, "up.check_failures");
    up->backoff_base_ms = config_int(cfg, "up.backoff_base_ms");
    up->backoff_cap_ms = config_int(cfg, "up.backoff_cap_ms");
    up->backoff_reset_ms = config_int(cfg, "up.backoff_reset_ms");
    up->crash_loop_restarts = (int)config_int(cfg, "up.crash_loop_restarts");
    up->crash_loop_window_ms = config_int(cfg, "up.crash_loop_window_ms");
    up->drain_timeout_ms = config_int(cfg, "up.drain_timeout_ms");
    up->stop_timeout_ms = config_int(cfg, "up.stop_timeout_ms");
    up->scale_interval_ms = config_int(cfg, "up.scale_interval_ms");
    if (up->backoff_cap_ms < up->backoff_base_ms) {
        log_error("up", "bad_config key=up.backoff_cap_ms reason=\"below "
                        "up.backoff_base_ms\"");
        return ERR_CONFIG;
    }
    return ERR_OK;
}

/* Keys some roles take that up fills in, found in each role's --help. */
static void role_keys_find(struct up_role *r, const char *help)
{
    r->has_store = strstr(help, "--store.path ") != NULL;
    r->has_accounts = strstr(help, "--gateway.accounts.path ") != NULL;
    r->has_gateway_secret = strstr(help, "--http.gateway_secret ") != NULL;
    r->has_token_secret = strstr(help, "--gateway.token_secret ") != NULL;
}

/* The topology, with every role it names checked against the binary. */
static int topology_read(struct up *up, const char *path, int64_t window_ms)
{
    static char help[PROC_HELP_MAX + 1];
    char err[512];
    bool has_notify;
    int rc;

    if (proc_help_text(up->bin, NULL, help) != ERR_OK) {
        log_error("up", "bin_unusable bin=\"%s\"", up->bin);
        return ERR_CONFIG;
    }
    has_notify = strstr(help, "\n  notify ") != NULL;
    if (path[0] == '\0') {
        topo_defaults(up->topo, has_notify);
        if (!has_notify)
            log_warn("up", "role_missing role=notify reason=\"this marquee "
                           "binary has no notify role; running without it\"");
    } else if ((rc = topo_load(path, up->topo, err, sizeof(err))) != ERR_OK) {
        log_error("up", "topology_refused reason=\"%s\"", err);
        return rc;
    }
    for (size_t i = 0; i < up->topo->nroles; i++) {
        struct topo_role *t = &up->topo->roles[i];
        char listed[TOPO_NAME_MAX + 8];

        snprintf(listed, sizeof(listed), "\n  %s ", t->name);
        if (proc_help_text(up->bin, NULL, help) != ERR_OK ||
            strstr(help, listed) == NULL) {
            log_error("up",
                      "role_missing role=%s bin=\"%s\" reason=\"the topology "
                      "names a role this binary does not have (marquee "
                      "--help lists them)\"",
                      t->name, up->bin);
            return ERR_CONFIG;
        }
        if (proc_help_text(up->bin, t->name, help) != ERR_OK)
            return ERR_CONFIG;
        role_keys_find(&up->roles[i], help);
        if (t->autoscale && !t->window_given)
            t->policy.down_window_ms = window_ms;
    }
    return ERR_OK;
}

static void role_metrics(struct up_role *r)
{
    static const char *const role_label[] = {"role"};
    static const char *const restart_labels[] = {"role", "reason"};
    static const char *const reasons[UP_REASONS] = {"exit", "unresponsive",
                                                    "not_ready"};
    struct metrics *m = metrics_process();
    const char *name = r->topo->name;
    struct metrics_family *crash, *ready, *desired, *restarts;

    crash = metrics_family(
        m, METRICS_GAUGE, "marquee_supervisor_crash_loop",
        "1 while an instance of the role is in crash-loop back-off.", 1,
        role_label, NULL, 0);
    ready = metrics_family(m, METRICS_GAUGE, "marquee_supervisor_instances",
                           "Instances of the role in the gateway's registry "
                           "(ready).",
                           1, role_label, NULL, 0);
    desired = metrics_family(
        m, METRICS_GAUGE, "marquee_supervisor_desired_instances",
        "Instances the autoscaler last asked for.", 1, role_label, NULL, 0);
    restarts =
        metrics_family(m, METRICS_COUNTER, "marquee_supervisor_restarts_total",
                       "Instances that ended unasked and were "
                       "restarted, by why.",
                       2, restart_labels, NULL, 0);
    r->m_decisions = metrics_family(
        m, METRICS_COUNTER, "marquee_supervisor_scale_decisions_total",
        "Autoscaling decisions, by their reason.", 2, restart_labels, NULL, 0);
    r->m_crash_loop = metrics_series(crash, &name);
    r->m_ready = metrics_series(ready, &name);
    r->m_desired = metrics_series(desired, &name);
    metrics_set(r->m_desired, r->topo->instances);
    for (int k = 0; k < UP_REASONS; k++) {
        const char *labels[2] = {name, reasons[k]};

        r->m_restarts[k] = metrics_series(restarts, labels);
    }
}

static int dirs_make(const struct up *up)
{
    char logs[UP_PATH_MAX + 8];

    snprintf(logs, sizeof(logs), "%s/logs", up->data_dir);
    if ((mkdir(up->data_dir, 0755) != 0 && errno != EEXIST) ||
        (mkdir(logs, 0755) != 0 && errno != EEXIST)) {
        log_error("up", "mkdir_failed path=\"%s\" errno=%d", logs, errno);
        return ERR_IO;
    }
    return ERR_OK;
}

static int up_run(struct up *up, const struct config *cfg)
{
    struct http_server_config hc;
    int rc;

    if (!proc_port_free(up->gateway_port)) {
        log_error("up",
                  "port_in_use port=%d key=up.gateway_port reason=\"another "
                  "process listens there\"",
                  up->gateway_port);
        return ERR_CONFIG;
    }
    http_server_config_from(&hc, cfg, "up");
    hc.app = up;
    hc.ready = up_is_ready;
    rc = http_server_create(
        &hc, up_routes, sizeof(up_routes) / sizeof(up_routes[0]), &up->server);
    if (rc != ERR_OK) {
        log_error("up", "admin_port_failed port=%d error=%s", hc.port,
                  err_name(rc));
        return rc;
    }
    log_info("up", "admin_listening port=%d data_dir=\"%s\" roles=%zu",
             http_server_port(up->server), up->data_dir, up->nroles);
    if (pthread_create(&up->thread, NULL, control_main, up) != 0) {
        log_error("up", "thread_create_failed errno=%d", errno);
        http_server_free(up->server);
        return ERR_SYS;
    }
    rc = http_server_run(up->server);
    atomic_store(&up->stop, true);
    pthread_join(up->thread, NULL);
    http_server_free(up->server);
    return up->exit_code != 0 ? ERR_CONFIG : rc;
}

int up_main(int argc, char **argv)
{
    struct config cfg;
    struct up *up;
    const char *topo_path;
    int started, rc, exit_code = 1;

    /* `marquee up deploy/topology/demo.json --key=value`: the file may
     * come first, without a key. */
    if (argc > 1 && argv[1][0] != '-') {
        static char flag[UP_PATH_MAX + 16];

        snprintf(flag, sizeof(flag), "--up.topology=%s", argv[1]);
        argv[1] = flag;
    }
    started = program_start(&cfg, up_keys, UP_NKEYS, argc, argv, "up",
                            "Starts and supervises every role on this "
                            "machine.  The first argument may be the "
                            "topology file: marquee up "
                            "deploy/topology/demo.json");
    if (started != ERR_OK)
        return started == PROGRAM_HELPED ? 2 : 1;
    up = calloc(1, sizeof(*up));
    if (up == NULL)
        goto out_config;
    up->topo = calloc(1, sizeof(*up->topo));
    if (up->topo == NULL)
        goto out_up;
    pthread_mutex_init(&up->lock, NULL);
    up->cfg = &cfg;
    rand_seed_secure(&up->rng);
    topo_path = config_str(&cfg, "up.topology");
    if (settings_read(up, &cfg) != ERR_OK ||
        topology_read(up, topo_path, config_int(&cfg, "up.scale_window_ms")) !=
            ERR_OK ||
        dirs_make(up) != ERR_OK)
        goto out_topo;

    up->nroles = up->topo->nroles;
    for (size_t i = 0; i < up->nroles; i++) {
        up->roles[i].topo = &up->topo->roles[i];
        as_state_init(&up->roles[i].as);
        role_metrics(&up->roles[i]);
    }
    log_info("up", "starting topology=\"%s\" data_dir=\"%s\" bin=\"%s\"",
             topo_path[0] != '\0' ? topo_path : "(defaults)", up->data_dir,
             up->bin);
    rc = up_run(up, &cfg);
    exit_code = rc == ERR_OK || rc == ERR_TIMEOUT ? 0 : 1;
    json_decref(up->pools);
    free(up->status_text);

out_topo:
    pthread_mutex_destroy(&up->lock);
    free(up->topo);
out_up:
    free(up);
out_config:
    config_free(&cfg);
    return exit_code;
}
