/*
 * backoff.h - when to restart a process that died, and when its deaths
 * have become a crash loop.  Pure: the clock and the random source are
 * passed in, so tests drive both.
 */
#ifndef MARQUEE_CONTROL_BACKOFF_H
#define MARQUEE_CONTROL_BACKOFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rand;

/* Restarts remembered per instance: the most a crash-loop rule may ask. */
#define BACKOFF_HISTORY_MAX 32

/*
 * Exponential backoff with full jitter (AWS architecture blog, "Exponential
 * Backoff And Jitter"): a delay uniform in [0, min(cap_ms, base_ms x
 * 2^attempt)].  attempt counts the failures since the last stable run,
 * from 0.  Full jitter spreads the restarts of instances that died
 * together.  base_ms >= 1, cap_ms >= base_ms; no overflow for any attempt.
 */
int64_t backoff_delay_ms(int64_t base_ms, int64_t cap_ms, unsigned attempt,
                         struct rand *r);

/* The times of an instance's last BACKOFF_HISTORY_MAX restarts. */
struct backoff_history {
    int64_t at_ms[BACKOFF_HISTORY_MAX];
    size_t n;    /* entries used */
    size_t next; /* where the next one goes */
};

void backoff_history_record(struct backoff_history *h, int64_t now_ms);

/* Restarts recorded in (now_ms - window_ms, now_ms]. */
size_t backoff_history_count(const struct backoff_history *h, int64_t now_ms,
                             int64_t window_ms);

/*
 * Whether restarts (at most BACKOFF_HISTORY_MAX) within window_ms make a
 * crash loop: then the supervisor waits the whole cap instead of a
 * jittered delay, and says so.
 */
bool backoff_crash_loop(const struct backoff_history *h, int64_t now_ms,
                        int64_t window_ms, size_t restarts);

#endif
