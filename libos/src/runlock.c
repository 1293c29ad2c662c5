/* The runtime lock (runlock.h). */
#include "runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static int lock_path(const char *instance, char *out, size_t n)
{
    int k = snprintf(out, n, "%s/%s", instance, OCB_RUN_LOCK);
    if (k < 0 || (size_t)k >= n) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

int ocb_run_lock_take(const char *instance)
{
    char p[PATH_MAX];
    if (lock_path(instance, p, sizeof p) != 0)
        return -1;
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    for (int i = 0;; i++) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return fd;
        if (errno == EINTR)
            continue;
        if (errno != EWOULDBLOCK || i == 10)
            break;
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

int ocb_run_lock_held(const char *instance)
{
    char p[PATH_MAX];
    if (lock_path(instance, p, sizeof p) != 0)
        return -1;
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO there must not block */
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    int held;
    while ((held = flock(fd, LOCK_SH | LOCK_NB)) != 0 && errno == EINTR)
        ;
    int saved = errno;
    close(fd); /* drops the shared lock at once */
    if (held == 0)
        return 0;
    errno = saved;
    return saved == EWOULDBLOCK ? 1 : -1;
}
