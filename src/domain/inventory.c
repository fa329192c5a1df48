#include "domain/inventory.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- seatmap ------------------------------------------------------------ */

static uint32_t id_hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

void seatmap_seat_id(const struct seatmap *m, uint32_t seat,
                     char out[INV_SEAT_ID_MAX])
{
    const struct seatmap_seat *s = &m->seats[seat];

    snprintf(out, INV_SEAT_ID_MAX, "%s%u", m->rows[s->row].label,
             (unsigned)s->number);
}

int32_t seatmap_find(const struct seatmap *m, const char *seat_id)
{
    char id[INV_SEAT_ID_MAX];
    uint32_t mask = m->lookup_cap - 1;

    if (strlen(seat_id) >= INV_SEAT_ID_MAX)
        return -1;
    for (uint32_t i = id_hash(seat_id) & mask;; i = (i + 1) & mask) {
        uint32_t v = m->lookup[i];
        if (v == 0)
            return -1;
        seatmap_seat_id(m, v - 1, id);
        if (strcmp(id, seat_id) == 0)
            return (int32_t)(v - 1);
    }
}

/* Adds a seat to the lookup table; false if its id is already there. */
static bool lookup_add(struct seatmap *m, uint32_t seat)
{
    char id[INV_SEAT_ID_MAX];

    seatmap_seat_id(m, seat, id);
    if (seatmap_find(m, id) >= 0)
        return false;
    uint32_t mask = m->lookup_cap - 1;
    uint32_t i = id_hash(id) & mask;
    while (m->lookup[i] != 0)
        i = (i + 1) & mask;
    m->lookup[i] = seat + 1;
    return true;
}

static uint32_t list_flags(json_t *row, const char *key, json_int_t number)
{
    json_t *list = json_object_get(row, key);

    for (size_t i = 0; i < json_array_size(list); i++)
        if (json_integer_value(json_array_get(list, i)) == number)
            return 1;
    return 0;
}

static int category_of(const struct seatmap *m, const char *code)
{
    for (uint32_t i = 0; i < m->ncategories; i++)
        if (strcmp(m->categories[i], code) == 0)
            return (int)i;
    return -1;
}

/* Fills rows, positions and seats from the layout's rows. */
static bool fill_rows(struct seatmap *m, json_t *rows)
{
    uint32_t pos_at = 0, seat = 0;

    for (uint32_t r = 0; r < m->nrows; r++) {
        json_t *row = json_array_get(rows, r);
        json_t *positions = json_object_get(row, "seats");
        struct seatmap_row *mr = &m->rows[r];
        int cat =
            category_of(m, json_string_value(json_object_get(row, "category")));

        if (cat < 0)
            return false;
        snprintf(mr->label, sizeof(mr->label), "%s",
                 json_string_value(json_object_get(row, "label")));
        mr->category = (uint8_t)cat;
        mr->first = pos_at;
        mr->npos = (uint32_t)json_array_size(positions);
        for (uint32_t p = 0; p < mr->npos; p++) {
            json_t *v = json_array_get(positions, p);
            if (json_is_null(v)) {
                m->positions[pos_at++] = -1;
                continue;
            }
            json_int_t number = json_integer_value(v);
            m->seats[seat] = (struct seatmap_seat){
                .row = (uint16_t)r,
                .pos = (uint16_t)p,
                .number = (uint16_t)number,
                .category = (uint8_t)cat,
                .flags = (uint8_t)(list_flags(row, "accessible", number) *
                                       SEATMAP_ACCESSIBLE |
                                   list_flags(row, "companion", number) *
                                       SEATMAP_COMPANION),
            };
            m->positions[pos_at++] = (int32_t)seat;
            if (!lookup_add(m, seat))
                return false; /* two seats share an id, e.g. A1+2 and A12 */
            seat++;
        }
    }
    return true;
}

struct seatmap *seatmap_build(json_t *layout)
{
    struct layout_summary sum;
    json_t *rows = json_object_get(layout, "rows");
    uint32_t npos = 0;

    if (layout_summarize(layout, &sum) != 0)
        return NULL;
    struct seatmap *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    atomic_init(&m->refs, 1);
    m->nseats = (uint32_t)sum.seat_count;
    m->nrows = (uint32_t)json_array_size(rows);
    m->ncategories = (uint32_t)sum.ncategories;
    memcpy(m->categories, sum.categories, sizeof(sum.categories));
    for (uint32_t r = 0; r < m->nrows; r++)
        npos += (uint32_t)json_array_size(
            json_object_get(json_array_get(rows, r), "seats"));
    m->lookup_cap = 16;
    while (m->lookup_cap < m->nseats * 2)
        m->lookup_cap *= 2;

    m->rows = calloc(m->nrows, sizeof(*m->rows));
    m->positions = calloc(npos, sizeof(*m->positions));
    m->seats = calloc(m->nseats, sizeof(*m->seats));
    m->lookup = calloc(m->lookup_cap, sizeof(*m->lookup));
    if (m->rows == NULL || m->positions == NULL || m->seats == NULL ||
        m->lookup == NULL || !fill_rows(m, rows)) {
        seatmap_unref(m);
        return NULL;
    }
    return m;
}

void seatmap_ref(struct seatmap *m)
{
    atomic_fetch_add(&m->refs, 1);
}

void seatmap_unref(struct seatmap *m)
{
    if (m == NULL || atomic_fetch_sub(&m->refs, 1) > 1)
        return;
    free(m->rows);
    free(m->positions);
    free(m->seats);
    free(m->lookup);
    free(m);
}

/* --- inventory ------------------------------------------------------------ */

struct show_inv *inv_new(int64_t show_id, struct seatmap *map)
{
    struct show_inv *inv = calloc(1, sizeof(*inv));

    if (inv == NULL)
        return NULL;
    inv->show_id = show_id;
    inv->map = map;
    inv->state = calloc(map->nseats, 1);
    inv->hold_slot = calloc(map->nseats, sizeof(*inv->hold_slot));
    if (inv->state == NULL || inv->hold_slot == NULL) {
        free(inv->state);
        free(inv->hold_slot);
        free(inv);
        return NULL;
    }
    seatmap_ref(map);
    return inv;
}

void inv_free(struct show_inv *inv)
{
    if (inv == NULL)
        return;
    for (uint32_t i = 0; i < inv->holds_cap; i++)
        free(inv->holds[i].seats);
    free(inv->holds);
    free(inv->state);
    free(inv->hold_slot);
    seatmap_unref(inv->map);
    free(inv);
}

struct inv_hold *inv_hold_at(struct show_inv *inv, uint32_t slot)
{
    assert(slot >= 1 && slot <= inv->holds_cap);
    return &inv->holds[slot - 1];
}

enum seat_state inv_seat_state(const struct show_inv *inv, uint32_t seat,
                               int64_t now_ms)
{
    enum seat_state st = (enum seat_state)inv->state[seat];

    if (st == SEAT_HELD) {
        uint32_t slot = inv->hold_slot[seat];
        assert(slot != 0 && "a held seat without its hold");
        if (inv->holds[slot - 1].expires_at <= now_ms)
            return SEAT_FREE;
    }
    return st;
}

static bool requested(const uint32_t *seats, size_t n, int32_t seat)
{
    for (size_t i = 0; i < n; i++)
        if ((int32_t)seats[i] == seat)
            return true;
    return false;
}

static size_t customer_seats(const struct show_inv *inv, const char *customer,
                             int64_t now_ms)
{
    size_t n = 0;

    for (uint32_t i = 0; i < inv->holds_cap; i++) {
        const struct inv_hold *h = &inv->holds[i];
        if (h->in_use && (h->pending || h->expires_at > now_ms) &&
            strcmp(h->customer, customer) == 0)
            n += h->nseats;
    }
    return n;
}

/* Whether the seat at position p of a row is taken, before or after. */
static bool occupied(const struct show_inv *inv, int32_t seat, int64_t now_ms,
                     const uint32_t *req, size_t n, bool after)
{
    if (inv_seat_state(inv, (uint32_t)seat, now_ms) != SEAT_FREE)
        return true;
    return after && requested(req, n, seat);
}

/*
 * An orphan is a free seat in a block (a run of seats between gaps) of two
 * or more whose neighbours are each taken or the end of the block.
 */
static bool is_orphan(const struct show_inv *inv, const struct seatmap_row *r,
                      uint32_t p, int64_t now_ms, const uint32_t *req, size_t n,
                      bool after)
{
    const int32_t *pos = &inv->map->positions[r->first];
    bool left_wall = p == 0 || pos[p - 1] < 0;
    bool right_wall = p + 1 == r->npos || pos[p + 1] < 0;

    if (pos[p] < 0 || occupied(inv, pos[p], now_ms, req, n, after))
        return false;
    if (left_wall && right_wall)
        return false; /* a block of one seat strands nothing */
    return (left_wall || occupied(inv, pos[p - 1], now_ms, req, n, after)) &&
           (right_wall || occupied(inv, pos[p + 1], now_ms, req, n, after));
}

/*
 * Lists (up to max) seats that the hold would newly strand; returns how
 * many it would strand.
 */
static size_t new_orphans(const struct show_inv *inv, const uint32_t *req,
                          size_t n, int64_t now_ms, uint32_t *out, size_t max)
{
    size_t found = 0;

    for (size_t i = 0; i < n; i++) {
        uint16_t row = inv->map->seats[req[i]].row;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = inv->map->seats[req[j]].row == row;
        if (seen)
            continue;
        const struct seatmap_row *r = &inv->map->rows[row];
        for (uint32_t p = 0; p < r->npos; p++) {
            if (!is_orphan(inv, r, p, now_ms, req, n, true) ||
                is_orphan(inv, r, p, now_ms, req, n, false))
                continue;
            /* Counted past out's room: the verdict must not depend on it. */
            if (found < max)
                out[found] = (uint32_t)inv->map->positions[r->first + p];
            found++;
        }
    }
    return found;
}

enum inv_verdict inv_check(const struct show_inv *inv, const uint32_t *seats,
                           size_t n, const char *customer, int64_t now_ms,
                           const struct inv_limits *lim, uint32_t *out,
                           size_t *nout)
{
    size_t max = *nout, taken = 0, orphans;

    *nout = 0;
    if (inv->cancelled || now_ms >= inv->starts_at)
        return INV_CLOSED;
    if (n > (size_t)lim->max_seats_per_hold)
        return INV_TOO_MANY;
    for (size_t i = 0; i < n; i++) {
        assert(seats[i] < inv->map->nseats);
        if (inv_seat_state(inv, seats[i], now_ms) == SEAT_FREE)
            continue;
        if (taken < max)
            out[taken] = seats[i];
        taken++;
    }
    if (taken > 0) {
        *nout = taken < max ? taken : max;
        return INV_TAKEN;
    }
    if (customer_seats(inv, customer, now_ms) + n >
        (size_t)lim->max_seats_per_customer)
        return INV_CUSTOMER_LIMIT;
    if (inv->no_orphan) {
        orphans = new_orphans(inv, seats, n, now_ms, out, max);
        if (orphans > 0) {
            *nout = orphans < max ? orphans : max;
            return INV_ORPHAN;
        }
    }
    return INV_OK;
}

/* A free hold slot (1-based), growing the table if needed; 0 if no memory. */
static uint32_t slot_alloc(struct show_inv *inv)
{
    for (uint32_t k = 0; k < inv->holds_cap; k++) {
        uint32_t i = (inv->free_slot_hint + k) % inv->holds_cap;
        if (!inv->holds[i].in_use) {
            inv->free_slot_hint = i + 1;
            return i + 1;
        }
    }
    uint32_t cap = inv->holds_cap == 0 ? 4 : inv->holds_cap * 2;
    struct inv_hold *h = realloc(inv->holds, cap * sizeof(*h));
    if (h == NULL)
        return 0;
    memset(h + inv->holds_cap, 0, (cap - inv->holds_cap) * sizeof(*h));
    inv->holds = h;
    uint32_t slot = inv->holds_cap + 1;
    inv->holds_cap = cap;
    return slot;
}

static uint32_t hold_add(struct show_inv *inv, const uint32_t *seats, size_t n,
                         const char *hold_id, const char *customer)
{
    uint32_t slot = slot_alloc(inv);

    if (slot == 0)
        return 0;
    struct inv_hold *h = &inv->holds[slot - 1];
    /* Never realloc to 0 bytes: glibc frees then and h->seats dangles. */
    uint32_t *copy = realloc(h->seats, (n > 0 ? n : 1) * sizeof(*copy));
    if (copy == NULL)
        return 0;
    memcpy(copy, seats, n * sizeof(*copy));
    h->seats = copy;
    h->nseats = (uint32_t)n;
    snprintf(h->id, sizeof(h->id), "%s", hold_id);
    snprintf(h->customer, sizeof(h->customer), "%s", customer);
    h->in_use = true;
    h->in_checkout = false;
    inv->nholds++;
    return slot;
}

uint32_t inv_reserve(struct show_inv *inv, const uint32_t *seats, size_t n,
                     const char *hold_id, const char *customer, int64_t now_ms,
                     int64_t expires_at, int64_t max_expires_at, int64_t total)
{
    uint32_t slot = hold_add(inv, seats, n, hold_id, customer);

    if (slot == 0)
        return 0;
    struct inv_hold *h = &inv->holds[slot - 1];
    h->created_at = now_ms;
    h->expires_at = expires_at;
    h->max_expires_at = max_expires_at;
    h->extensions = 0;
    h->total = total;
    h->pending = true;
    for (size_t i = 0; i < n; i++) {
        inv->state[seats[i]] = SEAT_PENDING;
        inv->hold_slot[seats[i]] = slot;
    }
    inv->version++;
    return slot;
}

void inv_commit(struct show_inv *inv, uint32_t slot)
{
    struct inv_hold *h = inv_hold_at(inv, slot);

    assert(h->in_use && h->pending);
    h->pending = false;
    for (uint32_t i = 0; i < h->nseats; i++) {
        assert(inv->hold_slot[h->seats[i]] == slot);
        inv->state[h->seats[i]] = SEAT_HELD;
    }
    inv->version++;
}

void inv_end(struct show_inv *inv, uint32_t slot, enum seat_state state)
{
    struct inv_hold *h = inv_hold_at(inv, slot);

    assert(h->in_use);
    for (uint32_t i = 0; i < h->nseats; i++) {
        uint32_t s = h->seats[i];
        /* A seat re-held after this hold expired belongs to its new hold. */
        if (inv->hold_slot[s] != slot)
            continue;
        inv->state[s] = (uint8_t)state;
        inv->hold_slot[s] = 0;
    }
    h->in_use = false;
    h->pending = false;
    h->nseats = 0;
    inv->nholds--;
    inv->version++;
}

void inv_abort(struct show_inv *inv, uint32_t slot)
{
    inv_end(inv, slot, SEAT_FREE);
}

uint32_t inv_find_hold(const struct show_inv *inv, const char *hold_id)
{
    for (uint32_t i = 0; i < inv->holds_cap; i++)
        if (inv->holds[i].in_use && strcmp(inv->holds[i].id, hold_id) == 0)
            return i + 1;
    return 0;
}

size_t inv_sweep(struct show_inv *inv, int64_t now_ms, size_t max,
                 void (*fn)(void *arg, const struct inv_hold *h), void *arg)
{
    size_t n = 0;

    for (uint32_t i = 0; i < inv->holds_cap && n < max; i++) {
        struct inv_hold *h = &inv->holds[i];
        if (!h->in_use || h->pending || h->expires_at > now_ms)
            continue;
        if (fn != NULL)
            fn(arg, h);
        inv_end(inv, i + 1, SEAT_FREE);
        n++;
    }
    return n;
}

size_t inv_held_seats(const struct show_inv *inv, int64_t now_ms)
{
    size_t n = 0;

    for (uint32_t i = 0; i < inv->holds_cap; i++) {
        const struct inv_hold *h = &inv->holds[i];
        if (h->in_use && !h->pending && h->expires_at > now_ms)
            n += h->nseats;
    }
    return n;
}

void inv_load_seat(struct show_inv *inv, uint32_t seat, enum seat_state st)
{
    assert(st != SEAT_HELD && st != SEAT_PENDING);
    inv->state[seat] = (uint8_t)st;
    inv->hold_slot[seat] = 0;
    inv->version++;
}

uint32_t inv_load_hold(struct show_inv *inv, const char *hold_id,
                       const char *customer, const uint32_t *seats, size_t n,
                       int64_t created_at, int64_t expires_at,
                       int64_t max_expires_at, int extensions, int64_t total)
{
    for (size_t i = 0; i < n; i++)
        if (inv->state[seats[i]] != SEAT_FREE)
            return 0;
    uint32_t slot = hold_add(inv, seats, n, hold_id, customer);
    if (slot == 0)
        return 0;
    struct inv_hold *h = &inv->holds[slot - 1];
    h->created_at = created_at;
    h->expires_at = expires_at;
    h->max_expires_at = max_expires_at;
    h->extensions = extensions;
    h->total = total;
    for (size_t i = 0; i < n; i++) {
        inv->state[seats[i]] = SEAT_HELD;
        inv->hold_slot[seats[i]] = slot;
    }
    inv->version++;
    return slot;
}

void inv_count(const struct show_inv *inv, int64_t now_ms, size_t out[4])
{
    memset(out, 0, 4 * sizeof(out[0]));
    for (uint32_t s = 0; s < inv->map->nseats; s++) {
        enum seat_state st = inv_seat_state(inv, s, now_ms);
        out[st == SEAT_PENDING ? SEAT_HELD : st]++;
    }
}
