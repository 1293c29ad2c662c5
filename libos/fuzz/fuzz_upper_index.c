/* libFuzzer harness for the writable layer's index parser (docs/formats/writable-layer.md
 * section 4), fed the decrypted plaintext T directly. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "upper.h"

static size_t walk(const struct unode *n) {
    size_t c = 1;
    for (const struct unode *k = n->child; k; k = k->next) {
        if (k->parent != n || strchr(k->name, '/')) abort();
        c += walk(k);
    }
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct ofs_upper up;
    char err[512];
    memset(&up, 0, sizeof up);
    up.dir = "fuzz";
    if (ofs_upper_parse_index(&up, data, size, err, sizeof err) == 0) {
        walk(up.root);
        ofs_upper_free_tree(up.root);
    }
    return 0;
}
