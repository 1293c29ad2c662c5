/* Occlum PAL API, version 2 (the interface of Occlum's src/pal/include/occlum_pal_api.h),
 * implemented by libocclum-pal.so for the SIM runtime.  Declarations follow Occlum's names and
 * structs so that programs written against Occlum's PAL link against this library. */
#ifndef OCCLUM_PAL_API_H
#define OCCLUM_PAL_API_H

#ifdef __cplusplus
extern "C" {
#endif

#define OCCLUM_PAL_VERSION 2

/* The version of this PAL API (OCCLUM_PAL_VERSION). */
int occlum_pal_get_version(void);

struct occlum_pal_attr {
    /* Occlum instance directory (default "."). */
    const char *instance_dir;
    /* "off", "error", "warn", "info", "debug" or "trace" (default: OCCLUM_LOG_LEVEL, else "warn"). */
    const char *log_level;
};

#define OCCLUM_PAL_ATTR_INITVAL { .instance_dir = ".", .log_level = NULL }

/* Verified boot of the instance (docs/runtime.md): LibOS signature and measurement, protected
 * config, init FS and init stage, root FS; then the root FS is mounted.  0 or -1 (the reason
 * was printed as one line on stderr). */
int occlum_pal_init(const struct occlum_pal_attr *attr);

struct occlum_stdio_fds {
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
};

struct occlum_pal_create_process_args {
    /* Absolute path of the program inside the instance; must be under an entry point. */
    const char *path;
    /* NULL-terminated argv (argv[0] included). */
    const char **argv;
    /* NULL-terminated host environment; only the config's untrusted names are taken. */
    const char **env;
    /* stdio of the new process (NULL: the caller's 0, 1, 2). */
    const struct occlum_stdio_fds *stdio;
    /* Out: the process id to pass to occlum_pal_exec / occlum_pal_kill. */
    int *pid;
};

int occlum_pal_create_process(struct occlum_pal_create_process_args *args);

struct occlum_pal_exec_args {
    int pid;
    /* Out: the wait(2) status of the process. */
    int *exit_value;
};

/* Wait for a process created by occlum_pal_create_process. */
int occlum_pal_exec(struct occlum_pal_exec_args *args);

/* Send a signal to a process (pid -1: every process).  Occlum accepts SIGKILL and SIGTERM; this
 * PAL forwards any signal (occlum-run passes signals through). */
int occlum_pal_kill(int pid, int sig);

/* Stop every process, unmount the root FS and release the instance. */
int occlum_pal_destroy(void);

/* Host files Occlum passes into the LibOS (resolv.conf, hosts, hostname); kept for source
 * compatibility, unused in SIM mode (the app sees the host's files only through hostfs). */
struct host_file_buffer_t {
    const char *resolv_conf_buf;
    unsigned int resolv_conf_buf_size;
    const char *hosts_buf;
    unsigned int hosts_buf_size;
    const char *hostname_buf;
    unsigned int hostname_buf_size;
};

#ifdef __cplusplus
}
#endif

#endif
