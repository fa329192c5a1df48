/*
 * inventory.h - the seats of one show in memory, and holds on them.
 *
 * A `struct seatmap` is a screen's layout turned into arrays: seats are
 * numbered 0..nseats-1 in row order, and a seat id ("A12") finds its index.
 * It is immutable and shared by every show on that screen.
 *
 * A `struct show_inv` is one show's state: a byte per seat and the hold
 * that holds it.  It answers "can these seats be held?" without any I/O.
 * A held seat whose hold has expired counts as free everywhere, so expiry
 * never waits for a sweeper.  A show's inventory is used by one thread
 * only (its owner); nothing here locks.
 *
 * Holds move through: reserve (seats pending: taken for everyone else,
 * while the database write runs) -> commit (held) or abort (free again);
 * then release, expire, or extend.
 */
#ifndef MARQUEE_DOMAIN_INVENTORY_H
#define MARQUEE_DOMAIN_INVENTORY_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "domain/layout.h"

#define INV_HOLD_ID_MAX  40
#define INV_CUSTOMER_MAX 64 /* HTTP_CUSTOMER_MAX */
#define INV_SEAT_ID_MAX  12 /* "ABCD999" and a NUL, with room */

enum seat_state {
    SEAT_FREE = 0,
    SEAT_HELD = 1,
    SEAT_SOLD = 2,
    SEAT_BLOCKED = 3,
    SEAT_PENDING = 4, /* reserved for a hold whose write is in flight */
};

struct seatmap_row {
    char label[5];
    uint8_t category;
    uint32_t first; /* index into seatmap.positions */
    uint32_t npos;
};

struct seatmap_seat {
    uint16_t row;
    uint16_t pos; /* position within the row, gaps counted */
    uint16_t number;
    uint8_t category;
    uint8_t flags; /* SEATMAP_ACCESSIBLE, SEATMAP_COMPANION */
};

#define SEATMAP_ACCESSIBLE 1
#define SEATMAP_COMPANION  2

struct seatmap {
    atomic_int refs; /* shows on several threads share one map */
    uint32_t nseats;
    uint32_t nrows;
    uint32_t ncategories;
    char categories[LAYOUT_CATEGORIES_MAX][LAYOUT_CATEGORY_CODE_MAX + 1];
    struct seatmap_row *rows;
    int32_t *positions; /* per row position: seat index, or -1 for a gap */
    struct seatmap_seat *seats;
    uint32_t *lookup; /* open addressing: seat index + 1, 0 = empty */
    uint32_t lookup_cap;
};

/*
 * Builds a seatmap from a normalized layout (as the catalog serves it).
 * Returns NULL if the layout is not valid.  The result has one reference.
 */
struct seatmap *seatmap_build(json_t *layout);
/* References may be taken and dropped on any thread. */
void seatmap_ref(struct seatmap *m);
void seatmap_unref(struct seatmap *m);

/* The index of a seat id such as "A12", or -1 when the map has none. */
int32_t seatmap_find(const struct seatmap *m, const char *seat_id);

/* Writes a seat's id ("A12") into out. */
void seatmap_seat_id(const struct seatmap *m, uint32_t seat,
                     char out[INV_SEAT_ID_MAX]);

struct inv_hold {
    char id[INV_HOLD_ID_MAX];
    char customer[INV_CUSTOMER_MAX + 1];
    int64_t created_at, expires_at, max_expires_at; /* epoch ms */
    int extensions;
    int64_t total;
    uint32_t nseats;
    uint32_t *seats;
    bool pending; /* reserved, database write in flight */
    bool in_use;
    /* Its checkout's charge is in flight: a release is refused meanwhile
     * (the hold still ends at expires_at, see docs/internals/booking.md). */
    bool in_checkout;
};

struct show_inv {
    int64_t show_id;
    int64_t catalog_version;
    int64_t starts_at; /* epoch ms */
    int hold_seconds;
    bool cancelled;
    bool no_orphan;
    char currency[4];
    int64_t prices[LAYOUT_CATEGORIES_MAX];
    struct seatmap *map;
    uint8_t *state;      /* per seat, enum seat_state */
    uint32_t *hold_slot; /* per seat: 1 + index into holds, or 0 */
    struct inv_hold *holds;
    uint32_t nholds, holds_cap;
    uint32_t free_slot_hint;
    uint64_t version; /* grows with every change: the seat map's ETag */
};

/* Creates an empty (all free) inventory; takes a reference to map. */
struct show_inv *inv_new(int64_t show_id, struct seatmap *map);
void inv_free(struct show_inv *inv);

/* The seat's state as the world sees it at now_ms (expired holds: free). */
enum seat_state inv_seat_state(const struct show_inv *inv, uint32_t seat,
                               int64_t now_ms);

struct inv_limits {
    int max_seats_per_hold;
    int max_seats_per_customer;
};

enum inv_verdict {
    INV_OK,
    INV_CLOSED,         /* cancelled or started */
    INV_TOO_MANY,       /* more seats than a hold may have */
    INV_CUSTOMER_LIMIT, /* the customer would hold too many in this show */
    INV_TAKEN,          /* some seats are not free: listed */
    INV_ORPHAN,         /* would leave a single seat stranded: listed */
};

/*
 * Checks whether seats (distinct indexes) may be held by customer at now_ms.
 * On INV_TAKEN or INV_ORPHAN, the seats at fault are written to out: at
 * most *nout on entry, and *nout gets how many were written.  The verdict
 * never depends on that room.
 */
enum inv_verdict inv_check(const struct show_inv *inv, const uint32_t *seats,
                           size_t n, const char *customer, int64_t now_ms,
                           const struct inv_limits *lim, uint32_t *out,
                           size_t *nout);

/*
 * Reserves seats (after inv_check said INV_OK) under a new pending hold;
 * returns its slot (>= 1), or 0 when out of memory.
 */
uint32_t inv_reserve(struct show_inv *inv, const uint32_t *seats, size_t n,
                     const char *hold_id, const char *customer, int64_t now_ms,
                     int64_t expires_at, int64_t max_expires_at, int64_t total);

/* The database accepted the hold: its seats become held. */
void inv_commit(struct show_inv *inv, uint32_t slot);

/* The database refused it: its seats are free again, the slot gone. */
void inv_abort(struct show_inv *inv, uint32_t slot);

/* Ends a hold (released, expired, or bought): its seats become state. */
void inv_end(struct show_inv *inv, uint32_t slot, enum seat_state state);

/* The slot of a hold by id, or 0. */
uint32_t inv_find_hold(const struct show_inv *inv, const char *hold_id);
struct inv_hold *inv_hold_at(struct show_inv *inv, uint32_t slot);

/*
 * Calls fn for every committed hold expired at now_ms, then frees its
 * seats.  Returns how many expired.  At most max are handled per call,
 * so one call stays short; the rest wait for the next.
 */
size_t inv_sweep(struct show_inv *inv, int64_t now_ms, size_t max,
                 void (*fn)(void *arg, const struct inv_hold *h), void *arg);

/* Sets a seat's state when loading from the database (no hold). */
void inv_load_seat(struct show_inv *inv, uint32_t seat, enum seat_state st);

/*
 * Adds a committed hold read from the database.  Returns its slot, or 0
 * if a seat is already taken in memory (the caller trusts the database
 * and reloads).
 */
uint32_t inv_load_hold(struct show_inv *inv, const char *hold_id,
                       const char *customer, const uint32_t *seats, size_t n,
                       int64_t created_at, int64_t expires_at,
                       int64_t max_expires_at, int extensions, int64_t total);

/*
 * Seats of committed holds still live at now_ms.  It walks the holds, not
 * the seats, so it costs the number of hold slots of the show.
 */
size_t inv_held_seats(const struct show_inv *inv, int64_t now_ms);

/* Counts seats by effective state at now_ms: out[SEAT_FREE..SEAT_BLOCKED]. */
void inv_count(const struct show_inv *inv, int64_t now_ms, size_t out[4]);

#endif
