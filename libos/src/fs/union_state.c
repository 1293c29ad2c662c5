/* The root FS union's shared state: its log and the writable layer's index writes (at once,
 * coalesced to one a second, and by the flusher thread).  The other union modules call these;
 * this file calls none of them, so the modules form no cycle:
 *   serve.c -> union_ops.c -> union_lookup.c -> union_state.c */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "union.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void union_log(const struct ofs_options *o, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (o->log)
        o->log(o->log_ctx, line);
    else
        fprintf(stderr, "occlum-fs: %s\n", line);
}

static long ms_since(const struct timespec *t) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

/* Write the index now (lock held). */
int union_flush_now(struct ofs_union_state *s) {
    if (!s->up->dirty) return 0;
    int rc = ofs_upper_flush(s->up);
    clock_gettime(CLOCK_MONOTONIC, &s->last_flush);
    if (rc)
        union_log(s->o, "%s/index: cannot write the writable layer: %s", s->up->dir, strerror(-rc));
    return rc;
}

/* After a change (lock held): write the index unless one was written less than a second
 * ago, in which case the flusher thread writes it within a second.  Without this, creating
 * n files would cost n index writes of O(n) bytes each. */
int union_flush(struct ofs_union_state *s) {
    /* A failed write is logged and retried by the flusher; the operation itself succeeded
     * (its handle may already exist), so it is not failed after the fact. */
    if (s->up->dirty && ms_since(&s->last_flush) >= FLUSH_INTERVAL_MS) union_flush_now(s);
    return 0;
}

/* The flusher thread: writes a dirty index within a second of the change. */
void *union_flusher(void *arg) {
    struct ofs_union_state *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += FLUSH_INTERVAL_MS / 1000;
        pthread_cond_timedwait(&s->wake, &s->lock, &until);
        if (s->up->dirty && ms_since(&s->last_flush) >= FLUSH_INTERVAL_MS) union_flush_now(s);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}
