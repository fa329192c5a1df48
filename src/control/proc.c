/*
 * proc.c - child processes and port probes for `marquee up`; see proc.h.
 */
#include "control/proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "http/client.h"

/* Between fork and exec only async-signal-safe calls: no malloc, no
 * stdio, no locks (another thread may have held one at the fork). */
static void child_exec(char *const argv[], char *const envp[],
                       const char *log_path, const char *header, pid_t parent)
{
    sigset_t none;
    int fd;

    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(127);
    setpgid(0, 0);

    fd = open("/dev/null", O_RDONLY);
    if (fd >= 0 && fd != 0) {
        dup2(fd, 0);
        close(fd);
    }
    fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2)
            close(fd);
        if (write(2, header, strlen(header)) < 0)
            _exit(127);
    }
    /* Whatever the supervisor has open (its admin port's sockets, its
     * databases) is not the child's: an inherited listening socket would
     * keep the port taken after the supervisor ends. */
    close_range(3, ~0U, 0);
    execve(argv[0], argv, envp);
    {
        static const char msg[] = "up: exec failed\n";

        if (write(2, msg, sizeof(msg) - 1) < 0)
            _exit(127);
    }
    _exit(127);
}

int proc_spawn(char *const argv[], char *const envp[], const char *log_path,
               const char *header, pid_t *pid)
{
    pid_t parent = getpid();
    pid_t child = fork();

    if (child < 0) {
        log_error("up", "fork_failed program=%s errno=%d", argv[0], errno);
        return ERR_SYS;
    }
    if (child == 0)
        child_exec(argv, envp, log_path, header, parent);
    *pid = child;
    return ERR_OK;
}

void proc_exit_text(int status, char out[PROC_EXIT_TEXT])
{
    if (WIFSIGNALED(status))
        snprintf(out, PROC_EXIT_TEXT, "signal %d", WTERMSIG(status));
    else if (WIFEXITED(status))
        snprintf(out, PROC_EXIT_TEXT, "exit %d", WEXITSTATUS(status));
    else
        snprintf(out, PROC_EXIT_TEXT, "status %d", status);
}

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

bool proc_port_free(int port)
{
    struct sockaddr_in a = loopback(port);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    bool free_now;

    if (fd < 0)
        return false;
    /* Like the servers do, so a port whose last connections wait in
     * TIME_WAIT counts as free; a listener still makes bind fail. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    free_now = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return free_now;
}

/* Whether something accepts connections on the port, within timeout_ms. */
static bool port_listening(int port, int timeout_ms)
{
    struct sockaddr_in a = loopback(port);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct pollfd p;
    int err = 0;
    socklen_t len = sizeof(err);
    bool ok = false;

    if (fd < 0)
        return false;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
        ok = true;
    } else if (errno == EINPROGRESS) {
        p.fd = fd;
        p.events = POLLOUT;
        if (poll(&p, 1, timeout_ms) == 1 &&
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
            ok = true;
    }
    close(fd);
    return ok;
}

bool proc_http_ok(int port, const char *path, int timeout_ms)
{
    struct http_client_response r;
    char url[64];
    bool ok;

    if (!port_listening(port, timeout_ms))
        return false;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    if (http_client_request(url, "GET", path, NULL, NULL, 0, timeout_ms, &r) !=
        ERR_OK)
        return false;
    ok = r.status == 200;
    http_client_response_free(&r);
    return ok;
}

int proc_help_text(const char *bin, const char *role,
                   char buf[PROC_HELP_MAX + 1])
{
    int fds[2], status;
    size_t len = 0;
    pid_t child;
    ssize_t n;

    if (pipe2(fds, O_CLOEXEC) != 0)
        return ERR_SYS;
    child = fork();
    if (child < 0) {
        close(fds[0]);
        close(fds[1]);
        return ERR_SYS;
    }
    if (child == 0) {
        char *const with_role[] = {(char *)bin, (char *)role, (char *)"--help",
                                   NULL};
        char *const alone[] = {(char *)bin, (char *)"--help", NULL};

        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close_range(3, ~0U, 0);
        execv(bin, role != NULL ? with_role : alone);
        _exit(127);
    }
    close(fds[1]);
    while (len < PROC_HELP_MAX &&
           (n = read(fds[0], buf + len, PROC_HELP_MAX - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(fds[0]);
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) == 127)
        return ERR_SYS;
    return ERR_OK;
}
