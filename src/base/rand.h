/*
 * rand.h - an injectable, fast, non-cryptographic random source.
 *
 * xoshiro256** (Blackman and Vigna).  Each thread or component owns its own
 * state, so there is no shared lock; tests seed it to get the same sequence
 * every run.  For secrets (tokens, keys) use rand_secure_bytes() instead.
 */
#ifndef MARQUEE_BASE_RAND_H
#define MARQUEE_BASE_RAND_H

#include <stddef.h>
#include <stdint.h>

struct rand {
    uint64_t s[4];
};

/* Seeds deterministically from one 64-bit value (splitmix64 expansion). */
void rand_seed(struct rand *r, uint64_t seed);

/* Seeds from the kernel's entropy; returns ERR_OK or ERR_SYS. */
int rand_seed_secure(struct rand *r);

uint64_t rand_next(struct rand *r);

/* A uniform value in [0, bound); bound must be > 0.  No modulo bias. */
uint64_t rand_below(struct rand *r, uint64_t bound);

/* A uniform double in [0, 1). */
double rand_unit(struct rand *r);

/* Fills buf with len bytes from getrandom(2); ERR_OK or ERR_SYS. */
int rand_secure_bytes(void *buf, size_t len);

#endif
