/* Reader and verifier of the occlum-build image format (docs/formats/image.md).
 *
 * Opening an image reads and authenticates its metadata only (MAC, then decryption and a
 * strict parse).  A file's leaves are checked against its object root when the file is
 * opened, and each block against its leaf when it is read.  Errors name the image directory,
 * the path inside the image and the reason. */
#ifndef OFS_IMAGE_H
#define OFS_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ofs_crypto.h" /* OFS_BLOCK */

#define OFS_T_FILE 1
#define OFS_T_DIR 2
#define OFS_T_SYMLINK 3
#define OFS_PATH_MAX 4095
#define OFS_NAME_MAX 255

/* Return codes (also used by the writable layer and ofs_serve). */
#define OFS_OK 0
#define OFS_ERR_INPUT 2  /* missing or malformed input (file absent, bad argument) */
#define OFS_ERR_VERIFY 3 /* integrity check failed: MAC, tag, hash, strict parse */
#define OFS_ERR_IO 5     /* an I/O error reading or writing */

struct ofs_entry {
    const char *path; /* inside the metadata, not NUL-terminated */
    uint32_t path_len;
    uint32_t mode;
    uint8_t type;
    uint64_t size;
    const char *target;     /* symlinks: target bytes (size of them) */
    const uint8_t *root;    /* 32 bytes */
    const uint8_t *file_id; /* 16 bytes */
    uint32_t parent;        /* index of the parent directory (the root is its own parent) */
    uint32_t first_child, child_count; /* directories: children[first_child ..] */
};

struct ofs_image {
    char *dir;      /* image directory as given (for messages) */
    int objects_fd; /* <dir>/objects, O_PATH|O_DIRECTORY */
    int encrypted;
    uint8_t key[16];
    uint8_t *meta; /* plaintext metadata (owned) */
    size_t meta_len;
    uint32_t count;
    struct ofs_entry *entries;
    uint32_t *children; /* child indices grouped by parent */
};

/* An open regular file of the image: its verified leaves and the object's descriptor. */
struct ofs_ifile {
    const struct ofs_image *img;
    const struct ofs_entry *e;
    int fd;
    uint64_t nblocks;
    uint8_t *leaves; /* 32 * nblocks, checked against the entry's root */
    uint8_t fkey[16];
};

/* Open the image in `dir` whose MAC is `mac`; `key` is the 16-byte image key or NULL.
 * On failure returns OFS_ERR_* and writes one line into err. */
int ofs_image_open(const char *dir, const uint8_t mac[16], const uint8_t *key,
                   struct ofs_image **out, char *err, size_t errlen);
void ofs_image_close(struct ofs_image *img);

/* Parse the stored metadata bytes (plaintext or encrypted) into img (for the fuzzer and
 * ofs_image_open; the MAC is checked by the caller).  img->dir names it in messages. */
int ofs_image_parse(struct ofs_image *img, const uint8_t *stored, size_t len, const uint8_t *key,
                    char *err, size_t errlen);
/* Free what ofs_image_parse allocated. */
void ofs_image_clear(struct ofs_image *img);

/* Lookup a path relative to the root ("" or "a/b", no leading or trailing '/').
 * Returns NULL if absent. */
const struct ofs_entry *ofs_image_lookup(const struct ofs_image *img, const char *path, size_t len);
static inline uint32_t ofs_image_index(const struct ofs_image *img, const struct ofs_entry *e) {
    return (uint32_t)(e - img->entries);
}
/* Last path component of e. */
const char *ofs_entry_name(const struct ofs_entry *e, size_t *len);

/* Open a regular file: reads its leaves and checks them against its root.  Errors name the
 * kind of docs/formats/image.md section 7 ("<image dir>: /<path>: <kind>: <detail>"). */
int ofs_ifile_open(const struct ofs_image *img, const struct ofs_entry *e, struct ofs_ifile *f,
                   char *err, size_t errlen);
void ofs_ifile_close(struct ofs_ifile *f);
/* Read up to len bytes at off; each block touched is checked against its leaf (and decrypted).
 * Returns the byte count, or -errno (-EIO on a verification failure, described in err). */
ssize_t ofs_ifile_read(struct ofs_ifile *f, void *buf, size_t len, uint64_t off, char *err,
                       size_t errlen);

#endif
