/*
 * notify.c - configuration, start-up, routes and threads of the notify
 * service.
 *
 * Start-up order: the database, then the queue (declared, so events
 * published from then on are kept for us), the consumer thread, and only
 * then the port.  Shutdown goes the other way: the port drains, the
 * consumer finishes its batch (acks included), the database closes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/program.h"
#include "metrics/metrics.h"
#include "services/notify/internal.h"
#include "services/notify/notify.h"
#include "store/store.h"

/*
 * The documented demo key (docs/internals/notify.md): anyone who reads the
 * docs can sign tickets with it, so it is only for demos and tests, and
 * the service says so when it starts with it.
 */
#define NOTIFY_DEMO_KEY_NAME "demo"
#define NOTIFY_DEMO_KEY      "marquee-demo-ticket-key:not-a-secret:never-deploy"

static const struct config_key notify_keys[] = {
    HTTP_CONFIG_KEYS(8084),
    PROGRAM_LOG_KEY,
    STORE_CONFIG_KEYS("var/notify.db"),
    MQ_CONFIG_KEYS,
    {"notify.ticket_key", CONFIG_STRING, NOTIFY_DEMO_KEY_NAME, 0, 0,
     "secret that signs ticket codes, at least 32 bytes; \"demo\" uses the "
     "public demo key"},
    {"notify.admin_token", CONFIG_STRING, "", 0, 0,
     "bearer token for /admin/ routes; empty disables them"},
    {"notify.retry_ms", CONFIG_INT, "2000", 0, MQ_LEASE_MS_MAX,
     "delay before a failed event is delivered again"},
    {"notify.ack_delay_ms", CONFIG_INT, "0", 0, NOTIFY_ACK_DELAY_MAX,
     "fault injection for tests: pause between a batch's commit and its "
     "acks"},
};

static const struct http_route notify_routes[] = {
    {"POST", "/v1/tickets/verify", notify_handle_verify},
    {"GET", "/v1/tickets/{booking_id}", notify_handle_get_ticket},
    {"GET", "/v1/tickets/{booking_id}/qr.svg", notify_handle_get_qr},
    {"GET", "/admin/deliveries", notify_handle_deliveries},
};

static bool notify_ready(void *app)
{
    struct notify *n = app;

    return store_ready(n->store);
}

static void *notify_thread_start(void *app, int index)
{
    struct notify_thread *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->n = app;
    if (store_conn_open(t->n->store, &t->conn) != ERR_OK)
        log_error("notify", "read_connection_failed thread=%d", index);
    return t;
}

static void notify_thread_stop(void *app, void *data)
{
    struct notify_thread *t = data;

    (void)app;
    if (t == NULL)
        return;
    if (t->conn != NULL)
        store_conn_close(t->conn);
    free(t);
}

static void notify_metrics_setup(struct notify_metrics *nm)
{
    static const char *const outcome[] = {"outcome"};
    struct metrics *m = metrics_process();
    struct metrics_family *f = metrics_family(
        m, METRICS_COUNTER, "marquee_notify_events_total",
        "Booking events taken from the queue, by what came of them: issued "
        "(a ticket), cancelled (seats), duplicate (acked, nothing done), "
        "retried (nacked) or dead (dead-lettered).",
        1, outcome, NULL, 0);
    const char *issued[] = {"issued"}, *duplicate[] = {"duplicate"},
               *cancelled[] = {"cancelled"}, *retried[] = {"retried"},
               *dead[] = {"dead"};

    nm->issued = metrics_series(f, issued);
    nm->duplicate = metrics_series(f, duplicate);
    nm->cancelled = metrics_series(f, cancelled);
    nm->retried = metrics_series(f, retried);
    nm->dead = metrics_series(f, dead);
    nm->tickets = metrics_counter(m, "marquee_notify_tickets_issued_total",
                                  "E-tickets issued (committed).");
}

/* The ticket key from configuration; ERR_CONFIG (logged) if too short. */
static int key_from(struct notify_key *key, const struct config *cfg)
{
    const char *text = config_str(cfg, "notify.ticket_key");
    size_t len = strlen(text);

    if (strcmp(text, NOTIFY_DEMO_KEY_NAME) == 0) {
        log_warn("notify", "demo_ticket_key reason=\"notify.ticket_key is "
                           "demo: tickets are signed with the public demo "
                           "key, anyone can forge them\"");
        text = NOTIFY_DEMO_KEY;
        len = strlen(text);
    } else if (len < NOTIFY_KEY_MIN || len > NOTIFY_KEY_MAX) {
        log_error("notify",
                  "bad_config key=notify.ticket_key bytes=%zu reason=\"a "
                  "ticket key is %d to %d bytes, or demo\"",
                  len, NOTIFY_KEY_MIN, NOTIFY_KEY_MAX);
        return ERR_CONFIG;
    }
    key->bytes = (const unsigned char *)text;
    key->len = len;
    return ERR_OK;
}

static int serve(struct notify *n, const struct config *cfg)
{
    struct http_server_config hc;
    int rc;

    http_server_config_from(&hc, cfg, "notify");
    hc.app = n;
    hc.ready = notify_ready;
    hc.thread_start = notify_thread_start;
    hc.thread_stop = notify_thread_stop;
    rc = http_server_create(&hc, notify_routes,
                            sizeof(notify_routes) / sizeof(notify_routes[0]),
                            &n->server);
    if (rc != ERR_OK)
        return rc;
    rc = http_server_run(n->server);
    http_server_free(n->server);
    return rc;
}

int notify_main(int argc, char **argv)
{
    struct config cfg;
    struct notify n = {0};
    struct store_config sc;
    struct mq_config mc;
    struct notify_consumer_config cc;
    int exit_code = 1;
    int rc;

    int started = program_start(&cfg, notify_keys,
                                sizeof(notify_keys) / sizeof(notify_keys[0]),
                                argc, argv, "notify", NULL);
    if (started != ERR_OK)
        return started == PROGRAM_HELPED ? 2 : 1;
    n.clock = clock_system();
    n.admin_token = config_str(&cfg, "notify.admin_token");
    notify_metrics_setup(&n.metrics);
    if (key_from(&n.key, &cfg) != ERR_OK)
        goto out_config;
    cc.retry_ms = (int)config_int(&cfg, "notify.retry_ms");
    cc.ack_delay_ms = (int)config_int(&cfg, "notify.ack_delay_ms");
    mq_config_from(&mc, &cfg);
    if (cc.ack_delay_ms >= mc.lease_ms)
        log_warn("notify",
                 "ack_delay_past_lease ack_delay_ms=%d lease_ms=%d "
                 "reason=\"leases end before their acks: every event is "
                 "delivered twice\"",
                 cc.ack_delay_ms, mc.lease_ms);

    store_config_from(&sc, &cfg);
    program_make_parent_dir(sc.path);
    rc = store_open(&sc, notify_migrations, notify_nmigrations, &n.store);
    if (rc != ERR_OK) {
        log_error("notify", "store_open_failed path=\"%s\" error=%s", sc.path,
                  err_name(rc));
        goto out_config;
    }
    program_make_parent_dir(mc.path);
    if ((n.consumer = notify_consumer_start(&n, &mc, &cc)) == NULL)
        goto out_store;
    rc = serve(&n, &cfg);
    exit_code = rc == ERR_OK ? 0 : 1;
    notify_consumer_stop(n.consumer);

out_store:
    store_close(n.store);
out_config:
    config_free(&cfg);
    return exit_code;
}
