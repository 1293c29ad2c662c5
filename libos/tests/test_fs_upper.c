/* The writable layer without FUSE: contents round-trip through close and reopen (holes,
 * partial blocks, truncation), the tree persists, and tampering or another key is refused. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "image.h"
#include "upper.h"

static const uint8_t KEY[16] = "0123456789abcdef";

static void flip(const char *path, off_t off) {
    int fd = open(path, O_RDWR);
    uint8_t b;
    CHECK(fd >= 0 && pread(fd, &b, 1, off) == 1);
    b ^= 0x40;
    CHECK(pwrite(fd, &b, 1, off) == 1);
    close(fd);
}

static int rm_tree(const char *d) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    return system(cmd);
}

int main(void) {
    char tmpl[] = "/tmp/test_fs_upper.XXXXXX", dir[600], path[700], err[512];
    CHECK(mkdtemp(tmpl) != NULL);
    snprintf(dir, sizeof dir, "%s/layer", tmpl);
    struct ofs_upper *up;
    CHECK(ofs_upper_open(dir, KEY, 0751, &up, err, sizeof err) == 0);
    CHECK(up->root->mode == 0751);

    /* a file written with a hole, overwrites across blocks, then truncated */
    struct unode *d = ofs_upper_add(up, up->root, "dir", 3, OFS_T_DIR, 0700, NULL);
    struct unode *f = ofs_upper_add(up, d, "file", 4, OFS_T_FILE, 0640, NULL);
    CHECK(d && f && ofs_upper_add(up, d, "file", 4, OFS_T_FILE, 0640, NULL) == NULL &&
          errno == EEXIST);
    CHECK(ofs_upper_add(up, up->root, "ln", 2, OFS_T_SYMLINK, 0777, "dir/file") != NULL);
    CHECK(ofs_upper_add(up, up->root, "gone", 4, OFS_U_WHITEOUT, 0, NULL) != NULL);
    static uint8_t want[5 * OFS_BLOCK], got[5 * OFS_BLOCK];
    memset(want, 0, sizeof want);
    memset(want, 'a', 100);
    memset(want + 3 * OFS_BLOCK + 5, 'b', 4000);
    memset(want + 1000, 'c', 6000);
    CHECK(ofs_upper_fopen(up, f) == 0);
    CHECK(ofs_upper_write(up, f, want, 100, 0) == 100);
    CHECK(ofs_upper_write(up, f, want + 3 * OFS_BLOCK + 5, 4000, 3 * OFS_BLOCK + 5) == 4000);
    CHECK(ofs_upper_write(up, f, want + 1000, 6000, 1000) == 6000);
    uint64_t size = 3 * OFS_BLOCK + 4005;
    CHECK(f->size == size);
    CHECK(ofs_upper_read(up, f, got, sizeof got, 0) == (ssize_t)size && !memcmp(got, want, size));
    /* truncate into the middle of block 3, then extend: the cut bytes read as zeros */
    CHECK(ofs_upper_truncate(up, f, 3 * OFS_BLOCK + 10) == 0);
    CHECK(ofs_upper_truncate(up, f, size) == 0);
    memset(want + 3 * OFS_BLOCK + 10, 0, 3995);
    CHECK(ofs_upper_read(up, f, got, sizeof got, 0) == (ssize_t)size && !memcmp(got, want, size));
    CHECK(ofs_upper_read(up, f, got, 10, size) == 0);
    ofs_upper_fclose(up, f);
    /* move it */
    CHECK(ofs_upper_move(up, f, up->root, "moved", 5) == 0);
    uint64_t id = f->id;
    CHECK(ofs_upper_close(up, err, sizeof err) == 0);

    /* reopen: the same tree and contents */
    CHECK(ofs_upper_open(dir, KEY, 0700, &up, err, sizeof err) == 0);
    CHECK(up->root->mode == 0751);
    f = ofs_upper_child(up->root, "moved", 5);
    d = ofs_upper_child(up->root, "dir", 3);
    struct unode *ln = ofs_upper_child(up->root, "ln", 2),
                 *w = ofs_upper_child(up->root, "gone", 4);
    CHECK(f && d && ln && w && f->type == OFS_T_FILE && f->mode == 0640 && f->size == size);
    CHECK(d->type == OFS_T_DIR && d->child == NULL && d->mode == 0700);
    CHECK(ln->type == OFS_T_SYMLINK && !strcmp(ln->target, "dir/file"));
    CHECK(w->type == OFS_U_WHITEOUT);
    CHECK(ofs_upper_fopen(up, f) == 0);
    CHECK(ofs_upper_read(up, f, got, sizeof got, 0) == (ssize_t)size && !memcmp(got, want, size));
    ofs_upper_fclose(up, f);
    /* unlink while open: data stays readable until the last close, then is removed */
    CHECK(ofs_upper_fopen(up, f) == 0);
    ofs_upper_remove(up, f);
    CHECK(ofs_upper_child(up->root, "moved", 5) == NULL);
    CHECK(ofs_upper_read(up, f, got, 100, 0) == 100 && !memcmp(got, want, 100));
    snprintf(path, sizeof path, "%s/data/%016llx", dir, (unsigned long long)id);
    CHECK(access(path, F_OK) == 0);
    ofs_upper_fclose(up, f);
    CHECK(access(path, F_OK) == 0); /* deleted only once an index without it is written */
    CHECK(ofs_upper_flush(up) == 0);
    CHECK(access(path, F_OK) != 0);
    /* a second file, then tamper with one of its blocks */
    f = ofs_upper_add(up, up->root, "t", 1, OFS_T_FILE, 0600, NULL);
    CHECK(f && ofs_upper_fopen(up, f) == 0);
    CHECK(ofs_upper_write(up, f, want, 2 * OFS_BLOCK, 0) == 2 * OFS_BLOCK);
    snprintf(path, sizeof path, "%s/data/%016llx", dir, (unsigned long long)f->id);
    flip(path, 4124 + 12 + 7); /* block 1's ciphertext */
    CHECK(ofs_upper_read(up, f, got, OFS_BLOCK, 0) == OFS_BLOCK);
    CHECK(ofs_upper_read(up, f, got, OFS_BLOCK, OFS_BLOCK) == -EIO);
    ofs_upper_fclose(up, f);
    CHECK(ofs_upper_close(up, err, sizeof err) == 0);

    /* another key is refused, naming the layer */
    uint8_t other[16];
    memcpy(other, KEY, 16);
    other[0] ^= 1;
    CHECK(ofs_upper_open(dir, other, 0755, &up, err, sizeof err) == OFS_ERR_VERIFY);
    CHECK_STR_CONTAINS(err, "different key");
    CHECK_STR_CONTAINS(err, dir);
    /* a flipped index byte is refused */
    snprintf(path, sizeof path, "%s/index", dir);
    flip(path, 40);
    CHECK(ofs_upper_open(dir, KEY, 0755, &up, err, sizeof err) == OFS_ERR_VERIFY);
    CHECK_STR_CONTAINS(err, "index");
    flip(path, 40);
    CHECK(ofs_upper_open(dir, KEY, 0755, &up, err, sizeof err) == 0);
    CHECK(ofs_upper_close(up, err, sizeof err) == 0);
    /* a flipped layer header byte is refused */
    snprintf(path, sizeof path, "%s/layer", dir);
    flip(path, 20);
    CHECK(ofs_upper_open(dir, KEY, 0755, &up, err, sizeof err) == OFS_ERR_VERIFY);
    CHECK(rm_tree(tmpl) == 0);
    CHECK_DONE();
}
