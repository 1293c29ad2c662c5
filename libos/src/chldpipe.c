/* The SIGCHLD self-pipe (chldpipe.h). */
#include "chldpipe.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

static int chld_pipe[2] = {-1, -1};

int ocb_chld_pipe_open(void)
{
    return pipe2(chld_pipe, O_CLOEXEC | O_NONBLOCK);
}

void ocb_chld_on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    if (write(chld_pipe[1], "c", 1) < 0) { /* full: a wake-up is pending anyway */
    }
    errno = saved;
}

int ocb_chld_pipe_fd(void)
{
    return chld_pipe[0];
}

void ocb_chld_pipe_drain(void)
{
    char buf[64];
    while (read(chld_pipe[0], buf, sizeof buf) > 0)
        ;
}
