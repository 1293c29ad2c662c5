/* Two-way parallel loops for block verification: the caller runs the first half of a range
 * while one shared worker thread runs the second half.  If the worker has not picked the
 * half up by the time the caller is done (busy machine, or another caller holds it), the
 * caller takes it back and runs it itself, so this is never much slower than a plain loop. */
#ifndef OFS_PAR_H
#define OFS_PAR_H

#include <stddef.h>

typedef void (*ofs_par_fn)(void *arg, size_t lo, size_t hi);

/* Run fn(arg, 0, n) split in two; min_split: below this n, no worker is involved. */
void ofs_par_run(ofs_par_fn fn, void *arg, size_t n, size_t min_split);

#endif
