/* ofs_serve(): open and verify the image and the writable layer, mount the union at the
 * mountpoint and run the FUSE loop, with the index flusher thread (union_state.c) running;
 * the index is written at unmount too.  Also the writable layer's key (ofs_upper_key). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "union.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ofs_crypto.h"
#include "ofs_thread.h"

static int report(const struct ofs_options *o, int code, const char *msg) {
    union_log(o, "%s", msg);
    if (o->errbuf && o->errlen) snprintf(o->errbuf, o->errlen, "%s", msg);
    return code;
}

static int read_seal_key(const char *file, uint8_t key[16], char *err, size_t errlen) {
    char text[64];
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        /* First use: a fresh secret, written exclusively (two racing creators: one wins). */
        uint8_t k[16];
        char hex[48];
        if (ofs_random(k, 16))
            return snprintf(err, errlen, "%s: no randomness", file), OFS_SERVE_IO;
        ofs_format_hex16(k, hex);
        hex[47] = '\n';
        fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            int ok = write(fd, hex, 48) == 48 && fsync(fd) == 0;
            close(fd);
            if (!ok) {
                unlink(file);
                return snprintf(err, errlen, "%s: cannot write the instance secret", file),
                       OFS_SERVE_IO;
            }
        } else if (errno != EEXIST) {
            return snprintf(err, errlen, "%s: cannot create the instance secret: %s", file,
                            strerror(errno)),
                   OFS_SERVE_IO;
        }
        fd = open(file, O_RDONLY | O_CLOEXEC);
    }
    if (fd < 0)
        return snprintf(err, errlen, "%s: cannot read the instance secret: %s", file,
                        strerror(errno)),
               OFS_SERVE_IO;
    ssize_t n = read(fd, text, sizeof text);
    close(fd);
    if (n < 0 || ofs_parse_hex16(text, (size_t)n, key))
        return snprintf(err, errlen, "%s: not a 16-byte key 'xx-xx-...'", file), OFS_SERVE_INPUT;
    return 0;
}

int ofs_upper_key(const uint8_t *image_key, const char *seal_key_file, uint8_t out[16], char *err,
                  size_t errlen) {
    uint8_t seal[16];
    const char *info;
    const uint8_t *ikm = image_key;
    if (!ikm) {
        int rc = read_seal_key(seal_key_file, seal, err, errlen);
        if (rc) return rc;
        ikm = seal;
        info = "occlum-build upper v1 from instance secret";
    } else {
        info = "occlum-build upper v1 from image key";
    }
    if (ofs_hkdf(ikm, 16, "", 0, info, strlen(info), out, 16))
        return snprintf(err, errlen, "key derivation failed"), OFS_SERVE_IO;
    return 0;
}

int ofs_serve(const struct ofs_options *o) {
    struct ofs_union_state s = {.o = o};
    char err[1024];
    int rc;
    struct fuse *f = NULL;
    if (!o->image_dir || !o->mountpoint)
        return report(o, OFS_SERVE_INPUT, "ofs_serve: image dir and mountpoint are required");
    if ((rc = ofs_image_open(o->image_dir, o->image_mac, o->image_key, &s.img, err, sizeof err)))
        return report(o, rc, err);
    if (o->upper_dir) {
        uint8_t key[16];
        char seal[4096];
        const char *sf = o->seal_key_file;
        if (!sf) { /* <upper>/../../.sim_seal_key, e.g. run/.sim_seal_key for run/mount/__ROOT */
            char up[4096], *abs;
            snprintf(up, sizeof up, "%s", o->upper_dir);
            if (!(abs = realpath(dirname(up), NULL))) {
                rc = OFS_SERVE_INPUT;
                snprintf(err, sizeof err, "%s: parent directory of the writable layer: %s",
                         o->upper_dir, strerror(errno));
                goto out_err;
            }
            snprintf(seal, sizeof seal, "%s/.sim_seal_key", dirname(abs));
            free(abs);
            sf = seal;
        }
        if (o->upper_key)
            memcpy(key, o->upper_key, 16);
        else if ((rc = ofs_upper_key(o->image_key, sf, key, err, sizeof err)))
            goto out_err;
        if ((rc =
                 ofs_upper_open(o->upper_dir, key, s.img->entries[0].mode, &s.up, err, sizeof err)))
            goto out_err;
    }
    pthread_mutex_init(&s.lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s.wake, &ca);
    pthread_condattr_destroy(&ca);
    clock_gettime(CLOCK_MONOTONIC, &s.last_flush);
    pthread_t flusher_thread;
    int have_flusher = 0;
    char opts[256];
    snprintf(opts, sizeof opts, "fsname=occlum-fs,subtype=occlum%s%s",
             o->allow_other ? ",allow_other" : "", (o->read_only || !s.up) ? ",ro" : "");
    char *argv[] = {"occlum-fs", "-o", opts, NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, argv);
    args.allocated = 0;
    f = fuse_new(&args, &ofs_union_ops, sizeof ofs_union_ops, &s);
    fuse_opt_free_args(&args); /* fuse_new keeps what it needs */
    if (!f) {
        rc = OFS_SERVE_IO;
        snprintf(err, sizeof err, "%s: cannot set up FUSE", o->mountpoint);
        goto out_err;
    }
    if (fuse_mount(f, o->mountpoint) != 0) {
        rc = OFS_SERVE_IO;
        snprintf(err, sizeof err, "%s: cannot mount (FUSE needs root and /dev/fuse)",
                 o->mountpoint);
        goto out_err;
    }
    struct fuse_session *se = fuse_get_session(f);
    /* SIGTERM stops the server (occlum_pal_destroy, PDEATHSIG, `kill`).  libfuse installs its
     * handler only over SIG_DFL, and an ignored or blocked SIGTERM is inherited from whoever
     * started us: without this the server could not be stopped.  Unblocked only once the
     * handler is in place, so a SIGTERM that is already pending ends the loop at once. */
    struct sigaction cur;
    if (sigaction(SIGTERM, NULL, &cur) == 0 && cur.sa_handler == SIG_IGN) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGTERM, &dfl, NULL);
    }
    fuse_set_signal_handlers(se);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &term, NULL);
    if (s.up) have_flusher = ofs_thread_start(&flusher_thread, NULL, union_flusher, &s, "ofs-flusher") == 0;
    if (o->ready_fd > 0) {
        if (write(o->ready_fd, "1", 1) != 1) { /* the waiter went away; serve anyway */
        }
        close(o->ready_fd);
    }
    rc = o->single_threaded ? fuse_loop(f) : fuse_loop_mt(f, 0);
    fuse_remove_signal_handlers(se);
    if (have_flusher) {
        pthread_mutex_lock(&s.lock);
        s.stop = 1;
        pthread_cond_signal(&s.wake);
        pthread_mutex_unlock(&s.lock);
        pthread_join(flusher_thread, NULL);
    }
    fuse_unmount(f);
    fuse_destroy(f); /* calls op_destroy: flushes the index */
    f = NULL;
    rc = rc < 0 ? OFS_SERVE_IO : OFS_SERVE_OK;
    if (rc) snprintf(err, sizeof err, "%s: FUSE session failed", o->mountpoint);
    if (s.up && ofs_upper_close(s.up, err, sizeof err)) rc = OFS_SERVE_IO;
    s.up = NULL;
    ofs_image_close(s.img);
    pthread_cond_destroy(&s.wake);
    pthread_mutex_destroy(&s.lock);
    return rc ? report(o, rc, err) : OFS_SERVE_OK;
out_err:
    if (f) fuse_destroy(f);
    if (s.up) ofs_upper_close(s.up, NULL, 0);
    ofs_image_close(s.img);
    return report(o, rc, err);
}

