/* Error reporting and small helpers (ocb.h). */
#include "ocb.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

int ocb_fail(struct ocb_err *e, const char *fmt, ...)
{
    if (e != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int ocb_read_file(const char *path, size_t max_size, uint8_t **data, size_t *size,
                  struct ocb_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ocb_fail(e, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ocb_fail(e, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_size) {
        close(fd);
        return ocb_fail(e, "%s: too large (%lld bytes)", path, (long long)st.st_size);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        close(fd);
        return ocb_fail(e, "%s: out of memory", path);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return ocb_fail(e, "%s: read failed: %s", path, r < 0 ? strerror(errno) : "short file");
        }
        got += (size_t)r;
    }
    close(fd);
    *data = buf;
    *size = n;
    return 0;
}

void ocb_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static const char *const level_names[] = {"off", "error", "warn", "info", "debug", "trace"};

int ocb_log_level(const char *name)
{
    if (name == NULL || name[0] == '\0')
        return OCB_LOG_DEFAULT;
    for (int i = 0; i <= OCB_LOG_TRACE; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    if (strcasecmp(name, "warning") == 0)
        return OCB_LOG_WARN;
    return OCB_LOG_DEFAULT;
}

const char *ocb_log_level_name(int level)
{
    return level >= 0 && level <= OCB_LOG_TRACE ? level_names[level] : "log";
}
