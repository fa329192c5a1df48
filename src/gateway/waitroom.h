/*
 * waitroom.h - the waiting room of one show whose sale is marked hot.
 *
 * An operator gives the opening time, an admission rate per second and
 * the life of a pass.  Visitors who join before the opening all arrive
 * "at once": each gets a uniformly random place among them (an
 * inside-out Fisher-Yates shuffle as they join, drawn from the caller's
 * struct rand), so being first to reload the page gains nothing.  Those
 * who join at or after the opening queue behind them in arrival order.
 *
 * Admission runs on a grid of slots from the opening: slot k opens at
 * opens_at + ceil(k x 1000 / rate) ms, so exactly floor(e x rate / 1000)
 * + 1 slots have opened e ms after the opening.  Place i (0-based) of the
 * early arrivals takes slot i; a later arrival takes the next unused slot,
 * or, when the queue has emptied, the first slot not yet in the past: a
 * quiet spell does not bank admissions for a burst.  A visitor is admitted
 * when their slot opens, and their pass is valid until the slot's time
 * plus pass_ttl_ms (fixed: asking again does not extend it).
 *
 * Visitor ids go to the visitor as text, "<seq>-<mac>", where the mac is
 * an HMAC of the room's show, epoch and seq: a visitor cannot ask after,
 * or take the pass of, a place that is not theirs.  A pass is made for
 * one customer: the first to claim a place owns it, and its pass,
 * "<show>.<visitor seq>.<expires_ms>.<mac>", has a mac over the customer
 * too, so it is good for that customer only.  Any gateway sharing the
 * secret checks it against the show, the customer and the wall clock.
 *
 * Plain data: no I/O, no clock read, no lock.  now_ms is wall-clock
 * milliseconds (opening times and pass expiry are wall times shared by
 * every gateway); a now_ms older than one already seen counts as the
 * newest seen.  The owner serializes every call on a room.
 */
#ifndef MARQUEE_GATEWAY_WAITROOM_H
#define MARQUEE_GATEWAY_WAITROOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/token.h"

struct rand;

/* Named limits of a room's configuration. */
#define GW_WAITROOM_VISITORS_MAX    (1u << 22) /* visitors per room */
#define GW_WAITROOM_RATE_MAX        100000     /* admissions per second */
#define GW_WAITROOM_PASS_TTL_MAX_MS (3600 * 1000LL)
/* An opening more than this far from now is a typo, not a sale. */
#define GW_WAITROOM_HORIZON_MS (366LL * 86400 * 1000)
/* Text lengths, NUL excluded. */
#define GW_WAITROOM_VISITOR_TEXT_MAX (10 + 1 + GW_TOKEN_MAC_TEXT_LEN)
#define GW_WAITROOM_PASS_MAX         (20 + 1 + 10 + 1 + 20 + 1 + 43)

struct gw_waitroom_config {
    int64_t opens_at_ms;   /* wall time of the opening */
    int rate_per_s;        /* 1..GW_WAITROOM_RATE_MAX */
    int64_t pass_ttl_ms;   /* 1000..GW_WAITROOM_PASS_TTL_MAX_MS */
    uint32_t visitors_max; /* 1..GW_WAITROOM_VISITORS_MAX */
};

/*
 * ERR_OK, or ERR_INVALID with *why (may be NULL) naming the field in
 * words.  now_ms bounds the opening to GW_WAITROOM_HORIZON_MS either way.
 */
int gw_waitroom_config_check(const struct gw_waitroom_config *c, int64_t now_ms,
                             const char **why);

struct gw_waitroom;

/*
 * A room for show_id (> 0); epoch tells rooms of one show apart (a new
 * random value each time a sale is marked hot), so visitor ids of an
 * earlier room are refused.  key signs visitor ids and passes (copied).
 * ERR_OK with *out owned by the caller (gw_waitroom_free), ERR_INVALID
 * (bad config), ERR_NOMEM.
 */
int gw_waitroom_new(int64_t show_id, uint64_t epoch,
                    const struct gw_waitroom_config *c,
                    const struct gw_token_key *key, struct gw_waitroom **out);
void gw_waitroom_free(struct gw_waitroom *w);

const struct gw_waitroom_config *
gw_waitroom_config(const struct gw_waitroom *w);

/* How many visitors have joined. */
uint32_t gw_waitroom_count(const struct gw_waitroom *w);

/*
 * Adds a visitor.  ERR_OK with its id text in visitor (also *seq, 0-based
 * arrival number, when seq is not NULL); ERR_FULL past visitors_max (the
 * caller answers 503); ERR_NOMEM.  r is used only before the opening.
 */
int gw_waitroom_join(struct gw_waitroom *w, int64_t now_ms, struct rand *r,
                     char visitor[GW_WAITROOM_VISITOR_TEXT_MAX + 1],
                     uint32_t *seq);

enum gw_waitroom_state {
    GW_WAITROOM_BEFORE_OPENING, /* places not final yet */
    GW_WAITROOM_QUEUED,
    GW_WAITROOM_ADMITTED, /* pass valid until pass_expires_ms */
    GW_WAITROOM_EXPIRED,  /* was admitted; the pass has run out */
};

struct gw_waitroom_status {
    enum gw_waitroom_state state;
    uint32_t seq;
    uint64_t position;       /* QUEUED: 1 = next to be admitted */
    int64_t wait_ms;         /* until the opening, or until admission */
    int64_t admitted_at_ms;  /* ADMITTED, EXPIRED */
    int64_t pass_expires_ms; /* ADMITTED, EXPIRED */
};

/*
 * The state of the visitor named by the id text.  ERR_OK; ERR_NOTFOUND
 * for an id this room did not give out (forged, or of another room).
 */
int gw_waitroom_status(struct gw_waitroom *w, const char *visitor,
                       int64_t now_ms, struct gw_waitroom_status *out);

/* The same by arrival number; ERR_NOTFOUND past the count. */
int gw_waitroom_status_seq(struct gw_waitroom *w, uint32_t seq, int64_t now_ms,
                           struct gw_waitroom_status *out);

/* Visitors admitted by now_ms (their slot opened), expired ones included. */
uint64_t gw_waitroom_admitted(struct gw_waitroom *w, int64_t now_ms);

/*
 * Claims arrival number seq's place for owner (a non-zero digest of a
 * customer id): ERR_OK when it was nobody's or already owner's;
 * ERR_DENIED when another claimed it first; ERR_NOTFOUND past the count.
 * Each place has one owner for the room's life, so a place shared among
 * many clients yields one customer's pass.
 */
int gw_waitroom_claim(struct gw_waitroom *w, uint32_t seq, uint64_t owner);

/*
 * The pass of an ADMITTED visitor for customer (an http_customer_ok id):
 * ERR_OK with the text in out; ERR_DENIED when st is in another state or
 * the customer is not an id.  The caller claims the place first.
 */
int gw_waitroom_pass(const struct gw_waitroom *w,
                     const struct gw_waitroom_status *st, const char *customer,
                     char out[GW_WAITROOM_PASS_MAX + 1]);

enum gw_pass_fault {
    GW_PASS_VALID,
    GW_PASS_FORGED,     /* malformed, its mac does not match, or it was
                           made for another customer */
    GW_PASS_WRONG_SHOW, /* genuine, for another show */
    GW_PASS_EXPIRED,
};

/*
 * Checks a pass presented by customer (the caller's id; "" or NULL for an
 * anonymous caller, whose pass is always forged) for show_id at now_ms
 * (wall).  Needs no room: any gateway with the key can check.  Returns
 * the fault, GW_PASS_VALID when good.
 */
enum gw_pass_fault gw_pass_check(const struct gw_token_key *key,
                                 const char *pass, int64_t show_id,
                                 const char *customer, int64_t now_ms);

#endif
