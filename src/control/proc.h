/*
 * proc.h - the operating-system side of supervision: starting a role as a
 * child process, describing how it ended, and probing ports.
 */
#ifndef MARQUEE_CONTROL_PROC_H
#define MARQUEE_CONTROL_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Named limits. */
#define PROC_ARGS_MAX  64   /* argv entries of a child, the NULL included */
#define PROC_ENV_MAX   1024 /* environment entries of a child, the NULL too */
#define PROC_HELP_MAX  8192 /* bytes of `marquee --help` read */
#define PROC_EXIT_TEXT 32   /* "signal 9", "exit 1" */

/*
 * Starts argv[0] with argv (NULL-terminated) as a child: its own process
 * group (the terminal's Ctrl-C reaches the supervisor, which stops the
 * children in order), SIGTERM when the calling thread dies (so a
 * supervisor killed with SIGKILL leaves no orphan), signals unblocked,
 * stdin from /dev/null, stdout and stderr appended to log_path after a
 * first line `header`.  envp (NULL-terminated) is its whole environment.
 * Must be called from the thread that will reap it.
 * Returns ERR_OK with *pid set, or ERR_SYS (fork failed, logged); a child
 * that cannot exec exits 127 and says why in its log.
 */
int proc_spawn(char *const argv[], char *const envp[], const char *log_path,
               const char *header, pid_t *pid);

/* "exit N" or "signal N" from a wait status, into out. */
void proc_exit_text(int status, char out[PROC_EXIT_TEXT]);

/* Whether a TCP socket can be bound to 127.0.0.1:port right now (without
 * SO_REUSEPORT, so a port another server shares is seen as taken). */
bool proc_port_free(int port);

/*
 * Whether 127.0.0.1:port answers GET path with a 200 within timeout_ms.
 * A refused connection is a plain false, not logged: a starting process
 * refuses until it listens.
 */
bool proc_http_ok(int port, const char *path, int timeout_ms);

/*
 * Runs `bin --help` (role NULL) or `bin role --help` and gives what it
 * printed (the first PROC_HELP_MAX bytes, NUL-terminated): which roles a
 * binary has, which keys a role takes.  ERR_OK, or ERR_SYS when the binary
 * cannot run.
 */
int proc_help_text(const char *bin, const char *role,
                   char buf[PROC_HELP_MAX + 1]);

#endif
