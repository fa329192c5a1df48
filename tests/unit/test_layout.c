/*
 * test_layout.c - seat layouts: a valid one accepted and normalized, each
 * rule refused with its code and path, summaries of stored layouts, and a
 * show's prices checked against a layout.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/err.h"
#include "domain/layout.h"

#define TEXT_MAX 4096

/* JSON parsed from text written with ' for ", to keep the tests legible. */
static json_t *parse(const char *text)
{
    char buf[TEXT_MAX];
    size_t n = strlen(text);
    json_error_t jerr;

    CHECK(n < sizeof(buf));
    for (size_t i = 0; i <= n; i++)
        buf[i] = text[i] == '\'' ? '"' : text[i];
    json_t *v = json_loads(buf, JSON_DECODE_ANY, &jerr);
    CHECK(v != NULL);
    return v;
}

/*
 * A layout with two categories, "std" and "vip", whose rows are given.
 * Tests that break a category break "vip", which no row uses, so that no
 * row reports an unknown category as well.
 */
static json_t *with_rows(const char *rows)
{
    char buf[TEXT_MAX];
    int n = snprintf(buf, sizeof(buf),
                     "{'categories': [{'code': 'std', 'name': 'Standard'},"
                     " {'code': 'vip', 'name': 'VIP'}], 'rows': [%s]}",
                     rows);

    CHECK(n > 0 && (size_t)n < sizeof(buf));
    return parse(buf);
}

/* A layout with one plain row "A" of std seats, and the categories given. */
static json_t *with_categories(const char *cats)
{
    char buf[TEXT_MAX];
    int n = snprintf(buf, sizeof(buf),
                     "{'categories': [{'code': 'std', 'name': 'Standard'}%s],"
                     " 'rows': [{'label': 'A', 'category': 'std',"
                     " 'seats': [1, 2]}]}",
                     cats);

    CHECK(n > 0 && (size_t)n < sizeof(buf));
    return parse(buf);
}

/* The list holds exactly one error, with this field and code. */
#define CHECK_ONE(e, f, c)                                                     \
    do {                                                                       \
        CHECK_INT((e).n, 1);                                                   \
        CHECK_INT((e).dropped, 0);                                             \
        CHECK_STR((e).items[0].field, (f));                                    \
        CHECK_STR((e).items[0].code, (c));                                     \
    } while (0)

#define CHECK_ERR(e, i, f, c)                                                  \
    do {                                                                       \
        CHECK((i) < (e).n);                                                    \
        CHECK_STR((e).items[i].field, (f));                                    \
        CHECK_STR((e).items[i].code, (c));                                     \
    } while (0)

/* layout_check must refuse in (which it frees); the errors are left in e. */
static void refuse(json_t *in, struct verrs *e)
{
    struct layout_summary sum;

    *e = (struct verrs){0};
    json_t *norm = layout_check(in, "layout", &sum, e);
    json_decref(in);
    if (norm != NULL) {
        json_decref(norm);
        CHECK(!"layout_check accepted a bad layout");
    }
}

/* layout_check must accept in (which it frees); returns the normalized form. */
static json_t *accept(json_t *in, struct layout_summary *sum)
{
    struct verrs e = {0};
    json_t *norm = layout_check(in, "layout", sum, &e);

    json_decref(in);
    if (e.n > 0)
        harness_fail(__FILE__, __LINE__, "refused: %s %s: %s", e.items[0].field,
                     e.items[0].code, e.items[0].detail);
    CHECK(norm != NULL);
    return norm;
}

static const char *const realistic =
    "{'categories': ["
    "  {'code': 'recliner', 'name': 'Recliner'},"
    "  {'code': 'premium', 'name': 'Premium'},"
    "  {'code': 'classic', 'name': 'Classic'}],"
    " 'rows': ["
    "  {'label': 'A', 'category': 'classic',"
    "   'seats': [1, 2, 3, 4, null, null, 5, 6, 7, 8],"
    "   'accessible': [1, 8], 'companion': [2, 7]},"
    "  {'label': 'B', 'category': 'classic',"
    "   'seats': [1, 2, 3, 4, null, null, 5, 6, 7, 8]},"
    "  {'label': 'C', 'category': 'premium',"
    "   'seats': [null, 1, 2, 3, null, null, 4, 5, 6, null]},"
    "  {'label': 'D', 'category': 'premium',"
    "   'seats': [12, 11, 10, 9, null, 8, 7, 6, 5]},"
    "  {'label': 'AA', 'category': 'recliner',"
    "   'seats': [1, null, 2, null, 3, null, 4],"
    "   'accessible': [], 'companion': []}]}";

TEST(realistic_layout_accepted)
{
    struct layout_summary sum;
    json_t *norm = accept(parse(realistic), &sum);

    /* 8 + 8 + 6 + 8 + 4 seats; the 12 nulls are gaps. */
    CHECK_INT(sum.seat_count, 34);
    CHECK_INT(sum.ncategories, 3);
    CHECK_STR(sum.categories[0], "recliner");
    CHECK_STR(sum.categories[1], "premium");
    CHECK_STR(sum.categories[2], "classic");

    json_t *rows = json_object_get(norm, "rows");
    CHECK_INT(json_array_size(rows), 5);
    json_t *a = json_array_get(rows, 0);
    CHECK_INT(json_array_size(json_object_get(a, "seats")), 10);
    CHECK(json_is_null(json_array_get(json_object_get(a, "seats"), 4)));
    CHECK_INT(
        json_integer_value(json_array_get(json_object_get(a, "accessible"), 1)),
        8);
    CHECK_INT(
        json_integer_value(json_array_get(json_object_get(a, "companion"), 0)),
        2);
    json_t *d = json_array_get(rows, 3);
    CHECK_INT(
        json_integer_value(json_array_get(json_object_get(d, "seats"), 0)), 12);
    json_decref(norm);
}

TEST(normalized_canonical_form)
{
    struct layout_summary sum;
    json_t *in = parse("{'rows': [{'seats': [2, null, 1], 'companion': [2],"
                       " 'category': 'std', 'label': 'B'}],"
                       " 'categories': [{'name': 'Standard',"
                       " 'code': 'std'}]}");
    json_t *norm = accept(in, &sum);
    char *text = json_dumps(norm, JSON_COMPACT);

    CHECK(text != NULL);
    CHECK_STR(text,
              "{\"categories\":[{\"code\":\"std\",\"name\":\"Standard\"}],"
              "\"rows\":[{\"label\":\"B\",\"category\":\"std\","
              "\"seats\":[2,null,1],\"accessible\":[],"
              "\"companion\":[2]}]}");
    CHECK_INT(sum.seat_count, 2);
    free(text);
    json_decref(norm);
}

/* The normalized copy shares nothing with the input, freed before use. */
TEST(normalized_is_a_copy)
{
    struct layout_summary sum;
    json_t *norm = accept(parse(realistic), &sum);
    struct layout_summary again;

    CHECK_INT(layout_summarize(norm, &again), ERR_OK);
    CHECK_STR(
        json_string_value(json_object_get(
            json_array_get(json_object_get(norm, "categories"), 0), "name")),
        "Recliner");
    json_decref(norm);
}

TEST(field_prefix_used_in_paths)
{
    struct layout_summary sum;
    struct verrs e = {0};
    json_t *in = with_rows("{'label': 'a', 'category': 'std', 'seats': [1]}");

    CHECK(layout_check(in, "screen.layout", &sum, &e) == NULL);
    CHECK_ONE(e, "screen.layout.rows[0].label", "invalid-format");

    /* An empty prefix gives paths from the top of the body. */
    e = (struct verrs){0};
    CHECK(layout_check(in, "", &sum, &e) == NULL);
    CHECK_ONE(e, "rows[0].label", "invalid-format");
    json_decref(in);
}

TEST(not_an_object)
{
    struct verrs e;

    refuse(parse("[1, 2]"), &e);
    CHECK_ONE(e, "layout", "wrong-type");
    CHECK_STR(e.items[0].detail, "layout must be an object");
    refuse(parse("'rows'"), &e);
    CHECK_ONE(e, "layout", "wrong-type");
    refuse(parse("null"), &e);
    CHECK_ONE(e, "layout", "wrong-type");
}

TEST(missing_and_empty_rows)
{
    struct verrs e;

    refuse(parse("{'categories': [{'code': 'std', 'name': 'S'}]}"), &e);
    CHECK_ONE(e, "layout.rows", "required");
    refuse(with_rows(""), &e);
    CHECK_ONE(e, "layout.rows", "out-of-range");
    refuse(parse("{'categories': [{'code': 'std', 'name': 'S'}],"
                 " 'rows': {}}"),
           &e);
    CHECK_ONE(e, "layout.rows", "wrong-type");
    refuse(with_rows("[1]"), &e);
    CHECK_ONE(e, "layout.rows[0]", "wrong-type");
}

/* Without categories, every row's category is unknown as well. */
TEST(missing_and_empty_categories)
{
    static const char *const row =
        "'rows': [{'label': 'A', 'category': 'std', 'seats': [1]}]";
    char buf[256];
    struct verrs e;

    snprintf(buf, sizeof(buf), "{%s}", row);
    refuse(parse(buf), &e);
    CHECK_INT(e.n, 2);
    CHECK_ERR(e, 0, "layout.categories", "required");
    CHECK_ERR(e, 1, "layout.rows[0].category", "unknown-category");

    snprintf(buf, sizeof(buf), "{'categories': [], %s}", row);
    refuse(parse(buf), &e);
    CHECK_INT(e.n, 2);
    CHECK_ERR(e, 0, "layout.categories", "out-of-range");
    CHECK_ERR(e, 1, "layout.rows[0].category", "unknown-category");

    refuse(with_categories(", 7"), &e);
    CHECK_ONE(e, "layout.categories[1]", "wrong-type");
}

/* A layout with ncats categories c0, c1, ... and one row using c0. */
static json_t *many_categories(size_t ncats)
{
    json_t *cats = json_array();

    for (size_t i = 0; i < ncats; i++) {
        char code[24];

        snprintf(code, sizeof(code), "c%zu", i);
        json_array_append_new(
            cats, json_pack("{s:s, s:s}", "code", code, "name", "Category"));
    }
    return json_pack("{s:o, s:[{s:s, s:s, s:[i]}]}", "categories", cats, "rows",
                     "label", "A", "category", "c0", "seats", 1);
}

TEST(category_count_bounds)
{
    struct layout_summary sum;
    struct verrs e;

    json_t *norm = accept(many_categories(LAYOUT_CATEGORIES_MAX), &sum);
    CHECK_INT(sum.ncategories, LAYOUT_CATEGORIES_MAX);
    CHECK_STR(sum.categories[LAYOUT_CATEGORIES_MAX - 1], "c15");
    json_decref(norm);

    refuse(many_categories(LAYOUT_CATEGORIES_MAX + 1), &e);
    CHECK_INT(e.n, 2);
    CHECK_ERR(e, 0, "layout.categories", "out-of-range");
    CHECK_ERR(e, 1, "layout.rows[0].category", "unknown-category");
}

/* A layout with nrows rows R0, R1, ... of width seats each. */
static json_t *many_rows(size_t nrows, size_t width)
{
    json_t *rows = json_array();

    for (size_t i = 0; i < nrows; i++) {
        char label[24];
        json_t *seats = json_array();

        snprintf(label, sizeof(label), "R%zu", i);
        for (size_t s = 1; s <= width; s++)
            json_array_append_new(seats, json_integer((json_int_t)s));
        json_array_append_new(rows,
                              json_pack("{s:s, s:s, s:o}", "label", label,
                                        "category", "std", "seats", seats));
    }
    return json_pack("{s:[{s:s, s:s}], s:o}", "categories", "code", "std",
                     "name", "Standard", "rows", rows);
}

TEST(row_count_bounds)
{
    struct layout_summary sum;
    struct verrs e;

    json_t *norm = accept(many_rows(LAYOUT_ROWS_MAX, 3), &sum);
    CHECK_INT(sum.seat_count, LAYOUT_ROWS_MAX * 3);
    CHECK_INT(json_array_size(json_object_get(norm, "rows")), LAYOUT_ROWS_MAX);
    json_decref(norm);

    refuse(many_rows(LAYOUT_ROWS_MAX + 1, 3), &e);
    CHECK_ONE(e, "layout.rows", "out-of-range");
}

TEST(too_many_seats)
{
    struct layout_summary sum;
    struct verrs e;
    size_t width = LAYOUT_ROW_POSITIONS_MAX;
    size_t full = LAYOUT_SEATS_MAX / width;

    json_t *norm = accept(many_rows(full, width), &sum);
    CHECK_INT(sum.seat_count, LAYOUT_SEATS_MAX);
    json_decref(norm);

    refuse(many_rows(full + 1, width), &e);
    CHECK_ONE(e, "layout", "too-many-seats");
    CHECK_STR(e.items[0].detail,
              "the layout has 10200 seats; at most 10000 are allowed");
}

TEST(category_code_format)
{
    static const char *const bad[] = {
        "Premium", "-vip", "_vip", "vip seat", "vip.1", "v\xC3\xADp", "VIP"};
    static const char *const good[] = {"9", "a-b_c", "gold2", "x-"};
    struct layout_summary sum;
    struct verrs e;
    char cat[128];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(cat, sizeof(cat), ", {'code': '%s', 'name': 'X'}", bad[i]);
        refuse(with_categories(cat), &e);
        CHECK_ONE(e, "layout.categories[1].code", "invalid-format");
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(cat, sizeof(cat), ", {'code': '%s', 'name': 'X'}", good[i]);
        json_t *norm = accept(with_categories(cat), &sum);
        CHECK_STR(sum.categories[1], good[i]);
        json_decref(norm);
    }
}

TEST(category_code_length_and_type)
{
    struct layout_summary sum;
    struct verrs e;
    char code[LAYOUT_CATEGORY_CODE_MAX + 2], cat[128];

    memset(code, 'k', sizeof(code) - 1);
    code[sizeof(code) - 1] = '\0';
    snprintf(cat, sizeof(cat), ", {'code': '%s', 'name': 'X'}", code);
    refuse(with_categories(cat), &e);
    CHECK_ONE(e, "layout.categories[1].code", "too-long");

    code[LAYOUT_CATEGORY_CODE_MAX] = '\0';
    snprintf(cat, sizeof(cat), ", {'code': '%s', 'name': 'X'}", code);
    json_t *norm = accept(with_categories(cat), &sum);
    CHECK_STR(sum.categories[1], code);
    json_decref(norm);

    refuse(with_categories(", {'code': '', 'name': 'X'}"), &e);
    CHECK_ONE(e, "layout.categories[1].code", "too-short");
    refuse(with_categories(", {'code': 5, 'name': 'X'}"), &e);
    CHECK_ONE(e, "layout.categories[1].code", "wrong-type");
    refuse(with_categories(", {'name': 'X'}"), &e);
    CHECK_ONE(e, "layout.categories[1].code", "required");
}

TEST(duplicate_category)
{
    struct verrs e;

    refuse(with_categories(", {'code': 'std', 'name': 'Again'}"), &e);
    CHECK_ONE(e, "layout.categories[1].code", "duplicate-category");
    CHECK_STR(e.items[0].detail, "category std is defined twice");
}

TEST(category_name_bounds)
{
    struct layout_summary sum;
    struct verrs e;
    char name[66], cat[160];

    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    snprintf(cat, sizeof(cat), ", {'code': 'vip', 'name': '%s'}", name);
    refuse(with_categories(cat), &e);
    CHECK_ONE(e, "layout.categories[1].name", "too-long");

    name[64] = '\0';
    snprintf(cat, sizeof(cat), ", {'code': 'vip', 'name': '%s'}", name);
    json_t *norm = accept(with_categories(cat), &sum);
    CHECK_INT(sum.ncategories, 2);
    json_decref(norm);

    refuse(with_categories(", {'code': 'vip', 'name': ''}"), &e);
    CHECK_ONE(e, "layout.categories[1].name", "too-short");
    refuse(with_categories(", {'code': 'vip'}"), &e);
    CHECK_ONE(e, "layout.categories[1].name", "required");
}

TEST(row_label_format)
{
    static const char *const bad[] = {"a", "A-", "A B", "\xC3\x89", "A.1"};
    static const char *const good[] = {"A", "Z9", "1", "AB12"};
    struct layout_summary sum;
    struct verrs e;
    char row[128];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(row, sizeof(row),
                 "{'label': '%s', 'category': 'std', 'seats': [1]}", bad[i]);
        refuse(with_rows(row), &e);
        CHECK_ONE(e, "layout.rows[0].label", "invalid-format");
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(row, sizeof(row),
                 "{'label': '%s', 'category': 'std', 'seats': [1]}", good[i]);
        json_t *norm = accept(with_rows(row), &sum);
        json_t *r = json_array_get(json_object_get(norm, "rows"), 0);
        CHECK_STR(json_string_value(json_object_get(r, "label")), good[i]);
        json_decref(norm);
    }

    refuse(with_rows("{'label': 'ABCDE', 'category': 'std', 'seats': [1]}"),
           &e);
    CHECK_ONE(e, "layout.rows[0].label", "too-long");
    refuse(with_rows("{'label': '', 'category': 'std', 'seats': [1]}"), &e);
    CHECK_ONE(e, "layout.rows[0].label", "too-short");
    refuse(with_rows("{'label': 1, 'category': 'std', 'seats': [1]}"), &e);
    CHECK_ONE(e, "layout.rows[0].label", "wrong-type");
    refuse(with_rows("{'category': 'std', 'seats': [1]}"), &e);
    CHECK_ONE(e, "layout.rows[0].label", "required");
}

TEST(duplicate_row)
{
    struct verrs e;

    refuse(with_rows("{'label': 'A', 'category': 'std', 'seats': [1]},"
                     "{'label': 'B', 'category': 'std', 'seats': [1]},"
                     "{'label': 'A', 'category': 'vip', 'seats': [1]}"),
           &e);
    CHECK_ONE(e, "layout.rows[2].label", "duplicate-row");
    CHECK_STR(e.items[0].detail, "row A is defined twice");
}

TEST(row_category)
{
    struct verrs e;

    refuse(with_rows("{'label': 'A', 'category': 'gold', 'seats': [1]}"), &e);
    CHECK_ONE(e, "layout.rows[0].category", "unknown-category");
    CHECK_STR(e.items[0].detail,
              "row A uses category gold, which the layout does not define");
    refuse(with_rows("{'label': 'A', 'seats': [1]}"), &e);
    CHECK_ONE(e, "layout.rows[0].category", "required");
    refuse(with_rows("{'label': 'A', 'category': ['std'], 'seats': [1]}"), &e);
    CHECK_ONE(e, "layout.rows[0].category", "wrong-type");
}

TEST(duplicate_seat)
{
    struct verrs e;

    refuse(with_rows("{'label': 'A', 'category': 'std',"
                     " 'seats': [1, 2, null, 2]}"),
           &e);
    CHECK_ONE(e, "layout.rows[0].seats[3]", "duplicate-seat");
    CHECK_STR(e.items[0].detail, "seat A2 appears twice");
}

TEST(seat_number_range_and_type)
{
    static const char *const bad[] = {"0",   "-1",   "1000", "'3'",
                                      "2.5", "true", "[4]",  "{}"};
    struct layout_summary sum;
    struct verrs e;
    char row[128];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(row, sizeof(row),
                 "{'label': 'A', 'category': 'std', 'seats': [1, %s]}", bad[i]);
        refuse(with_rows(row), &e);
        CHECK_ONE(e, "layout.rows[0].seats[1]", "wrong-type");
        CHECK_STR(e.items[0].detail, "layout.rows[0].seats[1] must be a seat "
                                     "number from 1 to 999, or null for a gap");
    }

    json_t *norm = accept(with_rows("{'label': 'A', 'category': 'std',"
                                    " 'seats': [1, 999]}"),
                          &sum);
    CHECK_INT(sum.seat_count, 2);
    json_decref(norm);
}

TEST(seats_array_bounds)
{
    struct layout_summary sum;
    struct verrs e;

    refuse(with_rows("{'label': 'A', 'category': 'std', 'seats': []}"), &e);
    CHECK_ONE(e, "layout.rows[0].seats", "out-of-range");
    refuse(with_rows("{'label': 'A', 'category': 'std'}"), &e);
    CHECK_ONE(e, "layout.rows[0].seats", "required");
    refuse(with_rows("{'label': 'A', 'category': 'std', 'seats': 3}"), &e);
    CHECK_ONE(e, "layout.rows[0].seats", "wrong-type");

    json_t *norm = accept(many_rows(1, LAYOUT_ROW_POSITIONS_MAX), &sum);
    CHECK_INT(sum.seat_count, LAYOUT_ROW_POSITIONS_MAX);
    json_decref(norm);
    refuse(many_rows(1, LAYOUT_ROW_POSITIONS_MAX + 1), &e);
    CHECK_ONE(e, "layout.rows[0].seats", "out-of-range");
}

TEST(row_of_gaps_is_empty)
{
    struct verrs e;

    refuse(with_rows("{'label': 'A', 'category': 'std', 'seats': [1]},"
                     "{'label': 'B', 'category': 'std',"
                     " 'seats': [null, null]}"),
           &e);
    CHECK_ONE(e, "layout.rows[1].seats", "empty-row");
    CHECK_STR(e.items[0].detail, "row B has no seat");
}

TEST(flagged_seats_must_exist)
{
    struct verrs e;

    refuse(with_rows("{'label': 'C', 'category': 'std',"
                     " 'seats': [1, null, 3], 'accessible': [1, 2]}"),
           &e);
    CHECK_ONE(e, "layout.rows[0].accessible[1]", "unknown-seat");
    CHECK_STR(e.items[0].detail, "row C has no seat 2");

    refuse(with_rows("{'label': 'C', 'category': 'std',"
                     " 'seats': [1, 2], 'companion': [0]}"),
           &e);
    CHECK_ONE(e, "layout.rows[0].companion[0]", "unknown-seat");
    refuse(with_rows("{'label': 'C', 'category': 'std',"
                     " 'seats': [1, 2], 'companion': [1000]}"),
           &e);
    CHECK_ONE(e, "layout.rows[0].companion[0]", "unknown-seat");
    refuse(with_rows("{'label': 'C', 'category': 'std',"
                     " 'seats': [1, 2], 'accessible': ['1']}"),
           &e);
    CHECK_ONE(e, "layout.rows[0].accessible[0]", "wrong-type");
    refuse(with_rows("{'label': 'C', 'category': 'std',"
                     " 'seats': [1, 2], 'accessible': 1}"),
           &e);
    CHECK_ONE(e, "layout.rows[0].accessible", "wrong-type");
    refuse(with_rows("{'label': 'C', 'category': 'std',"
                     " 'seats': [1, 2], 'companion': [2, 2]}"),
           &e);
    CHECK_ONE(e, "layout.rows[0].companion[1]", "duplicate-seat");
    CHECK_STR(e.items[0].detail, "seat C2 is listed twice");
}

TEST(seat_both_accessible_and_companion)
{
    struct verrs e;

    refuse(with_rows("{'label': 'D', 'category': 'std',"
                     " 'seats': [1, 2, 3], 'accessible': [1, 3],"
                     " 'companion': [2, 3]}"),
           &e);
    CHECK_ONE(e, "layout.rows[0]", "conflicting-seat-flags");
    CHECK_STR(e.items[0].detail,
              "seat D3 cannot be both accessible and a companion seat");
}

TEST(unknown_fields)
{
    struct verrs e;

    refuse(parse("{'categories': [{'code': 'std', 'name': 'S'}],"
                 " 'rows': [{'label': 'A', 'category': 'std', 'seats': [1]}],"
                 " 'screen': 1}"),
           &e);
    CHECK_ONE(e, "layout.screen", "unknown-field");
    refuse(with_categories(", {'code': 'vip', 'name': 'V', 'colour': 'red'}"),
           &e);
    CHECK_ONE(e, "layout.categories[1].colour", "unknown-field");
    refuse(with_rows("{'label': 'A', 'category': 'std', 'seats': [1],"
                     " 'vip': true}"),
           &e);
    CHECK_ONE(e, "layout.rows[0].vip", "unknown-field");
}

/* Everything wrong is reported at once, in the order of the layout. */
TEST(several_errors_reported)
{
    struct verrs e;

    refuse(parse("{'extra': 1,"
                 " 'categories': [{'code': 'std', 'name': 'S'},"
                 "                {'code': 'std', 'name': 'T'}],"
                 " 'rows': [{'label': 'A', 'category': 'gold',"
                 "           'seats': [1, 1]},"
                 "          {'label': 'A', 'category': 'std',"
                 "           'seats': [null], 'accessible': [4]}]}"),
           &e);
    CHECK_INT(e.n, 7);
    CHECK_INT(e.dropped, 0);
    CHECK_ERR(e, 0, "layout.extra", "unknown-field");
    CHECK_ERR(e, 1, "layout.categories[1].code", "duplicate-category");
    CHECK_ERR(e, 2, "layout.rows[0].category", "unknown-category");
    CHECK_ERR(e, 3, "layout.rows[0].seats[1]", "duplicate-seat");
    CHECK_ERR(e, 4, "layout.rows[1].label", "duplicate-row");
    CHECK_ERR(e, 5, "layout.rows[1].seats", "empty-row");
    CHECK_ERR(e, 6, "layout.rows[1].accessible[0]", "unknown-seat");
}

/* Errors already in the list are not the layout's: only new ones refuse. */
TEST(earlier_errors_do_not_refuse)
{
    struct layout_summary sum;
    struct verrs e = {0};
    json_t *in = parse(realistic);

    verr_add(&e, "name", "required", "name is required");
    json_t *norm = layout_check(in, "layout", &sum, &e);
    CHECK(norm != NULL);
    CHECK_INT(e.n, 1);
    json_decref(norm);

    /* Likewise when the list is already full and has dropped some. */
    while (e.dropped < 3)
        verr_add(&e, "name", "required", "name is required");
    norm = layout_check(in, "layout", &sum, &e);
    CHECK(norm != NULL);
    CHECK_INT(e.n, VERR_MAX);
    CHECK_INT(e.dropped, 3);
    json_decref(norm);
    json_decref(in);
}

/* With the list full, a bad layout is still refused: drops count. */
TEST(full_error_list_still_refuses)
{
    struct layout_summary sum;
    struct verrs e = {0};
    json_t *in = with_rows("{'label': 'A', 'category': 'gold', 'seats': [1]}");

    for (int i = 0; i < VERR_MAX; i++)
        verr_add(&e, "x", "required", "x is required");
    CHECK(layout_check(in, "layout", &sum, &e) == NULL);
    CHECK_INT(e.n, VERR_MAX);
    CHECK_INT(e.dropped, 1);
    json_decref(in);
}

TEST(summarize_normalized)
{
    struct layout_summary sum, again;
    json_t *norm = accept(parse(realistic), &sum);

    memset(&again, 0x5A, sizeof(again));
    CHECK_INT(layout_summarize(norm, &again), ERR_OK);
    CHECK_INT(again.seat_count, sum.seat_count);
    CHECK_INT(again.ncategories, sum.ncategories);
    for (size_t i = 0; i < sum.ncategories; i++)
        CHECK_STR(again.categories[i], sum.categories[i]);
    json_decref(norm);
}

TEST(summarize_garbage)
{
    struct layout_summary sum;
    json_t *v = parse("'not a layout'");

    CHECK_INT(layout_summarize(v, &sum), ERR_CORRUPT);
    json_decref(v);
    v = with_rows("{'label': 'A', 'category': 'std', 'seats': [null]}");
    CHECK_INT(layout_summarize(v, &sum), ERR_CORRUPT);
    json_decref(v);
    v = parse("{}");
    CHECK_INT(layout_summarize(v, &sum), ERR_CORRUPT);
    json_decref(v);
    CHECK_INT(layout_summarize(NULL, &sum), ERR_CORRUPT);
}

/* The summary of the two-category layout: std and vip. */
static void two_categories(struct layout_summary *sum)
{
    json_t *norm = accept(with_rows("{'label': 'A', 'category': 'std',"
                                    " 'seats': [1]}"),
                          sum);

    CHECK_INT(sum->ncategories, 2);
    json_decref(norm);
}

/* layout_check_prices on prices text, with a maximum of 100000. */
static void prices(const struct layout_summary *sum, const char *text,
                   struct verrs *e)
{
    json_t *p = parse(text);

    *e = (struct verrs){0};
    layout_check_prices(sum, p, "prices", 100000, e);
    json_decref(p);
}

TEST(prices_valid)
{
    struct layout_summary sum;
    struct verrs e;

    two_categories(&sum);
    prices(&sum, "{'std': 25000, 'vip': 45000}", &e);
    CHECK_INT(e.n, 0);
    prices(&sum, "{'vip': 100000, 'std': 0}", &e);
    CHECK_INT(e.n, 0);
}

TEST(prices_refused)
{
    struct layout_summary sum;
    struct verrs e;

    two_categories(&sum);
    prices(&sum, "{'std': 1, 'vip': 2, 'gold': 3}", &e);
    CHECK_ONE(e, "prices.gold", "unknown-category");
    CHECK_STR(e.items[0].detail, "the screen's layout has no category gold");

    prices(&sum, "{'std': 1}", &e);
    CHECK_ONE(e, "prices.vip", "missing-price");
    CHECK_STR(e.items[0].detail, "category vip of the layout has no price");

    prices(&sum, "{'std': -1, 'vip': 2}", &e);
    CHECK_ONE(e, "prices.std", "negative-price");
    CHECK_STR(e.items[0].detail, "prices.std must not be negative");

    prices(&sum, "{'std': 1, 'vip': 100001}", &e);
    CHECK_ONE(e, "prices.vip", "out-of-range");
    CHECK_STR(e.items[0].detail, "prices.vip must be at most 100000");

    static const char *const wrong[] = {"'100'", "10.5", "null", "true", "[]"};
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        char text[64];

        snprintf(text, sizeof(text), "{'std': 1, 'vip': %s}", wrong[i]);
        prices(&sum, text, &e);
        CHECK_ONE(e, "prices.vip", "wrong-type");
    }
}

TEST(prices_several_errors)
{
    struct layout_summary sum;
    struct verrs e;

    two_categories(&sum);
    prices(&sum, "{'gold': 1, 'std': -5}", &e);
    CHECK_INT(e.n, 3);
    CHECK_ERR(e, 0, "prices.gold", "unknown-category");
    CHECK_ERR(e, 1, "prices.std", "negative-price");
    CHECK_ERR(e, 2, "prices.vip", "missing-price");
}

TEST(prices_not_an_object)
{
    struct layout_summary sum;
    struct verrs e;

    two_categories(&sum);
    prices(&sum, "[25000, 45000]", &e);
    CHECK_ONE(e, "prices", "wrong-type");
    CHECK_STR(e.items[0].detail, "prices must be an object");
    prices(&sum, "25000", &e);
    CHECK_ONE(e, "prices", "wrong-type");
}

/* A client's long code of multi-byte characters still gives an entry. */
TEST(prices_unknown_code_cut_utf8)
{
    struct layout_summary sum;
    struct verrs e = {0};
    char code[64];
    size_t n = 0;

    two_categories(&sum);
    code[n++] = 'a';
    while (n + 2 < sizeof(code)) {
        code[n++] = (char)0xC3;
        code[n++] = (char)0xA9;
    }
    code[n] = '\0';
    json_t *p = json_pack("{s:i, s:i, s:i}", "std", 1, "vip", 2, code, 3);
    CHECK(p != NULL);
    layout_check_prices(&sum, p, "prices", 100000, &e);
    CHECK_INT(e.n, 1);
    CHECK_STR(e.items[0].code, "unknown-category");
    CHECK(strncmp(e.items[0].field, "prices.a\xC3\xA9", 10) == 0);

    json_t *arr = verr_to_json(&e);
    CHECK_INT(json_array_size(arr), 1);
    json_decref(arr);
    json_decref(p);
}

HARNESS_MAIN(T(realistic_layout_accepted), T(normalized_canonical_form),
             T(normalized_is_a_copy), T(field_prefix_used_in_paths),
             T(not_an_object), T(missing_and_empty_rows),
             T(missing_and_empty_categories), T(category_count_bounds),
             T(row_count_bounds), T(too_many_seats), T(category_code_format),
             T(category_code_length_and_type), T(duplicate_category),
             T(category_name_bounds), T(row_label_format), T(duplicate_row),
             T(row_category), T(duplicate_seat), T(seat_number_range_and_type),
             T(seats_array_bounds), T(row_of_gaps_is_empty),
             T(flagged_seats_must_exist), T(seat_both_accessible_and_companion),
             T(unknown_fields), T(several_errors_reported),
             T(earlier_errors_do_not_refuse), T(full_error_list_still_refuses),
             T(summarize_normalized), T(summarize_garbage), T(prices_valid),
             T(prices_refused), T(prices_several_errors),
             T(prices_not_an_object), T(prices_unknown_code_cut_utf8))
