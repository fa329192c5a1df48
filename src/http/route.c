#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "http/internal.h"

int http_route_compile(struct http_route_compiled *out,
                       const struct http_route *in)
{
    size_t mlen = strlen(in->method);

    memset(out, 0, sizeof(*out));
    if (mlen == 0 || mlen >= sizeof(out->method) || in->pattern[0] != '/') {
        log_error("http", "bad_route method=%s pattern=%s", in->method,
                  in->pattern);
        return ERR_INVALID;
    }
    memcpy(out->method, in->method, mlen + 1);
    out->fn = in->fn;
    out->storage = strdup(in->pattern + 1);
    out->pattern = strdup(in->pattern);
    if (out->storage == NULL || out->pattern == NULL) {
        http_route_free(out);
        return ERR_NOMEM;
    }

    /* "/v1/shows/{id}" -> "v1", "shows", {id}; "/" has no segment. */
    char *p = out->storage;
    while (*p != '\0') {
        if (out->nsegs == HTTP_SEGS_MAX)
            goto out_bad;
        char *slash = strchr(p, '/');
        if (slash != NULL)
            *slash = '\0';
        size_t len = strlen(p);
        if (len == 0)
            goto out_bad;
        if (p[0] == '{') {
            if (len < 3 || p[len - 1] != '}')
                goto out_bad;
            p[len - 1] = '\0';
            out->param_names[out->nsegs] = p + 1;
            out->segs[out->nsegs] = NULL;
        } else {
            out->segs[out->nsegs] = p;
            out->seg_lens[out->nsegs] = len;
        }
        out->nsegs++;
        if (slash == NULL)
            break;
        p = slash + 1;
    }
    return ERR_OK;

out_bad:
    log_error("http", "bad_route method=%s pattern=%s", in->method,
              in->pattern);
    http_route_free(out);
    return ERR_INVALID;
}

void http_route_free(struct http_route_compiled *r)
{
    free(r->storage);
    free(r->pattern);
    r->storage = NULL;
    r->pattern = NULL;
}

/* "/v1/shows/7" and "/v1/shows/7/" -> "v1", "shows", "7"; "/" has none. */
void http_path_split(struct http_path *out, const char *path, size_t len)
{
    const char *p = path, *end = path + len;

    out->n = 0;
    out->usable = true;
    if (p < end && *p == '/')
        p++;
    /* A trailing slash names the same resource: "/v1/cities/". */
    if (end > p && end[-1] == '/')
        end--;
    while (p < end) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *seg_end = slash != NULL ? slash : end;

        if (out->n == HTTP_SEGS_MAX || seg_end == p) {
            out->usable = false;
            return;
        }
        out->seg[out->n] = p;
        out->len[out->n] = (size_t)(seg_end - p);
        out->n++;
        p = slash != NULL ? slash + 1 : end;
    }
}

bool http_route_match_path(const struct http_route_compiled *r,
                           const struct http_path *path, h2o_mem_pool_t *pool,
                           const char **params)
{
    if (!path->usable || path->n != r->nsegs)
        return false;
    for (size_t i = 0; i < path->n; i++) {
        if (r->segs[i] == NULL)
            continue;
        if (r->seg_lens[i] != path->len[i] ||
            memcmp(r->segs[i], path->seg[i], path->len[i]) != 0)
            return false;
    }
    for (size_t i = 0; pool != NULL && i < path->n; i++) {
        if (r->segs[i] != NULL)
            continue;
        char *copy = h2o_mem_alloc_pool(pool, path->len[i] + 1);
        memcpy(copy, path->seg[i], path->len[i]);
        copy[path->len[i]] = '\0';
        params[i] = copy;
    }
    return true;
}

bool http_route_match(const struct http_route_compiled *r, h2o_mem_pool_t *pool,
                      const char *path, size_t len, const char **params)
{
    struct http_path split;

    http_path_split(&split, path, len);
    return http_route_match_path(r, &split, pool, params);
}
