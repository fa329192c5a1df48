#include "base/program.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"

static int usage(const struct config_key *keys, size_t nkeys, const char *role,
                 const char *about)
{
    fprintf(stderr, "usage: marquee %s [--key=value ...]\n\n", role);
    if (about != NULL)
        fprintf(stderr, "%s\n\n", about);
    fprintf(stderr, "keys:\n");
    config_print_help(keys, nkeys, 2);
    return PROGRAM_HELPED;
}

int program_start(struct config *cfg, const struct config_key *keys,
                  size_t nkeys, int argc, char **argv, const char *role,
                  const char *about)
{
    enum log_level level;
    int rc;

    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(keys, nkeys, role, about);
    rc = config_init(cfg, keys, nkeys);
    if (rc == ERR_OK)
        rc = config_load(cfg, argc, argv, 1);
    if (rc != ERR_OK) {
        fprintf(stderr, "%s\n", cfg->err);
        config_free(cfg);
        return ERR_CONFIG;
    }
    if (log_level_parse(config_str(cfg, "log.level"), &level) != ERR_OK) {
        fprintf(stderr,
                "config: bad value key=log.level value=\"%s\" "
                "reason=\"expected debug, info, warn, error or off\"\n",
                config_str(cfg, "log.level"));
        config_free(cfg);
        return ERR_CONFIG;
    }
    log_set_level(level);
    return ERR_OK;
}

void program_make_parent_dir(const char *path)
{
    char dir[512];
    const char *slash = strrchr(path, '/');

    if (slash == NULL || slash == path || (size_t)(slash - path) >= sizeof(dir))
        return;
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    if (mkdir(dir, 0755) != 0 && access(dir, F_OK) != 0)
        log_warn("program", "mkdir_failed dir=%s", dir);
}
