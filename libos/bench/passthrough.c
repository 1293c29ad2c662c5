/* Baseline for benchmarks/fs_read.py: a plain read-only FUSE passthrough of one directory,
 * with the same libfuse API, threading and cache settings as occlum-fs, and no verification.
 * Built by the benchmark itself; not part of the runtime.
 *
 *   passthrough [--single-threaded] <source_dir> <mountpoint> */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 31
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *src;

static void full(const char *path, char *out, size_t n) { snprintf(out, n, "%s%s", src, path); }

static int pt_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    char p[4096];
    (void)fi;
    full(path, p, sizeof p);
    return lstat(p, st) < 0 ? -errno : 0;
}

static int pt_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
    char p[4096];
    (void)off, (void)fi, (void)flags;
    full(path, p, sizeof p);
    DIR *d = opendir(p);
    if (!d) return -errno;
    for (struct dirent *e; (e = readdir(d));)
        filler(buf, e->d_name, NULL, 0, 0);
    closedir(d);
    return 0;
}

static int pt_open(const char *path, struct fuse_file_info *fi) {
    char p[4096];
    full(path, p, sizeof p);
    int fd = open(p, O_RDONLY);
    if (fd < 0) return -errno;
    fi->fh = (uint64_t)fd;
    fi->keep_cache = 1;
    return 0;
}

static int pt_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)path;
    ssize_t n = pread((int)fi->fh, buf, size, off);
    return n < 0 ? -errno : (int)n;
}

static int pt_release(const char *path, struct fuse_file_info *fi) {
    (void)path;
    close((int)fi->fh);
    return 0;
}

static void *pt_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
    (void)conn;
    cfg->kernel_cache = 0;
    cfg->entry_timeout = cfg->attr_timeout = 1.0;
    return NULL;
}

static const struct fuse_operations ops = {
    .getattr = pt_getattr,
    .readdir = pt_readdir,
    .open = pt_open,
    .read = pt_read,
    .release = pt_release,
    .init = pt_init,
};

int main(int argc, char **argv) {
    int single = argc > 1 && !strcmp(argv[1], "--single-threaded");
    if (argc != 3 + single) return 2;
    src = realpath(argv[1 + single], NULL);
    char *fargv[] = {argv[0], "-o", "fsname=passthrough,ro", NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
    struct fuse *f = fuse_new(&args, &ops, sizeof ops, NULL);
    if (!f || fuse_mount(f, argv[2 + single])) return 5;
    fuse_set_signal_handlers(fuse_get_session(f));
    int rc = single ? fuse_loop(f) : fuse_loop_mt(f, 0);
    fuse_remove_signal_handlers(fuse_get_session(f));
    fuse_unmount(f);
    fuse_destroy(f);
    return rc ? 1 : 0;
}
