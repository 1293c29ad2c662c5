/* The root FS as FUSE3 high-level operations (ofs_union_ops) over the union of
 * union_lookup.c: attributes, directory listing, file handles on either layer, and the
 * changes, all of which land in the writable layer. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "union.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static struct ofs_union_state *ST(void) { return fuse_get_context()->private_data; }

/* What both layers report alike: type and mode, size, owner. */
static void fill_common(struct ofs_union_state *s, int type, uint32_t mode, uint64_t size, struct stat *st) {
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

static void fill_upper(struct ofs_union_state *s, const struct unode *n, struct stat *st) {
    fill_common(s, n->type, n->mode, n->size, st);
    st->st_mtim.tv_sec = n->mtime_sec;
    st->st_mtim.tv_nsec = n->mtime_nsec;
    st->st_atim = st->st_ctim = st->st_mtim;
}

static void fill_lower(struct ofs_union_state *s, const struct ofs_entry *e, struct stat *st) {
    fill_common(s, e->type, e->mode, e->size, st);
    st->st_mtim.tv_sec = e->mtime_sec;
    st->st_mtim.tv_nsec = e->mtime_nsec;
    st->st_atim = st->st_ctim = st->st_mtim;
}

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    struct ofs_union_state *s = ST();
    struct ofs_union_res r;
    int rc = 0;
    if (!path && !(fi && fi->fh)) return -ENOENT;
    if (fi && fi->fh) {
        struct ofs_union_handle *h = (struct ofs_union_handle *)(uintptr_t)fi->fh;
        if (h->lower) {
            fill_lower(s, h->lf.e, st);
        } else {
            union_lock(s);
            fill_upper(s, h->n, st);
            union_unlock(s);
        }
        return 0;
    }
    union_lock(s);
    do {
        rc = union_resolve(s, path, &r);
        if (!rc) {
            if (r.u)
                fill_upper(s, r.u, st);
            else
                fill_lower(s, r.l, st);
        }
    } while (0);
    union_unlock(s);
    return rc;
}

static int op_readlink(const char *path, char *buf, size_t size) {
    struct ofs_union_state *s = ST();
    struct ofs_union_res r;
    int rc;
    if (size == 0) return -EINVAL;
    union_lock(s);
    do {
        rc = union_resolve(s, path, &r);
        if (!rc && union_rtype(&r) != OFS_T_SYMLINK) rc = -EINVAL;
        if (!rc) {
            const char *t = r.u ? r.u->target : r.l->target;
            size_t n = r.u ? strlen(t) : r.l->size;
            if (n > size - 1) n = size - 1;
            memcpy(buf, t, n);
            buf[n] = 0;
        }
    } while (0);
    union_unlock(s);
    return rc;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
    struct ofs_union_state *s = ST();
    struct ofs_union_res r;
    int rc;
    (void)off;
    (void)flags;
    (void)fi;
    union_lock(s);
    do {
        rc = union_resolve(s, path, &r);
        if (!rc && union_rtype(&r) != OFS_T_DIR) rc = -ENOTDIR;
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
    } while (0);
    union_unlock(s);
    return rc;
}

/* mkdir, symlink and mknod: a new node of the given type at path. */
static int add_new(const char *path, int type, mode_t mode, const char *target) {
    struct ofs_union_state *s = ST();
    struct unode *pu;
    const char *name;
    int rc;
    union_lock(s);
    do {
        if ((rc = union_prepare_new(s, path, &pu, &name))) continue;
        if (!ofs_upper_add(s->up, pu, name, strlen(name), type, mode, target))
            rc = -errno;
        else
            rc = union_flush(s);
    } while (0);
    union_unlock(s);
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
    struct ofs_union_handle *h = calloc(1, sizeof *h);
    if (!h) return -ENOMEM;
    h->n = n;
    fi->fh = (uintptr_t)h;
    return 0;
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
    struct ofs_union_state *s = ST();
    struct unode *pu, *n;
    const char *name;
    int rc;
    union_lock(s);
    do {
        if ((rc = union_prepare_new(s, path, &pu, &name))) continue;
        if (!(n = ofs_upper_add(s->up, pu, name, strlen(name), OFS_T_FILE, mode & 07777, NULL))) {
            rc = -errno;
            continue;
        }
        if ((rc = ofs_upper_fopen(s->up, n)) || (rc = new_handle(fi, n))) {
            if (!rc) ofs_upper_fclose(s->up, n);
            ofs_upper_remove(s->up, n);
            continue;
        }
        rc = union_flush(s);
    } while (0);
    union_unlock(s);
    return rc;
}

static int op_mknod(const char *path, mode_t mode, dev_t dev) {
    (void)dev;
    if (!S_ISREG(mode)) return -EPERM; /* no device nodes, FIFOs or sockets in the root FS */
    return add_new(path, OFS_T_FILE, mode & 07777, NULL);
}

static int op_open(const char *path, struct fuse_file_info *fi) {
    struct ofs_union_state *s = ST();
    struct ofs_union_res r;
    int rc, wr = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC);
    char err[512];
    union_lock(s);
    do {
        if ((rc = union_resolve(s, path, &r))) continue;
        if (union_rtype(&r) == OFS_T_DIR) {
            rc = -EISDIR;
            continue;
        }
        if (wr && (!s->up || s->o->read_only)) {
            rc = -EROFS;
            continue;
        }
        if (!r.u && wr && (rc = union_copy_up(s, path, r.l, (fi->flags & O_TRUNC) != 0, &r.u))) continue;
        if (r.u) {
            if ((rc = ofs_upper_fopen(s->up, r.u))) continue;
            if ((fi->flags & O_TRUNC) && r.u->size && (rc = ofs_upper_truncate(s->up, r.u, 0))) {
                ofs_upper_fclose(s->up, r.u);
                continue;
            }
            if ((rc = new_handle(fi, r.u))) ofs_upper_fclose(s->up, r.u);
            if (!rc) rc = union_flush(s);
            continue;
        }
        struct ofs_union_handle *h = calloc(1, sizeof *h);
        if (!h) {
            rc = -ENOMEM;
            continue;
        }
        h->lower = 1;
        if (ofs_ifile_open(s->img, r.l, &h->lf, err, sizeof err)) {
            union_log(s->o, "%s", err);
            free(h);
            rc = -EIO;
            continue;
        }
        if (s->o->log_files) /* OCCLUM_LOG_LEVEL=trace */
            union_log(s->o, "trace: verified open of image file %s (%llu bytes; each block is checked against its hash tree when read)",
                      path, (unsigned long long)r.l->size);
        fi->fh = (uintptr_t)h;
        fi->keep_cache = 1; /* the image never changes under a mount */
    } while (0);
    union_unlock(s);
    return rc;
}

static int op_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    struct ofs_union_state *s = ST();
    struct ofs_union_handle *h = (struct ofs_union_handle *)(uintptr_t)fi->fh;
    ssize_t n;
    char err[512];
    (void)path;
    if (h->lower) {
        n = ofs_ifile_read(&h->lf, buf, size, (uint64_t)off, err, sizeof err);
        if (n == -EIO && !h->logged) {
            h->logged = 1;
            union_log(s->o, "%s", err);
        }
        return (int)n;
    }
    union_lock(s);
    do {
        n = ofs_upper_read(s->up, h->n, buf, size, (uint64_t)off);
        if (n == -EIO)
            union_log(s->o, "%s/data/%016llx: a block of '%s' fails authentication", s->up->dir,
                    (unsigned long long)h->n->id, path ? path : h->n->name);
    } while (0);
    union_unlock(s);
    return (int)n;
}

static int op_write(const char *path, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi) {
    struct ofs_union_state *s = ST();
    struct ofs_union_handle *h = (struct ofs_union_handle *)(uintptr_t)fi->fh;
    ssize_t n;
    (void)path;
    if (h->lower) return -EBADF;
    {
        union_lock(s);
        n = ofs_upper_write(s->up, h->n, buf, size, (uint64_t)off);
        union_unlock(s);
    }
    return (int)n;
}

static int op_release(const char *path, struct fuse_file_info *fi) {
    struct ofs_union_state *s = ST();
    struct ofs_union_handle *h = (struct ofs_union_handle *)(uintptr_t)fi->fh;
    (void)path;
    if (h->lower) {
        ofs_ifile_close(&h->lf);
    } else {
        union_lock(s);
        do {
            ofs_upper_fclose(s->up, h->n);
            union_flush(s);
        } while (0);
        union_unlock(s);
    }
    free(h);
    return 0;
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
    struct ofs_union_state *s = ST();
    struct ofs_union_handle *h = (struct ofs_union_handle *)(uintptr_t)fi->fh;
    int rc = 0;
    (void)path;
    (void)datasync;
    if (h->lower) return 0;
    union_lock(s);
    do {
        if (h->n->fd >= 0 && fdatasync(h->n->fd) < 0) rc = -errno;
        if (!rc) rc = union_flush_now(s);
    } while (0);
    union_unlock(s);
    return rc;
}

static int op_flush(const char *path, struct fuse_file_info *fi) {
    struct ofs_union_state *s = ST();
    struct ofs_union_handle *h = (struct ofs_union_handle *)(uintptr_t)fi->fh;
    int rc = 0;
    (void)path;
    if (h->lower) return 0;
    {
        union_lock(s);
        rc = union_flush(s);
        union_unlock(s);
    }
    return rc;
}

/* The upper node an attribute change applies to: that of the open handle (if it is one of
 * the writable layer), else the one at path, copied up when needed. */
static int attr_target(struct ofs_union_state *s, const char *path, struct fuse_file_info *fi,
                       int skip_content, struct unode **out) {
    if (fi && fi->fh && !((struct ofs_union_handle *)(uintptr_t)fi->fh)->lower) {
        *out = ((struct ofs_union_handle *)(uintptr_t)fi->fh)->n;
        return 0;
    }
    return union_writable(s, path, skip_content, out);
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
    struct ofs_union_state *s = ST();
    struct unode *n;
    int rc;
    if (size < 0) return -EINVAL;
    union_lock(s);
    do {
        if ((rc = attr_target(s, path, fi, size == 0, &n))) continue;
        if (n->type != OFS_T_FILE) {
            rc = n->type == OFS_T_DIR ? -EISDIR : -EINVAL;
            continue;
        }
        if ((rc = ofs_upper_fopen(s->up, n))) continue;
        rc = ofs_upper_truncate(s->up, n, (uint64_t)size);
        ofs_upper_fclose(s->up, n);
        if (!rc) rc = union_flush(s);
    } while (0);
    union_unlock(s);
    return rc;
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi) {
    struct ofs_union_state *s = ST();
    struct unode *n;
    int rc;
    union_lock(s);
    do {
        if ((rc = attr_target(s, path, fi, 0, &n))) continue;
        n->mode = mode & 07777;
        s->up->dirty = 1;
        rc = union_flush(s);
    } while (0);
    union_unlock(s);
    return rc;
}

static int op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi) {
    /* Ownership is not stored (the image drops it too); accept so that tools like tar and
     * cp -p work, as they do on Occlum's SEFS. */
    struct ofs_union_state *s = ST();
    struct ofs_union_res r;
    int rc;
    (void)uid;
    (void)gid;
    if (!path) return fi && fi->fh ? 0 : -ENOENT;
    {
        union_lock(s);
        rc = union_resolve(s, path, &r);
        union_unlock(s);
    }
    return rc;
}

static int op_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi) {
    struct ofs_union_state *s = ST();
    struct unode *n;
    int rc;
    union_lock(s);
    do {
        if ((rc = attr_target(s, path, fi, 0, &n))) continue;
        if (!tv || tv[1].tv_nsec == UTIME_NOW) {
            ofs_upper_touch(n);
        } else if (tv[1].tv_nsec != UTIME_OMIT) {
            n->mtime_sec = tv[1].tv_sec;
            n->mtime_nsec = (uint32_t)tv[1].tv_nsec;
        }
        s->up->dirty = 1;
        rc = union_flush(s);
    } while (0);
    union_unlock(s);
    return rc;
}

static int op_unlink(const char *path) {
    struct ofs_union_state *s = ST();
    struct ofs_union_res r;
    int rc;
    if (!s->up || s->o->read_only) return -EROFS;
    union_lock(s);
    do {
        if ((rc = union_resolve(s, path, &r))) continue;
        if (union_rtype(&r) == OFS_T_DIR) {
            rc = -EISDIR;
            continue;
        }
        rc = union_remove(s, path, &r);
    } while (0);
    union_unlock(s);
    return rc;
}

static int op_rmdir(const char *path) {
    struct ofs_union_state *s = ST();
    struct ofs_union_res r;
    int rc;
    if (!s->up || s->o->read_only) return -EROFS;
    if (!*union_rel(path)) return -EBUSY;
    union_lock(s);
    do {
        if ((rc = union_resolve(s, path, &r))) continue;
        if (union_rtype(&r) != OFS_T_DIR) {
            rc = -ENOTDIR;
            continue;
        }
        if (!union_empty(s, &r)) {
            rc = -ENOTEMPTY;
            continue;
        }
        rc = union_remove(s, path, &r);
    } while (0);
    union_unlock(s);
    return rc;
}

static int op_rename(const char *from, const char *to, unsigned int flags) {
    struct ofs_union_state *s = ST();
    int rc;
    if (!s->up || s->o->read_only) return -EROFS;
    union_lock(s);
    do {
        rc = union_rename(s, from, to, flags);
        int f = union_flush(s);
        if (!rc) rc = f;
    } while (0);
    union_unlock(s);
    return rc;
}

static int op_link(const char *from, const char *to) {
    (void)from;
    (void)to;
    return -EPERM; /* hard links are not kept by the image format or the writable layer */
}

static int op_statfs(const char *path, struct statvfs *sv) {
    struct ofs_union_state *s = ST();
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
    struct ofs_union_state *s = data;
    if (s->up) {
        pthread_mutex_lock(&s->lock);
        union_flush_now(s);
        pthread_mutex_unlock(&s->lock);
    }
}

static int op_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi) {
    struct ofs_union_state *s = ST();
    int rc = 0;
    (void)path;
    (void)datasync;
    (void)fi;
    if (s->up) {
        union_lock(s);
        rc = union_flush_now(s);
        union_unlock(s);
    }
    return rc;
}

const struct fuse_operations ofs_union_ops = {
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
