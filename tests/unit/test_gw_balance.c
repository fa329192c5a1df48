/*
 * test_gw_balance.c - the gateway's balancers: power of two choices and the
 * consistent-hash ring with bounded load.
 *
 * Random draws use fixed seeds, so every count is the same on every run;
 * the bounds are wide enough for any sound generator and narrow enough to
 * catch a balancer that favours a host.  The ring's movement tests are
 * exact: a key whose host stays must keep it.
 */
#include "harness.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>

#include "base/err.h"
#include "base/rand.h"
#include "gateway/balance.h"

#define NKEYS  10000
#define NHOSTS 10

static char names[GW_BALANCE_HOSTS_MAX + 1][32];

/* n hosts named "10.0.0.<i+1>:7002", idle, available, full weight. */
static void hosts_make(struct gw_lb_host *hosts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof(names[i]), "10.0.0.%u:7002", (unsigned)i + 1);
        hosts[i] = (struct gw_lb_host){
            .name = names[i], .in_flight = 0, .weight = 1.0, .available = true};
    }
}

static uint64_t key_hash(int key)
{
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%d", key);

    return gw_hash(buf, (size_t)len);
}

/*
 * The distinct hosts met walking clockwise from key, in order, computed
 * here from the points alone so the tests do not trust gw_ring_pick().
 * Returns how many were written to order.
 */
static size_t clockwise_hosts(const struct gw_ring *ring, uint64_t key,
                              int *order)
{
    size_t start = 0, count = 0;
    bool seen[GW_BALANCE_HOSTS_MAX] = {false};

    while (start < ring->npoints && ring->points[start].point < key)
        start++;
    for (size_t k = 0; k < ring->npoints; k++) {
        uint32_t h = ring->points[(start + k) % ring->npoints].host;

        if (!seen[h]) {
            seen[h] = true;
            order[count++] = (int)h;
        }
    }
    return count;
}

TEST(gw_hash_known_vectors)
{
    static const unsigned char bytes[] = {0, 1, 2, 3, 255};

    /* Computed once, and checked against an independent script. */
    CHECK(gw_hash("", 0) == 0xefd01f60ba992926ULL);
    CHECK(gw_hash("a", 1) == 0x82a2a958a9bece5bULL);
    CHECK(gw_hash("show:1", 6) == 0x13bf2bfa56222c59ULL);
    CHECK(gw_hash("10.0.0.1:8080#0", 15) == 0x65283bf9882a6167ULL);
    CHECK(gw_hash("10.0.0.1:8080#159", 17) == 0x6b1ccca135343ec3ULL);
    CHECK(gw_hash("booking-1:7002", 14) == 0xe8e7d0358f3f5aa8ULL);
    CHECK(gw_hash(bytes, sizeof(bytes)) == 0x0c30f222851ab1e6ULL);
}

TEST(gw_hash_spreads_neighbouring_keys)
{
    /* Keys that differ in one digit land in every sixteenth of the ring. */
    int counts[16] = {0};

    for (int k = 0; k < 1600; k++)
        counts[key_hash(k) >> 60]++;
    for (int i = 0; i < 16; i++)
        CHECK(counts[i] > 60 && counts[i] < 140);
}

TEST(p2c_none_and_one)
{
    struct gw_lb_host hosts[4];
    struct rand r, before;

    hosts_make(hosts, 4);
    rand_seed(&r, 1);
    CHECK_INT(gw_balance_p2c(hosts, 0, NULL, &r), -1);
    for (int i = 0; i < 4; i++)
        hosts[i].available = false;
    CHECK_INT(gw_balance_p2c(hosts, 4, NULL, &r), -1);

    /* One eligible host is the answer, and no randomness is used. */
    hosts[2].available = true;
    hosts[2].in_flight = 1000;
    before = r;
    for (int i = 0; i < 10; i++)
        CHECK_INT(gw_balance_p2c(hosts, 4, NULL, &r), 2);
    CHECK(r.s[0] == before.s[0] && r.s[3] == before.s[3]);

    /* Excluding the only available one leaves none. */
    bool exclude[4] = {false, false, true, false};
    CHECK_INT(gw_balance_p2c(hosts, 4, exclude, &r), -1);
}

TEST(p2c_picks_less_loaded_of_two)
{
    struct gw_lb_host hosts[3];
    int counts[3] = {0};
    struct rand r;

    hosts_make(hosts, 2);
    hosts[0].in_flight = 7;
    hosts[1].in_flight = 3;
    rand_seed(&r, 2);
    for (int i = 0; i < 1000; i++)
        CHECK_INT(gw_balance_p2c(hosts, 2, NULL, &r), 1);

    /*
     * Three hosts: each pair is drawn a third of the time, so the least
     * loaded wins 2/3, the middle 1/3 and the busiest never.
     */
    hosts_make(hosts, 3);
    hosts[0].in_flight = 9;
    hosts[1].in_flight = 1;
    hosts[2].in_flight = 5;
    for (int i = 0; i < 30000; i++)
        counts[gw_balance_p2c(hosts, 3, NULL, &r)]++;
    CHECK_INT(counts[0], 0);
    CHECK(counts[1] > 19400 && counts[1] < 20600);
    CHECK(counts[2] > 9400 && counts[2] < 10600);
}

TEST(p2c_never_unavailable_or_excluded)
{
    struct gw_lb_host hosts[8];
    bool exclude[8] = {false};
    int counts[8] = {0};
    struct rand r;

    hosts_make(hosts, 8);
    hosts[1].available = false;
    hosts[6].available = false;
    exclude[0] = true;
    exclude[4] = true;
    /* The unavailable and excluded ones are the idlest: still never. */
    for (int i = 0; i < 8; i++)
        hosts[i].in_flight = 5;
    hosts[0].in_flight = hosts[1].in_flight = 0;
    hosts[4].in_flight = hosts[6].in_flight = 0;

    rand_seed(&r, 3);
    for (int i = 0; i < 20000; i++) {
        int pick = gw_balance_p2c(hosts, 8, exclude, &r);

        CHECK(pick >= 0 && pick < 8);
        counts[pick]++;
    }
    CHECK_INT(counts[0] + counts[1] + counts[4] + counts[6], 0);
    /* The four eligible hosts share evenly. */
    CHECK(counts[2] > 4700 && counts[2] < 5300);
    CHECK(counts[3] > 4700 && counts[3] < 5300);
    CHECK(counts[5] > 4700 && counts[5] < 5300);
    CHECK(counts[7] > 4700 && counts[7] < 5300);
}

TEST(p2c_spreads_evenly_over_equal_hosts)
{
    struct gw_lb_host hosts[NHOSTS];
    int counts[NHOSTS] = {0};
    struct rand r;

    /* Equal loads: every host is as likely as any other. */
    hosts_make(hosts, NHOSTS);
    rand_seed(&r, 4);
    for (int i = 0; i < 100000; i++)
        counts[gw_balance_p2c(hosts, NHOSTS, NULL, &r)]++;
    for (int i = 0; i < NHOSTS; i++)
        CHECK(counts[i] > 9500 && counts[i] < 10500);

    /*
     * Requests that stay in flight: the choice keeps the hosts within a
     * few requests of each other (random choice would drift by dozens).
     */
    hosts_make(hosts, NHOSTS);
    for (int i = 0; i < 5000; i++)
        hosts[gw_balance_p2c(hosts, NHOSTS, NULL, &r)].in_flight++;
    for (int i = 0; i < NHOSTS; i++)
        CHECK(hosts[i].in_flight >= 497 && hosts[i].in_flight <= 503);
}

TEST(p2c_respects_weight)
{
    struct gw_lb_host hosts[2];
    struct rand r;

    rand_seed(&r, 5);
    hosts_make(hosts, 2);

    /* Both idle: the one in slow start counts as ten requests. */
    hosts[0].weight = 0.1;
    for (int i = 0; i < 100; i++)
        CHECK_INT(gw_balance_p2c(hosts, 2, NULL, &r), 1);

    /* (4 + 1) / 0.5 = 10 against (8 + 1) / 1 = 9. */
    hosts[0].weight = 0.5;
    hosts[0].in_flight = 4;
    hosts[1].in_flight = 8;
    CHECK_INT(gw_balance_p2c(hosts, 2, NULL, &r), 1);
    hosts[1].in_flight = 10;
    CHECK_INT(gw_balance_p2c(hosts, 2, NULL, &r), 0);

    /* Requests that stay in flight split in proportion to the weights. */
    hosts_make(hosts, 2);
    hosts[1].weight = 0.25;
    for (int i = 0; i < 1000; i++)
        hosts[gw_balance_p2c(hosts, 2, NULL, &r)].in_flight++;
    CHECK(hosts[0].in_flight >= 798 && hosts[0].in_flight <= 802);

    /* A zero or NaN weight counts as GW_LB_WEIGHT_MIN, not as infinity. */
    hosts_make(hosts, 2);
    hosts[0].weight = 0.0;
    hosts[1].in_flight = 98; /* 99 against 1 / 0.01 = 100 */
    CHECK_INT(gw_balance_p2c(hosts, 2, NULL, &r), 1);
    hosts[1].in_flight = 100;
    CHECK_INT(gw_balance_p2c(hosts, 2, NULL, &r), 0);
    hosts[0].weight = NAN;
    CHECK_INT(gw_balance_p2c(hosts, 2, NULL, &r), 0);
}

TEST(ring_build_refuses_bad_input)
{
    struct gw_lb_host hosts[GW_BALANCE_HOSTS_MAX + 1];
    char long_name[GW_LB_NAME_MAX + 2];
    struct gw_ring ring;

    hosts_make(hosts, GW_BALANCE_HOSTS_MAX + 1);
    CHECK_INT(gw_ring_build(&ring, hosts, GW_BALANCE_HOSTS_MAX + 1),
              ERR_INVALID);
    CHECK(ring.points == NULL && ring.npoints == 0);
    gw_ring_free(&ring);

    CHECK_INT(gw_ring_build(&ring, hosts, GW_BALANCE_HOSTS_MAX), ERR_OK);
    CHECK_INT(ring.npoints, GW_BALANCE_HOSTS_MAX * GW_RING_VNODES);
    gw_ring_free(&ring);
    CHECK(ring.points == NULL && ring.npoints == 0);

    hosts[2].name = NULL;
    CHECK_INT(gw_ring_build(&ring, hosts, 4), ERR_INVALID);
    hosts[2].name = "";
    CHECK_INT(gw_ring_build(&ring, hosts, 4), ERR_INVALID);
    hosts[2].name = names[0]; /* the same name twice */
    CHECK_INT(gw_ring_build(&ring, hosts, 4), ERR_INVALID);

    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    hosts[2].name = long_name;
    CHECK_INT(gw_ring_build(&ring, hosts, 4), ERR_INVALID);
    long_name[GW_LB_NAME_MAX] = '\0'; /* exactly the maximum is fine */
    CHECK_INT(gw_ring_build(&ring, hosts, 4), ERR_OK);
    gw_ring_free(&ring);

    /* An empty pool: an empty ring that picks nothing. */
    CHECK_INT(gw_ring_build(&ring, hosts, 0), ERR_OK);
    CHECK_INT(gw_ring_pick(&ring, hosts, 0, 42, GW_RING_FACTOR, NULL), -1);
    gw_ring_free(&ring);
    gw_ring_free(NULL);
}

TEST(ring_points_sorted_and_per_host)
{
    struct gw_lb_host hosts[NHOSTS];
    int per_host[NHOSTS] = {0};
    struct gw_ring ring;

    hosts_make(hosts, NHOSTS);
    CHECK_INT(gw_ring_build(&ring, hosts, NHOSTS), ERR_OK);
    CHECK_INT(ring.npoints, NHOSTS * GW_RING_VNODES);
    CHECK_INT(ring.nhosts, NHOSTS);
    for (size_t i = 0; i < ring.npoints; i++) {
        CHECK(ring.points[i].host < NHOSTS);
        per_host[ring.points[i].host]++;
        if (i > 0)
            CHECK(ring.points[i - 1].point < ring.points[i].point);
    }
    for (int i = 0; i < NHOSTS; i++)
        CHECK_INT(per_host[i], GW_RING_VNODES);

    /* A point is the hash of "<name>#<vnode>". */
    uint64_t p0 = gw_hash("10.0.0.1:7002#0", 15);
    bool found = false;
    for (size_t i = 0; i < ring.npoints; i++)
        found |= ring.points[i].point == p0 && ring.points[i].host == 0;
    CHECK(found);
    gw_ring_free(&ring);
}

TEST(ring_same_key_same_host)
{
    struct gw_lb_host hosts[NHOSTS], reversed[NHOSTS];
    struct gw_ring ring, ring2;
    int counts[NHOSTS] = {0};

    hosts_make(hosts, NHOSTS);
    for (int i = 0; i < NHOSTS; i++)
        reversed[i] = hosts[NHOSTS - 1 - i];
    CHECK_INT(gw_ring_build(&ring, hosts, NHOSTS), ERR_OK);
    CHECK_INT(gw_ring_build(&ring2, reversed, NHOSTS), ERR_OK);

    for (int k = 0; k < NKEYS; k++) {
        uint64_t h = key_hash(k);
        int a = gw_ring_pick(&ring, hosts, NHOSTS, h, GW_RING_FACTOR, NULL);

        CHECK(a >= 0 && a < NHOSTS);
        CHECK_INT(gw_ring_pick(&ring, hosts, NHOSTS, h, GW_RING_FACTOR, NULL),
                  a);
        /* The host is found by name, whatever the order of the array. */
        int b = gw_ring_pick(&ring2, reversed, NHOSTS, h, GW_RING_FACTOR, NULL);
        CHECK_STR(reversed[b].name, hosts[a].name);
        counts[a]++;
    }

    /* 160 points per host keep every share near a tenth. */
    for (int i = 0; i < NHOSTS; i++)
        CHECK(counts[i] > 700 && counts[i] < 1300);
    gw_ring_free(&ring);
    gw_ring_free(&ring2);
}

TEST(ring_wraps_past_the_top)
{
    struct gw_lb_host hosts[4];
    struct gw_ring ring;

    hosts_make(hosts, 4);
    CHECK_INT(gw_ring_build(&ring, hosts, 4), ERR_OK);
    const struct gw_ring_point *first = &ring.points[0];
    const struct gw_ring_point *last = &ring.points[ring.npoints - 1];

    CHECK_INT(gw_ring_pick(&ring, hosts, 4, 0, GW_RING_FACTOR, NULL),
              first->host);
    CHECK_INT(
        gw_ring_pick(&ring, hosts, 4, last->point + 1, GW_RING_FACTOR, NULL),
        first->host);
    /* A key on a point belongs to that point. */
    CHECK_INT(gw_ring_pick(&ring, hosts, 4, last->point, GW_RING_FACTOR, NULL),
              last->host);
    gw_ring_free(&ring);
}

/* Maps NKEYS keys over hosts[0..n) to host names. */
static void map_keys(const struct gw_lb_host *hosts, size_t n, const char **out)
{
    struct gw_ring ring;

    CHECK_INT(gw_ring_build(&ring, hosts, n), ERR_OK);
    for (int k = 0; k < NKEYS; k++) {
        int i =
            gw_ring_pick(&ring, hosts, n, key_hash(k), GW_RING_FACTOR, NULL);

        CHECK(i >= 0 && (size_t)i < n);
        out[k] = hosts[i].name;
    }
    gw_ring_free(&ring);
}

TEST(ring_removing_a_host_moves_only_its_keys)
{
    static const char *before[NKEYS], *after[NKEYS];
    struct gw_lb_host hosts[NHOSTS], rest[NHOSTS - 1];

    hosts_make(hosts, NHOSTS);
    map_keys(hosts, NHOSTS, before);

    /* Every position, so index shifts are covered at both ends. */
    for (int gone = 0; gone < NHOSTS; gone++) {
        bool took[NHOSTS] = {false};
        int moved = 0, heirs = 0;

        for (int i = 0, j = 0; i < NHOSTS; i++)
            if (i != gone)
                rest[j++] = hosts[i];
        map_keys(rest, NHOSTS - 1, after);

        for (int k = 0; k < NKEYS; k++) {
            if (before[k] != hosts[gone].name) {
                CHECK_STR(after[k], before[k]);
                continue;
            }
            moved++;
            for (int i = 0; i < NHOSTS; i++)
                if (after[k] == hosts[i].name)
                    took[i] = true;
        }

        /* About a tenth moved, spread over the others, not to one heir. */
        CHECK(moved > 700 && moved < 1300);
        for (int i = 0; i < NHOSTS; i++)
            heirs += took[i];
        CHECK(!took[gone]);
        CHECK(heirs >= NHOSTS - 3);
    }
}

TEST(ring_adding_a_host_moves_only_keys_to_it)
{
    static const char *before[NKEYS], *after[NKEYS];
    struct gw_lb_host hosts[NHOSTS + 1];
    int moved = 0;

    hosts_make(hosts, NHOSTS + 1);
    map_keys(hosts, NHOSTS, before);
    map_keys(hosts, NHOSTS + 1, after);
    for (int k = 0; k < NKEYS; k++) {
        if (after[k] == before[k])
            continue;
        CHECK_STR(after[k], hosts[NHOSTS].name);
        moved++;
    }
    /* About an eleventh (909). */
    CHECK(moved > 600 && moved < 1250);
}

TEST(ring_unavailable_host_skipped_clockwise)
{
    struct gw_lb_host hosts[NHOSTS];
    struct gw_ring ring;
    int order[NHOSTS];
    int moved = 0;

    hosts_make(hosts, NHOSTS);
    CHECK_INT(gw_ring_build(&ring, hosts, NHOSTS), ERR_OK);
    hosts[3].available = false;
    hosts[7].available = false;

    /* Each key goes to the first available host clockwise, no other. */
    for (int k = 0; k < NKEYS; k++) {
        uint64_t h = key_hash(k);
        size_t m = clockwise_hosts(&ring, h, order);
        size_t first = 0;

        CHECK_INT(m, NHOSTS);
        while (order[first] == 3 || order[first] == 7)
            first++;
        moved += first > 0;
        CHECK_INT(gw_ring_pick(&ring, hosts, NHOSTS, h, GW_RING_FACTOR, NULL),
                  order[first]);
    }
    CHECK(moved > 1400 && moved < 2600);

    /* Nothing available: none. */
    for (int i = 0; i < NHOSTS; i++)
        hosts[i].available = false;
    CHECK_INT(gw_ring_pick(&ring, hosts, NHOSTS, 1, GW_RING_FACTOR, NULL), -1);
    gw_ring_free(&ring);
}

TEST(ring_bounded_load_goes_to_next_clockwise)
{
    /* in_flight of the key's own host, of the two others; who gets it. */
    static const struct {
        int64_t own, others;
        bool own_wins;
    } cases[] = {
        {0, 0, true},     /* cap ceil(1.25 * 1 / 3) = 1 */
        {1, 0, false},    /* cap ceil(1.25 * 2 / 3) = 1 */
        {1, 1, true},     /* cap ceil(1.25 * 4 / 3) = 2 */
        {2, 1, true},     /* cap ceil(1.25 * 5 / 3) = 3 */
        {3, 1, false},    /* cap ceil(1.25 * 6 / 3) = 3 */
        {3, 2, true},     /* cap ceil(1.25 * 8 / 3) = 4 */
        {4, 2, false},    /* cap ceil(1.25 * 9 / 3) = 4 */
        {4, 0, false},    /* cap ceil(1.25 * 5 / 3) = 3 */
        {100, 70, true},  /* cap ceil(1.25 * 241 / 3) = 101, just fits */
        {101, 70, false}, /* cap ceil(1.25 * 242 / 3) = 101 */
    };
    struct gw_lb_host hosts[3];
    struct gw_ring ring;
    int order[3];

    hosts_make(hosts, 3);
    CHECK_INT(gw_ring_build(&ring, hosts, 3), ERR_OK);
    for (int k = 0; k < 50; k++) {
        uint64_t h = key_hash(k);

        CHECK_INT(clockwise_hosts(&ring, h, order), 3);
        for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
            for (int i = 0; i < 3; i++)
                hosts[i].in_flight = cases[c].others;
            hosts[order[0]].in_flight = cases[c].own;
            int want = cases[c].own_wins ? order[0] : order[1];

            CHECK_INT(gw_ring_pick(&ring, hosts, 3, h, GW_RING_FACTOR, NULL),
                      want);
        }

        /* Own host and the next at their caps: the third one. */
        hosts[order[0]].in_flight = 5;
        hosts[order[1]].in_flight = 5;
        hosts[order[2]].in_flight = 0; /* cap ceil(1.25 * 11 / 3) = 5 */
        CHECK_INT(gw_ring_pick(&ring, hosts, 3, h, GW_RING_FACTOR, NULL),
                  order[2]);

        /* A larger factor keeps the key home longer. */
        hosts[order[0]].in_flight = 4;
        hosts[order[1]].in_flight = 0;
        hosts[order[2]].in_flight = 0;
        CHECK_INT(gw_ring_pick(&ring, hosts, 3, h, 3.0, NULL), order[0]);
        CHECK_INT(gw_ring_pick(&ring, hosts, 3, h, 2.0, NULL), order[1]);
    }
    gw_ring_free(&ring);
}

TEST(ring_bounded_load_counts_only_available_hosts)
{
    struct gw_lb_host hosts[3];
    struct gw_ring ring;
    int order[3];
    uint64_t h = key_hash(7);

    hosts_make(hosts, 3);
    CHECK_INT(gw_ring_build(&ring, hosts, 3), ERR_OK);
    clockwise_hosts(&ring, h, order);

    /*
     * Two available hosts with 2 and 0 in flight: cap ceil(1.25 * 3 / 2)
     * = 2, so the key's host (2 + 1 > 2) passes it on.  An unavailable host
     * with many requests neither raises the average nor takes the key.
     */
    hosts[order[0]].in_flight = 2;
    hosts[order[1]].in_flight = 50;
    hosts[order[1]].available = false;
    hosts[order[2]].in_flight = 0;
    CHECK_INT(gw_ring_pick(&ring, hosts, 3, h, GW_RING_FACTOR, NULL), order[2]);
    hosts[order[0]].in_flight = 1; /* cap ceil(1.25 * 2 / 2) = 2 */
    CHECK_INT(gw_ring_pick(&ring, hosts, 3, h, GW_RING_FACTOR, NULL), order[0]);
    gw_ring_free(&ring);
}

TEST(ring_exclude_and_fallback)
{
    struct gw_lb_host hosts[3];
    bool exclude[3] = {false};
    struct gw_ring ring;
    int order[3];
    uint64_t h = key_hash(12345);

    hosts_make(hosts, 3);
    CHECK_INT(gw_ring_build(&ring, hosts, 3), ERR_OK);
    clockwise_hosts(&ring, h, order);

    /* A retry excludes the host already tried: the next one clockwise. */
    exclude[order[0]] = true;
    CHECK_INT(gw_ring_pick(&ring, hosts, 3, h, GW_RING_FACTOR, exclude),
              order[1]);

    /*
     * Only the third is eligible and it is over its cap
     * (ceil(1.25 * 21 / 3) = 9 < 20 + 1): it is still the answer.
     */
    exclude[order[1]] = true;
    hosts[order[2]].in_flight = 20;
    CHECK_INT(gw_ring_pick(&ring, hosts, 3, h, GW_RING_FACTOR, exclude),
              order[2]);

    /* Two eligible, both over the cap: the first of them clockwise. */
    exclude[order[1]] = false;
    hosts[order[1]].in_flight = 20;
    CHECK_INT(gw_ring_pick(&ring, hosts, 3, h, GW_RING_FACTOR, exclude),
              order[1]);

    /* Everything excluded or unavailable: none. */
    exclude[order[1]] = true;
    hosts[order[2]].available = false;
    CHECK_INT(gw_ring_pick(&ring, hosts, 3, h, GW_RING_FACTOR, exclude), -1);
    gw_ring_free(&ring);
}

HARNESS_MAIN(T(gw_hash_known_vectors), T(gw_hash_spreads_neighbouring_keys),
             T(p2c_none_and_one), T(p2c_picks_less_loaded_of_two),
             T(p2c_never_unavailable_or_excluded),
             T(p2c_spreads_evenly_over_equal_hosts), T(p2c_respects_weight),
             T(ring_build_refuses_bad_input),
             T(ring_points_sorted_and_per_host), T(ring_same_key_same_host),
             T(ring_wraps_past_the_top),
             T(ring_removing_a_host_moves_only_its_keys),
             T(ring_adding_a_host_moves_only_keys_to_it),
             T(ring_unavailable_host_skipped_clockwise),
             T(ring_bounded_load_goes_to_next_clockwise),
             T(ring_bounded_load_counts_only_available_hosts),
             T(ring_exclude_and_fallback))
