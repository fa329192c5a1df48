/*
 * keyset.h - a bounded, thread-safe set of short strings.
 *
 * Services keep the Idempotency-Keys of requests still being worked on in
 * one, so that a second request with the same key is told at once that the
 * first is running.  Every call takes the set's own mutex for a hash-bucket
 * walk; no I/O is done under it.
 */
#ifndef MARQUEE_BASE_KEYSET_H
#define MARQUEE_BASE_KEYSET_H

#include <stddef.h>

#define KEYSET_TEXT_MAX 320  /* longest text, bytes, without the NUL */
#define KEYSET_BUCKETS  4096 /* hash buckets, fixed */

struct keyset;

/* A set that holds at most max (>= 1) texts; NULL when out of memory. */
struct keyset *keyset_new(size_t max);

/* Frees the set and every text in it; s may be NULL. */
void keyset_free(struct keyset *s);

/*
 * Adds a copy of text (at most KEYSET_TEXT_MAX bytes; longer is a bug and
 * asserts).  Returns 1 when added, 0 when it was there already, and -1 when
 * the set is full or memory ran out (nothing added).
 */
int keyset_add(struct keyset *s, const char *text);

/* Removes text if present. */
void keyset_remove(struct keyset *s, const char *text);

/* How many texts the set holds now. */
size_t keyset_count(struct keyset *s);

#endif
