/* occlum-run: boot an instance with the PAL and run one program (Occlum's src/run/main.c).
 *
 *   occlum-run [--instance DIR] [OPTIONS] <path> [args...]
 *
 *   OPTIONS (also before --serve): --config-id B64, --config-svn N (KSS, as Occlum's
 *   occlum run), --expect-mrenclave HEX, --expect-mrsigner HEX, --cpus N; each sets the
 *   PAL's environment variable (OCCLUM_CONF_ID_BASE64, OCCLUM_CONF_SVN,
 *   OCCLUM_EXPECT_MRENCLAVE, OCCLUM_EXPECT_MRSIGNER, OCCLUM_CPUS) read at boot.
 *
 *   occlum-run [--instance DIR] --serve [--ready-fd N]   serve the booted instance (occlum start)
 *   occlum-run [--instance DIR] --exec <path> [args...]  run in the served instance (occlum exec)
 *   occlum-run [--instance DIR] --stop                   stop the server (occlum stop)
 *
 * The instance is DIR, else $OCCLUM_INSTANCE_DIR, else <X> when this program is
 * <X>/build/bin/occlum-run (the copy `occlum build` puts there, as Occlum finds its instance),
 * else the current directory.  Log level from
 * OCCLUM_LOG_LEVEL.  Exit status: 1 on usage or boot failure, 127 when the program cannot be
 * started (not under an entry point, missing, not executable), otherwise the program's status
 * & 0x7f, or 128 + signal number when a signal ended it.  Signals sent to occlum-run with
 * kill(2) are passed to the program; terminal signals reach it directly. */
#include "occlum_pal_api.h"
#include "server.h"

#include <limits.h>
#include <signal.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t child_pid;

static void pass_signal(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    /* A terminal-generated signal (SI_KERNEL) already reached the program, which shares our
     * process group; only forward what was sent to occlum-run itself. */
    if (si != NULL && si->si_code == SI_KERNEL)
        return;
    if (child_pid > 0)
        occlum_pal_kill(child_pid, sig);
}

/* <X> when /proc/self/exe is <X>/build/bin/occlum-run, else NULL. */
static const char *instance_of_exe(void)
{
    static char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    static const char tail[] = "/build/bin/occlum-run";
    size_t tl = sizeof tail - 1;
    if ((size_t)n <= tl || strcmp(buf + n - tl, tail) != 0)
        return NULL;
    buf[n - tl] = '\0';
    return buf;
}

int main(int argc, char **argv)
{
    const char *instance = getenv("OCCLUM_INSTANCE_DIR");
    if (instance == NULL || instance[0] == '\0')
        instance = instance_of_exe();
    /* Launch options: the PAL reads them from its environment at occlum_pal_init, where real
     * Occlum's PAL reads OCCLUM_CONF_ID_BASE64 and OCCLUM_CONF_SVN (docs/runtime.md). */
    enum { O_INSTANCE = 256, O_CONFIG_ID, O_CONFIG_SVN, O_EXPECT_MRENCLAVE, O_EXPECT_MRSIGNER, O_CPUS,
           O_SERVE, O_READY_FD, O_STOP, O_EXEC };
    static const struct option opts[] = {
        {"instance", required_argument, NULL, O_INSTANCE},
        {"config-id", required_argument, NULL, O_CONFIG_ID},
        {"config-svn", required_argument, NULL, O_CONFIG_SVN},
        {"expect-mrenclave", required_argument, NULL, O_EXPECT_MRENCLAVE},
        {"expect-mrsigner", required_argument, NULL, O_EXPECT_MRSIGNER},
        {"cpus", required_argument, NULL, O_CPUS},
        {"serve", no_argument, NULL, O_SERVE},
        {"ready-fd", required_argument, NULL, O_READY_FD},
        {"stop", no_argument, NULL, O_STOP},
        {"exec", required_argument, NULL, O_EXEC},
        {NULL, 0, NULL, 0},
    };
    static const char *const launch_env[] = {
        [O_CONFIG_ID - O_CONFIG_ID] = "OCCLUM_CONF_ID_BASE64", [O_CONFIG_SVN - O_CONFIG_ID] = "OCCLUM_CONF_SVN",
        [O_EXPECT_MRENCLAVE - O_CONFIG_ID] = "OCCLUM_EXPECT_MRENCLAVE",
        [O_EXPECT_MRSIGNER - O_CONFIG_ID] = "OCCLUM_EXPECT_MRSIGNER", [O_CPUS - O_CONFIG_ID] = "OCCLUM_CPUS",
    };
    int serve = 0, stop = 0, ready = -1, exec_at = -1, c, bad = 0;
    opterr = 0;
    /* "+": the program and its arguments start at the first operand (they may look like options) */
    while (exec_at < 0 && !bad && (c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case O_INSTANCE: instance = optarg; break;
        case O_CONFIG_ID: case O_CONFIG_SVN: case O_EXPECT_MRENCLAVE: case O_EXPECT_MRSIGNER: case O_CPUS:
            if (optarg[0] == '\0') {
                fprintf(stderr, "occlum-run: --%s needs a value\n", opts[c - O_INSTANCE].name);
                return 1;
            }
            setenv(launch_env[c - O_CONFIG_ID], optarg, 1);
            break;
        case O_SERVE: serve = 1; break;
        case O_READY_FD: ready = atoi(optarg); break;
        case O_STOP: stop = 1; break;
        case O_EXEC: /* the program's argv starts at its path: "--exec <path> [args...]" */
            if (argv[optind - 1] != optarg)
                bad = 1;
            exec_at = optind - 1;
            break;
        default: bad = 1;
        }
    }
    const char *inst = instance && instance[0] ? instance : ".";
    if (!bad && serve)
        return ocb_serve(inst, ready);
    if (!bad && stop)
        return ocb_client_stop(inst);
    if (!bad && exec_at >= 0)
        return ocb_client_exec(inst, argv[exec_at], &argv[exec_at]);
    int i = optind;
    if (bad || i >= argc) {
        fprintf(stderr, "usage: occlum-run [--instance DIR] [--config-id B64] [--config-svn N] [--expect-mrenclave HEX]\n"
                        "                  [--expect-mrsigner HEX] [--cpus N] <path> [args...]\n"
                        "       occlum-run [--instance DIR] --serve [--ready-fd N] | --exec <path> [args...] | --stop\n");
        return 1;
    }
    if (occlum_pal_get_version() != OCCLUM_PAL_VERSION) {
        fprintf(stderr, "occlum-run: PAL version mismatch\n");
        return 1;
    }
    struct occlum_pal_attr attr = OCCLUM_PAL_ATTR_INITVAL;
    attr.instance_dir = inst;
    attr.log_level = getenv("OCCLUM_LOG_LEVEL");
    if (occlum_pal_init(&attr) < 0)
        return 1;

    /* Block the passed signals until the pid is known. */
    static const int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = pass_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigset_t set, old;
    sigemptyset(&set);
    for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++) {
        sigaddset(&set, sigs[k]);
        sigaction(sigs[k], &sa, NULL);
    }
    sigprocmask(SIG_BLOCK, &set, &old);

    extern char **environ;
    int pid = 0;
    struct occlum_stdio_fds io = {0, 1, 2};
    struct occlum_pal_create_process_args cp = {
        .path = argv[i],
        .argv = (const char **)&argv[i],
        .env = (const char **)environ,
        .stdio = &io,
        .pid = &pid,
    };
    if (occlum_pal_create_process(&cp) < 0) {
        occlum_pal_destroy();
        return 127;
    }
    child_pid = pid;
    sigprocmask(SIG_SETMASK, &old, NULL);
    int status = 0;
    struct occlum_pal_exec_args ex = {.pid = pid, .exit_value = &status};
    int rc = occlum_pal_exec(&ex);
    sigprocmask(SIG_BLOCK, &set, NULL);
    child_pid = 0;
    occlum_pal_destroy();
    if (rc < 0)
        return 127;
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status) & 0x7f;
}
