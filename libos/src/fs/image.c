/* Image reader: docs/formats/image.md.  Section numbers below refer to that document. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ofs_crypto.h"
#include "ofs_err.h"
#include "par.h"

#define HDR 64
#define ENT 96
#define EHDR 28               /* encrypted metadata header: magic, version, zero, nonce */
#define MAX_META (1ull << 34) /* refuse absurd metadata sizes before allocating */

/* Printable form of a path for messages (non-printable bytes become '?'), truncated. */
static const char *show(const char *p, size_t len, char buf[256]) {
    size_t n = len < 200 ? len : 200, i;
    for (i = 0; i < n; i++)
        buf[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
    if (n < len) memcpy(buf + n, "...", 3), n += 3;
    buf[n] = 0;
    return buf;
}

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
        const char *shown = show(e->path, plen_, sb);
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

/* ---- objects (section 4) ---- */

static size_t stored_len(const struct ofs_ifile *f, uint64_t i) {
    uint64_t plain = (i + 1 < f->nblocks) ? OFS_BLOCK : f->e->size - i * OFS_BLOCK;
    return (size_t)plain + (f->img->encrypted ? OFS_GCM_TAG : 0);
}

static uint64_t stored_off(const struct ofs_ifile *f, uint64_t i) {
    return i * (OFS_BLOCK + (f->img->encrypted ? OFS_GCM_TAG : 0));
}

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static void fetch_sha256(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

/* A digest context initialised for SHA-256, or NULL. */
static EVP_MD_CTX *md_ctx_new(void) {
    pthread_once(&sha256_once, fetch_sha256);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx && (!sha256_md || !EVP_DigestInit_ex2(ctx, sha256_md, NULL))) {
        EVP_MD_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

/* ctx was set up with SHA-256 once (md_ctx_new): re-initialising with a NULL type reuses
 * the fetched implementation, where passing EVP_sha256() each time makes OpenSSL 3 look the
 * provider up again for every 4 KiB block (measured: ~40% of the read path's CPU time). */
static void leaf_hash(EVP_MD_CTX *ctx, const uint8_t *s, size_t len, uint8_t out[32]) {
    unsigned int n = 32;
    if (!EVP_DigestInit_ex2(ctx, NULL, NULL) || !EVP_DigestUpdate(ctx, s, len) ||
        !EVP_DigestFinal_ex(ctx, out, &n))
        memset(out, 0xff, 32);
}

static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off) {
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, (uint8_t *)buf + got, len - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int ofs_ifile_open(const struct ofs_image *img, const struct ofs_entry *e, struct ofs_ifile *f,
                   char *err, size_t errlen) {
    char sb[256], hex[65];
    const char *shown = show(e->path, e->path_len, sb);
    memset(f, 0, sizeof *f);
    f->img = img;
    f->e = e;
    f->fd = -1;
    if (e->type != OFS_T_FILE)
        return ofs_fail(err, errlen, OFS_ERR_INPUT, "%s: /%s: not a regular file", img->dir, shown);
    if (e->size == 0) return OFS_OK;
    f->nblocks = (e->size + OFS_BLOCK - 1) / OFS_BLOCK;
    ofs_hex(e->root, 32, hex);
    if (img->objects_fd < 0)
        return ofs_fail(err, errlen, OFS_ERR_VERIFY,
                    "%s: /%s: object-missing: objects/%s (no objects/)", img->dir, shown, hex);
    f->fd = openat(img->objects_fd, hex, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0)
        return ofs_fail(err, errlen, errno == ENOENT ? OFS_ERR_VERIFY : OFS_ERR_IO,
                    "%s: /%s: object-missing: cannot open objects/%s: %s", img->dir, shown, hex,
                    strerror(errno));
    uint64_t data = (f->nblocks - 1) * (stored_off(f, 1)) + stored_len(f, f->nblocks - 1);
    struct stat st;
    int rc = OFS_ERR_VERIFY;
    if (fstat(f->fd, &st) < 0) {
        rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s: /%s: objects/%s: %s", img->dir, shown, hex,
                  strerror(errno));
        goto bad;
    }
    if ((uint64_t)st.st_size != data + 32 * f->nblocks) {
        ofs_fail(err, errlen, rc, "%s: /%s: object-size: objects/%s has %lld bytes, expected %llu",
             img->dir, shown, hex, (long long)st.st_size,
             (unsigned long long)(data + 32 * f->nblocks));
        goto bad;
    }
    f->leaves = malloc(32 * f->nblocks);
    uint8_t *level = malloc(32);
    if (!f->leaves || !level) {
        free(level);
        rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s: /%s: out of memory", img->dir, shown);
        goto bad;
    }
    if (pread_full(f->fd, f->leaves, 32 * f->nblocks, data) != (ssize_t)(32 * f->nblocks)) {
        free(level);
        rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s: /%s: cannot read the leaves of objects/%s",
                  img->dir, shown, hex);
        goto bad;
    }
    /* Two levels: root = H(L_0 || ... || L_{n-1}). */
    ofs_sha256(f->leaves, 32 * f->nblocks, level);
    int same = !ofs_memneq(level, e->root, 32);
    free(level);
    if (!same) {
        ofs_fail(err, errlen, rc,
             "%s: /%s: root-mismatch: the leaves of objects/%s do not hash to the entry's root",
             img->dir, shown, hex);
        goto bad;
    }
    if (img->encrypted) {
        uint8_t info[sizeof "occlum-build image v1 file" - 1];
        memcpy(info, "occlum-build image v1 file", sizeof info);
        if (ofs_hkdf(img->key, 16, e->file_id, 16, info, sizeof info, f->fkey, 16)) {
            rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s: /%s: key derivation failed", img->dir, shown);
            goto bad;
        }
    }
    return OFS_OK;
bad:
    ofs_ifile_close(f);
    return rc;
}

void ofs_ifile_close(struct ofs_ifile *f) {
    if (f->fd >= 0) close(f->fd);
    free(f->leaves);
    f->leaves = NULL;
    f->fd = -1;
}

#define RUN_BLOCKS 32 /* blocks read with one pread */

static ssize_t block_error(struct ofs_ifile *f, uint64_t b, const char *kind, const char *what,
                           char *err, size_t errlen) {
    char sb[256];
    ofs_fail(err, errlen, 0, "%s: /%s: %s: block %llu %s", f->img->dir,
         show(f->e->path, f->e->path_len, sb), kind, (unsigned long long)b, what);
    return -EIO;
}

/* A run of stored blocks to check (and decrypt or copy) into their destinations, shared
 * by the caller and the worker thread (ofs_par_run); each keeps its own contexts and its
 * first failure. */
struct run_job {
    struct ofs_ifile *f;
    const uint8_t *raw; /* stored blocks b0 .. b0 + n - 1, `stride` apart */
    uint64_t b0;
    size_t stride;
    uint8_t *const *dst; /* plain destination of each block, NULL: check only */
    uint64_t bad[2];     /* lowest failing block + 1 seen by each thread (0: none) */
    const char *kind[2];
    atomic_int failed; /* stop claiming once a block failed */
};

static void run_blocks(void *arg, struct ofs_par *p, int who) {
    struct run_job *j = arg;
    const int enc = j->f->img->encrypted;
    const struct ofs_entry *e = j->f->e;
    EVP_MD_CTX *md = md_ctx_new();
    EVP_CIPHER_CTX *cc = enc ? EVP_CIPHER_CTX_new() : NULL;
    uint8_t leaf[32];
    size_t lo, hi;
    const char *kind = NULL;
    uint64_t bad = 0;
    if (!md ||
        (enc && (!cc || !EVP_DecryptInit_ex(cc, EVP_aes_128_gcm(), NULL, j->f->fkey, NULL)))) {
        if (ofs_par_claim(p, &lo, &hi)) bad = j->b0 + lo + 1, kind = "block-decrypt";
        goto out;
    }
    while (!bad && !atomic_load(&j->failed) && ofs_par_claim(p, &lo, &hi)) {
        for (size_t k = lo; k < hi; k++) {
            uint64_t b = j->b0 + k;
            const uint8_t *s = j->raw + k * j->stride;
            size_t slen = stored_len(j->f, b), plen = slen - (enc ? OFS_GCM_TAG : 0);
            leaf_hash(md, s, slen, leaf);
            if (ofs_memneq(leaf, j->f->leaves + 32 * b, 32)) {
                bad = b + 1;
                kind = "block-mismatch";
                break;
            }
            uint8_t *dst = j->dst ? j->dst[k] : NULL;
            if (!dst) continue;
            if (!enc) {
                memcpy(dst, s, plen);
                continue;
            }
            uint8_t nonce[12], aad[16];
            int outl = 0;
            ofs_put_u64(nonce, b);
            ofs_put_u32(nonce + 8, 0);
            ofs_put_u64(aad, b);
            ofs_put_u64(aad + 8, e->size);
            if (!EVP_DecryptInit_ex(cc, NULL, NULL, NULL, nonce) ||
                !EVP_DecryptUpdate(cc, NULL, &outl, aad, 16) ||
                !EVP_DecryptUpdate(cc, dst, &outl, s, (int)plen) ||
                !EVP_CIPHER_CTX_ctrl(cc, EVP_CTRL_GCM_SET_TAG, 16, (void *)(s + plen)) ||
                EVP_DecryptFinal_ex(cc, dst + plen, &outl) <= 0) {
                memset(dst, 0, plen); /* never hand out unauthenticated plaintext */
                bad = b + 1;
                kind = "block-decrypt";
                break;
            }
        }
    }
out:
    if (bad) atomic_store(&j->failed, 1);
    j->bad[who] = bad;
    j->kind[who] = kind;
    EVP_CIPHER_CTX_free(cc);
    EVP_MD_CTX_free(md);
}

/* Blocks: below this a second thread costs more than it saves (-DPAR_MIN=<huge> builds a
 * serial reader, for comparison).  PAR_CHUNK: blocks claimed at a time. */
#ifndef PAR_MIN
#define PAR_MIN 8
#endif
#define PAR_CHUNK 4

static ssize_t do_run(struct run_job *j, size_t n, char *err, size_t errlen) {
    atomic_init(&j->failed, 0);
    ofs_par_run(run_blocks, j, n, PAR_CHUNK, PAR_MIN);
    int w = j->bad[0] && (!j->bad[1] || j->bad[0] < j->bad[1]) ? 0 : 1;
    if (!j->bad[w]) return 0;
    return block_error(j->f, j->bad[w] - 1, j->kind[w],
                       strcmp(j->kind[w], "block-mismatch") ? "does not decrypt"
                                                            : "fails verification",
                       err, errlen);
}

ssize_t ofs_ifile_read(struct ofs_ifile *f, void *buf, size_t len, uint64_t off, char *err,
                       size_t errlen) {
    const struct ofs_entry *e = f->e;
    if (off >= e->size || len == 0) return 0;
    if (len > e->size - off) len = (size_t)(e->size - off);
    const int enc = f->img->encrypted;
    const size_t stride = OFS_BLOCK + (enc ? OFS_GCM_TAG : 0);
    const uint64_t first = off / OFS_BLOCK, last = (off + len - 1) / OFS_BLOCK;
    uint8_t *raw = NULL, *dst[RUN_BLOCKS], bounce[2][OFS_BLOCK];
    ssize_t ret = 0;
    /* Integrity-only, block-aligned read (what the kernel sends): the stored blocks are the
     * plain blocks, so read them straight into the caller's buffer and check them there. */
    if (!enc && off % OFS_BLOCK == 0 && (len % OFS_BLOCK == 0 || off + len == e->size)) {
        if (pread_full(f->fd, buf, len, off) != (ssize_t)len)
            return block_error(f, first, "object-size", "short read", err, errlen);
        struct run_job j = {.f = f, .raw = buf, .b0 = first, .stride = OFS_BLOCK};
        ret = do_run(&j, (size_t)(last - first + 1), err, errlen);
        return ret ? ret : (ssize_t)len;
    }
    if (!(raw = malloc(RUN_BLOCKS * stride))) return -ENOMEM;
    for (uint64_t b = first; b <= last;) {
        size_t run = last - b + 1 < RUN_BLOCKS ? (size_t)(last - b + 1) : RUN_BLOCKS;
        size_t want = (run - 1) * stride + stored_len(f, b + run - 1);
        if (pread_full(f->fd, raw, want, stored_off(f, b)) != (ssize_t)want) {
            ret = block_error(f, b, "object-size", "short read", err, errlen);
            goto out;
        }
        /* Whole blocks land in the caller's buffer; the partial first/last ones in bounce. */
        for (size_t k = 0; k < run; k++) {
            uint64_t bs = (b + k) * OFS_BLOCK, be = bs + stored_len(f, b + k) - stride + OFS_BLOCK;
            if (bs >= off && be <= off + len)
                dst[k] = (uint8_t *)buf + (bs - off);
            else
                dst[k] = bounce[b + k == first ? 0 : 1];
        }
        struct run_job j = {.f = f, .raw = raw, .b0 = b, .stride = stride, .dst = dst};
        if ((ret = do_run(&j, run, err, errlen))) goto out;
        for (size_t k = 0; k < run; k++) {
            if (dst[k] != bounce[0] && dst[k] != bounce[1]) continue;
            uint64_t bs = (b + k) * OFS_BLOCK, plen = stored_len(f, b + k) - (stride - OFS_BLOCK);
            uint64_t from = off > bs ? off - bs : 0,
                     to = off + len < bs + plen ? off + len - bs : plen;
            memcpy((uint8_t *)buf + (bs + from - off), dst[k] + from, (size_t)(to - from));
        }
        b += run;
    }
    ret = (ssize_t)len;
out:
    free(raw);
    return ret;
}
