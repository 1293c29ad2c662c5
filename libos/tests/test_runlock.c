/* The runtime lock (runlock.h): held while a runtime has it, free once it is closed (as when
 * its process dies), and a query never takes it away from a runtime starting at that moment. */
#include "check.h"
#include "runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    char dir[] = "/tmp/ocb-runlock-test.XXXXXX", run[64];
    CHECK(mkdtemp(dir) != NULL);
    CHECK(ocb_run_lock_held(dir) == 0); /* no run/ at all */
    snprintf(run, sizeof run, "%s/run", dir);
    CHECK(mkdir(run, 0700) == 0);
    CHECK(ocb_run_lock_held(dir) == 0); /* no lock file */

    int fd = ocb_run_lock_take(dir);
    CHECK(fd >= 0);
    CHECK(ocb_run_lock_held(dir) == 1);
    errno = 0;
    CHECK(ocb_run_lock_take(dir) == -1 && errno == EWOULDBLOCK);
    close(fd);
    CHECK(ocb_run_lock_held(dir) == 0);

    /* A runtime in a child that dies without unlocking: the kernel drops the lock. */
    pid_t pid = fork();
    if (pid == 0) {
        if (ocb_run_lock_take(dir) < 0)
            _exit(1);
        pause();
        _exit(0);
    }
    for (int i = 0; i < 1000 && ocb_run_lock_held(dir) != 1; i++)
        usleep(1000);
    CHECK(ocb_run_lock_held(dir) == 1);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    CHECK(ocb_run_lock_held(dir) == 0);

    /* A query holding its shared lock does not make a starting runtime fail. */
    char lock[96];
    snprintf(lock, sizeof lock, "%s/%s", dir, OCB_RUN_LOCK);
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid = fork();
    if (pid == 0) {
        int q = open(lock, O_RDONLY);
        int ok = q >= 0 && flock(q, LOCK_SH | LOCK_NB) == 0;
        if (write(ready[1], ok ? "1" : "0", 1) != 1)
            _exit(1);
        usleep(10000); /* a slow query: 10 ms */
        _exit(0);
    }
    close(ready[1]);
    char c = 0;
    CHECK(read(ready[0], &c, 1) == 1 && c == '1'); /* the query holds its shared lock now */
    close(ready[0]);
    fd = ocb_run_lock_take(dir);
    CHECK(fd >= 0);
    waitpid(pid, NULL, 0);
    close(fd);

    unlink(lock);
    rmdir(run);
    rmdir(dir);
    CHECK_DONE();
}
