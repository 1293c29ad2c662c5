/* See server.h.  Wire format (SOCK_STREAM, little-endian u32 words):
 *   client -> server: "OCBX", version 1, kind (1 exec, 2 stop), argc, envc, bytes; then the
 *                     NUL-terminated strings (path, argv..., env...), with stdin/stdout/stderr
 *                     attached to the header as SCM_RIGHTS; afterwards, u32 signal numbers.
 *   server -> client: u32 1 = started; u32 2 + u32 length + message = cannot start;
 *                     u32 3 + i32 wait status = the program ended; u32 4 = stopped.
 * Each connection is served by a forked child of the server, which creates the process in the
 * instance (the PAL state, root FS mount and lock are inherited) and waits for it. */
#include "server.h"

#include "chldpipe.h"
#include "occlum_pal_api.h"
#include "ocb.h"

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

#define MAGIC 0x5842434fu /* "OCBX" */
#define KIND_EXEC 1
#define KIND_STOP 2
#define MAX_REQ (1u << 20)

enum { R_STARTED = 1, R_FAILED = 2, R_EXITED = 3, R_STOPPED = 4 };

static int sock_path(const char *instance, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    int n = snprintf(sa->sun_path, sizeof sa->sun_path, "%s/%s", instance, OCB_EXEC_SOCKET);
    return n > 0 && (size_t)n < sizeof sa->sun_path ? 0 : -1;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int send_u32(int fd, uint32_t v)
{
    uint8_t b[4];
    ocb_put_le32(b, v);
    return write_all(fd, b, 4);
}

static int recv_u32(int fd, uint32_t *v)
{
    uint8_t b[4];
    if (read_all(fd, b, 4) != 0)
        return -1;
    *v = ocb_le32(b);
    return 0;
}

/* ---- server ---- */

static volatile sig_atomic_t stop_requested;
static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void reply_failed(int c, const char *msg)
{
    size_t n = strlen(msg);
    if (send_u32(c, R_FAILED) == 0 && send_u32(c, (uint32_t)n) == 0)
        write_all(c, msg, n);
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
    send_u32(c, R_STARTED);
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
                send_u32(c, R_EXITED);
                send_u32(c, (uint32_t)status);
                _exit(0);
            }
        }
        if (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            uint32_t sig;
            if (recv_u32(c, &sig) != 0) { /* the client went away */
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
    if (n != (ssize_t)sizeof hdr || ocb_le32(hdr) != MAGIC || ocb_le32(hdr + 4) != 1)
        goto bad;
    if (kind == KIND_STOP) {
        stop_requested = 1;
        goto out;
    }
    if (kind != KIND_EXEC || nfds != 3 || argc < 1 || len > MAX_REQ || argc > len || envc > len)
        goto bad;
    char *strs = malloc(len + 1);
    if (strs == NULL || read_all(c, strs, len) != 0) {
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
    if (pid == 0)
        serve_exec(c, strs, argc, envc, fds);
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
    if (sock_path(real, &sa) != 0 || s < 0) {
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
            send_u32(c, R_STOPPED);
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

/* ---- client ---- */

static int connect_server(const char *instance)
{
    struct sockaddr_un sa;
    char real[PATH_MAX];
    if (realpath(instance, real) == NULL || sock_path(real, &sa) != 0)
        return -1;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s >= 0 && connect(s, (struct sockaddr *)&sa, sizeof sa) == 0)
        return s;
    if (s >= 0)
        close(s);
    return -1;
}

static int send_request(int s, uint32_t kind, const char *path, char **argv, char **envp)
{
    uint32_t argc = 0, envc = 0, len = 0;
    if (kind == KIND_EXEC) {
        len += (uint32_t)strlen(path) + 1;
        argc = 1;
        for (char **a = argv + 1; a && *a; a++, argc++)
            len += (uint32_t)strlen(*a) + 1;
        for (char **e = envp; e && *e; e++, envc++)
            len += (uint32_t)strlen(*e) + 1;
    }
    uint8_t hdr[24];
    ocb_put_le32(hdr, MAGIC);
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
    if (kind == KIND_EXEC) {
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
    if (kind != KIND_EXEC)
        return 0;
    if (write_all(s, path, strlen(path) + 1) != 0)
        return -1;
    for (char **a = argv + 1; a && *a; a++)
        if (write_all(s, *a, strlen(*a) + 1) != 0)
            return -1;
    for (char **e = envp; e && *e; e++)
        if (write_all(s, *e, strlen(*e) + 1) != 0)
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
    if (s < 0) {
        fprintf(stderr, "occlum: %s: no running instance (occlum start)\n", instance);
        return 1;
    }
    if (send_request(s, KIND_EXEC, path, argv, environ) != 0) {
        fprintf(stderr, "occlum: lost the connection to the instance\n");
        return 1;
    }
    uint32_t type;
    if (recv_u32(s, &type) != 0)
        return 127;
    if (type == R_FAILED)
        return 127; /* the reason was printed on our stderr by the server */
    if (type != R_STARTED)
        return 1;
    client_sock = s;
    sigprocmask(SIG_SETMASK, &old, NULL);
    uint32_t status;
    if (recv_u32(s, &type) != 0 || type != R_EXITED || recv_u32(s, &status) != 0)
        return 128 + SIGKILL; /* the server went away (occlum stop) */
    int st = (int)status;
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return WEXITSTATUS(st) & 0x7f;
}

int ocb_client_stop(const char *instance)
{
    int s = connect_server(instance);
    if (s < 0) {
        fprintf(stderr, "occlum: %s: no running instance\n", instance);
        return 1;
    }
    uint32_t type = 0;
    if (send_request(s, KIND_STOP, NULL, NULL, NULL) != 0 || recv_u32(s, &type) != 0 || type != R_STOPPED) {
        fprintf(stderr, "occlum: the instance did not confirm the stop\n");
        return 1;
    }
    return 0;
}
