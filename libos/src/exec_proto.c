/* Framing helpers of the exec protocol (exec_proto.h). */
#include "exec_proto.h"

#include "ocb.h"
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int ocb_exec_sock_path(const char *instance, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    int n = snprintf(sa->sun_path, sizeof sa->sun_path, "%s/%s", instance, OCB_EXEC_SOCKET);
    return n > 0 && (size_t)n < sizeof sa->sun_path ? 0 : -1;
}

int ocb_exec_write_all(int fd, const void *buf, size_t n)
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

int ocb_exec_read_all(int fd, void *buf, size_t n)
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

int ocb_exec_send_u32(int fd, uint32_t v)
{
    uint8_t b[4];
    ocb_put_le32(b, v);
    return ocb_exec_write_all(fd, b, 4);
}

int ocb_exec_recv_u32(int fd, uint32_t *v)
{
    uint8_t b[4];
    if (ocb_exec_read_all(fd, b, 4) != 0)
        return -1;
    *v = ocb_le32(b);
    return 0;
}
