/* occlum-fs: the root FS of an instance served through FUSE (the API the runtime calls).
 *
 * The lower layer is a verified read-only image (an SEFS image, docs/formats/sefs.md); the upper layer is
 * the encrypted writable layer (docs/formats/writable-layer.md).  ofs_serve() opens and
 * verifies both BEFORE mounting (a tampered image or a wrong key never gets mounted), then
 * mounts at the mountpoint and serves in the calling process until it is unmounted or gets
 * SIGINT/SIGTERM/SIGHUP. */
#ifndef OFS_H
#define OFS_H

#include <stddef.h>
#include <stdint.h>

/* Return values of ofs_serve (same meaning as image.h's OFS_ERR_*). */
#define OFS_SERVE_OK 0
#define OFS_SERVE_INPUT 2  /* bad or missing input */
#define OFS_SERVE_VERIFY 3 /* an integrity check failed before mounting */
#define OFS_SERVE_IO 5     /* I/O, mount or FUSE failure */

struct ofs_options {
    const char *image_dir;    /* lower: the image directory (e.g. build/mount/__ROOT) */
    uint8_t image_mac[16];    /* its MAC (from the protected config / .ROOT_MAC) */
    const uint8_t *image_key; /* 16 bytes for encrypted images, else NULL */
    const char *upper_dir;    /* writable layer (e.g. run/mount/__ROOT); NULL = none */
    /* Key of the writable layer: 16 bytes, or NULL to derive it (ofs_upper_key). */
    const uint8_t *upper_key;
    /* For integrity-only images without upper_key: the per-instance secret file; NULL means
     * <upper_dir>/../../.sim_seal_key (run/.sim_seal_key for run/mount/__ROOT). */
    const char *seal_key_file;
    const char *mountpoint;
    int single_threaded;
    int read_only;     /* mount read-only (occlum mount of the init FS); upper may be NULL */
    int allow_other;   /* let other uids (the sandboxed app) reach the mount */
    int ready_fd;      /* > 0: write one byte "1" there once mounted, then close it */
    unsigned uid, gid; /* owner reported for every file */
    /* One line per failure (setup error, block failing verification); NULL = stderr. */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    int log_files; /* also one line per image file opened (OCCLUM_LOG_LEVEL=trace) */
    char *errbuf; /* optional: the setup error message also lands here */
    size_t errlen;
};

/* Serve until unmounted.  Returns OFS_SERVE_* (0 after a clean unmount). */
int ofs_serve(const struct ofs_options *o);

/* The writable layer's key when the caller gives none: HKDF of the image key, or (integrity-
 * only image) of the secret in seal_key_file, created with 16 random bytes (mode 0600) when
 * absent.  Returns 0, or OFS_SERVE_* with a message in err. */
int ofs_upper_key(const uint8_t *image_key, const char *seal_key_file, uint8_t out[16], char *err,
                  size_t errlen);

#endif
