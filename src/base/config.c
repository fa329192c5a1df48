#include "base/config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"

/* Longest line read from a configuration file. */
#define CONFIG_LINE_MAX (CONFIG_NAME_MAX + CONFIG_VALUE_MAX + 16)

static const struct config_key *find_key(const struct config *cfg,
                                         const char *name, size_t *index)
{
    for (size_t i = 0; i < cfg->nkeys; i++) {
        if (strcmp(cfg->keys[i].name, name) == 0) {
            *index = i;
            return &cfg->keys[i];
        }
    }
    return NULL;
}

static int fail(struct config *cfg, const char *key, const char *value,
                const char *source, const char *reason)
{
    if (value != NULL)
        snprintf(cfg->err, sizeof(cfg->err),
                 "config: bad value key=%s value=\"%.200s\" source=%s "
                 "reason=\"%s\"",
                 key, value, source, reason);
    else
        snprintf(cfg->err, sizeof(cfg->err), "config: %s key=%s source=%s",
                 reason, key, source);
    return ERR_CONFIG;
}

static int parse_int(const char *s, int64_t *out)
{
    char *end;

    /* strtoll would skip leading blanks; a value is exactly a number. */
    if (isspace((unsigned char)s[0]))
        return ERR_INVALID;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return ERR_INVALID;
    *out = v;
    return ERR_OK;
}

static int parse_bool(const char *s, int64_t *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};

    for (size_t i = 0; i < 4; i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = 1;
            return ERR_OK;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = 0;
            return ERR_OK;
        }
    }
    return ERR_INVALID;
}

int config_set(struct config *cfg, const char *key, const char *value,
               const char *source)
{
    size_t i;
    const struct config_key *k = find_key(cfg, key, &i);
    int64_t num = 0;
    char reason[128];

    if (k == NULL)
        return fail(cfg, key, NULL, source, "unknown key");
    if (strlen(value) > CONFIG_VALUE_MAX)
        return fail(cfg, key, value, source, "value too long");

    switch (k->type) {
    case CONFIG_INT:
        if (parse_int(value, &num) != ERR_OK || num < k->min || num > k->max) {
            snprintf(reason, sizeof(reason),
                     "expected an integer from %lld to %lld", (long long)k->min,
                     (long long)k->max);
            return fail(cfg, key, value, source, reason);
        }
        break;
    case CONFIG_BOOL:
        if (parse_bool(value, &num) != ERR_OK)
            return fail(cfg, key, value, source, "expected true or false");
        break;
    case CONFIG_STRING: break;
    }

    char *copy = strdup(value);
    if (copy == NULL)
        return ERR_NOMEM;
    free(cfg->values[i].text);
    cfg->values[i].text = copy;
    cfg->values[i].num = num;
    snprintf(cfg->values[i].source, sizeof(cfg->values[i].source), "%s",
             source);
    return ERR_OK;
}

int config_init(struct config *cfg, const struct config_key *keys, size_t nkeys)
{
    assert(nkeys <= CONFIG_KEYS_MAX);
    memset(cfg, 0, sizeof(*cfg));
    cfg->keys = keys;
    cfg->nkeys = nkeys;
    for (size_t i = 0; i < nkeys; i++) {
        assert(strlen(keys[i].name) <= CONFIG_NAME_MAX);
        int rc =
            config_set(cfg, keys[i].name, keys[i].default_value, "default");
        if (rc != ERR_OK)
            return rc;
    }
    return ERR_OK;
}

void config_free(struct config *cfg)
{
    for (size_t i = 0; i < cfg->nkeys; i++) {
        free(cfg->values[i].text);
        cfg->values[i].text = NULL;
    }
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

int config_load_file(struct config *cfg, const char *path)
{
    char line[CONFIG_LINE_MAX];
    int lineno = 0, rc = ERR_OK;
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        snprintf(cfg->err, sizeof(cfg->err),
                 "config: cannot open file path=%s errno=%d (%s)", path, errno,
                 strerror(errno));
        return ERR_CONFIG;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            snprintf(cfg->err, sizeof(cfg->err),
                     "config: line too long path=%s line=%d", path, lineno);
            rc = ERR_CONFIG;
            break;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            snprintf(cfg->err, sizeof(cfg->err),
                     "config: expected key = value path=%s line=%d", path,
                     lineno);
            rc = ERR_CONFIG;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
            value[vlen - 1] = '\0';
            value++;
        }
        char source[96];
        snprintf(source, sizeof(source), "%s:%d", path, lineno);
        rc = config_set(cfg, key, value, source);
        if (rc != ERR_OK)
            break;
    }
    fclose(f);
    return rc;
}

static void env_name(const char *key, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "MARQUEE_");

    for (const char *p = key; *p != '\0' && n + 1 < cap; p++)
        out[n++] =
            *p == '.' || *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

int config_load_env(struct config *cfg)
{
    char name[CONFIG_NAME_MAX + 16];

    for (size_t i = 0; i < cfg->nkeys; i++) {
        env_name(cfg->keys[i].name, name, sizeof(name));
        const char *v = getenv(name);
        if (v == NULL)
            continue;
        int rc = config_set(cfg, cfg->keys[i].name, v, name);
        if (rc != ERR_OK)
            return rc;
    }
    return ERR_OK;
}

/* Finds --config in argv, else MARQUEE_CONFIG; NULL when neither is set. */
static const char *config_path(int argc, char **argv, int first)
{
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            return argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0)
            return argv[i] + 9;
    }
    return getenv("MARQUEE_CONFIG");
}

int config_load(struct config *cfg, int argc, char **argv, int first)
{
    const char *path = config_path(argc, argv, first);
    int rc;

    if (path != NULL && *path != '\0' &&
        (rc = config_load_file(cfg, path)) != ERR_OK)
        return rc;
    if ((rc = config_load_env(cfg)) != ERR_OK)
        return rc;

    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        char key[CONFIG_NAME_MAX + 1];
        const char *value;

        if (strncmp(arg, "--", 2) != 0) {
            snprintf(cfg->err, sizeof(cfg->err),
                     "config: unexpected argument \"%.200s\"", arg);
            return ERR_CONFIG;
        }
        const char *eq = strchr(arg, '=');
        size_t klen = eq != NULL ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (klen > CONFIG_NAME_MAX) {
            snprintf(cfg->err, sizeof(cfg->err),
                     "config: unknown key key=%.80s source=flag", arg + 2);
            return ERR_CONFIG;
        }
        memcpy(key, arg + 2, klen);
        key[klen] = '\0';
        size_t kidx;
        const struct config_key *k = find_key(cfg, key, &kidx);
        if (eq != NULL) {
            value = eq + 1;
        } else if (k != NULL && k->type == CONFIG_BOOL &&
                   (i + 1 == argc || strncmp(argv[i + 1], "--", 2) == 0)) {
            value = "true"; /* a bare --flag switches a boolean on */
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            snprintf(cfg->err, sizeof(cfg->err),
                     "config: missing value key=%s source=flag", key);
            return ERR_CONFIG;
        }
        if (strcmp(key, "config") == 0)
            continue;
        char flag[CONFIG_NAME_MAX + 3];
        snprintf(flag, sizeof(flag), "--%s", key);
        rc = config_set(cfg, key, value, flag);
        if (rc != ERR_OK)
            return rc;
    }
    return ERR_OK;
}

static const struct config_value *
value_of(const struct config *cfg, const char *key, enum config_type type)
{
    size_t i;
    const struct config_key *k = find_key(cfg, key, &i);

    assert(k != NULL && "undeclared configuration key");
    assert(k->type == type && "configuration key read as the wrong type");
    (void)k;
    (void)type;
    return &cfg->values[i];
}

int64_t config_int(const struct config *cfg, const char *key)
{
    return value_of(cfg, key, CONFIG_INT)->num;
}

bool config_bool(const struct config *cfg, const char *key)
{
    return value_of(cfg, key, CONFIG_BOOL)->num != 0;
}

const char *config_str(const struct config *cfg, const char *key)
{
    return value_of(cfg, key, CONFIG_STRING)->text;
}

bool config_given(const struct config *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->nkeys; i++)
        if (strcmp(cfg->keys[i].name, key) == 0)
            return strcmp(cfg->values[i].source, "default") != 0;
    return false;
}

void config_print_help(const struct config_key *keys, size_t nkeys, int fd)
{
    static const char *const type_names[] = {"int", "bool", "string"};

    for (size_t i = 0; i < nkeys; i++)
        dprintf(fd, "  --%-28s %-6s default \"%s\"\n      %s\n", keys[i].name,
                type_names[keys[i].type], keys[i].default_value, keys[i].help);
}
