/* libFuzzer harness for the Protected FS reader (docs/formats/protected-fs.md): a fuzzed file
 * opened integrity-only and with a key, then read whole.  Build and run: docs/runtime.md
 * "Fuzzing". */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "image.h"
#include "pfs.h"

static const uint8_t KEY[16] = {0x82, 0xcf, 0x25, 0x7d, 0x29, 0xe9, 0xd2, 0x8c,
                                0x5a, 0xf4, 0x24, 0xec, 0xb9, 0xc7, 0x68, 0x4d};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    static uint8_t buf[1 << 16];
    for (int k = 0; k < 2; k++) {
        int fd = memfd_create("pfs", MFD_CLOEXEC);
        if (fd < 0) return 0;
        if (size && write(fd, data, size) != (ssize_t)size) {
            close(fd);
            return 0;
        }
        struct pfs_file f;
        if (pfs_open_fd(&f, fd, "f.protected", k ? KEY : NULL, "fuzz", err, sizeof err) == OFS_OK) {
            uint64_t off = 0;
            while (off < f.m.size && off < (1u << 20)) {
                ssize_t n = pfs_read(&f, buf, sizeof buf, off, err, sizeof err);
                if (n <= 0) break;
                off += (uint64_t)n;
            }
            pfs_close(&f);
        }
    }
    return 0;
}
