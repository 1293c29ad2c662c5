/* Helper threads that never take a process-directed signal.
 *
 * A signal sent to a process (kill(2): SIGTERM from occlum_pal_destroy or PDEATHSIG, ^C) is
 * delivered to any one thread that does not block it.  libfuse's main loop stops only when its
 * own thread runs the handler (its sem_wait is interrupted); if a helper thread of ours runs it
 * instead, the exit flag is set but nobody looks at it, and the server never ends.  So every
 * thread we create blocks all signals, as libfuse's own worker threads do. */
#ifndef OFS_THREAD_H
#define OFS_THREAD_H

#include <pthread.h>

/* pthread_create with every signal blocked in the new thread (the caller's mask is restored
 * before returning); the thread is named `name` (at most 15 characters, shown in
 * /proc/<pid>/task/<tid>/comm).  Returns pthread_create's result. */
int ofs_thread_start(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg,
                     const char *name);

#endif
