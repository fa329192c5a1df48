/*
 * static.c - the web pages: files of gateway.static_dir, read on the loop
 * thread (they are small and bounded by GW_STATIC_FILE_MAX), with an ETag
 * so a browser that has a page asks only whether it changed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "gateway/internal.h"

/* Pages change with a deploy; other files rarely, and cache for a while. */
#define GW_CACHE_PAGE  "no-cache"
#define GW_CACHE_ASSET "public, max-age=300"

static const struct {
    const char *ext;
    const char *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".txt", "text/plain; charset=utf-8"},
};

const char *gw_static_type(const char *name)
{
    const char *dot = strrchr(name, '.');

    for (size_t k = 0; dot != NULL && k < sizeof(types) / sizeof(types[0]); k++)
        if (strcmp(dot, types[k].ext) == 0)
            return types[k].type;
    return "application/octet-stream";
}

static void not_found(struct http_req *req)
{
    http_respond_problem(req, 404, "not-found", "Not found",
                         "no route or page for %s", http_req_path(req));
}

/* Whether a path may name a file: no "..", no NUL, no hidden files. */
static bool path_safe(const char *path)
{
    if (strstr(path, "/.") != NULL || strchr(path, '\\') != NULL)
        return false;
    return true;
}

/*
 * Resolves path under dir; the real path (symlinks followed) must stay
 * inside dir.  ERR_OK with out filled, ERR_NOTFOUND or ERR_DENIED.
 */
static int resolve(const char *dir, const char *path, char *out)
{
    char joined[PATH_MAX];
    size_t dlen = strlen(dir);
    int n;

    if (path[strlen(path) - 1] == '/')
        n = snprintf(joined, sizeof(joined), "%s%sindex.html", dir, path);
    else
        n = snprintf(joined, sizeof(joined), "%s%s", dir, path);
    if (n < 0 || (size_t)n >= sizeof(joined))
        return ERR_NOTFOUND;
    if (realpath(joined, out) == NULL)
        return ERR_NOTFOUND;
    if (strncmp(out, dir, dlen) != 0 || out[dlen] != '/')
        return ERR_DENIED;
    return ERR_OK;
}

/* Whether If-None-Match names etag (or is "*"). */
static bool etag_listed(const char *inm, const char *etag)
{
    size_t elen = strlen(etag);

    if (strcmp(inm, "*") == 0)
        return true;
    for (const char *p = strstr(inm, etag); p != NULL;
         p = strstr(p + 1, etag)) {
        char after = p[elen];
        if (after == '\0' || after == ',' || after == ' ')
            return true;
    }
    return false;
}

static void respond_file(struct http_req *req, const char *real,
                         const char *body, size_t len)
{
    const char *type = gw_static_type(real);
    bool page = strncmp(type, "text/html", 9) == 0;
    const char *cc = page ? GW_CACHE_PAGE : GW_CACHE_ASSET;
    const char *inm = http_req_header(req, "if-none-match");
    char etag[HTTP_ETAG_LEN];

    http_etag_of(body, len, etag);
    if (inm != NULL && etag_listed(inm, etag)) {
        struct http_header_kv hs[] = {
            {"ETag", 4, etag, strlen(etag)},
            {"Cache-Control", 13, cc, strlen(cc)},
        };
        http_respond_proxied(req, 304, hs, 2, NULL, 0);
        return;
    }
    http_set_header(req, "ETag", etag);
    http_set_header(req, "Cache-Control", cc);
    http_respond_bytes(req, 200, type, body, len);
}

void gw_static_serve(struct http_req *req, const struct gateway *gw)
{
    const char *path = http_req_path(req);
    char real[PATH_MAX];
    char *body = NULL;
    size_t len = 0;
    int rc;

    if (gw->static_dir[0] == '\0' || !path_safe(path)) {
        not_found(req);
        return;
    }
    rc = resolve(gw->static_dir, path, real);
    if (rc == ERR_DENIED)
        log_warn("gateway", "static_outside_dir path=\"%s\"",
                 gw_log_text(path, real, sizeof(real)));
    if (rc != ERR_OK) {
        not_found(req);
        return;
    }
    rc = gw_file_read(real, GW_STATIC_FILE_MAX, &body, &len);
    if (rc == ERR_TOOBIG)
        log_warn("gateway", "static_too_large path=\"%s\" max=%u",
                 gw_log_text(path, real, sizeof(real)), GW_STATIC_FILE_MAX);
    if (rc != ERR_OK) {
        not_found(req);
        return;
    }
    respond_file(req, real, body, len);
    free(body);
}
