/*
 * config.h - typed configuration from defaults, a file, the environment and
 * command-line flags, in that order of precedence (a later source wins).
 *
 * Each program declares its keys in one table of `struct config_key`.  A
 * value is checked when it is set, whatever its source, and a bad one is
 * refused with a message that names the key, the value and where it came
 * from, e.g.
 *
 *   config: bad value key=http.port value="70000" source=--http.port
 *   reason="expected an integer from 1 to 65535"
 *
 * File format: one `key = value` per line; `#` starts a comment line; a value
 * may be wrapped in double quotes.  Environment: MARQUEE_HTTP_PORT for
 * http.port.  Flags: --http.port=8080 or --http.port 8080; a boolean alone
 * (--catalog.demo) means true; --config FILE names the file (MARQUEE_CONFIG
 * works too).
 */
#ifndef MARQUEE_BASE_CONFIG_H
#define MARQUEE_BASE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum config_type { CONFIG_INT, CONFIG_BOOL, CONFIG_STRING };

struct config_key {
    const char *name;
    enum config_type type;
    const char *default_value; /* parsed like any other source; may be "" */
    int64_t min, max;          /* CONFIG_INT only, inclusive */
    const char *help;
};

/* Longest key name and value accepted, and most keys per program. */
#define CONFIG_NAME_MAX  64
#define CONFIG_VALUE_MAX 1024
#define CONFIG_KEYS_MAX  128
#define CONFIG_ERR_MAX   512

struct config_value {
    char *text;      /* owned */
    int64_t num;     /* CONFIG_INT and CONFIG_BOOL (0 or 1) */
    char source[96]; /* where the value came from, for messages */
};

struct config {
    const struct config_key *keys; /* not owned; must outlive the config */
    size_t nkeys;
    struct config_value values[CONFIG_KEYS_MAX];
    char err[CONFIG_ERR_MAX]; /* message of the last failure */
};

/* Applies the defaults; ERR_OK, or ERR_CONFIG (a bad default is a bug). */
int config_init(struct config *cfg, const struct config_key *keys,
                size_t nkeys);
void config_free(struct config *cfg);

/* Sets one key; source (copied) names where the value came from. */
int config_set(struct config *cfg, const char *key, const char *value,
               const char *source);

int config_load_file(struct config *cfg, const char *path);

/* Reads MARQUEE_<KEY> for every declared key from the environment. */
int config_load_env(struct config *cfg);

/*
 * The whole sequence: file (--config or MARQUEE_CONFIG), environment, then
 * flags from argv[first..argc).  On failure cfg->err says why.
 */
int config_load(struct config *cfg, int argc, char **argv, int first);

/* Accessors; the key must be declared (a typo is a bug and asserts). */
int64_t config_int(const struct config *cfg, const char *key);
bool config_bool(const struct config *cfg, const char *key);
const char *config_str(const struct config *cfg, const char *key);

/* Whether the key's value came from anywhere but its default. */
bool config_given(const struct config *cfg, const char *key);

/* Writes "key (type, default): help" lines for --help. */
void config_print_help(const struct config_key *keys, size_t nkeys, int fd);

#endif
