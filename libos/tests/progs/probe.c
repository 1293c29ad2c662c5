/* A small static program run inside the sandbox by the tests: reports what it sees. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

extern char **environ;

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
    } else if (strcmp(cmd, "wait") == 0) {
        puts("ready");
        fflush(stdout);
        pause();
    } else {
        return 2;
    }
    return 0;
}
