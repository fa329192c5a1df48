/*
 * program.h - what every role of the `marquee` command does first: read
 * its configuration, answer --help, set the log level, and make the
 * folders its files live in.
 */
#ifndef MARQUEE_BASE_PROGRAM_H
#define MARQUEE_BASE_PROGRAM_H

#include <stddef.h>

#include "base/config.h"

/* The log.level key, for every role's key table. */
#define PROGRAM_LOG_KEY                                                        \
    {                                                                          \
        "log.level", CONFIG_STRING, "info", 0, 0,                              \
            "debug, info, warn, error or off"                                  \
    }

/* program_start() result when --help was answered (exit with status 2). */
#define PROGRAM_HELPED 1

/*
 * Answers --help or -h (usage line, then the keys), or loads cfg from the
 * defaults, the file, the environment and argv[1..], and sets the log
 * level from log.level.  role names the program in messages; about, if
 * not NULL, is printed under the usage line.  Returns ERR_OK,
 * PROGRAM_HELPED, or ERR_CONFIG after printing the reason to stderr.  On
 * ERR_OK the caller frees cfg with config_free().
 */
int program_start(struct config *cfg, const struct config_key *keys,
                  size_t nkeys, int argc, char **argv, const char *role,
                  const char *about);

/* Creates the folder of a file path if missing (one level, mode 0755). */
void program_make_parent_dir(const char *path);

#endif
