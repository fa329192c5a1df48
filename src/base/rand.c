#include "base/rand.h"

#include <assert.h>
#include <errno.h>
#include <sys/random.h>

#include "base/err.h"
#include "base/log.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void rand_seed(struct rand *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

int rand_seed_secure(struct rand *r)
{
    uint64_t seed;
    int rc = rand_secure_bytes(&seed, sizeof(seed));

    if (rc != ERR_OK)
        return rc;
    rand_seed(r, seed);
    return ERR_OK;
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t rand_next(struct rand *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t rand_below(struct rand *r, uint64_t bound)
{
    /* Reject the short top slice so every residue is equally likely. */
    assert(bound > 0);
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t v;

    do {
        v = rand_next(r);
    } while (v >= limit);
    return v % bound;
}

double rand_unit(struct rand *r)
{
    return (double)(rand_next(r) >> 11) * 0x1.0p-53;
}

int rand_secure_bytes(void *buf, size_t len)
{
    unsigned char *p = buf;

    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error("rand", "getrandom_failed errno=%d", errno);
            return ERR_SYS;
        }
        p += n;
        len -= (size_t)n;
    }
    return ERR_OK;
}
