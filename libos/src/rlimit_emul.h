/* RLIMIT_DATA as Occlum's heap limit (docs/runtime.md "Limits").
 *
 * Occlum limits a process's heap (default_heap_size, `ulimit -d`) separately from its mmap
 * area (default_mmap_size).  Linux has one limit, RLIMIT_DATA, over brk and private writable
 * mappings together.  The sandbox enforces RLIMIT_DATA = heap + mmap size, and presents it to
 * the app as the heap size: getrlimit/setrlimit/prlimit64 on RLIMIT_DATA go through a seccomp
 * user notification to the namespace's init, which adds or removes the mmap size.  So the
 * manual's `ulimit -Sd 40960` followed by a 40 MB allocation behaves as in Occlum.
 *
 * The same filter sends clone/clone3/fork/vfork to the init when max_num_of_threads is set:
 * it counts the tasks of the pid namespace (all threads of all processes, its own pid 1
 * excepted) and lets the call go on only while fewer than the maximum exist, else the caller
 * gets EAGAIN.  This is the cgroup-free stand-in for Occlum's fixed number of TCSs: the
 * kernel does not apply RLIMIT_NPROC to (host) root.
 *
 * With `occlum run --cpus N` it also sends sched_setaffinity: the init applies the requested
 * mask intersected with its own (the N CPUs), so the program cannot widen it (EINVAL when
 * nothing is left).  At OCCLUM_LOG_LEVEL=trace it sends execve/execveat, which the init logs
 * ("exec [pid] path") and lets go on. */
#ifndef OCB_RLIMIT_EMUL_H
#define OCB_RLIMIT_EMUL_H

#include <stdint.h>
#include <sys/types.h>

#define OCB_FILTER_TASKS 1u    /* the clone family (max_num_of_threads) */
#define OCB_FILTER_AFFINITY 2u /* sched_setaffinity (--cpus) */
#define OCB_FILTER_EXEC 4u     /* execve, execveat (trace) */

/* In the app process (after PR_SET_NO_NEW_PRIVS): install the filter for RLIMIT_DATA and
 * `what` (OCB_FILTER_*) and pass its listener to the init over the unix socket `sock`.
 * 0 or -errno. */
int ocb_rlemul_install(int sock, unsigned what);

/* In the init: receive the listener fd sent by ocb_rlemul_install; -1 on failure. */
int ocb_rlemul_receive(int sock);

/* In the init: answer one notification on `fd` (call when it is readable).  procfd is an
 * open directory of the namespace's /proc (for counting tasks), max_tasks 0 = no limit. */
void ocb_rlemul_handle(int fd, uint64_t mmap_size, int procfd, uint64_t max_tasks);

/* How ocb_rlemul_handle logs an exec (at trace): a line without its newline. */
void ocb_rlemul_log_exec(pid_t pid, const char *path);

/* Tasks (threads) in the pid namespace whose /proc is procfd, pid 1 excepted. */
uint64_t ocb_count_tasks(int procfd);

#endif
