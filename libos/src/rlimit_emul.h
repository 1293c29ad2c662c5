/* RLIMIT_DATA as Occlum's heap limit (docs/runtime.md "Limits").
 *
 * Occlum limits a process's heap (default_heap_size, `ulimit -d`) separately from its mmap
 * area (default_mmap_size).  Linux has one limit, RLIMIT_DATA, over brk and private writable
 * mappings together.  The sandbox enforces RLIMIT_DATA = heap + mmap size, and presents it to
 * the app as the heap size: getrlimit/setrlimit/prlimit64 on RLIMIT_DATA go through a seccomp
 * user notification to the namespace's init, which adds or removes the mmap size.  So the
 * manual's `ulimit -Sd 40960` followed by a 40 MB allocation behaves as in Occlum. */
#ifndef OCB_RLIMIT_EMUL_H
#define OCB_RLIMIT_EMUL_H

#include <stdint.h>

/* In the app process (after PR_SET_NO_NEW_PRIVS): install the filter and pass its listener to
 * the init over the unix socket `sock`.  0 or -errno. */
int ocb_rlemul_install(int sock);

/* In the init: receive the listener fd sent by ocb_rlemul_install; -1 on failure. */
int ocb_rlemul_receive(int sock);

/* In the init: answer one notification on `fd` (call when it is readable). */
void ocb_rlemul_handle(int fd, uint64_t mmap_size);

#endif
