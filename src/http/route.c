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

bool http_route_match(const struct http_route_compiled *r, h2o_mem_pool_t *pool,
                      const char *path, size_t len, const char **params)
{
    const char *p = path, *end = path + len;
    size_t seg = 0;

    if (p < end && *p == '/')
        p++;
    /* A trailing slash names the same resource: "/v1/cities/". */
    if (end > p && end[-1] == '/')
        end--;
    while (p < end) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *seg_end = slash != NULL ? slash : end;
        size_t seg_len = (size_t)(seg_end - p);

        if (seg == r->nsegs || seg_len == 0)
            return false;
        if (r->segs[seg] == NULL) {
            if (pool != NULL) {
                char *copy = h2o_mem_alloc_pool(pool, seg_len + 1);
                memcpy(copy, p, seg_len);
                copy[seg_len] = '\0';
                params[seg] = copy;
            }
        } else if (strlen(r->segs[seg]) != seg_len ||
                   memcmp(r->segs[seg], p, seg_len) != 0) {
            return false;
        }
        seg++;
        p = slash != NULL ? slash + 1 : end;
    }
    return seg == r->nsegs;
}
