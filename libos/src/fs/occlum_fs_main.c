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
#include <getopt.h>
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
    static const struct option opts[] = {
        {"read-only", no_argument, NULL, 'r'},     {"single-threaded", no_argument, NULL, 's'},
        {"allow-other", no_argument, NULL, 'a'},   {"image-key", required_argument, NULL, 'i'},
        {"upper-key", required_argument, NULL, 'u'}, {"seal-key", required_argument, NULL, 'k'},
        {"ready-fd", required_argument, NULL, 'f'}, {NULL, 0, NULL, 0},
    };
    opterr = 0; /* usage() says what is wrong */
    int c;
    /* "+": options end at the first operand, as the runtime passes them */
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 'r': o.read_only = 1; break;
        case 's': o.single_threaded = 1; break;
        case 'a': o.allow_other = 1; break;
        case 'i':
            if (read_hex16(optarg, ikey, "image key")) return 2;
            o.image_key = ikey;
            break;
        case 'u':
            if (read_hex16(optarg, ukey, "writable layer key")) return 2;
            o.upper_key = ukey;
            break;
        case 'k': o.seal_key_file = optarg; break;
        case 'f': o.ready_fd = atoi(optarg); break;
        default: usage(); return 2;
        }
    }
    i = optind;
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
