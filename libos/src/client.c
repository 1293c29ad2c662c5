/* The client side of `occlum exec` / `occlum stop` (server.h): sends a request of the exec
 * protocol (exec_proto.h) with our stdio attached, passes signals on, and returns the
 * program's status. */
#include "server.h"

#include "occlum_pal_api.h"
#include "exec_proto.h"
#include "ocb.h"
#include "runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* Connect to the server of the instance, or print one line saying why there is none and
 * return -1.  The runtime lock tells whether a server can be alive: a socket file without a
 * holder of the lock is what a crashed server leaves, and is not connected to. */
static int connect_server(const char *instance)
{
    struct sockaddr_un sa;
    char real[PATH_MAX];
    if (realpath(instance, real) == NULL || ocb_exec_sock_path(real, &sa) != 0) {
        fprintf(stderr, "occlum: %s: not an instance directory (or its path is too long)\n", instance);
        return -1;
    }
    struct stat st;
    int sock_file = lstat(sa.sun_path, &st) == 0;
    int held = ocb_run_lock_held(real);
    if (held == 0 && sock_file) {
        fprintf(stderr, "occlum: %s: the instance is not running: its server ended without "
                        "'occlum stop' (crashed or killed); 'occlum start' starts it again\n", real);
        return -1;
    }
    if (held == 0 || !sock_file) {
        fprintf(stderr, "occlum: %s: the instance is not running (occlum start)%s\n", real,
                held == 1 ? "; it is in use by occlum run or occlum mount" : "");
        return -1;
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof sa) == 0)
        return s;
    int saved = errno;
    if (s >= 0)
        close(s);
    fprintf(stderr, "occlum: %s: the instance is not running (%s: %s)\n", real, sa.sun_path, strerror(saved));
    return -1;
}

static int send_request(int s, uint32_t kind, const char *path, char **argv, char **envp)
{
    uint32_t argc = 0, envc = 0, len = 0;
    if (kind == OCB_EXEC_KIND_EXEC) {
        len += (uint32_t)strlen(path) + 1;
        argc = 1;
        for (char **a = argv + 1; a && *a; a++, argc++)
            len += (uint32_t)strlen(*a) + 1;
        for (char **e = envp; e && *e; e++, envc++)
            len += (uint32_t)strlen(*e) + 1;
    }
    uint8_t hdr[24];
    ocb_put_le32(hdr, OCB_EXEC_MAGIC);
    ocb_put_le32(hdr + 4, 1);
    ocb_put_le32(hdr + 8, kind);
    ocb_put_le32(hdr + 12, argc);
    ocb_put_le32(hdr + 16, envc);
    ocb_put_le32(hdr + 20, len);
    int fds[3] = {0, 1, 2};
    char cbuf[CMSG_SPACE(sizeof fds)];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = {hdr, sizeof hdr};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (kind == OCB_EXEC_KIND_EXEC) {
        msg.msg_control = cbuf;
        msg.msg_controllen = sizeof cbuf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof fds);
        memcpy(CMSG_DATA(cm), fds, sizeof fds);
    }
    if (sendmsg(s, &msg, MSG_NOSIGNAL) != (ssize_t)sizeof hdr)
        return -1;
    if (kind != OCB_EXEC_KIND_EXEC)
        return 0;
    if (ocb_exec_write_all(s, path, strlen(path) + 1) != 0)
        return -1;
    for (char **a = argv + 1; a && *a; a++)
        if (ocb_exec_write_all(s, *a, strlen(*a) + 1) != 0)
            return -1;
    for (char **e = envp; e && *e; e++)
        if (ocb_exec_write_all(s, *e, strlen(*e) + 1) != 0)
            return -1;
    return 0;
}

static volatile sig_atomic_t client_sock = -1;

static void pass_signal(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    if (si != NULL && si->si_code == SI_KERNEL)
        return; /* from the terminal: the program got it too (same process group) */
    uint8_t b[4];
    ocb_put_le32(b, (uint32_t)sig);
    if (client_sock >= 0 && send(client_sock, b, 4, MSG_NOSIGNAL) != 4) {
    }
}

int ocb_client_exec(const char *instance, const char *path, char **argv)
{
    extern char **environ;
    /* Signals that arrive before the program runs wait (blocked) and are passed on then. */
    static const int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
    sigset_t set, old;
    sigemptyset(&set);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = pass_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++) {
        sigaddset(&set, sigs[k]);
        sigaction(sigs[k], &sa, NULL);
    }
    sigprocmask(SIG_BLOCK, &set, &old);
    int s = connect_server(instance);
    if (s < 0)
        return 1;
    if (send_request(s, OCB_EXEC_KIND_EXEC, path, argv, environ) != 0) {
        fprintf(stderr, "occlum: lost the connection to the instance\n");
        return 1;
    }
    uint32_t type;
    if (ocb_exec_recv_u32(s, &type) != 0) {
        fprintf(stderr, "occlum: lost the connection to the instance (its server ended)\n");
        return 1;
    }
    if (type == OCB_EXEC_R_FAILED)
        return 127; /* the reason was printed on our stderr by the server */
    if (type != OCB_EXEC_R_STARTED)
        return 1;
    client_sock = s;
    sigprocmask(SIG_SETMASK, &old, NULL);
    uint32_t status;
    if (ocb_exec_recv_u32(s, &type) != 0 || type != OCB_EXEC_R_EXITED || ocb_exec_recv_u32(s, &status) != 0) {
        /* The server went away (occlum stop, or it died) and the program with it. */
        fprintf(stderr, "occlum: the instance stopped (occlum stop, or its server ended); the program was killed\n");
        return 128 + SIGKILL;
    }
    int st = (int)status;
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return WEXITSTATUS(st) & 0x7f;
}

int ocb_client_stop(const char *instance)
{
    int s = connect_server(instance);
    if (s < 0)
        return 1;
    uint32_t type = 0;
    if (send_request(s, OCB_EXEC_KIND_STOP, NULL, NULL, NULL) != 0 || ocb_exec_recv_u32(s, &type) != 0 || type != OCB_EXEC_R_STOPPED) {
        fprintf(stderr, "occlum: the instance did not confirm the stop\n");
        return 1;
    }
    return 0;
}
