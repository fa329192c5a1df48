#include "base/clock.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/err.h"

static int64_t system_wall_ms(struct clock *self)
{
    struct timespec ts;

    (void)self;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t system_mono_ns(struct clock *self)
{
    struct timespec ts;

    (void)self;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct clock system_clock = {system_wall_ms, system_mono_ns};

struct clock *clock_system(void)
{
    return &system_clock;
}

static int64_t manual_wall_ms(struct clock *self)
{
    return ((struct clock_manual *)self)->wall_ms;
}

static int64_t manual_mono_ns(struct clock *self)
{
    return ((struct clock_manual *)self)->mono_ns;
}

void clock_manual_init(struct clock_manual *c, int64_t wall_ms)
{
    c->base.wall_ms = manual_wall_ms;
    c->base.mono_ns = manual_mono_ns;
    c->wall_ms = wall_ms;
    /* Start the monotonic reading away from zero so "unset" stays visible. */
    c->mono_ns = 1000000000;
}

void clock_manual_advance(struct clock_manual *c, int64_t ms)
{
    c->wall_ms += ms;
    c->mono_ns += ms * 1000000;
}

/* Howard Hinnant's days_from_civil algorithm, written out for int64_t. */
int64_t clock_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;

    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void clock_format_rfc3339(int64_t wall_ms, char out[CLOCK_RFC3339_LEN])
{
    int64_t secs = wall_ms >= 0 ? wall_ms / 1000 : (wall_ms - 999) / 1000;
    int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
    unsigned rem = (unsigned)(secs - days * 86400);
    int64_t y;
    unsigned m, d;

    civil_from_days(days, &y, &m, &d);
    snprintf(out, CLOCK_RFC3339_LEN, "%04u-%02u-%02uT%02u:%02u:%02uZ",
             (unsigned)(y % 10000) % 10000u, m % 13u, d % 32u, rem / 3600 % 24u,
             rem / 60 % 60u, rem % 60u);
}

static int parse_digits(const char *s, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return ERR_INVALID;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return ERR_OK;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30,
                                 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 && leap ? 29 : days[m - 1];
}

/* Parses "YYYY-MM-DD" at s; checks the day exists in that month. */
static int parse_ymd(const char *s, int *y, int *m, int *d)
{
    if (parse_digits(s, 4, y) || s[4] != '-' || parse_digits(s + 5, 2, m) ||
        s[7] != '-' || parse_digits(s + 8, 2, d))
        return ERR_INVALID;
    if (*y < 1 || *m < 1 || *m > 12 || *d < 1 || *d > days_in_month(*y, *m))
        return ERR_INVALID;
    return ERR_OK;
}

int clock_parse_date(const char *s, int64_t *out_days)
{
    int y, m, d;

    if (strlen(s) != 10 || parse_ymd(s, &y, &m, &d))
        return ERR_INVALID;
    *out_days = clock_days_from_civil(y, (unsigned)m, (unsigned)d);
    return ERR_OK;
}

int clock_parse_rfc3339(const char *s, int64_t *out_ms)
{
    int y, mo, d, h, mi, sec, ms = 0, off_min = 0;
    const char *p;

    if (strlen(s) < 20 || parse_ymd(s, &y, &mo, &d))
        return ERR_INVALID;
    if ((s[10] != 'T' && s[10] != 't') || parse_digits(s + 11, 2, &h) ||
        s[13] != ':' || parse_digits(s + 14, 2, &mi) || s[16] != ':' ||
        parse_digits(s + 17, 2, &sec))
        return ERR_INVALID;
    if (h > 23 || mi > 59 || sec > 59)
        return ERR_INVALID;

    p = s + 19;
    if (*p == '.') {
        int scale = 100;

        p++;
        if (*p < '0' || *p > '9')
            return ERR_INVALID;
        for (; *p >= '0' && *p <= '9'; p++) {
            ms += (*p - '0') * scale;
            scale /= 10;
        }
    }

    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;

        if (parse_digits(p + 1, 2, &oh) || p[3] != ':' ||
            parse_digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return ERR_INVALID;
        off_min = (oh * 60 + om) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return ERR_INVALID;
    }
    if (*p != '\0')
        return ERR_INVALID;

    int64_t days = clock_days_from_civil(y, (unsigned)mo, (unsigned)d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - off_min * 60;
    *out_ms = secs * 1000 + ms;
    return ERR_OK;
}
