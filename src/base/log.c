#include "base/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"

static _Atomic int current_level = LOG_INFO;
static _Atomic int log_fd = STDERR_FILENO;
static _Atomic bool with_timestamps = true;

static const char *const level_names[] = {"debug", "info", "warn", "error",
                                          "off"};

int log_level_parse(const char *s, enum log_level *out)
{
    for (int i = LOG_DEBUG; i <= LOG_OFF; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return ERR_OK;
        }
    }
    return ERR_INVALID;
}

void log_set_level(enum log_level level)
{
    atomic_store(&current_level, (int)level);
}

enum log_level log_get_level(void)
{
    return (enum log_level)atomic_load(&current_level);
}

bool log_enabled(enum log_level level)
{
    return (int)level >=
           atomic_load_explicit(&current_level, memory_order_relaxed);
}

void log_set_fd(int fd)
{
    atomic_store(&log_fd, fd);
}

void log_set_timestamps(bool on)
{
    atomic_store(&with_timestamps, on);
}

static size_t format_time(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(buf + n, cap - n, ".%03ldZ ", ts.tv_nsec / 1000000);
    return n + (size_t)(m > 0 ? m : 0);
}

void log_write(enum log_level level, const char *subsystem, const char *fmt,
               ...)
{
    char line[LOG_LINE_MAX];
    size_t len = 0;
    va_list ap;

    if (!log_enabled(level) || level >= LOG_OFF)
        return;
    if (atomic_load(&with_timestamps))
        len = format_time(line, sizeof(line));

    int n = snprintf(line + len, sizeof(line) - len,
                     "%s %s: ", level_names[level], subsystem);
    len += (size_t)(n > 0 ? n : 0);

    /* A prefix that already fills the buffer leaves no room for the event. */
    if (len < sizeof(line)) {
        va_start(ap, fmt);
        n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
        va_end(ap);
        len += (size_t)(n > 0 ? n : 0);
    }
    /* The newline takes the place of the terminating NUL. */
    if (len >= sizeof(line)) {
        len = sizeof(line) - 4;
        memcpy(line + len, "...", 3);
        len += 3;
    }
    line[len++] = '\n';

    /* One write per line: a short write to a pipe or tty is not retried. */
    ssize_t w = write(atomic_load(&log_fd), line, len);
    (void)w;
}
