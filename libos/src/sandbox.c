/* The sandbox (sandbox.h).
 *
 * Process tree:  PAL --clone(NEWNS|NEWPID)--> ns init (pid 1) --fork--> app (pid 2).
 * The init mounts /proc, /dev, hostfs and ramfs on top of the root, pivots into it and
 * detaches the old root, then enters a new user namespace whose id maps the PAL writes (root
 * inside = root outside, so the FUSE mount of the PAL stays reachable).  It forks the app and
 * stays as a minimal
 * init: it forwards signals to the app, reaps orphans and reports the app's wait status to the
 * PAL through a pipe (pid 1 of a namespace cannot die of the app's signal itself).  Setup and
 * exec errors travel back through a close-on-exec pipe, so a successful exec is seen as EOF.
 * The mounts themselves are set up by sandbox_mounts.c. */
#include "sandbox.h"

#include "chldpipe.h"
#include "sandbox_int.h"
#include "rlimit_emul.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_NEWUSER
#define CLONE_NEWUSER 0x10000000
#endif
#ifndef CLONE_NEWNS
#define CLONE_NEWNS 0x00020000
#endif
#ifndef CLONE_NEWPID
#define CLONE_NEWPID 0x20000000
#endif

static void set_limit(int efd, int res, const char *name, rlim_t soft, int set_hard)
{
    struct rlimit r;
    if (getrlimit(res, &r) != 0)
        ocb_sandbox_die(efd, "getrlimit %s: %s", name, strerror(errno));
    if (r.rlim_max != RLIM_INFINITY && soft > r.rlim_max)
        soft = r.rlim_max; /* cannot raise a hard limit (no CAP_SYS_RESOURCE) */
    r.rlim_cur = soft;
    if (set_hard)
        r.rlim_max = soft;
    if (setrlimit(res, &r) != 0)
        ocb_sandbox_die(efd, "setrlimit %s: %s", name, strerror(errno));
}

static volatile sig_atomic_t app_pid;
/* Pass a signal on to the app, unless the terminal sent it (SI_KERNEL): the app is in the
 * same process group and got it already. */
static void forward(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    if (si != NULL && si->si_code == SI_KERNEL)
        return;
    if (app_pid > 0)
        kill(app_pid, sig);
}

static const int forwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM,
                                SIGCONT, SIGWINCH, SIGPIPE};

/* Close every descriptor but `keep` (and 0-2): whatever the PAL's caller left open (a host
 * directory, a socket) must not reach the sandbox, not even through /proc/1/fd of its init. */
static void close_others(const int *keep, size_t n)
{
    int sorted[8];
    size_t m = 0;
    for (size_t i = 0; i < n && m < 8; i++)
        if (keep[i] > 2)
            sorted[m++] = keep[i];
    for (size_t i = 1; i < m; i++)
        for (size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            int t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    unsigned lo = 3;
    for (size_t i = 0; i < m; i++) {
        if ((unsigned)sorted[i] > lo)
            close_range(lo, (unsigned)sorted[i] - 1, 0);
        lo = (unsigned)sorted[i] + 1;
    }
    close_range(lo, ~0U, 0);
}

/* pid 1 of the namespace. */
__attribute__((noreturn)) static void ns_init(const struct ocb_sandbox_spec *s, int req_fd,
                                              int sync_fd, int efd, int status_fd)
{
    const int keep[] = {req_fd, sync_fd, efd, status_fd, s->stdio[0], s->stdio[1], s->stdio[2]};
    close_others(keep, sizeof keep / sizeof keep[0]);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        ocb_sandbox_die(efd, "prctl: %s", strerror(errno));
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        ocb_sandbox_die(efd, "cannot make mounts private: %s", strerror(errno));
    /* The root must be a mount point for pivot_root: bind it onto itself (with what is below). */
    if (mount(s->root, s->root, NULL, MS_BIND | MS_REC, NULL) != 0)
        ocb_sandbox_die(efd, "cannot bind the root FS: %s", strerror(errno));
    ocb_sandbox_mounts(efd, s);
    /* pivot_root, then detach the old root: nothing above the root FS is left in this mount
     * namespace, so a chroot break-out (the app is root in its user namespace and may chroot)
     * ends at the root FS. */
    if (chdir(s->root) != 0 || syscall(SYS_pivot_root, ".", ".") != 0 ||
        umount2(".", MNT_DETACH) != 0 || chdir("/") != 0)
        ocb_sandbox_die(efd, "cannot make the root FS the root: %s", strerror(errno));
    /* The user namespace comes last: the mount namespace stays owned by the host's, so the
     * app (root with all capabilities of its own user namespace) cannot change its mounts.
     * The PAL writes the id maps: root inside is root outside. */
    if (unshare(CLONE_NEWUSER) != 0)
        ocb_sandbox_die(efd, "cannot create the user namespace: %s", strerror(errno));
    char c;
    if (write(req_fd, "u", 1) != 1 || read(sync_fd, &c, 1) != 1)
        ocb_sandbox_die(efd, "the PAL did not map the ids of the user namespace");
    close(req_fd);
    close(sync_fd);

    /* The CPUs of --cpus: the init's own affinity, inherited by the program, is also the set
     * the seccomp handler limits every later sched_setaffinity to. */
    if (s->cpus != NULL && sched_setaffinity(0, sizeof *s->cpus, s->cpus) != 0)
        ocb_sandbox_die(efd, "cannot limit the CPUs (--cpus): %s", strerror(errno));
    unsigned what = (s->limits.nproc ? OCB_FILTER_TASKS : 0) | (s->cpus ? OCB_FILTER_AFFINITY : 0) |
                    (s->log_level >= OCB_LOG_TRACE ? OCB_FILTER_EXEC : 0);
    int sv[2] = {-1, -1};
    const int filter = s->limits.mmap_size || what;
    if (filter && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        ocb_sandbox_die(efd, "socketpair: %s", strerror(errno));
    /* Kept open: the app may cover /proc later, the count must not follow. */
    int procfd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (procfd < 0)
        ocb_sandbox_die(efd, "cannot open /proc: %s", strerror(errno));
    if (ocb_chld_pipe_open() != 0)
        ocb_sandbox_die(efd, "pipe: %s", strerror(errno));
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    pid_t pid = fork();
    if (pid < 0)
        ocb_sandbox_die(efd, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* The app starts with no blocked signal, whatever the PAL's caller had blocked. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        close(status_fd);
        for (int i = 0; i < 3; i++)
            if (s->stdio[i] != i && dup2(s->stdio[i], i) < 0)
                ocb_sandbox_die(efd, "cannot set up stdio: %s", strerror(errno));
        /* Only 0-2 survive the exec (the originals of the stdio descriptors included). */
        if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
            ocb_sandbox_die(efd, "close_range: %s", strerror(errno));
        set_limit(efd, RLIMIT_STACK, "RLIMIT_STACK", s->limits.stack, 0);
        set_limit(efd, RLIMIT_DATA, "RLIMIT_DATA", s->limits.data, 0);
        set_limit(efd, RLIMIT_AS, "RLIMIT_AS", s->limits.as, 1);
        if (s->limits.nproc)
            set_limit(efd, RLIMIT_NPROC, "RLIMIT_NPROC", s->limits.nproc, 1);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
            ocb_sandbox_die(efd, "prctl: %s", strerror(errno));
        if (filter) {
            int rc = ocb_rlemul_install(sv[1], what);
            if (rc != 0)
                ocb_sandbox_die(efd, "cannot install the RLIMIT_DATA filter: %s", strerror(-rc));
        }
        execve(s->path, (char *const *)s->argv, (char *const *)s->envp);
        ocb_sandbox_die(efd, "cannot execute %s: %s", s->path, strerror(errno));
    }
    close(efd);
    for (int i = 0; i < 3; i++)
        if (s->stdio[i] > 2)
            close(s->stdio[i]);
    app_pid = pid;
    int notif = -1;
    if (filter) {
        close(sv[1]);
        notif = ocb_rlemul_receive(sv[0]); /* -1 if the app died before installing it */
        close(sv[0]);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = forward;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        sigaction(forwarded[i], &sa, NULL);
    sa.sa_handler = ocb_chld_on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int status = 0, done = 0;
    while (!done) {
        int st;
        pid_t w;
        while ((w = waitpid(-1, &st, WNOHANG)) > 0)
            if (w == pid) {
                status = st;
                done = 1;
            }
        if (done || (w < 0 && errno == ECHILD))
            break;
        struct pollfd pf[2] = {{ocb_chld_pipe_fd(), POLLIN, 0}, {notif, POLLIN, 0}};
        if (poll(pf, notif >= 0 ? 2 : 1, -1) < 0)
            continue;
        if (pf[0].revents & POLLIN)
            ocb_chld_pipe_drain();
        if (notif >= 0 && (pf[1].revents & POLLIN))
            ocb_rlemul_handle(notif, s->limits.mmap_size, procfd, s->limits.nproc);
        if (notif >= 0 && (pf[1].revents & (POLLHUP | POLLERR | POLLNVAL))) {
            close(notif);
            notif = -1;
        }
    }
    app_pid = 0;
    if (write(status_fd, &status, sizeof status) != (ssize_t)sizeof status)
        _exit(1);
    _exit(0);
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

__attribute__((noinline)) void ocb_gdb_enter_sandbox(void)
{
    __asm__ volatile("" ::: "memory"); /* keep the call: gdb breaks on it */
}

int ocb_sandbox_spawn(const struct ocb_sandbox_spec *s, struct ocb_proc *out, struct ocb_err *e)
{
    memset(out, 0, sizeof *out);
    int sync[2], errp[2], statp[2], req[2];
    if (pipe2(req, O_CLOEXEC) != 0)
        return ocb_fail(e, "pipe: %s", strerror(errno));
    if (pipe2(sync, O_CLOEXEC) != 0) {
        close(req[0]), close(req[1]);
        return ocb_fail(e, "pipe: %s", strerror(errno));
    }
    if (pipe2(errp, O_CLOEXEC) != 0) {
        close(sync[0]), close(sync[1]);
        return ocb_fail(e, "pipe: %s", strerror(errno));
    }
    if (pipe2(statp, O_CLOEXEC) != 0) {
        close(sync[0]), close(sync[1]), close(errp[0]), close(errp[1]);
        return ocb_fail(e, "pipe: %s", strerror(errno));
    }
    fflush(NULL);
    ocb_gdb_enter_sandbox();
    long pid = syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWPID | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0) {
        close(req[0]), close(sync[1]), close(errp[0]), close(statp[0]);
        ns_init(s, req[1], sync[0], errp[1], statp[1]);
    }
    int saved = errno;
    close(req[1]), close(sync[0]), close(errp[1]), close(statp[1]);
    if (pid < 0) {
        close(req[0]), close(sync[1]), close(errp[0]), close(statp[0]);
        return ocb_fail(e, "cannot create the namespaces: %s", strerror(saved));
    }
    /* Once the init has its user namespace (EOF instead: it failed and says why on errp):
     * root inside is root outside, so the FUSE mount served by the PAL stays reachable and
     * hostfs files keep their owners; the capabilities are those of the new namespace. */
    char c;
    ssize_t r;
    while ((r = read(req[0], &c, 1)) < 0 && errno == EINTR)
        ;
    close(req[0]);
    if (r == 1) {
        char path[64];
        int ok = 1;
        snprintf(path, sizeof path, "/proc/%ld/uid_map", pid);
        ok = ok && write_file(path, "0 0 4294967295\n") == 0;
        snprintf(path, sizeof path, "/proc/%ld/gid_map", pid);
        ok = ok && write_file(path, "0 0 4294967295\n") == 0;
        if (!ok || write(sync[1], "g", 1) != 1) {
            kill((pid_t)pid, SIGKILL);
            waitpid((pid_t)pid, NULL, 0);
            close(sync[1]), close(errp[0]), close(statp[0]);
            return ocb_fail(e, "cannot map ids of the user namespace");
        }
    }
    close(sync[1]);
    char msg[512];
    ssize_t n, got = 0;
    while ((n = read(errp[0], msg + got, sizeof msg - 1 - (size_t)got)) > 0 ||
           (n < 0 && errno == EINTR))
        if (n > 0)
            got += n;
    close(errp[0]);
    if (got > 0) {
        msg[got] = '\0';
        waitpid((pid_t)pid, NULL, 0);
        close(statp[0]);
        return ocb_fail(e, "%s", msg);
    }
    out->init_pid = (pid_t)pid;
    out->status_fd = statp[0];
    return 0;
}

int ocb_sandbox_wait(struct ocb_proc *p, int *status)
{
    if (!p->done) {
        int st = 0;
        ssize_t n;
        do
            n = read(p->status_fd, &st, sizeof st);
        while (n < 0 && errno == EINTR);
        int ist;
        while (waitpid(p->init_pid, &ist, 0) < 0 && errno == EINTR)
            ;
        close(p->status_fd);
        /* No report: the init itself was killed (occlum_pal_kill SIGKILL). */
        p->status = n == (ssize_t)sizeof st ? st : (WIFSIGNALED(ist) ? WTERMSIG(ist) : SIGKILL);
        p->done = 1;
    }
    *status = p->status;
    return 0;
}

int ocb_sandbox_kill(struct ocb_proc *p, int sig)
{
    if (p->done)
        return 0;
    return kill(p->init_pid, sig);
}
