/*
 * test_validate.c - the field checks of request bodies: present, missing,
 * wrong type and bounds of each kind of field, unknown fields, paths, and
 * the error list with its cap and its JSON form.
 */
#include "harness.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "domain/validate.h"

/* A body parsed from text written with ' for ", to keep the tests legible. */
static json_t *body(const char *text)
{
    char buf[1024];
    size_t n = strlen(text);
    json_error_t jerr;

    CHECK(n < sizeof(buf));
    for (size_t i = 0; i <= n; i++)
        buf[i] = text[i] == '\'' ? '"' : text[i];
    json_t *v = json_loads(buf, JSON_DECODE_ANY, &jerr);
    CHECK(v != NULL);
    return v;
}

/* The list holds exactly one error, with this field and code. */
#define CHECK_ONE(e, f, c)                                                     \
    do {                                                                       \
        CHECK_INT((e).n, 1);                                                   \
        CHECK_INT((e).dropped, 0);                                             \
        CHECK_STR((e).items[0].field, (f));                                    \
        CHECK_STR((e).items[0].code, (c));                                     \
    } while (0)

static const char *const sentinel = "untouched";

TEST(string_present)
{
    struct verrs e = {0};
    json_t *b = body("{'name': 'Aurora'}");
    const char *out = sentinel;

    CHECK(jv_string(b, "name", "name", true, 1, 64, &out, &e));
    CHECK_STR(out, "Aurora");
    CHECK_INT(e.n, 0);
    CHECK(!verr_any(&e));
    json_decref(b);
}

TEST(string_length_counts_characters_not_bytes)
{
    struct verrs e = {0};
    const char *out = NULL;
    /* "Café" is 4 characters in 5 bytes; "Cafés" 5 in 7. */
    json_t *b = json_pack("{s:s, s:s}", "a", "Caf\xc3\xa9", "b",
                          "Caf\xc3\xa9s");

    CHECK(jv_string(b, "a", "a", true, 1, 4, &out, &e));
    CHECK_STR(out, "Caf\xc3\xa9");
    CHECK_INT(e.n, 0);
    CHECK(!jv_string(b, "b", "b", true, 1, 4, &out, &e));
    CHECK_ONE(e, "b", "too-long");
    json_decref(b);
}

TEST(string_missing_optional)
{
    struct verrs e = {0};
    json_t *b = body("{'other': 'x'}");
    const char *out = sentinel;

    CHECK(!jv_string(b, "name", "name", false, 1, 64, &out, &e));
    CHECK(out == sentinel);
    CHECK_INT(e.n, 0);
    CHECK_INT(e.dropped, 0);
    json_decref(b);
}

TEST(string_missing_required)
{
    struct verrs e = {0};
    json_t *b = body("{}");
    const char *out = sentinel;

    CHECK(!jv_string(b, "name", "screen.name", true, 1, 64, &out, &e));
    CHECK(out == sentinel);
    CHECK_ONE(e, "screen.name", "required");
    CHECK_STR(e.items[0].detail, "screen.name is required");
    CHECK(verr_any(&e));
    json_decref(b);
}

/* jv_string on each non-string type names that type in the detail. */
TEST(string_wrong_type_names_type)
{
    static const struct {
        const char *json;
        const char *detail;
    } cases[] = {
        {"{'v': {}}", "v must be a string, not an object"},
        {"{'v': [1]}", "v must be a string, not an array"},
        {"{'v': 3}", "v must be a string, not an integer"},
        {"{'v': 3.5}", "v must be a string, not a number with a fraction"},
        {"{'v': true}", "v must be a string, not a boolean"},
        {"{'v': false}", "v must be a string, not a boolean"},
        {"{'v': null}", "v must be a string, not null"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct verrs e = {0};
        json_t *b = body(cases[i].json);
        const char *out = sentinel;

        CHECK(!jv_string(b, "v", "v", true, 0, 10, &out, &e));
        CHECK(out == sentinel);
        CHECK_ONE(e, "v", "wrong-type");
        CHECK_STR(e.items[0].detail, cases[i].detail);
        json_decref(b);
    }
}

TEST(string_length_bounds_inclusive)
{
    json_t *b = body("{'a': 'ab', 'b': 'abc', 'c': 'abcd', 'd': 'abcde',"
                     " 'e': 'a', 'z': ''}");
    struct verrs e = {0};
    const char *out = NULL;

    CHECK(jv_string(b, "a", "a", true, 2, 4, &out, &e));
    CHECK_STR(out, "ab");
    CHECK(jv_string(b, "b", "b", true, 2, 4, &out, &e));
    CHECK_STR(out, "abc");
    CHECK(jv_string(b, "c", "c", true, 2, 4, &out, &e));
    CHECK_STR(out, "abcd");
    CHECK(jv_string(b, "z", "z", true, 0, 4, &out, &e));
    CHECK_STR(out, "");
    CHECK_INT(e.n, 0);

    out = sentinel;
    CHECK(!jv_string(b, "d", "d", true, 2, 4, &out, &e));
    CHECK(out == sentinel);
    CHECK_ONE(e, "d", "too-long");
    CHECK_STR(e.items[0].detail, "d must have at most 4 characters");

    e = (struct verrs){0};
    CHECK(!jv_string(b, "e", "e", true, 2, 4, &out, &e));
    CHECK(out == sentinel);
    CHECK_ONE(e, "e", "too-short");
    CHECK_STR(e.items[0].detail, "e must have at least 2 characters");

    e = (struct verrs){0};
    CHECK(!jv_string(b, "z", "z", true, 1, 4, &out, &e));
    CHECK_ONE(e, "z", "too-short");
    json_decref(b);
}

TEST(string_embedded_nul_refused)
{
    struct verrs e = {0};
    json_t *b = json_object();
    const char *out = sentinel;

    CHECK_INT(json_object_set_new(b, "name", json_stringn("ab\0cd", 5)), 0);
    CHECK(!jv_string(b, "name", "name", true, 1, 64, &out, &e));
    CHECK(out == sentinel);
    CHECK_ONE(e, "name", "wrong-type");
    CHECK_STR(e.items[0].detail, "name must not contain NUL");
    json_decref(b);

    /* Parsed from text as well: "\u0000" is legal JSON. */
    e = (struct verrs){0};
    b = json_loads("{\"name\": \"a\\u0000\"}", JSON_ALLOW_NUL, NULL);
    CHECK(b != NULL);
    CHECK(!jv_string(b, "name", "name", true, 1, 64, &out, &e));
    CHECK(out == sentinel);
    CHECK_ONE(e, "name", "wrong-type");
    json_decref(b);
}

TEST(int_present_and_bounds_inclusive)
{
    json_t *b = body("{'lo': -720, 'hi': 840, 'mid': 0,"
                     " 'under': -721, 'over': 841}");
    struct verrs e = {0};
    int64_t out = 7;

    CHECK(jv_int(b, "lo", "lo", true, -720, 840, &out, &e));
    CHECK_INT(out, -720);
    CHECK(jv_int(b, "hi", "hi", true, -720, 840, &out, &e));
    CHECK_INT(out, 840);
    CHECK(jv_int(b, "mid", "mid", true, -720, 840, &out, &e));
    CHECK_INT(out, 0);
    CHECK_INT(e.n, 0);

    out = 7;
    CHECK(!jv_int(b, "under", "under", true, -720, 840, &out, &e));
    CHECK_INT(out, 7);
    CHECK_ONE(e, "under", "out-of-range");
    CHECK_STR(e.items[0].detail, "under must be from -720 to 840");

    e = (struct verrs){0};
    CHECK(!jv_int(b, "over", "over", true, -720, 840, &out, &e));
    CHECK_INT(out, 7);
    CHECK_ONE(e, "over", "out-of-range");
    CHECK_STR(e.items[0].detail, "over must be from -720 to 840");
    json_decref(b);
}

/* "negative" only when the range starts at 0 and the value is below it. */
TEST(int_negative_code)
{
    json_t *b = body("{'n': -1, 'big': 11}");
    struct verrs e = {0};
    int64_t out = 7;

    CHECK(!jv_int(b, "n", "seats", true, 0, 10, &out, &e));
    CHECK_ONE(e, "seats", "negative");
    CHECK_STR(e.items[0].detail, "seats must be from 0 to 10");

    e = (struct verrs){0};
    CHECK(!jv_int(b, "big", "big", true, 0, 10, &out, &e));
    CHECK_ONE(e, "big", "out-of-range");

    e = (struct verrs){0};
    CHECK(!jv_int(b, "n", "id", true, 1, 10, &out, &e));
    CHECK_ONE(e, "id", "out-of-range");
    CHECK_INT(out, 7);
    json_decref(b);
}

TEST(int_extremes)
{
    json_t *b = json_pack("{s:I, s:I}", "min", (json_int_t)INT64_MIN, "max",
                          (json_int_t)INT64_MAX);
    struct verrs e = {0};
    int64_t out = 0;

    CHECK(b != NULL);
    CHECK(jv_int(b, "min", "min", true, INT64_MIN, INT64_MAX, &out, &e));
    CHECK(out == INT64_MIN);
    CHECK(jv_int(b, "max", "max", true, INT64_MIN, INT64_MAX, &out, &e));
    CHECK(out == INT64_MAX);
    CHECK(!jv_int(b, "max", "max", true, 1, INT64_MAX - 1, &out, &e));
    CHECK_ONE(e, "max", "out-of-range");
    json_decref(b);
}

TEST(int_missing_and_wrong_type)
{
    json_t *b = body("{'s': '5', 'r': 5.0, 'f': false}");
    struct verrs e = {0};
    int64_t out = 7;

    CHECK(!jv_int(b, "none", "none", false, 0, 10, &out, &e));
    CHECK_INT(out, 7);
    CHECK_INT(e.n, 0);

    CHECK(!jv_int(b, "none", "none", true, 0, 10, &out, &e));
    CHECK_ONE(e, "none", "required");
    CHECK_STR(e.items[0].detail, "none is required");

    e = (struct verrs){0};
    CHECK(!jv_int(b, "s", "s", true, 0, 10, &out, &e));
    CHECK_ONE(e, "s", "wrong-type");
    CHECK_STR(e.items[0].detail, "s must be an integer, not a string");

    e = (struct verrs){0};
    CHECK(!jv_int(b, "r", "r", true, 0, 10, &out, &e));
    CHECK_ONE(e, "r", "wrong-type");
    CHECK_STR(e.items[0].detail,
              "r must be an integer, not a number with a fraction");

    e = (struct verrs){0};
    CHECK(!jv_int(b, "f", "f", true, 0, 10, &out, &e));
    CHECK_ONE(e, "f", "wrong-type");
    CHECK_STR(e.items[0].detail, "f must be an integer, not a boolean");
    CHECK_INT(out, 7);
    json_decref(b);
}

TEST(array_checks)
{
    json_t *b = body("{'one': [1], 'three': [1, 2, 3], 'none': [],"
                     " 'four': [1, 2, 3, 4], 'obj': {}}");
    struct verrs e = {0};
    json_t *out = NULL;

    CHECK(jv_array(b, "one", "one", true, 1, 3, &out, &e));
    CHECK(out == json_object_get(b, "one"));
    CHECK(jv_array(b, "three", "three", true, 1, 3, &out, &e));
    CHECK(out == json_object_get(b, "three"));
    CHECK(jv_array(b, "none", "none", true, 0, 3, &out, &e));
    CHECK_INT(e.n, 0);

    json_t *keep = json_object_get(b, "one");
    out = keep;
    CHECK(!jv_array(b, "absent", "absent", false, 1, 3, &out, &e));
    CHECK(out == keep);
    CHECK_INT(e.n, 0);

    CHECK(!jv_array(b, "absent", "absent", true, 1, 3, &out, &e));
    CHECK_ONE(e, "absent", "required");

    e = (struct verrs){0};
    CHECK(!jv_array(b, "none", "none", true, 1, 3, &out, &e));
    CHECK_ONE(e, "none", "out-of-range");
    CHECK_STR(e.items[0].detail, "none must have from 1 to 3 entries");

    e = (struct verrs){0};
    CHECK(!jv_array(b, "four", "four", true, 1, 3, &out, &e));
    CHECK_ONE(e, "four", "out-of-range");

    e = (struct verrs){0};
    CHECK(!jv_array(b, "obj", "obj", true, 1, 3, &out, &e));
    CHECK_ONE(e, "obj", "wrong-type");
    CHECK_STR(e.items[0].detail, "obj must be an array, not an object");
    CHECK(out == keep);
    json_decref(b);
}

TEST(object_checks)
{
    json_t *b = body("{'o': {'k': 1}, 'a': [], 'n': null}");
    struct verrs e = {0};
    json_t *out = NULL;

    CHECK(jv_object(b, "o", "o", true, &out, &e));
    CHECK(out == json_object_get(b, "o"));
    CHECK_INT(e.n, 0);

    json_t *keep = out;
    CHECK(!jv_object(b, "absent", "absent", false, &out, &e));
    CHECK(out == keep);
    CHECK_INT(e.n, 0);

    CHECK(!jv_object(b, "absent", "body.absent", true, &out, &e));
    CHECK_ONE(e, "body.absent", "required");

    e = (struct verrs){0};
    CHECK(!jv_object(b, "a", "a", true, &out, &e));
    CHECK_ONE(e, "a", "wrong-type");
    CHECK_STR(e.items[0].detail, "a must be an object, not an array");

    /* A JSON null is present, so it is the wrong type, not missing. */
    e = (struct verrs){0};
    CHECK(!jv_object(b, "n", "n", false, &out, &e));
    CHECK_ONE(e, "n", "wrong-type");
    CHECK_STR(e.items[0].detail, "n must be an object, not null");
    CHECK(out == keep);
    json_decref(b);
}

TEST(bool_checks)
{
    json_t *b = body("{'t': true, 'f': false, 'n': null, 'i': 1, 's': 'true'}");
    struct verrs e = {0};
    bool out = false;

    CHECK(jv_bool(b, "t", "t", true, &out, &e));
    CHECK(out);
    CHECK(jv_bool(b, "f", "f", false, &out, &e));
    CHECK(!out);
    CHECK_INT(e.n, 0);

    /* Missing: optional leaves *out alone; required records it. */
    out = true;
    CHECK(!jv_bool(b, "absent", "absent", false, &out, &e));
    CHECK(out);
    CHECK_INT(e.n, 0);
    CHECK(!jv_bool(b, "absent", "show.absent", true, &out, &e));
    CHECK_ONE(e, "show.absent", "required");

    static const struct {
        const char *key;
        const char *detail;
    } wrong[] = {
        {"n", "n must be a boolean, not null"},
        {"i", "i must be a boolean, not an integer"},
        {"s", "s must be a boolean, not a string"},
    };
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        e = (struct verrs){0};
        out = true;
        CHECK(!jv_bool(b, wrong[i].key, wrong[i].key, false, &out, &e));
        CHECK(out);
        CHECK_ONE(e, wrong[i].key, "wrong-type");
        CHECK_STR(e.items[0].detail, wrong[i].detail);
    }
    json_decref(b);
}

TEST(no_unknown_lists_each_field)
{
    static const char *const allowed[] = {"name", "slug", NULL};
    json_t *b = body("{'name': 1, 'colour': 2, 'slug': 3, 'size': {}}");
    struct verrs e = {0};

    jv_no_unknown(b, "city", allowed, &e);
    CHECK_INT(e.n, 2);
    CHECK_STR(e.items[0].field, "city.colour");
    CHECK_STR(e.items[0].code, "unknown-field");
    CHECK_STR(e.items[0].detail, "city.colour is not a known field");
    CHECK_STR(e.items[1].field, "city.size");
    CHECK_STR(e.items[1].code, "unknown-field");

    /* At the top of a body the path is the bare key. */
    e = (struct verrs){0};
    jv_no_unknown(b, "", allowed, &e);
    CHECK_INT(e.n, 2);
    CHECK_STR(e.items[0].field, "colour");
    CHECK_STR(e.items[1].field, "size");
    json_decref(b);
}

TEST(no_unknown_accepts_known_and_empty)
{
    static const char *const allowed[] = {"name", "slug", NULL};
    static const char *const nothing[] = {NULL};
    json_t *b = body("{'slug': 1, 'name': 2}");
    json_t *empty = json_object();
    struct verrs e = {0};

    jv_no_unknown(b, "", allowed, &e);
    jv_no_unknown(empty, "", nothing, &e);
    CHECK_INT(e.n, 0);

    jv_no_unknown(b, "x", nothing, &e);
    CHECK_INT(e.n, 2);
    CHECK_STR(e.items[0].field, "x.slug");
    CHECK_STR(e.items[1].field, "x.name");
    json_decref(empty);
    json_decref(b);
}

TEST(paths)
{
    char p[VERR_FIELD_MAX], q[VERR_FIELD_MAX], r[VERR_FIELD_MAX];

    jv_path_key(p, "", "name");
    CHECK_STR(p, "name");
    jv_path_key(p, NULL, "name");
    CHECK_STR(p, "name");
    jv_path_key(p, "layout", "rows");
    CHECK_STR(p, "layout.rows");
    jv_path_index(q, p, 2);
    CHECK_STR(q, "layout.rows[2]");
    jv_path_key(r, q, "seats");
    jv_path_index(p, r, 0);
    CHECK_STR(p, "layout.rows[2].seats[0]");
    jv_path_index(p, "", 7);
    CHECK_STR(p, "[7]");
}

TEST(paths_truncated_to_field_max)
{
    char prefix[200], p[VERR_FIELD_MAX];

    memset(prefix, 'x', sizeof(prefix) - 1);
    prefix[sizeof(prefix) - 1] = '\0';
    jv_path_key(p, prefix, "key");
    CHECK_INT(strlen(p), VERR_FIELD_MAX - 1);
    CHECK(p[0] == 'x' && p[VERR_FIELD_MAX - 2] == 'x');
    jv_path_index(p, prefix, 12);
    CHECK_INT(strlen(p), VERR_FIELD_MAX - 1);
}

TEST(verr_add_formats_and_keeps_order)
{
    struct verrs e = {0};

    verr_add(&e, "a", "required", "%s is required", "a");
    verr_add(&e, "rows[3]", "empty-row", "row %s has %d seats", "C", 0);
    CHECK_INT(e.n, 2);
    CHECK_STR(e.items[0].field, "a");
    CHECK_STR(e.items[0].code, "required");
    CHECK_STR(e.items[0].detail, "a is required");
    CHECK_STR(e.items[1].field, "rows[3]");
    CHECK_STR(e.items[1].code, "empty-row");
    CHECK_STR(e.items[1].detail, "row C has 0 seats");
}

TEST(verr_add_truncates_long_text)
{
    struct verrs e = {0};
    char lng[400];

    memset(lng, 'y', sizeof(lng) - 1);
    lng[sizeof(lng) - 1] = '\0';
    verr_add(&e, lng, lng, "%s", lng);
    CHECK_INT(e.n, 1);
    CHECK_INT(strlen(e.items[0].field), VERR_FIELD_MAX - 1);
    CHECK_INT(strlen(e.items[0].code), VERR_CODE_MAX - 1);
    CHECK_INT(strlen(e.items[0].detail), VERR_DETAIL_MAX - 1);
}

TEST(verr_add_caps_and_counts_dropped)
{
    struct verrs e = {0};

    for (int i = 0; i < VERR_MAX + 5; i++) {
        char field[24];

        snprintf(field, sizeof(field), "f%d", i);
        verr_add(&e, field, "required", "number %d", i);
    }
    CHECK_INT(e.n, VERR_MAX);
    CHECK_INT(e.dropped, 5);
    CHECK_STR(e.items[0].field, "f0");
    CHECK_STR(e.items[VERR_MAX - 1].field, "f15");
    CHECK_STR(e.items[VERR_MAX - 1].detail, "number 15");

    json_t *arr = verr_to_json(&e);
    CHECK_INT(json_array_size(arr), VERR_MAX);
    json_decref(arr);
}

TEST(verr_to_json_shape)
{
    struct verrs e = {0};
    json_t *arr = verr_to_json(&e);

    CHECK(json_is_array(arr));
    CHECK_INT(json_array_size(arr), 0);
    json_decref(arr);

    verr_add(&e, "name", "required", "name is required");
    verr_add(&e, "rows[0].seats", "empty-row", "row A has no seat");
    arr = verr_to_json(&e);
    CHECK_INT(json_array_size(arr), 2);

    char *text = json_dumps(arr, JSON_COMPACT);
    CHECK(text != NULL);
    CHECK_STR(text, "[{\"field\":\"name\",\"code\":\"required\","
                    "\"detail\":\"name is required\"},"
                    "{\"field\":\"rows[0].seats\",\"code\":\"empty-row\","
                    "\"detail\":\"row A has no seat\"}]");
    free(text);
    json_decref(arr);
}

/*
 * A client's key of multi-byte characters, cut by the path and detail
 * limits, must still give an entry: jansson refuses broken UTF-8.
 */
TEST(verr_to_json_keeps_cut_utf8)
{
    static const char *const nothing[] = {NULL};
    char key[260];
    size_t n = 0;
    struct verrs e = {0};

    key[n++] = 'a';
    while (n + 2 < sizeof(key)) {
        key[n++] = (char)0xC3;
        key[n++] = (char)0xA9;
    }
    key[n] = '\0';
    json_t *b = json_object();
    CHECK_INT(json_object_set_new(b, key, json_true()), 0);

    jv_no_unknown(b, "body", nothing, &e);
    json_t *arr = verr_to_json(&e);
    CHECK_INT(json_array_size(arr), 1);
    json_t *item = json_array_get(arr, 0);
    CHECK_STR(json_string_value(json_object_get(item, "code")),
              "unknown-field");
    const char *field = json_string_value(json_object_get(item, "field"));
    CHECK(field != NULL);
    CHECK(strncmp(field, "body.a\xC3\xA9", 8) == 0);
    CHECK(json_string_value(json_object_get(item, "detail")) != NULL);
    json_decref(arr);
    json_decref(b);
}

/* Whole characters and plain ASCII pass through verr_add unchanged. */
TEST(verr_add_keeps_valid_utf8)
{
    struct verrs e = {0};

    verr_add(&e, "caf\xC3\xA9", "x", "\xE2\x82\xAC%d \xF0\x9F\x8E\xAC", 5);
    CHECK_STR(e.items[0].field, "caf\xC3\xA9");
    CHECK_STR(e.items[0].detail, "\xE2\x82\xAC"
                                 "5 \xF0\x9F\x8E\xAC");

    /* A cut character becomes '?' per byte; what follows survives. */
    verr_add(&e, "f", "x", "%s|%.2s|ok", "x", "\xE2\x82\xAC");
    CHECK_STR(e.items[1].detail, "x|??|ok");
}

HARNESS_MAIN(T(string_present),
             T(string_length_counts_characters_not_bytes),
             T(string_missing_optional),
             T(string_missing_required), T(string_wrong_type_names_type),
             T(string_length_bounds_inclusive), T(string_embedded_nul_refused),
             T(int_present_and_bounds_inclusive), T(int_negative_code),
             T(int_extremes), T(int_missing_and_wrong_type), T(array_checks),
             T(object_checks), T(bool_checks), T(no_unknown_lists_each_field),
             T(no_unknown_accepts_known_and_empty), T(paths),
             T(paths_truncated_to_field_max),
             T(verr_add_formats_and_keeps_order),
             T(verr_add_truncates_long_text),
             T(verr_add_caps_and_counts_dropped), T(verr_to_json_shape),
             T(verr_to_json_keeps_cut_utf8), T(verr_add_keeps_valid_utf8))
