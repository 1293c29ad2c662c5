/* Writable layer: docs/formats/writable-layer.md. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "upper.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "ofs_crypto.h"
#include "ofs_err.h"

#define LAYER_SIZE 64
#define IDX_HDR 28
#define NODE_HDR 48
#define SBLOCK (OFS_GCM_NONCE + OFS_BLOCK + OFS_GCM_TAG) /* stored block: nonce, ct, tag */
#define NO_PARENT 0xffffffffu
#define MAX_INDEX (1ull << 32)

static int derive(const struct ofs_upper *up, const char *info, const void *extra, size_t elen,
                  void *out, size_t outlen) {
    uint8_t buf[96];
    size_t il = strlen(info);
    memcpy(buf, info, il);
    if (elen) memcpy(buf + il, extra, elen);
    return ofs_hkdf(up->master, 16, up->salt, 32, buf, il + elen, out, outlen);
}

static ssize_t pread_full(int fd, void *buf, size_t len, off_t off) {
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, (uint8_t *)buf + got, len - got, off + (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static int pwrite_full(int fd, const void *buf, size_t len, off_t off) {
    size_t done = 0;
    while (done < len) {
        ssize_t r = pwrite(fd, (const uint8_t *)buf + done, len - done, off + (off_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        done += (size_t)r;
    }
    return 0;
}

void ofs_upper_touch(struct unode *n) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    n->mtime_sec = ts.tv_sec;
    n->mtime_nsec = (uint32_t)ts.tv_nsec;
}

static struct unode *new_node(const char *name, size_t len, uint8_t type, uint32_t mode) {
    struct unode *n = calloc(1, sizeof *n);
    if (!n || !(n->name = strndup(name, len))) {
        free(n);
        errno = ENOMEM;
        return NULL;
    }
    n->type = type;
    n->mode = mode & 07777;
    n->fd = -1;
    return n;
}

static void free_node(struct unode *n) {
    if (n->fd >= 0) close(n->fd);
    free(n->name);
    free(n->target);
    free(n);
}

void ofs_upper_free_tree(struct unode *n) {
    if (!n) return;
    for (struct unode *c = n->child, *nx; c; c = nx) {
        nx = c->next;
        ofs_upper_free_tree(c);
    }
    if (n->opens) {
        /* Still open: leave it to the last close (only at shutdown, where nothing follows). */
        n->detached = 1;
        n->parent = n->child = n->next = NULL;
        return;
    }
    free_node(n);
}

static void link_child(struct unode *parent, struct unode *n) {
    /* Keep children sorted by name so listings and the index are deterministic. */
    struct unode **pp = &parent->child;
    while (*pp && strcmp((*pp)->name, n->name) < 0)
        pp = &(*pp)->next;
    n->next = *pp;
    *pp = n;
    n->parent = parent;
}

static void unlink_child(struct unode *n) {
    if (!n->parent) return;
    struct unode **pp = &n->parent->child;
    while (*pp && *pp != n)
        pp = &(*pp)->next;
    if (*pp) *pp = n->next;
    n->parent = NULL;
    n->next = NULL;
}

struct unode *ofs_upper_child(const struct unode *dir, const char *name, size_t len) {
    for (struct unode *c = dir->child; c; c = c->next)
        if (strlen(c->name) == len && memcmp(c->name, name, len) == 0) return c;
    return NULL;
}

static void data_name(uint64_t id, char out[32]) {
    snprintf(out, 32, "data/%016llx", (unsigned long long)id);
}

static int file_key(struct ofs_upper *up, struct unode *n) {
    uint8_t idb[8];
    ofs_put_u64(idb, n->id);
    return derive(up, "occlum-build upper v1 file", idb, 8, n->key, 16);
}

struct unode *ofs_upper_add(struct ofs_upper *up, struct unode *parent, const char *name,
                            size_t len, uint8_t type, uint32_t mode, const char *target) {
    struct unode *old = ofs_upper_child(parent, name, len);
    if (old && old->type != OFS_U_WHITEOUT) {
        errno = EEXIST;
        return NULL;
    }
    struct unode *n = new_node(name, len, type, mode);
    if (!n) return NULL;
    if (type == OFS_T_SYMLINK) {
        if (!(n->target = strdup(target))) {
            free_node(n);
            errno = ENOMEM;
            return NULL;
        }
        n->size = strlen(target);
    }
    if (type == OFS_T_FILE) {
        char dn[32];
        n->id = up->next_id++;
        data_name(n->id, dn);
        int fd = openat(up->dfd, dn, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            int e = errno;
            free_node(n);
            errno = e;
            return NULL;
        }
        close(fd);
    }
    if (old) {
        /* Something existed below: a new directory must not show the lower one's contents. */
        if (type == OFS_T_DIR) n->opaque = 1;
        unlink_child(old);
        free_node(old);
    }
    ofs_upper_touch(n);
    link_child(parent, n);
    ofs_upper_touch(parent);
    up->dirty = 1;
    return n;
}

static void drop_data(struct ofs_upper *up, struct unode *n) {
    if (n->type != OFS_T_FILE) return;
    if (up->ndoomed == up->capdoomed) {
        size_t cap = up->capdoomed ? 2 * up->capdoomed : 64;
        uint64_t *d = realloc(up->doomed, cap * sizeof *d);
        if (!d) { /* cannot defer: delete now */
            char dn[32];
            data_name(n->id, dn);
            unlinkat(up->dfd, dn, 0);
            return;
        }
        up->doomed = d;
        up->capdoomed = cap;
    }
    up->doomed[up->ndoomed++] = n->id;
}

static void delete_doomed(struct ofs_upper *up) {
    for (size_t i = 0; i < up->ndoomed; i++) {
        char dn[32];
        data_name(up->doomed[i], dn);
        unlinkat(up->dfd, dn, 0);
    }
    up->ndoomed = 0;
}

void ofs_upper_remove(struct ofs_upper *up, struct unode *n) {
    struct unode *parent = n->parent;
    for (struct unode *c = n->child, *nx; c; c = nx) { /* only whiteouts remain */
        nx = c->next;
        free_node(c);
    }
    n->child = NULL;
    unlink_child(n);
    if (parent) ofs_upper_touch(parent);
    up->dirty = 1;
    if (n->opens) {
        n->detached = 1;
        return;
    }
    drop_data(up, n);
    free_node(n);
}

struct unode *ofs_upper_whiteout(struct ofs_upper *up, struct unode *n) {
    struct unode *parent = n->parent;
    char *name = strdup(n->name);
    if (!name) return NULL;
    ofs_upper_remove(up, n);
    struct unode *w = new_node(name, strlen(name), OFS_U_WHITEOUT, 0);
    free(name);
    if (!w) return NULL;
    link_child(parent, w);
    up->dirty = 1;
    return w;
}

int ofs_upper_move(struct ofs_upper *up, struct unode *n, struct unode *parent, const char *name,
                   size_t len) {
    char *nn = strndup(name, len);
    if (!nn) return -ENOMEM;
    if (n->parent) ofs_upper_touch(n->parent);
    unlink_child(n);
    free(n->name);
    n->name = nn;
    link_child(parent, n);
    ofs_upper_touch(parent);
    up->dirty = 1;
    return 0;
}

/* ---- file contents ---- */

int ofs_upper_fopen(struct ofs_upper *up, struct unode *n) {
    if (n->opens++ > 0) return 0;
    char dn[32];
    data_name(n->id, dn);
    n->fd = openat(up->dfd, dn, O_RDWR | O_CLOEXEC);
    if (n->fd < 0 || file_key(up, n)) {
        int e = n->fd < 0 ? errno : EIO;
        if (n->fd >= 0) close(n->fd);
        n->fd = -1;
        n->opens--;
        return -e;
    }
    return 0;
}

void ofs_upper_fclose(struct ofs_upper *up, struct unode *n) {
    if (--n->opens > 0) return;
    if (n->fd >= 0) close(n->fd);
    n->fd = -1;
    if (n->detached) {
        drop_data(up, n);
        free_node(n);
    }
}

static uint64_t nblocks(uint64_t size) { return (size + OFS_BLOCK - 1) / OFS_BLOCK; }

/* Read and authenticate stored block b into plain (4096 bytes).  -EIO when it fails. */
static int get_block(struct unode *n, uint64_t b, uint8_t plain[OFS_BLOCK]) {
    uint8_t s[SBLOCK], aad[16];
    if (pread_full(n->fd, s, SBLOCK, (off_t)(b * SBLOCK)) != SBLOCK) return -EIO;
    ofs_put_u64(aad, n->id);
    ofs_put_u64(aad + 8, b);
    if (ofs_gcm_decrypt(n->key, s, aad, 16, s + OFS_GCM_NONCE, OFS_BLOCK, plain,
                        s + OFS_GCM_NONCE + OFS_BLOCK))
        return -EIO;
    return 0;
}

static int put_block(struct unode *n, uint64_t b, const uint8_t plain[OFS_BLOCK]) {
    uint8_t s[SBLOCK], aad[16];
    if (ofs_random(s, OFS_GCM_NONCE)) return -EIO;
    ofs_put_u64(aad, n->id);
    ofs_put_u64(aad + 8, b);
    if (ofs_gcm_encrypt(n->key, s, aad, 16, plain, OFS_BLOCK, s + OFS_GCM_NONCE,
                        s + OFS_GCM_NONCE + OFS_BLOCK))
        return -EIO;
    if (pwrite_full(n->fd, s, SBLOCK, (off_t)(b * SBLOCK)) < 0) return -errno;
    return 0;
}

ssize_t ofs_upper_read(struct ofs_upper *up, struct unode *n, void *buf, size_t len, uint64_t off) {
    (void)up;
    uint8_t plain[OFS_BLOCK];
    size_t done = 0;
    if (off >= n->size) return 0;
    if (len > n->size - off) len = (size_t)(n->size - off);
    while (done < len) {
        uint64_t pos = off + done, b = pos / OFS_BLOCK, in = pos % OFS_BLOCK;
        int rc = get_block(n, b, plain);
        if (rc) return rc;
        size_t k = OFS_BLOCK - (size_t)in;
        if (k > len - done) k = len - done;
        memcpy((uint8_t *)buf + done, plain + in, k);
        done += k;
    }
    return (ssize_t)done;
}

/* Fill blocks [from, to) with encrypted zeros (so a hole cannot be forged by zeroing). */
static int zero_blocks(struct unode *n, uint64_t from, uint64_t to) {
    static const uint8_t zero[OFS_BLOCK];
    for (uint64_t b = from; b < to; b++) {
        int rc = put_block(n, b, zero);
        if (rc) return rc;
    }
    return 0;
}

ssize_t ofs_upper_write(struct ofs_upper *up, struct unode *n, const void *buf, size_t len,
                        uint64_t off) {
    uint8_t plain[OFS_BLOCK];
    size_t done = 0;
    int rc;
    if (len == 0) return 0;
    if (off + len < off || off + len >= (1ull << 48)) return -EFBIG;
    uint64_t stored = nblocks(n->size);
    /* Blocks past the end that this write does not reach become encrypted zeros. */
    if (off / OFS_BLOCK > stored && (rc = zero_blocks(n, stored, off / OFS_BLOCK))) return rc;
    while (done < len) {
        uint64_t pos = off + done, b = pos / OFS_BLOCK, in = pos % OFS_BLOCK;
        size_t k = OFS_BLOCK - (size_t)in;
        if (k > len - done) k = len - done;
        if (k < OFS_BLOCK) {
            if (b < stored) {
                if ((rc = get_block(n, b, plain))) return rc;
            } else {
                memset(plain, 0, sizeof plain);
            }
        }
        memcpy(plain + in, (const uint8_t *)buf + done, k);
        if ((rc = put_block(n, b, plain))) return rc;
        done += k;
    }
    if (off + len > n->size) n->size = off + len;
    ofs_upper_touch(n);
    up->dirty = 1;
    return (ssize_t)len;
}

int ofs_upper_truncate(struct ofs_upper *up, struct unode *n, uint64_t size) {
    int rc;
    if (size >= (1ull << 48)) return -EFBIG;
    uint64_t have = nblocks(n->size), want = nblocks(size);
    if (size < n->size) {
        if (size % OFS_BLOCK) { /* keep the invariant: bytes past the end are zero */
            uint8_t plain[OFS_BLOCK];
            if ((rc = get_block(n, want - 1, plain))) return rc;
            memset(plain + size % OFS_BLOCK, 0, OFS_BLOCK - size % OFS_BLOCK);
            if ((rc = put_block(n, want - 1, plain))) return rc;
        }
        if (ftruncate(n->fd, (off_t)(want * SBLOCK)) < 0) return -errno;
    } else if (want > have && (rc = zero_blocks(n, have, want))) {
        return rc;
    }
    n->size = size;
    ofs_upper_touch(n);
    up->dirty = 1;
    return 0;
}

/* ---- the index ---- */

static size_t tree_count(const struct unode *n) {
    size_t c = 1;
    for (const struct unode *k = n->child; k; k = k->next)
        c += tree_count(k);
    return c;
}

static uint8_t *put_node(uint8_t *p, const struct unode *n, uint32_t parent, uint32_t *next) {
    uint32_t me = (*next)++;
    size_t nl = strlen(n->name), tl = n->target ? strlen(n->target) : 0;
    memset(p, 0, NODE_HDR);
    ofs_put_u32(p, parent);
    p[4] = n->type;
    p[5] = n->opaque ? 1 : 0;
    p[6] = (uint8_t)nl;
    p[7] = (uint8_t)(nl >> 8);
    ofs_put_u32(p + 8, n->mode);
    ofs_put_u64(p + 12, n->size);
    ofs_put_u64(p + 20, n->id);
    ofs_put_u64(p + 28, (uint64_t)n->mtime_sec);
    ofs_put_u32(p + 36, n->mtime_nsec);
    ofs_put_u32(p + 40, (uint32_t)tl);
    p += NODE_HDR;
    memcpy(p, n->name, nl);
    p += nl;
    if (tl) memcpy(p, n->target, tl);
    p += tl;
    for (const struct unode *k = n->child; k; k = k->next)
        p = put_node(p, k, me, next);
    return p;
}

static size_t tree_bytes(const struct unode *n) {
    size_t b = NODE_HDR + strlen(n->name) + (n->target ? strlen(n->target) : 0);
    for (const struct unode *k = n->child; k; k = k->next)
        b += tree_bytes(k);
    return b;
}

int ofs_upper_flush(struct ofs_upper *up) {
    if (!up->dirty) return 0;
    size_t plen = 16 + tree_bytes(up->root), total = IDX_HDR + plen + OFS_GCM_TAG;
    uint8_t *p = malloc(plen), *s = malloc(total);
    uint32_t next = 0;
    int rc = -EIO, fd = -1;
    if (!p || !s) {
        rc = -ENOMEM;
        goto out;
    }
    ofs_put_u64(p, up->next_id);
    ofs_put_u32(p + 8, (uint32_t)tree_count(up->root));
    ofs_put_u32(p + 12, 0);
    put_node(p + 16, up->root, NO_PARENT, &next);
    memcpy(s, "OCBUPI01", 8);
    ofs_put_u32(s + 8, 1);
    ofs_put_u32(s + 12, 0);
    if (ofs_random(s + 16, 12) ||
        ofs_gcm_encrypt(up->kidx, s + 16, s, 16, p, plen, s + IDX_HDR, s + IDX_HDR + plen))
        goto out;
    fd = openat(up->dfd, "index.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || pwrite_full(fd, s, total, 0) < 0 || fsync(fd) < 0 ||
        renameat(up->dfd, "index.tmp", up->dfd, "index") < 0 || fsync(up->dfd) < 0) {
        rc = -errno;
        goto out;
    }
    up->dirty = 0;
    delete_doomed(up);
    rc = 0;
out:
    if (fd >= 0) close(fd);
    free(p);
    free(s);
    return rc;
}

int ofs_upper_parse_index(struct ofs_upper *up, const uint8_t *p, size_t len, char *err,
                          size_t errlen) {
    const char *d = up->dir;
    struct unode **nodes = NULL, **last = NULL; /* last: each node's last child so far */
    int rc = OFS_ERR_VERIFY;
    if (len < 16) return ofs_fail(err, errlen, rc, "%s/index: too short", d);
    uint64_t next_id = ofs_get_u64(p);
    uint32_t count = ofs_get_u32(p + 8);
    if (count == 0 || ofs_get_u32(p + 12) != 0 || count > (len - 16) / NODE_HDR)
        return ofs_fail(err, errlen, rc, "%s/index: bad node count", d);
    nodes = calloc(count, sizeof *nodes);
    last = calloc(count, sizeof *last);
    if (!nodes || !last) {
        free(nodes);
        free(last);
        return ofs_fail(err, errlen, OFS_ERR_IO, "%s/index: out of memory", d);
    }
    size_t pos = 16;
    uint32_t i;
    for (i = 0; i < count; i++) {
        if (len - pos < NODE_HDR) {
            ofs_fail(err, errlen, rc, "%s/index: node %u truncated", d, i);
            goto bad;
        }
        const uint8_t *r = p + pos;
        uint32_t parent = ofs_get_u32(r), tl = ofs_get_u32(r + 40);
        uint16_t nl = ofs_get_u16(r + 6);
        uint8_t type = r[4], flags = r[5];
        pos += NODE_HDR;
        if (nl > len - pos || tl > len - pos - nl) {
            ofs_fail(err, errlen, rc, "%s/index: node %u runs past the end", d, i);
            goto bad;
        }
        const char *name = (const char *)p + pos, *target = name + nl;
        pos += nl + tl;
        int root = i == 0;
        int ok = type >= OFS_T_FILE && type <= OFS_U_WHITEOUT && flags <= 1 &&
                 (root ? parent == NO_PARENT && nl == 0 && type == OFS_T_DIR
                       : parent < i && nodes[parent]->type == OFS_T_DIR && nl > 0 &&
                             nl <= OFS_NAME_MAX && !memchr(name, '/', nl) && !memchr(name, 0, nl) &&
                             !(nl == 1 && name[0] == '.') &&
                             !(nl == 2 && name[0] == '.' && name[1] == '.')) &&
                 (type == OFS_T_SYMLINK ? tl > 0 && tl <= OFS_PATH_MAX && !memchr(target, 0, tl) &&
                                              ofs_get_u64(r + 12) == tl
                                        : tl == 0) &&
                 (type == OFS_T_FILE ? ofs_get_u64(r + 20) < next_id : ofs_get_u64(r + 20) == 0) &&
                 (flags == 0 || type == OFS_T_DIR) && ofs_get_u32(r + 8) <= 07777 &&
                 ofs_get_u32(r + 44) == 0 &&
                 (type == OFS_T_FILE || type == OFS_T_SYMLINK || ofs_get_u64(r + 12) == 0) &&
                 ofs_get_u32(r + 36) < 1000000000u &&
                 (type != OFS_T_FILE || ofs_get_u64(r + 12) < (1ull << 48));
        /* Children come in strictly increasing name order (so no duplicates), which also
         * keeps loading linear: each is appended after its predecessor. */
        if (ok && !root && last[parent]) {
            const char *prev = last[parent]->name;
            size_t pl = strlen(prev);
            int c = memcmp(prev, name, pl < nl ? pl : nl);
            if (c > 0 || (c == 0 && pl >= nl)) ok = 0;
        }
        if (!ok) {
            ofs_fail(err, errlen, rc, "%s/index: node %u is malformed", d, i);
            goto bad;
        }
        struct unode *n = new_node(name, nl, type, ofs_get_u32(r + 8));
        if (!n || (tl && !(n->target = strndup(target, tl)))) {
            if (n) free_node(n);
            rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s/index: out of memory", d);
            goto bad;
        }
        n->opaque = flags;
        n->size = ofs_get_u64(r + 12);
        n->id = ofs_get_u64(r + 20);
        n->mtime_sec = (int64_t)ofs_get_u64(r + 28);
        n->mtime_nsec = ofs_get_u32(r + 36);
        nodes[i] = n;
        if (!root) {
            n->parent = nodes[parent];
            if (last[parent])
                last[parent]->next = n;
            else
                nodes[parent]->child = n;
            last[parent] = n;
        }
    }
    if (pos != len) {
        ofs_fail(err, errlen, rc, "%s/index: %zu trailing bytes", d, len - pos);
        goto bad;
    }
    up->root = nodes[0];
    up->next_id = next_id;
    free(nodes);
    free(last);
    return OFS_OK;
bad:
    if (nodes && nodes[0])
        ofs_upper_free_tree(nodes[0]);
    else if (nodes)
        for (uint32_t j = 0; j < i; j++)
            free_node(nodes[j]);
    free(nodes);
    free(last);
    return rc;
}

static int read_file(int dfd, const char *name, uint8_t **out, size_t *len) {
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) return -1;
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_size > MAX_INDEX) {
        close(fd);
        errno = EFBIG;
        return -1;
    }
    *len = (size_t)st.st_size;
    *out = malloc(*len ? *len : 1);
    if (!*out || pread_full(fd, *out, *len, 0) != (ssize_t)*len) {
        free(*out);
        close(fd);
        errno = EIO;
        return -1;
    }
    close(fd);
    return 0;
}

static int create_layer(struct ofs_upper *up, char *err, size_t errlen) {
    uint8_t h[LAYER_SIZE] = "OCBUPL01";
    if (ofs_random(up->salt, 32))
        return ofs_fail(err, errlen, OFS_ERR_IO, "%s: no randomness for the layer salt", up->dir);
    ofs_put_u32(h + 8, 1);
    memcpy(h + 16, up->salt, 32);
    if (derive(up, "occlum-build upper v1 check", NULL, 0, h + 48, 16))
        return ofs_fail(err, errlen, OFS_ERR_IO, "%s: key derivation failed", up->dir);
    int fd = openat(up->dfd, "layer.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || pwrite_full(fd, h, sizeof h, 0) < 0 || fsync(fd) < 0 ||
        renameat(up->dfd, "layer.tmp", up->dfd, "layer") < 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return ofs_fail(err, errlen, OFS_ERR_IO, "%s/layer: cannot create: %s", up->dir, strerror(e));
    }
    close(fd);
    return OFS_OK;
}

int ofs_upper_open(const char *dir, const uint8_t key[16], uint32_t root_mode,
                   struct ofs_upper **out, char *err, size_t errlen) {
    struct ofs_upper *up = calloc(1, sizeof *up);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = OFS_OK;
    *out = NULL;
    if (!up || !(up->dir = strdup(dir))) {
        free(up);
        return ofs_fail(err, errlen, OFS_ERR_IO, "%s: out of memory", dir);
    }
    memcpy(up->master, key, 16);
    up->dfd = -1;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s: cannot create the writable layer: %s", dir,
                  strerror(errno));
        goto out;
    }
    up->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (up->dfd < 0 || (mkdirat(up->dfd, "data", 0700) < 0 && errno != EEXIST)) {
        rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s: cannot open the writable layer: %s", dir,
                  strerror(errno));
        goto out;
    }
    if (read_file(up->dfd, "layer", &buf, &len) < 0) {
        if (errno != ENOENT) {
            rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s/layer: %s", dir, strerror(errno));
            goto out;
        }
        struct stat st;
        if (fstatat(up->dfd, "index", &st, 0) == 0) {
            rc = ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s/layer: missing while an index exists", dir);
            goto out;
        }
        if ((rc = create_layer(up, err, errlen))) goto out;
    } else {
        uint8_t check[16];
        if (len != LAYER_SIZE || memcmp(buf, "OCBUPL01", 8) || ofs_get_u32(buf + 8) != 1 ||
            ofs_get_u32(buf + 12) != 0) {
            rc = ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s/layer: not a writable layer of version 1",
                      dir);
            goto out;
        }
        memcpy(up->salt, buf + 16, 32);
        if (derive(up, "occlum-build upper v1 check", NULL, 0, check, 16) ||
            ofs_memneq(check, buf + 48, 16)) {
            rc = ofs_fail(err, errlen, OFS_ERR_VERIFY,
                      "%s/layer: the writable layer was written with a different key", dir);
            goto out;
        }
    }
    free(buf);
    buf = NULL;
    if (derive(up, "occlum-build upper v1 index", NULL, 0, up->kidx, 16)) {
        rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s: key derivation failed", dir);
        goto out;
    }
    if (read_file(up->dfd, "index", &buf, &len) < 0) {
        if (errno != ENOENT) {
            rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s/index: %s", dir, strerror(errno));
            goto out;
        }
        if (!(up->root = new_node("", 0, OFS_T_DIR, root_mode))) {
            rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s: out of memory", dir);
            goto out;
        }
        up->next_id = 1;
        up->dirty = 1; /* written by the first flush */
    } else {
        uint8_t *plain;
        if (len < IDX_HDR + OFS_GCM_TAG || memcmp(buf, "OCBUPI01", 8) ||
            ofs_get_u32(buf + 8) != 1 || ofs_get_u32(buf + 12) != 0) {
            rc = ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s/index: not an index of version 1", dir);
            goto out;
        }
        size_t plen = len - IDX_HDR - OFS_GCM_TAG;
        if (!(plain = malloc(plen ? plen : 1))) {
            rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s: out of memory", dir);
            goto out;
        }
        if (ofs_gcm_decrypt(up->kidx, buf + 16, buf, 16, buf + IDX_HDR, plen, plain,
                            buf + len - OFS_GCM_TAG)) {
            free(plain);
            rc =
                ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s/index: fails authentication (tampered)", dir);
            goto out;
        }
        rc = ofs_upper_parse_index(up, plain, plen, err, errlen);
        free(plain);
        if (rc) goto out;
    }
out:
    free(buf);
    if (rc) {
        if (up->dfd >= 0) close(up->dfd);
        ofs_upper_free_tree(up->root);
        free(up->dir);
        free(up);
        return rc;
    }
    *out = up;
    return OFS_OK;
}

int ofs_upper_close(struct ofs_upper *up, char *err, size_t errlen) {
    int rc = OFS_OK;
    if (!up) return rc;
    int e = ofs_upper_flush(up);
    if (e) rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s/index: cannot write: %s", up->dir, strerror(-e));
    ofs_upper_free_tree(up->root);
    close(up->dfd);
    free(up->doomed);
    free(up->dir);
    free(up);
    return rc;
}
