/* The runtime lock of an instance, run/.runtime.lock (docs/runtime.md, "Instance states").
 *
 * An flock held while a runtime (occlum run, the occlum start server, occlum mount) serves
 * the instance: the writable layer has a single writer.  The kernel drops it when the last
 * process holding it ends, so a crashed server leaves no stale lock; whether a runtime is
 * alive is asked of the lock, never of the socket file's existence. */
#ifndef OCB_RUNLOCK_H
#define OCB_RUNLOCK_H

#define OCB_RUN_LOCK "run/.runtime.lock"

/* Take the lock of the instance directory `instance` (LOCK_EX, O_CLOEXEC); the descriptor,
 * or -1 with errno EWOULDBLOCK when a runtime holds it (other errno: cannot open).  A query
 * (ocb_run_lock_held) holds a shared lock for a few microseconds, so a busy lock is tried
 * again for up to 50 ms before it counts as held. */
int ocb_run_lock_take(const char *instance);

/* 1 when a runtime holds the lock, 0 when none does (or there is no lock file), -1 when it
 * cannot be told (errno set).  Never blocks. */
int ocb_run_lock_held(const char *instance);

#endif
