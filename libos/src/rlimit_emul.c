/* See rlimit_emul.h. */
#include "rlimit_emul.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
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

/* Append one instruction; the caller sized the array for the longest program. */
#define EMIT(insn) (f[n++] = (struct sock_filter)insn)

int ocb_rlemul_install(int sock, unsigned what)
{
    /* x86-64 only: getrlimit/setrlimit(resource, ...) and prlimit64(pid, resource, ...) with
     * resource == RLIMIT_DATA always go to the listener; with OCB_FILTER_TASKS the clone
     * family, with OCB_FILTER_AFFINITY sched_setaffinity, with OCB_FILTER_EXEC execve and
     * execveat too; everything else is allowed.  Jump offsets count instructions after the
     * jump: the program ends with ALLOW, the two argument checks, and NOTIFY. */
    unsigned nrs[8], k = 0;
    if (what & OCB_FILTER_TASKS) {
        nrs[k++] = SYS_clone;
        nrs[k++] = SYS_clone3;
        nrs[k++] = SYS_fork;
        nrs[k++] = SYS_vfork;
    }
    if (what & OCB_FILTER_AFFINITY)
        nrs[k++] = SYS_sched_setaffinity;
    if (what & OCB_FILTER_EXEC) {
        nrs[k++] = SYS_execve;
        nrs[k++] = SYS_execveat;
    }
    struct sock_filter f[32];
    unsigned n = 0;
    EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
    EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
    EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
    /* Each jump to NOTIFY skips the jumps after it and the 9 instructions before NOTIFY. */
    for (unsigned i = 0; i < k; i++)
        EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nrs[i], (uint8_t)(k - 1 - i + 9), 0));
    EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getrlimit, 3, 0)); /* to LD arg0 */
    EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_setrlimit, 2, 0));
    EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_prlimit64, 4, 0)); /* to LD arg1 */
    EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG(0)));
    EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, RLIMIT_DATA, 3, 0)); /* to NOTIFY */
    EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    EMIT(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG(1)));
    EMIT(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, RLIMIT_DATA, 0, 1));
    EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF));
    EMIT(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    struct sock_fprog prog = {.len = (unsigned short)n, .filter = f};
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

/* sched_setaffinity(pid, len, mask) of the caller: applied by the init with the mask limited to
 * the init's own CPUs (those of --cpus), so that the program cannot leave them. */
static int limit_affinity(const struct seccomp_notif *n)
{
    pid_t target = n->data.args[0] ? (pid_t)n->data.args[0] : (pid_t)n->pid;
    size_t len = (size_t)n->data.args[1];
    cpu_set_t want, mine;
    CPU_ZERO(&want);
    if (len == 0)
        return -EINVAL;
    if (mem_rw((pid_t)n->pid, n->data.args[2], &want, len < sizeof want ? len : sizeof want, 0) != 0)
        return -EFAULT;
    if (sched_getaffinity(0, sizeof mine, &mine) != 0)
        return -errno;
    CPU_AND(&want, &want, &mine);
    if (CPU_COUNT(&want) == 0)
        return -EINVAL; /* as the kernel answers a mask with none of the allowed CPUs */
    return sched_setaffinity(target, sizeof want, &want) == 0 ? 0 : -errno;
}

/* execve(path, ...) / execveat(dirfd, path, ...): log the path, let the call go on. */
static void log_exec(const struct seccomp_notif *n)
{
    uint64_t addr = n->data.nr == SYS_execve ? n->data.args[0] : n->data.args[1];
    char path[512];
    size_t got = 0;
    /* Page by page: a string near the end of a mapping must not fail the whole read. */
    while (got < sizeof path - 1) {
        size_t chunk = 64;
        if (chunk > sizeof path - 1 - got)
            chunk = sizeof path - 1 - got;
        if (mem_rw((pid_t)n->pid, addr + got, path + got, chunk, 0) != 0)
            break;
        if (memchr(path + got, '\0', chunk) != NULL) {
            got += chunk;
            break;
        }
        got += chunk;
    }
    path[got] = '\0';
    ocb_rlemul_log_exec((pid_t)n->pid, got ? path : "?");
}

void ocb_rlemul_log_exec(pid_t pid, const char *path)
{
    char line[600];
    int len = snprintf(line, sizeof line, "occlum: trace: exec [pid %d] %s\n", (int)pid, path);
    if (len > 0 && write(2, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1) < 0)
        return;
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
    } else if (nr == SYS_execve || nr == SYS_execveat) {
        log_exec(req);
        resp->error = 0;
        resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    } else if (nr == SYS_sched_setaffinity) {
        resp->error = limit_affinity(req);
        resp->flags = 0;
    } else {
        resp->error = emulate(req, mmap_size);
        resp->flags = 0;
    }
    ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, resp); /* ENOENT: the caller is gone */
out:
    free(req);
    free(resp);
}
