/* The sandbox's file system view (sandbox_int.h): the stage's mounts under the root, with
 * every target opened without following symlinks, a minimal /dev and a hardened /proc. */
#include "sandbox_int.h"

#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

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
        ocb_sandbox_die(efd, "cannot open the root FS: %s", strerror(errno));
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", rel);
    for (char *save = NULL, *comp = strtok_r(buf, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
        if (strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0)
            ocb_sandbox_die(efd, "mount target %s: '.' and '..' are not allowed", rel);
        int next = open_dir(cur, comp);
        if (next < 0 && errno == ENOENT && create) {
            if (mkdirat(cur, comp, 0755) != 0 && errno != EEXIST)
                ocb_sandbox_die(efd, "cannot create mount target /%s: %s", rel, strerror(errno));
            next = open_dir(cur, comp);
        }
        if (next < 0) {
            int err = errno;
            struct stat st;
            if (fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                ocb_sandbox_die(efd, "mount target /%s: a symbolic link in the root FS (refused)", rel);
            ocb_sandbox_die(efd, "mount target /%s: %s", rel, strerror(err));
        }
        close(cur);
        cur = next;
    }
    return cur;
}

static void fd_path(int fd, char out[64]) { snprintf(out, 64, "/proc/self/fd/%d", fd); }

static int trace_mounts; /* OCCLUM_LOG_LEVEL=trace: one line per mount */

/* mount(source, <root>/<rel>, ...) through a verified descriptor of the target. */
static void mount_at(int efd, const char *root, const char *rel, const char *src, const char *type,
                     unsigned long flags, const char *data, const char *what)
{
    int fd = walk(efd, root, rel, 1);
    char p[64];
    fd_path(fd, p);
    if (mount(src, p, type, flags, data) != 0)
        ocb_sandbox_die(efd, "cannot mount %s at /%s: %s", what, rel, strerror(errno));
    close(fd);
    if (trace_mounts)
        fprintf(stderr, "occlum: trace: mount %s at /%s%s%s\n", what, rel,
                flags & MS_BIND ? " from " : "", flags & MS_BIND ? src : "");
}

/* /dev/attestation: the simulated report of the enclave (identity.h), read-only: a tmpfs of
 * its own, remounted read-only once written (the program cannot remount: its user namespace
 * does not own the mount namespace). */
static void write_at(int efd, int dfd, const char *name, const void *data, size_t n)
{
    int fd = openat(dfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0444);
    if (fd < 0 || write(fd, data, n) != (ssize_t)n || close(fd) != 0)
        ocb_sandbox_die(efd, "cannot write /dev/attestation/%s: %s", name, strerror(errno));
}

static void setup_attestation(int efd, const char *root, const struct ocb_sandbox_spec *s)
{
    mount_at(efd, root, "dev/attestation", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
             "mode=0555,size=16k", "the simulated report");
    int afd = walk(efd, root, "dev/attestation", 0);
    write_at(efd, afd, "report_body", s->report, OCB_REPORT_BODY_SIZE);
    write_at(efd, afd, "identity.json", s->identity_json, strlen(s->identity_json));
    char p[64];
    fd_path(afd, p);
    if (mount(NULL, p, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
        ocb_sandbox_die(efd, "cannot make /dev/attestation read-only: %s", strerror(errno));
    close(afd);
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
            ocb_sandbox_die(efd, "cannot protect /proc/%s: %s", ro[i], strerror(errno));
        close(fd);
        fd = openat(pfd, ro[i], O_PATH | O_NOFOLLOW | O_CLOEXEC); /* the bind mount */
        fd_path(fd, p);
        if (fd < 0 || mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
            ocb_sandbox_die(efd, "cannot make /proc/%s read-only: %s", ro[i], strerror(errno));
        close(fd);
    }
    for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++) {
        int fd = openat(pfd, masked[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        fd_path(fd, p);
        if (mount("/dev/null", p, NULL, MS_BIND, NULL) != 0)
            ocb_sandbox_die(efd, "cannot hide /proc/%s: %s", masked[i], strerror(errno));
        close(fd);
    }
    close(pfd);
}

static void setup_dev(int efd, const char *root, const struct ocb_sandbox_spec *s)
{
    mount_at(efd, root, "dev", "tmpfs", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k", "devfs (tmpfs)");
    int dfd = walk(efd, root, "dev", 0); /* the fresh tmpfs: nothing of the app in it */
    char p[64];
    static const char *const nodes[] = {"null", "zero", "random", "urandom", "tty"};
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        char host[64];
        snprintf(host, sizeof host, "/dev/%s", nodes[i]);
        int fd = openat(dfd, nodes[i], O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd < 0)
            ocb_sandbox_die(efd, "cannot create /dev/%s: %s", nodes[i], strerror(errno));
        close(fd);
        fd = openat(dfd, nodes[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        fd_path(fd, p);
        if (fd < 0 || mount(host, p, NULL, MS_BIND, NULL) != 0)
            ocb_sandbox_die(efd, "cannot bind /dev/%s: %s", nodes[i], strerror(errno));
        close(fd);
    }
    static const char *const links[][2] = {{"fd", "/proc/self/fd"},
                                           {"stdin", "/proc/self/fd/0"},
                                           {"stdout", "/proc/self/fd/1"},
                                           {"stderr", "/proc/self/fd/2"}};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
        if (symlinkat(links[i][1], dfd, links[i][0]) != 0)
            ocb_sandbox_die(efd, "cannot create /dev/%s: %s", links[i][0], strerror(errno));
    if (mkdirat(dfd, "shm", 01777) != 0)
        ocb_sandbox_die(efd, "cannot create /dev/shm: %s", strerror(errno));
    close(dfd);
    mount_at(efd, root, "dev/shm", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", "tmpfs");
    if (s->report != NULL && s->identity_json != NULL)
        setup_attestation(efd, root, s);
}

void ocb_sandbox_mounts(int efd, const struct ocb_sandbox_spec *s)
{
    char src[PATH_MAX];
    int have_proc = 0, have_dev = 0;
    trace_mounts = s->log_level >= OCB_LOG_TRACE;
    for (size_t i = 0; i < s->stage->nmounts; i++) {
        const struct ocb_mount *m = &s->stage->mounts[i];
        const char *rel = m->target;
        while (*rel == '/')
            rel++;
        if (strcmp(m->type, "unionfs") == 0 && *rel == '\0')
            continue; /* the root itself */
        if (*rel == '\0')
            ocb_sandbox_die(efd, "mount type \"%s\" at / is not supported by the SIM runtime", m->type);
        if (strcmp(m->type, "procfs") == 0) {
            mount_at(efd, s->root, rel, "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, "procfs");
            harden_proc(efd, s->root, rel);
            have_proc = 1;
        } else if (strcmp(m->type, "devfs") == 0) {
            if (strcmp(rel, "dev") != 0)
                ocb_sandbox_die(efd, "devfs must be mounted at /dev, not %s", m->target);
            setup_dev(efd, s->root, s);
            have_dev = 1;
        } else if (strcmp(m->type, "hostfs") == 0) {
            if (m->source == NULL)
                ocb_sandbox_die(efd, "hostfs mount at %s has no source", m->target);
            if (m->source[0] == '/')
                snprintf(src, sizeof src, "%s", m->source);
            else
                snprintf(src, sizeof src, "%s/%s", s->instance_dir, m->source);
            mount_at(efd, s->root, rel, src, NULL, MS_BIND | MS_REC, NULL, "hostfs");
        } else if (strcmp(m->type, "ramfs") == 0) {
            mount_at(efd, s->root, rel, "ramfs", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", "ramfs");
        } else {
            ocb_sandbox_die(efd, "mount type \"%s\" at %s is not supported by the SIM runtime", m->type, m->target);
        }
    }
    /* Occlum always adds /proc and /dev. */
    if (!have_proc) {
        mount_at(efd, s->root, "proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, "procfs");
        harden_proc(efd, s->root, "proc");
    }
    if (!have_dev)
        setup_dev(efd, s->root, s);
}
