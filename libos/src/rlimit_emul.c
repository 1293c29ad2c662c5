/* See rlimit_emul.h. */
#include "rlimit_emul.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define ARG(n) (offsetof(struct seccomp_data, args) + 8 * (n))

int ocb_rlemul_install(int sock, int count_tasks)
{
    /* x86-64 only: getrlimit/setrlimit(resource, ...) and prlimit64(pid, resource, ...) with
     * resource == RLIMIT_DATA, and (count_tasks) the clone family go to the listener;
     * everything else is allowed.  Jump offsets count instructions after the jump. */
    const unsigned clone_nr = count_tasks ? SYS_clone : 0xffffffffu;
    const unsigned clone3_nr = count_tasks ? SYS_clone3 : 0xffffffffu;
    const unsigned fork_nr = count_tasks ? SYS_fork : 0xffffffffu;
    const unsigned vfork_nr = count_tasks ? SYS_vfork : 0xffffffffu;
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, clone_nr, 12, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, clone3_nr, 11, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, fork_nr, 10, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, vfork_nr, 9, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getrlimit, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_setrlimit, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_prlimit64, 3, 2),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG(0)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, RLIMIT_DATA, 4, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG(1)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, RLIMIT_DATA, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    int fd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (fd < 0)
        return -errno;
    char c = 'f';
    struct iovec iov = {&c, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    int rc = sendmsg(sock, &msg, 0) == 1 ? 0 : -errno;
    close(fd);
    return rc;
}

int ocb_rlemul_receive(int sock)
{
    char c;
    struct iovec iov = {&c, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
        return -1;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (cm == NULL || cm->cmsg_type != SCM_RIGHTS)
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    return fd;
}

static int mem_rw(pid_t pid, uint64_t addr, void *buf, size_t len, int write)
{
    struct iovec local = {buf, len}, remote = {(void *)(uintptr_t)addr, len};
    ssize_t n = write ? process_vm_writev(pid, &local, 1, &remote, 1, 0)
                      : process_vm_readv(pid, &local, 1, &remote, 1, 0);
    return n == (ssize_t)len ? 0 : -EFAULT;
}

static rlim_t to_heap(rlim_t v, uint64_t mmap_size)
{
    return v == RLIM_INFINITY ? v : (v > mmap_size ? v - mmap_size : 0);
}

static rlim_t to_data(rlim_t v, uint64_t mmap_size)
{
    return v == RLIM_INFINITY || v > RLIM_INFINITY - 1 - mmap_size ? RLIM_INFINITY : v + mmap_size;
}

/* getrlimit/setrlimit/prlimit64 on RLIMIT_DATA of `pid`, with heap <-> data translation. */
static int emulate(const struct seccomp_notif *n, uint64_t mmap_size)
{
    pid_t pid = (pid_t)n->pid, target = pid;
    uint64_t new_ptr = 0, old_ptr = 0;
    if (n->data.nr == SYS_getrlimit) {
        old_ptr = n->data.args[1];
    } else if (n->data.nr == SYS_setrlimit) {
        new_ptr = n->data.args[1];
    } else {
        target = n->data.args[0] ? (pid_t)n->data.args[0] : pid;
        new_ptr = n->data.args[2];
        old_ptr = n->data.args[3];
    }
    struct rlimit cur;
    if (prlimit(target, RLIMIT_DATA, NULL, &cur) != 0)
        return -errno;
    struct rlimit want;
    if (new_ptr) {
        if (mem_rw(pid, new_ptr, &want, sizeof want, 0) != 0)
            return -EFAULT;
        if (want.rlim_cur != RLIM_INFINITY && want.rlim_max != RLIM_INFINITY && want.rlim_cur > want.rlim_max)
            return -EINVAL;
    }
    if (old_ptr) {
        struct rlimit shown = {to_heap(cur.rlim_cur, mmap_size), to_heap(cur.rlim_max, mmap_size)};
        if (mem_rw(pid, old_ptr, &shown, sizeof shown, 1) != 0)
            return -EFAULT;
    }
    if (new_ptr) {
        struct rlimit set = {to_data(want.rlim_cur, mmap_size), to_data(want.rlim_max, mmap_size)};
        if (prlimit(target, RLIMIT_DATA, &set, NULL) != 0)
            return -errno;
    }
    return 0;
}

static int numeric(const char *n)
{
    if (*n == '\0')
        return 0;
    for (; *n; n++)
        if (*n < '0' || *n > '9')
            return 0;
    return 1;
}

uint64_t ocb_count_tasks(int procfd)
{
    uint64_t count = 0;
    int dfd = openat(procfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (d == NULL) {
        if (dfd >= 0)
            close(dfd);
        return 0;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!numeric(de->d_name) || strcmp(de->d_name, "1") == 0)
            continue;
        char path[300];
        snprintf(path, sizeof path, "%s/task", de->d_name);
        int tfd = openat(procfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *t = tfd >= 0 ? fdopendir(tfd) : NULL;
        if (t == NULL) {
            if (tfd >= 0)
                close(tfd);
            continue; /* it just exited */
        }
        struct dirent *te;
        while ((te = readdir(t)) != NULL)
            count += numeric(te->d_name);
        closedir(t);
    }
    closedir(d);
    return count;
}

void ocb_rlemul_handle(int fd, uint64_t mmap_size, int procfd, uint64_t max_tasks)
{
    struct seccomp_notif_sizes sz;
    if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sz) != 0)
        return;
    struct seccomp_notif *req = calloc(1, sz.seccomp_notif > sizeof *req ? sz.seccomp_notif : sizeof *req);
    struct seccomp_notif_resp *resp =
        calloc(1, sz.seccomp_notif_resp > sizeof *resp ? sz.seccomp_notif_resp : sizeof *resp);
    if (req == NULL || resp == NULL)
        goto out;
    if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, req) != 0)
        goto out;
    resp->id = req->id;
    resp->val = 0;
    int nr = req->data.nr;
    if (nr == SYS_clone || nr == SYS_clone3 || nr == SYS_fork || nr == SYS_vfork) {
        if (max_tasks && ocb_count_tasks(procfd) >= max_tasks) {
            resp->error = -EAGAIN; /* as fork/pthread_create report a task limit */
            resp->flags = 0;
        } else {
            resp->error = 0;
            resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        }
    } else {
        resp->error = emulate(req, mmap_size);
        resp->flags = 0;
    }
    ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, resp); /* ENOENT: the caller is gone */
out:
    free(req);
    free(resp);
}
