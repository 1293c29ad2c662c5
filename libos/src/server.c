/* The server of `occlum start` (server.h): boots the instance, then serves the exec
 * protocol (exec_proto.h) on run/occlum_exec.sock.  Each connection is served by a forked
 * child of the server, which creates the process in the instance (the PAL state, root FS
 * mount and lock are inherited) and waits for it. */
#include "server.h"

#include "chldpipe.h"
#include "occlum_pal_api.h"
#include "exec_proto.h"
#include "ocb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;
static int listen_fd = -1;
static pid_t server_pid;
static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void reply_failed(int c, const char *msg)
{
    size_t n = strlen(msg);
    if (ocb_exec_send_u32(c, OCB_EXEC_R_FAILED) == 0 && ocb_exec_send_u32(c, (uint32_t)n) == 0)
        ocb_exec_write_all(c, msg, n);
}

/* One exec request, in a child of the server. */
__attribute__((noreturn)) static void serve_exec(int c, char *strs, uint32_t argc, uint32_t envc,
                                                 int fds[3])
{
    char **argv = calloc(argc + 1, sizeof(char *)), **envp = calloc(envc + 1, sizeof(char *));
    if (argv == NULL || envp == NULL)
        _exit(1);
    char *p = strs;
    for (uint32_t i = 0; i < argc; i++, p += strlen(p) + 1)
        argv[i] = p;
    for (uint32_t i = 0; i < envc; i++, p += strlen(p) + 1)
        envp[i] = p;
    if (ocb_chld_pipe_open() != 0)
        _exit(1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ocb_chld_on_signal;
    sigaction(SIGCHLD, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGTERM, &sa, NULL);
    /* stderr of the PAL's messages goes to the client, like occlum-run's. */
    int saved_err = dup(2);
    dup2(fds[2], 2);
    struct occlum_stdio_fds io = {fds[0], fds[1], fds[2]};
    int pid = 0;
    struct occlum_pal_create_process_args cp = {
        .path = argv[0], .argv = (const char **)argv, .env = (const char **)envp, .stdio = &io, .pid = &pid};
    int rc = occlum_pal_create_process(&cp);
    dup2(saved_err, 2);
    close(saved_err);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    if (rc != 0) {
        reply_failed(c, "cannot start");
        _exit(0);
    }
    ocb_exec_send_u32(c, OCB_EXEC_R_STARTED);
    for (;;) {
        struct pollfd pf[2] = {{ocb_chld_pipe_fd(), POLLIN, 0}, {c, POLLIN, 0}};
        if (poll(pf, 2, -1) < 0)
            continue;
        if (pf[0].revents & POLLIN) {
            ocb_chld_pipe_drain();
            /* The sandbox's init ended: occlum_pal_exec reads the status it reported. */
            int status = 0;
            struct occlum_pal_exec_args ex = {.pid = pid, .exit_value = &status};
            if (occlum_pal_exec(&ex) == 0) {
                ocb_exec_send_u32(c, OCB_EXEC_R_EXITED);
                ocb_exec_send_u32(c, (uint32_t)status);
                _exit(0);
            }
        }
        if (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            uint32_t sig;
            if (ocb_exec_recv_u32(c, &sig) != 0) { /* the client went away */
                occlum_pal_kill(pid, SIGKILL);
                int status;
                struct occlum_pal_exec_args ex = {.pid = pid, .exit_value = &status};
                occlum_pal_exec(&ex);
                _exit(0);
            }
            if (sig > 0 && sig < 65)
                occlum_pal_kill(pid, (int)sig);
        }
    }
}

#define MAX_HANDLERS 256
static pid_t handlers[MAX_HANDLERS];

static void track(pid_t pid)
{
    for (int i = 0; i < MAX_HANDLERS; i++)
        if (handlers[i] <= 0) {
            handlers[i] = pid;
            return;
        }
}

static void reap(void)
{
    pid_t w;
    while ((w = waitpid(-1, NULL, WNOHANG)) > 0)
        for (int i = 0; i < MAX_HANDLERS; i++)
            if (handlers[i] == w)
                handlers[i] = 0;
}

static void handle(int c)
{
    uint8_t hdr[24];
    char cbuf[CMSG_SPACE(3 * sizeof(int))];
    struct iovec iov = {hdr, sizeof hdr};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    ssize_t n = recvmsg(c, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
    int fds[3] = {-1, -1, -1}, nfds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            nfds = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            memcpy(fds, CMSG_DATA(cm), (size_t)(nfds < 3 ? nfds : 3) * sizeof(int));
        }
    uint32_t kind = ocb_le32(hdr + 8), argc = ocb_le32(hdr + 12), envc = ocb_le32(hdr + 16),
             len = ocb_le32(hdr + 20);
    if (n != (ssize_t)sizeof hdr || ocb_le32(hdr) != OCB_EXEC_MAGIC || ocb_le32(hdr + 4) != 1)
        goto bad;
    if (kind == OCB_EXEC_KIND_STOP) {
        stop_requested = 1;
        goto out;
    }
    if (kind != OCB_EXEC_KIND_EXEC || nfds != 3 || argc < 1 || len > OCB_EXEC_MAX_REQ || argc > len || envc > len)
        goto bad;
    char *strs = malloc(len + 1);
    if (strs == NULL || ocb_exec_read_all(c, strs, len) != 0) {
        free(strs);
        goto bad;
    }
    strs[len] = '\0';
    uint32_t count = 0;
    for (uint32_t i = 0; i < len; i++)
        count += strs[i] == '\0';
    if (count != argc + envc || (len && strs[len - 1] != '\0')) {
        free(strs);
        goto bad;
    }
    pid_t pid = fork();
    if (pid == 0) {
        /* A connection handler dies with the server (and its program with it: the sandbox's
         * init has PDEATHSIG too), and does not keep the listening socket: an orphan holding it
         * would accept connections nobody answers, and `occlum exec` would hang. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != server_pid)
            _exit(1);
        close(listen_fd);
        serve_exec(c, strs, argc, envc, fds);
    }
    if (pid > 0)
        track(pid);
    free(strs);
    goto out;
bad:
    reply_failed(c, "bad request");
out:
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

int ocb_serve(const char *instance, int ready_fd)
{
    struct occlum_pal_attr attr = OCCLUM_PAL_ATTR_INITVAL;
    attr.instance_dir = instance;
    attr.log_level = getenv("OCCLUM_LOG_LEVEL");
    char real[PATH_MAX];
    if (realpath(instance, real) == NULL) {
        fprintf(stderr, "occlum: %s: %s\n", instance, strerror(errno));
        return 1;
    }
    if (occlum_pal_init(&attr) < 0)
        return 1;
    struct sockaddr_un sa;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    listen_fd = s;
    server_pid = getpid();
    if (ocb_exec_sock_path(real, &sa) != 0 || s < 0) {
        fprintf(stderr, "occlum: %s/%s: path too long for a socket\n", real, OCB_EXEC_SOCKET);
        occlum_pal_destroy();
        return 1;
    }
    unlink(sa.sun_path); /* stale: the runtime lock proves no server runs */
    if (bind(s, (struct sockaddr *)&sa, sizeof sa) != 0 || chmod(sa.sun_path, 0600) != 0 || listen(s, 16) != 0) {
        fprintf(stderr, "occlum: %s: cannot listen: %s\n", sa.sun_path, strerror(errno));
        occlum_pal_destroy();
        return 1;
    }
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = on_term;
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    act.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &act, NULL);
    if (ready_fd > 0) {
        if (write(ready_fd, "1", 1) != 1) {
        }
        close(ready_fd);
    }
    while (!stop_requested) {
        struct pollfd pf = {s, POLLIN, 0};
        int r = poll(&pf, 1, 1000);
        reap(); /* finished connection handlers */
        if (r <= 0)
            continue;
        int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        handle(c);
        if (stop_requested) {
            /* Answer the stop request once everything is down. */
            close(s);
            unlink(sa.sun_path);
            /* Connection handlers die of SIGTERM; their programs' inits follow (PDEATHSIG). */
            for (int i = 0; i < MAX_HANDLERS; i++)
                if (handlers[i] > 0)
                    kill(handlers[i], SIGTERM);
            for (int i = 0; i < MAX_HANDLERS; i++)
                if (handlers[i] > 0)
                    while (waitpid(handlers[i], NULL, 0) < 0 && errno == EINTR)
                        ;
            occlum_pal_destroy();
            ocb_exec_send_u32(c, OCB_EXEC_R_STOPPED);
            close(c);
            return 0;
        }
        close(c);
    }
    close(s);
    unlink(sa.sun_path);
    occlum_pal_destroy();
    return 0;
}
