/* Internal interface of the root FS union (the lower image under the writable layer), shared
 * by its modules (each calls only those below it):
 *   serve.c         ofs_serve(): opening the layers, mounting, the key
 *   union_ops.c     the FUSE high-level operations
 *   union_lookup.c  what a path names in each layer, copy-up, whiteouts, rename
 *   union_state.c   the log and the writable layer's index writes (and the flusher thread)
 * One mutex (state.lock, taken with union_lock/union_unlock) guards the upper layer; reads of image files run
 * without it. */
#ifndef OFS_UNION_H
#define OFS_UNION_H

#define FUSE_USE_VERSION 31
#include <fuse.h>
#include <pthread.h>
#include <stddef.h>
#include <time.h>

#include "image.h"
#include "ofs.h"
#include "upper.h"

struct ofs_union_state {
    struct ofs_image *img;
    struct ofs_upper *up;
    const struct ofs_options *o;
    pthread_mutex_t lock;
    /* Index writes are coalesced: at most one a second from operations, the rest by the
     * flusher thread within a second; fsync and unmount write at once. */
    pthread_cond_t wake;
    struct timespec last_flush;
    int stop;
};

#define FLUSH_INTERVAL_MS 1000

struct ofs_union_handle {
    int lower;
    int logged;
    struct ofs_ifile lf;
    struct unode *n;
};

struct ofs_union_res {
    struct unode *u;            /* the upper node at the path (never a whiteout) */
    const struct ofs_entry *l;  /* the lower entry that shows through (merged or alone) */
    const struct ofs_entry *lp; /* the lower entry at the path, even if u shadows it: deleting
                                   or moving the path away then needs a whiteout */
};

/* The upper layer's lock, taken and released explicitly around each critical section (a
 * scoped for-loop macro would stay locked after a `break` or `return` inside it).  The
 * sections are `union_lock(s); do { ... } while (0); union_unlock(s);`: `break` and
 * `continue` leave the block, and a section never returns while locked. */
static inline void union_lock(struct ofs_union_state *s) { pthread_mutex_lock(&s->lock); }
static inline void union_unlock(struct ofs_union_state *s) { pthread_mutex_unlock(&s->lock); }

/* union_lookup.c */
const char *union_rel(const char *path); /* path without its leading slashes */
int union_resolve(struct ofs_union_state *s, const char *path, struct ofs_union_res *r);
int union_rtype(const struct ofs_union_res *r);
int union_split(const char *path, char *parent, size_t plen, const char **name);
struct unode *union_copy_up_dirs(struct ofs_union_state *s, const char *path, int *err);
int union_copy_up(struct ofs_union_state *s, const char *path, const struct ofs_entry *e, int skip_content,
                  struct unode **out);
int union_empty(struct ofs_union_state *s, const struct ofs_union_res *r);
int union_prepare_new(struct ofs_union_state *s, const char *path, struct unode **pu, const char **name);
int union_writable(struct ofs_union_state *s, const char *path, int skip_content, struct unode **out);
int union_remove(struct ofs_union_state *s, const char *path, const struct ofs_union_res *r);
int union_rename(struct ofs_union_state *s, const char *from, const char *to, unsigned int flags);

/* serve.c */
__attribute__((format(printf, 2, 3))) void union_log(const struct ofs_options *o,
                                                     const char *fmt, ...);
int union_flush_now(struct ofs_union_state *s);
int union_flush(struct ofs_union_state *s);
void *union_flusher(void *state);

/* union_ops.c */
extern const struct fuse_operations ofs_union_ops;

#endif
