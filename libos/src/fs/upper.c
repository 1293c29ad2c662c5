/* Writable layer, in memory and its file contents: docs/formats/writable-layer.md section 5
 * and the union rules of section 4.  The tree of nodes (add, remove, whiteout, move) and the
 * encrypted data blocks of files; the layer and index files are read and written by
 * upper_index.c. */
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
#include "upper_int.h"

#define SBLOCK (OFS_GCM_NONCE + OFS_BLOCK + OFS_GCM_TAG) /* stored block: nonce, ct, tag */

int ofs_upper_derive(const struct ofs_upper *up, const char *info, const void *extra,
                     size_t elen, void *out, size_t outlen) {
    uint8_t buf[96];
    size_t il = strlen(info);
    memcpy(buf, info, il);
    if (elen) memcpy(buf + il, extra, elen);
    return ofs_hkdf(up->master, 16, up->salt, 32, buf, il + elen, out, outlen);
}

ssize_t ofs_upper_pread(int fd, void *buf, size_t len, off_t off) {
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

int ofs_upper_pwrite(int fd, const void *buf, size_t len, off_t off) {
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

struct unode *ofs_unode_new(const char *name, size_t len, uint8_t type, uint32_t mode) {
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

void ofs_unode_free(struct unode *n) {
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
    ofs_unode_free(n);
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
    return ofs_upper_derive(up, "occlum-build upper v1 file", idb, 8, n->key, 16);
}

struct unode *ofs_upper_add(struct ofs_upper *up, struct unode *parent, const char *name,
                            size_t len, uint8_t type, uint32_t mode, const char *target) {
    struct unode *old = ofs_upper_child(parent, name, len);
    if (old && old->type != OFS_U_WHITEOUT) {
        errno = EEXIST;
        return NULL;
    }
    struct unode *n = ofs_unode_new(name, len, type, mode);
    if (!n) return NULL;
    if (type == OFS_T_SYMLINK) {
        if (!(n->target = strdup(target))) {
            ofs_unode_free(n);
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
            ofs_unode_free(n);
            errno = e;
            return NULL;
        }
        close(fd);
    }
    if (old) {
        /* Something existed below: a new directory must not show the lower one's contents. */
        if (type == OFS_T_DIR) n->opaque = 1;
        unlink_child(old);
        ofs_unode_free(old);
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

void ofs_upper_delete_doomed(struct ofs_upper *up) {
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
        ofs_unode_free(c);
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
    ofs_unode_free(n);
}

struct unode *ofs_upper_whiteout(struct ofs_upper *up, struct unode *n) {
    struct unode *parent = n->parent;
    char *name = strdup(n->name);
    if (!name) return NULL;
    ofs_upper_remove(up, n);
    struct unode *w = ofs_unode_new(name, strlen(name), OFS_U_WHITEOUT, 0);
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
        ofs_unode_free(n);
    }
}

static uint64_t nblocks(uint64_t size) { return (size + OFS_BLOCK - 1) / OFS_BLOCK; }

/* Read and authenticate stored block b into plain (4096 bytes).  -EIO when it fails. */
static int get_block(struct unode *n, uint64_t b, uint8_t plain[OFS_BLOCK]) {
    uint8_t s[SBLOCK], aad[16];
    if (ofs_upper_pread(n->fd, s, SBLOCK, (off_t)(b * SBLOCK)) != SBLOCK) return -EIO;
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
    if (ofs_upper_pwrite(n->fd, s, SBLOCK, (off_t)(b * SBLOCK)) < 0) return -errno;
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
