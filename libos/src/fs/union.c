/* The root FS as FUSE3 high-level operations: the verified read-only image (lower) under the
 * encrypted writable layer (upper), with whiteouts and opaque directories as in overlayfs.
 * One mutex guards the upper layer; reads of image files run without it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define FUSE_USE_VERSION 31
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "ofs.h"
#include "ofs_crypto.h"
#include "upper.h"

struct state {
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

struct handle {
    int lower;
    int logged;
    struct ofs_ifile lf;
    struct unode *n;
};

struct res {
    struct unode *u;            /* the upper node at the path (never a whiteout) */
    const struct ofs_entry *l;  /* the lower entry that shows through (merged or alone) */
    const struct ofs_entry *lp; /* the lower entry at the path, even if u shadows it: deleting
                                   or moving the path away then needs a whiteout */
};

static struct state *ST(void) { return fuse_get_context()->private_data; }

static void logline(const struct ofs_options *o, const char *fmt, ...) {
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

static const char *rel(const char *path) {
    while (*path == '/')
        path++;
    return path;
}

/* Find what path names in each layer.  0, -ENOENT or -ENOTDIR. */
static int resolve(struct state *s, const char *path, struct res *r) {
    const char *p = rel(path), *c = p;
    struct unode *u = s->up ? s->up->root : NULL;
    int hidden = 0;
    r->u = NULL;
    r->l = r->lp = NULL;
    while (*c) {
        const char *slash = strchr(c, '/');
        size_t cl = slash ? (size_t)(slash - c) : strlen(c);
        if (u) {
            if (u->type != OFS_T_DIR) return -ENOTDIR;
            struct unode *k = ofs_upper_child(u, c, cl);
            if (k && k->type == OFS_U_WHITEOUT) return -ENOENT;
            /* an upper file or opaque directory hides everything below it in the image */
            if (k && c[cl] && (k->type != OFS_T_DIR || k->opaque)) hidden = 1;
            u = k;
        }
        c += cl;
        if (*c == '/') c++;
    }
    if (!hidden) r->lp = r->l = ofs_image_lookup(s->img, p, strlen(p));
    r->u = u;
    if (u && r->l && (u->type != OFS_T_DIR || u->opaque || r->l->type != OFS_T_DIR)) r->l = NULL;
    return (r->u || r->l) ? 0 : -ENOENT;
}

static int rtype(const struct res *r) { return r->u ? r->u->type : r->l->type; }

/* Split "/a/b/c" into parent "a/b" (in buf) and name "c". */
static int split(const char *path, char *parent, size_t plen, const char **name) {
    const char *p = rel(path), *slash = strrchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : 0;
    if (!*p) return -EBUSY; /* the root itself */
    if (n >= plen) return -ENAMETOOLONG;
    memcpy(parent, p, n);
    parent[n] = 0;
    *name = slash ? slash + 1 : p;
    if (strlen(*name) > OFS_NAME_MAX) return -ENAMETOOLONG;
    return 0;
}

/* Make sure the directory at path (a directory of the union) exists in the upper layer. */
static struct unode *copy_up_dirs(struct state *s, const char *path, int *err) {
    const char *p = rel(path), *c = p;
    struct unode *u = s->up->root;
    while (*c) {
        const char *slash = strchr(c, '/');
        size_t cl = slash ? (size_t)(slash - c) : strlen(c);
        struct unode *k = ofs_upper_child(u, c, cl);
        if (k && k->type != OFS_T_DIR) {
            *err = k->type == OFS_U_WHITEOUT ? -ENOENT : -ENOTDIR;
            return NULL;
        }
        if (!k) {
            const struct ofs_entry *e = ofs_image_lookup(s->img, p, (size_t)(c - p) + cl);
            if (!e || e->type != OFS_T_DIR) {
                *err = -ENOENT;
                return NULL;
            }
            if (!(k = ofs_upper_add(s->up, u, c, cl, OFS_T_DIR, e->mode, NULL))) {
                *err = -errno;
                return NULL;
            }
        }
        u = k;
        c += cl;
        if (*c == '/') c++;
    }
    return u;
}

/* Copy a lower file or symlink into the upper layer (content unless skip_content). */
static int copy_up(struct state *s, const char *path, const struct ofs_entry *e, int skip_content,
                   struct unode **out) {
    char parent[OFS_PATH_MAX + 1], err[512];
    const char *name;
    int rc = split(path, parent, sizeof parent, &name);
    if (rc) return rc;
    struct unode *pu = copy_up_dirs(s, parent, &rc);
    if (!pu) return rc;
    if (e->type == OFS_T_SYMLINK) {
        char t[OFS_PATH_MAX + 1];
        memcpy(t, e->target, e->size);
        t[e->size] = 0;
        *out = ofs_upper_add(s->up, pu, name, strlen(name), OFS_T_SYMLINK, 0777, t);
        return *out ? 0 : -errno;
    }
    struct unode *n = ofs_upper_add(s->up, pu, name, strlen(name), OFS_T_FILE, e->mode, NULL);
    if (!n) return -errno;
    if (skip_content || e->size == 0) goto done;
    struct ofs_ifile f;
    if (ofs_ifile_open(s->img, e, &f, err, sizeof err)) {
        logline(s->o, "%s", err);
        rc = -EIO;
        goto bad;
    }
    if ((rc = ofs_upper_fopen(s->up, n))) {
        ofs_ifile_close(&f);
        goto bad;
    }
    uint8_t *buf = malloc(1 << 17);
    for (uint64_t off = 0; buf && off < e->size;) {
        ssize_t got = ofs_ifile_read(&f, buf, 1 << 17, off, err, sizeof err);
        if (got <= 0) {
            logline(s->o, "%s", err);
            rc = -EIO;
            break;
        }
        ssize_t w = ofs_upper_write(s->up, n, buf, (size_t)got, off);
        if (w < 0) {
            rc = (int)w;
            break;
        }
        off += (uint64_t)got;
    }
    if (!buf) rc = -ENOMEM;
    free(buf);
    ofs_ifile_close(&f);
    ofs_upper_fclose(s->up, n);
    if (rc) goto bad;
done:
    *out = n;
    return 0;
bad:
    ofs_upper_remove(s->up, n);
    return rc;
}

/* What both layers report alike: type and mode, size, owner. */
static void fill_common(struct state *s, int type, uint32_t mode, uint64_t size, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_mode = mode | (type == OFS_T_DIR       ? S_IFDIR
                          : type == OFS_T_SYMLINK ? S_IFLNK
                                                  : S_IFREG);
    st->st_nlink = 1; /* directories too: "unknown", so no tool infers subdirectory counts */
    st->st_size = (off_t)size;
    st->st_blocks = (blkcnt_t)((size + 511) / 512);
    st->st_blksize = OFS_BLOCK;
    st->st_uid = s->o->uid;
    st->st_gid = s->o->gid;
}

static void fill_upper(struct state *s, const struct unode *n, struct stat *st) {
    fill_common(s, n->type, n->mode, n->size, st);
    st->st_mtim.tv_sec = n->mtime_sec;
    st->st_mtim.tv_nsec = n->mtime_nsec;
    st->st_atim = st->st_ctim = st->st_mtim;
}

static void fill_lower(struct state *s, const struct ofs_entry *e, struct stat *st) {
    fill_common(s, e->type, e->mode, e->size, st);
}

#define LOCKED(s)                                                                                  \
    for (int _once = (pthread_mutex_lock(&(s)->lock), 1); _once;                                   \
         _once = 0, pthread_mutex_unlock(&(s)->lock))

static long ms_since(const struct timespec *t) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

/* Write the index now (lock held). */
static int flush_now(struct state *s) {
    if (!s->up->dirty) return 0;
    int rc = ofs_upper_flush(s->up);
    clock_gettime(CLOCK_MONOTONIC, &s->last_flush);
    if (rc)
        logline(s->o, "%s/index: cannot write the writable layer: %s", s->up->dir, strerror(-rc));
    return rc;
}

/* After a change (lock held): write the index unless one was written less than a second
 * ago, in which case the flusher thread writes it within a second.  Without this, creating
 * n files would cost n index writes of O(n) bytes each. */
static int flush(struct state *s) {
    /* A failed write is logged and retried by the flusher; the operation itself succeeded
     * (its handle may already exist), so it is not failed after the fact. */
    if (s->up->dirty && ms_since(&s->last_flush) >= FLUSH_INTERVAL_MS) flush_now(s);
    return 0;
}

static void *flusher(void *arg) {
    struct state *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += FLUSH_INTERVAL_MS / 1000;
        pthread_cond_timedwait(&s->wake, &s->lock, &until);
        if (s->up->dirty && ms_since(&s->last_flush) >= FLUSH_INTERVAL_MS) flush_now(s);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    struct state *s = ST();
    struct res r;
    int rc = 0;
    if (!path && !(fi && fi->fh)) return -ENOENT;
    if (fi && fi->fh) {
        struct handle *h = (struct handle *)(uintptr_t)fi->fh;
        if (h->lower)
            fill_lower(s, h->lf.e, st);
        else
            LOCKED(s) fill_upper(s, h->n, st);
        return 0;
    }
    LOCKED(s) {
        rc = resolve(s, path, &r);
        if (!rc) {
            if (r.u)
                fill_upper(s, r.u, st);
            else
                fill_lower(s, r.l, st);
        }
    }
    return rc;
}

static int op_readlink(const char *path, char *buf, size_t size) {
    struct state *s = ST();
    struct res r;
    int rc;
    if (size == 0) return -EINVAL;
    LOCKED(s) {
        rc = resolve(s, path, &r);
        if (!rc && rtype(&r) != OFS_T_SYMLINK) rc = -EINVAL;
        if (!rc) {
            const char *t = r.u ? r.u->target : r.l->target;
            size_t n = r.u ? strlen(t) : r.l->size;
            if (n > size - 1) n = size - 1;
            memcpy(buf, t, n);
            buf[n] = 0;
        }
    }
    return rc;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
    struct state *s = ST();
    struct res r;
    int rc;
    (void)off;
    (void)flags;
    (void)fi;
    LOCKED(s) {
        rc = resolve(s, path, &r);
        if (!rc && rtype(&r) != OFS_T_DIR) rc = -ENOTDIR;
        if (rc) continue;
        filler(buf, ".", NULL, 0, 0);
        filler(buf, "..", NULL, 0, 0);
        if (r.u)
            for (struct unode *c = r.u->child; c; c = c->next)
                if (c->type != OFS_U_WHITEOUT) filler(buf, c->name, NULL, 0, 0);
        if (r.l) {
            for (uint32_t i = 0; i < r.l->child_count; i++) {
                const struct ofs_entry *e =
                    &s->img->entries[s->img->children[r.l->first_child + i]];
                size_t nl;
                const char *nm = ofs_entry_name(e, &nl);
                char name[OFS_NAME_MAX + 1];
                if (r.u && ofs_upper_child(r.u, nm, nl)) continue;
                memcpy(name, nm, nl);
                name[nl] = 0;
                filler(buf, name, NULL, 0, 0);
            }
        }
    }
    return rc;
}

/* Is the union directory r empty? */
static int union_empty(struct state *s, const struct res *r) {
    if (r->u)
        for (struct unode *c = r->u->child; c; c = c->next)
            if (c->type != OFS_U_WHITEOUT) return 0;
    if (r->l)
        for (uint32_t i = 0; i < r->l->child_count; i++) {
            const struct ofs_entry *e = &s->img->entries[s->img->children[r->l->first_child + i]];
            size_t nl;
            const char *nm = ofs_entry_name(e, &nl);
            if (!r->u || !ofs_upper_child(r->u, nm, nl)) return 0;
        }
    return 1;
}

/* Common start of the operations that add a name: parent in the upper layer, name free. */
static int prepare_new(struct state *s, const char *path, struct unode **pu, const char **name) {
    char parent[OFS_PATH_MAX + 1];
    struct res r;
    int rc;
    if (!s->up || s->o->read_only) return -EROFS;
    if ((rc = split(path, parent, sizeof parent, name))) return rc == -EBUSY ? -EEXIST : rc;
    if ((rc = resolve(s, parent, &r))) return rc;
    if (rtype(&r) != OFS_T_DIR) return -ENOTDIR;
    rc = resolve(s, path, &r);
    if (rc == 0) return -EEXIST;
    if (rc != -ENOENT) return rc;
    *pu = copy_up_dirs(s, parent, &rc);
    return *pu ? 0 : rc;
}

/* mkdir, symlink and mknod: a new node of the given type at path. */
static int add_new(const char *path, int type, mode_t mode, const char *target) {
    struct state *s = ST();
    struct unode *pu;
    const char *name;
    int rc;
    LOCKED(s) {
        if ((rc = prepare_new(s, path, &pu, &name))) continue;
        if (!ofs_upper_add(s->up, pu, name, strlen(name), type, mode, target))
            rc = -errno;
        else
            rc = flush(s);
    }
    return rc;
}

static int op_mkdir(const char *path, mode_t mode) {
    return add_new(path, OFS_T_DIR, mode & 07777, NULL);
}

static int op_symlink(const char *target, const char *path) {
    if (!*target || strlen(target) > OFS_PATH_MAX) return -ENAMETOOLONG;
    return add_new(path, OFS_T_SYMLINK, 0777, target);
}

static int new_handle(struct fuse_file_info *fi, struct unode *n) {
    struct handle *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    h->n = n;
    fi->fh = (uintptr_t)h;
    return 0;
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
    struct state *s = ST();
    struct unode *pu, *n;
    const char *name;
    int rc;
    LOCKED(s) {
        if ((rc = prepare_new(s, path, &pu, &name))) continue;
        if (!(n = ofs_upper_add(s->up, pu, name, strlen(name), OFS_T_FILE, mode & 07777, NULL))) {
            rc = -errno;
            continue;
        }
        if ((rc = ofs_upper_fopen(s->up, n)) || (rc = new_handle(fi, n))) {
            if (!rc) ofs_upper_fclose(s->up, n);
            ofs_upper_remove(s->up, n);
            continue;
        }
        rc = flush(s);
    }
    return rc;
}

static int op_mknod(const char *path, mode_t mode, dev_t dev) {
    (void)dev;
    if (!S_ISREG(mode)) return -EPERM; /* no device nodes, FIFOs or sockets in the root FS */
    return add_new(path, OFS_T_FILE, mode & 07777, NULL);
}

static int op_open(const char *path, struct fuse_file_info *fi) {
    struct state *s = ST();
    struct res r;
    int rc, wr = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC);
    char err[512];
    LOCKED(s) {
        if ((rc = resolve(s, path, &r))) continue;
        if (rtype(&r) == OFS_T_DIR) {
            rc = -EISDIR;
            continue;
        }
        if (wr && (!s->up || s->o->read_only)) {
            rc = -EROFS;
            continue;
        }
        if (!r.u && wr && (rc = copy_up(s, path, r.l, (fi->flags & O_TRUNC) != 0, &r.u))) continue;
        if (r.u) {
            if ((rc = ofs_upper_fopen(s->up, r.u))) continue;
            if ((fi->flags & O_TRUNC) && r.u->size && (rc = ofs_upper_truncate(s->up, r.u, 0))) {
                ofs_upper_fclose(s->up, r.u);
                continue;
            }
            if ((rc = new_handle(fi, r.u))) ofs_upper_fclose(s->up, r.u);
            if (!rc) rc = flush(s);
            continue;
        }
        struct handle *h = calloc(1, sizeof *h);
        if (!h) {
            rc = -ENOMEM;
            continue;
        }
        h->lower = 1;
        if (ofs_ifile_open(s->img, r.l, &h->lf, err, sizeof err)) {
            logline(s->o, "%s", err);
            free(h);
            rc = -EIO;
            continue;
        }
        fi->fh = (uintptr_t)h;
        fi->keep_cache = 1; /* the image never changes under a mount */
    }
    return rc;
}

static int op_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    struct state *s = ST();
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    ssize_t n;
    char err[512];
    (void)path;
    if (h->lower) {
        n = ofs_ifile_read(&h->lf, buf, size, (uint64_t)off, err, sizeof err);
        if (n == -EIO && !h->logged) {
            h->logged = 1;
            logline(s->o, "%s", err);
        }
        return (int)n;
    }
    LOCKED(s) {
        n = ofs_upper_read(s->up, h->n, buf, size, (uint64_t)off);
        if (n == -EIO)
            logline(s->o, "%s/data/%016llx: a block of '%s' fails authentication", s->up->dir,
                    (unsigned long long)h->n->id, path ? path : h->n->name);
    }
    return (int)n;
}

static int op_write(const char *path, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi) {
    struct state *s = ST();
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    ssize_t n;
    (void)path;
    if (h->lower) return -EBADF;
    LOCKED(s) n = ofs_upper_write(s->up, h->n, buf, size, (uint64_t)off);
    return (int)n;
}

static int op_release(const char *path, struct fuse_file_info *fi) {
    struct state *s = ST();
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    (void)path;
    if (h->lower) {
        ofs_ifile_close(&h->lf);
    } else {
        LOCKED(s) {
            ofs_upper_fclose(s->up, h->n);
            flush(s);
        }
    }
    free(h);
    return 0;
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
    struct state *s = ST();
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    int rc = 0;
    (void)path;
    (void)datasync;
    if (h->lower) return 0;
    LOCKED(s) {
        if (h->n->fd >= 0 && fdatasync(h->n->fd) < 0) rc = -errno;
        if (!rc) rc = flush_now(s);
    }
    return rc;
}

static int op_flush(const char *path, struct fuse_file_info *fi) {
    struct state *s = ST();
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    int rc = 0;
    (void)path;
    if (h->lower) return 0;
    LOCKED(s) rc = flush(s);
    return rc;
}

/* The upper node for path, copying it up from the image when needed (for setattr). */
static int writable(struct state *s, const char *path, int skip_content, struct unode **out) {
    struct res r;
    int rc;
    if (!s->up || s->o->read_only) return -EROFS;
    if (!path) return -ENOENT; /* an image file opened read-only and since deleted */
    if ((rc = resolve(s, path, &r))) return rc;
    if (r.u) {
        *out = r.u;
        return 0;
    }
    if (r.l->type == OFS_T_DIR) {
        *out = copy_up_dirs(s, path, &rc);
        return *out ? 0 : rc;
    }
    return copy_up(s, path, r.l, skip_content, out);
}

/* The upper node an attribute change applies to: that of the open handle (if it is one of
 * the writable layer), else the one at path, copied up when needed. */
static int attr_target(struct state *s, const char *path, struct fuse_file_info *fi,
                       int skip_content, struct unode **out) {
    if (fi && fi->fh && !((struct handle *)(uintptr_t)fi->fh)->lower) {
        *out = ((struct handle *)(uintptr_t)fi->fh)->n;
        return 0;
    }
    return writable(s, path, skip_content, out);
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
    struct state *s = ST();
    struct unode *n;
    int rc;
    if (size < 0) return -EINVAL;
    LOCKED(s) {
        if ((rc = attr_target(s, path, fi, size == 0, &n))) continue;
        if (n->type != OFS_T_FILE) {
            rc = n->type == OFS_T_DIR ? -EISDIR : -EINVAL;
            continue;
        }
        if ((rc = ofs_upper_fopen(s->up, n))) continue;
        rc = ofs_upper_truncate(s->up, n, (uint64_t)size);
        ofs_upper_fclose(s->up, n);
        if (!rc) rc = flush(s);
    }
    return rc;
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi) {
    struct state *s = ST();
    struct unode *n;
    int rc;
    LOCKED(s) {
        if ((rc = attr_target(s, path, fi, 0, &n))) continue;
        n->mode = mode & 07777;
        s->up->dirty = 1;
        rc = flush(s);
    }
    return rc;
}

static int op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi) {
    /* Ownership is not stored (the image drops it too); accept so that tools like tar and
     * cp -p work, as they do on Occlum's SEFS. */
    struct state *s = ST();
    struct res r;
    int rc;
    (void)uid;
    (void)gid;
    if (!path) return fi && fi->fh ? 0 : -ENOENT;
    LOCKED(s) rc = resolve(s, path, &r);
    return rc;
}

static int op_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi) {
    struct state *s = ST();
    struct unode *n;
    int rc;
    LOCKED(s) {
        if ((rc = attr_target(s, path, fi, 0, &n))) continue;
        if (!tv || tv[1].tv_nsec == UTIME_NOW) {
            ofs_upper_touch(n);
        } else if (tv[1].tv_nsec != UTIME_OMIT) {
            n->mtime_sec = tv[1].tv_sec;
            n->mtime_nsec = (uint32_t)tv[1].tv_nsec;
        }
        s->up->dirty = 1;
        rc = flush(s);
    }
    return rc;
}

/* Remove what path (resolved as r) names: an upper-only node goes, anything the image has
 * there is hidden by a whiteout. */
static int remove_entry(struct state *s, const char *path, const struct res *r) {
    char parent[OFS_PATH_MAX + 1];
    const char *name;
    struct unode *pu;
    int rc = 0;
    if (r->u && !r->lp) {
        ofs_upper_remove(s->up, r->u);
    } else if (r->u) {
        if (!ofs_upper_whiteout(s->up, r->u)) rc = -ENOMEM;
    } else {
        if ((rc = split(path, parent, sizeof parent, &name))) return rc;
        if (!(pu = copy_up_dirs(s, parent, &rc))) return rc;
        if (!ofs_upper_add(s->up, pu, name, strlen(name), OFS_U_WHITEOUT, 0, NULL)) rc = -errno;
    }
    return rc ? rc : flush(s);
}

static int op_unlink(const char *path) {
    struct state *s = ST();
    struct res r;
    int rc;
    if (!s->up || s->o->read_only) return -EROFS;
    LOCKED(s) {
        if ((rc = resolve(s, path, &r))) continue;
        if (rtype(&r) == OFS_T_DIR) {
            rc = -EISDIR;
            continue;
        }
        rc = remove_entry(s, path, &r);
    }
    return rc;
}

static int op_rmdir(const char *path) {
    struct state *s = ST();
    struct res r;
    int rc;
    if (!s->up || s->o->read_only) return -EROFS;
    if (!*rel(path)) return -EBUSY;
    LOCKED(s) {
        if ((rc = resolve(s, path, &r))) continue;
        if (rtype(&r) != OFS_T_DIR) {
            rc = -ENOTDIR;
            continue;
        }
        if (!union_empty(s, &r)) {
            rc = -ENOTEMPTY;
            continue;
        }
        rc = remove_entry(s, path, &r);
    }
    return rc;
}

static int do_rename(struct state *s, const char *from, const char *to, unsigned int flags) {
    struct res rs, rd, rp;
    char sparent[OFS_PATH_MAX + 1], dparent[OFS_PATH_MAX + 1];
    const char *sname, *dname;
    int rc, dexists;
    if (flags & ~(unsigned)RENAME_NOREPLACE) return -EINVAL;
    if ((rc = split(from, sparent, sizeof sparent, &sname)) ||
        (rc = split(to, dparent, sizeof dparent, &dname)))
        return rc;
    if ((rc = resolve(s, from, &rs))) return rc;
    if ((rc = resolve(s, dparent, &rp))) return rc;
    if (rtype(&rp) != OFS_T_DIR) return -ENOTDIR;
    rc = resolve(s, to, &rd);
    if (rc && rc != -ENOENT) return rc;
    dexists = rc == 0;
    size_t fl = strlen(rel(from));
    if (strcmp(rel(from), rel(to)) == 0) return 0;
    if (!strncmp(rel(to), rel(from), fl) && rel(to)[fl] == '/') return -EINVAL;
    int sdir = rtype(&rs) == OFS_T_DIR;
    if (dexists) {
        if (flags & RENAME_NOREPLACE) return -EEXIST;
        int ddir = rtype(&rd) == OFS_T_DIR;
        if (sdir && !ddir) return -ENOTDIR;
        if (!sdir && ddir) return -EISDIR;
        if (ddir && !union_empty(s, &rd)) return -ENOTEMPTY;
    }
    /* A directory that has contents in the image would need all of them copied up; like
     * overlayfs without redirect_dir, refuse and let the caller copy (mv does). */
    if (sdir && rs.l) return -EXDEV;
    int src_lower = rs.lp != NULL;
    struct unode *n = rs.u;
    if (!n && (rc = copy_up(s, from, rs.l, 0, &n))) return rc;
    struct unode *dp = copy_up_dirs(s, dparent, &rc);
    if (!dp) return rc;
    int dst_lower = dexists && rd.lp != NULL;
    struct unode *old = ofs_upper_child(dp, dname, strlen(dname));
    if (old && old->type == OFS_U_WHITEOUT) dst_lower = 1; /* the image has something there */
    if (old && old != n) ofs_upper_remove(s->up, old);
    struct unode *sp = n->parent;
    if ((rc = ofs_upper_move(s->up, n, dp, dname, strlen(dname)))) return rc;
    if (n->type == OFS_T_DIR && dst_lower) n->opaque = 1;
    if (src_lower && !ofs_upper_add(s->up, sp, sname, strlen(sname), OFS_U_WHITEOUT, 0, NULL))
        return -errno;
    return 0;
}

static int op_rename(const char *from, const char *to, unsigned int flags) {
    struct state *s = ST();
    int rc;
    if (!s->up || s->o->read_only) return -EROFS;
    LOCKED(s) {
        rc = do_rename(s, from, to, flags);
        int f = flush(s);
        if (!rc) rc = f;
    }
    return rc;
}

static int op_link(const char *from, const char *to) {
    (void)from;
    (void)to;
    return -EPERM; /* hard links are not kept by the image format or the writable layer */
}

static int op_statfs(const char *path, struct statvfs *sv) {
    struct state *s = ST();
    (void)path;
    if (statvfs(s->up ? s->up->dir : s->img->dir, sv) < 0) return -errno;
    sv->f_namemax = OFS_NAME_MAX;
    return 0;
}

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
    (void)conn;
    cfg->kernel_cache = 0;
    cfg->entry_timeout = 1.0;
    cfg->attr_timeout = 1.0;
    cfg->negative_timeout = 0;
    /* libfuse's default for unlinking an open file: rename it to .fuse_hidden* and remove it
     * at the last close (fstat on such a file needs a path in the high-level API).  For an
     * image file that rename copies it up first. */
    cfg->hard_remove = 0;
    cfg->nullpath_ok = 0;
    return fuse_get_context()->private_data;
}

static void op_destroy(void *data) {
    struct state *s = data;
    if (s->up) {
        pthread_mutex_lock(&s->lock);
        flush_now(s);
        pthread_mutex_unlock(&s->lock);
    }
}

static int op_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi) {
    struct state *s = ST();
    int rc = 0;
    (void)path;
    (void)datasync;
    (void)fi;
    if (s->up) LOCKED(s) rc = flush_now(s);
    return rc;
}

static const struct fuse_operations ops = {
    .getattr = op_getattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .chmod = op_chmod,
    .chown = op_chown,
    .truncate = op_truncate,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .statfs = op_statfs,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .readdir = op_readdir,
    .fsyncdir = op_fsyncdir,
    .init = op_init,
    .destroy = op_destroy,
    .create = op_create,
    .utimens = op_utimens,
};

/* ---- serving ---- */

static int report(const struct ofs_options *o, int code, const char *msg) {
    logline(o, "%s", msg);
    if (o->errbuf && o->errlen) snprintf(o->errbuf, o->errlen, "%s", msg);
    return code;
}

static int read_seal_key(const char *file, uint8_t key[16], char *err, size_t errlen) {
    char text[64];
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        /* First use: a fresh secret, written exclusively (two racing creators: one wins). */
        uint8_t k[16];
        char hex[48];
        if (ofs_random(k, 16))
            return snprintf(err, errlen, "%s: no randomness", file), OFS_SERVE_IO;
        ofs_format_hex16(k, hex);
        hex[47] = '\n';
        fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            int ok = write(fd, hex, 48) == 48 && fsync(fd) == 0;
            close(fd);
            if (!ok) {
                unlink(file);
                return snprintf(err, errlen, "%s: cannot write the instance secret", file),
                       OFS_SERVE_IO;
            }
        } else if (errno != EEXIST) {
            return snprintf(err, errlen, "%s: cannot create the instance secret: %s", file,
                            strerror(errno)),
                   OFS_SERVE_IO;
        }
        fd = open(file, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return snprintf(err, errlen, "%s: cannot read the instance secret: %s", file,
                        strerror(errno)),
               OFS_SERVE_IO;
    ssize_t n = read(fd, text, sizeof text);
    close(fd);
    if (n < 0 || ofs_parse_hex16(text, (size_t)n, key))
        return snprintf(err, errlen, "%s: not a 16-byte key 'xx-xx-...'", file), OFS_SERVE_INPUT;
    return 0;
}

int ofs_upper_key(const uint8_t *image_key, const char *seal_key_file, uint8_t out[16], char *err,
                  size_t errlen) {
    uint8_t seal[16];
    const char *info;
    const uint8_t *ikm = image_key;
    if (!ikm) {
        int rc = read_seal_key(seal_key_file, seal, err, errlen);
        if (rc) return rc;
        ikm = seal;
        info = "occlum-build upper v1 from instance secret";
    } else {
        info = "occlum-build upper v1 from image key";
    }
    if (ofs_hkdf(ikm, 16, "", 0, info, strlen(info), out, 16))
        return snprintf(err, errlen, "key derivation failed"), OFS_SERVE_IO;
    return 0;
}

int ofs_serve(const struct ofs_options *o) {
    struct state s = {.o = o};
    char err[1024];
    int rc;
    struct fuse *f = NULL;
    if (!o->image_dir || !o->mountpoint)
        return report(o, OFS_SERVE_INPUT, "ofs_serve: image dir and mountpoint are required");
    if ((rc = ofs_image_open(o->image_dir, o->image_mac, o->image_key, &s.img, err, sizeof err)))
        return report(o, rc, err);
    if (o->upper_dir) {
        uint8_t key[16];
        char seal[4096];
        const char *sf = o->seal_key_file;
        if (!sf) { /* <upper>/../../.sim_seal_key, e.g. run/.sim_seal_key for run/mount/__ROOT */
            char up[4096], *abs;
            snprintf(up, sizeof up, "%s", o->upper_dir);
            if (!(abs = realpath(dirname(up), NULL))) {
                rc = OFS_SERVE_INPUT;
                snprintf(err, sizeof err, "%s: parent directory of the writable layer: %s",
                         o->upper_dir, strerror(errno));
                goto out_err;
            }
            snprintf(seal, sizeof seal, "%s/.sim_seal_key", dirname(abs));
            free(abs);
            sf = seal;
        }
        if (o->upper_key)
            memcpy(key, o->upper_key, 16);
        else if ((rc = ofs_upper_key(o->image_key, sf, key, err, sizeof err)))
            goto out_err;
        if ((rc =
                 ofs_upper_open(o->upper_dir, key, s.img->entries[0].mode, &s.up, err, sizeof err)))
            goto out_err;
    }
    pthread_mutex_init(&s.lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s.wake, &ca);
    pthread_condattr_destroy(&ca);
    clock_gettime(CLOCK_MONOTONIC, &s.last_flush);
    pthread_t flusher_thread;
    int have_flusher = 0;
    char opts[256];
    snprintf(opts, sizeof opts, "fsname=occlum-fs,subtype=occlum%s%s",
             o->allow_other ? ",allow_other" : "", (o->read_only || !s.up) ? ",ro" : "");
    char *argv[] = {"occlum-fs", "-o", opts, NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, argv);
    args.allocated = 0;
    f = fuse_new(&args, &ops, sizeof ops, &s);
    fuse_opt_free_args(&args); /* fuse_new keeps what it needs */
    if (!f) {
        rc = OFS_SERVE_IO;
        snprintf(err, sizeof err, "%s: cannot set up FUSE", o->mountpoint);
        goto out_err;
    }
    if (fuse_mount(f, o->mountpoint) != 0) {
        rc = OFS_SERVE_IO;
        snprintf(err, sizeof err, "%s: cannot mount (FUSE needs root and /dev/fuse)",
                 o->mountpoint);
        goto out_err;
    }
    struct fuse_session *se = fuse_get_session(f);
    fuse_set_signal_handlers(se);
    if (s.up) have_flusher = pthread_create(&flusher_thread, NULL, flusher, &s) == 0;
    if (o->ready_fd > 0) {
        if (write(o->ready_fd, "1", 1) != 1) { /* the waiter went away; serve anyway */
        }
        close(o->ready_fd);
    }
    rc = o->single_threaded ? fuse_loop(f) : fuse_loop_mt(f, 0);
    fuse_remove_signal_handlers(se);
    if (have_flusher) {
        pthread_mutex_lock(&s.lock);
        s.stop = 1;
        pthread_cond_signal(&s.wake);
        pthread_mutex_unlock(&s.lock);
        pthread_join(flusher_thread, NULL);
    }
    fuse_unmount(f);
    fuse_destroy(f); /* calls op_destroy: flushes the index */
    f = NULL;
    rc = rc < 0 ? OFS_SERVE_IO : OFS_SERVE_OK;
    if (rc) snprintf(err, sizeof err, "%s: FUSE session failed", o->mountpoint);
    if (s.up && ofs_upper_close(s.up, err, sizeof err)) rc = OFS_SERVE_IO;
    s.up = NULL;
    ofs_image_close(s.img);
    pthread_cond_destroy(&s.wake);
    pthread_mutex_destroy(&s.lock);
    return rc ? report(o, rc, err) : OFS_SERVE_OK;
out_err:
    if (f) fuse_destroy(f);
    if (s.up) ofs_upper_close(s.up, NULL, 0);
    ofs_image_close(s.img);
    return report(o, rc, err);
}
