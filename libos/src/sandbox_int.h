/* Internal interface between the two halves of the sandbox: sandbox.c (the namespaces, the
 * init process, limits, signals) calls sandbox_mounts.c (the file system view it sets up);
 * both report failures with sandbox_die.c. */
#ifndef OCB_SANDBOX_INT_H
#define OCB_SANDBOX_INT_H

#include "sandbox.h"

/* Report a failure from inside the sandbox and exit (the PAL reads the message from fd). */
__attribute__((noreturn, format(printf, 2, 3))) void ocb_sandbox_die(int fd, const char *fmt,
                                                                      ...);

/* In the new mount namespace: mount the stage's procfs, devfs, hostfs and ramfs under
 * s->root (targets opened without following symlinks), adding /proc (hardened) and /dev
 * when the stage has none.  Dies on failure. */
void ocb_sandbox_mounts(int efd, const struct ocb_sandbox_spec *s);

#endif
