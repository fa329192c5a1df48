/*
 * layout.h - seat layouts of screens, and the prices a show sets on them.
 *
 * A layout is JSON, checked here once when a screen is created:
 *
 *   {"categories": [{"code": "premium", "name": "Premium"}, ...],
 *    "rows": [{"label": "A", "category": "premium",
 *              "seats": [1, 2, null, 3, 4],
 *              "accessible": [1], "companion": [2]}, ...]}
 *
 * `seats` lists the row's positions from left to right: a number is a seat
 * (its number within the row), null is an aisle or gap.  A seat's id is the
 * row label and number, "A3".  No I/O here.
 */
#ifndef MARQUEE_DOMAIN_LAYOUT_H
#define MARQUEE_DOMAIN_LAYOUT_H

#include <jansson.h>
#include <stddef.h>

#include "domain/validate.h"

#define LAYOUT_CATEGORIES_MAX    16
#define LAYOUT_CATEGORY_CODE_MAX 32
#define LAYOUT_ROWS_MAX          100
#define LAYOUT_ROW_POSITIONS_MAX 200
#define LAYOUT_SEAT_NUMBER_MAX   999
#define LAYOUT_SEATS_MAX         10000

struct layout_summary {
    size_t seat_count;
    size_t ncategories;
    char categories[LAYOUT_CATEGORIES_MAX][LAYOUT_CATEGORY_CODE_MAX + 1];
};

/*
 * Checks a layout.  On success returns a normalized copy (known fields
 * only, canonical order; new reference) and fills sum; on failure returns
 * NULL with the reasons in e.  field is the path of the layout in the body.
 */
json_t *layout_check(json_t *in, const char *field, struct layout_summary *sum,
                     struct verrs *e);

/* Rebuilds the summary of a stored (already normalized) layout. */
int layout_summarize(json_t *layout, struct layout_summary *sum);

/*
 * Checks a show's prices against its layout: an object mapping every
 * category code to a non-negative amount in minor units, at most max.
 * Codes the layout lacks are "unknown-category"; a category without a
 * price is "missing-price"; a negative amount "negative-price".
 */
void layout_check_prices(const struct layout_summary *sum, json_t *prices,
                         const char *field, int64_t max, struct verrs *e);

#endif
