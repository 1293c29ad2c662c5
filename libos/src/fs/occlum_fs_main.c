/* occlum-fs: serve an image (plus a writable layer) through FUSE in the foreground.
 *
 *   occlum-fs [options] <image_dir> <mac_or_macfile> <upper_dir|-> <mountpoint>
 *
 * Used by `occlum mount` and by tests.  Exit status: 0 after unmount, 2 bad input,
 * 3 verification failure (nothing is mounted), 5 I/O or FUSE failure. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ofs.h"
#include "ocb.h"
#include "ofs_crypto.h"

static void usage(void) {
    fprintf(stderr,
            "usage: occlum-fs [--image-key KEYFILE] [--upper-key KEYFILE] [--seal-key FILE]\n"
            "                 [--read-only] [--single-threaded] [--allow-other] [--ready-fd N]\n"
            "                 <image_dir> <mac|mac_file> <upper_dir|-> <mountpoint>\n");
}

/* A 16-byte value given as text 'xx-xx-...' or as a file holding it. */
static int read_hex16(const char *arg, uint8_t out[16], const char *what) {
    if (ofs_parse_hex16(arg, strlen(arg), out) == 0) return 0;
    FILE *f = fopen(arg, "r");
    char buf[128];
    size_t n;
    if (!f) {
        fprintf(stderr, "occlum-fs: %s: cannot read %s: %s\n", arg, what, strerror(errno));
        return -1;
    }
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (ofs_parse_hex16(buf, n, out)) {
        fprintf(stderr, "occlum-fs: %s: %s is not 16 hex bytes 'xx-xx-...-xx'\n", arg, what);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    struct ofs_options o = {0};
    uint8_t ikey[16], ukey[16];
    int i;
    o.uid = (unsigned)getuid();
    o.gid = (unsigned)getgid();
    o.log_files = ocb_log_level(getenv("OCCLUM_LOG_LEVEL")) >= OCB_LOG_TRACE;
    for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--read-only"))
            o.read_only = 1;
        else if (!strcmp(a, "--single-threaded"))
            o.single_threaded = 1;
        else if (!strcmp(a, "--allow-other"))
            o.allow_other = 1;
        else if (i + 1 < argc && !strcmp(a, "--image-key")) {
            if (read_hex16(argv[++i], ikey, "image key")) return 2;
            o.image_key = ikey;
        } else if (i + 1 < argc && !strcmp(a, "--upper-key")) {
            if (read_hex16(argv[++i], ukey, "writable layer key")) return 2;
            o.upper_key = ukey;
        } else if (i + 1 < argc && !strcmp(a, "--seal-key")) {
            o.seal_key_file = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--ready-fd")) {
            o.ready_fd = atoi(argv[++i]);
        } else {
            usage();
            return 2;
        }
    }
    if (argc - i != 4) {
        usage();
        return 2;
    }
    o.image_dir = argv[i];
    if (read_hex16(argv[i + 1], o.image_mac, "image MAC")) return 2;
    o.upper_dir = strcmp(argv[i + 2], "-") ? argv[i + 2] : NULL;
    o.mountpoint = argv[i + 3];
    return ofs_serve(&o);
}
