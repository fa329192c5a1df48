/*
 * log.h - operator-facing log lines.
 *
 * Every line reads `TIME level subsystem: event key=value ...`, one event per
 * line, written with a single write(2) so lines from several threads never
 * interleave.  The level is process-wide and set from configuration
 * (log.level); lines below it cost one comparison.
 */
#ifndef MARQUEE_BASE_LOG_H
#define MARQUEE_BASE_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

/* Largest line written, newline included; longer lines end in "...". */
#define LOG_LINE_MAX 2048

/* Parses "debug", "info", "warn", "error" or "off"; ERR_OK or ERR_INVALID. */
int log_level_parse(const char *s, enum log_level *out);

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
bool log_enabled(enum log_level level);

/* Writes to fd (stderr by default); the fd is not owned. */
void log_set_fd(int fd);

/* Whether lines start with an RFC 3339 timestamp (default true). */
void log_set_timestamps(bool on);

/* fmt continues the line after "subsystem: "; it starts with the event. */
void log_write(enum log_level level, const char *subsystem, const char *fmt,
               ...) __attribute__((format(printf, 3, 4)));

#define log_debug(sub, ...)                                                    \
    do {                                                                       \
        if (log_enabled(LOG_DEBUG))                                            \
            log_write(LOG_DEBUG, sub, __VA_ARGS__);                            \
    } while (0)
#define log_info(sub, ...)  log_write(LOG_INFO, sub, __VA_ARGS__)
#define log_warn(sub, ...)  log_write(LOG_WARN, sub, __VA_ARGS__)
#define log_error(sub, ...) log_write(LOG_ERROR, sub, __VA_ARGS__)

#endif
