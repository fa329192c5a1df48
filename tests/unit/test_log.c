/*
 * test_log.c - log levels, the line format, long lines and whole lines under
 * concurrent writers.  Output goes to a pipe that the test reads back.
 */
#include "harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"

/* Room for every line one test writes; well under the pipe's capacity. */
#define CAPTURE_MAX (4 * LOG_LINE_MAX)

struct capture {
    int rd, wr;
    char buf[CAPTURE_MAX + 1];
    size_t len;
};

/* Sends the log to a fresh pipe, without timestamps, at level debug. */
static void capture_open(struct capture *c)
{
    int fds[2];

    CHECK_INT(pipe(fds), 0);
    c->rd = fds[0];
    c->wr = fds[1];
    c->len = 0;
    /* A test that expects no output must not block on an empty pipe. */
    CHECK(fcntl(c->rd, F_SETFL, O_NONBLOCK) == 0);
    log_set_fd(c->wr);
    log_set_timestamps(false);
    log_set_level(LOG_DEBUG);
}

/* Reads whatever the pipe holds into c->buf, NUL-terminated. */
static const char *capture_read(struct capture *c)
{
    for (;;) {
        ssize_t n = read(c->rd, c->buf + c->len, CAPTURE_MAX - c->len);

        if (n <= 0)
            break;
        c->len += (size_t)n;
        CHECK(c->len < CAPTURE_MAX);
    }
    c->buf[c->len] = '\0';
    return c->buf;
}

/* Puts the log back the way the harness leaves it: off, to stderr. */
static void capture_close(struct capture *c)
{
    log_set_fd(STDERR_FILENO);
    log_set_timestamps(true);
    log_set_level(LOG_OFF);
    close(c->rd);
    close(c->wr);
}

static size_t count_char(const char *s, size_t len, char ch)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++)
        n += s[i] == ch;
    return n;
}

TEST(log_level_parse_known_names)
{
    static const struct {
        const char *name;
        enum log_level level;
    } names[] = {{"debug", LOG_DEBUG},
                 {"info", LOG_INFO},
                 {"warn", LOG_WARN},
                 {"error", LOG_ERROR},
                 {"off", LOG_OFF}};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        enum log_level out = (enum log_level) - 1;

        CHECK_INT(log_level_parse(names[i].name, &out), ERR_OK);
        CHECK_INT(out, names[i].level);
    }
}

TEST(log_level_parse_rejects_others)
{
    static const char *const bad[] = {
        "", "INFO", "Info", "warning", "inf", "debug ", " error", "offf", "3"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum log_level out = LOG_ERROR;

        CHECK_INT(log_level_parse(bad[i], &out), ERR_INVALID);
        CHECK_INT(out, LOG_ERROR);
    }
}

TEST(log_enabled_follows_level)
{
    log_set_level(LOG_WARN);
    CHECK_INT(log_get_level(), LOG_WARN);
    CHECK(!log_enabled(LOG_DEBUG));
    CHECK(!log_enabled(LOG_INFO));
    CHECK(log_enabled(LOG_WARN));
    CHECK(log_enabled(LOG_ERROR));

    log_set_level(LOG_DEBUG);
    CHECK_INT(log_get_level(), LOG_DEBUG);
    CHECK(log_enabled(LOG_DEBUG));

    log_set_level(LOG_OFF);
    CHECK_INT(log_get_level(), LOG_OFF);
    CHECK(!log_enabled(LOG_ERROR));
}

TEST(log_line_format_per_level)
{
    static struct capture c;

    capture_open(&c);
    log_debug("store", "open path=%s fd=%d", "/var/db", 7);
    log_info("http", "listen port=%d", 8080);
    log_warn("hold", "expired hold_id=%s", "h-1");
    log_error("mq", "publish_failed err=%s", "ERR_FULL");
    CHECK_STR(capture_read(&c), "debug store: open path=/var/db fd=7\n"
                                "info http: listen port=8080\n"
                                "warn hold: expired hold_id=h-1\n"
                                "error mq: publish_failed err=ERR_FULL\n");
    capture_close(&c);
}

TEST(log_lines_below_level_are_not_written)
{
    static struct capture c;

    capture_open(&c);
    log_set_level(LOG_WARN);
    log_debug("sub", "hidden n=%d", 1);
    log_info("sub", "hidden n=%d", 2);
    log_warn("sub", "shown n=%d", 3);
    log_write(LOG_INFO, "sub", "hidden n=%d", 4);
    log_error("sub", "shown n=%d", 5);
    CHECK_STR(capture_read(&c), "warn sub: shown n=3\nerror sub: shown n=5\n");
    capture_close(&c);
}

TEST(log_off_writes_nothing)
{
    static struct capture c;

    capture_open(&c);
    log_set_level(LOG_OFF);
    log_error("sub", "hidden n=%d", 1);
    CHECK_STR(capture_read(&c), "");

    /* LOG_OFF is a threshold, never the level of a line. */
    log_set_level(LOG_DEBUG);
    log_write(LOG_OFF, "sub", "hidden n=%d", 2);
    CHECK_STR(capture_read(&c), "");
    capture_close(&c);
}

static int debug_args_evaluated;

static int count_evaluation(void)
{
    return ++debug_args_evaluated;
}

TEST(log_debug_skips_arguments_when_disabled)
{
    static struct capture c;

    capture_open(&c);
    debug_args_evaluated = 0;
    log_set_level(LOG_INFO);
    log_debug("sub", "costly n=%d", count_evaluation());
    CHECK_INT(debug_args_evaluated, 0);
    CHECK_STR(capture_read(&c), "");

    log_set_level(LOG_DEBUG);
    log_debug("sub", "costly n=%d", count_evaluation());
    CHECK_INT(debug_args_evaluated, 1);
    CHECK_STR(capture_read(&c), "debug sub: costly n=1\n");
    capture_close(&c);
}

TEST(log_timestamp_is_rfc3339_utc)
{
    static struct capture c;
    /* "2026-12-03T18:30:00.123Z " then the line as without timestamps. */
    static const size_t stamp_len = 24;
    char stamp[32];
    int64_t stamp_ms = 0;

    /* A local zone 5:30 east of UTC, so local time cannot pass for UTC. */
    CHECK_INT(setenv("TZ", "IST-5:30", 1), 0);
    tzset();
    capture_open(&c);
    log_set_timestamps(true);
    int64_t before_ms = clock_wall_ms(clock_system());
    log_info("sub", "event key=%s", "value");
    int64_t after_ms = clock_wall_ms(clock_system());
    CHECK_INT(unsetenv("TZ"), 0);
    tzset();
    const char *line = capture_read(&c);

    CHECK_INT(c.len, stamp_len + 1 + strlen("info sub: event key=value\n"));
    CHECK_STR(line + stamp_len + 1, "info sub: event key=value\n");
    CHECK(line[stamp_len] == ' ');
    CHECK(line[4] == '-' && line[7] == '-' && line[10] == 'T');
    CHECK(line[13] == ':' && line[16] == ':' && line[19] == '.');
    CHECK(line[23] == 'Z');

    memcpy(stamp, line, stamp_len);
    stamp[stamp_len] = '\0';
    CHECK_INT(clock_parse_rfc3339(stamp, &stamp_ms), ERR_OK);
    CHECK(stamp_ms >= before_ms && stamp_ms <= after_ms);
    capture_close(&c);
}

/* Logs one line whose message is len copies of 'x'. */
static void log_xs(const char *subsystem, size_t len)
{
    static char msg[3 * LOG_LINE_MAX];

    CHECK(len < sizeof(msg));
    memset(msg, 'x', len);
    msg[len] = '\0';
    log_warn(subsystem, "%s", msg);
}

static void check_cut_line(const struct capture *c, const char *prefix)
{
    size_t plen = strlen(prefix);

    CHECK_INT(c->len, LOG_LINE_MAX);
    CHECK(memcmp(c->buf, prefix, plen) == 0);
    CHECK(memcmp(c->buf + LOG_LINE_MAX - 4, "...\n", 4) == 0);
    CHECK_INT(count_char(c->buf, c->len, '\n'), 1);
}

TEST(log_long_line_is_cut)
{
    static struct capture c;

    capture_open(&c);
    log_xs("sub", 2 * LOG_LINE_MAX);
    capture_read(&c);
    check_cut_line(&c, "warn sub: x");
    /* Everything between the prefix and the "..." is the message. */
    CHECK_INT(count_char(c.buf, c.len, 'x'),
              LOG_LINE_MAX - strlen("warn sub: ") - strlen("...\n"));
    capture_close(&c);
}

TEST(log_line_of_exactly_max_is_whole)
{
    static struct capture c;
    const size_t prefix = strlen("warn sub: ");
    const size_t fits = LOG_LINE_MAX - prefix - 1;

    capture_open(&c);
    log_xs("sub", fits);
    capture_read(&c);
    CHECK_INT(c.len, LOG_LINE_MAX);
    CHECK_INT(count_char(c.buf, c.len, 'x'), fits);
    CHECK(c.buf[c.len - 1] == '\n');

    /* One byte more no longer fits and is cut. */
    c.len = 0;
    log_xs("sub", fits + 1);
    capture_read(&c);
    check_cut_line(&c, "warn sub: x");
    capture_close(&c);
}

TEST(log_long_subsystem_is_cut)
{
    static struct capture c;
    static char subsystem[2 * LOG_LINE_MAX];
    /* Prefixes that just fit, end just past the buffer, and far past it. */
    static const size_t lens[] = {LOG_LINE_MAX - 8, LOG_LINE_MAX - 6,
                                  LOG_LINE_MAX, 2 * LOG_LINE_MAX - 1};

    capture_open(&c);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        memset(subsystem, 's', lens[i]);
        subsystem[lens[i]] = '\0';
        c.len = 0;
        log_xs(subsystem, 10);
        capture_read(&c);
        check_cut_line(&c, "warn sss");
        CHECK_INT(count_char(c.buf, c.len, 'x'), 0);
    }
    capture_close(&c);
}

TEST(log_long_line_with_timestamp_is_cut)
{
    static struct capture c;

    capture_open(&c);
    log_set_timestamps(true);
    log_xs("sub", 2 * LOG_LINE_MAX);
    capture_read(&c);
    CHECK_INT(c.len, LOG_LINE_MAX);
    CHECK(memcmp(c.buf + 24, " warn sub: x", 12) == 0);
    CHECK(memcmp(c.buf + LOG_LINE_MAX - 4, "...\n", 4) == 0);
    capture_close(&c);
}

/*
 * Concurrency: every thread writes numbered lines padded with its own
 * letter; a reader drains the pipe.  Any interleaving breaks a line's shape.
 */
#define CONC_THREADS 8
#define CONC_LINES   2000
#define CONC_PAD     300
#define CONC_PREFIX  "info conc: line thread="

struct conc_reader {
    int fd;
    char *buf;
    size_t len, cap;
    bool failed;
};

static void *conc_write(void *arg)
{
    int t = (int)(intptr_t)arg;
    char pad[CONC_PAD + 1];

    memset(pad, 'a' + t, CONC_PAD);
    pad[CONC_PAD] = '\0';
    for (int i = 0; i < CONC_LINES; i++)
        log_info("conc", "line thread=%d seq=%d pad=%s", t, i, pad);
    return NULL;
}

static void *conc_read(void *arg)
{
    struct conc_reader *r = arg;

    for (;;) {
        if (r->cap - r->len < 4096) {
            char *grown = realloc(r->buf, r->cap * 2);

            if (grown == NULL) {
                r->failed = true;
                return NULL;
            }
            r->buf = grown;
            r->cap *= 2;
        }
        ssize_t n = read(r->fd, r->buf + r->len, r->cap - r->len - 1);
        if (n == 0)
            break;
        if (n < 0) {
            r->failed = true;
            break;
        }
        r->len += (size_t)n;
    }
    r->buf[r->len] = '\0';
    return NULL;
}

/* Checks one line at *p and moves past it; false if it is not whole. */
static bool conc_parse_line(const char **p, int next_seq[CONC_THREADS])
{
    const char *s = *p;
    char *end;

    if (strncmp(s, CONC_PREFIX, strlen(CONC_PREFIX)) != 0)
        return false;
    s += strlen(CONC_PREFIX);
    long t = strtol(s, &end, 10);
    if (end == s || t < 0 || t >= CONC_THREADS || strncmp(end, " seq=", 5) != 0)
        return false;
    s = end + 5;
    long seq = strtol(s, &end, 10);
    /* One thread's lines reach the pipe in the order it wrote them. */
    if (end == s || seq != next_seq[t] || strncmp(end, " pad=", 5) != 0)
        return false;
    s = end + 5;
    for (int i = 0; i < CONC_PAD; i++)
        if (s[i] != 'a' + t)
            return false;
    if (s[CONC_PAD] != '\n')
        return false;
    next_seq[t]++;
    *p = s + CONC_PAD + 1;
    return true;
}

TEST(log_concurrent_writers_keep_lines_whole)
{
    pthread_t writers[CONC_THREADS], reader;
    struct conc_reader r = {.cap = 1 << 16};
    int fds[2], next_seq[CONC_THREADS] = {0};

    CHECK_INT(pipe(fds), 0);
    r.fd = fds[0];
    r.buf = malloc(r.cap);
    CHECK(r.buf != NULL);
    log_set_fd(fds[1]);
    log_set_timestamps(false);
    log_set_level(LOG_INFO);

    CHECK_INT(pthread_create(&reader, NULL, conc_read, &r), 0);
    for (int t = 0; t < CONC_THREADS; t++)
        CHECK_INT(
            pthread_create(&writers[t], NULL, conc_write, (void *)(intptr_t)t),
            0);
    for (int t = 0; t < CONC_THREADS; t++)
        CHECK_INT(pthread_join(writers[t], NULL), 0);

    /* Closing the only write end lets the reader see end of file. */
    log_set_fd(STDERR_FILENO);
    log_set_level(LOG_OFF);
    close(fds[1]);
    CHECK_INT(pthread_join(reader, NULL), 0);
    close(fds[0]);
    CHECK(!r.failed);

    const char *p = r.buf;
    size_t lines = 0;
    while (*p != '\0') {
        CHECK(conc_parse_line(&p, next_seq));
        lines++;
    }
    CHECK_INT(lines, CONC_THREADS * CONC_LINES);
    for (int t = 0; t < CONC_THREADS; t++)
        CHECK_INT(next_seq[t], CONC_LINES);
    free(r.buf);
    log_set_timestamps(true);
}

HARNESS_MAIN(T(log_level_parse_known_names), T(log_level_parse_rejects_others),
             T(log_enabled_follows_level), T(log_line_format_per_level),
             T(log_lines_below_level_are_not_written),
             T(log_off_writes_nothing),
             T(log_debug_skips_arguments_when_disabled),
             T(log_timestamp_is_rfc3339_utc), T(log_long_line_is_cut),
             T(log_line_of_exactly_max_is_whole), T(log_long_subsystem_is_cut),
             T(log_long_line_with_timestamp_is_cut),
             T(log_concurrent_writers_keep_lines_whole))
