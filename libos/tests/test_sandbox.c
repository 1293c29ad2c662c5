/* The sandbox on a plain directory root: namespaces, chroot, /proc, /dev, hostfs, ramfs,
 * limits, env, stdio, exit status and signals, exec failure.  Needs root (CI runs as root). */
#include "check.h"
#include "sandbox.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char root[] = "/tmp/ocb-sandbox-test.XXXXXX";
static char hostdir[] = "/tmp/ocb-sandbox-host.XXXXXX";
static struct ocb_mount mounts[4];
static struct ocb_stage stage = {NULL, 0, mounts, 4};

static void copy(const char *from, const char *to)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    CHECK(system(cmd) == 0);
}

/* Run probe with args; capture stdout into out; return the wait status (or -1 on spawn
 * failure, message in e). */
static int run(const char *const *argv, const char *const *envp, char *out, size_t outlen,
               struct ocb_err *e)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    struct ocb_sandbox_spec s = {
        .root = root, .instance_dir = hostdir, .stage = &stage, .path = "/bin/probe",
        .argv = argv, .envp = envp, .stdio = {0, p[1], 2},
        .limits = {.stack = 4 << 20, .data = 132 << 20, .as = 300 << 20, .nproc = 0}};
    struct ocb_proc proc;
    int rc = ocb_sandbox_spawn(&s, &proc, e);
    close(p[1]);
    size_t got = 0;
    ssize_t n;
    while ((n = read(p[0], out + got, outlen - 1 - got)) > 0)
        got += (size_t)n;
    out[got] = '\0';
    close(p[0]);
    if (rc != 0)
        return -1;
    int status;
    CHECK(ocb_sandbox_wait(&proc, &status) == 0);
    return status;
}

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "test_sandbox: needs root (namespaces), skipped\n");
        return 0;
    }
    CHECK(mkdtemp(root) != NULL && mkdtemp(hostdir) != NULL);
    char p[512];
    snprintf(p, sizeof p, "%s/bin", root);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/bin/probe", root);
    copy(BUILD_DIR "/tests/progs/probe", p);
    snprintf(p, sizeof p, "%s/hello.txt", hostdir);
    int fd = open(p, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0 && write(fd, "from host", 9) == 9);
    close(fd);
    mounts[0] = (struct ocb_mount){.type = "procfs", .target = "/proc"};
    mounts[1] = (struct ocb_mount){.type = "devfs", .target = "/dev"};
    mounts[2] = (struct ocb_mount){.type = "hostfs", .target = "/host", .source = "."};
    mounts[3] = (struct ocb_mount){.type = "ramfs", .target = "/tmp"};

    char out[4096];
    struct ocb_err e = {{0}};
    const char *env[] = {"A=1", "B=two", NULL};

    const char *a1[] = {"probe", "hello", NULL};
    int st = run(a1, env, out, sizeof out, &e);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(strcmp(out, "Hello World\n") == 0);

    const char *a2[] = {"probe", "env", NULL};
    st = run(a2, env, out, sizeof out, &e);
    CHECK(strcmp(out, "A=1\nB=two\n") == 0);

    const char *a3[] = {"probe", "pid", NULL};
    st = run(a3, env, out, sizeof out, &e);
    CHECK(strcmp(out, "2\n") == 0); /* pid 2 of a fresh pid namespace */

    const char *a4[] = {"probe", "limits", NULL};
    st = run(a4, env, out, sizeof out, &e);
    CHECK_STR_CONTAINS(out, "stack 4194304 ");
    CHECK_STR_CONTAINS(out, "data 138412032 ");
    CHECK_STR_CONTAINS(out, "as 314572800 314572800\n");

    const char *a5[] = {"probe", "cat", "/host/hello.txt", NULL};
    st = run(a5, env, out, sizeof out, &e);
    CHECK(strcmp(out, "from host") == 0);

    const char *a6[] = {"probe", "write", "/dev/null", "x", NULL};
    st = run(a6, env, out, sizeof out, &e);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    const char *a7[] = {"probe", "cat", "/proc/self/comm", NULL};
    st = run(a7, env, out, sizeof out, &e);
    CHECK(strcmp(out, "probe\n") == 0);

    const char *a8[] = {"probe", "exit", "42", NULL};
    st = run(a8, env, out, sizeof out, &e);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 42);

    const char *a9[] = {"probe", "signal", "15", NULL};
    st = run(a9, env, out, sizeof out, &e);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);

    /* /tmp is a fresh ramfs: a file written there is not in the root directory. */
    const char *a10[] = {"probe", "write", "/tmp/x", "y", NULL};
    st = run(a10, env, out, sizeof out, &e);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    snprintf(p, sizeof p, "%s/tmp/x", root);
    CHECK(access(p, F_OK) != 0);

    /* A missing program: spawn fails, with the reason. */
    snprintf(p, sizeof p, "%s/bin/probe", root);
    CHECK(rename(p, "/tmp/ocb-probe-moved") == 0);
    st = run(a1, env, out, sizeof out, &e);
    CHECK(st == -1);
    CHECK_STR_CONTAINS(e.msg, "cannot execute /bin/probe");
    CHECK(rename("/tmp/ocb-probe-moved", p) == 0);

    /* A mount target that is a symbolic link (an app may leave one in the writable layer) is
     * refused, not followed out of the root. */
    snprintf(p, sizeof p, "%s/host", root);
    CHECK(rmdir(p) == 0 && symlink("/tmp", p) == 0);
    st = run(a1, env, out, sizeof out, &e);
    CHECK(st == -1 && strcmp(out, "") == 0);
    CHECK_STR_CONTAINS(e.msg, "mount target /host: a symbolic link in the root FS (refused)");
    snprintf(p, sizeof p, "%s/etc", root);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/host", root);
    CHECK(unlink(p) == 0 && symlink("etc", p) == 0); /* even one that stays inside */
    st = run(a1, env, out, sizeof out, &e);
    CHECK(st == -1);
    CHECK(unlink(p) == 0 && mkdir(p, 0755) == 0);
    st = run(a1, env, out, sizeof out, &e);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    /* Unsupported mount type: refused before the program runs. */
    mounts[3] = (struct ocb_mount){.type = "ext2", .target = "/ext2"};
    st = run(a1, env, out, sizeof out, &e);
    CHECK(st == -1 && strcmp(out, "") == 0);
    CHECK_STR_CONTAINS(e.msg, "mount type \"ext2\" at /ext2 is not supported");

    snprintf(p, sizeof p, "rm -rf '%s' '%s'", root, hostdir);
    CHECK(system(p) == 0);
    CHECK_DONE();
}
