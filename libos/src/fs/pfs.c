/* Protected FS reader: docs/formats/protected-fs.md (the layout and the checks). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pfs.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h" /* OFS_OK, OFS_ERR_* */
#include "ofs_crypto.h"
#include "ofs_err.h"

/* Metadata node, plain part (95 bytes), then the encrypted part at 95 (3392 bytes). */
#define P_FILE_ID 0
#define P_MAJOR 8
#define P_KEY_ID 10
#define P_USE_KDK 60
#define P_GMAC 77
#define P_INTEGRITY_ONLY 94
#define ENC_OFF 95
#define ENC_SIZE 3392
#define E_NAME 0
#define E_SIZE 260
#define E_MHT_KEY 288
#define E_MHT_GMAC 304
#define E_DATA 320
#define FILE_ID 0x5347585F46494C45ULL
#define DATA_SLOTS 96
#define CHILD_SLOTS 32
#define SLOT 32
#define MAX_SIZE (1ULL << 62)

static const uint8_t ZERO16[16];
static const uint8_t IV0[12];

static uint64_t data_phys(uint64_t d) { return d + 2 + d / DATA_SLOTS; }
static uint64_t mht_phys(uint64_t m) { return 1 + 97 * m; }

uint64_t pfs_file_size(uint64_t size) {
    if (size <= PFS_META_DATA) return PFS_NODE;
    uint64_t n = (size - PFS_META_DATA + PFS_NODE - 1) / PFS_NODE;
    return (data_phys(n - 1) + 1) * PFS_NODE;
}

/* AES-CMAC-128 of the SDK's kdf_input_t for the metadata key. */
static int metadata_key(const uint8_t user[16], const uint8_t key_id[32], uint8_t out[16]) {
    uint8_t in[120] = {0};
    ofs_put_u32(in, 1);
    memcpy(in + 4, "SGX-PROTECTED-FS-METADATA-KEY", 29);
    ofs_put_u64(in + 72, 0);
    memcpy(in + 80, key_id, 32);
    ofs_put_u32(in + 112, 0x80);
    int rc = -1;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "CMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, "AES-128-CBC", 0),
                           OSSL_PARAM_construct_end()};
    size_t outl = 0;
    if (ctx && EVP_MAC_init(ctx, user, 16, params) == 1 && EVP_MAC_update(ctx, in, sizeof in) == 1 &&
        EVP_MAC_final(ctx, out, &outl, 16) == 1 && outl == 16)
        rc = 0;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}

/* Integrity-only tag: GCM with key 0 and IV 0 over the node as AAD, no plaintext. */
static int gmac0(const uint8_t *node, size_t len, uint8_t tag[16]) {
    uint8_t none[16] = {0};
    return ofs_gcm_encrypt(ZERO16, IV0, node, len, none, 0, none, tag);
}

int pfs_parse_meta(const uint8_t node0[PFS_NODE], const char *name, const uint8_t *key,
                   const char *where, struct pfs_meta *out, char *err, size_t errlen) {
    if (ofs_get_u64(node0 + P_FILE_ID) != FILE_ID || node0[P_MAJOR] != 1)
        return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: not a Protected FS file (bad file id or version)",
                        where);
    int integrity = key == NULL;
    if (node0[P_USE_KDK] != 1 || node0[P_INTEGRITY_ONLY] != (integrity ? 1 : 0))
        return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: is a %s file, opened as %s", where,
                        node0[P_INTEGRITY_ONLY] ? "integrity-only" : "user-key",
                        integrity ? "integrity-only" : "user-key");
    uint8_t enc[ENC_SIZE];
    const uint8_t *mac = node0 + P_GMAC;
    /* Integrity-only files have no key id, SVNs or attribute mask, and are never mid-update:
     * those plain-part bytes are outside every MAC, so they must be zero. */
    static const uint8_t zero[P_GMAC - P_KEY_ID];
    if (integrity && (memcmp(node0 + P_KEY_ID, zero, P_USE_KDK - P_KEY_ID) != 0 ||
                      memcmp(node0 + P_USE_KDK + 1, zero, P_GMAC - P_USE_KDK - 1) != 0 || node0[93] != 0))
        return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: metadata node: non-zero unused plain-part fields",
                        where);
    if (integrity) {
        uint8_t tag[16];
        if (gmac0(node0 + ENC_OFF, ENC_SIZE, tag) != 0 || ofs_memneq(tag, mac, 16))
            return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: metadata node: MAC mismatch", where);
        memcpy(enc, node0 + ENC_OFF, ENC_SIZE);
    } else {
        uint8_t mk[16];
        if (metadata_key(key, node0 + P_KEY_ID, mk) != 0 ||
            ofs_gcm_decrypt(mk, IV0, NULL, 0, node0 + ENC_OFF, ENC_SIZE, enc, mac) != 0)
            return ofs_fail(err, errlen, OFS_ERR_VERIFY,
                            "%s: metadata node: MAC mismatch (wrong key or tampered)", where);
    }
    size_t nl = strnlen((const char *)enc + E_NAME, PFS_NAME_MAX);
    if (nl != strlen(name) || memcmp(enc + E_NAME, name, nl) != 0) {
        char sb[256];
        return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: file name mismatch: the file was written as '%s'",
                        where, ofs_show_path((const char *)enc + E_NAME, nl, sb));
    }
    out->size = ofs_get_u64(enc + E_SIZE);
    if (out->size > MAX_SIZE)
        return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: size out of range", where);
    memcpy(out->mac, mac, 16);
    memcpy(out->mht_key, enc + E_MHT_KEY, 16);
    memcpy(out->mht_gmac, enc + E_MHT_GMAC, 16);
    memcpy(out->head, enc + E_DATA, PFS_META_DATA);
    return OFS_OK;
}

static int read_node(struct pfs_file *f, uint64_t phys, uint8_t buf[PFS_NODE], char *err, size_t errlen) {
    size_t got = 0;
    while (got < PFS_NODE) {
        ssize_t r = pread(f->fd, buf + got, PFS_NODE - got, (off_t)(phys * PFS_NODE + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return ofs_fail(err, errlen, OFS_ERR_IO, "%s: node %llu: %s", f->where,
                            (unsigned long long)phys, strerror(errno));
        if (r == 0)
            return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: truncated at node %llu", f->where,
                            (unsigned long long)phys);
        got += (size_t)r;
    }
    return OFS_OK;
}

int pfs_open_fd(struct pfs_file *f, int fd, const char *name, const uint8_t *key,
                const char *where, char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    f->fd = fd;
    f->where = where;
    for (int i = 0; i < PFS_MHT_CACHE; i++) f->cache_id[i] = -1;
    if (key) {
        f->keyed = 1;
        memcpy(f->key, key, 16);
    }
    uint8_t node0[PFS_NODE];
    int rc = read_node(f, 0, node0, err, errlen);
    if (rc == OFS_OK) rc = pfs_parse_meta(node0, name, key, where, &f->m, err, errlen);
    struct stat st;
    if (rc == OFS_OK && fstat(fd, &st) != 0)
        rc = ofs_fail(err, errlen, OFS_ERR_IO, "%s: %s", where, strerror(errno));
    if (rc == OFS_OK && (uint64_t)st.st_size < pfs_file_size(f->m.size))
        rc = ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: truncated: %lld bytes, a %llu-byte file needs %llu",
                      where, (long long)st.st_size, (unsigned long long)f->m.size,
                      (unsigned long long)pfs_file_size(f->m.size));
    if (rc != OFS_OK) pfs_close(f);
    return rc;
}

int pfs_open(struct pfs_file *f, int dirfd, const char *name, const uint8_t *key,
             const char *where, char *err, size_t errlen) {
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        memset(f, 0, sizeof *f);
        f->fd = -1;
        return ofs_fail(err, errlen, errno == ENOENT ? OFS_ERR_VERIFY : OFS_ERR_INPUT, "%s: %s %s", where,
                        errno == ENOENT ? "missing file" : strerror(errno), name);
    }
    return pfs_open_fd(f, fd, name, key, where, err, errlen);
}

void pfs_close(struct pfs_file *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    free(f->root);
    free(f->cache);
    f->root = f->cache = NULL;
    OPENSSL_cleanse(f->key, sizeof f->key);
}

/* Read node `phys` and check it against (key, tag) from its parent; plaintext into out. */
static int open_node(struct pfs_file *f, uint64_t phys, const uint8_t *k, const uint8_t *tag,
                     const char *what, uint64_t idx, uint8_t out[PFS_NODE], char *err, size_t errlen) {
    uint8_t stored[PFS_NODE];
    int rc = read_node(f, phys, stored, err, errlen);
    if (rc) return rc;
    int bad;
    if (!f->keyed) {
        uint8_t t[16];
        bad = gmac0(stored, PFS_NODE, t) != 0 || ofs_memneq(t, tag, 16);
        memcpy(out, stored, PFS_NODE);
    } else {
        bad = ofs_gcm_decrypt(k, IV0, NULL, 0, stored, PFS_NODE, out, tag) != 0;
    }
    if (bad)
        return ofs_fail(err, errlen, OFS_ERR_VERIFY, "%s: %s %llu (node %llu): MAC mismatch", f->where, what,
                        (unsigned long long)idx, (unsigned long long)phys);
    return OFS_OK;
}

/* The verified MHT node m (pointer into the file's cache). */
static const uint8_t *mht(struct pfs_file *f, uint64_t m, char *err, size_t errlen) {
    if (m == 0) {
        if (!f->root) {
            uint8_t *b = malloc(PFS_NODE);
            if (!b) {
                ofs_fail(err, errlen, OFS_ERR_IO, "%s: out of memory", f->where);
                return NULL;
            }
            if (open_node(f, mht_phys(0), f->m.mht_key, f->m.mht_gmac, "MHT node", 0, b, err, errlen)) {
                free(b);
                return NULL;
            }
            f->root = b;
        }
        return f->root;
    }
    if (!f->cache && !(f->cache = malloc((size_t)PFS_MHT_CACHE * PFS_NODE))) {
        ofs_fail(err, errlen, OFS_ERR_IO, "%s: out of memory", f->where);
        return NULL;
    }
    int slot = (int)(m % PFS_MHT_CACHE);
    uint8_t *dst = f->cache + (size_t)slot * PFS_NODE;
    if (f->cache_id[slot] == (int64_t)m) return dst;
    uint64_t parent = (m - 1) / CHILD_SLOTS, ps = (m - 1) % CHILD_SLOTS;
    const uint8_t *p = mht(f, parent, err, errlen);
    if (!p) return NULL;
    uint8_t k[16], tag[16];
    memcpy(k, p + DATA_SLOTS * SLOT + ps * SLOT, 16);
    memcpy(tag, p + DATA_SLOTS * SLOT + ps * SLOT + 16, 16);
    f->cache_id[slot] = -1; /* the parent may have used this slot */
    if (open_node(f, mht_phys(m), k, tag, "MHT node", m, dst, err, errlen)) return NULL;
    f->cache_id[slot] = (int64_t)m;
    return dst;
}

ssize_t pfs_read(struct pfs_file *f, void *buf, size_t len, uint64_t off, char *err, size_t errlen) {
    if (off >= f->m.size) return 0;
    if (len > f->m.size - off) len = (size_t)(f->m.size - off);
    uint8_t *out = buf;
    size_t done = 0;
    if (off < PFS_META_DATA) {
        size_t take = PFS_META_DATA - (size_t)off;
        if (take > len) take = len;
        memcpy(out, f->m.head + off, take);
        done += take;
    }
    uint8_t node[PFS_NODE];
    while (done < len) {
        uint64_t pos = off + done - PFS_META_DATA;
        uint64_t d = pos / PFS_NODE;
        size_t within = (size_t)(pos % PFS_NODE);
        const uint8_t *m = mht(f, d / DATA_SLOTS, err, errlen);
        if (!m) return -1;
        const uint8_t *s = m + (d % DATA_SLOTS) * SLOT;
        uint8_t k[16], tag[16];
        memcpy(k, s, 16);
        memcpy(tag, s + 16, 16);
        if (open_node(f, data_phys(d), k, tag, "data node", d, node, err, errlen)) return -1;
        size_t take = PFS_NODE - within;
        if (take > len - done) take = len - done;
        memcpy(out + done, node + within, take);
        done += take;
    }
    return (ssize_t)done;
}
