/* Helper threads block every signal (ofs_thread.h): the flusher of the writable layer and the
 * block-verification worker (par.c) must never run a handler meant for libfuse's main thread,
 * or `occlum run` can hang at teardown.  The caller's own mask is left as it was. */
#include "check.h"
#include "ofs_thread.h"
#include "par.h"

#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD, SIGPIPE,
                           SIGALRM, SIGWINCH};
#define NSIGS (sizeof sigs / sizeof sigs[0])

/* How many of sigs[] the calling thread blocks. */
static size_t blocked_here(void)
{
    sigset_t m;
    pthread_sigmask(SIG_BLOCK, NULL, &m);
    size_t n = 0;
    for (size_t i = 0; i < NSIGS; i++)
        n += sigismember(&m, sigs[i]) == 1;
    return n;
}

static void *report_mask(void *out)
{
    *(size_t *)out = blocked_here();
    return NULL;
}

static atomic_int worker_seen;
static atomic_size_t worker_blocked;

static void job(void *arg, struct ofs_par *p, int who)
{
    (void)arg;
    if (who == 1) {
        atomic_store(&worker_blocked, blocked_here());
        atomic_store(&worker_seen, 1);
    } else {
        /* Give the worker up to 5 s to join before the caller takes every chunk. */
        for (int i = 0; i < 5000 && !atomic_load(&worker_seen); i++)
            nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    size_t lo, hi;
    while (ofs_par_claim(p, &lo, &hi))
        ;
}

int main(void)
{
    sigset_t none, m;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);

    pthread_t t;
    size_t n = 0;
    CHECK(ofs_thread_start(&t, NULL, report_mask, &n, "ofs-test") == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(n == NSIGS);
    pthread_sigmask(SIG_BLOCK, NULL, &m);
    CHECK(sigismember(&m, SIGTERM) == 0); /* the caller's mask is restored */
    CHECK(blocked_here() == 0);

    /* A caller that blocks some signals keeps exactly those. */
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, SIGUSR1);
    pthread_sigmask(SIG_SETMASK, &one, NULL);
    CHECK(ofs_thread_start(&t, NULL, report_mask, &n, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(n == NSIGS);
    pthread_sigmask(SIG_BLOCK, NULL, &m);
    CHECK(sigismember(&m, SIGUSR1) == 1 && sigismember(&m, SIGTERM) == 0);
    pthread_sigmask(SIG_SETMASK, &none, NULL);

    /* The shared worker of ofs_par_run. */
    ofs_par_run(job, NULL, 1000, 1, 2);
    CHECK(atomic_load(&worker_seen) == 1);
    CHECK(atomic_load(&worker_blocked) == NSIGS);
    CHECK(blocked_here() == 0);
    CHECK_DONE();
}
