/* Image reader, objects: docs/formats/image.md section 4.  An image file's blocks are read,
 * checked against the Merkle tree of its entry (and decrypted), in parallel where it pays
 * (par.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ofs_crypto.h"
#include "ofs_err.h"
#include "par.h"

static size_t stored_len(const struct ofs_ifile *f, uint64_t i) {
    uint64_t plain = (i + 1 < f->nblocks) ? OFS_BLOCK : f->e->size - i * OFS_BLOCK;
    return (size_t)plain + (f->img->encrypted ? OFS_GCM_TAG : 0);
}

static uint64_t stored_off(const struct ofs_ifile *f, uint64_t i) {
    return i * (OFS_BLOCK + (f->img->encrypted ? OFS_GCM_TAG : 0));
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
    const char *shown = ofs_show_path(e->path, e->path_len, sb);
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
         ofs_show_path(f->e->path, f->e->path_len, sb), kind, (unsigned long long)b, what);
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
    EVP_MD_CTX *md = ofs_leaf_ctx_new();
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
            ofs_leaf_hash(md, s, slen, leaf);
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
