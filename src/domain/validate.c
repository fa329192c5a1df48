#include "domain/validate.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/*
 * snprintf and precisions such as "%.60s" cut by bytes, so they can split a
 * multi-byte character of a client's key.  jansson refuses such a string,
 * and verr_to_json would lose the error; a cut sequence becomes '?'.
 */
static void utf8_scrub(char *s)
{
    unsigned char *p = (unsigned char *)s;

    while (*p != '\0') {
        size_t len = *p < 0x80             ? 1
                     : (*p & 0xE0) == 0xC0 ? 2
                     : (*p & 0xF0) == 0xE0 ? 3
                     : (*p & 0xF8) == 0xF0 ? 4
                                           : 0;
        size_t i = 1;

        while (i < len && (p[i] & 0xC0) == 0x80)
            i++;
        if (len == 0 || i < len) {
            *p++ = '?';
            continue;
        }
        p += len;
    }
}

void verr_add(struct verrs *e, const char *field, const char *code,
              const char *fmt, ...)
{
    va_list ap;

    if (e->n == VERR_MAX) {
        e->dropped++;
        return;
    }
    struct verr *v = &e->items[e->n++];
    snprintf(v->field, sizeof(v->field), "%s", field);
    snprintf(v->code, sizeof(v->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(v->detail, sizeof(v->detail), fmt, ap);
    va_end(ap);
    utf8_scrub(v->field);
    utf8_scrub(v->detail);
}

json_t *verr_to_json(const struct verrs *e)
{
    json_t *arr = json_array();

    for (size_t i = 0; i < e->n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "field",
                                             e->items[i].field, "code",
                                             e->items[i].code, "detail",
                                             e->items[i].detail));
    return arr;
}

void jv_path_key(char *out, const char *prefix, const char *key)
{
    if (prefix == NULL || prefix[0] == '\0')
        snprintf(out, VERR_FIELD_MAX, "%s", key);
    else
        snprintf(out, VERR_FIELD_MAX, "%s.%s", prefix, key);
}

void jv_path_index(char *out, const char *prefix, size_t index)
{
    snprintf(out, VERR_FIELD_MAX, "%s[%zu]", prefix, index);
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

/* The member, or NULL with "required" recorded when it must be there. */
static json_t *member(json_t *obj, const char *key, const char *field,
                      bool required, struct verrs *e)
{
    json_t *v = json_object_get(obj, key);

    if (v == NULL && required)
        verr_add(e, field, "required", "%s is required", field);
    return v;
}

/* Characters of valid UTF-8 (jansson checks it): bytes that start one. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

bool jv_string(json_t *obj, const char *key, const char *field, bool required,
               size_t min_len, size_t max_len, const char **out,
               struct verrs *e)
{
    json_t *v = member(obj, key, field, required, e);

    if (v == NULL)
        return false;
    if (!json_is_string(v)) {
        verr_add(e, field, "wrong-type", "%s must be a string, not %s", field,
                 type_name(v));
        return false;
    }
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        verr_add(e, field, "wrong-type", "%s must not contain NUL", field);
        return false;
    }
    size_t len = utf8_chars(json_string_value(v));
    if (len < min_len) {
        verr_add(e, field, "too-short", "%s must have at least %zu character%s",
                 field, min_len, min_len == 1 ? "" : "s");
        return false;
    }
    if (len > max_len) {
        verr_add(e, field, "too-long", "%s must have at most %zu character%s",
                 field, max_len, max_len == 1 ? "" : "s");
        return false;
    }
    *out = json_string_value(v);
    return true;
}

bool jv_int(json_t *obj, const char *key, const char *field, bool required,
            int64_t min, int64_t max, int64_t *out, struct verrs *e)
{
    json_t *v = member(obj, key, field, required, e);

    if (v == NULL)
        return false;
    if (!json_is_integer(v)) {
        verr_add(e, field, "wrong-type", "%s must be an integer, not %s", field,
                 type_name(v));
        return false;
    }
    int64_t n = json_integer_value(v);
    if (n < min || n > max) {
        verr_add(e, field, min == 0 && n < 0 ? "negative" : "out-of-range",
                 "%s must be from %lld to %lld", field, (long long)min,
                 (long long)max);
        return false;
    }
    *out = n;
    return true;
}

bool jv_array(json_t *obj, const char *key, const char *field, bool required,
              size_t min_len, size_t max_len, json_t **out, struct verrs *e)
{
    json_t *v = member(obj, key, field, required, e);

    if (v == NULL)
        return false;
    if (!json_is_array(v)) {
        verr_add(e, field, "wrong-type", "%s must be an array, not %s", field,
                 type_name(v));
        return false;
    }
    size_t n = json_array_size(v);
    if (n < min_len || n > max_len) {
        verr_add(e, field, "out-of-range",
                 "%s must have from %zu to %zu entries", field, min_len,
                 max_len);
        return false;
    }
    *out = v;
    return true;
}

bool jv_object(json_t *obj, const char *key, const char *field, bool required,
               json_t **out, struct verrs *e)
{
    json_t *v = member(obj, key, field, required, e);

    if (v == NULL)
        return false;
    if (!json_is_object(v)) {
        verr_add(e, field, "wrong-type", "%s must be an object, not %s", field,
                 type_name(v));
        return false;
    }
    *out = v;
    return true;
}

bool jv_bool(json_t *obj, const char *key, const char *field, bool required,
             bool *out, struct verrs *e)
{
    json_t *v = member(obj, key, field, required, e);

    if (v == NULL)
        return false;
    if (!json_is_boolean(v)) {
        verr_add(e, field, "wrong-type", "%s must be a boolean, not %s", field,
                 type_name(v));
        return false;
    }
    *out = json_is_true(v);
    return true;
}

void jv_no_unknown(json_t *obj, const char *prefix, const char *const *allowed,
                   struct verrs *e)
{
    const char *key;
    json_t *v;
    char path[VERR_FIELD_MAX];

    json_object_foreach(obj, key, v)
    {
        bool known = false;
        for (size_t i = 0; allowed[i] != NULL && !known; i++)
            known = strcmp(key, allowed[i]) == 0;
        if (!known) {
            jv_path_key(path, prefix, key);
            verr_add(e, path, "unknown-field", "%.60s is not a known field",
                     path);
        }
    }
}
