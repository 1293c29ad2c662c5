/* A small static program run inside the sandbox by the tests: reports what it sees. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void *idle(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

/* Create up to n children (or threads) that wait; print how many could be created. */
static int spawn(int n, int threads)
{
    pid_t kids[4096];
    int made = 0;
    for (; made < n && made < 4096; made++) {
        if (threads) {
            pthread_t t;
            if (pthread_create(&t, NULL, idle, NULL) != 0)
                break;
        } else {
            pid_t pid = fork();
            if (pid < 0)
                break;
            if (pid == 0)
                idle(NULL);
            kids[made] = pid;
        }
    }
    printf("%d\n", made);
    fflush(stdout);
    if (!threads)
        for (int i = 0; i < made; i++) {
            kill(kids[i], SIGKILL);
            waitpid(kids[i], NULL, 0);
        }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *cmd = argv[1];
    if (strcmp(cmd, "hello") == 0) {
        puts("Hello World");
    } else if (strcmp(cmd, "env") == 0) {
        for (char **e = environ; *e; e++)
            puts(*e);
    } else if (strcmp(cmd, "limits") == 0) {
        static const struct { int res; const char *name; } l[] = {
            {RLIMIT_STACK, "stack"}, {RLIMIT_DATA, "data"}, {RLIMIT_AS, "as"}, {RLIMIT_NPROC, "nproc"}};
        for (size_t i = 0; i < sizeof l / sizeof l[0]; i++) {
            struct rlimit r;
            getrlimit(l[i].res, &r);
            printf("%s %llu %llu\n", l[i].name, (unsigned long long)r.rlim_cur, (unsigned long long)r.rlim_max);
        }
    } else if (strcmp(cmd, "pid") == 0) {
        printf("%d\n", (int)getpid());
    } else if (strcmp(cmd, "exit") == 0 && argc > 2) {
        return atoi(argv[2]);
    } else if (strcmp(cmd, "signal") == 0 && argc > 2) {
        raise(atoi(argv[2]));
    } else if (strcmp(cmd, "cat") == 0 && argc > 2) {
        FILE *f = fopen(argv[2], "r");
        if (!f) {
            perror(argv[2]);
            return 1;
        }
        int c;
        while ((c = fgetc(f)) != EOF)
            putchar(c);
        if (ferror(f)) {
            perror(argv[2]);
            return 1;
        }
        fclose(f);
    } else if (strcmp(cmd, "write") == 0 && argc > 3) {
        FILE *f = fopen(argv[2], "w");
        if (!f) {
            perror(argv[2]);
            return 1;
        }
        fputs(argv[3], f);
        return fclose(f) != 0;
    } else if (strcmp(cmd, "rm") == 0 && argc > 2) {
        if (unlink(argv[2]) != 0) {
            perror(argv[2]);
            return 1;
        }
    } else if (strcmp(cmd, "exists") == 0 && argc > 2) {
        return access(argv[2], F_OK) == 0 ? 0 : 1;
    } else if (strcmp(cmd, "escape") == 0 && argc > 2) {
        /* The classic chroot break-out (root with CAP_SYS_CHROOT): chroot into a subdirectory,
         * walk up past the old root, chroot there.  Prints whether argv[2] is visible then. */
        mkdir("/tmp/.escape", 0700);
        if (chroot("/tmp/.escape") != 0)
            perror("chroot");
        for (int i = 0; i < 64; i++)
            if (chdir("..") != 0)
                break;
        if (chroot(".") != 0)
            perror("chroot .");
        puts(access(argv[2], F_OK) == 0 ? "visible" : "hidden");
    } else if (strcmp(cmd, "forks") == 0 && argc > 2) {
        return spawn(atoi(argv[2]), 0);
    } else if (strcmp(cmd, "threads") == 0 && argc > 2) {
        return spawn(atoi(argv[2]), 1);
    } else if (strcmp(cmd, "cpus") == 0) {
        /* How many CPUs it may use; then asks for every CPU and says what it got. */
        cpu_set_t set;
        CPU_ZERO(&set);
        if (sched_getaffinity(0, sizeof set, &set) != 0)
            return 1;
        printf("%d\n", CPU_COUNT(&set));
        for (int c = 0; c < CPU_SETSIZE; c++)
            CPU_SET(c, &set);
        int rc = sched_setaffinity(0, sizeof set, &set);
        CPU_ZERO(&set);
        sched_getaffinity(0, sizeof set, &set);
        printf("%s %d\n", rc == 0 ? "set" : "refused", CPU_COUNT(&set));
    } else if (strcmp(cmd, "wait") == 0) {
        puts("ready");
        fflush(stdout);
        pause();
    } else {
        return 2;
    }
    return 0;
}
