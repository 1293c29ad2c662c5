/* The Protected FS reader (src/fs/pfs.c) against the upstream vectors in
 * tests/vectors/occlum-interop/pfs and protected-config (UPSTREAM-README.md there). */
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "image.h"
#include "ofs_crypto.h"
#include "pfs.h"

#define VEC REPO_ROOT "/tests/vectors/occlum-interop"

/* First n bytes of SHA-256("occlum-interop-pfs" || u64le(k)), k = 0, 1, ... */
static uint8_t *S(size_t n) {
    uint8_t *out = malloc(n + 32);
    uint8_t in[18 + 8];
    memcpy(in, "occlum-interop-pfs", 18);
    for (size_t k = 0; 32 * k < n; k++) {
        ofs_put_u64(in + 18, k);
        ofs_sha256(in, sizeof in, out + 32 * k);
    }
    return out;
}

static int dirfd_of(const char *d) { return open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC); }

/* Read the whole file in 5000-byte pieces (crossing node boundaries). */
static int read_whole(struct pfs_file *f, uint8_t *buf, char *err, size_t errlen) {
    uint64_t off = 0;
    while (off < f->m.size) {
        ssize_t n = pfs_read(f, buf + off, 5000, off, err, errlen);
        if (n <= 0) return -1;
        off += (uint64_t)n;
    }
    return 0;
}

static void check_files(const char *sub, const uint8_t *key) {
    char p[512], err[512];
    snprintf(p, sizeof p, "%s/pfs/%s/vectors.json", VEC, sub);
    json_t *v = json_load_file(p, 0, NULL);
    CHECK(v != NULL);
    if (!v) return;
    snprintf(p, sizeof p, "%s/pfs/%s", VEC, sub);
    int d = dirfd_of(p);
    size_t i;
    json_t *f;
    int seen = 0;
    json_array_foreach(json_object_get(v, "files"), i, f) {
        const char *name = json_string_value(json_object_get(f, "protected"));
        size_t n = (size_t)json_integer_value(json_object_get(f, "content_size"));
        if (faccessat(d, name, R_OK, 0) != 0) continue; /* left out of the repository */
        struct pfs_file pf;
        int rc = pfs_open(&pf, d, name, key, name, err, sizeof err);
        CHECK(rc == OFS_OK);
        if (rc) {
            fprintf(stderr, "%s\n", err);
            continue;
        }
        char mac[48];
        ofs_format_hex16(pf.m.mac, mac);
        CHECK(strcmp(mac, json_string_value(json_object_get(f, "mac"))) == 0);
        CHECK(pf.m.size == n);
        uint8_t *want = S(n), *got = malloc(n + 1);
        CHECK(read_whole(&pf, got, err, sizeof err) == 0 && memcmp(got, want, n) == 0);
        free(want);
        free(got);
        pfs_close(&pf);
        /* opened in the other mode: refused at open */
        rc = pfs_open(&pf, d, name, key ? NULL : (const uint8_t *)"0123456789abcdef", name, err, sizeof err);
        CHECK(rc == OFS_ERR_VERIFY);
        CHECK_STR_CONTAINS(err, key ? "is a user-key file, opened as integrity-only"
                                    : "is a integrity-only file, opened as user-key");
        seen++;
    }
    CHECK(seen >= 5);
    close(d);
    json_decref(v);
}

static void check_refusals(void) {
    char err[512];
    int d = dirfd_of(VEC "/pfs/integrity");
    struct pfs_file pf;
    /* the clean name is checked: the same bytes under another name are refused */
    int fd = openat(d, "3073.bin.protected", O_RDONLY);
    CHECK(pfs_open_fd(&pf, fd, "renamed.protected", NULL, "renamed", err, sizeof err) == OFS_ERR_VERIFY);
    CHECK_STR_CONTAINS(err, "file name mismatch: the file was written as '3073.bin.protected'");
    /* tampered data node: opens (the MAC covers the MHT root), the read fails */
    CHECK(pfs_open(&pf, d, "tampered/3073.bin.protected", NULL, "t", err, sizeof err) == OFS_ERR_VERIFY);
    int td = dirfd_of(VEC "/pfs/integrity/tampered");
    CHECK(pfs_open(&pf, td, "3073.bin.protected", NULL, "tampered", err, sizeof err) == OFS_OK);
    uint8_t buf[8192];
    CHECK(pfs_read(&pf, buf, 3072, 0, err, sizeof err) == 3072); /* the head is intact */
    CHECK(pfs_read(&pf, buf, 100, 3072, err, sizeof err) == -1);
    CHECK_STR_CONTAINS(err, "tampered: data node 0 (node 2): MAC mismatch");
    pfs_close(&pf);
    close(td);
    close(d);
    /* user key: tampered metadata refused at open, tampered data at read, wrong key */
    uint8_t key[16];
    FILE *kf = fopen(VEC "/pfs/userkey/key.txt", "r");
    char kt[64] = {0};
    CHECK(kf && fgets(kt, sizeof kt, kf));
    if (kf) fclose(kf);
    CHECK(ofs_parse_hex16(kt, strlen(kt), key) == 0);
    check_files("userkey", key);
    d = dirfd_of(VEC "/pfs/userkey/tampered-meta");
    CHECK(pfs_open(&pf, d, "396289.bin.protected", key, "m", err, sizeof err) == OFS_ERR_VERIFY);
    CHECK_STR_CONTAINS(err, "metadata node: MAC mismatch");
    close(d);
    d = dirfd_of(VEC "/pfs/userkey/tampered-data");
    CHECK(pfs_open(&pf, d, "396289.bin.protected", key, "dd", err, sizeof err) == OFS_OK);
    CHECK(pfs_read(&pf, buf, 8192, 0, err, sizeof err) == -1);
    CHECK_STR_CONTAINS(err, "dd: data node 0 (node 2): MAC mismatch");
    pfs_close(&pf);
    close(d);
    d = dirfd_of(VEC "/pfs/userkey");
    key[0] ^= 1;
    CHECK(pfs_open(&pf, d, "3073.bin.protected", key, "w", err, sizeof err) == OFS_ERR_VERIFY);
    CHECK_STR_CONTAINS(err, "wrong key or tampered");
    close(d);
}

static void check_protected_config(void) {
    const char *cases[] = {"hello", "template"};
    for (int c = 0; c < 2; c++) {
        char p[512], err[512];
        snprintf(p, sizeof p, "%s/protected-config/%s", VEC, cases[c]);
        int d = dirfd_of(p);
        struct pfs_file pf;
        CHECK(pfs_open(&pf, d, ".Occlum_sys.json.protected", NULL, "conf", err, sizeof err) == OFS_OK);
        char mac[48], want[64] = {0};
        ofs_format_hex16(pf.m.mac, mac);
        int mf = openat(d, "conf_mac.txt", O_RDONLY);
        CHECK(read(mf, want, sizeof want) == 48);
        close(mf);
        CHECK(strncmp(mac, want, 47) == 0 && want[47] == '\n');
        uint8_t got[4096], plain[4096];
        int jf = openat(d, ".Occlum_sys.json", O_RDONLY);
        ssize_t jn = read(jf, plain, sizeof plain);
        close(jf);
        CHECK(pfs_read(&pf, got, sizeof got, 0, err, sizeof err) == jn && memcmp(got, plain, (size_t)jn) == 0);
        pfs_close(&pf);
        close(d);
    }
}

int main(void) {
    check_files("integrity", NULL);
    check_refusals();
    check_protected_config();
    CHECK(pfs_file_size(0) == 4096 && pfs_file_size(3073) == 12288 && pfs_file_size(7169) == 16384);
    CHECK_DONE();
}
