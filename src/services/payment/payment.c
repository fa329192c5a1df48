/*
 * payment.c - configuration, start-up, routes and threads of the payment
 * service.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/err.h"
#include "base/keyset.h"
#include "base/log.h"
#include "base/program.h"
#include "services/payment/internal.h"
#include "services/payment/payment.h"

/* How often thread 0 deletes idempotency records past their time. */
#define PAY_IDEM_EXPIRE_EVERY_MS (60 * 1000)
#define PAY_TICK_MS              1000

static const struct config_key payment_keys[] = {
    HTTP_CONFIG_KEYS(8083),
    PROGRAM_LOG_KEY,
    STORE_CONFIG_KEYS("var/payment.db"),
    {"payment.admin_token", CONFIG_STRING, "", 0, 0,
     "bearer token for /admin/ routes; empty disables them"},
    {"payment.workers", CONFIG_INT, "4", 1, PROVIDER_WORKERS_MAX,
     "threads that call the card provider"},
    {"payment.queue_max", CONFIG_INT, "1024", 1, PROVIDER_QUEUE_MAX,
     "provider calls waiting for a worker; more get 503"},
    {"payment.provider_timeout_ms", CONFIG_INT, "5000", 10, 600000,
     "a provider call taking longer is a timeout (504)"},
    {"payment.provider.latency_ms", CONFIG_INT, "50", 0,
     PROVIDER_LATENCY_MAX_MS, "simulated provider: mean call time"},
    {"payment.provider.jitter_ms", CONFIG_INT, "20", 0, PROVIDER_LATENCY_MAX_MS,
     "simulated provider: call time varies by this"},
    {"payment.provider.failure_rate", CONFIG_STRING, "0", 0, 0,
     "simulated provider: share of calls that fail, 0 to 1"},
    {"payment.provider.decline_rate", CONFIG_STRING, "0", 0, 0,
     "simulated provider: share of calls declined, 0 to 1"},
    {"payment.provider.timeout_rate", CONFIG_STRING, "0", 0, 0,
     "simulated provider: share of calls that time out, 0 to 1"},
    {"payment.provider.outage", CONFIG_BOOL, "false", 0, 0,
     "simulated provider: refuse every call"},
};

static const struct http_route payment_routes[] = {
    {"POST", "/v1/charges", pay_handle_create_charge},
    {"GET", "/v1/charges", pay_handle_list_charges},
    {"GET", "/v1/charges/{charge_id}", pay_handle_get_charge},
    {"POST", "/v1/refunds", pay_handle_create_refund},
    {"GET", "/v1/refunds/{refund_id}", pay_handle_get_refund},
    {"GET", "/admin/provider", pay_handle_get_provider},
    {"PUT", "/admin/provider", pay_handle_put_provider},
    {"GET", "/admin/ledger", pay_handle_ledger},
};

static bool payment_ready(void *app)
{
    struct payment *p = app;

    return store_ready(p->store);
}

static void *payment_thread_start(void *app, int index)
{
    struct pay_thread *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->p = app;
    rand_seed_secure(&t->rng);
    if (store_conn_open(t->p->store, &t->conn) != ERR_OK)
        log_error("payment", "read_connection_failed thread=%d", index);
    return t;
}

static void payment_thread_stop(void *app, void *data)
{
    struct pay_thread *t = data;

    (void)app;
    if (t == NULL)
        return;
    if (t->conn != NULL)
        store_conn_close(t->conn);
    free(t);
}

static void payment_tick(void *app, void *data, int index)
{
    struct payment *p = app;
    static int64_t last_expire; /* thread 0 alone */
    int64_t now = clock_wall_ms(p->clock);

    (void)data;
    if (index == 0 && now - last_expire > PAY_IDEM_EXPIRE_EVERY_MS) {
        last_expire = now;
        pay_idem_expire_old(p, now);
    }
}

/* The provider's settings; ERR_CONFIG (logged) for a bad rate. */
static int provider_config_from(struct provider_config *pc,
                                const struct config *cfg)
{
    static const char *const rates[] = {"payment.provider.failure_rate",
                                        "payment.provider.decline_rate",
                                        "payment.provider.timeout_rate"};
    double *out[] = {&pc->dials.failure_rate, &pc->dials.decline_rate,
                     &pc->dials.timeout_rate};

    memset(pc, 0, sizeof(*pc));
    pc->workers = (int)config_int(cfg, "payment.workers");
    pc->queue_max = (int)config_int(cfg, "payment.queue_max");
    pc->timeout_ms = (int)config_int(cfg, "payment.provider_timeout_ms");
    pc->dials.latency_ms = (int)config_int(cfg, "payment.provider.latency_ms");
    pc->dials.jitter_ms = (int)config_int(cfg, "payment.provider.jitter_ms");
    pc->dials.outage = config_bool(cfg, "payment.provider.outage");
    for (size_t i = 0; i < 3; i++) {
        if (pay_parse_rate(config_str(cfg, rates[i]), out[i]) != ERR_OK) {
            log_error("payment",
                      "bad_config key=%s value=\"%s\" reason=\"expected a "
                      "number from 0 to 1\"",
                      rates[i], config_str(cfg, rates[i]));
            return ERR_CONFIG;
        }
    }
    if (provider_dials_check(&pc->dials, NULL, NULL) != ERR_OK) {
        log_error("payment", "bad_config key=payment.provider.failure_rate "
                             "reason=\"the three rates add up to more than "
                             "1\"");
        return ERR_CONFIG;
    }
    return ERR_OK;
}

static int serve(struct payment *p, const struct config *cfg)
{
    struct http_server_config hc;
    int rc;

    http_server_config_from(&hc, cfg, "payment");
    hc.app = p;
    hc.ready = payment_ready;
    hc.thread_start = payment_thread_start;
    hc.thread_stop = payment_thread_stop;
    hc.tick = payment_tick;
    hc.tick_ms = PAY_TICK_MS;
    rc = http_server_create(&hc, payment_routes,
                            sizeof(payment_routes) / sizeof(payment_routes[0]),
                            &p->server);
    if (rc != ERR_OK)
        return rc;
    rc = http_server_run(p->server);
    atomic_store(&p->closing, true);
    /* Calls still queued end as 503s to clients already gone. */
    provider_stop(p->provider);
    p->provider = NULL;
    http_server_free(p->server);
    return rc;
}

int payment_main(int argc, char **argv)
{
    struct config cfg;
    struct payment p = {0};
    struct provider_config pc;
    struct store_config sc;
    int exit_code = 1;
    int rc;

    int started = program_start(&cfg, payment_keys,
                                sizeof(payment_keys) / sizeof(payment_keys[0]),
                                argc, argv, "payment", NULL);
    if (started != ERR_OK)
        return started == PROGRAM_HELPED ? 2 : 1;
    p.clock = clock_system();
    p.admin_token = config_str(&cfg, "payment.admin_token");
    pay_metrics_setup(&p.metrics);
    if (provider_config_from(&pc, &cfg) != ERR_OK)
        goto out_config;

    store_config_from(&sc, &cfg);
    program_make_parent_dir(sc.path);
    rc = store_open(&sc, payment_migrations, payment_nmigrations, &p.store);
    if (rc != ERR_OK) {
        log_error("payment", "store_open_failed path=%s error=%s", sc.path,
                  err_name(rc));
        goto out_config;
    }
    p.running = keyset_new(PAY_RUNNING_MAX);
    if (p.running == NULL) {
        log_error("payment", "start_failed error=%s", err_name(ERR_NOMEM));
        goto out_store;
    }
    rc = provider_start(&pc, p.store, &p.provider);
    if (rc != ERR_OK) {
        log_error("payment", "provider_start_failed error=%s", err_name(rc));
        goto out_store;
    }
    log_info("payment",
             "provider_started workers=%d queue_max=%d timeout_ms=%d "
             "latency_ms=%d",
             pc.workers, pc.queue_max, pc.timeout_ms, pc.dials.latency_ms);
    rc = serve(&p, &cfg);
    provider_stop(p.provider); /* NULL unless serve failed to start */
    exit_code = rc == ERR_OK ? 0 : 1;

out_store:
    /* The writer's last done callbacks still end keys in flight. */
    store_close(p.store);
    keyset_free(p.running);
out_config:
    config_free(&cfg);
    return exit_code;
}
