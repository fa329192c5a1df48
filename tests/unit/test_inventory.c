/*
 * test_inventory.c - a show's seats in memory: the seat map built from a
 * layout, holds through reserve, commit, abort and end, expiry read from an
 * injected clock, every verdict of inv_check with the seats it lists, slot
 * reuse, and a randomized run that checks the bookkeeping after each step.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>

#include "domain/inventory.h"

#define TEXT_MAX  8192
#define LIST_MAX  256
#define SEATS_MAX 32

/* The injected clock: tests pass times from here, never the real clock. */
#define T0        1700000000000LL
#define MINUTE_MS 60000LL
#define HOLD_MS   (10 * MINUTE_MS)
#define STARTS_AT (T0 + 120 * MINUTE_MS)

static const struct inv_limits limits = {
    .max_seats_per_hold = 6,
    .max_seats_per_customer = 10,
};

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

/* A seat map of categories "std" and "vip" with the rows given. */
static struct seatmap *map_of(const char *rows)
{
    char buf[TEXT_MAX];
    int n = snprintf(buf, sizeof(buf),
                     "{'categories': [{'code': 'std', 'name': 'Standard'},"
                     " {'code': 'vip', 'name': 'VIP'}], 'rows': [%s]}",
                     rows);

    CHECK(n > 0 && (size_t)n < sizeof(buf));
    json_t *layout = parse(buf);
    struct seatmap *m = seatmap_build(layout);
    json_decref(layout);
    CHECK(m != NULL);
    return m;
}

/* An open show on a map of the rows given; the show owns the only ref. */
static struct show_inv *show_of(const char *rows)
{
    struct seatmap *m = map_of(rows);
    struct show_inv *inv = inv_new(42, m);

    seatmap_unref(m);
    CHECK(inv != NULL);
    inv->starts_at = STARTS_AT;
    inv->hold_seconds = (int)(HOLD_MS / 1000);
    return inv;
}

static uint32_t seat(const struct show_inv *inv, const char *id)
{
    int32_t s = seatmap_find(inv->map, id);

    if (s < 0)
        harness_fail(__FILE__, __LINE__, "no seat %s", id);
    return (uint32_t)s;
}

/* Seat indexes from ids separated by spaces ("A1 A2"); returns the count. */
static size_t seats_of(const struct show_inv *inv, const char *ids,
                       uint32_t out[SEATS_MAX])
{
    size_t n = 0;

    while (*ids != '\0') {
        char id[INV_SEAT_ID_MAX];
        size_t len = strcspn(ids, " ");

        CHECK(len > 0 && len < sizeof(id) && n < SEATS_MAX);
        memcpy(id, ids, len);
        id[len] = '\0';
        out[n++] = seat(inv, id);
        ids += len;
        ids += strspn(ids, " ");
    }
    return n;
}

/* The ids of seats, separated by spaces, for comparing lists exactly. */
static const char *ids_of(const struct show_inv *inv, const uint32_t *seats,
                          size_t n, char buf[LIST_MAX])
{
    size_t at = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char id[INV_SEAT_ID_MAX];

        seatmap_seat_id(inv->map, seats[i], id);
        int w = snprintf(buf + at, LIST_MAX - at, "%s%s", i ? " " : "", id);
        CHECK(w > 0 && (size_t)w < LIST_MAX - at);
        at += (size_t)w;
    }
    return buf;
}

/* inv_check on seat ids; the seats it lists go to listed as ids. */
static enum inv_verdict check_lim(const struct show_inv *inv, const char *ids,
                                  const char *customer, int64_t now,
                                  const struct inv_limits *lim,
                                  char listed[LIST_MAX])
{
    uint32_t seats[SEATS_MAX], out[SEATS_MAX];
    size_t n = seats_of(inv, ids, seats), nout = SEATS_MAX;

    enum inv_verdict v =
        inv_check(inv, seats, n, customer, now, lim, out, &nout);
    ids_of(inv, out, nout, listed);
    return v;
}

static enum inv_verdict check(const struct show_inv *inv, const char *ids,
                              const char *customer, int64_t now,
                              char listed[LIST_MAX])
{
    return check_lim(inv, ids, customer, now, &limits, listed);
}

/* Reserves seats by id under a pending hold; returns its slot. */
static uint32_t reserve(struct show_inv *inv, const char *ids,
                        const char *hold_id, const char *customer, int64_t now,
                        int64_t expires_at)
{
    uint32_t seats[SEATS_MAX];
    size_t n = seats_of(inv, ids, seats);
    uint32_t slot = inv_reserve(inv, seats, n, hold_id, customer, now,
                                expires_at, expires_at + HOLD_MS, 1000);

    CHECK(slot >= 1);
    return slot;
}

/* Reserves and commits: a hold the database accepted. */
static uint32_t hold(struct show_inv *inv, const char *ids, const char *hold_id,
                     const char *customer, int64_t now, int64_t expires_at)
{
    uint32_t slot = reserve(inv, ids, hold_id, customer, now, expires_at);

    inv_commit(inv, slot);
    return slot;
}

static enum seat_state state_of(const struct show_inv *inv, const char *id,
                                int64_t now)
{
    return inv_seat_state(inv, seat(inv, id), now);
}

/* --- seat map --------------------------------------------------------- */

static const char *const small_rows =
    "{'label': 'A', 'category': 'std', 'seats': [1, 2, null, 3, 4],"
    " 'accessible': [1], 'companion': [2]},"
    "{'label': 'B', 'category': 'vip', 'seats': [null, 2, 1, null]}";

TEST(seatmap_indexes_in_row_order)
{
    struct seatmap *m = map_of(small_rows);
    static const int32_t positions[] = {0, 1, -1, 2, 3, -1, 4, 5, -1};

    CHECK_INT(m->refs, 1);
    CHECK_INT(m->nseats, 6);
    CHECK_INT(m->nrows, 2);
    CHECK_STR(m->rows[0].label, "A");
    CHECK_INT(m->rows[0].first, 0);
    CHECK_INT(m->rows[0].npos, 5);
    CHECK_STR(m->rows[1].label, "B");
    CHECK_INT(m->rows[1].first, 5);
    CHECK_INT(m->rows[1].npos, 4);
    for (size_t i = 0; i < sizeof(positions) / sizeof(positions[0]); i++)
        CHECK_INT(m->positions[i], positions[i]);

    /* Seat 3 of row A sits after the aisle: position 3, index 2. */
    CHECK_INT(m->seats[2].row, 0);
    CHECK_INT(m->seats[2].pos, 3);
    CHECK_INT(m->seats[2].number, 3);
    /* Row B is numbered right to left: its first seat is B2. */
    CHECK_INT(m->seats[4].row, 1);
    CHECK_INT(m->seats[4].pos, 1);
    CHECK_INT(m->seats[4].number, 2);
    CHECK_INT(m->seats[5].pos, 2);
    CHECK_INT(m->seats[5].number, 1);

    CHECK_INT(seatmap_find(m, "A1"), 0);
    CHECK_INT(seatmap_find(m, "A3"), 2);
    CHECK_INT(seatmap_find(m, "B2"), 4);
    CHECK_INT(seatmap_find(m, "B1"), 5);
    seatmap_unref(m);
}

TEST(seatmap_categories_and_flags)
{
    struct seatmap *m = map_of(small_rows);

    CHECK_INT(m->ncategories, 2);
    CHECK_STR(m->categories[0], "std");
    CHECK_STR(m->categories[1], "vip");
    CHECK_INT(m->rows[0].category, 0);
    CHECK_INT(m->rows[1].category, 1);
    CHECK_INT(m->seats[seatmap_find(m, "A4")].category, 0);
    CHECK_INT(m->seats[seatmap_find(m, "B1")].category, 1);

    CHECK_INT(m->seats[seatmap_find(m, "A1")].flags, SEATMAP_ACCESSIBLE);
    CHECK_INT(m->seats[seatmap_find(m, "A2")].flags, SEATMAP_COMPANION);
    CHECK_INT(m->seats[seatmap_find(m, "A3")].flags, 0);
    CHECK_INT(m->seats[seatmap_find(m, "B1")].flags, 0);
    CHECK_INT(m->seats[seatmap_find(m, "B2")].flags, 0);
    seatmap_unref(m);
}

TEST(seatmap_find_unknown_ids)
{
    struct seatmap *m = map_of(small_rows);
    char longest[INV_SEAT_ID_MAX + 8];

    CHECK_INT(seatmap_find(m, "A5"), -1);
    CHECK_INT(seatmap_find(m, "C1"), -1);
    CHECK_INT(seatmap_find(m, "A0"), -1);
    CHECK_INT(seatmap_find(m, "A01"), -1);
    CHECK_INT(seatmap_find(m, "a1"), -1);
    CHECK_INT(seatmap_find(m, "A"), -1);
    CHECK_INT(seatmap_find(m, ""), -1);
    CHECK_INT(seatmap_find(m, "A1 "), -1);

    /* Ids too long to be any seat's, including one that starts like A1. */
    memset(longest, '1', sizeof(longest) - 1);
    longest[0] = 'A';
    longest[sizeof(longest) - 1] = '\0';
    CHECK_INT(seatmap_find(m, longest), -1);
    longest[INV_SEAT_ID_MAX] = '\0';
    CHECK_INT(seatmap_find(m, longest), -1);
    longest[INV_SEAT_ID_MAX - 1] = '\0';
    CHECK_INT(seatmap_find(m, longest), -1);
    seatmap_unref(m);
}

#define BIG_ROWS 12

/*
 * Twelve rows A..L; row r has 10 + r seats with aisles after seat 3 and
 * before the last three.  Row D is numbered right to left, rows A-B are
 * vip, row L has accessible and companion seats.  expect gets every
 * seat's id in index order; returns the seat count.
 */
static json_t *big_layout(char expect[][INV_SEAT_ID_MAX], size_t *nseats)
{
    json_t *rows = json_array();
    size_t at = 0;

    for (int r = 0; r < BIG_ROWS; r++) {
        char label[2] = {(char)('A' + r), '\0'};
        int width = 10 + r;
        json_t *seats = json_array();

        for (int p = 0; p < width; p++) {
            int number = r == 3 ? width - p : p + 1;
            if (p == 3 || p == width - 3)
                json_array_append_new(seats, json_null());
            json_array_append_new(seats, json_integer(number));
            snprintf(expect[at++], INV_SEAT_ID_MAX, "%s%d", label, number);
        }
        json_t *row = json_pack("{s:s, s:s, s:o}", "label", label, "category",
                                r < 2 ? "vip" : "std", "seats", seats);
        if (r == BIG_ROWS - 1) {
            json_object_set_new(row, "accessible", json_pack("[i, i]", 1, 21));
            json_object_set_new(row, "companion", json_pack("[i, i]", 2, 20));
        }
        json_array_append_new(rows, row);
    }
    *nseats = at;
    return json_pack("{s:[{s:s, s:s}, {s:s, s:s}], s:o}", "categories", "code",
                     "std", "name", "Standard", "code", "vip", "name", "VIP",
                     "rows", rows);
}

TEST(seatmap_realistic_round_trip)
{
    static char expect[400][INV_SEAT_ID_MAX];
    size_t nseats;
    json_t *layout = big_layout(expect, &nseats);
    struct seatmap *m = seatmap_build(layout);

    json_decref(layout);
    CHECK(m != NULL);
    /* 10 + 11 + ... + 21 seats. */
    CHECK_INT(nseats, 186);
    CHECK_INT(m->nseats, 186);
    CHECK_INT(m->nrows, BIG_ROWS);
    for (uint32_t s = 0; s < m->nseats; s++) {
        char id[INV_SEAT_ID_MAX];

        seatmap_seat_id(m, s, id);
        CHECK_STR(id, expect[s]);
        CHECK_INT(seatmap_find(m, id), s);
        /* The seat sits where its row's positions say it does. */
        const struct seatmap_row *row = &m->rows[m->seats[s].row];
        CHECK_INT(m->positions[row->first + m->seats[s].pos], s);
        CHECK_INT(m->seats[s].category, m->seats[s].row < 2 ? 1 : 0);
    }

    /* Each row has two aisles: 12 + 2 positions in row C. */
    CHECK_INT(m->rows[2].npos, 14);
    CHECK_INT(m->positions[m->rows[2].first + 3], -1);
    CHECK_INT(m->positions[m->rows[2].first + 10], -1);
    CHECK_INT(seatmap_find(m, "D13"), 3 * 10 + 3);
    CHECK_INT(seatmap_find(m, "D1"), 3 * 10 + 3 + 12);
    CHECK_INT(seatmap_find(m, "L21"), m->nseats - 1);
    CHECK_INT(m->seats[seatmap_find(m, "L1")].flags, SEATMAP_ACCESSIBLE);
    CHECK_INT(m->seats[seatmap_find(m, "L21")].flags, SEATMAP_ACCESSIBLE);
    CHECK_INT(m->seats[seatmap_find(m, "L20")].flags, SEATMAP_COMPANION);
    CHECK_INT(m->seats[seatmap_find(m, "L3")].flags, 0);
    CHECK_INT(m->seats[seatmap_find(m, "K1")].flags, 0);
    CHECK_INT(seatmap_find(m, "M1"), -1);
    CHECK_INT(seatmap_find(m, "A11"), -1);
    seatmap_unref(m);
}

/* Labels may end in digits; ids stay unique as long as no two collide. */
TEST(seatmap_digit_labels)
{
    struct seatmap *m =
        map_of("{'label': 'A', 'category': 'std', 'seats': [1, 2]},"
               "{'label': 'A1', 'category': 'std', 'seats': [2, 3]}");

    CHECK_INT(seatmap_find(m, "A1"), 0);
    CHECK_INT(seatmap_find(m, "A2"), 1);
    CHECK_INT(seatmap_find(m, "A12"), 2);
    CHECK_INT(seatmap_find(m, "A13"), 3);
    seatmap_unref(m);
}

static struct seatmap *build_text(const char *text)
{
    json_t *layout = parse(text);
    struct seatmap *m = seatmap_build(layout);

    json_decref(layout);
    return m;
}

TEST(seatmap_refuses_ambiguous_ids)
{
    /* Row A seat 12 and row A1 seat 2 are both "A12". */
    CHECK(build_text("{'categories': [{'code': 'std', 'name': 'S'}],"
                     " 'rows': [{'label': 'A', 'category': 'std',"
                     " 'seats': [11, 12]},"
                     " {'label': 'A1', 'category': 'std',"
                     " 'seats': [1, 2]}]}") == NULL);
    /* The same, the other way round. */
    CHECK(build_text("{'categories': [{'code': 'std', 'name': 'S'}],"
                     " 'rows': [{'label': 'A1', 'category': 'std',"
                     " 'seats': [2]},"
                     " {'label': 'A', 'category': 'std',"
                     " 'seats': [12]}]}") == NULL);
}

TEST(seatmap_refuses_invalid_layout)
{
    /* A row of an unknown category. */
    CHECK(build_text("{'categories': [{'code': 'std', 'name': 'S'}],"
                     " 'rows': [{'label': 'A', 'category': 'vip',"
                     " 'seats': [1]}]}") == NULL);
    /* A seat listed twice. */
    CHECK(build_text("{'categories': [{'code': 'std', 'name': 'S'}],"
                     " 'rows': [{'label': 'A', 'category': 'std',"
                     " 'seats': [1, 1]}]}") == NULL);
    CHECK(build_text("{'categories': [{'code': 'std', 'name': 'S'}]}") == NULL);
    CHECK(build_text("[]") == NULL);
}

TEST(seatmap_reference_counting)
{
    struct seatmap *m = map_of(small_rows);

    seatmap_ref(m);
    CHECK_INT(m->refs, 2);
    seatmap_unref(m);
    CHECK_INT(m->refs, 1);

    /* Each show takes its own reference. */
    struct show_inv *a = inv_new(1, m);
    struct show_inv *b = inv_new(2, m);
    CHECK(a != NULL && b != NULL);
    CHECK(a->map == m && b->map == m);
    CHECK_INT(m->refs, 3);
    seatmap_unref(m);
    CHECK_INT(m->refs, 2);
    inv_free(a);
    CHECK_INT(m->refs, 1);
    CHECK_INT(b->map->nseats, 6);
    /* The last show frees the map: LeakSanitizer sees if it does not. */
    inv_free(b);

    inv_free(NULL);
    seatmap_unref(NULL);
}

/* --- expiry ----------------------------------------------------------- */

static const char *const block_rows =
    "{'label': 'A', 'category': 'std',"
    " 'seats': [1, 2, 3, 4, null, 5, 6, 7, null, 8, null]},"
    "{'label': 'B', 'category': 'std', 'seats': [1, 2]},"
    "{'label': 'C', 'category': 'vip', 'seats': [1, 2, 3, 4, 5, 6]}";

TEST(new_show_is_all_free)
{
    struct show_inv *inv = show_of(block_rows);
    size_t count[4];

    CHECK_INT(inv->show_id, 42);
    CHECK_INT(inv->version, 0);
    CHECK_INT(inv->nholds, 0);
    inv_count(inv, T0, count);
    CHECK_INT(count[SEAT_FREE], 16);
    CHECK_INT(count[SEAT_HELD], 0);
    CHECK_INT(count[SEAT_SOLD], 0);
    CHECK_INT(count[SEAT_BLOCKED], 0);
    for (uint32_t s = 0; s < inv->map->nseats; s++) {
        CHECK_INT(inv_seat_state(inv, s, T0), SEAT_FREE);
        CHECK_INT(inv->hold_slot[s], 0);
    }
    inv_free(inv);
}

TEST(held_until_expiry_then_free)
{
    struct show_inv *inv = show_of(block_rows);
    int64_t expires = T0 + HOLD_MS;
    size_t count[4];

    hold(inv, "C1 C2", "h1", "alice", T0, expires);
    CHECK_INT(state_of(inv, "C1", T0), SEAT_HELD);
    CHECK_INT(state_of(inv, "C2", expires - 1), SEAT_HELD);
    inv_count(inv, expires - 1, count);
    CHECK_INT(count[SEAT_FREE], 14);
    CHECK_INT(count[SEAT_HELD], 2);

    /* At expires_at the seats are free, with no sweep in between. */
    CHECK_INT(state_of(inv, "C1", expires), SEAT_FREE);
    CHECK_INT(state_of(inv, "C2", expires), SEAT_FREE);
    CHECK_INT(state_of(inv, "C2", expires + MINUTE_MS), SEAT_FREE);
    inv_count(inv, expires, count);
    CHECK_INT(count[SEAT_FREE], 16);
    CHECK_INT(count[SEAT_HELD], 0);
    /* Only the view changed: the hold is still there for the sweeper. */
    CHECK_INT(inv->nholds, 1);
    CHECK_INT(inv->state[seat(inv, "C1")], SEAT_HELD);
    inv_free(inv);
}

TEST(held_seats_count_live_committed_holds)
{
    struct show_inv *inv = show_of(block_rows);
    int64_t soon = T0 + HOLD_MS, later = T0 + 2 * HOLD_MS;
    size_t count[4];

    CHECK_INT(inv_held_seats(inv, T0), 0);
    hold(inv, "C1 C2", "h1", "alice", T0, soon);
    uint32_t h2 = hold(inv, "C3 C4 C5", "h2", "bob", T0, later);
    reserve(inv, "C6", "h3", "carol", T0, later); /* pending: not yet */
    CHECK_INT(inv_held_seats(inv, T0), 5);
    /* Seat by seat, the pending one looks taken too. */
    inv_count(inv, T0, count);
    CHECK_INT(count[SEAT_HELD], 6);
    CHECK_INT(inv_held_seats(inv, soon), 3); /* h1 expired */
    inv_end(inv, h2, SEAT_FREE);
    CHECK_INT(inv_held_seats(inv, T0), 2);
    inv_free(inv);
}

TEST(pending_never_expires_by_time)
{
    struct show_inv *inv = show_of(block_rows);
    int64_t expires = T0 + HOLD_MS, late = T0 + 1000 * HOLD_MS;
    size_t count[4];
    char listed[LIST_MAX];

    reserve(inv, "C3", "h1", "alice", T0, expires);
    CHECK_INT(state_of(inv, "C3", T0), SEAT_PENDING);
    CHECK_INT(state_of(inv, "C3", expires), SEAT_PENDING);
    CHECK_INT(state_of(inv, "C3", late), SEAT_PENDING);

    /* inv_count has no pending column: pending seats count as held. */
    inv_count(inv, late, count);
    CHECK_INT(count[SEAT_FREE], 15);
    CHECK_INT(count[SEAT_HELD], 1);

    CHECK_INT(check(inv, "C3", "bob", expires, listed), INV_TAKEN);
    CHECK_STR(listed, "C3");
    CHECK_INT(inv_sweep(inv, late, 10, NULL, NULL), 0);
    CHECK_INT(state_of(inv, "C3", late), SEAT_PENDING);
    inv_free(inv);
}

TEST(expired_seats_can_be_held_again)
{
    struct show_inv *inv = show_of(block_rows);
    int64_t expires = T0 + HOLD_MS;
    char listed[LIST_MAX];

    uint32_t old = hold(inv, "C1 C2 C3", "h1", "alice", T0, expires);
    CHECK_INT(check(inv, "C2 C3", "bob", expires - 1, listed), INV_TAKEN);
    CHECK_STR(listed, "C2 C3");
    CHECK_INT(check(inv, "C2 C3", "bob", expires, listed), INV_OK);
    CHECK_STR(listed, "");

    uint32_t again =
        reserve(inv, "C2 C3", "h2", "bob", expires, expires + HOLD_MS);
    CHECK(again != old);
    CHECK_INT(state_of(inv, "C2", expires), SEAT_PENDING);
    CHECK_INT(inv->hold_slot[seat(inv, "C2")], again);
    CHECK_INT(inv->hold_slot[seat(inv, "C1")], old);
    inv_commit(inv, again);

    /* Ending the old hold frees only the seat nobody took since. */
    inv_end(inv, old, SEAT_FREE);
    CHECK_INT(inv->state[seat(inv, "C1")], SEAT_FREE);
    CHECK_INT(inv->hold_slot[seat(inv, "C1")], 0);
    CHECK_INT(state_of(inv, "C2", expires), SEAT_HELD);
    CHECK_INT(state_of(inv, "C3", expires), SEAT_HELD);
    CHECK_INT(inv->hold_slot[seat(inv, "C2")], again);
    CHECK_INT(inv->hold_slot[seat(inv, "C3")], again);
    CHECK_INT(inv->nholds, 1);
    CHECK_INT(inv_find_hold(inv, "h2"), again);
    inv_free(inv);
}

/* Ending an expired hold as sold must not sell a seat held again since. */
TEST(expired_hold_ended_late_leaves_new_holder)
{
    struct show_inv *inv = show_of(block_rows);
    int64_t expires = T0 + HOLD_MS;

    uint32_t old = hold(inv, "C4 C5", "h1", "alice", T0, expires);
    uint32_t again =
        reserve(inv, "C5", "h2", "bob", expires + 5, expires + HOLD_MS);
    inv_end(inv, old, SEAT_SOLD);
    CHECK_INT(state_of(inv, "C4", expires), SEAT_SOLD);
    CHECK_INT(state_of(inv, "C5", expires), SEAT_PENDING);
    CHECK_INT(inv->hold_slot[seat(inv, "C5")], again);
    inv_commit(inv, again);
    CHECK_INT(state_of(inv, "C5", expires), SEAT_HELD);
    inv_free(inv);
}

struct swept {
    size_t calls;
    char ids[8][INV_HOLD_ID_MAX];
    uint32_t nseats[8];
};

static void on_expired(void *arg, const struct inv_hold *h)
{
    struct swept *sw = arg;

    CHECK(sw->calls < 8);
    CHECK(h->in_use && !h->pending);
    snprintf(sw->ids[sw->calls], INV_HOLD_ID_MAX, "%s", h->id);
    sw->nseats[sw->calls] = h->nseats;
    sw->calls++;
}

TEST(sweep_ends_expired_committed_holds)
{
    struct show_inv *inv = show_of(block_rows);
    struct swept sw = {0};
    int64_t t1 = T0 + HOLD_MS, t2 = t1 + MINUTE_MS, t3 = t2 + MINUTE_MS;

    hold(inv, "A1 A2", "h1", "alice", T0, t1);
    hold(inv, "C1", "h2", "bob", T0, t3);
    hold(inv, "C3 C4 C5", "h3", "carol", T0, t2);
    reserve(inv, "B1", "h4", "dave", T0, t1);

    CHECK_INT(inv_sweep(inv, t1 - 1, 10, on_expired, &sw), 0);
    CHECK_INT(sw.calls, 0);

    uint64_t version = inv->version;
    CHECK_INT(inv_sweep(inv, t2, 10, on_expired, &sw), 2);
    CHECK_INT(sw.calls, 2);
    CHECK_STR(sw.ids[0], "h1");
    CHECK_INT(sw.nseats[0], 2);
    CHECK_STR(sw.ids[1], "h3");
    CHECK_INT(sw.nseats[1], 3);
    CHECK_INT(inv->version, version + 2);
    CHECK_INT(inv->nholds, 2);
    CHECK_INT(inv_find_hold(inv, "h1"), 0);
    CHECK_INT(inv_find_hold(inv, "h3"), 0);
    static const char *const freed[] = {"A1", "A2", "C3", "C4", "C5"};
    for (size_t i = 0; i < 5; i++) {
        CHECK_INT(inv->state[seat(inv, freed[i])], SEAT_FREE);
        CHECK_INT(inv->hold_slot[seat(inv, freed[i])], 0);
    }
    CHECK_INT(state_of(inv, "C1", t2), SEAT_HELD);
    CHECK_INT(state_of(inv, "B1", t2), SEAT_PENDING);

    /* Nothing is called twice; the pending hold is never swept. */
    CHECK_INT(inv_sweep(inv, t3, 10, on_expired, &sw), 1);
    CHECK_INT(sw.calls, 3);
    CHECK_STR(sw.ids[2], "h2");
    CHECK_INT(inv_sweep(inv, t3 + HOLD_MS, 10, on_expired, &sw), 0);
    CHECK_INT(sw.calls, 3);
    CHECK_INT(inv->nholds, 1);
    CHECK(inv_find_hold(inv, "h4") != 0);
    inv_free(inv);
}

TEST(sweep_respects_max)
{
    struct show_inv *inv = show_of(block_rows);
    struct swept sw = {0};
    int64_t expires = T0 + HOLD_MS;

    hold(inv, "C1", "h1", "alice", T0, expires);
    hold(inv, "C2", "h2", "alice", T0, expires);
    hold(inv, "C3", "h3", "alice", T0, expires);

    CHECK_INT(inv_sweep(inv, expires, 0, on_expired, &sw), 0);
    CHECK_INT(sw.calls, 0);
    CHECK_INT(inv_sweep(inv, expires, 2, on_expired, &sw), 2);
    CHECK_INT(sw.calls, 2);
    CHECK_INT(inv->nholds, 1);
    CHECK_INT(inv_sweep(inv, expires, 2, on_expired, &sw), 1);
    CHECK_INT(sw.calls, 3);
    CHECK_STR(sw.ids[0], "h1");
    CHECK_STR(sw.ids[1], "h2");
    CHECK_STR(sw.ids[2], "h3");
    CHECK_INT(inv->nholds, 0);
    /* Without a callback the seats are freed all the same. */
    hold(inv, "C4", "h4", "alice", T0, expires);
    CHECK_INT(inv_sweep(inv, expires, 5, NULL, NULL), 1);
    CHECK_INT(inv->state[seat(inv, "C4")], SEAT_FREE);
    inv_free(inv);
}

TEST(sweep_spares_seats_held_again)
{
    struct show_inv *inv = show_of(block_rows);
    struct swept sw = {0};
    int64_t expires = T0 + HOLD_MS;

    hold(inv, "C1 C2", "h1", "alice", T0, expires);
    uint32_t again = hold(inv, "C2", "h2", "bob", expires, expires + HOLD_MS);

    CHECK_INT(inv_sweep(inv, expires, 10, on_expired, &sw), 1);
    CHECK_STR(sw.ids[0], "h1");
    CHECK_INT(state_of(inv, "C1", expires), SEAT_FREE);
    CHECK_INT(state_of(inv, "C2", expires), SEAT_HELD);
    CHECK_INT(inv->hold_slot[seat(inv, "C2")], again);
    CHECK_INT(state_of(inv, "C2", expires + HOLD_MS), SEAT_FREE);
    inv_free(inv);
}

/* --- transitions ------------------------------------------------------ */

TEST(reserve_commit_end)
{
    struct show_inv *inv = show_of(block_rows);
    uint32_t seats[2] = {seat(inv, "C2"), seat(inv, "C3")};
    int64_t expires = T0 + HOLD_MS;

    uint32_t slot = inv_reserve(inv, seats, 2, "hold-1", "alice", T0, expires,
                                T0 + 3 * HOLD_MS, 55000);
    CHECK_INT(slot, 1);
    CHECK_INT(inv->version, 1);
    CHECK_INT(inv->nholds, 1);
    /* The hold keeps its own copy of the seats. */
    seats[0] = seat(inv, "A1");
    struct inv_hold *h = inv_hold_at(inv, slot);
    CHECK(h == &inv->holds[0]);
    CHECK_STR(h->id, "hold-1");
    CHECK_STR(h->customer, "alice");
    CHECK_INT(h->created_at, T0);
    CHECK_INT(h->expires_at, expires);
    CHECK_INT(h->max_expires_at, T0 + 3 * HOLD_MS);
    CHECK_INT(h->extensions, 0);
    CHECK_INT(h->total, 55000);
    CHECK_INT(h->nseats, 2);
    CHECK_INT(h->seats[0], seat(inv, "C2"));
    CHECK_INT(h->seats[1], seat(inv, "C3"));
    CHECK(h->pending && h->in_use);
    CHECK_INT(inv->state[seat(inv, "C2")], SEAT_PENDING);
    CHECK_INT(inv->hold_slot[seat(inv, "C3")], slot);
    CHECK_INT(state_of(inv, "A1", T0), SEAT_FREE);

    inv_commit(inv, slot);
    CHECK_INT(inv->version, 2);
    CHECK(!h->pending);
    CHECK_INT(state_of(inv, "C2", T0), SEAT_HELD);
    CHECK_INT(state_of(inv, "C3", T0), SEAT_HELD);
    CHECK_INT(inv_find_hold(inv, "hold-1"), slot);

    inv_end(inv, slot, SEAT_SOLD);
    CHECK_INT(inv->version, 3);
    CHECK_INT(inv->nholds, 0);
    CHECK(!h->in_use);
    CHECK_INT(inv_find_hold(inv, "hold-1"), 0);
    /* Sold seats do not come back when the hold's time is up. */
    CHECK_INT(state_of(inv, "C2", expires + HOLD_MS), SEAT_SOLD);
    CHECK_INT(inv->hold_slot[seat(inv, "C2")], 0);
    size_t count[4];
    inv_count(inv, expires, count);
    CHECK_INT(count[SEAT_SOLD], 2);
    CHECK_INT(count[SEAT_FREE], 14);
    inv_free(inv);
}

/*
 * The checkout pin lives on the hold's slot: a slot that ends while
 * pinned and is reused by a new hold must not pass the pin on, or the new
 * hold could never be released.
 */
TEST(checkout_pin_ends_with_its_hold)
{
    struct show_inv *inv = show_of(block_rows);
    uint32_t slot = hold(inv, "C2", "h1", "alice", T0, T0 + HOLD_MS);

    inv_hold_at(inv, slot)->in_checkout = true;
    /* A pinned hold still ends by its deadline (I5). */
    CHECK_INT(state_of(inv, "C2", T0 + HOLD_MS), SEAT_FREE);
    inv_end(inv, slot, SEAT_SOLD);
    CHECK_INT(state_of(inv, "C2", T0 + HOLD_MS), SEAT_SOLD);
    uint32_t again = hold(inv, "C4", "h2", "bob", T0, T0 + HOLD_MS);
    CHECK_INT(again, slot);
    CHECK(!inv_hold_at(inv, again)->in_checkout);
    inv_free(inv);
}

TEST(release_and_abort_free_seats)
{
    struct show_inv *inv = show_of(block_rows);
    char listed[LIST_MAX];

    uint32_t a = reserve(inv, "C1 C2", "h1", "alice", T0, T0 + HOLD_MS);
    uint32_t b = hold(inv, "C5", "h2", "bob", T0, T0 + HOLD_MS);
    CHECK_INT(inv->version, 3);

    inv_abort(inv, a);
    CHECK_INT(inv->version, 4);
    CHECK_INT(inv->nholds, 1);
    CHECK_INT(inv_find_hold(inv, "h1"), 0);
    CHECK_INT(inv->state[seat(inv, "C1")], SEAT_FREE);
    CHECK_INT(inv->hold_slot[seat(inv, "C1")], 0);
    CHECK_INT(inv->hold_slot[seat(inv, "C2")], 0);

    /* A release is an end with the seats free again. */
    inv_end(inv, b, SEAT_FREE);
    CHECK_INT(inv->version, 5);
    CHECK_INT(inv->nholds, 0);
    CHECK_INT(inv->state[seat(inv, "C5")], SEAT_FREE);
    CHECK_INT(check(inv, "C1 C2 C5", "carol", T0, listed), INV_OK);
    CHECK_INT(inv->version, 5);
    inv_free(inv);
}

/* A hold of no seats in a reused slot leaves that slot's memory sound. */
TEST(hold_of_no_seats_in_reused_slot)
{
    struct show_inv *inv = show_of(block_rows);
    uint32_t none[1] = {0};

    uint32_t a = reserve(inv, "C1 C2", "h1", "alice", T0, T0 + HOLD_MS);
    inv_abort(inv, a);
    uint32_t b = inv_reserve(inv, none, 0, "h2", "alice", T0, T0 + HOLD_MS,
                             T0 + HOLD_MS, 0);
    CHECK_INT(b, a);
    CHECK_INT(inv_hold_at(inv, b)->nseats, 0);
    inv_commit(inv, b);
    inv_end(inv, b, SEAT_FREE);
    CHECK_INT(inv->nholds, 0);

    uint32_t c = reserve(inv, "C3", "h3", "bob", T0, T0 + HOLD_MS);
    CHECK_INT(inv_hold_at(inv, c)->nseats, 1);
    CHECK_INT(inv_hold_at(inv, c)->seats[0], seat(inv, "C3"));
    /* LeakSanitizer and the allocator see any slot memory freed twice. */
    inv_free(inv);
}

TEST(find_hold)
{
    struct show_inv *inv = show_of(block_rows);

    CHECK_INT(inv_find_hold(inv, "h1"), 0);
    uint32_t a = hold(inv, "C1", "h1", "alice", T0, T0 + HOLD_MS);
    uint32_t b = reserve(inv, "C2", "h2", "alice", T0, T0 + HOLD_MS);
    CHECK_INT(inv_find_hold(inv, "h1"), a);
    CHECK_INT(inv_find_hold(inv, "h2"), b);
    CHECK_INT(inv_find_hold(inv, "h"), 0);
    CHECK_INT(inv_find_hold(inv, "h10"), 0);
    CHECK_INT(inv_find_hold(inv, ""), 0);
    inv_abort(inv, b);
    CHECK_INT(inv_find_hold(inv, "h2"), 0);
    CHECK_INT(inv_find_hold(inv, "h1"), a);
    inv_free(inv);
}

TEST(load_seats)
{
    struct show_inv *inv = show_of(block_rows);
    size_t count[4];
    char listed[LIST_MAX];

    inv_load_seat(inv, seat(inv, "A1"), SEAT_SOLD);
    inv_load_seat(inv, seat(inv, "A2"), SEAT_BLOCKED);
    inv_load_seat(inv, seat(inv, "A3"), SEAT_SOLD);
    CHECK_INT(inv->version, 3);
    CHECK_INT(state_of(inv, "A1", T0), SEAT_SOLD);
    CHECK_INT(state_of(inv, "A2", T0), SEAT_BLOCKED);
    inv_count(inv, T0, count);
    CHECK_INT(count[SEAT_FREE], 13);
    CHECK_INT(count[SEAT_HELD], 0);
    CHECK_INT(count[SEAT_SOLD], 2);
    CHECK_INT(count[SEAT_BLOCKED], 1);

    /* A refund read back from the database frees the seat. */
    inv_load_seat(inv, seat(inv, "A3"), SEAT_FREE);
    CHECK_INT(inv->version, 4);
    CHECK_INT(check(inv, "A1 A2 A3", "alice", T0, listed), INV_TAKEN);
    CHECK_STR(listed, "A1 A2");
    inv_free(inv);
}

TEST(load_hold)
{
    struct show_inv *inv = show_of(block_rows);
    uint32_t seats[SEATS_MAX];
    size_t n = seats_of(inv, "C2 C4", seats);
    int64_t expires = T0 + HOLD_MS;

    uint32_t slot = inv_load_hold(inv, "db-1", "alice", seats, n, T0 - 5,
                                  expires, T0 + 2 * HOLD_MS, 2, 7700);
    CHECK_INT(slot, 1);
    CHECK_INT(inv->version, 1);
    CHECK_INT(inv->nholds, 1);
    const struct inv_hold *h = inv_hold_at(inv, slot);
    CHECK_STR(h->id, "db-1");
    CHECK_STR(h->customer, "alice");
    CHECK_INT(h->created_at, T0 - 5);
    CHECK_INT(h->expires_at, expires);
    CHECK_INT(h->max_expires_at, T0 + 2 * HOLD_MS);
    CHECK_INT(h->extensions, 2);
    CHECK_INT(h->total, 7700);
    CHECK(!h->pending && h->in_use);
    CHECK_INT(state_of(inv, "C2", expires - 1), SEAT_HELD);
    CHECK_INT(state_of(inv, "C4", expires), SEAT_FREE);
    CHECK_INT(inv->hold_slot[seat(inv, "C4")], slot);
    CHECK_INT(inv_find_hold(inv, "db-1"), slot);
    inv_free(inv);
}

TEST(load_hold_refuses_taken_seats)
{
    struct show_inv *inv = show_of(block_rows);
    uint32_t seats[SEATS_MAX];
    int64_t expires = T0 + HOLD_MS;

    inv_load_seat(inv, seat(inv, "A1"), SEAT_SOLD);
    hold(inv, "C1", "h1", "alice", T0, expires);
    reserve(inv, "C6", "h2", "alice", T0, expires);
    uint64_t version = inv->version;

    static const char *const clashes[] = {"C3 A1", "C1", "C6 C5"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = seats_of(inv, clashes[i], seats);
        CHECK_INT(inv_load_hold(inv, "db-2", "bob", seats, n, T0, expires,
                                expires, 0, 100),
                  0);
    }
    /* Nothing changed: no hold, no seat taken, no version. */
    CHECK_INT(inv->version, version);
    CHECK_INT(inv->nholds, 2);
    CHECK_INT(inv_find_hold(inv, "db-2"), 0);
    CHECK_INT(state_of(inv, "C3", T0), SEAT_FREE);
    CHECK_INT(state_of(inv, "C5", T0), SEAT_FREE);
    CHECK_INT(inv->hold_slot[seat(inv, "C5")], 0);
    inv_free(inv);
}

TEST(version_grows_with_every_change)
{
    struct show_inv *inv = show_of(block_rows);
    char listed[LIST_MAX];

    CHECK_INT(inv->version, 0);
    uint32_t a = reserve(inv, "C1", "h1", "alice", T0, T0 + HOLD_MS);
    CHECK_INT(inv->version, 1);
    inv_commit(inv, a);
    CHECK_INT(inv->version, 2);
    uint32_t b = reserve(inv, "C2", "h2", "alice", T0, T0 + HOLD_MS);
    CHECK_INT(inv->version, 3);
    inv_abort(inv, b);
    CHECK_INT(inv->version, 4);
    inv_end(inv, a, SEAT_FREE);
    CHECK_INT(inv->version, 5);
    inv_load_seat(inv, seat(inv, "C3"), SEAT_BLOCKED);
    CHECK_INT(inv->version, 6);

    /* Reading, checking, expiring by time and empty sweeps change nothing. */
    hold(inv, "C4", "h3", "alice", T0, T0 + HOLD_MS);
    CHECK_INT(inv->version, 8);
    CHECK_INT(check(inv, "C5", "bob", T0 + HOLD_MS, listed), INV_OK);
    CHECK_INT(state_of(inv, "C4", T0 + HOLD_MS), SEAT_FREE);
    CHECK_INT(inv_sweep(inv, T0, 10, NULL, NULL), 0);
    CHECK_INT(inv->version, 8);
    CHECK_INT(inv_sweep(inv, T0 + HOLD_MS, 10, NULL, NULL), 1);
    CHECK_INT(inv->version, 9);
    inv_free(inv);
}

/* Many holds come and go; their slots are reused, not piled up. */
TEST(slots_reused_after_end)
{
    struct show_inv *inv = show_of(block_rows);
    char id[INV_HOLD_ID_MAX];

    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "h%d", i);
        uint32_t a = reserve(inv, "C1 C2", id, "alice", T0, T0 + HOLD_MS);
        uint32_t b = hold(inv, "A5", "other", "bob", T0, T0 + HOLD_MS);
        inv_commit(inv, a);
        CHECK_INT(inv_find_hold(inv, id), a);
        inv_end(inv, a, SEAT_FREE);
        if (i % 2 == 0)
            inv_end(inv, b, SEAT_FREE);
        else
            CHECK_INT(inv_sweep(inv, T0 + HOLD_MS, 10, NULL, NULL), 1);
    }
    CHECK_INT(inv->nholds, 0);
    CHECK_INT(inv->holds_cap, 4);
    CHECK_INT(inv->version, 6000);
    inv_free(inv);
}

/* Past the first four slots the table grows and keeps every live hold. */
TEST(slots_grow_past_initial_capacity)
{
    struct show_inv *inv = show_of(block_rows);
    static const char *const ids[] = {"A1", "A2", "A3", "A4", "A5", "A6",
                                      "A7", "A8", "B1", "B2", "C1", "C2",
                                      "C3", "C4", "C5", "C6"};
    uint32_t slots[16];
    char hold_id[INV_HOLD_ID_MAX];

    for (uint32_t i = 0; i < 16; i++) {
        snprintf(hold_id, sizeof(hold_id), "h%u", i);
        slots[i] = hold(inv, ids[i], hold_id, "alice", T0, T0 + HOLD_MS + i);
        CHECK_INT(slots[i], i + 1);
        if (i == 4)
            CHECK_INT(inv->holds_cap, 8);
    }
    CHECK_INT(inv->holds_cap, 16);
    CHECK_INT(inv->nholds, 16);
    for (uint32_t i = 0; i < 16; i++) {
        const struct inv_hold *h = inv_hold_at(inv, slots[i]);

        snprintf(hold_id, sizeof(hold_id), "h%u", i);
        CHECK_INT(inv_find_hold(inv, hold_id), slots[i]);
        CHECK_INT(h->nseats, 1);
        CHECK_INT(h->seats[0], seat(inv, ids[i]));
        CHECK_INT(h->expires_at, T0 + HOLD_MS + i);
        CHECK_INT(inv->hold_slot[seat(inv, ids[i])], slots[i]);
        CHECK_INT(state_of(inv, ids[i], T0), SEAT_HELD);
    }

    /* A freed slot in the middle is taken before the table grows again. */
    inv_end(inv, slots[6], SEAT_FREE);
    uint32_t again = hold(inv, "A7", "h-again", "bob", T0, T0 + HOLD_MS);
    CHECK_INT(again, slots[6]);
    CHECK_INT(inv->holds_cap, 16);
    CHECK_INT(inv->nholds, 16);
    inv_free(inv);
}

/* --- verdicts --------------------------------------------------------- */

TEST(check_closed)
{
    struct show_inv *inv = show_of(block_rows);
    uint32_t seats[1] = {seat(inv, "C1")}, out[4] = {0};
    size_t nout = 4;
    char listed[LIST_MAX];

    CHECK_INT(check(inv, "C1", "alice", STARTS_AT - 1, listed), INV_OK);
    CHECK_INT(check(inv, "C1", "alice", STARTS_AT, listed), INV_CLOSED);
    CHECK_STR(listed, "");
    CHECK_INT(check(inv, "C1", "alice", STARTS_AT + 1, listed), INV_CLOSED);

    /* Closed comes before every other verdict, and lists nothing. */
    hold(inv, "C1", "h1", "bob", T0, T0 + HOLD_MS);
    CHECK_INT(inv_check(inv, seats, 1, "alice", STARTS_AT, &limits, out, &nout),
              INV_CLOSED);
    CHECK_INT(nout, 0);

    inv->cancelled = true;
    CHECK_INT(check(inv, "C2", "alice", T0, listed), INV_CLOSED);
    CHECK_STR(listed, "");
    CHECK_INT(check(inv, "C1", "alice", T0, listed), INV_CLOSED);
    inv_free(inv);
}

TEST(check_too_many)
{
    struct show_inv *inv = show_of(block_rows);
    struct inv_limits lim = {.max_seats_per_hold = 4,
                             .max_seats_per_customer = 100};
    char listed[LIST_MAX];

    CHECK_INT(check_lim(inv, "C1 C2 C3 C4", "alice", T0, &lim, listed), INV_OK);
    CHECK_INT(check_lim(inv, "C1 C2 C3 C4 C5", "alice", T0, &lim, listed),
              INV_TOO_MANY);
    CHECK_STR(listed, "");
    /* Too many comes before taken. */
    hold(inv, "C1", "h1", "bob", T0, T0 + HOLD_MS);
    CHECK_INT(check_lim(inv, "C1 C2 C3 C4 C5", "alice", T0, &lim, listed),
              INV_TOO_MANY);
    CHECK_STR(listed, "");
    inv_free(inv);
}

TEST(check_taken_lists_exactly_the_taken)
{
    struct show_inv *inv = show_of(block_rows);
    char listed[LIST_MAX];

    reserve(inv, "A1", "h1", "bob", T0, T0 + HOLD_MS);
    hold(inv, "A3", "h2", "bob", T0, T0 + HOLD_MS);
    inv_load_seat(inv, seat(inv, "A5"), SEAT_SOLD);
    inv_load_seat(inv, seat(inv, "A6"), SEAT_BLOCKED);

    CHECK_INT(check(inv, "A6 A2 A1 A4 A3 A5", "alice", T0, listed), INV_TAKEN);
    CHECK_STR(listed, "A6 A1 A3 A5");
    CHECK_INT(check(inv, "A2 A3", "alice", T0, listed), INV_TAKEN);
    CHECK_STR(listed, "A3");
    /* The customer's own seats are taken for them too. */
    CHECK_INT(check(inv, "A1", "bob", T0, listed), INV_TAKEN);
    CHECK_STR(listed, "A1");
    /* Once h2 has expired only the pending, sold and blocked are taken. */
    CHECK_INT(check(inv, "A6 A2 A1 A4 A3 A5", "alice", T0 + HOLD_MS, listed),
              INV_TAKEN);
    CHECK_STR(listed, "A6 A1 A5");
    inv_free(inv);
}

/* The verdict is the same whatever room the caller leaves for the list. */
TEST(check_verdict_independent_of_list_room)
{
    struct show_inv *inv = show_of(block_rows);
    uint32_t seats[SEATS_MAX], out[1] = {0};
    size_t n, nout;
    char listed[LIST_MAX];

    hold(inv, "C1 C2 C3", "h1", "bob", T0, T0 + HOLD_MS);
    n = seats_of(inv, "C4 C3 C2", seats);
    nout = 1;
    CHECK_INT(inv_check(inv, seats, n, "alice", T0, &limits, out, &nout),
              INV_TAKEN);
    CHECK_INT(nout, 1);
    CHECK_INT(out[0], seat(inv, "C3"));
    nout = 0;
    CHECK_INT(inv_check(inv, seats, n, "alice", T0, &limits, out, &nout),
              INV_TAKEN);
    CHECK_INT(nout, 0);

    /* A4 strands A3; C5 strands C4 and C6. */
    inv->no_orphan = true;
    hold(inv, "A2", "h2", "bob", T0, T0 + HOLD_MS);
    CHECK_INT(check(inv, "A4 C5", "alice", T0, listed), INV_ORPHAN);
    CHECK_STR(listed, "A3 C4 C6");
    n = seats_of(inv, "A4 C5", seats);
    nout = 1;
    CHECK_INT(inv_check(inv, seats, n, "alice", T0, &limits, out, &nout),
              INV_ORPHAN);
    CHECK_INT(nout, 1);
    CHECK_INT(out[0], seat(inv, "A3"));
    nout = 0;
    CHECK_INT(inv_check(inv, seats, n, "alice", T0, &limits, out, &nout),
              INV_ORPHAN);
    CHECK_INT(nout, 0);
    inv_free(inv);
}

TEST(check_customer_limit)
{
    struct show_inv *inv = show_of(block_rows);
    struct inv_limits lim = {.max_seats_per_hold = 6,
                             .max_seats_per_customer = 4};
    int64_t soon = T0 + MINUTE_MS, later = T0 + HOLD_MS;
    char listed[LIST_MAX];

    hold(inv, "C1 C2", "h1", "alice", T0, later);
    reserve(inv, "C3", "h2", "alice", T0, soon);
    /* Other customers' holds, and ended ones, do not count. */
    hold(inv, "A1 A2 A3", "h3", "bob", T0, later);
    uint32_t sold = hold(inv, "A5 A6", "h4", "alice", T0, later);
    inv_end(inv, sold, SEAT_SOLD);

    /* 2 held + 1 pending + 1 = 4: at the limit is fine. */
    CHECK_INT(check_lim(inv, "C4", "alice", T0, &lim, listed), INV_OK);
    CHECK_INT(check_lim(inv, "C4 C5", "alice", T0, &lim, listed),
              INV_CUSTOMER_LIMIT);
    CHECK_STR(listed, "");
    CHECK_INT(check_lim(inv, "C4 C5 C6", "bob", T0, &lim, listed),
              INV_CUSTOMER_LIMIT);
    CHECK_INT(check_lim(inv, "C4", "bob", T0, &lim, listed), INV_OK);
    CHECK_INT(check_lim(inv, "C4 C5 C6 B1", "carol", T0, &lim, listed), INV_OK);
    /* Taken comes before the customer's limit. */
    CHECK_INT(check_lim(inv, "C4 C5 A1", "alice", T0, &lim, listed), INV_TAKEN);
    CHECK_STR(listed, "A1");

    /* The pending hold counts long after its expiry time... */
    CHECK_INT(check_lim(inv, "C4 C5", "alice", later - 1, &lim, listed),
              INV_CUSTOMER_LIMIT);
    /* ...but the committed one stops counting once it has expired. */
    CHECK_INT(check_lim(inv, "C4 C5", "alice", later, &lim, listed), INV_OK);
    CHECK_INT(check_lim(inv, "C4 C5 C6 B1", "alice", later, &lim, listed),
              INV_CUSTOMER_LIMIT);
    CHECK_INT(check_lim(inv, "C4 C5 C6", "alice", later, &lim, listed), INV_OK);
    inv_free(inv);
}

/* A customer id as long as the limit allows is compared whole. */
TEST(check_customer_limit_long_id)
{
    struct show_inv *inv = show_of(block_rows);
    struct inv_limits lim = {.max_seats_per_hold = 6,
                             .max_seats_per_customer = 2};
    char customer[INV_CUSTOMER_MAX + 1], other[INV_CUSTOMER_MAX + 1];
    char listed[LIST_MAX];

    memset(customer, 'c', INV_CUSTOMER_MAX);
    customer[INV_CUSTOMER_MAX] = '\0';
    memcpy(other, customer, sizeof(other));
    other[INV_CUSTOMER_MAX - 1] = 'd';
    hold(inv, "C1 C2", "h1", customer, T0, T0 + HOLD_MS);
    CHECK_STR(inv_hold_at(inv, 1)->customer, customer);
    CHECK_INT(check_lim(inv, "C3", customer, T0, &lim, listed),
              INV_CUSTOMER_LIMIT);
    CHECK_INT(check_lim(inv, "C3", other, T0, &lim, listed), INV_OK);
    inv_free(inv);
}

/* --- orphans ---------------------------------------------------------- */

/* A show that refuses orphans; row A is 1-4 | 5-7 | 8, B is 1-2. */
static struct show_inv *strict_show(void)
{
    struct show_inv *inv = show_of(block_rows);

    inv->no_orphan = true;
    return inv;
}

TEST(orphan_second_of_four_strands_the_first)
{
    struct show_inv *inv = strict_show();
    char listed[LIST_MAX];

    CHECK_INT(check(inv, "A2", "alice", T0, listed), INV_ORPHAN);
    CHECK_STR(listed, "A1");
    CHECK_INT(check(inv, "A3", "alice", T0, listed), INV_ORPHAN);
    CHECK_STR(listed, "A4");
    CHECK_INT(check(inv, "A2 A3", "alice", T0, listed), INV_ORPHAN);
    CHECK_STR(listed, "A1 A4");
    /* In a pair, one seat strands the other. */
    CHECK_INT(check(inv, "B2", "alice", T0, listed), INV_ORPHAN);
    CHECK_STR(listed, "B1");
    inv_free(inv);
}

TEST(orphan_none_from_block_ends)
{
    struct show_inv *inv = strict_show();
    char listed[LIST_MAX];

    CHECK_INT(check(inv, "A1 A2", "alice", T0, listed), INV_OK);
    CHECK_STR(listed, "");
    CHECK_INT(check(inv, "A3 A4", "alice", T0, listed), INV_OK);
    CHECK_INT(check(inv, "A1", "alice", T0, listed), INV_OK);
    CHECK_INT(check(inv, "A1 A2 A3 A4", "alice", T0, listed), INV_OK);
    CHECK_INT(check(inv, "B1 B2", "alice", T0, listed), INV_OK);
    CHECK_INT(check(inv, "A5 A6 A7", "alice", T0, listed), INV_OK);
    inv_free(inv);
}

TEST(orphan_middle_of_three_strands_both)
{
    struct show_inv *inv = strict_show();
    char listed[LIST_MAX];

    CHECK_INT(check(inv, "A6", "alice", T0, listed), INV_ORPHAN);
    CHECK_STR(listed, "A5 A7");
    /* Across rows, each row's stranded seats are listed. */
    CHECK_INT(check(inv, "B1 A6 C1", "alice", T0, listed), INV_ORPHAN);
    CHECK_STR(listed, "B2 A5 A7");
    inv_free(inv);
}

TEST(orphan_single_seat_block_never)
{
    struct show_inv *inv = strict_show();
    char listed[LIST_MAX];

    /* A8 stands alone between gaps: taking all around it strands nothing. */
    CHECK_INT(check(inv, "A5 A6 A7", "alice", T0, listed), INV_OK);
    hold(inv, "A5 A6 A7", "h1", "bob", T0, T0 + HOLD_MS);
    CHECK_INT(check(inv, "A8", "alice", T0, listed), INV_OK);
    CHECK_INT(check(inv, "A1 A2 A3 A4", "alice", T0, listed), INV_OK);
    inv_free(inv);
}

TEST(orphan_already_stranded_does_not_count)
{
    struct show_inv *inv = strict_show();
    char listed[LIST_MAX];

    /* Loaded from the database: A2 sold, so A1 is stranded already. */
    inv_load_seat(inv, seat(inv, "A2"), SEAT_SOLD);
    CHECK_INT(check(inv, "A3 A4", "alice", T0, listed), INV_OK);
    CHECK_STR(listed, "");
    CHECK_INT(check(inv, "A4", "alice", T0, listed), INV_ORPHAN);
    CHECK_STR(listed, "A3");

    /* The same when a hold stranded it. */
    hold(inv, "C2", "h1", "bob", T0, T0 + HOLD_MS);
    CHECK_INT(check(inv, "C3 C4", "alice", T0, listed), INV_OK);
    CHECK_INT(check(inv, "C4", "alice", T0, listed), INV_ORPHAN);
    CHECK_STR(listed, "C3");
    /* Filling the stranded seat is always fine. */
    CHECK_INT(check(inv, "C1", "alice", T0, listed), INV_OK);
    CHECK_INT(check(inv, "A1", "alice", T0, listed), INV_OK);
    inv_free(inv);
}

TEST(orphan_expired_neighbours_are_free)
{
    struct show_inv *inv = strict_show();
    int64_t expires = T0 + HOLD_MS;
    char listed[LIST_MAX];

    hold(inv, "A1", "h1", "bob", T0, expires);
    CHECK_INT(check(inv, "A2", "alice", expires - 1, listed), INV_OK);
    CHECK_INT(check(inv, "A2", "alice", expires, listed), INV_ORPHAN);
    CHECK_STR(listed, "A1");
    inv_free(inv);
}

TEST(orphan_allowed_when_not_enforced)
{
    struct show_inv *inv = show_of(block_rows);
    char listed[LIST_MAX];

    CHECK(!inv->no_orphan);
    CHECK_INT(check(inv, "A2", "alice", T0, listed), INV_OK);
    CHECK_INT(check(inv, "A6", "alice", T0, listed), INV_OK);
    CHECK_INT(check(inv, "B1", "alice", T0, listed), INV_OK);
    CHECK_INT(check(inv, "A2 A3 A6 B2", "alice", T0, listed), INV_OK);
    CHECK_STR(listed, "");
    inv_free(inv);
}

/* --- randomized run --------------------------------------------------- */

#define PROP_STEPS          10000
#define PROP_HOLDS_MAX      48
#define PROP_CUSTOMERS      2
#define PROP_HOLD_SEATS_MAX 5

static const char *const prop_rows =
    "{'label': 'A', 'category': 'std',"
    " 'seats': [1, 2, 3, null, 4, 5, 6, 7, null, 8]},"
    "{'label': 'B', 'category': 'std', 'seats': [1, 2, 3, 4, 5, 6]},"
    "{'label': 'C', 'category': 'vip',"
    " 'seats': [null, 1, 2, null, 3, null, 4, 5]},"
    "{'label': 'D', 'category': 'vip', 'seats': [1, 2, 3, 4, 5, 6, 7, 8]}";

/* What the test believes, kept apart from the inventory's own records. */
struct model_hold {
    uint32_t serial; /* never reused, unlike slots */
    uint32_t slot;
    char id[16];
    int customer;
    uint32_t seats[PROP_HOLD_SEATS_MAX];
    size_t n;
    bool pending;
    int64_t expires_at;
};

struct model {
    struct show_inv *inv;
    int64_t now;
    uint64_t rng;
    uint32_t serial;
    struct model_hold holds[PROP_HOLDS_MAX];
    size_t nholds;
    uint32_t owner[SEATS_MAX]; /* serial of the hold that last took it */
    bool sold[SEATS_MAX];
    size_t seen[INV_ORPHAN + 1], expired, sold_count;
};

static const char *const customers[PROP_CUSTOMERS] = {"ann", "ben"};

/* Tight enough that the random run meets every verdict often. */
static const struct inv_limits prop_limits = {
    .max_seats_per_hold = 4,
    .max_seats_per_customer = 5,
};

/* splitmix64: a fixed seed gives the same run every time. */
static uint32_t rnd(struct model *md, uint32_t below)
{
    uint64_t z = (md->rng += 0x9E3779B97F4A7C15ull);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) % below);
}

static struct model_hold *model_find(struct model *md, uint32_t serial)
{
    for (size_t i = 0; i < md->nholds; i++)
        if (md->holds[i].serial == serial)
            return &md->holds[i];
    return NULL;
}

static bool model_live(const struct model *md, const struct model_hold *h)
{
    return h->pending || h->expires_at > md->now;
}

static enum seat_state model_state(struct model *md, uint32_t s)
{
    const struct model_hold *h = model_find(md, md->owner[s]);

    if (h == NULL)
        return md->sold[s] ? SEAT_SOLD : SEAT_FREE;
    if (h->pending)
        return SEAT_PENDING;
    return model_live(md, h) ? SEAT_HELD : SEAT_FREE;
}

static bool model_taken(struct model *md, uint32_t s, const uint32_t *req,
                        size_t n)
{
    if (model_state(md, s) != SEAT_FREE)
        return true;
    for (size_t i = 0; i < n; i++)
        if (req[i] == s)
            return true;
    return false;
}

/* A free seat walled in on both sides, in a block of two or more. */
static bool model_stranded(struct model *md, const struct seatmap_row *r,
                           uint32_t p, const uint32_t *req, size_t n)
{
    const int32_t *pos = &md->inv->map->positions[r->first];
    bool left = p > 0 && pos[p - 1] >= 0;
    bool right = p + 1 < r->npos && pos[p + 1] >= 0;

    if (pos[p] < 0 || model_taken(md, (uint32_t)pos[p], req, n))
        return false;
    if (!left && !right)
        return false;
    return (!left || model_taken(md, (uint32_t)pos[p - 1], req, n)) &&
           (!right || model_taken(md, (uint32_t)pos[p + 1], req, n));
}

/* The verdict the model expects, with the seats it should list. */
static enum inv_verdict model_verdict(struct model *md, const uint32_t *req,
                                      size_t n, int customer, uint32_t *out,
                                      size_t *nout)
{
    size_t mine = 0;

    *nout = 0;
    if (n > (size_t)prop_limits.max_seats_per_hold)
        return INV_TOO_MANY;
    for (size_t i = 0; i < n; i++)
        if (model_state(md, req[i]) != SEAT_FREE)
            out[(*nout)++] = req[i];
    if (*nout > 0)
        return INV_TAKEN;
    for (size_t i = 0; i < md->nholds; i++)
        if (md->holds[i].customer == customer && model_live(md, &md->holds[i]))
            mine += md->holds[i].n;
    if (mine + n > (size_t)prop_limits.max_seats_per_customer)
        return INV_CUSTOMER_LIMIT;
    if (!md->inv->no_orphan)
        return INV_OK;
    for (size_t i = 0; i < n; i++) {
        uint16_t row = md->inv->map->seats[req[i]].row;
        bool again = false;
        for (size_t j = 0; j < i; j++)
            again = again || md->inv->map->seats[req[j]].row == row;
        const struct seatmap_row *r = &md->inv->map->rows[row];
        for (uint32_t p = 0; p < r->npos && !again; p++)
            if (model_stranded(md, r, p, req, n) &&
                !model_stranded(md, r, p, req, 0))
                out[(*nout)++] =
                    (uint32_t)md->inv->map->positions[r->first + p];
    }
    return *nout > 0 ? INV_ORPHAN : INV_OK;
}

/* Checks random seats and, when the inventory says yes, reserves them. */
static void prop_try_hold(struct model *md)
{
    struct show_inv *inv = md->inv;
    uint32_t req[PROP_HOLD_SEATS_MAX], out[SEATS_MAX], want[SEATS_MAX];
    size_t n = 1 + rnd(md, PROP_HOLD_SEATS_MAX), nout = SEATS_MAX, nwant;
    int customer = (int)rnd(md, PROP_CUSTOMERS);
    uint64_t version = inv->version;

    for (size_t i = 0; i < n; i++) {
        bool dup = true;
        while (dup) {
            req[i] = rnd(md, inv->map->nseats);
            dup = false;
            for (size_t j = 0; j < i; j++)
                dup = dup || req[j] == req[i];
        }
    }
    inv->no_orphan = rnd(md, 2) == 0;
    enum inv_verdict v = inv_check(inv, req, n, customers[customer], md->now,
                                   &prop_limits, out, &nout);
    enum inv_verdict expect = model_verdict(md, req, n, customer, want, &nwant);
    CHECK_INT(v, expect);
    CHECK_INT(nout, nwant);
    for (size_t i = 0; i < nout; i++)
        CHECK_INT(out[i], want[i]);
    CHECK_INT(inv->version, version);
    md->seen[v]++;
    if (v != INV_OK || md->nholds == PROP_HOLDS_MAX)
        return;

    struct model_hold *h = &md->holds[md->nholds++];
    *h = (struct model_hold){.serial = ++md->serial,
                             .customer = customer,
                             .n = n,
                             .pending = true,
                             .expires_at = md->now + 1 + rnd(md, 400)};
    snprintf(h->id, sizeof(h->id), "p%u", h->serial);
    memcpy(h->seats, req, n * sizeof(req[0]));
    h->slot = inv_reserve(inv, req, n, h->id, customers[customer], md->now,
                          h->expires_at, h->expires_at, 100);
    CHECK(h->slot >= 1);
    CHECK_INT(inv->version, version + 1);
    for (size_t i = 0; i < n; i++)
        md->owner[req[i]] = h->serial;
}

/* A random hold of the model, pending or committed as asked, or NULL. */
static struct model_hold *prop_pick(struct model *md, bool pending)
{
    size_t start = md->nholds ? rnd(md, (uint32_t)md->nholds) : 0;

    for (size_t k = 0; k < md->nholds; k++) {
        struct model_hold *h = &md->holds[(start + k) % md->nholds];
        if (h->pending == pending)
            return h;
    }
    return NULL;
}

/* The model's side of inv_end: seats still owned by h become st. */
static void model_end(struct model *md, struct model_hold *h,
                      enum seat_state st)
{
    for (size_t i = 0; i < h->n; i++) {
        if (md->owner[h->seats[i]] != h->serial)
            continue;
        md->owner[h->seats[i]] = 0;
        md->sold[h->seats[i]] = st == SEAT_SOLD;
    }
    *h = md->holds[--md->nholds];
}

static void prop_end(struct model *md, bool pending)
{
    struct model_hold *h = prop_pick(md, pending);
    uint64_t version = md->inv->version;

    if (h == NULL)
        return;
    if (pending) {
        inv_abort(md->inv, h->slot);
        model_end(md, h, SEAT_FREE);
    } else {
        enum seat_state st = rnd(md, 4) == 0 ? SEAT_SOLD : SEAT_FREE;
        md->sold_count += st == SEAT_SOLD;
        inv_end(md->inv, h->slot, st);
        model_end(md, h, st);
    }
    CHECK_INT(md->inv->version, version + 1);
}

static void prop_commit(struct model *md)
{
    struct model_hold *h = prop_pick(md, true);

    if (h == NULL)
        return;
    inv_commit(md->inv, h->slot);
    h->pending = false;
}

static void prop_on_expired(void *arg, const struct inv_hold *h)
{
    struct model *md = arg;
    uint32_t serial = (uint32_t)strtoul(h->id + 1, NULL, 10);
    struct model_hold *mh = model_find(md, serial);

    CHECK(mh != NULL);
    CHECK(!mh->pending && mh->expires_at <= md->now);
    CHECK_INT(h->nseats, mh->n);
    model_end(md, mh, SEAT_FREE);
    md->expired++;
}

static void prop_sweep(struct model *md)
{
    size_t due = 0, max = 1 + rnd(md, 3);
    uint64_t version = md->inv->version;

    for (size_t i = 0; i < md->nholds; i++)
        due += !model_live(md, &md->holds[i]);
    size_t want = due < max ? due : max;
    CHECK_INT(inv_sweep(md->inv, md->now, max, prop_on_expired, md), want);
    CHECK_INT(md->inv->version, version + want);
}

/* A sold seat refunded: the database says it is free again. */
static void prop_refund(struct model *md)
{
    uint32_t s = rnd(md, md->inv->map->nseats);

    if (model_state(md, s) != SEAT_SOLD)
        return;
    inv_load_seat(md->inv, s, SEAT_FREE);
    md->sold[s] = false;
}

/* The invariants, and the inventory's view against the model's. */
static void prop_verify(struct model *md)
{
    const struct show_inv *inv = md->inv;
    size_t count[4], want[4] = {0}, in_use = 0;

    for (uint32_t s = 0; s < inv->map->nseats; s++) {
        enum seat_state st = inv_seat_state(inv, s, md->now);
        uint32_t slot = inv->hold_slot[s];
        bool holds_it =
            inv->state[s] == SEAT_HELD || inv->state[s] == SEAT_PENDING;
        size_t live = 0;

        CHECK_INT(st, model_state(md, s));
        want[st == SEAT_PENDING ? SEAT_HELD : st]++;
        CHECK_INT(slot != 0, holds_it);
        if (slot != 0) {
            CHECK(slot <= inv->holds_cap);
            const struct inv_hold *h = &inv->holds[slot - 1];
            bool listed = false;
            CHECK(h->in_use);
            CHECK_INT(h->pending, inv->state[s] == SEAT_PENDING);
            for (uint32_t i = 0; i < h->nseats; i++)
                listed = listed || h->seats[i] == s;
            CHECK(listed);
            if (st != SEAT_FREE)
                CHECK(h->pending || h->expires_at > md->now);
        }
        /* No seat belongs to two live holds. */
        for (uint32_t k = 0; k < inv->holds_cap; k++) {
            const struct inv_hold *h = &inv->holds[k];
            if (!h->in_use || (!h->pending && h->expires_at <= md->now))
                continue;
            for (uint32_t i = 0; i < h->nseats; i++)
                if (h->seats[i] == s) {
                    live++;
                    CHECK_INT(slot, k + 1);
                }
        }
        CHECK(live <= 1);
    }
    inv_count(inv, md->now, count);
    for (int i = 0; i < 4; i++)
        CHECK_INT(count[i], want[i]);

    for (uint32_t k = 0; k < inv->holds_cap; k++)
        in_use += inv->holds[k].in_use;
    CHECK_INT(in_use, md->nholds);
    CHECK_INT(inv->nholds, md->nholds);
    for (size_t i = 0; i < md->nholds; i++) {
        const struct model_hold *h = &md->holds[i];
        CHECK_INT(inv_find_hold(inv, h->id), h->slot);
        CHECK_INT(inv->holds[h->slot - 1].pending, h->pending);
    }
}

TEST(random_operations_keep_invariants)
{
    static struct model md;

    md = (struct model){.inv = show_of(prop_rows), .now = T0, .rng = 20240611};
    CHECK(md.inv->map->nseats <= SEATS_MAX);
    for (int step = 0; step < PROP_STEPS; step++) {
        uint32_t op = rnd(&md, 100);

        md.now += rnd(&md, 20);
        if (op < 40)
            prop_try_hold(&md);
        else if (op < 58)
            prop_commit(&md);
        else if (op < 66)
            prop_end(&md, true);
        else if (op < 78)
            prop_end(&md, false);
        else if (op < 90)
            prop_sweep(&md);
        else if (op < 95)
            prop_refund(&md);
        prop_verify(&md);
    }
    /* The run went through every path it is meant to. */
    CHECK(md.seen[INV_OK] > 300);
    CHECK(md.seen[INV_TAKEN] > 1000);
    CHECK(md.seen[INV_TOO_MANY] > 300);
    CHECK(md.seen[INV_CUSTOMER_LIMIT] > 20);
    CHECK(md.seen[INV_ORPHAN] > 100);
    CHECK(md.expired > 50);
    CHECK(md.sold_count > 50);
    CHECK(md.inv->holds_cap <= 64);
    inv_free(md.inv);
}

HARNESS_MAIN(
    T(held_seats_count_live_committed_holds), T(seatmap_indexes_in_row_order),
    T(seatmap_categories_and_flags), T(seatmap_find_unknown_ids),
    T(seatmap_realistic_round_trip), T(seatmap_digit_labels),
    T(seatmap_refuses_ambiguous_ids), T(seatmap_refuses_invalid_layout),
    T(seatmap_reference_counting), T(new_show_is_all_free),
    T(held_until_expiry_then_free), T(pending_never_expires_by_time),
    T(expired_seats_can_be_held_again),
    T(expired_hold_ended_late_leaves_new_holder),
    T(sweep_ends_expired_committed_holds), T(sweep_respects_max),
    T(sweep_spares_seats_held_again), T(reserve_commit_end),
    T(release_and_abort_free_seats), T(checkout_pin_ends_with_its_hold),
    T(hold_of_no_seats_in_reused_slot), T(find_hold), T(load_seats),
    T(load_hold), T(load_hold_refuses_taken_seats),
    T(version_grows_with_every_change), T(slots_reused_after_end),
    T(slots_grow_past_initial_capacity), T(check_closed), T(check_too_many),
    T(check_taken_lists_exactly_the_taken),
    T(check_verdict_independent_of_list_room), T(check_customer_limit),
    T(check_customer_limit_long_id), T(orphan_second_of_four_strands_the_first),
    T(orphan_none_from_block_ends), T(orphan_middle_of_three_strands_both),
    T(orphan_single_seat_block_never),
    T(orphan_already_stranded_does_not_count),
    T(orphan_expired_neighbours_are_free), T(orphan_allowed_when_not_enforced),
    T(random_operations_keep_invariants))
