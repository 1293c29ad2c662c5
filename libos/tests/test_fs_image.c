/* The image reader against every vector in tests/vectors/image/ (see its README): both
 * images list exactly the manifest's entries with their fields and contents, and each
 * tampered case fails with the expected error kind naming the expected path. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "image.h"
#include "ofs_crypto.h"

#define VEC REPO_ROOT "/tests/vectors/image"

static int hex16(const char *s, uint8_t out[16]) { return ofs_parse_hex16(s, strlen(s), out); }

static const char *type_name(uint8_t t) {
    return t == OFS_T_FILE ? "file" : t == OFS_T_DIR ? "dir" : t == OFS_T_SYMLINK ? "symlink" : "?";
}

/* Open every file in metadata order and read it whole; returns 0 or the first error. */
static int verify_all(struct ofs_image *img, char *err, size_t errlen, json_t *manifest) {
    for (uint32_t i = 0; i < img->count; i++) {
        const struct ofs_entry *e = &img->entries[i];
        if (e->type != OFS_T_FILE) continue;
        struct ofs_ifile f;
        int rc = ofs_ifile_open(img, e, &f, err, errlen);
        if (rc) return rc;
        uint8_t *buf = malloc(e->size + 1), digest[32];
        /* Read in odd-sized pieces to cross block boundaries at different offsets. */
        uint64_t off = 0;
        while (off < e->size) {
            ssize_t n = ofs_ifile_read(&f, buf + off, 5000, off, err, errlen);
            if (n <= 0) {
                free(buf);
                ofs_ifile_close(&f);
                return n == 0 ? OFS_ERR_IO : OFS_ERR_VERIFY;
            }
            off += (uint64_t)n;
        }
        CHECK(ofs_ifile_read(&f, buf, 10, e->size, err, errlen) == 0); /* EOF */
        ofs_sha256(buf, e->size, digest);
        free(buf);
        ofs_ifile_close(&f);
        if (manifest) {
            char hex[65];
            ofs_hex(digest, 32, hex);
            json_t *me = json_array_get(json_object_get(manifest, "entries"), i);
            CHECK(me && !strcmp(hex, json_string_value(json_object_get(me, "sha256"))));
        }
    }
    return 0;
}

static void check_image(const char *name) {
    char path[512], err[1024];
    json_error_t je;
    snprintf(path, sizeof path, VEC "/%s/manifest.json", name);
    json_t *m = json_load_file(path, 0, &je);
    CHECK(m != NULL);
    if (!m) return;
    uint8_t mac[16], key[16];
    const char *ks = json_string_value(json_object_get(m, "key"));
    CHECK(hex16(json_string_value(json_object_get(m, "mac")), mac) == 0);
    if (ks) CHECK(hex16(ks, key) == 0);
    snprintf(path, sizeof path, VEC "/%s/image", name);
    struct ofs_image *img = NULL;
    int rc = ofs_image_open(path, mac, ks ? key : NULL, &img, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    CHECK(rc == 0);
    if (rc) return;
    json_t *es = json_object_get(m, "entries");
    CHECK(json_array_size(es) == img->count);
    for (uint32_t i = 0; i < img->count && i < json_array_size(es); i++) {
        const struct ofs_entry *e = &img->entries[i];
        json_t *me = json_array_get(es, i);
        char hex[2 * OFS_PATH_MAX + 1];
        ofs_hex((const uint8_t *)e->path, e->path_len, hex);
        CHECK(!strcmp(hex, json_string_value(json_object_get(me, "path_hex"))));
        CHECK(!strcmp(type_name(e->type), json_string_value(json_object_get(me, "type"))));
        CHECK(e->mode == strtoul(json_string_value(json_object_get(me, "mode")), NULL, 8));
        CHECK(e->size == (uint64_t)json_integer_value(json_object_get(me, "size")));
        /* lookup finds it, by its own path */
        CHECK(ofs_image_lookup(img, e->path, e->path_len) == e);
        if (e->type == OFS_T_SYMLINK) {
            const char *t = json_string_value(json_object_get(me, "target"));
            CHECK(strlen(t) == e->size && !memcmp(t, e->target, e->size));
        }
        if (e->type == OFS_T_FILE && e->size) {
            ofs_hex(e->root, 32, hex);
            CHECK(!strcmp(hex, json_string_value(json_object_get(me, "root"))));
        }
        /* every non-root entry is listed among its parent's children */
        if (i) {
            const struct ofs_entry *p = &img->entries[e->parent];
            int found = 0;
            for (uint32_t c = 0; c < p->child_count; c++)
                found |= img->children[p->first_child + c] == i;
            CHECK(found);
        }
    }
    CHECK(ofs_image_lookup(img, "nope", 4) == NULL);
    CHECK(ofs_image_lookup(img, "a/b/c/leaf.txt", 14) != NULL);
    rc = verify_all(img, err, sizeof err, m);
    if (rc) fprintf(stderr, "%s\n", err);
    CHECK(rc == 0);
    ofs_image_close(img);
    json_decref(m);
}

static void check_cases(void) {
    json_error_t je;
    json_t *cases = json_load_file(VEC "/cases.json", 0, &je);
    CHECK(cases && json_array_size(cases) >= 10);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *kind = json_string_value(json_object_get(c, "error"));
        const char *want_path = json_string_value(json_object_get(c, "path"));
        const char *ks = json_string_value(json_object_get(c, "key"));
        char dir[512], err[1024] = "";
        uint8_t mac[16], key[16];
        snprintf(dir, sizeof dir, VEC "/%s", json_string_value(json_object_get(c, "image")));
        CHECK(hex16(json_string_value(json_object_get(c, "mac")), mac) == 0);
        if (ks) CHECK(hex16(ks, key) == 0);
        struct ofs_image *img = NULL;
        int rc = ofs_image_open(dir, mac, ks ? key : NULL, &img, err, sizeof err);
        if (!rc) {
            CHECK(want_path != NULL); /* opening only fails for failures at open */
            rc = verify_all(img, err, sizeof err, NULL);
            ofs_image_close(img);
        } else {
            CHECK(img == NULL);
            CHECK(want_path == NULL);
        }
        if (rc == 0) fprintf(stderr, "case %s: accepted\n", name);
        CHECK(rc == OFS_ERR_VERIFY);
        char needle[64];
        snprintf(needle, sizeof needle, ": %s: ", kind);
        CHECK_STR_CONTAINS(err, needle);
        if (want_path) {
            snprintf(needle, sizeof needle, ": %s: ", want_path);
            CHECK_STR_CONTAINS(err, needle);
        }
        CHECK_STR_CONTAINS(err, dir); /* the artifact is named */
    }
    CHECK(i >= 10);
    json_decref(cases);
}

/* Strict parsing on hand-made metadata: each listed rejection rule. */
static void check_parse_rules(void) {
    uint8_t m[64 + 3 * 96 + 16];
    struct {
        const char *what;
        size_t off;
        uint8_t val;
    } flips[] = {
        {"magic", 0, 'X'},
        {"version", 8, 2},
        {"flags", 12, 2},
        {"block size", 17, 0x20},
        {"reserved hdr", 40, 1},
        {"entry reserved", 64 + 96 + 13, 1},
        {"type", 64 + 96 + 12, 9},
        {"mode", 64 + 96 + 17, 2},
        {"dir size", 64 + 96 + 24, 1},
        {"path_off", 64 + 96, 1},
        {"path NUL", 64 + 288 + 0, 0},
        {"dot component", 64 + 288 + 3, '.'},
    };
    /* root, "a" (dir), "a/." placeholder -> "a/b" (dir) */
    memset(m, 0, sizeof m);
    memcpy(m, "OCBIMG01", 8);
    ofs_put_u32(m + 8, 1);
    ofs_put_u32(m + 16, OFS_BLOCK);
    ofs_put_u32(m + 20, 3);
    ofs_put_u64(m + 24, 4);
    for (int i = 0; i < 3; i++) {
        uint8_t *e = m + 64 + 96 * i;
        e[12] = OFS_T_DIR;
        ofs_put_u32(e + 16, 0755);
    }
    ofs_put_u64(m + 64 + 96, 0), ofs_put_u32(m + 64 + 96 + 8, 1);
    ofs_put_u64(m + 64 + 192, 1), ofs_put_u32(m + 64 + 192 + 8, 3);
    memcpy(m + 64 + 288, "aa/b", 4);
    /* the fixture itself parses */
    struct ofs_image img = {.dir = "fixture"};
    char err[512];
    size_t len = 64 + 288 + 4;
    CHECK(ofs_image_parse(&img, m, len, NULL, err, sizeof err) == 0);
    CHECK(img.count == 3 && img.entries[2].parent == 1 && img.entries[1].child_count == 1);
    ofs_image_clear(&img);
    for (size_t k = 0; k < sizeof flips / sizeof flips[0]; k++) {
        uint8_t t[sizeof m];
        memcpy(t, m, sizeof m);
        t[flips[k].off] = flips[k].val;
        int rc = ofs_image_parse(&img, t, len, NULL, err, sizeof err);
        if (rc == 0) fprintf(stderr, "rule '%s' not enforced\n", flips[k].what);
        CHECK(rc == OFS_ERR_VERIFY);
        CHECK_STR_CONTAINS(err, "metadata-malformed");
    }
    /* a missing parent: "a" renamed to "c" ("c" < "c/b"? no: "a/b" lacks "a") */
    uint8_t t[sizeof m];
    memcpy(t, m, sizeof m);
    t[64 + 288] = 'c'; /* strings "c","a/b": out of order and parent missing */
    CHECK(ofs_image_parse(&img, t, len, NULL, err, sizeof err) == OFS_ERR_VERIFY);
    /* trailing byte, truncated */
    CHECK(ofs_image_parse(&img, m, len + 1, NULL, err, sizeof err) == OFS_ERR_VERIFY);
    CHECK(ofs_image_parse(&img, m, len - 1, NULL, err, sizeof err) == OFS_ERR_VERIFY);
    CHECK(ofs_image_parse(&img, m, 10, NULL, err, sizeof err) == OFS_ERR_VERIFY);
}

int main(void) {
    check_image("integrity");
    check_image("encrypted");
    check_cases();
    check_parse_rules();
    CHECK_DONE();
}
