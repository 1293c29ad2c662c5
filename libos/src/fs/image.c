/* SEFS image reader: docs/formats/sefs.md (records), docs/formats/protected-fs.md (files). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ofs_crypto.h"
#include "ofs_err.h"

#define BLOCK 128
#define GROUP 1024
#define MAGIC 0x2F8DBE2Au
#define ROOT_ID 2
#define INODE_SIZE 112
#define ENTRY_SIZE 264
#define MAX_META (1ULL << 30) /* 8 Mi inodes */

static int is_freemap(uint64_t b) { return b % GROUP == 1; }

static void disk_name(uint32_t id, char out[33]) {
    uint8_t b[16] = {0};
    ofs_put_u32(b, id);
    ofs_hex(b, 16, out);
}

int ofs_image_parse(struct ofs_image *img, const uint8_t *meta, size_t len, char *err, size_t errlen) {
    const char *d = img->dir;
    if (len < 2 * BLOCK) return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: metadata: too short", d);
    uint32_t groups = ofs_get_u32(meta + 12);
    if (ofs_get_u32(meta) != MAGIC || groups == 0 || groups > (1u << 22) ||
        ofs_get_u32(meta + 4) != GROUP * groups)
        return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: metadata: bad superblock", d);
    uint64_t blocks = (uint64_t)GROUP * groups;
    if ((uint64_t)(GROUP * (uint64_t)(groups - 1) + 2) * BLOCK > len)
        return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: metadata: free map of group %u is missing", d,
                        groups - 1);
    uint64_t max_id = 0, used = 0;
    for (uint64_t b = 2; b < blocks; b++) {
        const uint8_t *fm = meta + (b / GROUP * GROUP + 1) * BLOCK;
        uint64_t bit = b % GROUP;
        if (is_freemap(b) || (fm[bit / 8] >> (bit % 8) & 1)) continue;
        if ((b + 1) * BLOCK - (BLOCK - INODE_SIZE) > len || b > UINT32_MAX - 1)
            return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: metadata: inode %llu is past the end", d,
                            (unsigned long long)b);
        max_id = b;
        used++;
    }
    if (ofs_get_u32(meta + 8) != blocks - groups - 1 - used)
        return ofs_fail(err, errlen, OFS_ERR_VERIFY,
                        "%s: metadata: the superblock's free count does not match the free map", d);
    if (max_id < ROOT_ID) return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: metadata: no root directory", d);
    free(img->inodes);
    img->inodes = calloc(max_id + 1, sizeof *img->inodes);
    if (!img->inodes) return ofs_fail(err, errlen, OFS_ERR_IO, "%s: out of memory", d);
    img->max_id = (uint32_t)max_id;
    for (uint64_t b = 2; b <= max_id; b++) {
        const uint8_t *fm = meta + (b / GROUP * GROUP + 1) * BLOCK;
        uint64_t bit = b % GROUP;
        if (is_freemap(b) || (fm[bit / 8] >> (bit % 8) & 1)) continue;
        const uint8_t *r = meta + b * BLOCK;
        struct ofs_inode *in = &img->inodes[b];
        uint8_t want[16] = {0};
        ofs_put_u32(want, (uint32_t)b);
        in->size = ofs_get_u64(r);
        in->type = ofs_get_u32(r + 8);
        in->mode = ofs_get_u16(r + 12);
        in->nlinks = ofs_get_u16(r + 14);
        in->blocks = ofs_get_u32(r + 16);
        in->mtime_sec = (int64_t)ofs_get_u64(r + 48); /* Timespec {i64 sec, i64 nsec} */
        uint64_t nsec = ofs_get_u64(r + 56);
        in->mtime_nsec = (uint32_t)nsec;
        memcpy(in->mac, r + 96, 16);
        if (memcmp(r + 80, want, 16) != 0 || in->type < OFS_T_FILE || in->type > OFS_T_SYMLINK ||
            in->mode > 0777 || (in->type == OFS_T_DIR && in->blocks < 2) || nsec >= 1000000000u)
            return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: metadata: inode %llu is malformed", d,
                            (unsigned long long)b);
    }
    if (img->inodes[ROOT_ID].type != OFS_T_DIR)
        return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: metadata: no root directory", d);
    return OFS_OK;
}

int ofs_sefs_dir_parse(const uint8_t *data, size_t len, uint32_t id, uint32_t parent,
                       int (*each)(void *ctx, const char *name, size_t nl, uint32_t id, uint32_t type),
                       void *ctx, const char *where, char *err, size_t errlen) {
    if (len % ENTRY_SIZE || len < 2 * ENTRY_SIZE)
        return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: directory content of %zu bytes", where, len);
    for (size_t k = 0; k < len / ENTRY_SIZE; k++) {
        const uint8_t *r = data + k * ENTRY_SIZE;
        const char *name = (const char *)r + 4;
        size_t nl = strnlen(name, 256);
        uint32_t cid = ofs_get_u32(r), type = ofs_get_u32(r + 260);
        if (k < 2) {
            int ok = nl == k + 1 && memcmp(name, "..", nl) == 0 && type == OFS_T_DIR &&
                     cid == (k == 0 ? id : parent);
            if (!ok) return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: malformed '.' or '..' entry", where);
            continue;
        }
        if (nl == 0 || nl > OFS_NAME_MAX || memchr(name, '/', nl) || (nl == 1 && name[0] == '.') ||
            (nl == 2 && name[0] == '.' && name[1] == '.'))
            return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: entry %zu has a bad name", where, k);
        int rc = each(ctx, name, nl, cid, type);
        if (rc) return rc;
    }
    return OFS_OK;
}

/* ------------------------------------------------------------------ loading the tree */
struct load {
    struct ofs_image *img;
    struct ofs_entry *es; /* DFS order while loading; path/target are offsets into str */
    size_t n, cap;
    char *str;
    size_t slen, scap;
    uint8_t *seen; /* by id */
    uint32_t cur;  /* index of the directory being read */
    char *err;
    size_t errlen;
};

static int push_str(struct load *L, const char *s, size_t n, size_t *off) {
    if (L->slen + n + 1 > L->scap) {
        size_t c = (L->scap ? L->scap * 2 : 4096) + n;
        char *p = realloc(L->str, c);
        if (!p) return -1;
        L->str = p;
        L->scap = c;
    }
    memcpy(L->str + L->slen, s, n);
    *off = L->slen;
    L->slen += n;
    L->str[L->slen++] = 0;
    return 0;
}

static int add_entry(struct load *L, const char *name, size_t nl, uint32_t id, uint32_t type) {
    const struct ofs_image *img = L->img;
    char sb[256];
    struct ofs_entry *par = &L->es[L->cur];
    /* the child's path: parent path + "/" + name */
    size_t plen = par->path_len, total = plen ? plen + 1 + nl : nl;
    if (total > OFS_PATH_MAX)
        return ofs_fail(L->err, L->errlen, OFS_ERR_VERIFY, "%s: /%s: path longer than %d bytes", img->dir,
                        ofs_show_path(L->str + (size_t)par->path, plen, sb), OFS_PATH_MAX);
    char path[OFS_PATH_MAX + 1];
    memcpy(path, L->str + (size_t)par->path, plen);
    if (plen) path[plen] = '/';
    memcpy(path + (plen ? plen + 1 : 0), name, nl);
    if (id < ROOT_ID || id > img->max_id || img->inodes[id].type == 0 || img->inodes[id].type != type)
        return ofs_fail(L->err, L->errlen, OFS_ERR_VERIFY, "%s: /%s: names inode %u, which is %s", img->dir,
                        ofs_show_path(path, total, sb), id,
                        (id >= ROOT_ID && id <= img->max_id && img->inodes[id].type) ? "of another type"
                                                                                      : "not in use");
    if (L->seen[id])
        return ofs_fail(L->err, L->errlen, OFS_ERR_VERIFY, "%s: /%s: inode %u is reachable twice", img->dir,
                        ofs_show_path(path, total, sb), id);
    L->seen[id] = 1;
    if (L->n == L->cap) {
        size_t c = L->cap ? L->cap * 2 : 256;
        struct ofs_entry *p = realloc(L->es, c * sizeof *p);
        if (!p) return ofs_fail(L->err, L->errlen, OFS_ERR_IO, "%s: out of memory", img->dir);
        L->es = p;
        L->cap = c;
        par = &L->es[L->cur];
    }
    size_t off;
    if (push_str(L, path, total, &off))
        return ofs_fail(L->err, L->errlen, OFS_ERR_IO, "%s: out of memory", img->dir);
    const struct ofs_inode *in = &img->inodes[id];
    struct ofs_entry *e = &L->es[L->n++];
    memset(e, 0, sizeof *e);
    e->path = (const char *)(uintptr_t)off;
    e->path_len = (uint32_t)total;
    e->mode = in->mode;
    e->mtime_sec = in->mtime_sec;
    e->mtime_nsec = in->mtime_nsec;
    e->type = (uint8_t)type;
    e->size = type == OFS_T_DIR ? 0 : in->size;
    e->id = id;
    memcpy(e->mac, in->mac, 16);
    e->parent = L->cur;
    return 0;
}

/* The verified content of entry i (dirs and symlinks; bounded by the caller). */
static int read_content(struct load *L, size_t i, uint64_t want, uint8_t **out) {
    struct ofs_ifile f;
    struct ofs_entry e = L->es[i];
    e.path = L->str + (size_t)e.path;
    uint8_t *buf = malloc(want ? want : 1);
    if (!buf) return ofs_fail(L->err, L->errlen, OFS_ERR_IO, "%s: out of memory", L->img->dir);
    int rc = ofs_ifile_open(L->img, &e, &f, L->err, L->errlen);
    if (rc == OFS_OK && f.pf.m.size != want)
        rc = ofs_fail(L->err, L->errlen, OFS_ERR_VERIFY, "%s: content is %llu bytes, the inode says %llu",
                      f.where, (unsigned long long)f.pf.m.size, (unsigned long long)want);
    if (rc == OFS_OK && want) {
        ssize_t got = ofs_ifile_read(&f, buf, want, 0, L->err, L->errlen);
        if (got != (ssize_t)want) rc = OFS_ERR_VERIFY;
    }
    ofs_ifile_close(&f);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    return OFS_OK;
}

static int each_child(void *ctx, const char *name, size_t nl, uint32_t id, uint32_t type) {
    return add_entry(ctx, name, nl, id, type);
}

static int cmp_idx(const void *a, const void *b) {
    const struct ofs_entry *x = (const struct ofs_entry *)a, *y = (const struct ofs_entry *)b;
    size_t xl = x->path_len, yl = y->path_len;
    int c = memcmp(x->path, y->path, xl < yl ? xl : yl);
    if (c) return c;
    return xl < yl ? -1 : xl > yl;
}

static int load_tree(struct ofs_image *img, char *err, size_t errlen) {
    struct load L = {.img = img, .err = err, .errlen = errlen};
    int rc = OFS_OK;
    L.seen = calloc((size_t)img->max_id + 1, 1);
    L.es = calloc(256, sizeof *L.es);
    L.cap = 256;
    size_t off;
    if (!L.seen || !L.es || push_str(&L, "", 0, &off)) {
        rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s: out of memory", img->dir);
        goto out;
    }
    L.n = 1;
    L.es[0] = (struct ofs_entry){.path = (const char *)(uintptr_t)off, .mode = img->inodes[ROOT_ID].mode,
                                 .mtime_sec = img->inodes[ROOT_ID].mtime_sec,
                                 .mtime_nsec = img->inodes[ROOT_ID].mtime_nsec,
                                 .type = OFS_T_DIR, .id = ROOT_ID};
    memcpy(L.es[0].mac, img->inodes[ROOT_ID].mac, 16);
    L.seen[ROOT_ID] = 1;
    for (size_t i = 0; i < L.n && rc == OFS_OK; i++) {
        const struct ofs_inode *in = &img->inodes[L.es[i].id];
        uint8_t *data = NULL;
        if (L.es[i].type == OFS_T_DIR) {
            uint64_t want = (uint64_t)ENTRY_SIZE * in->blocks;
            if (want > (1u << 30)) {
                rc = ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: inode %u: directory too large", img->dir,
                              L.es[i].id);
                break;
            }
            if ((rc = read_content(&L, i, want, &data))) break;
            char where[OFS_PATH_MAX + 64], sb[256];
            snprintf(where, sizeof where, "%s: /%s", img->dir,
                     ofs_show_path(L.str + (size_t)L.es[i].path, L.es[i].path_len, sb));
            L.cur = (uint32_t)i;
            uint32_t parent = i == 0 ? ROOT_ID : L.es[L.es[i].parent].id;
            rc = ofs_sefs_dir_parse(data, want, L.es[i].id, parent, each_child, &L, where, err, errlen);
        } else if (L.es[i].type == OFS_T_SYMLINK) {
            if (in->size == 0 || in->size > OFS_PATH_MAX) {
                rc = ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: inode %u: bad symlink size", img->dir, L.es[i].id);
                break;
            }
            if ((rc = read_content(&L, i, in->size, &data))) break;
            if (push_str(&L, (const char *)data, in->size, &off))
                rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s: out of memory", img->dir);
            else
                L.es[i].target = (const char *)(uintptr_t)off;
        }
        free(data);
    }
    if (rc) goto out;
    if (L.n > UINT32_MAX) {
        rc = ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: too many entries", img->dir);
        goto out;
    }
    /* Resolve offsets, sort by path, remap parents, group children. */
    for (size_t i = 0; i < L.n; i++) {
        L.es[i].path = L.str + (size_t)L.es[i].path;
        if (L.es[i].type == OFS_T_SYMLINK) L.es[i].target = L.str + (size_t)L.es[i].target;
        L.es[i].first_child = (uint32_t)i; /* the DFS index, kept through the sort */
    }
    qsort(L.es, L.n, sizeof *L.es, cmp_idx);
    uint32_t *pos = malloc(L.n * sizeof *pos);
    img->children = calloc(L.n ? L.n : 1, sizeof *img->children);
    if (!pos || !img->children) {
        free(pos);
        rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s: out of memory", img->dir);
        goto out;
    }
    for (size_t i = 0; i < L.n; i++) pos[L.es[i].first_child] = (uint32_t)i;
    for (size_t i = 0; i < L.n; i++) {
        L.es[i].parent = pos[L.es[i].parent];
        L.es[i].first_child = L.es[i].child_count = 0;
    }
    for (size_t i = 1; i < L.n; i++) L.es[L.es[i].parent].child_count++;
    uint32_t acc = 0;
    for (size_t i = 0; i < L.n; i++) {
        L.es[i].first_child = acc;
        acc += L.es[i].child_count;
        L.es[i].child_count = 0;
    }
    for (size_t i = 1; i < L.n; i++) {
        struct ofs_entry *p = &L.es[L.es[i].parent];
        img->children[p->first_child + p->child_count++] = (uint32_t)i;
    }
    free(pos);
    img->entries = L.es;
    img->count = (uint32_t)L.n;
    img->strings = L.str;
    L.es = NULL;
    L.str = NULL;
out:
    free(L.es);
    free(L.str);
    free(L.seen);
    return rc;
}

/* ------------------------------------------------------------------ open / close */
int ofs_image_open(const char *dir, const uint8_t mac[16], const uint8_t *key,
                   struct ofs_image **out, char *err, size_t errlen) {
    struct ofs_image *img = calloc(1, sizeof *img);
    uint8_t *meta = NULL;
    int rc;
    *out = NULL;
    if (!img || !(img->dir = strdup(dir))) {
        free(img);
        return ofs_fail(err, errlen, OFS_ERR_IO, "%s: out of memory", dir);
    }
    img->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (img->dir_fd < 0) {
        rc = ofs_fail(err, errlen, OFS_ERR_INPUT, "%s: cannot open image directory: %s", dir, strerror(errno));
        goto out;
    }
    if (key) {
        img->encrypted = 1;
        memcpy(img->key, key, 16);
    }
    char where[OFS_PATH_MAX + 64];
    snprintf(where, sizeof where, "%s: metadata", dir);
    struct pfs_file pf;
    if ((rc = pfs_open(&pf, img->dir_fd, "metadata", key, where, err, errlen))) goto out;
    if (ofs_memneq(pf.m.mac, mac, 16)) {
        char want[48], got[48];
        ofs_format_hex16(mac, want);
        ofs_format_hex16(pf.m.mac, got);
        pfs_close(&pf);
        rc = ofs_fail(err, errlen, OFS_ERR_VERIFY,
                      "%s: metadata: root MAC mismatch (expected %s, the image holds %s): the image was "
                      "modified or does not belong to this build", dir, want, got);
        goto out;
    }
    if (pf.m.size > MAX_META) {
        pfs_close(&pf);
        rc = ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: metadata: too large", dir);
        goto out;
    }
    size_t len = (size_t)pf.m.size;
    meta = malloc(len ? len : 1);
    ssize_t got = meta ? pfs_read(&pf, meta, len, 0, err, errlen) : -1;
    pfs_close(&pf);
    if (!meta) {
        rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s: out of memory", dir);
        goto out;
    }
    if (got != (ssize_t)len) {
        rc = OFS_ERR_VERIFY;
        goto out;
    }
    if ((rc = ofs_image_parse(img, meta, len, err, errlen))) goto out;
    rc = load_tree(img, err, errlen);
out:
    free(meta);
    if (rc) {
        ofs_image_close(img);
        img = NULL;
    }
    *out = img;
    return rc;
}

void ofs_image_clear(struct ofs_image *img) {
    free(img->inodes);
    free(img->entries);
    free(img->children);
    free(img->strings);
    img->inodes = NULL;
    img->entries = NULL;
    img->children = NULL;
    img->strings = NULL;
    img->count = 0;
}

void ofs_image_close(struct ofs_image *img) {
    if (!img) return;
    ofs_image_clear(img);
    if (img->dir_fd > 0) close(img->dir_fd);
    OPENSSL_cleanse(img->key, sizeof img->key);
    free(img->dir);
    free(img);
}

static int cmp_path(const char *a, size_t al, const char *b, size_t bl) {
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c) return c;
    return al < bl ? -1 : al > bl;
}

const struct ofs_entry *ofs_image_lookup(const struct ofs_image *img, const char *path, size_t len) {
    uint32_t lo = 0, hi = img->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = cmp_path(img->entries[mid].path, img->entries[mid].path_len, path, len);
        if (c == 0) return &img->entries[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *ofs_entry_name(const struct ofs_entry *e, size_t *len) {
    const char *slash = memrchr(e->path, '/', e->path_len);
    const char *n = slash ? slash + 1 : e->path;
    *len = e->path_len - (size_t)(n - e->path);
    return n;
}

/* ------------------------------------------------------------------ files */
int ofs_ifile_open(const struct ofs_image *img, const struct ofs_entry *e, struct ofs_ifile *f,
                   char *err, size_t errlen) {
    char sb[256], name[33];
    memset(f, 0, sizeof *f);
    f->img = img;
    f->e = e;
    f->pf.fd = -1;
    snprintf(f->where, sizeof f->where, "%s: /%s", img->dir, ofs_show_path(e->path, e->path_len, sb));
    disk_name(e->id, name);
    int rc = pfs_open(&f->pf, img->dir_fd, name, img->encrypted ? img->key : NULL, f->where, err, errlen);
    if (rc) return rc;
    if (ofs_memneq(f->pf.m.mac, e->mac, 16)) {
        pfs_close(&f->pf);
        return ofs_fail(err, errlen, OFS_ERR_VERIFY,
                        "%s: inode MAC mismatch (%s is not the file the metadata names)", f->where, name);
    }
    if (e->type == OFS_T_FILE && f->pf.m.size != e->size) {
        pfs_close(&f->pf);
        return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: content is %llu bytes, the inode says %llu",
                        f->where, (unsigned long long)f->pf.m.size, (unsigned long long)e->size);
    }
    return OFS_OK;
}

void ofs_ifile_close(struct ofs_ifile *f) { pfs_close(&f->pf); }

ssize_t ofs_ifile_read(struct ofs_ifile *f, void *buf, size_t len, uint64_t off, char *err, size_t errlen) {
    ssize_t n = pfs_read(&f->pf, buf, len, off, err, errlen);
    return n < 0 ? -EIO : n;
}
