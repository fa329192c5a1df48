/*
 * test_config.c - defaults, the file format, the environment, flags, their
 * precedence, and the messages of refused values.
 */
#include "harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/config.h"
#include "base/err.h"

static const struct config_key keys[] = {
    {"http.port", CONFIG_INT, "8080", 1, 65535, "port to listen on"},
    {"http.host", CONFIG_STRING, "127.0.0.1", 0, 0, "address to bind"},
    {"db.path", CONFIG_STRING, "", 0, 0, "database file"},
    {"hold.ttl-s", CONFIG_INT, "600", 0, 86400, "seconds a hold lives"},
    {"debug", CONFIG_BOOL, "false", 0, 0, "extra checks"},
    {"offset", CONFIG_INT, "0", -100, 100, "a signed range"},
    {"big", CONFIG_INT, "0", INT64_MIN, INT64_MAX, "the widest range"},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* Every variable the table above reads, plus the file's. */
static const char *const env_names[] = {
    "MARQUEE_HTTP_PORT",  "MARQUEE_HTTP_HOST", "MARQUEE_DB_PATH",
    "MARQUEE_HOLD_TTL_S", "MARQUEE_DEBUG",     "MARQUEE_OFFSET",
    "MARQUEE_BIG",        "MARQUEE_CONFIG",
};

static void env_clear(void)
{
    for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
        CHECK_INT(unsetenv(env_names[i]), 0);
}

/* A config at its defaults, with no MARQUEE_* variable set. */
static void cfg_open(struct config *cfg)
{
    env_clear();
    CHECK_INT(config_init(cfg, keys, NKEYS), ERR_OK);
}

#define CHECK_HAS(hay, needle)                                                 \
    do {                                                                       \
        const char *check_h_ = (hay), *check_n_ = (needle);                    \
        if (strstr(check_h_, check_n_) == NULL)                                \
            harness_fail(__FILE__, __LINE__, "\"%s\" lacks \"%s\"", check_h_,  \
                         check_n_);                                            \
    } while (0)

static char conf_path[64];

/* Writes text to a new temporary file; the path stays in conf_path. */
static const char *conf_write(const char *text)
{
    size_t len = strlen(text);

    snprintf(conf_path, sizeof(conf_path), "/tmp/marquee-test-conf-XXXXXX");
    int fd = mkstemp(conf_path);
    CHECK(fd >= 0);
    CHECK(write(fd, text, len) == (ssize_t)len);
    CHECK_INT(close(fd), 0);
    return conf_path;
}

/* Holds a writable copy of an argument list, as main() would get it. */
#define ARGS_MAX 8
#define ARG_LEN  256
static char arg_store[ARGS_MAX][ARG_LEN];
static char *arg_list[ARGS_MAX + 1];

static int load_args(struct config *cfg, const char *const *args, int argc)
{
    CHECK(argc <= ARGS_MAX);
    for (int i = 0; i < argc; i++) {
        CHECK(strlen(args[i]) < ARG_LEN);
        snprintf(arg_store[i], ARG_LEN, "%s", args[i]);
        arg_list[i] = arg_store[i];
    }
    arg_list[argc] = NULL;
    return config_load(cfg, argc, arg_list, 1);
}

#define LOAD(cfg, ...)                                                         \
    load_args(cfg, (const char *const[]){"marquee", __VA_ARGS__},              \
              (int)(sizeof((const char *const[]){"marquee", __VA_ARGS__}) /    \
                    sizeof(const char *)))

static const char *source_of(const struct config *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->nkeys; i++)
        if (strcmp(cfg->keys[i].name, key) == 0)
            return cfg->values[i].source;
    CHECK(!"undeclared key");
    return NULL;
}

TEST(config_defaults_applied)
{
    struct config cfg;

    cfg_open(&cfg);
    CHECK_INT(config_int(&cfg, "http.port"), 8080);
    CHECK_STR(config_str(&cfg, "http.host"), "127.0.0.1");
    CHECK_STR(config_str(&cfg, "db.path"), "");
    CHECK_INT(config_int(&cfg, "hold.ttl-s"), 600);
    CHECK(!config_bool(&cfg, "debug"));
    CHECK_INT(config_int(&cfg, "offset"), 0);
    CHECK_STR(source_of(&cfg, "http.port"), "default");
    config_free(&cfg);
}

TEST(config_given_only_when_set)
{
    struct config cfg;

    cfg_open(&cfg);
    CHECK(!config_given(&cfg, "http.port"));
    /* Set to the default's own value: still given, by someone. */
    CHECK_INT(config_set(&cfg, "http.port", "8080", "flag"), ERR_OK);
    CHECK(config_given(&cfg, "http.port"));
    CHECK(!config_given(&cfg, "http.host"));
    CHECK(!config_given(&cfg, "no.such.key"));
    config_free(&cfg);
}

TEST(config_bad_default_refused)
{
    static const struct config_key bad[] = {
        {"ok", CONFIG_INT, "5", 0, 10, ""},
        {"broken", CONFIG_INT, "eleven", 0, 10, ""},
    };
    struct config cfg;

    CHECK_INT(config_init(&cfg, bad, 2), ERR_CONFIG);
    CHECK_HAS(cfg.err, "key=broken");
    CHECK_HAS(cfg.err, "value=\"eleven\"");
    CHECK_HAS(cfg.err, "source=default");
    config_free(&cfg);
}

TEST(config_file_parsing)
{
    struct config cfg;
    const char *path = conf_write("# marquee test configuration\n"
                                  "\n"
                                  "   \n"
                                  "   # an indented comment\n"
                                  "http.port=9090\n"
                                  "  http.host   =   example.org  \n"
                                  "\tdb.path\t=\t\"/var/lib/my db\"\t\n"
                                  "hold.ttl-s = 30\n"
                                  "debug = yes\n"
                                  "offset = -7");

    cfg_open(&cfg);
    CHECK_INT(config_load_file(&cfg, path), ERR_OK);
    CHECK_INT(config_int(&cfg, "http.port"), 9090);
    CHECK_STR(config_str(&cfg, "http.host"), "example.org");
    CHECK_STR(config_str(&cfg, "db.path"), "/var/lib/my db");
    CHECK_INT(config_int(&cfg, "hold.ttl-s"), 30);
    CHECK(config_bool(&cfg, "debug"));
    /* The last line has no newline and still counts. */
    CHECK_INT(config_int(&cfg, "offset"), -7);

    char where[96];
    snprintf(where, sizeof(where), "%s:5", path);
    CHECK_STR(source_of(&cfg, "http.port"), where);
    config_free(&cfg);
    unlink(path);
}

TEST(config_file_quoted_values)
{
    struct config cfg;
    const char *path = conf_write("http.host = \"  padded  \"\n"
                                  "db.path = \"\"\n");

    cfg_open(&cfg);
    CHECK_INT(config_load_file(&cfg, path), ERR_OK);
    CHECK_STR(config_str(&cfg, "http.host"), "  padded  ");
    CHECK_STR(config_str(&cfg, "db.path"), "");
    unlink(path);

    /* Only a pair of quotes is stripped; an '=' belongs to the value. */
    path = conf_write("http.host = \"half\n"
                      "db.path = a=b \"c\"\n");
    CHECK_INT(config_load_file(&cfg, path), ERR_OK);
    CHECK_STR(config_str(&cfg, "http.host"), "\"half");
    CHECK_STR(config_str(&cfg, "db.path"), "a=b \"c\"");
    config_free(&cfg);
    unlink(path);
}

TEST(config_file_unknown_key_refused)
{
    struct config cfg;
    char where[96];
    const char *path = conf_write("# header\n"
                                  "http.port = 9000\n"
                                  "htp.port = 9001\n");

    cfg_open(&cfg);
    CHECK_INT(config_load_file(&cfg, path), ERR_CONFIG);
    CHECK_HAS(cfg.err, "unknown key");
    CHECK_HAS(cfg.err, "key=htp.port");
    snprintf(where, sizeof(where), "source=%s:3", path);
    CHECK_HAS(cfg.err, where);
    config_free(&cfg);
    unlink(path);
}

TEST(config_file_bad_value_refused)
{
    struct config cfg;
    char want[256];
    const char *path = conf_write("\n"
                                  "http.port = 70000\n");

    cfg_open(&cfg);
    CHECK_INT(config_load_file(&cfg, path), ERR_CONFIG);
    snprintf(want, sizeof(want),
             "config: bad value key=http.port value=\"70000\" source=%s:2 "
             "reason=\"expected an integer from 1 to 65535\"",
             path);
    CHECK_STR(cfg.err, want);
    CHECK_INT(config_int(&cfg, "http.port"), 8080);
    config_free(&cfg);
    unlink(path);
}

TEST(config_file_line_without_equals_refused)
{
    struct config cfg;
    const char *path = conf_write("http.port = 9000\n"
                                  "http.host example.org\n");

    cfg_open(&cfg);
    CHECK_INT(config_load_file(&cfg, path), ERR_CONFIG);
    CHECK_HAS(cfg.err, "expected key = value");
    CHECK_HAS(cfg.err, path);
    CHECK_HAS(cfg.err, "line=2");
    config_free(&cfg);
    unlink(path);
}

TEST(config_file_line_too_long_refused)
{
    static char text[4096];
    struct config cfg;

    memset(text, 'a', sizeof(text) - 2);
    memcpy(text, "db.path = ", 10);
    text[sizeof(text) - 2] = '\n';
    const char *path = conf_write(text);

    cfg_open(&cfg);
    CHECK_INT(config_load_file(&cfg, path), ERR_CONFIG);
    CHECK_HAS(cfg.err, "line too long");
    CHECK_HAS(cfg.err, "line=1");
    CHECK_STR(config_str(&cfg, "db.path"), "");
    config_free(&cfg);
    unlink(path);
}

TEST(config_file_missing_names_path)
{
    struct config cfg;
    const char *path = "/nonexistent-marquee-dir/marquee.conf";

    cfg_open(&cfg);
    CHECK_INT(config_load_file(&cfg, path), ERR_CONFIG);
    CHECK_HAS(cfg.err, "cannot open file");
    CHECK_HAS(cfg.err, "path=/nonexistent-marquee-dir/marquee.conf");
    config_free(&cfg);
}

TEST(config_int_range_is_inclusive)
{
    struct config cfg;

    cfg_open(&cfg);
    CHECK_INT(config_set(&cfg, "http.port", "1", "test"), ERR_OK);
    CHECK_INT(config_int(&cfg, "http.port"), 1);
    CHECK_INT(config_set(&cfg, "http.port", "65535", "test"), ERR_OK);
    CHECK_INT(config_int(&cfg, "http.port"), 65535);
    CHECK_INT(config_set(&cfg, "http.port", "0", "test"), ERR_CONFIG);
    CHECK_INT(config_set(&cfg, "http.port", "65536", "test"), ERR_CONFIG);
    CHECK_INT(config_int(&cfg, "http.port"), 65535);

    CHECK_INT(config_set(&cfg, "offset", "-100", "test"), ERR_OK);
    CHECK_INT(config_int(&cfg, "offset"), -100);
    CHECK_INT(config_set(&cfg, "offset", "100", "test"), ERR_OK);
    CHECK_INT(config_int(&cfg, "offset"), 100);
    CHECK_INT(config_set(&cfg, "offset", "-101", "test"), ERR_CONFIG);
    CHECK_INT(config_set(&cfg, "offset", "101", "test"), ERR_CONFIG);
    CHECK_INT(config_int(&cfg, "offset"), 100);
    CHECK_HAS(cfg.err, "expected an integer from -100 to 100");
    config_free(&cfg);
}

TEST(config_int_full_64_bit_range)
{
    struct config cfg;

    cfg_open(&cfg);
    CHECK_INT(config_set(&cfg, "big", "9223372036854775807", "test"), ERR_OK);
    CHECK(config_int(&cfg, "big") == INT64_MAX);
    CHECK_INT(config_set(&cfg, "big", "-9223372036854775808", "test"), ERR_OK);
    CHECK(config_int(&cfg, "big") == INT64_MIN);
    /* One past either end overflows and is refused, not clamped. */
    CHECK_INT(config_set(&cfg, "big", "9223372036854775808", "test"),
              ERR_CONFIG);
    CHECK_INT(config_set(&cfg, "big", "-9223372036854775809", "test"),
              ERR_CONFIG);
    CHECK_HAS(cfg.err, "value=\"-9223372036854775809\"");
    CHECK(config_int(&cfg, "big") == INT64_MIN);
    config_free(&cfg);
}

TEST(config_bad_int_refused)
{
    static const char *const bad[] = {
        "",
        "abc",
        "80x",
        "8 0",
        "80 ",
        "0x50",
        "1e3",
        "-",
        "8.0",
        "99999999999999999999",
        "-99999999999999999999",
    };
    struct config cfg;
    char want[128];

    cfg_open(&cfg);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.err[0] = '\0';
        CHECK_INT(config_set(&cfg, "hold.ttl-s", bad[i], "test-src"),
                  ERR_CONFIG);
        snprintf(want, sizeof(want), "value=\"%s\"", bad[i]);
        CHECK_HAS(cfg.err, "key=hold.ttl-s");
        CHECK_HAS(cfg.err, want);
        CHECK_HAS(cfg.err, "source=test-src");
        CHECK_INT(config_int(&cfg, "hold.ttl-s"), 600);
    }
    config_free(&cfg);
}

TEST(config_bool_values)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    static const char *const bad[] = {"TRUE", "y", "2", "", "truth", "nope"};
    struct config cfg;
    char want[64];

    cfg_open(&cfg);
    for (size_t i = 0; i < 4; i++) {
        CHECK_INT(config_set(&cfg, "debug", yes[i], "test"), ERR_OK);
        CHECK(config_bool(&cfg, "debug"));
        CHECK_INT(config_set(&cfg, "debug", no[i], "test"), ERR_OK);
        CHECK(!config_bool(&cfg, "debug"));
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_INT(config_set(&cfg, "debug", bad[i], "test-src"), ERR_CONFIG);
        snprintf(want, sizeof(want), "value=\"%s\"", bad[i]);
        CHECK_HAS(cfg.err, "key=debug");
        CHECK_HAS(cfg.err, want);
        CHECK_HAS(cfg.err, "source=test-src");
        CHECK_HAS(cfg.err, "expected true or false");
    }
    CHECK(!config_bool(&cfg, "debug"));
    config_free(&cfg);
}

TEST(config_value_length_limit)
{
    static char value[CONFIG_VALUE_MAX + 2];
    struct config cfg;

    memset(value, 'v', CONFIG_VALUE_MAX);
    value[CONFIG_VALUE_MAX] = '\0';
    cfg_open(&cfg);
    CHECK_INT(config_set(&cfg, "db.path", value, "test"), ERR_OK);
    CHECK_INT(strlen(config_str(&cfg, "db.path")), CONFIG_VALUE_MAX);

    value[CONFIG_VALUE_MAX] = 'w';
    value[CONFIG_VALUE_MAX + 1] = '\0';
    CHECK_INT(config_set(&cfg, "db.path", value, "test-src"), ERR_CONFIG);
    CHECK_HAS(cfg.err, "value too long");
    CHECK_HAS(cfg.err, "key=db.path");
    CHECK_HAS(cfg.err, "source=test-src");
    CHECK_INT(strlen(config_str(&cfg, "db.path")), CONFIG_VALUE_MAX);
    config_free(&cfg);
}

TEST(config_unknown_key_set_refused)
{
    struct config cfg;

    cfg_open(&cfg);
    CHECK_INT(config_set(&cfg, "http.prot", "80", "test-src"), ERR_CONFIG);
    CHECK_STR(cfg.err, "config: unknown key key=http.prot source=test-src");
    config_free(&cfg);
}

TEST(config_env_overrides_defaults)
{
    struct config cfg;

    cfg_open(&cfg);
    CHECK_INT(setenv("MARQUEE_HTTP_PORT", "9001", 1), 0);
    CHECK_INT(setenv("MARQUEE_HOLD_TTL_S", "30", 1), 0);
    CHECK_INT(setenv("MARQUEE_DEBUG", "on", 1), 0);
    CHECK_INT(config_load_env(&cfg), ERR_OK);
    env_clear();

    CHECK_INT(config_int(&cfg, "http.port"), 9001);
    CHECK_INT(config_int(&cfg, "hold.ttl-s"), 30);
    CHECK(config_bool(&cfg, "debug"));
    CHECK_STR(config_str(&cfg, "http.host"), "127.0.0.1");
    CHECK_STR(source_of(&cfg, "http.port"), "MARQUEE_HTTP_PORT");
    CHECK_STR(source_of(&cfg, "http.host"), "default");
    config_free(&cfg);
}

TEST(config_env_bad_value_refused)
{
    struct config cfg;

    cfg_open(&cfg);
    CHECK_INT(setenv("MARQUEE_HTTP_PORT", "0", 1), 0);
    CHECK_INT(config_load_env(&cfg), ERR_CONFIG);
    env_clear();
    CHECK_HAS(cfg.err, "key=http.port");
    CHECK_HAS(cfg.err, "value=\"0\"");
    CHECK_HAS(cfg.err, "source=MARQUEE_HTTP_PORT");
    config_free(&cfg);
}

TEST(config_precedence_default_file_env_flag)
{
    struct config cfg;
    const char *path = conf_write("http.port = 1111\n"
                                  "http.host = file.example\n"
                                  "hold.ttl-s = 11\n");

    cfg_open(&cfg);
    CHECK_INT(setenv("MARQUEE_HTTP_PORT", "2222", 1), 0);
    CHECK_INT(setenv("MARQUEE_HTTP_HOST", "env.example", 1), 0);
    int rc = LOAD(&cfg, "--config", path, "--http.port=3333");
    env_clear();
    CHECK_INT(rc, ERR_OK);

    CHECK_INT(config_int(&cfg, "http.port"), 3333);
    CHECK_STR(source_of(&cfg, "http.port"), "--http.port");
    CHECK_STR(config_str(&cfg, "http.host"), "env.example");
    CHECK_STR(source_of(&cfg, "http.host"), "MARQUEE_HTTP_HOST");
    CHECK_INT(config_int(&cfg, "hold.ttl-s"), 11);
    CHECK_INT(config_int(&cfg, "offset"), 0);
    CHECK_STR(source_of(&cfg, "offset"), "default");
    config_free(&cfg);
    unlink(path);
}

TEST(config_flag_forms)
{
    struct config cfg;

    cfg_open(&cfg);
    CHECK_INT(LOAD(&cfg, "--http.port=4000", "--http.host", "flag.example",
                   "--debug", "yes", "--db.path=", "--offset=-3"),
              ERR_OK);
    CHECK_INT(config_int(&cfg, "http.port"), 4000);
    CHECK_STR(config_str(&cfg, "http.host"), "flag.example");
    CHECK(config_bool(&cfg, "debug"));
    CHECK_STR(config_str(&cfg, "db.path"), "");
    CHECK_STR(source_of(&cfg, "db.path"), "--db.path");
    CHECK_INT(config_int(&cfg, "offset"), -3);
    config_free(&cfg);
}

TEST(config_bare_bool_flag_means_true)
{
    struct config cfg;

    cfg_open(&cfg);
    CHECK_INT(LOAD(&cfg, "--debug", "--http.port=4001"), ERR_OK);
    CHECK(config_bool(&cfg, "debug"));
    CHECK_INT(config_int(&cfg, "http.port"), 4001);
    config_free(&cfg);

    cfg_open(&cfg);
    CHECK_INT(LOAD(&cfg, "--http.port=4002", "--debug"), ERR_OK);
    CHECK(config_bool(&cfg, "debug"));
    config_free(&cfg);

    /* Only booleans: a bare int flag still needs its value. */
    cfg_open(&cfg);
    CHECK_INT(LOAD(&cfg, "--http.port", "--debug"), ERR_CONFIG);
    CHECK_HAS(cfg.err, "key=http.port");
    config_free(&cfg);
}

TEST(config_later_flag_wins)
{
    struct config cfg;

    cfg_open(&cfg);
    CHECK_INT(LOAD(&cfg, "--http.port=4000", "--http.port", "4001"), ERR_OK);
    CHECK_INT(config_int(&cfg, "http.port"), 4001);
    config_free(&cfg);
}

TEST(config_file_from_flag_equals_and_env)
{
    struct config cfg;
    char first[64], flag[96];
    const char *path = conf_write("http.port = 5001\n");

    snprintf(first, sizeof(first), "%s", path);
    snprintf(flag, sizeof(flag), "--config=%s", first);
    cfg_open(&cfg);
    CHECK_INT(LOAD(&cfg, flag), ERR_OK);
    CHECK_INT(config_int(&cfg, "http.port"), 5001);
    config_free(&cfg);

    /* MARQUEE_CONFIG names the file when no flag does. */
    cfg_open(&cfg);
    CHECK_INT(setenv("MARQUEE_CONFIG", first, 1), 0);
    int rc = load_args(&cfg, (const char *const[]){"marquee"}, 1);
    CHECK_INT(rc, ERR_OK);
    CHECK_INT(config_int(&cfg, "http.port"), 5001);

    /* A --config flag wins over MARQUEE_CONFIG. */
    const char *second = conf_write("http.port = 5002\n");
    rc = LOAD(&cfg, "--config", second);
    env_clear();
    CHECK_INT(rc, ERR_OK);
    CHECK_INT(config_int(&cfg, "http.port"), 5002);
    config_free(&cfg);
    unlink(first);
    unlink(second);
}

TEST(config_flag_unknown_key_refused)
{
    struct config cfg;

    cfg_open(&cfg);
    CHECK_INT(LOAD(&cfg, "--http.port=4000", "--nope=1"), ERR_CONFIG);
    CHECK_HAS(cfg.err, "unknown key");
    CHECK_HAS(cfg.err, "key=nope");
    CHECK_HAS(cfg.err, "source=--nope");

    CHECK_INT(LOAD(&cfg, "--nope", "1"), ERR_CONFIG);
    CHECK_HAS(cfg.err, "key=nope");
    config_free(&cfg);
}

TEST(config_flag_long_key_refused)
{
    static char flag[CONFIG_NAME_MAX + 16];
    struct config cfg;

    memset(flag, 'k', sizeof(flag) - 1);
    memcpy(flag, "--", 2);
    flag[sizeof(flag) - 3] = '=';
    flag[sizeof(flag) - 2] = '1';
    flag[sizeof(flag) - 1] = '\0';
    cfg_open(&cfg);
    CHECK_INT(LOAD(&cfg, flag), ERR_CONFIG);
    CHECK_HAS(cfg.err, "unknown key key=kkkk");
    config_free(&cfg);
}

TEST(config_flag_bad_value_refused)
{
    struct config cfg;

    cfg_open(&cfg);
    CHECK_INT(LOAD(&cfg, "--http.port", "70000"), ERR_CONFIG);
    CHECK_STR(cfg.err, "config: bad value key=http.port value=\"70000\" "
                       "source=--http.port "
                       "reason=\"expected an integer from 1 to 65535\"");
    CHECK_INT(LOAD(&cfg, "--debug=maybe"), ERR_CONFIG);
    CHECK_HAS(cfg.err, "key=debug");
    CHECK_HAS(cfg.err, "value=\"maybe\"");
    CHECK_HAS(cfg.err, "source=--debug");
    config_free(&cfg);
}

TEST(config_flag_shape_errors)
{
    struct config cfg;

    cfg_open(&cfg);
    CHECK_INT(LOAD(&cfg, "--http.host=a", "--http.port"), ERR_CONFIG);
    CHECK_HAS(cfg.err, "missing value key=http.port");
    CHECK_INT(LOAD(&cfg, "stray"), ERR_CONFIG);
    CHECK_HAS(cfg.err, "unexpected argument \"stray\"");
    CHECK_INT(LOAD(&cfg, "--config", "/nonexistent-marquee-dir/m.conf"),
              ERR_CONFIG);
    CHECK_HAS(cfg.err, "path=/nonexistent-marquee-dir/m.conf");
    config_free(&cfg);
}

TEST(config_print_help_lists_keys)
{
    int fds[2];
    char out[2048];

    CHECK_INT(pipe(fds), 0);
    config_print_help(keys, NKEYS, fds[1]);
    close(fds[1]);
    ssize_t n = read(fds[0], out, sizeof(out) - 1);
    close(fds[0]);
    CHECK(n > 0 && n < (ssize_t)sizeof(out) - 1);
    out[n] = '\0';
    CHECK_HAS(out, "--http.port");
    CHECK_HAS(out, "default \"8080\"");
    CHECK_HAS(out, "port to listen on");
    CHECK_HAS(out, "--debug");
    CHECK_HAS(out, "bool");
    CHECK_HAS(out, "string");
}

HARNESS_MAIN(T(config_defaults_applied), T(config_given_only_when_set),
             T(config_bad_default_refused),
             T(config_file_parsing), T(config_file_quoted_values),
             T(config_file_unknown_key_refused),
             T(config_file_bad_value_refused),
             T(config_file_line_without_equals_refused),
             T(config_file_line_too_long_refused),
             T(config_file_missing_names_path),
             T(config_int_range_is_inclusive), T(config_int_full_64_bit_range),
             T(config_bad_int_refused), T(config_bool_values),
             T(config_value_length_limit), T(config_unknown_key_set_refused),
             T(config_env_overrides_defaults), T(config_env_bad_value_refused),
             T(config_precedence_default_file_env_flag), T(config_flag_forms),
             T(config_bare_bool_flag_means_true), T(config_later_flag_wins),
             T(config_file_from_flag_equals_and_env),
             T(config_flag_unknown_key_refused),
             T(config_flag_long_key_refused), T(config_flag_bad_value_refused),
             T(config_flag_shape_errors), T(config_print_help_lists_keys))
