#include "domain/layout.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"

static bool code_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > LAYOUT_CATEGORY_CODE_MAX || !isalnum((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(islower(c) || isdigit(c) || c == '-' || c == '_'))
            return false;
    }
    return true;
}

static bool label_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 4)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isupper((unsigned char)s[i]) && !isdigit((unsigned char)s[i]))
            return false;
    return true;
}

static int category_index(const struct layout_summary *sum, const char *code)
{
    for (size_t i = 0; i < sum->ncategories; i++)
        if (strcmp(sum->categories[i], code) == 0)
            return (int)i;
    return -1;
}

static json_t *check_categories(json_t *in, const char *field,
                                struct layout_summary *sum, struct verrs *e)
{
    static const char *const known[] = {"code", "name", NULL};
    char cpath[VERR_FIELD_MAX], path[VERR_FIELD_MAX], sub[VERR_FIELD_MAX];
    json_t *cats, *out = json_array();

    jv_path_key(cpath, field, "categories");
    if (!jv_array(in, "categories", cpath, true, 1, LAYOUT_CATEGORIES_MAX,
                  &cats, e))
        return out;
    for (size_t i = 0; i < json_array_size(cats); i++) {
        json_t *c = json_array_get(cats, i);
        const char *code = NULL, *name = NULL;

        jv_path_index(sub, cpath, i);
        if (!json_is_object(c)) {
            verr_add(e, sub, "wrong-type", "%s must be an object", sub);
            continue;
        }
        jv_no_unknown(c, sub, known, e);
        jv_path_key(path, sub, "code");
        bool ok = jv_string(c, "code", path, true, 1, LAYOUT_CATEGORY_CODE_MAX,
                            &code, e);
        if (ok && !code_ok(code)) {
            verr_add(e, path, "invalid-format",
                     "%s must be lower-case "
                     "letters, digits, '-' or '_'",
                     path);
            ok = false;
        }
        if (ok && category_index(sum, code) >= 0) {
            verr_add(e, path, "duplicate-category",
                     "category %s is defined twice", code);
            ok = false;
        }
        jv_path_key(path, sub, "name");
        ok = jv_string(c, "name", path, true, 1, 64, &name, e) && ok;
        if (ok) {
            snprintf(sum->categories[sum->ncategories],
                     sizeof(sum->categories[0]), "%s", code);
            sum->ncategories++;
            json_array_append_new(
                out, json_pack("{s:s, s:s}", "code", code, "name", name));
        }
    }
    return out;
}

/* Checks a list of seat numbers that must be seats of the row. */
static json_t *check_seat_list(json_t *row, const char *key,
                               const char *rowpath, const char *label,
                               const bool *present, struct verrs *e)
{
    bool listed[LAYOUT_SEAT_NUMBER_MAX + 1] = {false};
    char path[VERR_FIELD_MAX], sub[VERR_FIELD_MAX];
    json_t *list, *out = json_array();

    jv_path_key(path, rowpath, key);
    if (!jv_array(row, key, path, false, 0, LAYOUT_ROW_POSITIONS_MAX, &list, e))
        return out;
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *v = json_array_get(list, i);
        jv_path_index(sub, path, i);
        if (!json_is_integer(v)) {
            verr_add(e, sub, "wrong-type", "%s must be a seat number", sub);
            continue;
        }
        json_int_t n = json_integer_value(v);
        if (n < 1 || n > LAYOUT_SEAT_NUMBER_MAX || !present[n]) {
            verr_add(e, sub, "unknown-seat", "row %s has no seat %lld", label,
                     (long long)n);
            continue;
        }
        if (listed[n]) {
            verr_add(e, sub, "duplicate-seat", "seat %s%lld is listed twice",
                     label, (long long)n);
            continue;
        }
        listed[n] = true;
        json_array_append_new(out, json_integer(n));
    }
    return out;
}

/* Checks one row; returns its normalized form and counts its seats. */
static json_t *check_row(json_t *row, const char *rowpath,
                         const struct layout_summary *sum, json_t *labels,
                         size_t *seats, struct verrs *e)
{
    static const char *const known[] = {"label",      "category",  "seats",
                                        "accessible", "companion", NULL};
    bool present[LAYOUT_SEAT_NUMBER_MAX + 1] = {false};
    char path[VERR_FIELD_MAX], sub[VERR_FIELD_MAX];
    const char *label = "?", *cat = NULL;
    json_t *positions, *norm = json_array();
    size_t count = 0;

    jv_no_unknown(row, rowpath, known, e);
    jv_path_key(path, rowpath, "label");
    if (jv_string(row, "label", path, true, 1, 4, &label, e)) {
        if (!label_ok(label)) {
            verr_add(e, path, "invalid-format",
                     "%s must be 1 to 4 upper-case letters or digits", path);
        } else if (json_object_get(labels, label) != NULL) {
            verr_add(e, path, "duplicate-row", "row %s is defined twice",
                     label);
        } else {
            json_object_set_new(labels, label, json_true());
        }
    }
    jv_path_key(path, rowpath, "category");
    if (jv_string(row, "category", path, true, 1, LAYOUT_CATEGORY_CODE_MAX,
                  &cat, e) &&
        category_index(sum, cat) < 0)
        verr_add(e, path, "unknown-category",
                 "row %s uses category %s, which the layout does not define",
                 label, cat);

    jv_path_key(path, rowpath, "seats");
    if (jv_array(row, "seats", path, true, 1, LAYOUT_ROW_POSITIONS_MAX,
                 &positions, e)) {
        for (size_t i = 0; i < json_array_size(positions); i++) {
            json_t *p = json_array_get(positions, i);
            jv_path_index(sub, path, i);
            if (json_is_null(p)) {
                json_array_append_new(norm, json_null());
                continue;
            }
            if (!json_is_integer(p) || json_integer_value(p) < 1 ||
                json_integer_value(p) > LAYOUT_SEAT_NUMBER_MAX) {
                verr_add(e, sub, "wrong-type",
                         "%s must be a seat number "
                         "from 1 to %d, or null for a gap",
                         sub, LAYOUT_SEAT_NUMBER_MAX);
                continue;
            }
            json_int_t n = json_integer_value(p);
            if (present[n]) {
                verr_add(e, sub, "duplicate-seat", "seat %s%lld appears twice",
                         label, (long long)n);
                continue;
            }
            present[n] = true;
            count++;
            json_array_append_new(norm, json_integer(n));
        }
        if (count == 0 && json_array_size(positions) > 0)
            verr_add(e, path, "empty-row", "row %s has no seat", label);
    }

    json_t *acc =
        check_seat_list(row, "accessible", rowpath, label, present, e);
    json_t *comp =
        check_seat_list(row, "companion", rowpath, label, present, e);
    for (size_t i = 0; i < json_array_size(comp); i++)
        for (size_t j = 0; j < json_array_size(acc); j++)
            if (json_integer_value(json_array_get(comp, i)) ==
                json_integer_value(json_array_get(acc, j)))
                verr_add(
                    e, rowpath, "conflicting-seat-flags",
                    "seat %s%lld cannot be both accessible and a "
                    "companion seat",
                    label,
                    (long long)json_integer_value(json_array_get(comp, i)));
    *seats += count;
    return json_pack("{s:s, s:s, s:o, s:o, s:o}", "label", label, "category",
                     cat != NULL ? cat : "", "seats", norm, "accessible", acc,
                     "companion", comp);
}

json_t *layout_check(json_t *in, const char *field, struct layout_summary *sum,
                     struct verrs *e)
{
    static const char *const known[] = {"categories", "rows", NULL};
    char path[VERR_FIELD_MAX], sub[VERR_FIELD_MAX];
    size_t before = e->n + e->dropped;
    json_t *rows, *out_rows = json_array(), *labels = json_object();

    memset(sum, 0, sizeof(*sum));
    if (!json_is_object(in)) {
        verr_add(e, field, "wrong-type", "%s must be an object", field);
        goto out_fail;
    }
    jv_no_unknown(in, field, known, e);
    json_t *cats = check_categories(in, field, sum, e);

    jv_path_key(path, field, "rows");
    if (jv_array(in, "rows", path, true, 1, LAYOUT_ROWS_MAX, &rows, e)) {
        for (size_t i = 0; i < json_array_size(rows); i++) {
            json_t *row = json_array_get(rows, i);
            jv_path_index(sub, path, i);
            if (!json_is_object(row)) {
                verr_add(e, sub, "wrong-type", "%s must be an object", sub);
                continue;
            }
            json_array_append_new(out_rows, check_row(row, sub, sum, labels,
                                                      &sum->seat_count, e));
        }
    }
    if (sum->seat_count > LAYOUT_SEATS_MAX)
        verr_add(e, field, "too-many-seats",
                 "the layout has %zu seats; at most %d are allowed",
                 sum->seat_count, LAYOUT_SEATS_MAX);
    json_decref(labels);
    if (e->n + e->dropped != before) {
        json_decref(cats);
        json_decref(out_rows);
        return NULL;
    }
    return json_pack("{s:o, s:o}", "categories", cats, "rows", out_rows);

out_fail:
    json_decref(labels);
    json_decref(out_rows);
    return NULL;
}

int layout_summarize(json_t *layout, struct layout_summary *sum)
{
    struct verrs e = {0};
    json_t *norm = layout_check(layout, "layout", sum, &e);

    if (norm == NULL)
        return ERR_CORRUPT;
    json_decref(norm);
    return ERR_OK;
}

void layout_check_prices(const struct layout_summary *sum, json_t *prices,
                         const char *field, int64_t max, struct verrs *e)
{
    char path[VERR_FIELD_MAX];
    const char *code;
    json_t *v;

    if (!json_is_object(prices)) {
        verr_add(e, field, "wrong-type", "%s must be an object", field);
        return;
    }
    json_object_foreach(prices, code, v)
    {
        jv_path_key(path, field, code);
        if (category_index(sum, code) < 0) {
            verr_add(e, path, "unknown-category",
                     "the screen's layout has no category %.40s", code);
            continue;
        }
        if (!json_is_integer(v)) {
            verr_add(e, path, "wrong-type",
                     "%s must be an integer amount in minor units", path);
            continue;
        }
        if (json_integer_value(v) < 0) {
            verr_add(e, path, "negative-price", "%s must not be negative",
                     path);
            continue;
        }
        if (json_integer_value(v) > max)
            verr_add(e, path, "out-of-range", "%s must be at most %lld", path,
                     (long long)max);
    }
    for (size_t i = 0; i < sum->ncategories; i++) {
        if (json_object_get(prices, sum->categories[i]) == NULL) {
            jv_path_key(path, field, sum->categories[i]);
            verr_add(e, path, "missing-price",
                     "category %s of the layout has no price",
                     sum->categories[i]);
        }
    }
}
