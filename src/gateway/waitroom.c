/*
 * waitroom.c - places, slots and passes of one hot sale.  See waitroom.h.
 *
 * Three arrays indexed as noted, grown by doubling up to visitors_max:
 *   order[i]  the arrival number (seq) at place i of the queue
 *   place[s]  the place of arrival number s (inverse of order)
 *   slot[i]   the admission slot of place i, strictly increasing in i
 *   owner[s]  who claimed arrival number s's pass (0: nobody yet)
 * Before the opening places move (each early join swaps one); from the
 * opening on they are final and only appended to.
 */
#include "gateway/waitroom.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/rand.h"
#include "http/http.h"

#define GROW_MIN 64

struct gw_waitroom {
    int64_t show_id;
    uint64_t epoch;
    struct gw_waitroom_config cfg;
    struct gw_token_key key;
    int64_t now_seen_ms; /* the newest now_ms given */
    uint32_t count;
    uint32_t cap;
    uint64_t next_slot; /* the first slot no visitor has taken */
    uint32_t *order;
    uint32_t *place;
    uint64_t *slot;
    uint64_t *owner;
};

int gw_waitroom_config_check(const struct gw_waitroom_config *c, int64_t now_ms,
                             const char **why)
{
    const char *w = NULL;

    if (c->rate_per_s < 1 || c->rate_per_s > GW_WAITROOM_RATE_MAX)
        w = "rate_per_s must be from 1 to 100000";
    else if (c->pass_ttl_ms < 1000 ||
             c->pass_ttl_ms > GW_WAITROOM_PASS_TTL_MAX_MS)
        w = "pass_ttl_s must be from 1 to 3600";
    else if (c->visitors_max < 1 || c->visitors_max > GW_WAITROOM_VISITORS_MAX)
        w = "visitors_max must be from 1 to 4194304";
    else if (c->opens_at_ms < now_ms - GW_WAITROOM_HORIZON_MS ||
             c->opens_at_ms > now_ms + GW_WAITROOM_HORIZON_MS)
        w = "opens_at must be within a year of now";
    if (why != NULL)
        *why = w;
    return w == NULL ? ERR_OK : ERR_INVALID;
}

int gw_waitroom_new(int64_t show_id, uint64_t epoch,
                    const struct gw_waitroom_config *c,
                    const struct gw_token_key *key, struct gw_waitroom **out)
{
    struct gw_waitroom *w;

    if (show_id <= 0 || gw_waitroom_config_check(c, c->opens_at_ms, NULL) != 0)
        return ERR_INVALID;
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return ERR_NOMEM;
    w->show_id = show_id;
    w->epoch = epoch;
    w->cfg = *c;
    w->key = *key;
    w->now_seen_ms = INT64_MIN;
    *out = w;
    return ERR_OK;
}

void gw_waitroom_free(struct gw_waitroom *w)
{
    if (w == NULL)
        return;
    free(w->order);
    free(w->place);
    free(w->slot);
    free(w->owner);
    free(w);
}

const struct gw_waitroom_config *gw_waitroom_config(const struct gw_waitroom *w)
{
    return &w->cfg;
}

uint32_t gw_waitroom_count(const struct gw_waitroom *w)
{
    return w->count;
}

static int64_t seen(struct gw_waitroom *w, int64_t now_ms)
{
    if (now_ms > w->now_seen_ms)
        w->now_seen_ms = now_ms;
    return w->now_seen_ms;
}

/* When slot k opens: opens_at + ceil(k x 1000 / rate). */
static int64_t slot_time(const struct gw_waitroom *w, uint64_t k)
{
    uint64_t r = (uint64_t)w->cfg.rate_per_s;

    return w->cfg.opens_at_ms + (int64_t)((k * 1000 + r - 1) / r);
}

/* How many slots have opened by now: floor(e x rate / 1000) + 1. */
static uint64_t slots_open(const struct gw_waitroom *w, int64_t now)
{
    if (now < w->cfg.opens_at_ms)
        return 0;
    return (uint64_t)(now - w->cfg.opens_at_ms) * (uint64_t)w->cfg.rate_per_s /
               1000 +
           1;
}

/* The first slot that opens at or after now: ceil(e x rate / 1000). */
static uint64_t slot_at(const struct gw_waitroom *w, int64_t now)
{
    uint64_t e = (uint64_t)(now - w->cfg.opens_at_ms);

    return (e * (uint64_t)w->cfg.rate_per_s + 999) / 1000;
}

static int grow(struct gw_waitroom *w)
{
    uint32_t cap = w->cap < GROW_MIN ? GROW_MIN : w->cap * 2;
    void *o, *p, *s, *c;

    if (cap > w->cfg.visitors_max)
        cap = w->cfg.visitors_max;
    o = realloc(w->order, cap * sizeof(*w->order));
    if (o == NULL)
        return ERR_NOMEM;
    w->order = o;
    p = realloc(w->place, cap * sizeof(*w->place));
    if (p == NULL)
        return ERR_NOMEM;
    w->place = p;
    s = realloc(w->slot, cap * sizeof(*w->slot));
    if (s == NULL)
        return ERR_NOMEM;
    w->slot = s;
    c = realloc(w->owner, cap * sizeof(*w->owner));
    if (c == NULL)
        return ERR_NOMEM;
    w->owner = c;
    w->cap = cap;
    return ERR_OK;
}

static void visitor_text(const struct gw_waitroom *w, uint32_t seq,
                         char out[GW_WAITROOM_VISITOR_TEXT_MAX + 1])
{
    char msg[96], m[GW_TOKEN_MAC_TEXT_LEN + 1];
    int n = snprintf(msg, sizeof(msg), "visitor.%" PRId64 ".%" PRIu64 ".%u",
                     w->show_id, w->epoch, seq);

    assert(n > 0 && (size_t)n < sizeof(msg));
    gw_token_mac_text(&w->key, msg, (size_t)n, m);
    n = snprintf(out, GW_WAITROOM_VISITOR_TEXT_MAX + 1, "%u-%s", seq, m);
    assert(n > 0 && n <= GW_WAITROOM_VISITOR_TEXT_MAX);
}

int gw_waitroom_join(struct gw_waitroom *w, int64_t now_ms, struct rand *r,
                     char visitor[GW_WAITROOM_VISITOR_TEXT_MAX + 1],
                     uint32_t *seq)
{
    int64_t now = seen(w, now_ms);
    uint32_t s = w->count, i = w->count;
    int rc;

    if (w->count >= w->cfg.visitors_max)
        return ERR_FULL;
    if (w->count == w->cap && (rc = grow(w)) != ERR_OK)
        return rc;

    if (now < w->cfg.opens_at_ms) {
        /* Inside-out Fisher-Yates: the newcomer takes a uniform place
         * among all early arrivals, whose previous holder moves to the
         * end.  Each early place i keeps slot i. */
        uint32_t j = (uint32_t)rand_below(r, (uint64_t)s + 1);

        if (j != s) {
            w->order[s] = w->order[j];
            w->place[w->order[s]] = s;
        }
        w->slot[s] = s;
        i = j;
        w->next_slot = (uint64_t)s + 1;
    } else {
        uint64_t k = slot_at(w, now);

        w->slot[i] = k > w->next_slot ? k : w->next_slot;
        w->next_slot = w->slot[i] + 1;
    }
    w->order[i] = s;
    w->place[s] = i;
    w->owner[s] = 0;
    w->count++;

    visitor_text(w, s, visitor);
    if (seq != NULL)
        *seq = s;
    return ERR_OK;
}

uint64_t gw_waitroom_admitted(struct gw_waitroom *w, int64_t now_ms)
{
    uint64_t open = slots_open(w, seen(w, now_ms));
    uint32_t lo = 0, hi = w->count;

    /* Places whose slot < open, slots increasing: a lower bound. */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;

        if (w->slot[mid] < open)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int gw_waitroom_status_seq(struct gw_waitroom *w, uint32_t seq, int64_t now_ms,
                           struct gw_waitroom_status *out)
{
    int64_t now = seen(w, now_ms), at;
    uint32_t i;

    if (seq >= w->count)
        return ERR_NOTFOUND;
    memset(out, 0, sizeof(*out));
    out->seq = seq;
    if (now < w->cfg.opens_at_ms) {
        out->state = GW_WAITROOM_BEFORE_OPENING;
        out->wait_ms = w->cfg.opens_at_ms - now;
        return ERR_OK;
    }

    i = w->place[seq];
    at = slot_time(w, w->slot[i]);
    if (now < at) {
        out->state = GW_WAITROOM_QUEUED;
        out->position = i - gw_waitroom_admitted(w, now) + 1;
        out->wait_ms = at - now;
        return ERR_OK;
    }
    out->admitted_at_ms = at;
    out->pass_expires_ms = at + w->cfg.pass_ttl_ms;
    out->state =
        now < out->pass_expires_ms ? GW_WAITROOM_ADMITTED : GW_WAITROOM_EXPIRED;
    return ERR_OK;
}

int gw_waitroom_status(struct gw_waitroom *w, const char *visitor,
                       int64_t now_ms, struct gw_waitroom_status *out)
{
    char want[GW_WAITROOM_VISITOR_TEXT_MAX + 1];
    unsigned long long seq = 0;
    const char *p = visitor;

    /* Decimal digits, no sign, no leading zero, then '-'. */
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '-'))
        return ERR_NOTFOUND;
    for (; *p >= '0' && *p <= '9'; p++) {
        seq = seq * 10 + (unsigned long long)(*p - '0');
        if (seq >= GW_WAITROOM_VISITORS_MAX)
            return ERR_NOTFOUND;
    }
    if (*p != '-' || seq >= w->count)
        return ERR_NOTFOUND;
    visitor_text(w, (uint32_t)seq, want);
    if (!gw_token_text_equal(visitor, want))
        return ERR_NOTFOUND;
    return gw_waitroom_status_seq(w, (uint32_t)seq, now_ms, out);
}

static int pass_body(char *out, size_t cap, int64_t show_id, uint32_t seq,
                     int64_t expires_ms)
{
    return snprintf(out, cap, "%" PRId64 ".%u.%" PRId64, show_id, seq,
                    expires_ms);
}

/* The mac covers the customer, who is not in the pass's text: the holder
 * of someone else's pass cannot make it theirs. */
static void pass_mac(const struct gw_token_key *key, const char *body,
                     size_t len, const char *customer,
                     char m[GW_TOKEN_MAC_TEXT_LEN + 1])
{
    char msg[GW_WAITROOM_PASS_MAX + HTTP_CUSTOMER_MAX + 16];
    int n =
        snprintf(msg, sizeof(msg), "pass.%.*s.%s", (int)len, body, customer);

    assert(n > 0 && (size_t)n < sizeof(msg));
    gw_token_mac_text(key, msg, (size_t)n, m);
}

int gw_waitroom_claim(struct gw_waitroom *w, uint32_t seq, uint64_t owner)
{
    assert(owner != 0);
    if (seq >= w->count)
        return ERR_NOTFOUND;
    if (w->owner[seq] == 0)
        w->owner[seq] = owner;
    return w->owner[seq] == owner ? ERR_OK : ERR_DENIED;
}

int gw_waitroom_pass(const struct gw_waitroom *w,
                     const struct gw_waitroom_status *st, const char *customer,
                     char out[GW_WAITROOM_PASS_MAX + 1])
{
    char m[GW_TOKEN_MAC_TEXT_LEN + 1];
    int n;

    if (st->state != GW_WAITROOM_ADMITTED || !http_customer_ok(customer))
        return ERR_DENIED;
    n = pass_body(out, GW_WAITROOM_PASS_MAX + 1, w->show_id, st->seq,
                  st->pass_expires_ms);
    assert(n > 0 && n < GW_WAITROOM_PASS_MAX);
    pass_mac(&w->key, out, (size_t)n, customer, m);
    n += snprintf(out + n, (size_t)(GW_WAITROOM_PASS_MAX + 1 - n), ".%s", m);
    assert(n <= GW_WAITROOM_PASS_MAX);
    return ERR_OK;
}

/* Parses leading decimal digits of s into *v (at most 19); the rest. */
static const char *digits(const char *s, int64_t *v)
{
    int n = 0;

    *v = 0;
    for (; *s >= '0' && *s <= '9' && n < 19; s++, n++)
        *v = *v * 10 + (*s - '0');
    return n == 0 ? NULL : s;
}

enum gw_pass_fault gw_pass_check(const struct gw_token_key *key,
                                 const char *pass, int64_t show_id,
                                 const char *customer, int64_t now_ms)
{
    char m[GW_TOKEN_MAC_TEXT_LEN + 1];
    int64_t show = 0, seq = 0, expires = 0;
    const char *p = pass;
    size_t len;

    if (pass == NULL || !http_customer_ok(customer) ||
        strnlen(pass, GW_WAITROOM_PASS_MAX + 1) > GW_WAITROOM_PASS_MAX)
        return GW_PASS_FORGED;
    p = digits(p, &show);
    if (p == NULL || *p++ != '.' || (p = digits(p, &seq)) == NULL ||
        *p++ != '.' || (p = digits(p, &expires)) == NULL || *p != '.')
        return GW_PASS_FORGED;

    len = (size_t)(p - pass);
    pass_mac(key, pass, len, customer, m);
    if (!gw_token_text_equal(p + 1, m))
        return GW_PASS_FORGED;
    if (show != show_id)
        return GW_PASS_WRONG_SHOW;
    if (now_ms >= expires)
        return GW_PASS_EXPIRED;
    return GW_PASS_VALID;
}
