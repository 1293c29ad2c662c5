/* See rlimit_emul.h. */
#include "rlimit_emul.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define ARG(n) (offsetof(struct seccomp_data, args) + 8 * (n))

int ocb_rlemul_install(int sock)
{
    /* x86-64 only: getrlimit/setrlimit(resource, ...) and prlimit64(pid, resource, ...) with
     * resource == RLIMIT_DATA go to the listener; everything else is allowed. */
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
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

void ocb_rlemul_handle(int fd, uint64_t mmap_size)
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
    int rc = emulate(req, mmap_size);
    resp->id = req->id;
    resp->error = rc;
    resp->val = 0;
    resp->flags = 0;
    ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, resp); /* ENOENT: the caller is gone */
out:
    free(req);
    free(resp);
}
