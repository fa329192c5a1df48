/*
 * catalog.c - configuration, start-up and routes of the catalog service.
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
#include "mq/mq.h"
#include "services/catalog/catalog.h"
#include "services/catalog/internal.h"

static const struct config_key catalog_keys[] = {
    HTTP_CONFIG_KEYS(8081),
    PROGRAM_LOG_KEY,
    STORE_CONFIG_KEYS("var/catalog.db"),
    {"catalog.admin_token", CONFIG_STRING, "", 0, 0,
     "bearer token for admin routes; empty disables them"},
    {"catalog.demo", CONFIG_BOOL, "false", 0, 0,
     "load the demo data set into an empty database"},
    {"catalog.demo_file", CONFIG_STRING, "data/demo/catalog.json", 0, 0,
     "the demo data set"},
    {"catalog.cache", CONFIG_BOOL, "true", 0, 0,
     "keep rendered answers of public reads in memory"},
    {"catalog.notify_urls", CONFIG_STRING, "", 0, 0,
     "comma-separated base URLs (http://host:port) told of show events; "
     "empty: none"},
    {"catalog.events", CONFIG_STRING, "", 0, 0,
     "how show events leave: outbox (to the message queue) or "
     "http-notify (to catalog.notify_urls); empty: outbox when mq.path or "
     "mq.backend is set, else http-notify"},
    MQ_CONFIG_KEYS,
};

static const struct http_route catalog_routes[] = {
    {"GET", "/v1/cities", catalog_list_cities},
    {"GET", "/v1/cities/{city_id}", catalog_get_city},
    {"GET", "/v1/cities/{city_id}/cinemas", catalog_list_cinemas},
    {"GET", "/v1/cities/{city_id}/movies", catalog_list_movies},
    {"GET", "/v1/cinemas/{cinema_id}", catalog_get_cinema},
    {"GET", "/v1/screens/{screen_id}", catalog_get_screen},
    {"GET", "/v1/movies/{movie_id}", catalog_get_movie},
    {"GET", "/v1/movies/{movie_id}/shows", catalog_list_movie_shows},
    {"GET", "/v1/shows/{show_id}", catalog_get_show},
    {"POST", "/v1/admin/cities", catalog_create_city},
    {"POST", "/v1/admin/cinemas", catalog_create_cinema},
    {"POST", "/v1/admin/cinemas/{cinema_id}/screens", catalog_create_screen},
    {"POST", "/v1/admin/movies", catalog_create_movie},
    {"POST", "/v1/admin/shows", catalog_create_show},
    {"POST", "/v1/admin/shows/{show_id}/cancel", catalog_cancel_show},
};

static bool catalog_ready(void *app)
{
    struct catalog *cat = app;

    return store_ready(cat->store);
}

static void *catalog_thread_start(void *app, int index)
{
    struct catalog_thread *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->cat = app;
    if (store_conn_open(t->cat->store, &t->conn) != ERR_OK)
        log_error("catalog", "read_connection_failed thread=%d", index);
    t->cache = catalog_cache_new();
    return t;
}

static void catalog_thread_stop(void *app, void *data)
{
    struct catalog_thread *t = data;

    (void)app;
    if (t == NULL)
        return;
    catalog_cache_free(t->cache);
    if (t->conn != NULL)
        store_conn_close(t->conn);
    free(t);
}

/* Opens the show events backend that catalog.events names. */
static int open_events(struct catalog *cat, const struct config *cfg)
{
    const char *how = config_str(cfg, "catalog.events");
    const char *urls = config_str(cfg, "catalog.notify_urls");
    struct mq_config mc;

    if (how[0] == '\0')
        how = mq_configured(cfg) ? "outbox" : "http-notify";
    if (strcmp(how, "http-notify") == 0)
        return show_events_http_open(urls, &cat->events);
    if (strcmp(how, "outbox") != 0) {
        log_error("config",
                  "bad_value key=catalog.events value=\"%.64s\" "
                  "reason=\"expected outbox or http-notify\"",
                  how);
        return ERR_CONFIG;
    }
    if (urls[0] != '\0')
        log_warn("catalog", "notify_urls_ignored reason=\"catalog.events is "
                            "outbox: subscribers consume the queue\"");
    mq_config_from(&mc, cfg);
    program_make_parent_dir(mc.path);
    return show_events_outbox_open(cat->store, &mc, &cat->events);
}

int catalog_main(int argc, char **argv)
{
    struct config cfg;
    struct catalog cat = {0};
    struct http_server_config hc;
    struct http_server *server;
    int rc, exit_code = 1;

    rc = program_start(&cfg, catalog_keys,
                       sizeof(catalog_keys) / sizeof(catalog_keys[0]), argc,
                       argv, "catalog", NULL);
    if (rc != ERR_OK)
        return rc == PROGRAM_HELPED ? 2 : 1;

    struct store_config sc;
    store_config_from(&sc, &cfg);
    program_make_parent_dir(sc.path);
    rc = store_open(&sc, catalog_migrations, catalog_nmigrations, &cat.store);
    if (rc != ERR_OK) {
        log_error("catalog", "store_open_failed path=%s error=%s", sc.path,
                  err_name(rc));
        goto out_config;
    }
    cat.clock = clock_system();
    cat.admin_token = config_str(&cfg, "catalog.admin_token");
    cat.cache_enabled = config_bool(&cfg, "catalog.cache");

    /* Before the events open: demo shows are not announced (demo.c). */
    if (config_bool(&cfg, "catalog.demo") &&
        catalog_demo_load(&cat, config_str(&cfg, "catalog.demo_file")) !=
            ERR_OK)
        goto out_store;
    if (open_events(&cat, &cfg) != ERR_OK)
        goto out_store;

    http_server_config_from(&hc, &cfg, "catalog");
    hc.app = &cat;
    hc.ready = catalog_ready;
    hc.thread_start = catalog_thread_start;
    hc.thread_stop = catalog_thread_stop;
    rc = http_server_create(&hc, catalog_routes,
                            sizeof(catalog_routes) / sizeof(catalog_routes[0]),
                            &server);
    if (rc != ERR_OK)
        goto out_events;
    rc = http_server_run(server);
    http_server_free(server);
    exit_code = rc == ERR_OK ? 0 : 1;

out_events:
    /* After the server: no write is left to publish an event. */
    show_events_close(&cat.events);
out_store:
    store_close(cat.store);
out_config:
    config_free(&cfg);
    return exit_code;
}
