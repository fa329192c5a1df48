/*
 * keyset.c - a bounded, thread-safe set of short strings: separate
 * chaining over a fixed table, one mutex.
 */
#include <assert.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/keyset.h"

struct keyset_entry {
    struct keyset_entry *next;
    char text[KEYSET_TEXT_MAX + 1];
};

struct keyset {
    pthread_mutex_t lock;
    size_t count, max;
    struct keyset_entry *buckets[KEYSET_BUCKETS];
};

/* FNV-1a, 64 bits: keys are chosen by clients, but a bucket's length only
 * costs time, and the set is bounded. */
static size_t bucket_of(const char *text)
{
    uint64_t h = 1469598103934665603ULL;

    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return (size_t)(h % KEYSET_BUCKETS);
}

struct keyset *keyset_new(size_t max)
{
    struct keyset *s;

    assert(max >= 1);
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    s->max = max;
    return s;
}

void keyset_free(struct keyset *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < KEYSET_BUCKETS; i++) {
        while (s->buckets[i] != NULL) {
            struct keyset_entry *e = s->buckets[i];
            s->buckets[i] = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int keyset_add(struct keyset *s, const char *text)
{
    size_t len = strlen(text), b = bucket_of(text);
    struct keyset_entry *e;
    int rc = 1;

    assert(len <= KEYSET_TEXT_MAX);
    pthread_mutex_lock(&s->lock);
    for (e = s->buckets[b]; e != NULL; e = e->next)
        if (strcmp(e->text, text) == 0) {
            rc = 0;
            goto out_unlock;
        }
    if (s->count >= s->max || (e = malloc(sizeof(*e))) == NULL) {
        rc = -1;
        goto out_unlock;
    }
    memcpy(e->text, text, len + 1);
    e->next = s->buckets[b];
    s->buckets[b] = e;
    s->count++;

out_unlock:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void keyset_remove(struct keyset *s, const char *text)
{
    size_t b = bucket_of(text);

    pthread_mutex_lock(&s->lock);
    for (struct keyset_entry **p = &s->buckets[b]; *p != NULL;
         p = &(*p)->next) {
        if (strcmp((*p)->text, text) == 0) {
            struct keyset_entry *e = *p;
            *p = e->next;
            free(e);
            s->count--;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

size_t keyset_count(struct keyset *s)
{
    size_t n;

    pthread_mutex_lock(&s->lock);
    n = s->count;
    pthread_mutex_unlock(&s->lock);
    return n;
}
