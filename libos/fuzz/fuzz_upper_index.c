/* libFuzzer harness for the writable layer's index parser (docs/formats/writable-layer.md
 * section 4), fed the decrypted plaintext T directly; the same bytes are then stored as the
 * index file of a real layer (in a temporary directory) and opened with ofs_upper_open, which
 * checks the container header and tag before parsing.  docs/runtime.md "Fuzzing". */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "upper.h"

static size_t walk(const struct unode *n) {
    size_t c = 1;
    for (const struct unode *k = n->child; k; k = k->next) {
        if (k->parent != n || strchr(k->name, '/')) abort();
        c += walk(k);
    }
    return c;
}

static const uint8_t KEY[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static char dir[64];

static void remove_layer(void) {
    char p[96];
    const char *names[] = {"index", "index.tmp", "layer", "data"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (unlink(p) != 0) rmdir(p);
    }
    rmdir(dir);
}

/* A fresh writable layer (its "layer" file written with KEY), made once per process and
 * removed at exit. */
static const char *layer_dir(void) {
    if (!dir[0]) {
        struct ofs_upper *up;
        char err[512];
        snprintf(dir, sizeof dir, "/tmp/fuzz_upper_XXXXXX");
        if (!mkdtemp(dir) || ofs_upper_open(dir, KEY, 0755, &up, err, sizeof err) ||
            ofs_upper_close(up, err, sizeof err))
            abort();
        atexit(remove_layer);
    }
    return dir;
}

static void open_stored(const uint8_t *data, size_t size) {
    char path[96], err[512];
    struct ofs_upper *up;
    const char *dir = layer_dir();
    snprintf(path, sizeof path, "%s/index", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size || close(fd)) abort();
    if (ofs_upper_open(dir, KEY, 0755, &up, err, sizeof err) == 0) {
        walk(up->root);
        ofs_upper_close(up, err, sizeof err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct ofs_upper up;
    char err[512];
    memset(&up, 0, sizeof up);
    up.dir = "fuzz";
    if (ofs_upper_parse_index(&up, data, size, err, sizeof err) == 0) {
        walk(up.root);
        ofs_upper_free_tree(up.root);
    }
    open_stored(data, size);
    return 0;
}
