/*
 * test_gw_waitroom.c - the waiting room against an explicit clock: early
 * arrivals shuffled (a permutation that depends on the seed, and uniform
 * over many seeds), later ones in arrival order, admissions exactly on the
 * rate's grid, no banking of admissions over a quiet spell, passes that
 * expire and cannot be forged, forged visitor ids and the bound.
 */
#include "harness.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/rand.h"
#include "gateway/waitroom.h"

#define OPENS 1800000000000LL /* wall ms of the opening */
#define SHOW  77

static struct gw_token_key test_key(const char *secret)
{
    struct gw_token_key k;

    gw_token_key_derive(&k, secret, strlen(secret), "waitroom-pass");
    return k;
}

static struct gw_waitroom *room(int rate, uint32_t max, uint64_t epoch)
{
    struct gw_waitroom_config c = {.opens_at_ms = OPENS,
                                   .rate_per_s = rate,
                                   .pass_ttl_ms = 120000,
                                   .visitors_max = max};
    struct gw_token_key k = test_key("a secret for the waiting room tests");
    struct gw_waitroom *w = NULL;

    CHECK_INT(gw_waitroom_new(SHOW, epoch, &c, &k, &w), ERR_OK);
    return w;
}

/* The place of each of n early arrivals under seed, read after opening
 * from their admission times (rate 1000/s: slot k opens k ms in). */
static void early_places(uint64_t seed, uint32_t n, uint32_t *place)
{
    struct gw_waitroom *w = room(1000, 1000, 1);
    struct rand r;
    char v[GW_WAITROOM_VISITOR_TEXT_MAX + 1];

    rand_seed(&r, seed);
    for (uint32_t i = 0; i < n; i++)
        CHECK_INT(gw_waitroom_join(w, OPENS - 1000 + i, &r, v, NULL), ERR_OK);
    for (uint32_t i = 0; i < n; i++) {
        struct gw_waitroom_status st;

        CHECK_INT(gw_waitroom_status_seq(w, i, OPENS + 100000, &st), ERR_OK);
        CHECK(st.state == GW_WAITROOM_ADMITTED ||
              st.state == GW_WAITROOM_EXPIRED);
        place[i] = (uint32_t)(st.admitted_at_ms - OPENS);
    }
    gw_waitroom_free(w);
}

TEST(early_arrivals_are_a_seeded_permutation)
{
    enum { N = 50 };
    uint32_t a[N], b[N], c[N];
    bool seen[N] = {false};
    int fixed = 0;

    early_places(1, N, a);
    early_places(1, N, b);
    early_places(2, N, c);
    for (int i = 0; i < N; i++) {
        CHECK(a[i] < N);
        CHECK(!seen[a[i]]);
        seen[a[i]] = true;
        CHECK_INT(a[i], b[i]);
        fixed += a[i] == (uint32_t)i;
    }
    CHECK(memcmp(a, c, sizeof(a)) != 0);
    /* A shuffle of 50 leaves about one in place, not most. */
    CHECK(fixed < 10);
}

TEST(early_shuffle_is_uniform)
{
    enum { TRIALS = 6000 };
    int count[6] = {0};

    /* Three early arrivals: each of the 6 orders about 1000 times; the
     * bounds are over 4.5 standard deviations wide. */
    for (uint64_t seed = 0; seed < TRIALS; seed++) {
        uint32_t p[3];

        early_places(seed + 1000, 3, p);
        count[p[0] * 2 + (p[1] > p[2])]++;
    }
    for (int i = 0; i < 6; i++)
        CHECK(count[i] > 860 && count[i] < 1140);
}

TEST(later_arrivals_in_order_behind_early_ones)
{
    struct gw_waitroom *w = room(10, 1000, 1);
    struct rand r;
    char v[GW_WAITROOM_VISITOR_TEXT_MAX + 1];
    struct gw_waitroom_status st;

    rand_seed(&r, 5);
    for (int i = 0; i < 20; i++)
        CHECK_INT(gw_waitroom_join(w, OPENS - 5000, &r, v, NULL), ERR_OK);
    /* Before the opening: no place yet, the wait is until the opening. */
    CHECK_INT(gw_waitroom_status_seq(w, 3, OPENS - 5000, &st), ERR_OK);
    CHECK_INT(st.state, GW_WAITROOM_BEFORE_OPENING);
    CHECK_INT(st.wait_ms, 5000);

    /* Ten late ones at OPENS + 50: places 21..30, slots 20..29. */
    for (uint32_t i = 0; i < 10; i++) {
        uint32_t seq;

        CHECK_INT(gw_waitroom_join(w, OPENS + 50, &r, v, &seq), ERR_OK);
        CHECK_INT(seq, 20 + i);
    }
    for (uint32_t i = 0; i < 10; i++) {
        CHECK_INT(gw_waitroom_status_seq(w, 20 + i, OPENS + 50, &st), ERR_OK);
        CHECK_INT(st.state, GW_WAITROOM_QUEUED);
        /* One admitted at the opening, so place 21 is position 20. */
        CHECK_INT(st.position, 20 + i);
        CHECK_INT(st.wait_ms, (20 + i) * 100 - 50);
    }
    gw_waitroom_free(w);
}

TEST(admission_rate_exact)
{
    struct gw_waitroom *w = room(10, 1000, 1);
    struct rand r;
    char v[GW_WAITROOM_VISITOR_TEXT_MAX + 1];

    rand_seed(&r, 9);
    for (int i = 0; i < 100; i++)
        CHECK_INT(gw_waitroom_join(w, OPENS - 1, &r, v, NULL), ERR_OK);
    CHECK_INT(gw_waitroom_admitted(w, OPENS - 1), 0);
    CHECK_INT(gw_waitroom_admitted(w, OPENS), 1);
    CHECK_INT(gw_waitroom_admitted(w, OPENS + 99), 1);
    CHECK_INT(gw_waitroom_admitted(w, OPENS + 100), 2);
    CHECK_INT(gw_waitroom_admitted(w, OPENS + 999), 10);
    CHECK_INT(gw_waitroom_admitted(w, OPENS + 1000), 11);
    CHECK_INT(gw_waitroom_admitted(w, OPENS + 9899), 99);
    CHECK_INT(gw_waitroom_admitted(w, OPENS + 9900), 100);
    CHECK_INT(gw_waitroom_admitted(w, OPENS + 60000), 100);
    gw_waitroom_free(w);

    /* A rate that does not divide 1000: slot k at ceil(k x 1000 / 3). */
    w = room(3, 1000, 1);
    for (int i = 0; i < 10; i++)
        CHECK_INT(gw_waitroom_join(w, OPENS - 1, &r, v, NULL), ERR_OK);
    CHECK_INT(gw_waitroom_admitted(w, OPENS + 333), 1);
    CHECK_INT(gw_waitroom_admitted(w, OPENS + 334), 2);
    CHECK_INT(gw_waitroom_admitted(w, OPENS + 666), 2);
    CHECK_INT(gw_waitroom_admitted(w, OPENS + 667), 3);
    CHECK_INT(gw_waitroom_admitted(w, OPENS + 1000), 4);
    gw_waitroom_free(w);
}

TEST(quiet_spell_banks_nothing)
{
    struct gw_waitroom *w = room(10, 1000, 1);
    struct rand r;
    char v[GW_WAITROOM_VISITOR_TEXT_MAX + 1];
    struct gw_waitroom_status st;

    rand_seed(&r, 1);
    /* Ten seconds after an opening nobody came to, three arrive at once:
     * one goes in now, then one per 100 ms. */
    for (uint32_t i = 0; i < 3; i++)
        CHECK_INT(gw_waitroom_join(w, OPENS + 10000, &r, v, NULL), ERR_OK);
    CHECK_INT(gw_waitroom_status_seq(w, 0, OPENS + 10000, &st), ERR_OK);
    CHECK_INT(st.state, GW_WAITROOM_ADMITTED);
    CHECK_INT(st.admitted_at_ms, OPENS + 10000);
    CHECK_INT(gw_waitroom_status_seq(w, 1, OPENS + 10000, &st), ERR_OK);
    CHECK_INT(st.state, GW_WAITROOM_QUEUED);
    CHECK_INT(st.position, 1);
    CHECK_INT(st.wait_ms, 100);
    CHECK_INT(gw_waitroom_status_seq(w, 2, OPENS + 10000, &st), ERR_OK);
    CHECK_INT(st.position, 2);
    CHECK_INT(st.wait_ms, 200);

    /* A join between grid points waits for the next one. */
    CHECK_INT(gw_waitroom_join(w, OPENS + 20050, &r, v, NULL), ERR_OK);
    CHECK_INT(gw_waitroom_status_seq(w, 3, OPENS + 20050, &st), ERR_OK);
    CHECK_INT(st.state, GW_WAITROOM_QUEUED);
    CHECK_INT(st.wait_ms, 50);
    gw_waitroom_free(w);
}

TEST(pass_valid_then_expired_never_forged)
{
    struct gw_waitroom *w = room(10, 1000, 1);
    struct gw_token_key k = test_key("a secret for the waiting room tests");
    struct gw_token_key other = test_key("some other secret of enough length");
    struct rand r;
    char v[GW_WAITROOM_VISITOR_TEXT_MAX + 1];
    char pass[GW_WAITROOM_PASS_MAX + 1], bad[GW_WAITROOM_PASS_MAX + 16];
    struct gw_waitroom_status st;
    char *dot;

    rand_seed(&r, 1);
    CHECK_INT(gw_waitroom_join(w, OPENS - 10, &r, v, NULL), ERR_OK);
    CHECK_INT(gw_waitroom_join(w, OPENS - 10, &r, v, NULL), ERR_OK);
    CHECK_INT(gw_waitroom_status(w, v, OPENS - 10, &st), ERR_OK);
    CHECK_INT(gw_waitroom_pass(w, &st, "cust-1", pass), ERR_DENIED);

    CHECK_INT(gw_waitroom_status(w, v, OPENS + 100, &st), ERR_OK);
    CHECK_INT(st.state, GW_WAITROOM_ADMITTED);
    CHECK_INT(st.pass_expires_ms, st.admitted_at_ms + 120000);
    CHECK_INT(gw_waitroom_pass(w, &st, "cust-1", pass), ERR_OK);

    CHECK_INT(gw_pass_check(&k, pass, SHOW, "cust-1", OPENS + 100),
              GW_PASS_VALID);
    CHECK_INT(gw_pass_check(&k, pass, SHOW, "cust-1", st.pass_expires_ms - 1),
              GW_PASS_VALID);
    CHECK_INT(gw_pass_check(&k, pass, SHOW, "cust-1", st.pass_expires_ms),
              GW_PASS_EXPIRED);
    CHECK_INT(gw_pass_check(&k, pass, SHOW + 1, "cust-1", OPENS + 100),
              GW_PASS_WRONG_SHOW);
    CHECK_INT(gw_pass_check(&other, pass, SHOW, "cust-1", OPENS + 100),
              GW_PASS_FORGED);

    /* Made for cust-1: good for nobody else, anonymous callers included. */
    CHECK_INT(gw_pass_check(&k, pass, SHOW, "cust-2", OPENS + 100),
              GW_PASS_FORGED);
    CHECK_INT(gw_pass_check(&k, pass, SHOW, "", OPENS + 100), GW_PASS_FORGED);
    CHECK_INT(gw_pass_check(&k, pass, SHOW, NULL, OPENS + 100), GW_PASS_FORGED);
    CHECK_INT(gw_waitroom_pass(w, &st, "", pass), ERR_DENIED);

    /* Stretching the expiry breaks the mac. */
    dot = strchr(strchr(pass, '.') + 1, '.');
    snprintf(bad, sizeof(bad), "%.*s9%s", (int)(dot - pass + 1), pass, dot + 1);
    CHECK_INT(gw_pass_check(&k, bad, SHOW, "cust-1", OPENS + 100),
              GW_PASS_FORGED);
    CHECK_INT(gw_pass_check(&k, "", SHOW, "cust-1", OPENS), GW_PASS_FORGED);
    CHECK_INT(gw_pass_check(&k, "77.1.99999999999999", SHOW, "cust-1", OPENS),
              GW_PASS_FORGED);
    CHECK_INT(gw_pass_check(&k, NULL, SHOW, "cust-1", OPENS), GW_PASS_FORGED);

    /* Asked again later, the status says expired and gives no pass. */
    CHECK_INT(gw_waitroom_status(w, v, st.pass_expires_ms, &st), ERR_OK);
    CHECK_INT(st.state, GW_WAITROOM_EXPIRED);
    CHECK_INT(gw_waitroom_pass(w, &st, "cust-1", pass), ERR_DENIED);
    gw_waitroom_free(w);
}

TEST(a_place_has_one_owner)
{
    struct gw_waitroom *w = room(10, 1000, 1);
    struct rand r;
    char v[GW_WAITROOM_VISITOR_TEXT_MAX + 1];

    rand_seed(&r, 1);
    CHECK_INT(gw_waitroom_join(w, OPENS - 10, &r, v, NULL), ERR_OK);
    CHECK_INT(gw_waitroom_join(w, OPENS - 10, &r, v, NULL), ERR_OK);
    CHECK_INT(gw_waitroom_claim(w, 0, 41), ERR_OK);
    CHECK_INT(gw_waitroom_claim(w, 0, 41), ERR_OK);
    CHECK_INT(gw_waitroom_claim(w, 0, 42), ERR_DENIED);
    /* One customer may own several places; the other is still free. */
    CHECK_INT(gw_waitroom_claim(w, 1, 41), ERR_OK);
    CHECK_INT(gw_waitroom_claim(w, 2, 41), ERR_NOTFOUND);
    gw_waitroom_free(w);
}

TEST(visitor_ids_cannot_be_guessed)
{
    struct gw_waitroom *w = room(10, 1000, 1);
    struct gw_waitroom *w2 = room(10, 1000, 2);
    struct rand r;
    char v[GW_WAITROOM_VISITOR_TEXT_MAX + 1],
        v2[GW_WAITROOM_VISITOR_TEXT_MAX + 1];
    struct gw_waitroom_status st;

    rand_seed(&r, 1);
    CHECK_INT(gw_waitroom_join(w, OPENS - 10, &r, v, NULL), ERR_OK);
    CHECK_INT(gw_waitroom_join(w2, OPENS - 10, &r, v2, NULL), ERR_OK);
    CHECK(strncmp(v, "0-", 2) == 0);
    CHECK_INT(gw_waitroom_status(w, v, OPENS, &st), ERR_OK);
    CHECK_INT(gw_waitroom_status(w, v2, OPENS, &st), ERR_NOTFOUND);
    CHECK_INT(gw_waitroom_status(w, "0-", OPENS, &st), ERR_NOTFOUND);
    CHECK_INT(gw_waitroom_status(w, "1-abc", OPENS, &st), ERR_NOTFOUND);
    CHECK_INT(gw_waitroom_status(w, "00-abc", OPENS, &st), ERR_NOTFOUND);
    CHECK_INT(gw_waitroom_status(w, "x", OPENS, &st), ERR_NOTFOUND);
    v[strlen(v) - 1] ^= 1;
    CHECK_INT(gw_waitroom_status(w, v, OPENS, &st), ERR_NOTFOUND);
    gw_waitroom_free(w);
    gw_waitroom_free(w2);
}

TEST(bounded_and_clock_never_backwards)
{
    struct gw_waitroom *w = room(1, 3, 1);
    struct rand r;
    char v[GW_WAITROOM_VISITOR_TEXT_MAX + 1];
    struct gw_waitroom_status st;

    rand_seed(&r, 1);
    CHECK_INT(gw_waitroom_join(w, OPENS, &r, v, NULL), ERR_OK);
    /* An older reading after the opening still counts as after it: this
     * visitor queues behind the first rather than drawing an early place. */
    CHECK_INT(gw_waitroom_join(w, OPENS - 5000, &r, v, NULL), ERR_OK);
    CHECK_INT(gw_waitroom_status_seq(w, 1, OPENS - 5000, &st), ERR_OK);
    CHECK_INT(st.state, GW_WAITROOM_QUEUED);
    CHECK_INT(st.position, 1);
    CHECK_INT(gw_waitroom_join(w, OPENS, &r, v, NULL), ERR_OK);
    CHECK_INT(gw_waitroom_join(w, OPENS, &r, v, NULL), ERR_FULL);
    CHECK_INT(gw_waitroom_count(w), 3);
    CHECK_INT(gw_waitroom_status_seq(w, 3, OPENS, &st), ERR_NOTFOUND);
    gw_waitroom_free(w);
}

TEST(config_ranges)
{
    struct gw_waitroom_config c = {.opens_at_ms = OPENS,
                                   .rate_per_s = 1,
                                   .pass_ttl_ms = 1000,
                                   .visitors_max = 1};
    const char *why = NULL;

    CHECK_INT(gw_waitroom_config_check(&c, OPENS, &why), ERR_OK);
    CHECK(why == NULL);
    c.rate_per_s = 0;
    CHECK_INT(gw_waitroom_config_check(&c, OPENS, &why), ERR_INVALID);
    CHECK(why != NULL && strstr(why, "rate_per_s") != NULL);
    c.rate_per_s = GW_WAITROOM_RATE_MAX + 1;
    CHECK_INT(gw_waitroom_config_check(&c, OPENS, NULL), ERR_INVALID);
    c.rate_per_s = 5;
    c.pass_ttl_ms = 999;
    CHECK_INT(gw_waitroom_config_check(&c, OPENS, NULL), ERR_INVALID);
    c.pass_ttl_ms = 60000;
    c.visitors_max = GW_WAITROOM_VISITORS_MAX + 1;
    CHECK_INT(gw_waitroom_config_check(&c, OPENS, NULL), ERR_INVALID);
    c.visitors_max = 10;
    CHECK_INT(
        gw_waitroom_config_check(&c, OPENS - GW_WAITROOM_HORIZON_MS - 1, &why),
        ERR_INVALID);
    CHECK(strstr(why, "opens_at") != NULL);
}

HARNESS_MAIN(T(early_arrivals_are_a_seeded_permutation),
             T(early_shuffle_is_uniform),
             T(later_arrivals_in_order_behind_early_ones),
             T(admission_rate_exact), T(quiet_spell_banks_nothing),
             T(pass_valid_then_expired_never_forged), T(a_place_has_one_owner),
             T(visitor_ids_cannot_be_guessed),
             T(bounded_and_clock_never_backwards), T(config_ranges))
