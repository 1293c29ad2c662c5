/* libocclum-pal.so: the Occlum PAL API v2 for the SIM runtime (docs/runtime.md).
 *
 * occlum_pal_init performs the verified boot in order, each failure one line naming the
 * artifact, before any user code runs:
 *   (a) build/lib/libocclum-libos.signed.so: SIGSTRUCT signature, measurement replay, conf MAC
 *       read through the measured entry point (verify.c);
 *   (b) build/.Occlum_sys.json.protected against that conf MAC (conf.c);
 *   (c) the init FS against its MAC from the config, then the init stage: its
 *       /etc/image_config.json and the image key (initfs /etc/image_key, else the file named by
 *       OCCLUM_IMAGE_KEY_FILE) (initstage.c);
 *   (d) the root FS image against its MAC from the config;
 * then it mounts the root FS union (rtfs's ofs_serve, in a child process) in a private mount
 * namespace.  occlum_pal_create_process checks the entry points and starts the program in the
 * sandbox (sandbox.c). */
#include "occlum_pal_api.h"

#include "conf.h"
#include "identity.h"
#include "image.h"
#include "initstage.h"
#include "runlock.h"
#include "ofs.h"
#include "sandbox.h"
#include "verify.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 64

static struct {
    int inited;
    char inst[PATH_MAX - 512]; /* leaves room for the paths derived from it */
    char mnt[PATH_MAX];
    int lock_fd;
    struct ocb_libos libos;
    struct ocb_config conf;
    struct ocb_init_result init;
    pid_t fs_pid;
    int log_level; /* OCB_LOG_OFF .. OCB_LOG_TRACE */
    struct ocb_identity identity;
    uint8_t report[OCB_REPORT_BODY_SIZE];
    char identity_json[1024];
    cpu_set_t cpus; /* occlum run --cpus N: the first N CPUs we may use */
    int ncpus;      /* 0: no limit */
    struct {
        int used;
        struct ocb_proc proc;
    } procs[MAX_PROCS];
} g = {.lock_fd = -1};

static void report(const struct ocb_err *e)
{
    fprintf(stderr, "occlum: %s\n", e->msg);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void info(const char *fmt, const char *arg)
{
    static double t0;
    if (g.log_level >= OCB_LOG_INFO) {
        double t = now_ms();
        if (t0 == 0)
            t0 = t;
        fprintf(stderr, "occlum: [%7.2f ms] ", t - t0);
        fprintf(stderr, fmt, arg);
        fputc('\n', stderr);
    }
}

int occlum_pal_get_version(void) { return OCCLUM_PAL_VERSION; }

/* Messages at or above `level` (ocb.h) go to stderr as "occlum: <level>: ...". */
static void logf_at(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_at(int level, const char *fmt, ...)
{
    if (g.log_level < level)
        return;
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "occlum: %s: %s\n", ocb_log_level_name(level), line);
}

/* OCCLUM_CPUS=N (occlum run --cpus N): the first N CPUs of those this process may use. */
static int parse_cpus(const char *text, struct ocb_err *e)
{
    cpu_set_t avail;
    CPU_ZERO(&avail);
    if (sched_getaffinity(0, sizeof avail, &avail) != 0)
        return ocb_fail(e, "sched_getaffinity: %s", strerror(errno));
    int have = CPU_COUNT(&avail);
    char *end;
    errno = 0;
    long n = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno != 0 || n < 1 || n > have || text[0] == '+' ||
        text[0] == ' ')
        return ocb_fail(e, "OCCLUM_CPUS (--cpus): \"%.40s\" is not a number of CPUs from 1 to %d "
                           "(the CPUs this process may use)", text, have);
    CPU_ZERO(&g.cpus);
    int taken = 0;
    for (int c = 0; c < CPU_SETSIZE && taken < n; c++)
        if (CPU_ISSET(c, &avail)) {
            CPU_SET(c, &g.cpus);
            taken++;
        }
    g.ncpus = (int)n;
    return 0;
}

static int inst_path(char *out, size_t n, const char *rel, struct ocb_err *e)
{
    while (rel[0] == '.' && rel[1] == '/')
        rel += 2;
    if (rel[0] == '/')
        return ocb_fail(e, "%s: config paths must be relative to the instance", rel);
    if (snprintf(out, n, "%s/%s", g.inst, rel) >= (int)n)
        return ocb_fail(e, "%s/%s: path too long", g.inst, rel);
    return 0;
}

/* mkdir with exactly `mode` whatever the umask (an existing directory is left as it is). */
static int mkdir_mode(const char *path, mode_t mode)
{
    if (mkdir(path, mode) == 0)
        return chmod(path, mode);
    return errno == EEXIST ? 0 : -1;
}

/* mkdir -p: missing parents get 0755, the directory itself `mode` (docs/runtime.md: run/ and
 * run/mount 0755, the writable layer and the mount point 0700), whatever the umask. */
static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir_mode(tmp, 0755) != 0)
            return -1;
        *p = '/';
    }
    return mkdir_mode(tmp, mode);
}

static void fs_log(void *ctx, const char *line)
{
    /* One write per line: the app writes to the same stderr, and two writes (text, then
     * the newline) let its output land between them. */
    int fd = *(int *)ctx;
    char buf[1100];
    int n = snprintf(buf, sizeof buf, "%s\n", line);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof buf) {
        n = (int)sizeof buf;
        buf[n - 1] = '\n';
    }
    if (write(fd, buf, (size_t)n) < 0)
        return;
}

/* Serve the root FS union in a child process (its own process group, so a terminal's ^C
 * reaches the app, not the server) and wait until it is mounted. */
static int mount_root(struct ocb_err *e)
{
    char image[PATH_MAX], upper[PATH_MAX];
    if (inst_path(image, sizeof image, g.conf.root_lower->source, e) != 0 ||
        inst_path(upper, sizeof upper, g.conf.root_upper->source, e) != 0)
        return -1;
    snprintf(g.mnt, sizeof g.mnt, "%s/run/root", g.inst);
    if (mkdir_p(upper, 0700) != 0 || mkdir_p(g.mnt, 0700) != 0)
        return ocb_fail(e, "%s/run: cannot create the run directories: %s", g.inst, strerror(errno));
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return ocb_fail(e, "cannot create a private mount namespace: %s", strerror(errno));
    int ready[2], errp[2];
    if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0)
        return ocb_fail(e, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return ocb_fail(e, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(ready[0]);
        close(errp[0]);
        setpgid(0, 0);
        /* The server ends with its runtime (it flushes the writable layer on SIGTERM). */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) /* the runtime died before the line above */
            _exit(OFS_SERVE_IO);
        int logfd = errp[1];
        struct ofs_options o;
        memset(&o, 0, sizeof o);
        o.image_dir = image;
        memcpy(o.image_mac, g.conf.root_lower->mac, 16);
        o.image_key = g.init.encrypted ? g.init.image_key : NULL;
        o.upper_dir = upper;
        o.mountpoint = g.mnt;
        o.ready_fd = ready[1];
        o.log = fs_log;
        o.log_ctx = &logfd;
        o.log_files = g.log_level >= OCB_LOG_TRACE;
        _exit(ofs_serve(&o));
    }
    close(ready[1]);
    close(errp[1]);
    char c;
    ssize_t n;
    while ((n = read(ready[0], &c, 1)) < 0 && errno == EINTR)
        ;
    close(ready[0]);
    if (n != 1) {
        char msg[400] = "";
        ssize_t m = read(errp[0], msg, sizeof msg - 1);
        msg[m > 0 ? m : 0] = '\0';
        char *nl = strchr(msg, '\n');
        if (nl)
            *nl = '\0';
        close(errp[0]);
        waitpid(pid, NULL, 0);
        return ocb_fail(e, "%s: cannot mount the root FS: %s", image, msg[0] ? msg : "server exited");
    }
    /* Later lines (blocks failing verification while the app runs) go to stderr.  The relay
     * ends when the server does (EOF), not with the PAL, so that no line is lost. */
    if (fork() == 0) {
        char buf[512];
        setpgid(0, 0);
        while ((n = read(errp[0], buf, sizeof buf)) > 0) /* shown from OCCLUM_LOG_LEVEL=error */
            if (g.log_level >= OCB_LOG_ERROR && write(2, buf, (size_t)n) < 0)
                break;
        _exit(0);
    }
    close(errp[0]);
    g.fs_pid = pid;
    return 0;
}

/* SGX device nodes of the in-kernel driver (two names) and of the out-of-tree one. */
static const char *const sgx_devices[] = {"/dev/sgx_enclave", "/dev/sgx/enclave", "/dev/isgx"};

/* A HW build (`occlum build` defaults to HW, as Occlum does) is not run on a machine without
 * SGX as if it were a SIM one: refused, with what to do, unless OCCLUM_SIM_RUNS_HW=1 says the
 * user means it (docs/runtime.md, "SGX mode").  .sgx_mode is written by every build; a
 * missing one counts as HW, Occlum's default.  Not a security check: nothing measures it. */
static int check_sgx_mode(struct ocb_err *e)
{
    char p[PATH_MAX], mode[16] = "HW";
    snprintf(p, sizeof p, "%s/.sgx_mode", g.inst);
    FILE *f = fopen(p, "re");
    if (f != NULL) {
        if (fgets(mode, sizeof mode, f) == NULL)
            mode[0] = '\0';
        fclose(f);
        mode[strcspn(mode, "\r\n")] = '\0';
    }
    if (strcmp(mode, "SIM") == 0)
        return 0;
    for (size_t i = 0; i < sizeof sgx_devices / sizeof sgx_devices[0]; i++)
        if (access(sgx_devices[i], F_OK) == 0)
            return 0;
    const char *o = getenv("OCCLUM_SIM_RUNS_HW");
    if (o != NULL && strcmp(o, "1") == 0) {
        logf_at(OCB_LOG_WARN, "%s: a HW build (.sgx_mode %s) runs on the SIM runtime "
                              "(OCCLUM_SIM_RUNS_HW=1): no enclave protects it", g.inst, mode);
        return 0;
    }
    return ocb_fail(e, "%s: built for SGX hardware (.sgx_mode %s) but this machine has no SGX device "
                       "(/dev/sgx_enclave, /dev/sgx/enclave, /dev/isgx): rebuild with "
                       "'occlum build --sgx-mode SIM', or set OCCLUM_SIM_RUNS_HW=1 to run this HW "
                       "build on the SIM runtime",
                    g.inst, mode[0] ? mode : "(empty)");
}

static int boot(const struct occlum_pal_attr *attr, struct ocb_err *e)
{
    const char *dir = attr && attr->instance_dir ? attr->instance_dir : ".";
    char real[PATH_MAX];
    if (realpath(dir, real) == NULL)
        return ocb_fail(e, "%s: not an instance directory: %s", dir, strerror(errno));
    if (strlen(real) >= sizeof g.inst)
        return ocb_fail(e, "%s: path too long", real);
    strcpy(g.inst, real);
    char p[PATH_MAX];
    info("boot %s", g.inst);
    if (check_sgx_mode(e) != 0)
        return -1;
    /* One runtime per instance: the writable layer has a single writer. */
    snprintf(p, sizeof p, "%s/run", g.inst);
    if (mkdir_p(p, 0755) != 0)
        return ocb_fail(e, "%s: cannot create: %s", p, strerror(errno));
    if ((g.lock_fd = ocb_run_lock_take(g.inst)) < 0) {
        if (errno == EWOULDBLOCK)
            return ocb_fail(e, "%s: the instance is already running (occlum stop, or wait for it)", g.inst);
        return ocb_fail(e, "%s/%s: cannot open the runtime lock: %s", g.inst, OCB_RUN_LOCK, strerror(errno));
    }

    snprintf(p, sizeof p, "%s/build/lib/libocclum-libos.signed.so", g.inst);
    if (ocb_verify_libos(p, &g.libos, e) != 0)
        return -1;
    info("verified LibOS %s", p);
    {
        char mre[65], mrs[65];
        ocb_hex(g.libos.mrenclave, 32, mre);
        ocb_hex(g.libos.mrsigner, 32, mrs);
        if (g.log_level >= OCB_LOG_INFO)
            fprintf(stderr, "occlum: MRENCLAVE %s MRSIGNER %s\n", mre, mrs);
        logf_at(OCB_LOG_DEBUG, "ISVPRODID %u ISVSVN %u attributes 0x%llx (KSS %s)",
                (unsigned)g.libos.isvprodid, (unsigned)g.libos.isvsvn,
                (unsigned long long)g.libos.attributes_flags,
                (g.libos.attributes_flags & OCB_FLAGS_KSS) ? "on" : "off");
    }
    /* KSS values given at launch and the measurement the user expects (identity.c). */
    if (ocb_identity_from_env(p, &g.libos, &g.identity, e) != 0)
        return -1;
    ocb_report_body(&g.libos, &g.identity, g.report);
    if (ocb_identity_json(&g.libos, &g.identity, g.identity_json, sizeof g.identity_json) < 0)
        return ocb_fail(e, "internal error: the identity does not fit its buffer");
    const char *cpus = getenv(OCB_ENV_CPUS);
    if (cpus != NULL && cpus[0] != '\0' && parse_cpus(cpus, e) != 0)
        return -1;
    snprintf(p, sizeof p, "%s/build/.Occlum_sys.json.protected", g.inst);
    if (ocb_conf_load(p, g.libos.conf_mac, &g.conf, e) != 0)
        return -1;
    info("verified config %s", p);
    char initfs[PATH_MAX];
    if (inst_path(initfs, sizeof initfs, g.conf.init_lower->source, e) != 0)
        return -1;
    if (ocb_init_stage(initfs, g.conf.init_lower->mac, getenv("OCCLUM_IMAGE_KEY_FILE"), &g.init, e) != 0)
        return -1;
    info("verified init FS %s", initfs);
    logf_at(OCB_LOG_TRACE, "init FS file /etc/image_config.json: %s root FS; image key %s",
            g.init.encrypted ? "encrypted" : "integrity-only",
            !g.init.encrypted ? "not needed" : g.init.key_from_initfs ? "from /etc/image_key of the init FS"
                                                                       : "from OCCLUM_IMAGE_KEY_FILE");
    char image[PATH_MAX];
    if (inst_path(image, sizeof image, g.conf.root_lower->source, e) != 0)
        return -1;
    struct ofs_image *img = NULL;
    char err[400];
    int rc = ofs_image_open(image, g.conf.root_lower->mac, g.init.encrypted ? g.init.image_key : NULL,
                            &img, err, sizeof err);
    if (rc != OFS_OK)
        return ocb_fail(e, "%s", err);
    ofs_image_close(img);
    info("verified root FS %s", image);
    if (mount_root(e) != 0)
        return -1;
    info("mounted the root FS at %s", g.mnt);
    return 0;
}

int occlum_pal_init(const struct occlum_pal_attr *attr)
{
    struct ocb_err e = {{0}};
    if (g.inited) {
        fprintf(stderr, "occlum: occlum_pal_init called twice\n");
        errno = EEXIST;
        return -1;
    }
    g.log_level = ocb_log_level(attr && attr->log_level ? attr->log_level : getenv("OCCLUM_LOG_LEVEL"));
    if (boot(attr, &e) != 0) {
        report(&e);
        ocb_config_free(&g.conf);
        if (g.lock_fd >= 0)
            close(g.lock_fd);
        g.lock_fd = -1;
        errno = EINVAL;
        return -1;
    }
    g.inited = 1;
    return 0;
}

/* Lexically normalize an absolute path ("//", ".", ".."); -1 if not absolute or too long. */
static int normalize(const char *in, char *out, size_t n)
{
    if (in == NULL || in[0] != '/' || strlen(in) >= n)
        return -1;
    size_t len = 0;
    out[0] = '\0';
    const char *s = in;
    while (*s) {
        while (*s == '/')
            s++;
        const char *end = strchr(s, '/');
        size_t cl = end ? (size_t)(end - s) : strlen(s);
        if (cl == 0)
            break;
        if (cl == 1 && s[0] == '.') {
        } else if (cl == 2 && s[0] == '.' && s[1] == '.') {
            while (len > 0 && out[len - 1] != '/')
                len--;
            if (len > 0)
                len--;
        } else {
            out[len++] = '/';
            memcpy(out + len, s, cl);
            len += cl;
        }
        out[len] = '\0';
        s += cl;
    }
    if (len == 0)
        strcpy(out, "/");
    return 0;
}

/* env = the config's default list, then the untrusted names taken from the host. */
static char **build_env(const char **host)
{
    size_t cap = g.conf.nenv_default + g.conf.nenv_untrusted + 1, n = 0;
    char **env = calloc(cap, sizeof(char *));
    if (env == NULL)
        return NULL;
    for (size_t i = 0; i < g.conf.nenv_default; i++)
        env[n++] = g.conf.env_default[i];
    for (size_t u = 0; host && u < g.conf.nenv_untrusted; u++) {
        const char *name = g.conf.env_untrusted[u];
        size_t nl = strlen(name);
        for (const char **h = host; *h; h++) {
            if (strncmp(*h, name, nl) != 0 || (*h)[nl] != '=')
                continue;
            size_t k;
            for (k = 0; k < n; k++) /* a host value overrides a default of the same name */
                if (strncmp(env[k], name, nl) == 0 && env[k][nl] == '=')
                    break;
            env[k] = (char *)*h;
            if (k == n)
                n++;
            break;
        }
    }
    env[n] = NULL;
    return env;
}

int occlum_pal_create_process(struct occlum_pal_create_process_args *args)
{
    struct ocb_err e = {{0}};
    if (!g.inited || args == NULL || args->path == NULL || args->pid == NULL) {
        fprintf(stderr, "occlum: occlum_pal_create_process: not initialized or bad arguments\n");
        errno = EINVAL;
        return -1;
    }
    char path[PATH_MAX];
    if (normalize(args->path, path, sizeof path) != 0) {
        fprintf(stderr, "occlum: %s: the program path must be absolute\n", args->path);
        errno = EINVAL;
        return -1;
    }
    if (!ocb_entry_allowed(&g.conf.app, path)) {
        fprintf(stderr, "occlum: %s: not under an entry point of Occlum.json (entry_points); refused\n", path);
        errno = EACCES;
        return -1;
    }
    int slot = -1;
    for (int i = 0; i < MAX_PROCS && slot < 0; i++)
        if (!g.procs[i].used)
            slot = i;
    if (slot < 0) {
        fprintf(stderr, "occlum: too many processes\n");
        errno = EAGAIN;
        return -1;
    }
    char **env = build_env(args->env);
    const char *argv0[] = {path, NULL};
    struct ocb_sandbox_spec s = {
        .root = g.mnt,
        .instance_dir = g.inst,
        .stage = &g.conf.app,
        .path = path,
        .argv = args->argv && args->argv[0] ? (const char *const *)args->argv : argv0,
        .envp = (const char *const *)env,
        .stdio = {args->stdio ? args->stdio->stdin_fd : 0, args->stdio ? args->stdio->stdout_fd : 1,
                  args->stdio ? args->stdio->stderr_fd : 2},
        .limits = {.stack = g.conf.stack_size,
                   .data = g.conf.heap_size + g.conf.mmap_size,
                   .mmap_size = g.conf.mmap_size,
                   .as = g.conf.user_space_max,
                   .nproc = g.libos.tcs_max_num},
        .cpus = g.ncpus ? &g.cpus : NULL,
        .report = g.report,
        .identity_json = g.identity_json,
        .log_level = g.log_level,
    };
    if (g.log_level >= OCB_LOG_DEBUG) {
        size_t nenv = 0;
        for (char **p = env; p && *p; p++)
            nenv++;
        int cpus = g.ncpus;
        if (cpus == 0) {
            cpu_set_t all;
            CPU_ZERO(&all);
            cpus = sched_getaffinity(0, sizeof all, &all) == 0 ? CPU_COUNT(&all) : 0;
        }
        logf_at(OCB_LOG_DEBUG, "start %s: %zu environment variables, stack %llu, heap+mmap %llu, "
                               "address space %llu bytes, %llu threads, %d CPUs", path, nenv,
                (unsigned long long)s.limits.stack, (unsigned long long)s.limits.data,
                (unsigned long long)s.limits.as, (unsigned long long)s.limits.nproc,
                cpus);
    }
    int rc = env ? ocb_sandbox_spawn(&s, &g.procs[slot].proc, &e) : ocb_fail(&e, "out of memory");
    free(env);
    if (rc != 0) {
        report(&e);
        errno = ENOEXEC;
        return -1;
    }
    g.procs[slot].used = 1;
    *args->pid = slot + 1;
    return 0;
}

static struct ocb_proc *find(int pid)
{
    if (pid < 1 || pid > MAX_PROCS || !g.procs[pid - 1].used)
        return NULL;
    return &g.procs[pid - 1].proc;
}

int occlum_pal_exec(struct occlum_pal_exec_args *args)
{
    struct ocb_proc *p = args ? find(args->pid) : NULL;
    if (p == NULL || args->exit_value == NULL) {
        errno = ESRCH;
        return -1;
    }
    int status;
    ocb_sandbox_wait(p, &status);
    *args->exit_value = status;
    return 0;
}

int occlum_pal_kill(int pid, int sig)
{
    if (pid == -1) {
        for (int i = 0; i < MAX_PROCS; i++)
            if (g.procs[i].used)
                ocb_sandbox_kill(&g.procs[i].proc, sig);
        return 0;
    }
    struct ocb_proc *p = find(pid);
    if (p == NULL) {
        errno = ESRCH;
        return -1;
    }
    /* SIGKILL ends the whole namespace at once (its init); others go through the init. */
    return ocb_sandbox_kill(p, sig);
}

/* Stop the root FS server and reap it: SIGTERM, sent again every half second until it has
 * exited.  libfuse checks its exit flag and then sleeps on a semaphore that the handler does
 * not post, so a SIGTERM landing between the two is not seen; the next one is.  (Its own
 * helper threads and ours block every signal, so the handler runs on its main thread.) */
static void stop_fs_server(pid_t pid)
{
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    for (;;) {
        kill(pid, SIGTERM);
        if (pfd >= 0) {
            struct pollfd p = {pfd, POLLIN, 0};
            poll(&p, 1, 500);
        }
        pid_t w = waitpid(pid, NULL, pfd >= 0 ? WNOHANG : 0);
        if (w == pid || (w < 0 && errno != EINTR))
            break;
    }
    if (pfd >= 0)
        close(pfd);
}

int occlum_pal_destroy(void)
{
    if (!g.inited)
        return 0;
    for (int i = 0; i < MAX_PROCS; i++) {
        if (!g.procs[i].used)
            continue;
        int st;
        ocb_sandbox_kill(&g.procs[i].proc, SIGKILL);
        ocb_sandbox_wait(&g.procs[i].proc, &st);
        g.procs[i].used = 0;
    }
    if (g.fs_pid > 0) {
        stop_fs_server(g.fs_pid);
        umount2(g.mnt, MNT_DETACH);
        g.fs_pid = 0;
    }
    ocb_config_free(&g.conf);
    if (g.lock_fd >= 0)
        close(g.lock_fd);
    g.lock_fd = -1;
    g.inited = 0;
    return 0;
}

/* Occlum exports the same functions under pal_* names too. */
int pal_get_version(void) __attribute__((weak, alias("occlum_pal_get_version")));
int pal_init(const struct occlum_pal_attr *attr) __attribute__((weak, alias("occlum_pal_init")));
int pal_create_process(struct occlum_pal_create_process_args *args)
    __attribute__((weak, alias("occlum_pal_create_process")));
int pal_exec(struct occlum_pal_exec_args *args) __attribute__((weak, alias("occlum_pal_exec")));
int pal_kill(int pid, int sig) __attribute__((weak, alias("occlum_pal_kill")));
int pal_destroy(void) __attribute__((weak, alias("occlum_pal_destroy")));
