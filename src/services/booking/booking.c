/*
 * booking.c - configuration, start-up, routes and threads of the booking
 * service.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "base/program.h"
#include "http/client.h"
#include "mq/mq.h"
#include "services/booking/booking.h"
#include "services/booking/internal.h"

/* How often each thread expires holds and thread 0 ages idempotency keys. */
#define BOOKING_IDEM_EXPIRE_EVERY_MS (60 * 1000)

static const struct config_key booking_keys[] = {
    HTTP_CONFIG_KEYS(8082),
    PROGRAM_LOG_KEY,
    STORE_CONFIG_KEYS("var/booking.db"),
    {"booking.catalog_url", CONFIG_STRING, "http://127.0.0.1:8081", 0, 0,
     "where the catalog answers, to fetch shows: one URL, or several "
     "instances' URLs separated by commas, tried in turn"},
    {"booking.max_seats_per_hold", CONFIG_INT, "10", 1,
     BOOKING_SEATS_PER_REQUEST_MAX, "seats one hold may have"},
    {"booking.max_seats_per_customer", CONFIG_INT, "10", 1, 1000,
     "seats one customer may hold in one show at once"},
    {"booking.max_extensions", CONFIG_INT, "2", 0, 100,
     "times a hold may be extended"},
    {"booking.max_hold_life_s", CONFIG_INT, "1200", 1, 86400,
     "a hold never lives longer than this from its creation"},
    {"booking.sweep_ms", CONFIG_INT, "250", 10, 60000,
     "how often expired holds are ended"},
    {"booking.audit_interval_ms", CONFIG_INT, "10000", 100, 3600000,
     "how often the database is searched for a seat held twice"},
    {"booking.events", CONFIG_STRING, "", 0, 0,
     "how show events arrive: queue (consumed from the message queue) or "
     "http (POSTed by the catalog); empty: queue when mq.path or "
     "mq.backend is set, else http"},
    {"booking.payment_url", CONFIG_STRING, "http://127.0.0.1:8083", 0, 0,
     "where the payment service answers, to charge and refund"},
    {"booking.payment_timeout_ms", CONFIG_INT, "3000", 100, 60000,
     "one call to payment, connect to last byte"},
    {"booking.payment_workers", CONFIG_INT, "4", 1, BOOKING_WORKERS_MAX,
     "threads that call payment (event loops never wait for it)"},
    {"booking.checkout_queue_max", CONFIG_INT, "256", 1, 65536,
     "checkouts waiting for a payment worker; more get 503"},
    {"booking.payment_breaker_open_ms", CONFIG_INT, "5000", 100, 600000,
     "how long the payment breaker stays open before a probe"},
    {"booking.reconcile_interval_ms", CONFIG_INT, "5000", 50, 3600000,
     "how often refunds due, open payment attempts and cancelled shows "
     "are settled"},
    {"booking.reconcile_after_ms", CONFIG_INT, "30000", 200, 86400000,
     "a payment attempt untouched this long is settled with payment; "
     "must exceed booking.payment_timeout_ms"},
    {"booking.refund_retry_ms", CONFIG_INT, "1000", 10, 600000,
     "first wait before a failed refund is sent again (doubles)"},
    MQ_CONFIG_KEYS,
};

static const struct http_route booking_routes[] = {
    {"GET", "/v1/shows/{show_id}/seats", booking_handle_seats},
    {"POST", "/v1/shows/{show_id}/holds", booking_handle_create_hold},
    {"GET", "/v1/holds/{hold_id}", booking_handle_get_hold},
    {"DELETE", "/v1/holds/{hold_id}", booking_handle_release_hold},
    {"POST", "/v1/holds/{hold_id}/extend", booking_handle_extend_hold},
    {"POST", "/v1/holds/{hold_id}/checkout", booking_handle_checkout},
    {"GET", "/v1/bookings", booking_handle_list_bookings},
    {"GET", "/v1/bookings/{booking_id}", booking_handle_get_booking},
    {"POST", "/v1/bookings/{booking_id}/cancel", booking_handle_cancel_booking},
    {"POST", "/internal/v1/show-events", booking_handle_show_event},
};

static bool booking_ready(void *app)
{
    struct booking *b = app;

    return store_ready(b->store);
}

static void *booking_thread_start(void *app, int index)
{
    struct booking_thread *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->b = app;
    t->index = index;
    rand_seed_secure(&t->rng);
    if (store_conn_open(t->b->store, &t->conn) != ERR_OK)
        log_error("booking", "read_connection_failed thread=%d", index);
    booking_thread_adopt(t);
    return t;
}

static void booking_thread_stop(void *app, void *data)
{
    struct booking_thread *t = data;

    (void)app;
    if (t == NULL)
        return;
    booking_thread_free_shows(t);
    if (t->conn != NULL)
        store_conn_close(t->conn);
    free(t);
}

static void booking_tick(void *app, void *data, int index)
{
    struct booking *b = app;
    struct booking_thread *t = data;
    static _Thread_local int64_t last_idem_expire;
    int64_t now = clock_wall_ms(b->clock);

    if (t == NULL)
        return;
    booking_sweep(t, now);
    idem_flush(b);
    if (index == 0 && now - last_idem_expire > BOOKING_IDEM_EXPIRE_EVERY_MS) {
        last_idem_expire = now;
        idem_expire_old(b, now);
    }
}

static void booking_init(struct booking *b, const struct config *cfg)
{
    b->clock = clock_system();
    b->limits.max_seats_per_hold =
        (int)config_int(cfg, "booking.max_seats_per_hold");
    b->limits.max_seats_per_customer =
        (int)config_int(cfg, "booking.max_seats_per_customer");
    b->max_extensions = (int)config_int(cfg, "booking.max_extensions");
    b->max_hold_life_ms = config_int(cfg, "booking.max_hold_life_s") * 1000;
    b->payment_url = config_str(cfg, "booking.payment_url");
    b->payment_timeout_ms = (int)config_int(cfg, "booking.payment_timeout_ms");
    b->reconcile_interval_ms =
        (int)config_int(cfg, "booking.reconcile_interval_ms");
    b->reconcile_after_ms = config_int(cfg, "booking.reconcile_after_ms");
    b->refund_retry_ms = (int)config_int(cfg, "booking.refund_retry_ms");
    booking_metrics_setup(&b->metrics);
    pthread_mutex_init(&b->loaded_lock, NULL);
}

/*
 * Splits booking.catalog_url at its commas into b->catalog_urls; ERR_CONFIG,
 * logged, for an empty entry, one http_client_request would refuse, one
 * too long, or more than BOOKING_CATALOG_URLS_MAX.
 */
static int catalog_urls_parse(struct booking *b, const char *list)
{
    const char *p = list;

    b->ncatalog_urls = 0;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        const char *why = NULL;

        if (b->ncatalog_urls == BOOKING_CATALOG_URLS_MAX)
            why = "more instances than BOOKING_CATALOG_URLS_MAX";
        else if (len == 0)
            why = "an empty entry";
        else if (len >= BOOKING_CATALOG_URL_LEN)
            why = "an entry longer than BOOKING_CATALOG_URL_LEN";
        if (why == NULL) {
            char *url = b->catalog_urls[b->ncatalog_urls];
            memcpy(url, p, len);
            url[len] = '\0';
            if (!http_client_url_valid(url))
                why = "an entry that is not an http://host:port URL";
            else
                b->ncatalog_urls++;
        }
        if (why != NULL) {
            log_error("config",
                      "bad_value key=booking.catalog_url value=\"%.64s\" "
                      "reason=\"%s\"",
                      list, why);
            return ERR_CONFIG;
        }
        if (comma == NULL)
            return ERR_OK;
        p = comma + 1;
    }
}

/* Whether show events come from the queue; ERR_CONFIG for a bad value. */
static int events_from_queue(const struct config *cfg, bool *queue)
{
    const char *how = config_str(cfg, "booking.events");

    if (how[0] == '\0') {
        *queue = mq_configured(cfg);
        return ERR_OK;
    }
    *queue = strcmp(how, "queue") == 0;
    if (*queue || strcmp(how, "http") == 0)
        return ERR_OK;
    log_error("config",
              "bad_value key=booking.events value=\"%.64s\" "
              "reason=\"expected queue or http\"",
              how);
    return ERR_CONFIG;
}

/* Starts the queue's consumer if show events come that way. */
static int start_consumer(struct booking *b, const struct config *cfg)
{
    struct mq_config mc;
    bool queue;
    int rc = events_from_queue(cfg, &queue);

    if (rc != ERR_OK || !queue)
        return rc;
    mq_config_from(&mc, cfg);
    program_make_parent_dir(mc.path);
    b->consumer = booking_consumer_start(b, &mc);
    return b->consumer != NULL ? ERR_OK : ERR_CONFIG;
}

/*
 * Booking events go to the queue when it is configured, as the catalog's
 * do; with neither mq.path nor mq.backend they stay in the outbox table,
 * unsent, for a later run that has one.
 */
static int start_relay(struct booking *b, const struct config *cfg)
{
    struct mq_config mc;

    if (!mq_configured(cfg)) {
        log_info("booking", "booking_events_unrelayed "
                            "reason=\"neither mq.path nor mq.backend\"");
        return ERR_OK;
    }
    mq_config_from(&mc, cfg);
    program_make_parent_dir(mc.path);
    b->relay = booking_relay_start(b, &mc);
    return b->relay != NULL ? ERR_OK : ERR_CONFIG;
}

/* The payment pool, the relay and the reconciler, in that order. */
static int start_money(struct booking *b, const struct config *cfg)
{
    int rc;

    if (b->reconcile_after_ms <= b->payment_timeout_ms) {
        log_error("config",
                  "bad_value key=booking.reconcile_after_ms value=%lld "
                  "reason=\"must exceed booking.payment_timeout_ms, or an "
                  "attempt still in flight could be abandoned\"",
                  (long long)b->reconcile_after_ms);
        return ERR_CONFIG;
    }
    if (!http_client_url_valid(b->payment_url)) {
        log_error("config", "bad_value key=booking.payment_url value=\"%.64s\"",
                  b->payment_url);
        return ERR_CONFIG;
    }
    b->pay =
        booking_pay_start(b, (int)config_int(cfg, "booking.payment_workers"),
                          (int)config_int(cfg, "booking.checkout_queue_max"),
                          config_int(cfg, "booking.payment_breaker_open_ms"));
    if (b->pay == NULL)
        return ERR_SYS;
    if ((rc = start_relay(b, cfg)) != ERR_OK)
        return rc;
    b->reconciler = booking_reconciler_start(b);
    return b->reconciler != NULL ? ERR_OK : ERR_SYS;
}

/* The reverse of start_money: nothing calls payment after its pool. */
static void stop_money(struct booking *b)
{
    booking_reconciler_stop(b->reconciler);
    b->reconciler = NULL;
    booking_pay_stop(b->pay);
    b->pay = NULL;
    booking_relay_stop(b->relay);
    b->relay = NULL;
}

static int serve(struct booking *b, const struct config *cfg)
{
    struct http_server_config hc;
    int rc;

    http_server_config_from(&hc, cfg, "booking");
    hc.app = b;
    hc.ready = booking_ready;
    hc.thread_start = booking_thread_start;
    hc.thread_stop = booking_thread_stop;
    hc.tick = booking_tick;
    hc.tick_ms = (int)config_int(cfg, "booking.sweep_ms");
    rc = http_server_create(&hc, booking_routes,
                            sizeof(booking_routes) / sizeof(booking_routes[0]),
                            &b->server);
    if (rc != ERR_OK)
        return rc;
    b->nthreads = http_server_threads(b->server);
    /* Before the fetcher: a show it learns is cancelled wakes the
     * reconciler. */
    if ((rc = start_money(b, cfg)) != ERR_OK) {
        stop_money(b);
        http_server_free(b->server);
        return rc;
    }
    b->fetcher = booking_fetcher_start(b);
    if (b->fetcher == NULL) {
        stop_money(b);
        http_server_free(b->server);
        return ERR_SYS;
    }
    if ((rc = start_consumer(b, cfg)) != ERR_OK) {
        booking_fetcher_stop(b->fetcher);
        stop_money(b);
        http_server_free(b->server);
        return rc;
    }
    rc = http_server_run(b->server);
    /* The consumer waits for the refreshes it asked the fetcher for, and
     * the fetcher may wake the reconciler: stopped in that order. */
    booking_consumer_stop(b->consumer);
    booking_fetcher_stop(b->fetcher);
    stop_money(b);
    idem_flush(b); /* answers given in the last moments */
    http_server_free(b->server);
    return rc;
}

int booking_main(int argc, char **argv)
{
    struct config cfg;
    struct booking b = {0};
    int exit_code = 1;

    int started = program_start(&cfg, booking_keys,
                                sizeof(booking_keys) / sizeof(booking_keys[0]),
                                argc, argv, "booking", NULL);
    if (started != ERR_OK)
        return started == PROGRAM_HELPED ? 2 : 1;
    booking_init(&b, &cfg);
    if (catalog_urls_parse(&b, config_str(&cfg, "booking.catalog_url")) !=
        ERR_OK)
        goto out_config;

    struct store_config sc;
    store_config_from(&sc, &cfg);
    program_make_parent_dir(sc.path);
    int rc = store_open(&sc, booking_migrations, booking_nmigrations, &b.store);
    if (rc != ERR_OK) {
        log_error("booking", "store_open_failed path=%s error=%s", sc.path,
                  err_name(rc));
        goto out_config;
    }
    b.running = idem_running_new();
    b.maps = booking_maps_new();
    /* Memory is rebuilt from the database before the port opens, so
     * /readyz never answers before every acknowledged hold is known. */
    if (b.running == NULL || b.maps == NULL ||
        (rc = booking_load_all(&b)) != ERR_OK ||
        (rc = idem_load(&b)) != ERR_OK) {
        log_error("booking", "load_failed error=%s", err_name(rc));
        goto out_store;
    }
    b.auditor = booking_auditor_start(
        &b, (int)config_int(&cfg, "booking.audit_interval_ms"));
    rc = serve(&b, &cfg);
    exit_code = rc == ERR_OK ? 0 : 1;

out_store:
    booking_auditor_stop(b.auditor);
    store_close(b.store);
    for (size_t i = 0; i < b.nloaded; i++)
        inv_free(b.loaded[i]);
    free(b.loaded);
    idem_running_free(b.running);
    booking_maps_free(b.maps);
    pthread_mutex_destroy(&b.loaded_lock);
out_config:
    config_free(&cfg);
    return exit_code;
}
