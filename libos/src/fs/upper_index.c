/* Writable layer on disk: docs/formats/writable-layer.md sections 3 and 4.  The layer file
 * (salt, key check), the encrypted index (serialising and parsing the tree of nodes), and
 * opening/closing a layer. */
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

#define LAYER_SIZE 64
#define IDX_HDR 28
#define NODE_HDR 48
#define NO_PARENT 0xffffffffu
#define MAX_INDEX (1ull << 32)

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
    if (fd < 0 || ofs_upper_pwrite(fd, s, total, 0) < 0 || fsync(fd) < 0 ||
        renameat(up->dfd, "index.tmp", up->dfd, "index") < 0 || fsync(up->dfd) < 0) {
        rc = -errno;
        goto out;
    }
    up->dirty = 0;
    ofs_upper_delete_doomed(up);
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
        struct unode *n = ofs_unode_new(name, nl, type, ofs_get_u32(r + 8));
        if (!n || (tl && !(n->target = strndup(target, tl)))) {
            if (n) ofs_unode_free(n);
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
            ofs_unode_free(nodes[j]);
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
    if (!*out || ofs_upper_pread(fd, *out, *len, 0) != (ssize_t)*len) {
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
    if (ofs_upper_derive(up, "occlum-build upper v1 check", NULL, 0, h + 48, 16))
        return ofs_fail(err, errlen, OFS_ERR_IO, "%s: key derivation failed", up->dir);
    int fd = openat(up->dfd, "layer.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ofs_upper_pwrite(fd, h, sizeof h, 0) < 0 || fsync(fd) < 0 ||
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
    /* The layer and its data/ are 0700 whatever the umask (docs/formats/writable-layer.md):
     * what mkdir made of the mode is set right at once. */
    int made = mkdir(dir, 0700) == 0;
    if (!made && errno != EEXIST) {
        rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s: cannot create the writable layer: %s", dir,
                  strerror(errno));
        goto out;
    }
    up->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (up->dfd >= 0 && made && fchmod(up->dfd, 0700) < 0) {
        close(up->dfd);
        up->dfd = -1;
    }
    int made_data = up->dfd >= 0 && mkdirat(up->dfd, "data", 0700) == 0;
    if (up->dfd < 0 || (!made_data && errno != EEXIST) ||
        (made_data && fchmodat(up->dfd, "data", 0700, 0) < 0)) {
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
        if (ofs_upper_derive(up, "occlum-build upper v1 check", NULL, 0, check, 16) ||
            ofs_memneq(check, buf + 48, 16)) {
            rc = ofs_fail(err, errlen, OFS_ERR_VERIFY,
                      "%s/layer: the writable layer was written with a different key", dir);
            goto out;
        }
    }
    free(buf);
    buf = NULL;
    if (ofs_upper_derive(up, "occlum-build upper v1 index", NULL, 0, up->kidx, 16)) {
        rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s: key derivation failed", dir);
        goto out;
    }
    if (read_file(up->dfd, "index", &buf, &len) < 0) {
        if (errno != ENOENT) {
            rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s/index: %s", dir, strerror(errno));
            goto out;
        }
        if (!(up->root = ofs_unode_new("", 0, OFS_T_DIR, root_mode))) {
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
