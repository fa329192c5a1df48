/*
 * clock.h - an injectable source of time.
 *
 * Code that needs time takes a `struct clock *` instead of calling
 * clock_gettime(), so tests can drive time by hand.  Two readings exist:
 * wall time (Unix epoch, for timestamps stored or shown) and monotonic time
 * (for timeouts and durations, never goes back).
 */
#ifndef MARQUEE_BASE_CLOCK_H
#define MARQUEE_BASE_CLOCK_H

#include <stdint.h>

struct clock {
    /* Milliseconds since the Unix epoch. */
    int64_t (*wall_ms)(struct clock *self);
    /* Nanoseconds on a monotonic clock with an arbitrary origin. */
    int64_t (*mono_ns)(struct clock *self);
};

/* The process-wide clock backed by clock_gettime(); never NULL, not owned. */
struct clock *clock_system(void);

/*
 * A manual clock for tests: time moves only through clock_manual_advance().
 * Not thread-safe by design; a test owns it.
 */
struct clock_manual {
    struct clock base;
    int64_t wall_ms;
    int64_t mono_ns;
};

void clock_manual_init(struct clock_manual *c, int64_t wall_ms);
void clock_manual_advance(struct clock_manual *c, int64_t ms);

static inline int64_t clock_wall_ms(struct clock *c)
{
    return c->wall_ms(c);
}

static inline int64_t clock_mono_ms(struct clock *c)
{
    return c->mono_ns(c) / 1000000;
}

/*
 * Formats a wall time as RFC 3339 in UTC with seconds precision
 * ("2026-12-03T18:30:00Z") into out, which must hold 21 bytes.
 */
#define CLOCK_RFC3339_LEN 21
void clock_format_rfc3339(int64_t wall_ms, char out[CLOCK_RFC3339_LEN]);

/*
 * Parses RFC 3339 ("2026-12-03T18:30:00Z", "...+05:30", optional fraction)
 * into milliseconds since the epoch (negative before 1970).  Returns ERR_OK or ERR_INVALID.
 */
int clock_parse_rfc3339(const char *s, int64_t *out_ms);

/* Days since 1970-01-01 of a civil date; exact for the proleptic calendar. */
int64_t clock_days_from_civil(int64_t y, unsigned m, unsigned d);

/*
 * Parses a calendar date "YYYY-MM-DD" into days since the epoch.
 * Returns ERR_OK or ERR_INVALID (also for 2026-02-30).
 */
int clock_parse_date(const char *s, int64_t *out_days);

#endif
