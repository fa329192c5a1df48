/*
 * mqctl.c - `marquee mq` (mqctl.h).
 *
 * The command line mixes two kinds of flags: configuration keys (mq.*,
 * log.level, --config), handed to the config loader as every role does,
 * and the command's own options (--topic, --id, ...), read here.  Every
 * check that can be made before opening the queue is made first, so a
 * typo exits 2 without touching the queue file.
 */
#include "tools/mqctl.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/err.h"
#include "base/log.h"
#include "mq/mq.h"

#define EXIT_DONE   0
#define EXIT_FAILED 1
#define EXIT_MISUSE 2

static const struct config_key mqctl_keys[] = {
    {"log.level", CONFIG_STRING, "warn", 0, 0,
     "debug, info, warn, error or off"},
    MQ_CONFIG_KEYS,
};

static const char usage_text[] =
    "usage: marquee mq COMMAND [--mq.key=value ...]\n"
    "\n"
    "commands:\n"
    "  publish --topic=T --id=ID (--body=TEXT | --body-file=FILE)\n"
    "                          store one message in every queue bound to T\n"
    "  depth QUEUE             count ready, leased and dead messages\n"
    "  dead QUEUE [--after=TAG] [--limit=N]\n"
    "                          list dead letters, one JSON object a line\n"
    "  requeue QUEUE TAG       put dead letter TAG back, ready now\n"
    "  declare QUEUE PATTERN...\n"
    "                          make a durable queue bound to the patterns\n"
    "\n"
    "exit status: 0 done, 1 the queue failed, 2 misuse\n"
    "\n"
    "keys:\n";

/* What the command line says. */
struct mqctl_args {
    const char *cmd;
    const char *topic, *id, *body, *body_file, *after, *limit;
    const char *pos[MQCTL_ARGS_MAX];
    size_t npos;
    char *cfg_argv[MQCTL_ARGS_MAX + 1]; /* [0] is a program name */
    int cfg_argc;
};

static int misuse(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage(void)
{
    fprintf(stderr, "%s", usage_text);
    config_print_help(mqctl_keys, sizeof(mqctl_keys) / sizeof(mqctl_keys[0]),
                      2);
    return EXIT_MISUSE;
}

static int misuse(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "marquee mq: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n\n");
    return usage();
}

static int failed(const char *what, int rc)
{
    fprintf(stderr, "marquee mq: %s: %s (%s)\n", what, err_msg(rc),
            err_name(rc));
    return EXIT_FAILED;
}

static bool is_config_flag(const char *name, size_t len)
{
    return (len > 3 && strncmp(name, "mq.", 3) == 0) ||
           (len == 9 && strncmp(name, "log.level", 9) == 0) ||
           (len == 6 && strncmp(name, "config", 6) == 0);
}

/* The slot of the command's own option `name`, or NULL if unknown. */
static const char **own_option(struct mqctl_args *a, const char *name,
                               size_t len)
{
    static const char *const names[] = {"topic", "id",    "body", "body-file",
                                        "after", "limit", NULL};
    const char **slots[] = {&a->topic, &a->id,    &a->body, &a->body_file,
                            &a->after, &a->limit, NULL};

    for (size_t i = 0; names[i] != NULL; i++)
        if (strlen(names[i]) == len && strncmp(names[i], name, len) == 0)
            return slots[i];
    return NULL;
}

/* Splits argv[2..]; EXIT_DONE or EXIT_MISUSE (reported). */
static int split_args(int argc, char **argv, struct mqctl_args *a)
{
    a->cfg_argv[a->cfg_argc++] = argv[0];
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0) {
            a->pos[a->npos++] = arg;
            continue;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        if (is_config_flag(name, len)) {
            a->cfg_argv[a->cfg_argc++] = argv[i];
            if (eq == NULL && i + 1 < argc)
                a->cfg_argv[a->cfg_argc++] = argv[++i];
            continue;
        }
        const char **slot = own_option(a, name, len);
        if (slot == NULL)
            return misuse("unknown option --%.*s", (int)len, name);
        if (*slot != NULL)
            return misuse("--%.*s is given twice", (int)len, name);
        if (eq != NULL)
            *slot = eq + 1;
        else if (i + 1 < argc)
            *slot = argv[++i];
        else
            return misuse("--%.*s needs a value", (int)len, name);
    }
    return EXIT_DONE;
}

/* Refuses the options a command does not take. */
static int only_options(const struct mqctl_args *a, bool topic_id_body,
                        bool after_limit)
{
    if (!topic_id_body && (a->topic != NULL || a->id != NULL ||
                           a->body != NULL || a->body_file != NULL))
        return misuse("%s takes no --topic, --id, --body or --body-file",
                      a->cmd);
    if (!after_limit && (a->after != NULL || a->limit != NULL))
        return misuse("%s takes no --after or --limit", a->cmd);
    return EXIT_DONE;
}

static bool parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || errno != 0 || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static void print_json(json_t *j)
{
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

    if (text != NULL)
        printf("%s\n", text);
    free(text);
    json_decref(j);
}

static bool id_ok(const char *s)
{
    size_t n = strnlen(s, MQ_ID_MAX + 1);

    if (n == 0 || n > MQ_ID_MAX)
        return false;
    for (; *s != '\0'; s++)
        if (*s <= ' ' || *s > '~')
            return false;
    return true;
}

/* Reads at most MQ_BODY_MAX bytes of path into buf (MQ_BODY_MAX + 1). */
static int read_body_file(const char *path, char *buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    size_t n;

    if (f == NULL) {
        fprintf(stderr, "marquee mq: cannot open %s: %s\n", path,
                strerror(errno));
        return EXIT_FAILED;
    }
    n = fread(buf, 1, MQ_BODY_MAX + 1, f);
    if (ferror(f)) {
        fprintf(stderr, "marquee mq: cannot read %s: %s\n", path,
                strerror(errno));
        fclose(f);
        return EXIT_FAILED;
    }
    fclose(f);
    if (n > MQ_BODY_MAX)
        return misuse("%s is larger than %d bytes, the largest body", path,
                      MQ_BODY_MAX);
    *len = n;
    return EXIT_DONE;
}

/* --- the commands ------------------------------------------------------ */

static int check_publish(const struct mqctl_args *a)
{
    int rc = only_options(a, true, false);

    if (rc != EXIT_DONE)
        return rc;
    if (a->npos != 0)
        return misuse("publish takes no argument \"%s\"", a->pos[0]);
    if (a->topic == NULL || a->id == NULL)
        return misuse("publish needs --topic and --id");
    if ((a->body == NULL) == (a->body_file == NULL))
        return misuse("publish needs one of --body and --body-file");
    if (!mq_topic_valid(a->topic))
        return misuse("bad topic \"%s\": words of a-z, 0-9, _ and - joined "
                      "by '.'",
                      a->topic);
    if (!id_ok(a->id))
        return misuse("bad id: 1 to %d printable characters, no space",
                      MQ_ID_MAX);
    if (a->body != NULL && strlen(a->body) > MQ_BODY_MAX)
        return misuse("the body is larger than %d bytes", MQ_BODY_MAX);
    return EXIT_DONE;
}

static int cmd_publish(struct mq *q, const struct mqctl_args *a)
{
    static char file_body[MQ_BODY_MAX + 1];
    const char *body = a->body;
    size_t len = body != NULL ? strlen(body) : 0;
    int stored = 0, rc;

    if (a->body_file != NULL) {
        if ((rc = read_body_file(a->body_file, file_body, &len)) != EXIT_DONE)
            return rc;
        body = file_body;
    }
    if ((rc = mq_publish(q, a->topic, a->id, body, len, &stored)) != ERR_OK)
        return failed("publish failed", rc);
    print_json(json_pack("{s:s, s:s, s:I, s:i}", "topic", a->topic, "id", a->id,
                         "bytes", (json_int_t)len, "stored", stored));
    return EXIT_DONE;
}

static int check_queue_arg(const struct mqctl_args *a, size_t min, size_t max)
{
    if (a->npos < min || a->npos > max) {
        if (min == max)
            return misuse("%s takes %zu argument%s", a->cmd, min,
                          min == 1 ? "" : "s");
        return misuse("%s takes %zu to %zu arguments", a->cmd, min, max);
    }
    if (!mq_queue_name_valid(a->pos[0]))
        return misuse("bad queue name \"%s\": 1 to %d of a-z, 0-9, _, . "
                      "and -",
                      a->pos[0], MQ_NAME_MAX);
    return EXIT_DONE;
}

static int cmd_depth(struct mq *q, const struct mqctl_args *a)
{
    struct mq_depth d;
    int rc = mq_depth(q, a->pos[0], &d);

    if (rc != ERR_OK)
        return failed(rc == ERR_NOTFOUND ? "no such queue" : "depth failed",
                      rc);
    print_json(json_pack("{s:s, s:I, s:I, s:I}", "queue", a->pos[0], "ready",
                         (json_int_t)d.ready, "leased", (json_int_t)d.leased,
                         "dead", (json_int_t)d.dead));
    return EXIT_DONE;
}

static json_t *dead_json(const struct mq_message *m)
{
    char when[CLOCK_RFC3339_LEN];
    json_t *j, *body;

    clock_format_rfc3339(m->dead_ms, when);
    j = json_pack("{s:I, s:s, s:s, s:i, s:s, s:s}", "tag", (json_int_t)m->tag,
                  "id", m->id, "topic", m->topic, "attempts", m->attempt,
                  "error", m->error, "dead_at", when);
    /* A body that is not UTF-8 text is shown in hex instead. */
    body = json_stringn((const char *)m->body, m->len);
    if (body != NULL) {
        json_object_set_new(j, "body", body);
    } else {
        char *hex = malloc(2 * m->len + 1);
        for (size_t i = 0; hex != NULL && i < m->len; i++)
            snprintf(hex + 2 * i, 3, "%02x", m->body[i]);
        if (hex != NULL) {
            hex[2 * m->len] = '\0';
            json_object_set_new(j, "body_hex", json_string(hex));
        }
        free(hex);
    }
    return j;
}

static int cmd_dead(struct mq *q, const struct mqctl_args *a)
{
    int64_t after = 0, limit = MQCTL_DEAD_LIMIT;
    struct mq_batch *bt;
    int rc;

    if (a->after != NULL && !parse_i64(a->after, 0, INT64_MAX, &after))
        return misuse("--after must be a tag: a whole number from 0");
    if (a->limit != NULL && !parse_i64(a->limit, 1, MQ_PREFETCH_MAX, &limit))
        return misuse("--limit must be a whole number from 1 to %d",
                      MQ_PREFETCH_MAX);
    if (q == NULL)
        return EXIT_DONE; /* checks only */
    rc = mq_dead_list(q, a->pos[0], after, (size_t)limit, &bt);
    if (rc != ERR_OK)
        return failed(rc == ERR_NOTFOUND ? "no such queue" : "dead failed", rc);
    for (size_t i = 0; i < bt->n; i++)
        print_json(dead_json(&bt->msgs[i]));
    mq_batch_free(bt);
    return EXIT_DONE;
}

static int cmd_requeue(struct mq *q, const struct mqctl_args *a)
{
    int64_t tag;
    int rc;

    if (!parse_i64(a->pos[1], 1, INT64_MAX, &tag))
        return misuse("TAG must be a whole number from 1");
    if (q == NULL)
        return EXIT_DONE;
    if ((rc = mq_requeue(q, a->pos[0], tag)) != ERR_OK)
        return failed(
            rc == ERR_NOTFOUND ? "no such dead letter" : "requeue failed", rc);
    print_json(json_pack("{s:s, s:I}", "queue", a->pos[0], "requeued",
                         (json_int_t)tag));
    return EXIT_DONE;
}

static int check_declare(const struct mqctl_args *a)
{
    int rc = check_queue_arg(a, 2, 1 + MQ_BINDINGS_MAX);

    if (rc != EXIT_DONE)
        return rc;
    for (size_t i = 1; i < a->npos; i++)
        if (!mq_pattern_valid(a->pos[i]))
            return misuse("bad pattern \"%s\": words of a-z, 0-9, _, -, * "
                          "or # joined by '.'",
                          a->pos[i]);
    return EXIT_DONE;
}

static int cmd_declare(struct mq *q, const struct mqctl_args *a)
{
    json_t *patterns = json_array();
    int rc = mq_declare(q, a->pos[0], a->pos + 1, a->npos - 1);

    if (rc != ERR_OK) {
        json_decref(patterns);
        return failed("declare failed", rc);
    }
    for (size_t i = 1; i < a->npos; i++)
        json_array_append_new(patterns, json_string(a->pos[i]));
    print_json(
        json_pack("{s:s, s:o}", "queue", a->pos[0], "patterns", patterns));
    return EXIT_DONE;
}

/* Every check of the command that needs no queue; EXIT_DONE if fine. */
static int check_command(struct mqctl_args *a)
{
    int rc;

    if (strcmp(a->cmd, "publish") == 0)
        return check_publish(a);
    if (strcmp(a->cmd, "depth") == 0)
        return (rc = only_options(a, false, false)) != EXIT_DONE
                   ? rc
                   : check_queue_arg(a, 1, 1);
    if (strcmp(a->cmd, "dead") == 0) {
        if ((rc = only_options(a, false, true)) != EXIT_DONE ||
            (rc = check_queue_arg(a, 1, 1)) != EXIT_DONE)
            return rc;
        return cmd_dead(NULL, a);
    }
    if (strcmp(a->cmd, "requeue") == 0) {
        if ((rc = only_options(a, false, false)) != EXIT_DONE ||
            (rc = check_queue_arg(a, 2, 2)) != EXIT_DONE)
            return rc;
        return cmd_requeue(NULL, a);
    }
    if (strcmp(a->cmd, "declare") == 0)
        return (rc = only_options(a, false, false)) != EXIT_DONE
                   ? rc
                   : check_declare(a);
    return misuse("unknown command \"%s\"", a->cmd);
}

static int run_command(struct mq *q, const struct mqctl_args *a)
{
    if (strcmp(a->cmd, "publish") == 0)
        return cmd_publish(q, a);
    if (strcmp(a->cmd, "depth") == 0)
        return cmd_depth(q, a);
    if (strcmp(a->cmd, "dead") == 0)
        return cmd_dead(q, a);
    if (strcmp(a->cmd, "requeue") == 0)
        return cmd_requeue(q, a);
    return cmd_declare(q, a);
}

/* Loads the keys; EXIT_DONE, or EXIT_MISUSE after saying why. */
static int load_config(struct config *cfg, struct mqctl_args *a)
{
    enum log_level level;
    int rc = config_init(cfg, mqctl_keys,
                         sizeof(mqctl_keys) / sizeof(mqctl_keys[0]));

    if (rc == ERR_OK)
        rc = config_load(cfg, a->cfg_argc, a->cfg_argv, 1);
    if (rc != ERR_OK) {
        fprintf(stderr, "marquee mq: %s\n", cfg->err);
        config_free(cfg);
        return EXIT_MISUSE;
    }
    if (log_level_parse(config_str(cfg, "log.level"), &level) != ERR_OK) {
        config_free(cfg);
        return misuse("log.level must be debug, info, warn, error or off");
    }
    log_set_level(level);
    return EXIT_DONE;
}

int mqctl_main(int argc, char **argv)
{
    struct mqctl_args a = {0};
    struct config cfg;
    struct mq_config mc;
    struct mq *q;
    int status, rc;

    if (argc < 2)
        return misuse("a command is needed");
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ||
            (i == 1 && strcmp(argv[i], "help") == 0))
            return usage(); /* asked for: like every role's --help */
    if (argc > MQCTL_ARGS_MAX)
        return misuse("more than %d words", MQCTL_ARGS_MAX);
    a.cmd = argv[1];
    if ((status = split_args(argc, argv, &a)) != EXIT_DONE ||
        (status = check_command(&a)) != EXIT_DONE)
        return status;
    if ((status = load_config(&cfg, &a)) != EXIT_DONE)
        return status;

    mq_config_from(&mc, &cfg);
    if ((rc = mq_open(&mc, &q)) != ERR_OK) {
        status = rc == ERR_CONFIG ? EXIT_MISUSE
                                  : failed("cannot open the queue", rc);
        goto out_config;
    }
    status = run_command(q, &a);
    fflush(stdout);
    mq_close(q);

out_config:
    config_free(&cfg);
    return status;
}
