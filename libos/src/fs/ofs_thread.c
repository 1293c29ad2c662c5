/* Helper threads with every signal blocked (ofs_thread.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ofs_thread.h"

#include <signal.h>

int ofs_thread_start(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg,
                     const char *name) {
    sigset_t all, old;
    sigfillset(&all);
    /* The new thread inherits the mask in force at pthread_create: there is no window in
     * which it could take a signal before blocking them itself. */
    int rc = pthread_sigmask(SIG_BLOCK, &all, &old);
    if (rc) return rc;
    rc = pthread_create(t, attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0 && name) pthread_setname_np(*t, name); /* cosmetic: a failure does not matter */
    return rc;
}
