/* The SIGCHLD self-pipe of the runtime's wait loops (the sandbox's init and the server's
 * per-client process): the handler writes one byte into a non-blocking pipe, so a poll()
 * that also watches other descriptors wakes up when a child changes state. */
#ifndef OCB_CHLDPIPE_H
#define OCB_CHLDPIPE_H

/* Create the pipe (close-on-exec, non-blocking).  0, or -1 with errno set. */
int ocb_chld_pipe_open(void);

/* The SIGCHLD handler to install (async-signal-safe, keeps errno). */
void ocb_chld_on_signal(int sig);

/* The read end, to poll for POLLIN. */
int ocb_chld_pipe_fd(void);

/* Empty the pipe after poll() reported it readable. */
void ocb_chld_pipe_drain(void);

#endif
