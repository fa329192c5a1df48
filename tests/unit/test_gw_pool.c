/*
 * test_gw_pool.c - pools of instances (src/gateway/pool.c): membership
 * changes that keep state, picks that skip down, ejected and tried
 * instances, the breaker in front of a pool, and hashing that moves only
 * a removed instance's keys.  No request is sent: picks and outcomes are
 * driven by hand.  The server runs only so that released upstreams are
 * closed on its loop thread.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "gateway/internal.h"
#include "harness.h"

static struct gateway *gw;
static struct gw_pool *pool;
static pthread_t loop;

static void *loop_run(void *arg)
{
    http_server_run(arg);
    return NULL;
}

static void setup(bool hash)
{
    struct http_server_config hc = {
        .name = "gw-pool-test",
        .host = "127.0.0.1",
        .port = 0,
        .threads = 1,
        .max_connections = 10,
        .max_body_bytes = 1024,
        .max_header_bytes = 4096,
        .request_timeout_ms = 1000,
        .shutdown_timeout_ms = 1000,
    };
    struct gw_pool_spec spec = {.name = "booking", .hash = hash};

    gw = calloc(1, sizeof(*gw));
    CHECK(gw != NULL);
    gw_health_config_default(&gw->health);
    gw->health.slow_start_ms = 0;
    gw_outlier_config_default(&gw->outlier);
    gw->outlier.consecutive = 3;
    gw_breaker_config_default(&gw->breaker);
    gw->breaker.window = 10;
    gw->breaker.min_calls = 10;
    gw->breaker.open_ms = 1000;
    gw->retry_ratio = 0.2;
    gw->retry_min = 3;
    gw->hash_factor = 1.25;
    gw->max_idle = 4;
    CHECK_INT(http_server_create(&hc, NULL, 0, &gw->server), ERR_OK);
    pthread_create(&loop, NULL, loop_run, gw->server);
    pool = &gw->pools[0];
    CHECK_INT(gw_pool_init(pool, gw, &spec, 5000), ERR_OK);
    gw->npools = 1;
}

static void teardown(void)
{
    gw_pool_free(pool);
    http_server_stop(gw->server);
    pthread_join(loop, NULL);
    http_server_free(gw->server);
    free(gw);
}

static void set(const char *const *addrs, size_t n, bool start_up)
{
    struct gw_addrs a = {.n = n};

    for (size_t k = 0; k < n; k++)
        snprintf(a.addr[k], GW_ADDR_MAX, "%s", addrs[k]);
    CHECK_INT(gw_pool_set(pool, &a, start_up), ERR_OK);
}

/* One pick; the caller ends it with done(). */
static enum gw_pick_result pick(int64_t now, bool has_key, uint64_t key,
                                struct gw_instance *const *tried, size_t ntried,
                                struct gw_instance **out,
                                struct gw_breaker_ticket *t)
{
    int64_t after = 0;

    *out = NULL;
    return gw_pool_pick(pool, now, has_key, key, tried, ntried, out, t, &after);
}

static void done(struct gw_instance *i, const struct gw_breaker_ticket *t,
                 int64_t now, bool failed)
{
    gw_pool_done(pool, i, t, now, failed ? GW_OUT_5XX : GW_OUT_2XX, failed,
                 failed, 1);
}

static const char *picked_addr(int64_t now, bool has_key, uint64_t key)
{
    static char addr[GW_ADDR_MAX];
    struct gw_instance *i;
    struct gw_breaker_ticket t;

    if (pick(now, has_key, key, NULL, 0, &i, &t) != GW_PICK_OK)
        return "";
    snprintf(addr, sizeof(addr), "%s", i->addr);
    done(i, &t, now, false);
    return addr;
}

static const char *const three[] = {"127.0.0.1:9001", "127.0.0.1:9002",
                                    "127.0.0.1:9003"};

TEST(test_members_keep_state_and_new_ones_start_down)
{
    struct gw_instance *i;
    struct gw_breaker_ticket t;

    setup(false);
    set(three, 2, true);
    CHECK_INT(pool->n, 2);
    CHECK(gw_health_up(&pool->inst[0]->health));

    /* 9002 has a call in flight when the list changes to 9002, 9003. */
    struct gw_instance *exclude[] = {pool->inst[0]};
    CHECK_INT(pick(1000, false, 0, exclude, 1, &i, &t), GW_PICK_OK);
    CHECK_STR(i->addr, "127.0.0.1:9002");
    set(three + 1, 2, false);
    CHECK_INT(pool->n, 2);
    CHECK(pool->inst[0] == i);
    CHECK_INT(pool->inst[0]->in_flight, 1);
    CHECK(gw_health_up(&pool->inst[0]->health));
    CHECK(!gw_health_up(&pool->inst[1]->health));

    /* The new instance takes nothing until its checks pass. */
    done(i, &t, 1000, false);
    for (int k = 0; k < 20; k++)
        CHECK_STR(picked_addr(1000, false, 0), "127.0.0.1:9002");
    teardown();
}

TEST(test_removed_instance_lives_until_its_call_ends)
{
    struct gw_instance *i;
    struct gw_breaker_ticket t;

    setup(false);
    set(three, 1, true);
    CHECK_INT(pick(1000, false, 0, NULL, 0, &i, &t), GW_PICK_OK);
    set(three + 1, 1, true);
    CHECK(!i->member);
    /* Still readable: the call holds a reference (ASan would object). */
    CHECK_STR(i->addr, "127.0.0.1:9001");
    done(i, &t, 1000, true);
    CHECK_STR(picked_addr(1000, false, 0), "127.0.0.1:9002");
    teardown();
}

TEST(test_empty_pool_has_no_instance)
{
    struct gw_instance *i;
    struct gw_breaker_ticket t;

    setup(false);
    CHECK_INT(pick(1000, false, 0, NULL, 0, &i, &t), GW_PICK_NONE);
    CHECK(i == NULL);
    teardown();
}

TEST(test_failures_eject_and_open_the_breaker)
{
    struct gw_instance *i, *bad;
    struct gw_breaker_ticket t;
    int64_t after = 0;

    setup(false);
    set(three, 2, true);
    bad = pool->inst[1];
    /* Three 5xx in a row eject 9002; the others keep passing. */
    for (int k = 0; k < 3; k++) {
        struct gw_instance *not_bad[] = {pool->inst[0]};
        CHECK_INT(pick(1000, false, 0, not_bad, 1, &i, &t), GW_PICK_OK);
        CHECK(i == bad);
        done(i, &t, 1000, true);
    }
    CHECK(gw_outlier_ejected(&bad->outlier, 1000));
    CHECK_INT(bad->ejections, 1);
    for (int k = 0; k < 10; k++)
        CHECK_STR(picked_addr(1000, false, 0), "127.0.0.1:9001");

    /* The window of ten holds ten passes now.  Five failures of 9001 make
     * it half failures, and it opens. */
    for (int k = 0; k < 5; k++) {
        CHECK_INT(pick(1001, false, 0, NULL, 0, &i, &t), GW_PICK_OK);
        done(i, &t, 1001, true);
    }
    CHECK_INT(gw_pool_pick(pool, 1002, false, 0, NULL, 0, &i, &t, &after),
              GW_PICK_OPEN);
    CHECK(after >= 1 && after <= 1000);
    CHECK_INT(pool->breaker.opened_total, 1);
    teardown();
}

TEST(test_hash_moves_only_removed_keys)
{
    char before[64][GW_ADDR_MAX];
    struct gw_instance *i;
    struct gw_breaker_ticket t;

    setup(true);
    set(three, 3, true);
    for (int k = 0; k < 64; k++) {
        char key[16];
        snprintf(key, sizeof(key), "%d", k + 1);
        snprintf(before[k], GW_ADDR_MAX, "%s",
                 picked_addr(1000, true, gw_key_hash(key, strlen(key))));
        CHECK(before[k][0] != '\0');
    }
    set(three, 2, false);
    for (int k = 0; k < 64; k++) {
        char key[16];
        snprintf(key, sizeof(key), "%d", k + 1);
        const char *now =
            picked_addr(1000, true, gw_key_hash(key, strlen(key)));
        if (strcmp(before[k], three[2]) != 0)
            CHECK_STR(now, before[k]);
        else
            CHECK(strcmp(now, three[2]) != 0);
    }

    /* A retry of a hashed key goes to another instance. */
    uint64_t h = gw_key_hash("7", 1);
    CHECK_INT(pick(1000, true, h, NULL, 0, &i, &t), GW_PICK_OK);
    struct gw_instance *first = i;
    done(i, &t, 1000, false);
    CHECK_INT(pick(1000, true, h, &first, 1, &i, &t), GW_PICK_OK);
    CHECK(i != first);
    done(i, &t, 1000, false);
    teardown();
}

TEST(test_pool_json)
{
    setup(true);
    set(three, 2, true);
    json_t *j = gw_pool_json(pool, 1000);
    CHECK_STR(json_string_value(json_object_get(j, "name")), "booking");
    CHECK_STR(json_string_value(json_object_get(j, "balance")), "hash");
    json_t *b = json_object_get(j, "breaker");
    CHECK_STR(json_string_value(json_object_get(b, "state")), "closed");
    json_t *list = json_object_get(j, "instances");
    CHECK_INT(json_array_size(list), 2);
    CHECK_STR(
        json_string_value(json_object_get(json_array_get(list, 1), "address")),
        "127.0.0.1:9002");
    CHECK_STR(
        json_string_value(json_object_get(json_array_get(list, 0), "health")),
        "up");
    json_decref(j);
    teardown();
}

HARNESS_MAIN(T(test_members_keep_state_and_new_ones_start_down),
             T(test_removed_instance_lives_until_its_call_ends),
             T(test_empty_pool_has_no_instance),
             T(test_failures_eject_and_open_the_breaker),
             T(test_hash_moves_only_removed_keys), T(test_pool_json))
