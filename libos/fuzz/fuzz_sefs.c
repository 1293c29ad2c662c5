/* libFuzzer harness for the SEFS record parsers (docs/formats/sefs.md): the metadata table
 * (superblock, free maps, inodes) and directory contents.  Build and run: docs/runtime.md
 * "Fuzzing". */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

static int each(void *ctx, const char *name, size_t nl, uint32_t id, uint32_t type) {
    (void)id;
    (void)type;
    if (nl == 0 || nl > OFS_NAME_MAX || memchr(name, '/', nl)) abort();
    ++*(size_t *)ctx;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    struct ofs_image img;
    memset(&img, 0, sizeof img);
    img.dir = "fuzz";
    if (ofs_image_parse(&img, data, size, err, sizeof err) == 0) {
        if (img.inodes[2].type != OFS_T_DIR) abort();
        for (uint32_t i = 0; i <= img.max_id; i++)
            if (img.inodes[i].type > OFS_T_SYMLINK || img.inodes[i].mode > 0777) abort();
    }
    ofs_image_clear(&img);
    size_t n = 0;
    if (size >= 8)
        (void)ofs_sefs_dir_parse(data + 8, size - 8, data[0], data[1], each, &n, "fuzz", err, sizeof err);
    return 0;
}
