/* Two-thread loops for block verification.  The caller and one shared worker thread claim
 * chunks of a range from a common counter until it is used up; the caller then waits only
 * for the chunk the worker is in the middle of.  If the worker has not started by the time
 * the range is used up (a busy machine, or another caller holds it), nothing is waited for.
 * So it is about as fast as a plain loop when no second core is free, and up to twice as
 * fast when one is. */
#ifndef OFS_PAR_H
#define OFS_PAR_H

#include <stdatomic.h>
#include <stddef.h>

struct ofs_par {
    atomic_size_t next;
    size_t n, chunk;
};

/* Claim the next chunk [*lo, *hi); 0 when the range is used up. */
static inline int ofs_par_claim(struct ofs_par *p, size_t *lo, size_t *hi) {
    size_t c = atomic_fetch_add(&p->next, p->chunk);
    if (c >= p->n) return 0;
    *lo = c;
    *hi = c + p->chunk < p->n ? c + p->chunk : p->n;
    return 1;
}

/* fn is run by the caller (who = 0) and, when n >= min_split, by the worker (who = 1); each
 * claims chunks with ofs_par_claim until it returns 0. */
typedef void (*ofs_par_fn)(void *arg, struct ofs_par *p, int who);
void ofs_par_run(ofs_par_fn fn, void *arg, size_t n, size_t chunk, size_t min_split);

#endif
