/* The long-lived form of the PAL behind `occlum start / exec / stop` (docs/runtime.md):
 * a server on the Unix socket run/occlum_exec.sock of a booted instance, and its client. */
#ifndef OCB_SERVER_H
#define OCB_SERVER_H

#define OCB_EXEC_SOCKET "run/occlum_exec.sock"

/* Boot the instance (occlum_pal_init) and serve until `stop`.  ready_fd > 0 gets one byte once
 * the socket accepts connections.  Returns the process exit status. */
int ocb_serve(const char *instance, int ready_fd);

/* Run path/argv in the served instance with our stdio and environment; signals sent to us are
 * passed on.  Returns occlum-run's exit status (127: cannot start; 1: no server). */
int ocb_client_exec(const char *instance, const char *path, char **argv);

/* Ask the server to stop (kills what still runs); returns 0 once it has gone. */
int ocb_client_stop(const char *instance);

#endif
