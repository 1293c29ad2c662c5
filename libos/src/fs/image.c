/* Image reader, metadata: docs/formats/image.md sections 3 and 5 (verify and decrypt the
 * metadata, parse the entry table, look paths up).  The objects (section 4) are read by
 * image_file.c. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ofs_crypto.h"
#include "ofs_err.h"

#define HDR 64
#define ENT 96
#define EHDR 28               /* encrypted metadata header: magic, version, zero, nonce */
#define MAX_META (1ull << 34) /* refuse absurd metadata sizes before allocating */

static int is_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static int derive(const uint8_t key[16], const char *info, void *out, size_t outlen) {
    return ofs_hkdf(key, 16, "", 0, info, strlen(info), out, outlen);
}

/* Check a path's components: none empty, "." or "..", no NUL, each at most 255 bytes. */
static const char *bad_path(const char *p, size_t len) {
    size_t start = 0;
    if (len > OFS_PATH_MAX) return "path longer than 4095 bytes";
    for (size_t i = 0; i <= len; i++) {
        if (i < len && p[i] == 0) return "NUL byte in path";
        if (i == len || p[i] == '/') {
            size_t c = i - start;
            if (c == 0) return "empty path component";
            if (c > OFS_NAME_MAX) return "path component longer than 255 bytes";
            if ((c == 1 && p[start] == '.') || (c == 2 && p[start] == '.' && p[start + 1] == '.'))
                return "'.' or '..' path component";
            start = i + 1;
        }
    }
    return NULL;
}

static int cmp_path(const char *a, size_t al, const char *b, size_t bl) {
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c) return c;
    return al < bl ? -1 : al > bl;
}

/* Binary search among entries [0, n). */
static const struct ofs_entry *search(const struct ofs_entry *es, uint32_t n, const char *p,
                                      size_t len) {
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = cmp_path(es[mid].path, es[mid].path_len, p, len);
        if (c == 0) return &es[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Decrypt encrypted stored metadata (section 5) into a fresh buffer. */
static int decrypt_meta(const struct ofs_image *img, const uint8_t *s, size_t len,
                        const uint8_t *key, uint8_t **plain, size_t *plen, char *err,
                        size_t errlen) {
    const char *d = img->dir;
    if (!key)
        return ofs_fail(err, errlen, OFS_ERR_VERIFY,
                    "%s/metadata: metadata-malformed: the image is encrypted but no image key was "
                    "given (--image-key)",
                    d);
    if (len < EHDR + OFS_GCM_TAG + HDR)
        return ofs_fail(err, errlen, OFS_ERR_VERIFY,
                    "%s/metadata: metadata-malformed: encrypted metadata too short", d);
    if (ofs_get_u32(s + 8) != 1)
        return ofs_fail(err, errlen, OFS_ERR_VERIFY,
                    "%s/metadata: metadata-malformed: unknown version %u", d, ofs_get_u32(s + 8));
    if (!is_zero(s + 12, 4))
        return ofs_fail(err, errlen, OFS_ERR_VERIFY,
                    "%s/metadata: metadata-malformed: non-zero reserved bytes", d);
    uint8_t kmeta[16], knonce[32], nonce[32];
    size_t n = len - EHDR - OFS_GCM_TAG;
    uint8_t *p = malloc(n ? n : 1);
    if (!p)
        return ofs_fail(err, errlen, OFS_ERR_IO, "%s/metadata: metadata-malformed: out of memory", d);
    if (derive(key, "occlum-build image v1 metadata", kmeta, 16) ||
        derive(key, "occlum-build image v1 metadata-nonce", knonce, 32) ||
        ofs_gcm_decrypt(kmeta, s + 16, s, 16, s + EHDR, n, p, s + len - OFS_GCM_TAG)) {
        free(p);
        return ofs_fail(err, errlen, OFS_ERR_VERIFY,
                    "%s/metadata: metadata-decrypt: the metadata does not decrypt: wrong image key",
                    d);
    }
    ofs_hmac_sha256(knonce, 32, p, n, nonce);
    if (ofs_memneq(nonce, s + 16, 12)) {
        free(p);
        return ofs_fail(err, errlen, OFS_ERR_VERIFY,
                    "%s/metadata: metadata-malformed: metadata nonce is not the one derived from "
                    "its content",
                    d);
    }
    *plain = p;
    *plen = n;
    return OFS_OK;
}

void ofs_image_clear(struct ofs_image *img) {
    free(img->meta);
    free(img->entries);
    free(img->children);
    img->meta = NULL;
    img->entries = NULL;
    img->children = NULL;
    img->count = 0;
}

int ofs_image_parse(struct ofs_image *img, const uint8_t *s, size_t len, const uint8_t *key,
                    char *err, size_t errlen) {
    const char *d = img->dir;
    char sb[256];
    int rc, enc;
    uint8_t *p = NULL;
    size_t plen = 0;

    if (len >= 8 && memcmp(s, "OCBIMGE1", 8) == 0) {
        enc = 1;
        rc = decrypt_meta(img, s, len, key, &p, &plen, err, errlen);
        if (rc) return rc;
    } else if (len >= 8 && memcmp(s, "OCBIMG01", 8) == 0) {
        enc = 0;
        if (key)
            return ofs_fail(err, errlen, OFS_ERR_VERIFY,
                        "%s/metadata: metadata-malformed: an image key was given but the image is "
                        "integrity-only",
                        d);
        p = malloc(len ? len : 1);
        if (!p)
            return ofs_fail(err, errlen, OFS_ERR_IO, "%s/metadata: metadata-malformed: out of memory",
                        d);
        memcpy(p, s, len);
        plen = len;
    } else {
        return ofs_fail(err, errlen, OFS_ERR_VERIFY,
                    "%s/metadata: metadata-malformed: bad magic (not an image)", d);
    }
    img->meta = p;
    img->meta_len = plen;
    img->encrypted = enc;
    if (key) memcpy(img->key, key, 16);

#define REJECT(...)                                                                                \
    do {                                                                                           \
        rc = ofs_fail(err, errlen, OFS_ERR_VERIFY, __VA_ARGS__);                                       \
        goto bad;                                                                                  \
    } while (0)

    if (plen < HDR)
        REJECT("%s/metadata: metadata-malformed: metadata too short (%zu bytes)", d, plen);
    if (memcmp(p, "OCBIMG01", 8) != 0)
        REJECT("%s/metadata: metadata-malformed: bad magic in the metadata", d);
    if (ofs_get_u32(p + 8) != 1)
        REJECT("%s/metadata: metadata-malformed: unknown version %u", d, ofs_get_u32(p + 8));
    uint32_t flags = ofs_get_u32(p + 12);
    if (flags & ~1u) REJECT("%s/metadata: metadata-malformed: unknown flag bits 0x%x", d, flags);
    if ((flags & 1u) != (uint32_t)enc)
        REJECT("%s/metadata: metadata-malformed: encrypted flag does not match the metadata form",
               d);
    if (ofs_get_u32(p + 16) != OFS_BLOCK)
        REJECT("%s/metadata: metadata-malformed: unsupported block size %u", d,
               ofs_get_u32(p + 16));
    uint32_t count = ofs_get_u32(p + 20);
    uint64_t strsz = ofs_get_u64(p + 24);
    if (!is_zero(p + 32, 32))
        REJECT("%s/metadata: metadata-malformed: non-zero reserved bytes in the header", d);
    if (count == 0) REJECT("%s/metadata: metadata-malformed: no root entry", d);
    uint64_t ents = (uint64_t)count * ENT;
    if (ents > plen - HDR || strsz != plen - HDR - ents)
        REJECT("%s/metadata: metadata-malformed: size %zu does not match %u entries and a "
               "%llu-byte string table",
               d, plen, count, (unsigned long long)strsz);
    const char *strtab = (const char *)p + HDR + ents;

    img->entries = calloc(count, sizeof *img->entries);
    img->children = calloc(count, sizeof *img->children);
    if (!img->entries || !img->children)
        REJECT("%s/metadata: metadata-malformed: out of memory", d);
    img->count = count;

    uint64_t cursor = 0;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *r = p + HDR + (uint64_t)i * ENT;
        struct ofs_entry *e = &img->entries[i];
        uint64_t poff = ofs_get_u64(r), toff = ofs_get_u64(r + 32);
        uint32_t plen_ = ofs_get_u32(r + 8);
        e->type = r[12];
        e->mode = ofs_get_u32(r + 16);
        e->size = ofs_get_u64(r + 24);
        e->root = r + 40;
        e->file_id = r + 72;
        if (poff > strsz || plen_ > strsz - poff)
            REJECT("%s/metadata: metadata-malformed: entry %u: path offset/length outside the "
                   "string table",
                   d, i);
        e->path = strtab + poff;
        e->path_len = plen_;
        const char *shown = ofs_show_path(e->path, plen_, sb);
        if (!is_zero(r + 13, 3) || !is_zero(r + 20, 4) || !is_zero(r + 88, 8))
            REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): non-zero reserved bytes", d,
                   i, shown);
        if (e->type < OFS_T_FILE || e->type > OFS_T_SYMLINK)
            REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): unknown type %u", d, i, shown,
                   e->type);
        if ((e->mode & ~0777u) || (e->type == OFS_T_SYMLINK && e->mode != 0777))
            REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): invalid mode 0%o", d, i,
                   shown, e->mode);
        if (poff != cursor)
            REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): string table is not in entry "
                   "order",
                   d, i, shown);
        cursor += plen_;
        if (i == 0) {
            if (plen_ != 0)
                REJECT("%s/metadata: metadata-malformed: entry 0 is not the root (empty path)", d);
            if (e->type != OFS_T_DIR)
                REJECT("%s/metadata: metadata-malformed: the root is not a directory", d);
        } else {
            const char *why = bad_path(e->path, plen_);
            if (why)
                REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): %s", d, i, shown, why);
            const struct ofs_entry *prev = &img->entries[i - 1];
            int c = cmp_path(prev->path, prev->path_len, e->path, plen_);
            if (c == 0)
                REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): duplicated path", d, i,
                       shown);
            if (c > 0)
                REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): entries out of order", d,
                       i, shown);
        }
        if (e->type == OFS_T_SYMLINK) {
            if (toff > strsz || e->size > strsz - toff)
                REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): link target outside the "
                       "string table",
                       d, i, shown);
            if (toff != cursor)
                REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): string table is not in "
                       "entry order",
                       d, i, shown);
            if (e->size == 0 || e->size > OFS_PATH_MAX)
                REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): link target not 1 to "
                       "4095 bytes",
                       d, i, shown);
            e->target = strtab + toff;
            if (memchr(e->target, 0, e->size))
                REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): NUL byte in link target",
                       d, i, shown);
            cursor += e->size;
        } else if (toff != 0) {
            REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): target offset set on a "
                   "non-symlink",
                   d, i, shown);
        }
        int has_obj = e->type == OFS_T_FILE && e->size > 0;
        if (e->type == OFS_T_DIR && e->size != 0)
            REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): directory with non-zero size",
                   d, i, shown);
        if (e->type == OFS_T_FILE && e->size >= (1ull << 48))
            REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): file size too large", d, i,
                   shown);
        if (has_obj && is_zero(e->root, 32))
            REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): file without an object root",
                   d, i, shown);
        if (!has_obj && !is_zero(e->root, 32))
            REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): object root set on an entry "
                   "without content",
                   d, i, shown);
        if ((!has_obj || !enc) && !is_zero(e->file_id, 16))
            REJECT(
                "%s/metadata: metadata-malformed: entry %u ('%s'): file id set where none belongs",
                d, i, shown);
        /* The parent precedes the entry (it is a prefix); it must exist and be a directory. */
        if (i > 0) {
            const char *slash = memrchr(e->path, '/', plen_);
            size_t pl = slash ? (size_t)(slash - e->path) : 0;
            const struct ofs_entry *par = search(img->entries, i, e->path, pl);
            if (!par)
                REJECT("%s/metadata: metadata-malformed: entry %u ('%s'): missing parent directory",
                       d, i, shown);
            if (par->type != OFS_T_DIR)
                REJECT(
                    "%s/metadata: metadata-malformed: entry %u ('%s'): parent is not a directory",
                    d, i, shown);
            e->parent = (uint32_t)(par - img->entries);
            img->entries[e->parent].child_count++;
        }
    }
    if (cursor != strsz)
        REJECT("%s/metadata: metadata-malformed: string table has %llu unused bytes", d,
               (unsigned long long)(strsz - cursor));
    /* Group children by parent, in entry (= name) order. */
    uint32_t next = 0;
    for (uint32_t i = 0; i < count; i++) {
        img->entries[i].first_child = next;
        next += img->entries[i].child_count;
        img->entries[i].child_count = 0;
    }
    for (uint32_t i = 1; i < count; i++) {
        struct ofs_entry *par = &img->entries[img->entries[i].parent];
        img->children[par->first_child + par->child_count++] = i;
    }
    return OFS_OK;
bad:
    ofs_image_clear(img);
    return rc;
#undef REJECT
}

static int read_all(int fd, uint8_t **out, size_t *len, size_t max) {
    struct stat st;
    if (fstat(fd, &st) < 0) return -1;
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        errno = EINVAL;
        return -1;
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) return -1;
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(b);
            if (r == 0) errno = EIO;
            return -1;
        }
        got += (size_t)r;
    }
    *out = b;
    *len = n;
    return 0;
}

int ofs_image_open(const char *dir, const uint8_t mac[16], const uint8_t *key,
                   struct ofs_image **out, char *err, size_t errlen) {
    struct ofs_image *img = calloc(1, sizeof *img);
    uint8_t *stored = NULL, h[32];
    size_t len = 0;
    int rc, dfd = -1, fd = -1;
    if (!img || !(img->dir = strdup(dir))) {
        free(img);
        return ofs_fail(err, errlen, OFS_ERR_IO, "%s: out of memory", dir);
    }
    img->objects_fd = -1;
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        rc = ofs_fail(err, errlen, OFS_ERR_INPUT, "%s: cannot open image directory: %s", dir,
                  strerror(errno));
        goto out;
    }
    fd = openat(dfd, "metadata", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read_all(fd, &stored, &len, MAX_META) < 0) {
        rc = ofs_fail(err, errlen, errno == ENOENT ? OFS_ERR_INPUT : OFS_ERR_IO,
                  "%s/metadata: mac-mismatch: cannot read the image metadata: %s", dir,
                  strerror(errno));
        goto out;
    }
    ofs_sha256(stored, len, h);
    if (ofs_memneq(h, mac, 16)) {
        char want[48], got[48];
        ofs_format_hex16(mac, want);
        ofs_format_hex16(h, got);
        rc = ofs_fail(
            err, errlen, OFS_ERR_VERIFY,
            "%s/metadata: mac-mismatch: image MAC mismatch (expected %s, metadata hashes to %s): "
            "the image was modified or does not belong to this build",
            dir, want, got);
        goto out;
    }
    rc = ofs_image_parse(img, stored, len, key, err, errlen);
    if (rc) goto out;
    img->objects_fd = openat(dfd, "objects", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (img->objects_fd < 0 && errno != ENOENT) {
        rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s/objects: %s", dir, strerror(errno));
        goto out;
    }
out:
    free(stored);
    if (fd >= 0) close(fd);
    if (dfd >= 0) close(dfd);
    if (rc) {
        ofs_image_close(img);
        img = NULL;
    }
    *out = img;
    return rc;
}

void ofs_image_close(struct ofs_image *img) {
    if (!img) return;
    ofs_image_clear(img);
    if (img->objects_fd >= 0) close(img->objects_fd);
    free(img->dir);
    free(img);
}

const struct ofs_entry *ofs_image_lookup(const struct ofs_image *img, const char *path,
                                         size_t len) {
    return search(img->entries, img->count, path, len);
}

const char *ofs_entry_name(const struct ofs_entry *e, size_t *len) {
    const char *slash = memrchr(e->path, '/', e->path_len);
    const char *n = slash ? slash + 1 : e->path;
    *len = e->path_len - (size_t)(n - e->path);
    return n;
}
