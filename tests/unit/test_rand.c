/*
 * test_rand.c - seeding, known outputs, range and uniformity of the
 * xoshiro256** source, and the kernel-backed secure bytes.
 *
 * Every statistical test uses a fixed seed, so a result that passes once
 * passes on every run; the bounds are wide enough to hold for any sound
 * generator and narrow enough to catch a biased or broken one.
 */
#include "harness.h"

#include <stdbool.h>

#include "base/err.h"
#include "base/rand.h"

#define DRAWS   1000000
#define BUCKETS 10

/*
 * Pearson's statistic for counts against an equal share per bucket.  With
 * 9 degrees of freedom it exceeds 27.9 one time in a thousand.
 */
static double chi_square(const uint64_t *counts, int buckets, uint64_t n)
{
    double expected = (double)n / buckets, sum = 0;

    for (int i = 0; i < buckets; i++) {
        double d = (double)counts[i] - expected;

        sum += d * d / expected;
    }
    return sum;
}

TEST(rand_seed_zero_known_state_and_outputs)
{
    /* splitmix64 from 0, then the first xoshiro256** outputs. */
    static const uint64_t state[4] = {
        0xe220a8397b1dcdafULL,
        0x6e789e6aa1b965f4ULL,
        0x06c45d188009454fULL,
        0xf88bb8a8724c81ecULL,
    };
    static const uint64_t outputs[] = {
        0x99ec5f36cb75f2b4ULL, 0xbf6e1f784956452aULL, 0x1a5f849d4933e6e0ULL,
        0x6aa594f1262d2d2cULL, 0xbba5ad4a1f842e59ULL,
    };
    struct rand r;

    rand_seed(&r, 0);
    for (int i = 0; i < 4; i++)
        CHECK(r.s[i] == state[i]);
    for (size_t i = 0; i < sizeof(outputs) / sizeof(outputs[0]); i++)
        CHECK(rand_next(&r) == outputs[i]);
}

TEST(rand_known_outputs_other_seed)
{
    static const uint64_t outputs[] = {
        0x8d6cbabc1bf0bccaULL, 0xd4392510c51be3b6ULL, 0xcffae65fdc5fbdccULL,
        0x94184f0683aff59bULL, 0xccdf0043690abd25ULL,
    };
    struct rand r;

    rand_seed(&r, 20261203);
    for (size_t i = 0; i < sizeof(outputs) / sizeof(outputs[0]); i++)
        CHECK(rand_next(&r) == outputs[i]);
}

TEST(rand_same_seed_same_sequence)
{
    struct rand a, b;

    rand_seed(&a, 123456789);
    rand_seed(&b, 123456789);
    for (int i = 0; i < 10000; i++)
        CHECK(rand_next(&a) == rand_next(&b));

    /* Reseeding starts the sequence over. */
    rand_seed(&a, 42);
    uint64_t first = rand_next(&a);
    rand_next(&a);
    rand_seed(&a, 42);
    CHECK(rand_next(&a) == first);
}

TEST(rand_different_seeds_differ)
{
    static uint64_t firsts[1000];
    struct rand a, b;
    int same = 0;

    rand_seed(&a, 1);
    rand_seed(&b, 2);
    for (int i = 0; i < 1000; i++)
        same += rand_next(&a) == rand_next(&b);
    CHECK_INT(same, 0);

    /* Neighbouring seeds give unrelated first outputs. */
    for (uint64_t seed = 0; seed < 1000; seed++) {
        rand_seed(&a, seed);
        firsts[seed] = rand_next(&a);
        for (uint64_t j = 0; j < seed; j++)
            CHECK(firsts[j] != firsts[seed]);
    }
}

TEST(rand_next_varies_every_bit)
{
    struct rand r;
    uint64_t ones = 0, zeros = 0;

    rand_seed(&r, 99);
    for (int i = 0; i < 1000; i++) {
        uint64_t v = rand_next(&r);

        ones |= v;
        zeros |= ~v;
    }
    CHECK(ones == UINT64_MAX);
    CHECK(zeros == UINT64_MAX);
}

TEST(rand_below_stays_in_range)
{
    static const uint64_t bounds[] = {
        1, 2, 3, 7, 10, 1000, 1ULL << 32, (1ULL << 63) + 1, UINT64_MAX,
    };
    struct rand r;

    rand_seed(&r, 5);
    for (size_t i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++) {
        uint64_t max_seen = 0;

        for (int j = 0; j < 10000; j++) {
            uint64_t v = rand_below(&r, bounds[i]);

            CHECK(v < bounds[i]);
            if (v > max_seen)
                max_seen = v;
        }
        /* The top of the range is reached, or nearly (by a 1/1000 slice). */
        CHECK(max_seen >= bounds[i] - 1 - bounds[i] / 1000);
    }
}

TEST(rand_below_uniform_buckets)
{
    uint64_t counts[BUCKETS] = {0};
    struct rand r;

    rand_seed(&r, 2026);
    for (int i = 0; i < DRAWS; i++)
        counts[rand_below(&r, BUCKETS)]++;
    double chi = chi_square(counts, BUCKETS, DRAWS);
    CHECK(chi < 40.0);
    /* A counter dressed as a generator would be too even. */
    CHECK(chi > 0.5);
}

TEST(rand_below_has_no_modulo_bias)
{
    /*
     * With bound = 3 * 2^62, a plain `next % bound` lands in the first
     * quarter of the range twice as often as in the other two.
     */
    const uint64_t quarter = 1ULL << 62, bound = 3 * quarter;
    uint64_t counts[3] = {0};
    struct rand r;

    rand_seed(&r, 8);
    for (int i = 0; i < DRAWS / 4; i++)
        counts[rand_below(&r, bound) / quarter]++;
    CHECK(chi_square(counts, 3, DRAWS / 4) < 30.0);
}

TEST(rand_unit_in_half_open_interval)
{
    uint64_t counts[BUCKETS] = {0};
    double lo = 1.0, hi = 0.0, sum = 0.0;
    struct rand r;

    rand_seed(&r, 17);
    for (int i = 0; i < DRAWS; i++) {
        double u = rand_unit(&r);

        CHECK(u >= 0.0 && u < 1.0);
        counts[(int)(u * BUCKETS)]++;
        sum += u;
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
    }
    CHECK(lo < 1e-4 && hi > 1.0 - 1e-4);
    CHECK(sum / DRAWS > 0.497 && sum / DRAWS < 0.503);
    CHECK(chi_square(counts, BUCKETS, DRAWS) < 40.0);
}

TEST(rand_unit_uses_53_bits)
{
    struct rand r;
    bool low_bit_seen = false;

    /* Multiples of 2^-53 with the lowest such bit set now and then. */
    rand_seed(&r, 23);
    for (int i = 0; i < 1000; i++) {
        double scaled = rand_unit(&r) * 0x1.0p53;
        uint64_t whole = (uint64_t)scaled;

        CHECK((double)whole == scaled);
        low_bit_seen |= (whole & 1) != 0;
    }
    CHECK(low_bit_seen);
}

static bool all_zero(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != 0)
            return false;
    return true;
}

TEST(rand_secure_bytes_fills_buffer)
{
    unsigned char a[64] = {0}, b[64] = {0};

    CHECK_INT(rand_secure_bytes(a, sizeof(a)), ERR_OK);
    CHECK_INT(rand_secure_bytes(b, sizeof(b)), ERR_OK);
    CHECK(!all_zero(a, sizeof(a)));
    CHECK(memcmp(a, b, sizeof(a)) != 0);

    /* Every 8-byte stretch is written, not only the start. */
    for (size_t off = 0; off < sizeof(a); off += 8)
        CHECK(!all_zero(a + off, 8) || !all_zero(b + off, 8));
}

TEST(rand_secure_bytes_large_and_empty)
{
    static unsigned char big[1 << 20];
    uint64_t counts[BUCKETS] = {0};

    CHECK_INT(rand_secure_bytes(big, 0), ERR_OK);
    CHECK(all_zero(big, sizeof(big)));
    CHECK_INT(rand_secure_bytes(big, sizeof(big)), ERR_OK);
    /* The last kilobyte is filled too. */
    CHECK(!all_zero(big + sizeof(big) - 1024, 1024));
    for (size_t i = 0; i < sizeof(big); i++)
        counts[big[i] % BUCKETS]++;
    /* 256 % 10 leaves six residues one value richer; compare 0..5 alone. */
    CHECK(chi_square(counts, 6,
                     counts[0] + counts[1] + counts[2] + counts[3] + counts[4] +
                         counts[5]) < 60);
}

TEST(rand_seed_secure_differs_between_calls)
{
    struct rand a, b;

    CHECK_INT(rand_seed_secure(&a), ERR_OK);
    CHECK_INT(rand_seed_secure(&b), ERR_OK);
    CHECK(rand_next(&a) != rand_next(&b));
}

HARNESS_MAIN(T(rand_seed_zero_known_state_and_outputs),
             T(rand_known_outputs_other_seed), T(rand_same_seed_same_sequence),
             T(rand_different_seeds_differ), T(rand_next_varies_every_bit),
             T(rand_below_stays_in_range), T(rand_below_uniform_buckets),
             T(rand_below_has_no_modulo_bias),
             T(rand_unit_in_half_open_interval), T(rand_unit_uses_53_bits),
             T(rand_secure_bytes_fills_buffer),
             T(rand_secure_bytes_large_and_empty),
             T(rand_seed_secure_differs_between_calls))
