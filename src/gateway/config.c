/*
 * config.c - the routes file, the registry file and route matching.
 *
 * Both files are checked strictly: an unknown key, a wrong type or a pool
 * that does not exist is an error that names the place in the file, so a
 * typo stops the gateway at start instead of routing traffic nowhere.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "gateway/internal.h"

static int fail(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return ERR_CONFIG;
}

int gw_file_read(const char *path, size_t max, char **text, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = ERR_IO;
    char *buf = NULL;
    size_t got = 0;

    if (fd < 0)
        return ERR_IO;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        goto out_close;
    if ((size_t)st.st_size > max) {
        rc = ERR_TOOBIG;
        goto out_close;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        rc = ERR_NOMEM;
        goto out_close;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    *text = buf;
    *len = got;
    buf = NULL;
    rc = ERR_OK;

out_close:
    free(buf);
    close(fd);
    return rc;
}

const char *gw_log_text(const char *text, char *out, size_t cap)
{
    size_t n = 0;

    for (; *text != '\0' && n + 1 < cap; text++) {
        unsigned char c = (unsigned char)*text;
        out[n++] = c == '"' || c == '\\'  ? '\''
                   : c < ' ' || c == 0x7f ? '?'
                                          : (char)c;
    }
    out[n] = '\0';
    return out;
}

/* --- addresses ----------------------------------------------------------- */

int gw_addr_parse(const char *addr, char *host, size_t cap, int *port)
{
    const char *colon, *h = addr;
    size_t hlen;
    long p = 0;
    int family = AF_INET;
    unsigned char bin[sizeof(struct in6_addr)];

    if (strlen(addr) + 1 > GW_ADDR_MAX)
        return ERR_INVALID;
    /* IPv6 literals are written in brackets: "[::1]:8082". */
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':')
            return ERR_INVALID;
        h = addr + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        family = AF_INET6;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL)
            return ERR_INVALID;
        hlen = (size_t)(colon - addr);
    }
    if (hlen == 0 || hlen + 1 > cap)
        return ERR_INVALID;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    /* The upstream client takes IP literals only: no name lookups on the
     * request path. */
    if (inet_pton(family, host, bin) != 1)
        return ERR_INVALID;

    /* The port: 1 to 5 digits, no sign, no leading zero. */
    const char *d = colon + 1;
    size_t dlen = strlen(d);
    if (dlen == 0 || dlen > 5 || d[0] == '0')
        return ERR_INVALID;
    for (size_t i = 0; i < dlen; i++) {
        if (!isdigit((unsigned char)d[i]))
            return ERR_INVALID;
        p = p * 10 + (d[i] - '0');
    }
    if (p < 1 || p > 65535)
        return ERR_INVALID;
    *port = (int)p;
    return ERR_OK;
}

int gw_addrs_from_json(const json_t *arr, const char *where,
                       struct gw_addrs *out, char *err, size_t cap)
{
    size_t i;
    const json_t *v;

    out->n = 0;
    if (!json_is_array(arr)) {
        fail(err, cap, "%s: expected an array of \"host:port\" strings", where);
        return ERR_INVALID;
    }
    if (json_array_size(arr) > GW_INSTANCES_MAX) {
        fail(err, cap, "%s: at most %d instances", where, GW_INSTANCES_MAX);
        return ERR_INVALID;
    }
    json_array_foreach(arr, i, v)
    {
        char host[GW_ADDR_MAX];
        int port;
        const char *s = json_string_value(v);

        if (s == NULL || gw_addr_parse(s, host, sizeof(host), &port) != 0) {
            fail(err, cap, "%s[%zu]: expected \"ip:port\", port 1-65535", where,
                 i);
            return ERR_INVALID;
        }
        for (size_t j = 0; j < out->n; j++) {
            if (strcmp(out->addr[j], s) == 0) {
                fail(err, cap, "%s[%zu]: \"%s\" is listed twice", where, i, s);
                return ERR_INVALID;
            }
        }
        snprintf(out->addr[out->n], GW_ADDR_MAX, "%s", s);
        out->n++;
    }
    return ERR_OK;
}

/* --- routes file ---------------------------------------------------------- */

static bool name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n >= GW_POOL_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!islower((unsigned char)c) && !isdigit((unsigned char)c) &&
            c != '-' && c != '_')
            return false;
    }
    return true;
}

/* Refuses keys of obj that are not in allowed (NULL-terminated). */
static int only_keys(const json_t *obj, const char *const *allowed,
                     const char *file, const char *where, char *err, size_t cap)
{
    const char *key;
    const json_t *v;

    json_object_foreach((json_t *)obj, key, v)
    {
        bool known = false;
        for (size_t i = 0; allowed[i] != NULL && !known; i++)
            known = strcmp(key, allowed[i]) == 0;
        if (!known)
            return fail(err, cap, "%s: %s: unknown key \"%s\"", file, where,
                        key);
    }
    return ERR_OK;
}

static int parse_pool(const char *file, const char *name, const json_t *v,
                      struct gw_pool_spec *out, char *err, size_t cap)
{
    static const char *const keys[] = {"instances", "balance", NULL};
    char where[96], why[GW_ERR_MAX];
    const json_t *bal;
    int rc;

    snprintf(where, sizeof(where), "pools.%s", name);
    if (!name_ok(name))
        return fail(err, cap,
                    "%s: %s: a pool name is 1 to %d of a-z, 0-9, '-', '_'",
                    file, where, GW_POOL_NAME_MAX - 1);
    if (!json_is_object(v))
        return fail(err, cap, "%s: %s: expected an object", file, where);
    rc = only_keys(v, keys, file, where, err, cap);
    if (rc != ERR_OK)
        return rc;
    snprintf(out->name, sizeof(out->name), "%s", name);

    bal = json_object_get(v, "balance");
    if (bal != NULL) {
        const char *b = json_string_value(bal);
        if (b == NULL || (strcmp(b, "p2c") != 0 && strcmp(b, "hash") != 0))
            return fail(err, cap, "%s: %s.balance: expected p2c or hash", file,
                        where);
        out->hash = strcmp(b, "hash") == 0;
    }

    snprintf(where, sizeof(where), "pools.%s.instances", name);
    const json_t *inst = json_object_get(v, "instances");
    if (inst == NULL)
        return fail(err, cap, "%s: %s: required", file, where);
    if (gw_addrs_from_json(inst, where, &out->addrs, why, sizeof(why)) != 0)
        return fail(err, cap, "%s: %s", file, why);
    return ERR_OK;
}

/*
 * Splits a pattern into segments; {name} segments are parameters.  Returns
 * ERR_OK or ERR_CONFIG with a reason in why.
 */
static int compile_pattern(struct gw_route *r, char *why, size_t cap)
{
    const char *t = r->text;
    size_t pos = 1;

    r->nsegs = 0;
    while (t[pos] != '\0') {
        const char *slash = strchr(t + pos, '/');
        size_t len =
            slash != NULL ? (size_t)(slash - (t + pos)) : strlen(t + pos);

        if (len == 0)
            return fail(why, cap, "empty path segment");
        if (r->nsegs == GW_ROUTE_SEGS_MAX)
            return fail(why, cap, "more than %d segments", GW_ROUTE_SEGS_MAX);
        r->seg_off[r->nsegs] = (uint16_t)pos;
        r->seg_len[r->nsegs] = (uint16_t)len;
        r->seg_param[r->nsegs] = t[pos] == '{';
        if (t[pos] == '{' && (len < 3 || t[pos + len - 1] != '}'))
            return fail(why, cap, "a parameter is written {name}");
        if (t[pos] != '{' && (memchr(t + pos, '{', len) != NULL ||
                              memchr(t + pos, '}', len) != NULL))
            return fail(why, cap, "a parameter is a whole segment");
        r->nsegs++;
        pos += len;
        if (t[pos] == '/')
            pos++;
    }
    return ERR_OK;
}

/* Whether text starts a path the gateway keeps for itself. */
static bool reserved_path(const char *text)
{
    return strncmp(text, "/internal/", 10) == 0 ||
           strcmp(text, "/internal") == 0 || strncmp(text, "/admin/", 7) == 0 ||
           strcmp(text, "/admin") == 0;
}

static int parse_timeout(const char *file, const char *where,
                         const json_t *route, const char *key, int dflt,
                         int *out, char *err, size_t cap)
{
    const json_t *v = json_object_get(route, key);

    *out = dflt;
    if (v == NULL)
        return ERR_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 1 ||
        json_integer_value(v) > GW_TIMEOUT_MAX_MS)
        return fail(err, cap, "%s: %s.%s: expected an integer from 1 to %d",
                    file, where, key, GW_TIMEOUT_MAX_MS);
    *out = (int)json_integer_value(v);
    return ERR_OK;
}

static int parse_path(const char *file, const char *where, const json_t *obj,
                      struct gw_route *r, char *err, size_t cap)
{
    const json_t *pat = json_object_get(obj, "pattern");
    const json_t *pre = json_object_get(obj, "prefix");
    const json_t *v = pat != NULL ? pat : pre;
    const char *key = pat != NULL ? "pattern" : "prefix";
    const char *s = json_string_value(v);
    char why[128];

    if ((pat == NULL) == (pre == NULL))
        return fail(err, cap, "%s: %s: give one of pattern and prefix", file,
                    where);
    if (s == NULL || s[0] != '/' || strlen(s) >= GW_ROUTE_TEXT_MAX)
        return fail(err, cap, "%s: %s.%s: expected a path, /..., < %d bytes",
                    file, where, key, GW_ROUTE_TEXT_MAX);
    for (const char *c = s; *c != '\0'; c++) {
        if ((unsigned char)*c <= ' ' || *c == '?' || *c == '#' || *c == 0x7f)
            return fail(err, cap, "%s: %s.%s: %s", file, where, key,
                        "no space, control character, '?' or '#' in a path");
    }
    if (strstr(s, "/..") != NULL || strstr(s, "//") != NULL)
        return fail(err, cap, "%s: %s.%s: no \"..\" or empty segment", file,
                    where, key);
    if (reserved_path(s))
        return fail(err, cap, "%s: %s.%s: %s", file, where, key,
                    "/internal/ and /admin/ paths may not be routed");
    snprintf(r->text, sizeof(r->text), "%s", s);
    r->prefix = pre != NULL;
    if (r->prefix) {
        if (strchr(s, '{') != NULL || strchr(s, '}') != NULL)
            return fail(err, cap, "%s: %s.prefix: a prefix has no {param}",
                        file, where);
        return ERR_OK;
    }
    if (compile_pattern(r, why, sizeof(why)) != ERR_OK)
        return fail(err, cap, "%s: %s.pattern: %s", file, where, why);
    return ERR_OK;
}

/* hash_param: a {parameter} of the pattern, on a pool balanced by hash. */
static int parse_hash_param(const char *file, const char *where,
                            const json_t *obj, const struct gw_spec *spec,
                            struct gw_route *r, char *err, size_t cap)
{
    const json_t *hp = json_object_get(obj, "hash_param");
    const char *name = json_string_value(hp);
    size_t nlen = name != NULL ? strlen(name) : 0;

    if (hp == NULL)
        return ERR_OK;
    if (name == NULL || r->prefix)
        return fail(err, cap, "%s: %s.hash_param: %s", file, where,
                    "expected the name of a {parameter} of the pattern");
    for (size_t i = 0; i < r->nsegs && r->hash_seg < 0; i++)
        if (r->seg_param[i] && r->seg_len[i] == nlen + 2 &&
            memcmp(r->text + r->seg_off[i] + 1, name, nlen) == 0)
            r->hash_seg = (int)i;
    if (r->hash_seg < 0)
        return fail(err, cap, "%s: %s.hash_param: the pattern has no {%s}",
                    file, where, name);
    if (!spec->pools[r->pool].hash)
        return fail(err, cap,
                    "%s: %s.hash_param: pool \"%s\" does not balance by hash",
                    file, where, spec->pools[r->pool].name);
    return ERR_OK;
}

static int parse_timeouts(const char *file, const char *where,
                          const json_t *obj, struct gw_route *r, char *err,
                          size_t cap)
{
    int rc;

    rc = parse_timeout(file, where, obj, "connect_timeout_ms",
                       GW_CONNECT_TIMEOUT_MS, &r->connect_timeout_ms, err, cap);
    if (rc == ERR_OK)
        rc = parse_timeout(file, where, obj, "first_byte_timeout_ms",
                           GW_FIRST_BYTE_TIMEOUT_MS, &r->first_byte_timeout_ms,
                           err, cap);
    if (rc == ERR_OK)
        rc = parse_timeout(file, where, obj, "total_timeout_ms",
                           GW_TOTAL_TIMEOUT_MS, &r->total_timeout_ms, err, cap);
    if (rc != ERR_OK)
        return rc;
    /* A default never passes a total the file set lower. */
    if (json_object_get(obj, "connect_timeout_ms") == NULL &&
        r->connect_timeout_ms > r->total_timeout_ms)
        r->connect_timeout_ms = r->total_timeout_ms;
    if (json_object_get(obj, "first_byte_timeout_ms") == NULL &&
        r->first_byte_timeout_ms > r->total_timeout_ms)
        r->first_byte_timeout_ms = r->total_timeout_ms;
    if (r->connect_timeout_ms > r->total_timeout_ms ||
        r->first_byte_timeout_ms > r->total_timeout_ms)
        return fail(err, cap, "%s: %s: %s", file, where,
                    "no timeout may pass total_timeout_ms");
    return ERR_OK;
}

/* --- edge policies of a route ----------------------------------------------
 */

/* An integer member of obj in [lo, hi], or dflt when absent. */
static int int_member(const char *file, const char *where, const json_t *obj,
                      const char *key, int64_t lo, int64_t hi, int64_t dflt,
                      int64_t *out, char *err, size_t cap)
{
    const json_t *v = json_object_get(obj, key);

    *out = dflt;
    if (v == NULL)
        return ERR_OK;
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi)
        return fail(err, cap,
                    "%s: %s.%s: expected an integer from %lld to %lld", file,
                    where, key, (long long)lo, (long long)hi);
    *out = json_integer_value(v);
    return ERR_OK;
}

static int parse_limit_fields(const char *file, const char *where,
                              const json_t *v, struct gw_limit_spec *out,
                              char *err, size_t cap)
{
    static const char *const keys[] = {"policy", "key",     "rate", "per",
                                       "burst",  "dry_run", NULL};
    const char *name = json_string_value(json_object_get(v, "policy"));
    const char *key = json_string_value(json_object_get(v, "key"));
    const char *per = json_string_value(json_object_get(v, "per"));
    const json_t *dry = json_object_get(v, "dry_run");
    int rc;

    rc = only_keys(v, keys, file, where, err, cap);
    if (rc != ERR_OK)
        return rc;
    if (name == NULL || !name_ok(name))
        return fail(err, cap,
                    "%s: %s.policy: required, 1 to %d of a-z, 0-9, "
                    "'-', '_'",
                    file, where, GW_POOL_NAME_MAX - 1);
    snprintf(out->name, sizeof(out->name), "%s", name);
    if (key == NULL ||
        (strcmp(key, "customer") != 0 && strcmp(key, "api_key") != 0 &&
         strcmp(key, "address") != 0))
        return fail(err, cap,
                    "%s: %s.key: expected customer, api_key or "
                    "address",
                    file, where);
    out->key = strcmp(key, "customer") == 0  ? GW_LIMIT_BY_CUSTOMER
               : strcmp(key, "api_key") == 0 ? GW_LIMIT_BY_API_KEY
                                             : GW_LIMIT_BY_ADDRESS;
    if (per == NULL ||
        (strcmp(per, "second") != 0 && strcmp(per, "minute") != 0))
        return fail(err, cap, "%s: %s.per: expected second or minute", file,
                    where);
    out->policy.period_ms = strcmp(per, "second") == 0 ? 1000 : 60000;
    rc = int_member(file, where, v, "rate", 1, GW_LIMIT_RATE_MAX, 0,
                    &out->policy.rate, err, cap);
    if (rc == ERR_OK)
        rc = int_member(file, where, v, "burst", 1, GW_LIMIT_BURST_MAX,
                        out->policy.rate, &out->policy.burst, err, cap);
    if (rc != ERR_OK)
        return rc;
    if (out->policy.rate == 0)
        return fail(err, cap, "%s: %s.rate: required", file, where);
    if (dry != NULL && !json_is_boolean(dry))
        return fail(err, cap, "%s: %s.dry_run: expected true or false", file,
                    where);
    out->dry_run = json_is_true(dry);
    return ERR_OK;
}

/* "rate_limit": a policy, new or the same as an earlier route's. */
static int parse_limit(const char *file, const char *where, const json_t *obj,
                       struct gw_spec *spec, struct gw_route *r, char *err,
                       size_t cap)
{
    const json_t *v = json_object_get(obj, "rate_limit");
    struct gw_limit_spec ls;
    char at[48];
    int rc;

    r->limit = -1;
    if (v == NULL)
        return ERR_OK;
    snprintf(at, sizeof(at), "%s.rate_limit", where);
    if (!json_is_object(v))
        return fail(err, cap, "%s: %s: expected an object", file, at);
    memset(&ls, 0, sizeof(ls));
    rc = parse_limit_fields(file, at, v, &ls, err, cap);
    if (rc != ERR_OK)
        return rc;
    for (size_t k = 0; k < spec->nlimits; k++) {
        const struct gw_limit_spec *o = &spec->limits[k];
        if (strcmp(o->name, ls.name) != 0)
            continue;
        if (memcmp(&o->policy, &ls.policy, sizeof(ls.policy)) != 0 ||
            o->key != ls.key || o->dry_run != ls.dry_run)
            return fail(err, cap,
                        "%s: %s: policy \"%s\" is defined "
                        "differently by an earlier route",
                        file, at, ls.name);
        r->limit = (int)k;
        return ERR_OK;
    }
    if (spec->nlimits == GW_LIMITS_MAX)
        return fail(err, cap, "%s: %s: at most %d policies", file, at,
                    GW_LIMITS_MAX);
    spec->limits[spec->nlimits] = ls;
    r->limit = (int)spec->nlimits++;
    return ERR_OK;
}

/* "cache": {"ttl_ms", "max_ttl_ms", "stale_while_revalidate_ms",
 * "stale_if_error_ms"}; the stale windows are -1 (the answer's) unless
 * given. */
static int parse_cache(const char *file, const char *where, const json_t *obj,
                       struct gw_route *r, char *err, size_t cap)
{
    static const char *const keys[] = {"ttl_ms", "max_ttl_ms",
                                       "stale_while_revalidate_ms",
                                       "stale_if_error_ms", NULL};
    const json_t *v = json_object_get(obj, "cache");
    struct gw_cache_defaults *d = &r->cache_defaults;
    char at[48];
    int rc;

    if (v == NULL)
        return ERR_OK;
    snprintf(at, sizeof(at), "%s.cache", where);
    if (!json_is_object(v))
        return fail(err, cap, "%s: %s: expected an object", file, at);
    rc = only_keys(v, keys, file, at, err, cap);
    if (rc == ERR_OK)
        rc = int_member(file, at, v, "ttl_ms", 0, GW_CACHE_TIME_MAX_MS, 0,
                        &d->ttl_ms, err, cap);
    if (rc == ERR_OK)
        rc = int_member(file, at, v, "max_ttl_ms", 0, GW_CACHE_TIME_MAX_MS, 0,
                        &d->max_ttl_ms, err, cap);
    if (rc == ERR_OK)
        rc = int_member(file, at, v, "stale_while_revalidate_ms", 0,
                        GW_CACHE_TIME_MAX_MS, -1, &d->swr_ms, err, cap);
    if (rc == ERR_OK)
        rc = int_member(file, at, v, "stale_if_error_ms", 0,
                        GW_CACHE_TIME_MAX_MS, -1, &d->sie_ms, err, cap);
    r->cache = rc == ERR_OK;
    return rc;
}

/* Whether tpl's {parameters} are all parameters of pattern route r. */
static bool template_ok(const struct gw_route *r, const char *tpl)
{
    for (const char *p = strchr(tpl, '{'); p != NULL; p = strchr(p, '{')) {
        const char *close = strchr(p, '}');
        bool found = false;

        if (close == NULL)
            return false;
        for (size_t i = 0; i < r->nsegs && !found; i++)
            found =
                r->seg_param[i] && r->seg_len[i] == (size_t)(close - p + 1) &&
                memcmp(r->text + r->seg_off[i], p, (size_t)(close - p + 1)) ==
                    0;
        if (!found)
            return false;
        p = close + 1;
    }
    return true;
}

/* "purge": paths whose cached answers a write through this route ends. */
static int parse_purge(const char *file, const char *where, const json_t *obj,
                       struct gw_route *r, char *err, size_t cap)
{
    const json_t *v = json_object_get(obj, "purge"), *t;
    size_t i;

    if (v == NULL)
        return ERR_OK;
    if (!json_is_array(v) || json_array_size(v) > GW_PURGES_MAX)
        return fail(err, cap, "%s: %s.purge: expected at most %d paths", file,
                    where, GW_PURGES_MAX);
    json_array_foreach(v, i, t)
    {
        const char *s = json_string_value(t);
        if (s == NULL || s[0] != '/' || strlen(s) >= GW_ROUTE_TEXT_MAX ||
            (strchr(s, '{') != NULL && (r->prefix || !template_ok(r, s))))
            return fail(err, cap,
                        "%s: %s.purge[%zu]: expected a path whose "
                        "{parameters} are the pattern's",
                        file, where, i);
        snprintf(r->purge[r->npurges++], GW_ROUTE_TEXT_MAX, "%s", s);
    }
    return ERR_OK;
}

static int parse_edge(const char *file, const char *where, const json_t *obj,
                      struct gw_spec *spec, struct gw_route *r, char *err,
                      size_t cap)
{
    const json_t *cls = json_object_get(obj, "class");
    int rc;

    if (cls != NULL) {
        const char *c = json_string_value(cls);
        if (c == NULL ||
            (strcmp(c, "critical") != 0 && strcmp(c, "normal") != 0))
            return fail(err, cap, "%s: %s.class: expected critical or normal",
                        file, where);
        r->critical = strcmp(c, "critical") == 0;
    }
    rc = int_member(file, where, obj, "max_in_flight", 1, GW_SHED_BOUND_MAX, 0,
                    &r->max_in_flight, err, cap);
    if (rc == ERR_OK)
        rc = parse_limit(file, where, obj, spec, r, err, cap);
    if (rc == ERR_OK)
        rc = parse_cache(file, where, obj, r, err, cap);
    if (rc == ERR_OK)
        rc = parse_purge(file, where, obj, r, err, cap);
    return rc;
}

static int parse_route(const char *file, size_t index, const json_t *obj,
                       struct gw_spec *spec, struct gw_route *r, char *err,
                       size_t cap)
{
    static const char *const keys[] = {"pattern",
                                       "prefix",
                                       "pool",
                                       "hash_param",
                                       "connect_timeout_ms",
                                       "first_byte_timeout_ms",
                                       "total_timeout_ms",
                                       "rate_limit",
                                       "cache",
                                       "class",
                                       "max_in_flight",
                                       "purge",
                                       NULL};
    char where[32];
    int rc;

    snprintf(where, sizeof(where), "routes[%zu]", index);
    memset(r, 0, sizeof(*r));
    r->hash_seg = -1;
    if (!json_is_object(obj))
        return fail(err, cap, "%s: %s: expected an object", file, where);
    rc = only_keys(obj, keys, file, where, err, cap);
    if (rc == ERR_OK)
        rc = parse_path(file, where, obj, r, err, cap);
    if (rc != ERR_OK)
        return rc;

    const char *pool = json_string_value(json_object_get(obj, "pool"));
    if (pool == NULL)
        return fail(err, cap, "%s: %s.pool: required, a pool name", file,
                    where);
    for (r->pool = 0; r->pool < spec->npools; r->pool++)
        if (strcmp(spec->pools[r->pool].name, pool) == 0)
            break;
    if (r->pool == spec->npools)
        return fail(err, cap, "%s: %s.pool: unknown pool '%s'", file, where,
                    pool);

    rc = parse_hash_param(file, where, obj, spec, r, err, cap);
    if (rc == ERR_OK)
        rc = parse_timeouts(file, where, obj, r, err, cap);
    if (rc == ERR_OK)
        rc = parse_edge(file, where, obj, spec, r, err, cap);
    return rc;
}

static int parse_spec(const json_t *root, const char *file,
                      struct gw_spec *spec, char *err, size_t cap)
{
    static const char *const keys[] = {"pools", "routes", NULL};
    const json_t *pools, *routes, *v;
    const char *name;
    size_t i;
    int rc;

    if (!json_is_object(root))
        return fail(err, cap, "%s: expected a JSON object", file);
    rc = only_keys(root, keys, file, "(top)", err, cap);
    if (rc != ERR_OK)
        return rc;

    pools = json_object_get(root, "pools");
    if (!json_is_object(pools) || json_object_size(pools) == 0)
        return fail(err, cap, "%s: pools: required, at least one pool", file);
    if (json_object_size(pools) > GW_POOLS_MAX)
        return fail(err, cap, "%s: pools: at most %d pools", file,
                    GW_POOLS_MAX);
    json_object_foreach((json_t *)pools, name, v)
    {
        rc = parse_pool(file, name, v, &spec->pools[spec->npools], err, cap);
        if (rc != ERR_OK)
            return rc;
        spec->npools++;
    }

    routes = json_object_get(root, "routes");
    if (!json_is_array(routes) || json_array_size(routes) == 0)
        return fail(err, cap, "%s: routes: required, at least one route", file);
    if (json_array_size(routes) > GW_ROUTES_MAX)
        return fail(err, cap, "%s: routes: at most %d routes", file,
                    GW_ROUTES_MAX);
    json_array_foreach(routes, i, v)
    {
        rc = parse_route(file, i, v, spec, &spec->routes[i], err, cap);
        if (rc != ERR_OK)
            return rc;
        spec->nroutes++;
    }
    return ERR_OK;
}

int gw_spec_parse(const char *text, size_t len, const char *name,
                  struct gw_spec *spec, char *err, size_t cap)
{
    json_error_t jerr;
    json_t *root;
    int rc;

    memset(spec, 0, sizeof(*spec));
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return fail(err, cap, "%s: line %d column %d: %s", name, jerr.line,
                    jerr.column, jerr.text);
    rc = parse_spec(root, name, spec, err, cap);
    json_decref(root);
    return rc;
}

int gw_spec_load(const char *path, struct gw_spec *spec, char *err, size_t cap)
{
    char *text;
    size_t len;
    int rc = gw_file_read(path, GW_FILE_MAX, &text, &len);

    if (rc != ERR_OK) {
        snprintf(err, cap, "%s: cannot read (%s)", path,
                 rc == ERR_TOOBIG ? "larger than 1 MiB" : strerror(errno));
        return rc == ERR_NOMEM ? ERR_NOMEM : ERR_IO;
    }
    rc = gw_spec_parse(text, len, path, spec, err, cap);
    free(text);
    return rc;
}

/* --- matching ------------------------------------------------------------- */

bool gw_route_match(const struct gw_route *r, const char *path,
                    const char **key, size_t *key_len)
{
    const char *p = path, *end = path + strlen(path);
    size_t seg = 0;

    if (r->prefix)
        return strncmp(path, r->text, strlen(r->text)) == 0;
    if (p < end && *p == '/')
        p++;
    /* A trailing slash names the same resource, as in the services. */
    if (end > p && end[-1] == '/')
        end--;
    while (p < end) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *seg_end = slash != NULL ? slash : end;
        size_t len = (size_t)(seg_end - p);

        if (seg == r->nsegs || len == 0)
            return false;
        if (r->seg_param[seg]) {
            if ((int)seg == r->hash_seg) {
                *key = p;
                *key_len = len;
            }
        } else if (len != r->seg_len[seg] ||
                   memcmp(r->text + r->seg_off[seg], p, len) != 0) {
            return false;
        }
        seg++;
        p = slash != NULL ? slash + 1 : end;
    }
    return seg == r->nsegs;
}

const struct gw_route *gw_route_find(const struct gw_spec *spec,
                                     const char *path, const char **key,
                                     size_t *key_len)
{
    *key = NULL;
    *key_len = 0;
    for (size_t i = 0; i < spec->nroutes; i++) {
        if (gw_route_match(&spec->routes[i], path, key, key_len))
            return &spec->routes[i];
        *key = NULL;
        *key_len = 0;
    }
    return NULL;
}

bool gw_route_param(const struct gw_route *r, const char *path,
                    const char *name, size_t name_len, const char **val,
                    size_t *len)
{
    const char *p = path, *end = path + strlen(path);

    if (r->prefix)
        return false;
    if (p < end && *p == '/')
        p++;
    for (size_t seg = 0; seg < r->nsegs && p <= end; seg++) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *seg_end = slash != NULL ? slash : end;

        if (r->seg_param[seg] && r->seg_len[seg] == name_len &&
            memcmp(r->text + r->seg_off[seg], name, name_len) == 0) {
            *val = p;
            *len = (size_t)(seg_end - p);
            return true;
        }
        if (slash == NULL)
            break;
        p = slash + 1;
    }
    return false;
}

bool gw_route_expand(const struct gw_route *r, const char *path,
                     const char *tpl, char *out, size_t cap)
{
    size_t n = 0;

    while (*tpl != '\0') {
        const char *v = tpl;
        size_t len = 1;

        if (*tpl == '{') {
            const char *close = strchr(tpl, '}');
            if (close == NULL ||
                !gw_route_param(r, path, tpl, (size_t)(close - tpl + 1), &v,
                                &len))
                return false;
            tpl = close + 1;
        } else {
            tpl++;
        }
        if (n + len >= cap)
            return false;
        memcpy(out + n, v, len);
        n += len;
    }
    out[n] = '\0';
    return true;
}

uint64_t gw_key_hash(const char *key, size_t len)
{
    size_t digits = 0;

    /* A hold id is "<show id>-<hex>": its show's digits pick the owner. */
    while (digits < len && isdigit((unsigned char)key[digits]))
        digits++;
    return gw_hash(key, digits > 0 ? digits : len);
}

/* --- registry file -------------------------------------------------------- */

int gw_registry_parse(const char *text, size_t len, const char *name,
                      void (*apply)(void *arg, const char *pool,
                                    const struct gw_addrs *addrs),
                      void *arg, char *err, size_t cap)
{
    static const char *const keys[] = {"pools", NULL};
    struct gw_addrs *lists = NULL;
    const char *pool;
    const json_t *pools, *v;
    json_error_t jerr;
    char where[64], why[GW_ERR_MAX];
    size_t n = 0;
    int rc = ERR_CONFIG;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);

    if (root == NULL)
        return fail(err, cap, "%s: line %d column %d: %s", name, jerr.line,
                    jerr.column, jerr.text);
    if (!json_is_object(root)) {
        fail(err, cap, "%s: expected a JSON object", name);
        goto out_root;
    }
    if (only_keys(root, keys, name, "(top)", err, cap) != ERR_OK)
        goto out_root;
    pools = json_object_get(root, "pools");
    if (!json_is_object(pools) || json_object_size(pools) > GW_POOLS_MAX) {
        fail(err, cap, "%s: pools: required, an object of at most %d pools",
             name, GW_POOLS_MAX);
        goto out_root;
    }

    /* Everything is checked before anything is applied. */
    lists = calloc(GW_POOLS_MAX, sizeof(*lists));
    if (lists == NULL) {
        rc = ERR_NOMEM;
        goto out_root;
    }
    json_object_foreach((json_t *)pools, pool, v)
    {
        if (!name_ok(pool)) {
            fail(err, cap, "%s: pools: bad pool name \"%.40s\"", name, pool);
            goto out_lists;
        }
        snprintf(where, sizeof(where), "pools.%s", pool);
        if (gw_addrs_from_json(v, where, &lists[n], why, sizeof(why)) != 0) {
            fail(err, cap, "%s: %s", name, why);
            goto out_lists;
        }
        n++;
    }
    n = 0;
    json_object_foreach((json_t *)pools, pool, v) apply(arg, pool, &lists[n++]);
    rc = ERR_OK;

out_lists:
    free(lists);
out_root:
    json_decref(root);
    return rc;
}
