/* Running one program in fresh user, mount and pid namespaces, chrooted into a prepared root
 * (the FUSE union), with /proc, /dev and the configured hostfs/ramfs mounts, limits, env and
 * stdio (docs/runtime.md "Sandbox"). */
#ifndef OCB_SANDBOX_H
#define OCB_SANDBOX_H

#include "conf.h"

#include <sched.h>
#include <sys/resource.h>
#include <sys/types.h>

struct ocb_limits {
    rlim_t stack;   /* RLIMIT_STACK soft: process.default_stack_size */
    rlim_t data;    /* RLIMIT_DATA soft: default_heap_size + default_mmap_size */
    rlim_t mmap_size; /* shown to the app as RLIMIT_DATA = heap (rlimit_emul.h); 0: off */
    rlim_t as;      /* RLIMIT_AS soft and hard: resource_limits.user_space_max_size */
    rlim_t nproc;   /* RLIMIT_NPROC soft and hard: max_num_of_threads (0: unchanged) */
};

/* occlum run --cpus N reaches the PAL as OCCLUM_CPUS=N (as the KSS values do, identity.h). */
#define OCB_ENV_CPUS "OCCLUM_CPUS"

struct ocb_sandbox_spec {
    const char *root;            /* directory to chroot into */
    const char *instance_dir;    /* hostfs sources are relative to it */
    const struct ocb_stage *stage; /* the mounts to add (procfs, devfs, hostfs, ramfs) */
    const char *path;
    const char *const *argv;
    const char *const *envp;
    int stdio[3];
    struct ocb_limits limits;
    const cpu_set_t *cpus;       /* the CPUs of the program (--cpus), NULL: unchanged */
    const uint8_t *report;       /* the simulated report body (identity.h) for /dev/attestation */
    const char *identity_json;   /* its JSON form; both NULL: no /dev/attestation */
    int log_level;               /* OCB_LOG_*: trace logs every mount and every exec */
};

struct ocb_proc {
    pid_t init_pid;  /* pid 1 of the new pid namespace, in our namespace */
    int status_fd;   /* the init writes the app's wait status here */
    int done;
    int status;
};

/* Called right before the sandbox's first process is cloned: `occlum gdb` breaks here to
 * follow the clone (and then the program) instead of the runtime (docs/runtime.md "gdb"). */
void ocb_gdb_enter_sandbox(void);

/* Start the program.  Returns 0 once it has exec'd; -1 with a message if the sandbox could not
 * be set up or the program could not be executed (nothing of the app has run then). */
int ocb_sandbox_spawn(const struct ocb_sandbox_spec *spec, struct ocb_proc *out,
                      struct ocb_err *e);

/* Wait for the program; *status is its wait(2) status. */
int ocb_sandbox_wait(struct ocb_proc *p, int *status);

/* Deliver a signal to the program (through the namespace's init, which forwards it). */
int ocb_sandbox_kill(struct ocb_proc *p, int sig);

#endif
