/* libFuzzer harness for the image metadata parser (docs/formats/image.md sections 3 and 5).
 * Build and run: docs/runtime.md "Fuzzing". */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

/* The vectors' key (tests/vectors/image/key.txt), so mutated encrypted vectors that still
 * decrypt reach the plaintext parser. */
static const uint8_t KEY[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

static void exercise(struct ofs_image *img) {
    for (uint32_t i = 0; i < img->count; i++) {
        const struct ofs_entry *e = &img->entries[i];
        if (ofs_image_lookup(img, e->path, e->path_len) != e) abort();
        size_t nl;
        const char *n = ofs_entry_name(e, &nl);
        if (i && (nl == 0 || n < e->path)) abort();
        for (uint32_t c = 0; c < e->child_count; c++)
            if (img->entries[img->children[e->first_child + c]].parent != i) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    for (int k = 0; k < 2; k++) {
        struct ofs_image img;
        memset(&img, 0, sizeof img);
        img.dir = "fuzz";
        img.objects_fd = -1;
        if (ofs_image_parse(&img, data, size, k ? KEY : NULL, err, sizeof err) == 0) {
            exercise(&img);
            ofs_image_clear(&img);
        } else if (img.entries || img.meta) {
            abort(); /* a rejected input leaves nothing allocated */
        }
    }
    return 0;
}
