/*
 * timer.c - one-shot timers on the loop threads (http.h).
 *
 * Each loop thread keeps its pending timers in a binary min-heap ordered
 * by (due_ms, seq).  h2o 2.2 has no timer of arbitrary duration: an
 * h2o_timeout_t has one fixed duration, and its entries must be linked in
 * the order they expire.  So a thread owns HTTP_TIMER_BUCKETS timeouts of
 * 0, 1, 2, 4 ... 2^25 ms and a single wake-up entry, linked into the
 * longest bucket that does not pass the earliest deadline.  When it fires,
 * due timers run and the entry is linked again for the next one; a delay
 * of d ms takes at most log2(d) + 2 wake-ups, and starting or cancelling a
 * timer costs one heap operation.
 *
 * Deadlines are read from CLOCK_MONOTONIC, not from h2o's loop clock (wall
 * time in h2o 2.2), so a wall-clock step cannot make a timer fire early:
 * a wake-up that comes early only links the entry again.
 */
#include <assert.h>
#include <stdlib.h>
#include <time.h>

#include "http/internal.h"

struct http_timer {
    int64_t due_ms;
    uint64_t seq;
    size_t slot; /* index in the heap; SIZE_MAX once out of it */
    struct http_thread *thread;
    void (*fn)(void *arg);
    void *arg;
    bool firing;
};

int64_t http_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t http_loop_now_ms(struct http_server *s, int thread)
{
    (void)s;
    (void)thread;
    return http_mono_ms();
}

/* --- the heap ------------------------------------------------------------ */

static bool timer_before(const struct http_timer *a, const struct http_timer *b)
{
    if (a->due_ms != b->due_ms)
        return a->due_ms < b->due_ms;
    return a->seq < b->seq;
}

static void heap_place(struct http_timers *h, size_t i, struct http_timer *t)
{
    h->heap[i] = t;
    t->slot = i;
}

static void heap_up(struct http_timers *h, size_t i)
{
    struct http_timer *t = h->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, h->heap[parent]))
            break;
        heap_place(h, i, h->heap[parent]);
        i = parent;
    }
    heap_place(h, i, t);
}

static void heap_down(struct http_timers *h, size_t i)
{
    struct http_timer *t = h->heap[i];

    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->n)
            break;
        if (child + 1 < h->n &&
            timer_before(h->heap[child + 1], h->heap[child]))
            child++;
        if (!timer_before(h->heap[child], t))
            break;
        heap_place(h, i, h->heap[child]);
        i = child;
    }
    heap_place(h, i, t);
}

static void heap_remove(struct http_timers *h, struct http_timer *t)
{
    size_t i = t->slot;
    struct http_timer *last;

    assert(i < h->n && h->heap[i] == t);
    last = h->heap[--h->n];
    t->slot = SIZE_MAX;
    if (i == h->n)
        return;
    heap_place(h, i, last);
    heap_down(h, i);
    heap_up(h, last->slot);
}

static bool heap_push(struct http_timers *h, struct http_timer *t)
{
    if (h->n == h->cap) {
        size_t cap = h->cap != 0 ? h->cap * 2 : 64;
        struct http_timer **heap;
        if (cap > HTTP_TIMERS_MAX)
            cap = HTTP_TIMERS_MAX;
        if (cap == h->n)
            return false;
        heap = realloc(h->heap, cap * sizeof(*heap));
        if (heap == NULL)
            return false;
        h->heap = heap;
        h->cap = cap;
    }
    heap_place(h, h->n++, t);
    heap_up(h, t->slot);
    return true;
}

/* --- waking the loop ----------------------------------------------------- */

/* The longest bucket not past delay_ms: 0 for 0, else 1 + floor(log2). */
static int bucket_for(int64_t delay_ms)
{
    int b = 0;

    if (delay_ms <= 0)
        return 0;
    while (b + 1 < HTTP_TIMER_BUCKETS && ((int64_t)1 << b) <= delay_ms)
        b++;
    return b;
}

static void waker_arm(struct http_thread *t)
{
    struct http_timers *h = &t->timers;

    if (h2o_timeout_is_linked(&h->waker))
        h2o_timeout_unlink(&h->waker);
    if (h->n == 0 || !h->ready)
        return;
    int b = bucket_for(h->heap[0]->due_ms - http_mono_ms());
    h2o_timeout_link(t->ctx.loop, &h->buckets[b], &h->waker);
}

static void on_wake(h2o_timeout_entry_t *entry)
{
    struct http_timers *h =
        H2O_STRUCT_FROM_MEMBER(struct http_timers, waker, entry);
    struct http_thread *t =
        H2O_STRUCT_FROM_MEMBER(struct http_thread, timers, h);
    int64_t now = http_mono_ms();

    /* Bounded, so that a burst of due timers cannot starve the sockets;
     * the rest run on the next turn through the 0 ms bucket. */
    for (int i = 0; i < HTTP_TIMER_FIRE_BATCH && h->n > 0; i++) {
        struct http_timer *tm = h->heap[0];
        if (tm->due_ms > now)
            break;
        heap_remove(h, tm);
        tm->firing = true;
        tm->fn(tm->arg);
        free(tm);
    }
    waker_arm(t);
}

/* --- the API ------------------------------------------------------------- */

struct http_timer *http_timer_start(struct http_server *s, int thread,
                                    int delay_ms, void (*fn)(void *arg),
                                    void *arg)
{
    struct http_thread *t;
    struct http_timer *tm;

    assert(thread >= 0 && thread < s->nthreads);
    assert(http_server_on_thread(s, thread) && "timer started off its thread");
    t = &s->threads[thread];
    if (!t->timers.ready || t->timers.closed)
        return NULL;
    if (delay_ms < 0)
        delay_ms = 0;
    if (delay_ms > HTTP_TIMER_DELAY_MAX_MS)
        delay_ms = HTTP_TIMER_DELAY_MAX_MS;
    tm = calloc(1, sizeof(*tm));
    if (tm == NULL)
        return NULL;
    tm->due_ms = http_mono_ms() + delay_ms;
    tm->seq = t->timers.seq++;
    tm->thread = t;
    tm->fn = fn;
    tm->arg = arg;
    if (!heap_push(&t->timers, tm)) {
        free(tm);
        return NULL;
    }
    if (t->timers.heap[0] == tm)
        waker_arm(t);
    return tm;
}

void http_timer_cancel(struct http_timer *tm)
{
    struct http_timers *h;

    if (tm == NULL || tm->firing)
        return;
    h = &tm->thread->timers;
    heap_remove(h, tm);
    free(tm);
    /* The wake-up entry stays where it is: waking early for a timer that
     * is gone costs one turn, re-linking on every cancel costs more. */
}

/* --- thread life --------------------------------------------------------- */

void http_timers_setup(struct http_thread *t)
{
    struct http_timers *h = &t->timers;

    for (int b = 0; b < HTTP_TIMER_BUCKETS; b++)
        h2o_timeout_init(t->ctx.loop, &h->buckets[b],
                         b == 0 ? 0 : (uint64_t)1 << (b - 1));
    h->waker.cb = on_wake;
    h->ready = true;
}

/* New timers are refused from now on; those pending may still run. */
void http_timers_refuse(struct http_thread *t)
{
    t->timers.closed = true;
}

/* Pending timers stay in the heap, so that a late cancel still finds them;
 * they never run. */
void http_timers_stop(struct http_thread *t)
{
    struct http_timers *h = &t->timers;

    h->closed = true;
    if (!h->ready)
        return;
    if (h2o_timeout_is_linked(&h->waker))
        h2o_timeout_unlink(&h->waker);
    for (int b = 0; b < HTTP_TIMER_BUCKETS; b++)
        h2o_timeout_dispose(t->ctx.loop, &h->buckets[b]);
    h->ready = false;
}

void http_timers_free(struct http_thread *t)
{
    struct http_timers *h = &t->timers;

    for (size_t i = 0; i < h->n; i++)
        free(h->heap[i]);
    free(h->heap);
    h->heap = NULL;
    h->n = h->cap = 0;
}
