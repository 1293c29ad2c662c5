/* The sandbox (sandbox.h).
 *
 * Process tree:  PAL --clone(NEWNS|NEWPID)--> ns init (pid 1) --fork--> app (pid 2).
 * The init mounts /proc, /dev, hostfs and ramfs on top of the root, pivots into it and
 * detaches the old root, then enters a new user namespace whose id maps the PAL writes (root
 * inside = root outside, so the FUSE mount of the PAL stays reachable).  It forks the app and
 * stays as a minimal
 * init: it forwards signals to the app, reaps orphans and reports the app's wait status to the
 * PAL through a pipe (pid 1 of a namespace cannot die of the app's signal itself).  Setup and
 * exec errors travel back through a close-on-exec pipe, so a successful exec is seen as EOF. */
#include "sandbox.h"

#include "chldpipe.h"
#include "rlimit_emul.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
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

/* Report a failure from inside the sandbox and exit (the PAL reads the message). */
__attribute__((noreturn, format(printf, 2, 3))) static void die(int fd, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0 && write(fd, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1) < 0)
        _exit(126);
    _exit(126);
}

/* Mount targets live in the root FS, whose writable layer an app of an earlier run (or, under
 * occlum start, of the same instance right now) may have filled with symlinks.  Every target
 * is therefore opened component by component with openat2(RESOLVE_NO_SYMLINKS) below the root,
 * created when missing, and mounted on through its /proc/self/fd path: a symlink is refused,
 * never followed out of the root. */
static int open_dir(int dirfd, const char *name)
{
    struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW,
                           .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH};
    return (int)syscall(SYS_openat2, dirfd, name, &how, sizeof how);
}

static int walk(int efd, const char *root, const char *rel, int create)
{
    int cur = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cur < 0)
        die(efd, "cannot open the root FS: %s", strerror(errno));
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", rel);
    for (char *save = NULL, *comp = strtok_r(buf, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
        if (strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0)
            die(efd, "mount target %s: '.' and '..' are not allowed", rel);
        int next = open_dir(cur, comp);
        if (next < 0 && errno == ENOENT && create) {
            if (mkdirat(cur, comp, 0755) != 0 && errno != EEXIST)
                die(efd, "cannot create mount target /%s: %s", rel, strerror(errno));
            next = open_dir(cur, comp);
        }
        if (next < 0) {
            int err = errno;
            struct stat st;
            if (fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                die(efd, "mount target /%s: a symbolic link in the root FS (refused)", rel);
            die(efd, "mount target /%s: %s", rel, strerror(err));
        }
        close(cur);
        cur = next;
    }
    return cur;
}

static void fd_path(int fd, char out[64]) { snprintf(out, 64, "/proc/self/fd/%d", fd); }

/* mount(source, <root>/<rel>, ...) through a verified descriptor of the target. */
static void mount_at(int efd, const char *root, const char *rel, const char *src, const char *type,
                     unsigned long flags, const char *data, const char *what)
{
    int fd = walk(efd, root, rel, 1);
    char p[64];
    fd_path(fd, p);
    if (mount(src, p, type, flags, data) != 0)
        die(efd, "cannot mount %s at /%s: %s", what, rel, strerror(errno));
    close(fd);
}

/* /proc of the sandbox: the app is root, mapped to host root, and the kernel checks writes to
 * /proc/sys and friends by uid: they would change the host.  Those are made read-only and a few
 * files that expose kernel memory or other users' data are hidden (as container runtimes do).
 * The app cannot undo this: its user namespace does not own its mount namespace. */
static void harden_proc(int efd, const char *root, const char *procrel)
{
    static const char *const ro[] = {"sys", "sysrq-trigger", "irq", "bus", "fs"};
    static const char *const masked[] = {"kcore", "keys", "timer_list", "sched_debug", "kallsyms"};
    int pfd = walk(efd, root, procrel, 0);
    char p[64];
    for (size_t i = 0; i < sizeof ro / sizeof ro[0]; i++) {
        int fd = openat(pfd, ro[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue; /* not in this kernel */
        fd_path(fd, p);
        if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) != 0)
            die(efd, "cannot protect /proc/%s: %s", ro[i], strerror(errno));
        close(fd);
        fd = openat(pfd, ro[i], O_PATH | O_NOFOLLOW | O_CLOEXEC); /* the bind mount */
        fd_path(fd, p);
        if (fd < 0 || mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
            die(efd, "cannot make /proc/%s read-only: %s", ro[i], strerror(errno));
        close(fd);
    }
    for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++) {
        int fd = openat(pfd, masked[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        fd_path(fd, p);
        if (mount("/dev/null", p, NULL, MS_BIND, NULL) != 0)
            die(efd, "cannot hide /proc/%s: %s", masked[i], strerror(errno));
        close(fd);
    }
    close(pfd);
}

static void setup_dev(int efd, const char *root)
{
    mount_at(efd, root, "dev", "tmpfs", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k", "/dev");
    int dfd = walk(efd, root, "dev", 0); /* the fresh tmpfs: nothing of the app in it */
    char p[64];
    static const char *const nodes[] = {"null", "zero", "random", "urandom", "tty"};
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        char host[64];
        snprintf(host, sizeof host, "/dev/%s", nodes[i]);
        int fd = openat(dfd, nodes[i], O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd < 0)
            die(efd, "cannot create /dev/%s: %s", nodes[i], strerror(errno));
        close(fd);
        fd = openat(dfd, nodes[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        fd_path(fd, p);
        if (fd < 0 || mount(host, p, NULL, MS_BIND, NULL) != 0)
            die(efd, "cannot bind /dev/%s: %s", nodes[i], strerror(errno));
        close(fd);
    }
    static const char *const links[][2] = {{"fd", "/proc/self/fd"},
                                           {"stdin", "/proc/self/fd/0"},
                                           {"stdout", "/proc/self/fd/1"},
                                           {"stderr", "/proc/self/fd/2"}};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
        if (symlinkat(links[i][1], dfd, links[i][0]) != 0)
            die(efd, "cannot create /dev/%s: %s", links[i][0], strerror(errno));
    if (mkdirat(dfd, "shm", 01777) != 0)
        die(efd, "cannot create /dev/shm: %s", strerror(errno));
    close(dfd);
    mount_at(efd, root, "dev/shm", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", "/dev/shm");
}

static void setup_mounts(int efd, const struct ocb_sandbox_spec *s)
{
    char src[PATH_MAX];
    int have_proc = 0, have_dev = 0;
    for (size_t i = 0; i < s->stage->nmounts; i++) {
        const struct ocb_mount *m = &s->stage->mounts[i];
        const char *rel = m->target;
        while (*rel == '/')
            rel++;
        if (strcmp(m->type, "unionfs") == 0 && *rel == '\0')
            continue; /* the root itself */
        if (*rel == '\0')
            die(efd, "mount type \"%s\" at / is not supported by the SIM runtime", m->type);
        if (strcmp(m->type, "procfs") == 0) {
            mount_at(efd, s->root, rel, "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, "procfs");
            harden_proc(efd, s->root, rel);
            have_proc = 1;
        } else if (strcmp(m->type, "devfs") == 0) {
            if (strcmp(rel, "dev") != 0)
                die(efd, "devfs must be mounted at /dev, not %s", m->target);
            setup_dev(efd, s->root);
            have_dev = 1;
        } else if (strcmp(m->type, "hostfs") == 0) {
            if (m->source == NULL)
                die(efd, "hostfs mount at %s has no source", m->target);
            if (m->source[0] == '/')
                snprintf(src, sizeof src, "%s", m->source);
            else
                snprintf(src, sizeof src, "%s/%s", s->instance_dir, m->source);
            mount_at(efd, s->root, rel, src, NULL, MS_BIND | MS_REC, NULL, "hostfs");
        } else if (strcmp(m->type, "ramfs") == 0) {
            mount_at(efd, s->root, rel, "ramfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", "ramfs");
        } else {
            die(efd, "mount type \"%s\" at %s is not supported by the SIM runtime", m->type, m->target);
        }
    }
    /* Occlum always adds /proc and /dev. */
    if (!have_proc) {
        mount_at(efd, s->root, "proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, "procfs");
        harden_proc(efd, s->root, "proc");
    }
    if (!have_dev)
        setup_dev(efd, s->root);
}

static void set_limit(int efd, int res, const char *name, rlim_t soft, int set_hard)
{
    struct rlimit r;
    if (getrlimit(res, &r) != 0)
        die(efd, "getrlimit %s: %s", name, strerror(errno));
    if (r.rlim_max != RLIM_INFINITY && soft > r.rlim_max)
        soft = r.rlim_max; /* cannot raise a hard limit (no CAP_SYS_RESOURCE) */
    r.rlim_cur = soft;
    if (set_hard)
        r.rlim_max = soft;
    if (setrlimit(res, &r) != 0)
        die(efd, "setrlimit %s: %s", name, strerror(errno));
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
        die(efd, "prctl: %s", strerror(errno));
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        die(efd, "cannot make mounts private: %s", strerror(errno));
    /* The root must be a mount point for pivot_root: bind it onto itself (with what is below). */
    if (mount(s->root, s->root, NULL, MS_BIND | MS_REC, NULL) != 0)
        die(efd, "cannot bind the root FS: %s", strerror(errno));
    setup_mounts(efd, s);
    /* pivot_root, then detach the old root: nothing above the root FS is left in this mount
     * namespace, so a chroot break-out (the app is root in its user namespace and may chroot)
     * ends at the root FS. */
    if (chdir(s->root) != 0 || syscall(SYS_pivot_root, ".", ".") != 0 ||
        umount2(".", MNT_DETACH) != 0 || chdir("/") != 0)
        die(efd, "cannot make the root FS the root: %s", strerror(errno));
    /* The user namespace comes last: the mount namespace stays owned by the host's, so the
     * app (root with all capabilities of its own user namespace) cannot change its mounts.
     * The PAL writes the id maps: root inside is root outside. */
    if (unshare(CLONE_NEWUSER) != 0)
        die(efd, "cannot create the user namespace: %s", strerror(errno));
    char c;
    if (write(req_fd, "u", 1) != 1 || read(sync_fd, &c, 1) != 1)
        die(efd, "the PAL did not map the ids of the user namespace");
    close(req_fd);
    close(sync_fd);

    int sv[2] = {-1, -1};
    const int filter = s->limits.mmap_size || s->limits.nproc;
    if (filter && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        die(efd, "socketpair: %s", strerror(errno));
    /* Kept open: the app may cover /proc later, the count must not follow. */
    int procfd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (procfd < 0)
        die(efd, "cannot open /proc: %s", strerror(errno));
    if (ocb_chld_pipe_open() != 0)
        die(efd, "pipe: %s", strerror(errno));
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    pid_t pid = fork();
    if (pid < 0)
        die(efd, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* The app starts with no blocked signal, whatever the PAL's caller had blocked. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        close(status_fd);
        for (int i = 0; i < 3; i++)
            if (s->stdio[i] != i && dup2(s->stdio[i], i) < 0)
                die(efd, "cannot set up stdio: %s", strerror(errno));
        /* Only 0-2 survive the exec (the originals of the stdio descriptors included). */
        if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
            die(efd, "close_range: %s", strerror(errno));
        set_limit(efd, RLIMIT_STACK, "RLIMIT_STACK", s->limits.stack, 0);
        set_limit(efd, RLIMIT_DATA, "RLIMIT_DATA", s->limits.data, 0);
        set_limit(efd, RLIMIT_AS, "RLIMIT_AS", s->limits.as, 1);
        if (s->limits.nproc)
            set_limit(efd, RLIMIT_NPROC, "RLIMIT_NPROC", s->limits.nproc, 1);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
            die(efd, "prctl: %s", strerror(errno));
        if (filter) {
            int rc = ocb_rlemul_install(sv[1], s->limits.nproc != 0);
            if (rc != 0)
                die(efd, "cannot install the RLIMIT_DATA filter: %s", strerror(-rc));
        }
        execve(s->path, (char *const *)s->argv, (char *const *)s->envp);
        die(efd, "cannot execute %s: %s", s->path, strerror(errno));
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
