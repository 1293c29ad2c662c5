/* The SEFS image reader (src/fs/image.c over pfs.c) against the upstream `sefs-cli zip`
 * vectors in tests/vectors/occlum-interop/sefs (UPSTREAM-README.md there): every entry of
 * expected_unzip.json, and each refusal naming the path inside the image. */
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "image.h"
#include "ofs_crypto.h"

#define VEC REPO_ROOT "/tests/vectors/occlum-interop/sefs"

static int read_hex16_file(const char *path, uint8_t out[16]) {
    char t[128] = {0};
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(t, 1, sizeof t - 1, f);
    fclose(f);
    return ofs_parse_hex16(t, n, out);
}

static const char *type_name(uint8_t t) {
    return t == OFS_T_FILE ? "file" : t == OFS_T_DIR ? "dir" : t == OFS_T_SYMLINK ? "symlink" : "?";
}

static int read_file(struct ofs_image *img, const struct ofs_entry *e, uint8_t *buf, char *err, size_t errlen) {
    struct ofs_ifile f;
    int rc = ofs_ifile_open(img, e, &f, err, errlen);
    if (rc) return rc;
    uint64_t off = 0;
    while (off < e->size) {
        ssize_t n = ofs_ifile_read(&f, buf + off, 5000, off, err, errlen);
        if (n <= 0) {
            ofs_ifile_close(&f);
            return OFS_ERR_VERIFY;
        }
        off += (uint64_t)n;
    }
    ofs_ifile_close(&f);
    return OFS_OK;
}

/* The image lists exactly expected_unzip.json with the same types, modes, sizes, contents. */
static void check_tree(const char *dir, const char *tree, const uint8_t *key) {
    char p[512], err[1024];
    uint8_t mac[16];
    snprintf(p, sizeof p, "%s/%s/ROOT_MAC", dir, tree);
    CHECK(read_hex16_file(p, mac) == 0);
    snprintf(p, sizeof p, "%s/%s/__ROOT", dir, tree);
    struct ofs_image *img = NULL;
    int rc = ofs_image_open(p, mac, key, &img, err, sizeof err);
    CHECK(rc == OFS_OK);
    if (rc) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    snprintf(p, sizeof p, "%s/integrity/%s/expected_unzip.json", VEC, tree);
    json_t *want = json_load_file(p, 0, NULL);
    CHECK(want && json_array_size(want) == img->count);
    size_t i;
    json_t *w;
    json_array_foreach(want, i, w) {
        const char *path = json_string_value(json_object_get(w, "path"));
        const char *rel = strcmp(path, ".") == 0 ? "" : path;
        const struct ofs_entry *e = ofs_image_lookup(img, rel, strlen(rel));
        CHECK(e != NULL);
        if (!e) continue;
        CHECK(strcmp(type_name(e->type), json_string_value(json_object_get(w, "type"))) == 0);
        char mode[16];
        snprintf(mode, sizeof mode, "0o%o", e->mode);
        CHECK(strcmp(mode, json_string_value(json_object_get(w, "mode"))) == 0);
        if (e->type == OFS_T_FILE) {
            CHECK(e->size == (uint64_t)json_integer_value(json_object_get(w, "size")));
            uint8_t *buf = malloc(e->size + 1), d[32];
            char hex[65];
            CHECK(read_file(img, e, buf, err, sizeof err) == OFS_OK);
            ofs_sha256(buf, e->size, d);
            ofs_hex(d, 32, hex);
            CHECK(strcmp(hex, json_string_value(json_object_get(w, "sha256"))) == 0);
            free(buf);
        } else if (e->type == OFS_T_SYMLINK) {
            const char *t = json_string_value(json_object_get(w, "target"));
            CHECK(e->size == strlen(t) && memcmp(e->target, t, e->size) == 0);
        }
        if (e != img->entries) {
            const struct ofs_entry *par = &img->entries[e->parent];
            int found = 0;
            for (uint32_t c = 0; c < par->child_count; c++)
                found |= &img->entries[img->children[par->first_child + c]] == e;
            CHECK(found);
        }
    }
    json_decref(want);
    ofs_image_close(img);
    /* a wrong root MAC is refused before anything is parsed */
    mac[0] ^= 1;
    snprintf(p, sizeof p, "%s/%s/__ROOT", dir, tree);
    CHECK(ofs_image_open(p, mac, key, &img, err, sizeof err) == OFS_ERR_VERIFY && img == NULL);
    CHECK_STR_CONTAINS(err, "metadata: root MAC mismatch");
}

static void check_tampered(const uint8_t key[16]) {
    char err[1024];
    uint8_t mac[16];
    struct ofs_image *img = NULL;
    CHECK(read_hex16_file(VEC "/userkey/tampered-data/ROOT_MAC", mac) == 0);
    CHECK(ofs_image_open(VEC "/userkey/tampered-data/__ROOT", mac, key, &img, err, sizeof err) == OFS_OK);
    if (img) {
        const struct ofs_entry *e = ofs_image_lookup(img, "bin/init", 8);
        uint8_t buf[8192];
        CHECK(e && read_file(img, e, buf, err, sizeof err) == OFS_ERR_VERIFY);
        CHECK_STR_CONTAINS(err, "/bin/init: data node 0 (node 2): MAC mismatch");
        ofs_image_close(img);
    }
    CHECK(read_hex16_file(VEC "/userkey/tampered-meta/ROOT_MAC", mac) == 0);
    CHECK(ofs_image_open(VEC "/userkey/tampered-meta/__ROOT", mac, key, &img, err, sizeof err) == OFS_ERR_VERIFY);
    CHECK_STR_CONTAINS(err, "metadata: metadata node: MAC mismatch");
    /* a key-mode image opened integrity-only */
    CHECK(read_hex16_file(VEC "/userkey/basic/ROOT_MAC", mac) == 0);
    CHECK(ofs_image_open(VEC "/userkey/basic/__ROOT", mac, NULL, &img, err, sizeof err) == OFS_ERR_VERIFY);
    CHECK_STR_CONTAINS(err, "is a user-key file, opened as integrity-only");
}

/* A copy of the basic image with inode files swapped or removed: named by path. */
static void check_swapped(void) {
    char tmpl[] = "/tmp/test_sefs.XXXXXX", cmd[1024], err[1024];
    CHECK(mkdtemp(tmpl) != NULL);
    snprintf(cmd, sizeof cmd, "cp -a %s/integrity/basic/__ROOT %s/img", VEC, tmpl);
    CHECK(system(cmd) == 0);
    char img_dir[600], a[700], b[700];
    snprintf(img_dir, sizeof img_dir, "%s/img", tmpl);
    snprintf(a, sizeof a, "%s/04000000000000000000000000000000", img_dir);
    snprintf(b, sizeof b, "%s/05000000000000000000000000000000", img_dir);
    CHECK(rename(a, b) == 0); /* /bin/busybox's file replaces /bin/init's */
    uint8_t mac[16];
    CHECK(read_hex16_file(VEC "/integrity/basic/ROOT_MAC", mac) == 0);
    struct ofs_image *img = NULL;
    CHECK(ofs_image_open(img_dir, mac, NULL, &img, err, sizeof err) == OFS_OK);
    if (img) {
        uint8_t buf[70000];
        CHECK(read_file(img, ofs_image_lookup(img, "bin/init", 8), buf, err, sizeof err) == OFS_ERR_VERIFY);
        CHECK_STR_CONTAINS(err, "/bin/init: file name mismatch");
        CHECK(read_file(img, ofs_image_lookup(img, "bin/busybox", 11), buf, err, sizeof err) != OFS_OK);
        CHECK_STR_CONTAINS(err, "/bin/busybox: missing file 04000000000000000000000000000000");
        ofs_image_close(img);
    }
    /* the same id's file from another image: its name checks out, its MAC does not */
    snprintf(cmd, sizeof cmd, "cp %s/integrity/edge/__ROOT/05000000000000000000000000000000 %s/",
             VEC, img_dir);
    CHECK(system(cmd) == 0);
    CHECK(ofs_image_open(img_dir, mac, NULL, &img, err, sizeof err) == OFS_OK);
    if (img) {
        uint8_t buf[70000];
        CHECK(read_file(img, ofs_image_lookup(img, "bin/init", 8), buf, err, sizeof err) == OFS_ERR_VERIFY);
        CHECK_STR_CONTAINS(err, "/bin/init: inode MAC mismatch");
        ofs_image_close(img);
    }
    snprintf(a, sizeof a, "%s/03000000000000000000000000000000", img_dir); /* the /bin directory */
    CHECK(unlink(a) == 0);
    CHECK(ofs_image_open(img_dir, mac, NULL, &img, err, sizeof err) == OFS_ERR_VERIFY);
    CHECK_STR_CONTAINS(err, "/bin: missing file 03000000000000000000000000000000");
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpl);
    CHECK(system(cmd) == 0);
}

int main(void) {
    check_tree(VEC "/integrity", "basic", NULL);
    check_tree(VEC "/integrity", "edge", NULL);
    uint8_t key[16];
    CHECK(read_hex16_file(VEC "/userkey/key.txt", key) == 0);
    check_tree(VEC "/userkey", "basic", key);
    check_tree(VEC "/userkey", "edge", key);
    check_tampered(key);
    check_swapped();
    CHECK_DONE();
}
