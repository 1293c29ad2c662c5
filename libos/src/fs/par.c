#include "par.h"

#include "ofs_thread.h"

#include <pthread.h>
#include <unistd.h>

enum { IDLE, POSTED, TAKEN, DONE };

static pthread_mutex_t start_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t worker_pid; /* the process the worker belongs to (a fork child starts its own) */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t posted = PTHREAD_COND_INITIALIZER, finished = PTHREAD_COND_INITIALIZER;
static int state = IDLE, have_worker;
static ofs_par_fn job_fn;
static void *job_arg;
static struct ofs_par *job_par;

static void *worker(void *unused) {
    (void)unused;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (state != POSTED)
            pthread_cond_wait(&posted, &mu);
        state = TAKEN;
        pthread_mutex_unlock(&mu);
        job_fn(job_arg, job_par, 1);
        pthread_mutex_lock(&mu);
        state = DONE;
        pthread_cond_broadcast(&finished);
    }
    return NULL;
}

static void start(void) {
    pthread_t t;
    pid_t me = getpid();
    pthread_mutex_lock(&start_mu);
    if (worker_pid == me) {
        pthread_mutex_unlock(&start_mu);
        return;
    }
    /* First use in this process: after a fork the parent's worker does not exist here, and
     * the job slot may hold the parent's state. */
    pthread_mutex_init(&mu, NULL);
    pthread_cond_init(&posted, NULL);
    pthread_cond_init(&finished, NULL);
    state = IDLE;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    have_worker = ofs_thread_start(&t, &a, worker, NULL, "ofs-par") == 0;
    pthread_attr_destroy(&a);
    worker_pid = me;
    pthread_mutex_unlock(&start_mu);
}

void ofs_par_run(ofs_par_fn fn, void *arg, size_t n, size_t chunk, size_t min_split) {
    struct ofs_par p = {.n = n, .chunk = chunk ? chunk : 1};
    int posted_it = 0;
    atomic_init(&p.next, 0);
    if (n >= min_split && n >= 2) {
        start();
        if (have_worker && pthread_mutex_trylock(&mu) == 0) {
            if (state == IDLE) {
                job_fn = fn;
                job_arg = arg;
                job_par = &p;
                state = POSTED;
                posted_it = 1;
                pthread_cond_signal(&posted);
            }
            pthread_mutex_unlock(&mu);
        }
    }
    fn(arg, &p, 0);
    if (!posted_it) return;
    pthread_mutex_lock(&mu);
    if (state == POSTED) { /* never started: the caller did it all */
        state = IDLE;
        pthread_mutex_unlock(&mu);
        return;
    }
    while (state != DONE)
        pthread_cond_wait(&finished, &mu);
    state = IDLE;
    pthread_mutex_unlock(&mu);
}
