/*
 * test_keyset.c - the bounded set of in-flight keys: membership, the
 * bound, removal, long texts, and real threads adding and removing.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "base/keyset.h"
#include "harness.h"

TEST(add_is_once_per_text)
{
    struct keyset *s = keyset_new(10);

    CHECK(s != NULL);
    CHECK_INT(keyset_add(s, "cust-1\nk-1"), 1);
    CHECK_INT(keyset_add(s, "cust-1\nk-1"), 0);
    CHECK_INT(keyset_add(s, "cust-2\nk-1"), 1);
    CHECK_INT(keyset_count(s), 2);
    keyset_remove(s, "cust-1\nk-1");
    CHECK_INT(keyset_count(s), 1);
    CHECK_INT(keyset_add(s, "cust-1\nk-1"), 1);
    keyset_remove(s, "never added");
    CHECK_INT(keyset_count(s), 2);
    keyset_free(s);
}

TEST(full_set_refuses_until_one_leaves)
{
    struct keyset *s = keyset_new(3);
    char text[16];

    for (int i = 0; i < 3; i++) {
        snprintf(text, sizeof(text), "k%d", i);
        CHECK_INT(keyset_add(s, text), 1);
    }
    CHECK_INT(keyset_add(s, "k3"), -1);
    CHECK_INT(keyset_add(s, "k1"), 0); /* present beats full */
    CHECK_INT(keyset_count(s), 3);
    keyset_remove(s, "k1");
    CHECK_INT(keyset_add(s, "k3"), 1);
    keyset_free(s);
}

TEST(longest_text_and_shared_buckets)
{
    struct keyset *s = keyset_new(100000);
    char big[KEYSET_TEXT_MAX + 1], text[32];

    memset(big, 'x', KEYSET_TEXT_MAX);
    big[KEYSET_TEXT_MAX] = '\0';
    CHECK_INT(keyset_add(s, big), 1);
    CHECK_INT(keyset_add(s, big), 0);
    /* More texts than buckets: chains hold several, each found again. */
    for (int i = 0; i < 3 * KEYSET_BUCKETS; i++) {
        snprintf(text, sizeof(text), "key-%d", i);
        CHECK_INT(keyset_add(s, text), 1);
    }
    for (int i = 0; i < 3 * KEYSET_BUCKETS; i += 2) {
        snprintf(text, sizeof(text), "key-%d", i);
        keyset_remove(s, text);
    }
    for (int i = 0; i < 3 * KEYSET_BUCKETS; i++) {
        snprintf(text, sizeof(text), "key-%d", i);
        CHECK_INT(keyset_add(s, text), i % 2 == 0 ? 1 : 0);
    }
    CHECK_INT(keyset_count(s), 3 * KEYSET_BUCKETS + 1);
    keyset_free(s);
}

#define THREADS 4
#define ROUNDS  20000

static atomic_int holders;  /* threads that hold "shared" now */
static atomic_int overlaps; /* times two held it at once: must stay 0 */

struct worker {
    struct keyset *s;
    int id;
    int wins; /* adds that returned 1 for the shared key */
};

/* Every thread fights for one shared key, as requests with one
 * Idempotency-Key do, and churns keys of its own. */
static void *work(void *arg)
{
    struct worker *w = arg;
    char own[32];

    for (int i = 0; i < ROUNDS; i++) {
        if (keyset_add(w->s, "shared") == 1) {
            w->wins++;
            if (atomic_fetch_add(&holders, 1) != 0)
                atomic_fetch_add(&overlaps, 1);
            atomic_fetch_sub(&holders, 1);
            keyset_remove(w->s, "shared");
        }
        snprintf(own, sizeof(own), "t%d-%d", w->id, i % 64);
        if (keyset_add(w->s, own) == 1)
            keyset_remove(w->s, own);
    }
    return NULL;
}

TEST(threads_leave_it_empty)
{
    struct keyset *s = keyset_new(1000);
    pthread_t t[THREADS];
    struct worker w[THREADS];
    int wins = 0;

    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.s = s, .id = i};
        CHECK_INT(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        wins += w[i].wins;
    }
    CHECK_INT(atomic_load(&overlaps), 0);
    CHECK(wins > 0);
    CHECK_INT(keyset_count(s), 0);
    keyset_free(s);
}

HARNESS_MAIN(T(add_is_once_per_text), T(full_set_refuses_until_one_leaves),
             T(longest_text_and_shared_buckets), T(threads_leave_it_empty))
