/*
 * admin.c - the gateway's own endpoints under /admin/, and the registry
 * file: the two ways pools change while the gateway runs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "base/log.h"
#include "gateway/internal.h"

void gw_admin_list(struct http_req *req, void *app)
{
    struct gateway *gw = app;
    int64_t now = gw_now_ms();
    json_t *pools;

    if (!http_req_admin_ok(req, gw->admin_token))
        return;
    pools = json_array();
    for (size_t k = 0; k < gw->npools; k++)
        json_array_append_new(pools, gw_pool_json(&gw->pools[k], now));
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200, json_pack("{s:o}", "pools", pools));
}

static void invalid(struct http_req *req, const char *field, const char *code,
                    const char *detail)
{
    json_t *errors = json_pack("[{s:s, s:s, s:s}]", "field", field, "code",
                               code, "detail", detail);

    http_respond_problem_ext(req, 422, "validation-failed", "Validation failed",
                             "the body does not describe a pool",
                             json_pack("{s:o}", "errors", errors));
}

void gw_admin_put(struct http_req *req, void *app)
{
    struct gateway *gw = app;
    const char *name = http_req_param(req, "name");
    struct gw_pool *p;
    struct gw_addrs *addrs;
    const char *key;
    json_t *body, *v;
    char why[GW_ERR_MAX];
    int rc;

    if (!http_req_admin_ok(req, gw->admin_token))
        return;
    p = gw_pool_find(gw, name);
    if (p == NULL) {
        http_respond_problem(req, 404, "not-found", "Not found",
                             "there is no pool \"%.40s\"", name);
        return;
    }
    body = http_req_json(req);
    if (body == NULL)
        return;
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "instances") != 0) {
            invalid(req, key, "unknown-field",
                    "a pool takes only \"instances\"");
            return;
        }
    }
    v = json_object_get(body, "instances");
    if (v == NULL) {
        invalid(req, "instances", "required",
                "a list of \"host:port\" strings");
        return;
    }
    addrs = malloc(sizeof(*addrs));
    if (addrs == NULL) {
        http_respond_unavailable(req, 1, "the gateway is out of memory");
        return;
    }
    if (gw_addrs_from_json(v, "instances", addrs, why, sizeof(why)) != ERR_OK) {
        invalid(req, "instances", "wrong-type", why);
        goto out_addrs;
    }
    rc = gw_pool_set(p, addrs, false);
    if (rc != ERR_OK) {
        http_respond_unavailable(req, 1, "the pool could not be changed");
        goto out_addrs;
    }
    log_info("gateway", "pool_set pool=%s instances=%zu source=admin", p->name,
             addrs->n);
    http_respond_json(req, 200, gw_pool_json(p, gw_now_ms()));

out_addrs:
    free(addrs);
}

/* --- registry file -------------------------------------------------------- */

static void registry_apply(void *arg, const char *name,
                           const struct gw_addrs *addrs)
{
    struct gateway *gw = arg;
    struct gw_pool *p = gw_pool_find(gw, name);

    if (p == NULL) {
        log_info("gateway", "registry_pool_unknown pool=%s", name);
        return;
    }
    if (gw_pool_set(p, addrs, false) != ERR_OK)
        log_warn("gateway", "registry_apply_failed pool=%s", name);
}

void gw_registry_tick(struct gateway *gw, int64_t now_ms)
{
    struct stat st;
    char *text, err[GW_ERR_MAX];
    size_t len;
    int rc;

    if (gw->registry_path[0] == '\0' ||
        now_ms - gw->registry_checked_ms < GW_REGISTRY_CHECK_MS)
        return;
    gw->registry_checked_ms = now_ms;
    if (stat(gw->registry_path, &st) != 0)
        return; /* not written yet, or being replaced: keep what we have */
    if (st.st_mtim.tv_sec == gw->registry_mtime.tv_sec &&
        st.st_mtim.tv_nsec == gw->registry_mtime.tv_nsec &&
        (long long)st.st_size == gw->registry_size)
        return;
    /* Remembered before reading, so a bad file is reported once. */
    gw->registry_mtime = st.st_mtim;
    gw->registry_size = (long long)st.st_size;

    rc = gw_file_read(gw->registry_path, GW_FILE_MAX, &text, &len);
    if (rc != ERR_OK) {
        log_warn("gateway", "registry_unreadable path=\"%s\" error=%s",
                 gw_log_text(gw->registry_path, err, sizeof(err)),
                 err_name(rc));
        return;
    }
    rc = gw_registry_parse(text, len, gw->registry_path, registry_apply, gw,
                           err, sizeof(err));
    free(text);
    if (rc != ERR_OK) {
        char why[GW_ERR_MAX];
        log_warn("gateway", "registry_ignored reason=\"%s\"",
                 gw_log_text(err, why, sizeof(why)));
        return;
    }
    log_info("gateway", "registry_loaded path=\"%s\"",
             gw_log_text(gw->registry_path, err, sizeof(err)));
}

/* --- the response cache -----------------------------------------------------
 */

void gw_admin_cache_stats(struct http_req *req, void *app)
{
    struct gateway *gw = app;
    struct gw_cache_stats st, all = {0};

    if (!http_req_admin_ok(req, gw->admin_token))
        return;
    for (size_t k = 0; gw->cache_on && k < GW_CACHE_SHARDS; k++) {
        pthread_mutex_lock(&gw->shards[k].lock);
        gw_cache_stats(gw->shards[k].cache, &st);
        pthread_mutex_unlock(&gw->shards[k].lock);
        all.entries += st.entries;
        all.bytes += st.bytes;
        all.evictions += st.evictions;
    }
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200,
                      json_pack("{s:b, s:I, s:I, s:I, s:I}", "enabled",
                                gw->cache_on, "entries",
                                (json_int_t)all.entries, "bytes",
                                (json_int_t)all.bytes, "max_bytes",
                                (json_int_t)gw->cache_bytes, "evictions",
                                (json_int_t)all.evictions));
}

/* The prefix must be a path: the keys are paths, and a typo that purged
 * nothing should say so rather than look like success. */
void gw_admin_cache_purge(struct http_req *req, void *app)
{
    struct gateway *gw = app;
    const char *prefix;
    bool bad = false;
    size_t removed;

    if (!http_req_admin_ok(req, gw->admin_token))
        return;
    prefix = http_req_query(req, "prefix", &bad);
    if (bad)
        return;
    if (prefix == NULL || prefix[0] != '/') {
        http_respond_problem(req, 400, "invalid-query", "Invalid query",
                             "prefix is required and starts with '/' "
                             "(\"/\" empties the cache)");
        return;
    }
    removed = gw_cache_purge_all(gw, prefix, strlen(prefix));
    log_info("gateway", "cache_purged prefix=\"%.200s\" removed=%zu", prefix,
             removed);
    http_respond_json(req, 200,
                      json_pack("{s:s, s:I}", "prefix", prefix, "removed",
                                (json_int_t)removed));
}
