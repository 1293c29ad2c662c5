/* ocb_sandbox_die (sandbox_int.h): how both halves of the sandbox report a failure from
 * inside it.  On its own so that sandbox.c -> sandbox_mounts.c -> sandbox_die.c form no cycle. */
#include "sandbox_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

void ocb_sandbox_die(int fd, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0 && write(fd, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1) < 0)
        _exit(126);
    _exit(126);
}
