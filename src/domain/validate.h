/*
 * validate.h - checking JSON request bodies field by field.
 *
 * Each check records a precise error (the field's path, a stable code and a
 * sentence) instead of stopping, so a client learns everything wrong with
 * a body in one answer.  Codes are stable API: clients switch on them.
 */
#ifndef MARQUEE_DOMAIN_VALIDATE_H
#define MARQUEE_DOMAIN_VALIDATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VERR_MAX        16 /* errors kept per body; more are counted */
#define VERR_FIELD_MAX  96
#define VERR_CODE_MAX   40
#define VERR_DETAIL_MAX 200

struct verr {
    char field[VERR_FIELD_MAX];
    char code[VERR_CODE_MAX];
    char detail[VERR_DETAIL_MAX];
};

struct verrs {
    struct verr items[VERR_MAX];
    size_t n;
    size_t dropped;
};

void verr_add(struct verrs *e, const char *field, const char *code,
              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static inline bool verr_any(const struct verrs *e)
{
    return e->n > 0;
}

/* The errors as a JSON array of {field, code, detail}; new reference. */
json_t *verr_to_json(const struct verrs *e);

/*
 * Field checks on obj[key].  `field` is the path shown to clients
 * ("layout.rows[2].label").  A missing optional field leaves *out alone and
 * returns false without an error; a missing required one records
 * "required".  Wrong JSON types record "wrong-type"; limits "out-of-range"
 * or "too-long" / "too-short".
 */
bool jv_string(json_t *obj, const char *key, const char *field, bool required,
               size_t min_len, size_t max_len, const char **out,
               struct verrs *e);
bool jv_int(json_t *obj, const char *key, const char *field, bool required,
            int64_t min, int64_t max, int64_t *out, struct verrs *e);
bool jv_array(json_t *obj, const char *key, const char *field, bool required,
              size_t min_len, size_t max_len, json_t **out, struct verrs *e);
bool jv_object(json_t *obj, const char *key, const char *field, bool required,
               json_t **out, struct verrs *e);
bool jv_bool(json_t *obj, const char *key, const char *field, bool required,
             bool *out, struct verrs *e);

/* Records "unknown-field" for every key of obj not in the NULL-ended list. */
void jv_no_unknown(json_t *obj, const char *prefix, const char *const *allowed,
                   struct verrs *e);

/* A path "prefix.key" or "prefix[index]" in out (VERR_FIELD_MAX bytes). */
void jv_path_key(char *out, const char *prefix, const char *key);
void jv_path_index(char *out, const char *prefix, size_t index);

#endif
