/* The wire protocol between `occlum exec`/`occlum stop` (client.c) and the server of a
 * started instance (server.c).  SOCK_STREAM on run/occlum_exec.sock, little-endian u32 words:
 *   client -> server: "OCBX", version 1, kind (1 exec, 2 stop), argc, envc, bytes; then the
 *                     NUL-terminated strings (path, argv..., env...), with stdin/stdout/stderr
 *                     attached to the header as SCM_RIGHTS; afterwards, u32 signal numbers.
 *   server -> client: u32 1 = started; u32 2 + u32 length + message = cannot start;
 *                     u32 3 + i32 wait status = the program ended; u32 4 = stopped. */
#ifndef OCB_EXEC_PROTO_H
#define OCB_EXEC_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

#define OCB_EXEC_MAGIC 0x5842434fu /* "OCBX" */
#define OCB_EXEC_KIND_EXEC 1
#define OCB_EXEC_KIND_STOP 2
#define OCB_EXEC_MAX_REQ (1u << 20)

enum { OCB_EXEC_R_STARTED = 1, OCB_EXEC_R_FAILED = 2, OCB_EXEC_R_EXITED = 3, OCB_EXEC_R_STOPPED = 4 };

/* The socket address <instance>/run/occlum_exec.sock; -1 if it does not fit sun_path. */
int ocb_exec_sock_path(const char *instance, struct sockaddr_un *sa);
/* Whole buffers; -1 on EOF or error (EINTR retried; sends never raise SIGPIPE). */
int ocb_exec_write_all(int fd, const void *buf, size_t n);
int ocb_exec_read_all(int fd, void *buf, size_t n);
int ocb_exec_send_u32(int fd, uint32_t v);
int ocb_exec_recv_u32(int fd, uint32_t *v);

#endif
