/* The union's path logic: what a path names in the writable layer and the image (with
 * whiteouts and opaque directories as in overlayfs), copying image entries up into the
 * writable layer, removing and renaming across the layers.  Callers hold the lock. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "union.h"

#include <errno.h>
#include <stdio.h> /* RENAME_NOREPLACE */
#include <stdlib.h>
#include <string.h>

const char *union_rel(const char *path) {
    while (*path == '/')
        path++;
    return path;
}

/* Find what path names in each layer.  0, -ENOENT or -ENOTDIR. */
int union_resolve(struct ofs_union_state *s, const char *path, struct ofs_union_res *r) {
    const char *p = union_rel(path), *c = p;
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

int union_rtype(const struct ofs_union_res *r) { return r->u ? r->u->type : r->l->type; }

/* Split "/a/b/c" into parent "a/b" (in buf) and name "c". */
int union_split(const char *path, char *parent, size_t plen, const char **name) {
    const char *p = union_rel(path), *slash = strrchr(p, '/');
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
struct unode *union_copy_up_dirs(struct ofs_union_state *s, const char *path, int *err) {
    const char *p = union_rel(path), *c = p;
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
int union_copy_up(struct ofs_union_state *s, const char *path, const struct ofs_entry *e, int skip_content,
                   struct unode **out) {
    char parent[OFS_PATH_MAX + 1], err[512];
    const char *name;
    int rc = union_split(path, parent, sizeof parent, &name);
    if (rc) return rc;
    struct unode *pu = union_copy_up_dirs(s, parent, &rc);
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
        union_log(s->o, "%s", err);
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
            union_log(s->o, "%s", err);
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

/* Is the union directory r empty? */
int union_empty(struct ofs_union_state *s, const struct ofs_union_res *r) {
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
int union_prepare_new(struct ofs_union_state *s, const char *path, struct unode **pu, const char **name) {
    char parent[OFS_PATH_MAX + 1];
    struct ofs_union_res r;
    int rc;
    if (!s->up || s->o->read_only) return -EROFS;
    if ((rc = union_split(path, parent, sizeof parent, name))) return rc == -EBUSY ? -EEXIST : rc;
    if ((rc = union_resolve(s, parent, &r))) return rc;
    if (union_rtype(&r) != OFS_T_DIR) return -ENOTDIR;
    rc = union_resolve(s, path, &r);
    if (rc == 0) return -EEXIST;
    if (rc != -ENOENT) return rc;
    *pu = union_copy_up_dirs(s, parent, &rc);
    return *pu ? 0 : rc;
}

/* The upper node for path, copying it up from the image when needed (for setattr). */
int union_writable(struct ofs_union_state *s, const char *path, int skip_content, struct unode **out) {
    struct ofs_union_res r;
    int rc;
    if (!s->up || s->o->read_only) return -EROFS;
    if (!path) return -ENOENT; /* an image file opened read-only and since deleted */
    if ((rc = union_resolve(s, path, &r))) return rc;
    if (r.u) {
        *out = r.u;
        return 0;
    }
    if (r.l->type == OFS_T_DIR) {
        *out = union_copy_up_dirs(s, path, &rc);
        return *out ? 0 : rc;
    }
    return union_copy_up(s, path, r.l, skip_content, out);
}

/* Remove what path (resolved as r) names: an upper-only node goes, anything the image has
 * there is hidden by a whiteout. */
int union_remove(struct ofs_union_state *s, const char *path, const struct ofs_union_res *r) {
    char parent[OFS_PATH_MAX + 1];
    const char *name;
    struct unode *pu;
    int rc = 0;
    if (r->u && !r->lp) {
        ofs_upper_remove(s->up, r->u);
    } else if (r->u) {
        if (!ofs_upper_whiteout(s->up, r->u)) rc = -ENOMEM;
    } else {
        if ((rc = union_split(path, parent, sizeof parent, &name))) return rc;
        if (!(pu = union_copy_up_dirs(s, parent, &rc))) return rc;
        if (!ofs_upper_add(s->up, pu, name, strlen(name), OFS_U_WHITEOUT, 0, NULL)) rc = -errno;
    }
    return rc ? rc : union_flush(s);
}

int union_rename(struct ofs_union_state *s, const char *from, const char *to, unsigned int flags) {
    struct ofs_union_res rs, rd, rp;
    char sparent[OFS_PATH_MAX + 1], dparent[OFS_PATH_MAX + 1];
    const char *sname, *dname;
    int rc, dexists;
    if (flags & ~(unsigned)RENAME_NOREPLACE) return -EINVAL;
    if ((rc = union_split(from, sparent, sizeof sparent, &sname)) ||
        (rc = union_split(to, dparent, sizeof dparent, &dname)))
        return rc;
    if ((rc = union_resolve(s, from, &rs))) return rc;
    if ((rc = union_resolve(s, dparent, &rp))) return rc;
    if (union_rtype(&rp) != OFS_T_DIR) return -ENOTDIR;
    rc = union_resolve(s, to, &rd);
    if (rc && rc != -ENOENT) return rc;
    dexists = rc == 0;
    size_t fl = strlen(union_rel(from));
    if (strcmp(union_rel(from), union_rel(to)) == 0) return 0;
    if (!strncmp(union_rel(to), union_rel(from), fl) && union_rel(to)[fl] == '/') return -EINVAL;
    int sdir = union_rtype(&rs) == OFS_T_DIR;
    if (dexists) {
        if (flags & RENAME_NOREPLACE) return -EEXIST;
        int ddir = union_rtype(&rd) == OFS_T_DIR;
        if (sdir && !ddir) return -ENOTDIR;
        if (!sdir && ddir) return -EISDIR;
        if (ddir && !union_empty(s, &rd)) return -ENOTEMPTY;
    }
    /* A directory that has contents in the image would need all of them copied up; like
     * overlayfs without redirect_dir, refuse and let the caller copy (mv does). */
    if (sdir && rs.l) return -EXDEV;
    int src_lower = rs.lp != NULL;
    struct unode *n = rs.u;
    if (!n && (rc = union_copy_up(s, from, rs.l, 0, &n))) return rc;
    struct unode *dp = union_copy_up_dirs(s, dparent, &rc);
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
