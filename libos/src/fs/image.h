/* Reader and verifier of SEFS images as Occlum's sefs-cli writes them (docs/formats/sefs.md),
 * over Protected FS files (pfs.h).
 *
 * Opening an image checks `metadata` against the root MAC before anything in it is parsed,
 * then parses the inode table strictly and loads the directory tree (each directory's file
 * checked against its inode MAC).  A regular file's inode file is checked against its inode
 * MAC when it is opened, and each node against its parent when it is read.  Errors name the
 * image directory, the path inside the image and the reason. */
#ifndef OFS_IMAGE_H
#define OFS_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ofs_crypto.h" /* OFS_BLOCK */
#include "pfs.h"

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
    const char *path; /* relative to the root, not NUL-terminated ("" for the root) */
    uint32_t path_len;
    uint32_t mode;
    uint8_t type;
    uint64_t size;
    const char *target; /* symlinks: target bytes (size of them) */
    uint32_t id;        /* SEFS inode id */
    uint8_t mac[16];    /* inode_mac: the PFS MAC of the inode's file */
    int64_t mtime_sec;  /* mtime (0 as sefs-cli writes it; occlum build --keep-mtimes) */
    uint32_t mtime_nsec;
    uint32_t parent;    /* index of the parent directory (the root is its own parent) */
    uint32_t first_child, child_count; /* directories: children[first_child ..] */
};

/* One inode of the metadata table (ofs_image_parse). */
struct ofs_inode {
    uint64_t size;
    uint32_t type, mode, nlinks, blocks;
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    uint8_t mac[16];
};

struct ofs_image {
    char *dir;  /* image directory as given (for messages) */
    int dir_fd; /* O_PATH|O_DIRECTORY of it */
    int encrypted;
    uint8_t key[16];
    uint32_t max_id;          /* inodes[0 .. max_id] (unused ids have type 0) */
    struct ofs_inode *inodes; /* by id */
    uint32_t count;
    struct ofs_entry *entries; /* sorted by path bytes */
    uint32_t *children;        /* child indices grouped by parent */
    char *strings;             /* paths and symlink targets */
};

/* An open regular file of the image. */
struct ofs_ifile {
    const struct ofs_image *img;
    const struct ofs_entry *e;
    struct pfs_file pf;
    char where[OFS_PATH_MAX + 64];
};

/* Open the image in `dir` whose MAC is `mac`; `key` is the 16-byte image key or NULL.
 * On failure returns OFS_ERR_* and writes one line into err. */
int ofs_image_open(const char *dir, const uint8_t mac[16], const uint8_t *key,
                   struct ofs_image **out, char *err, size_t errlen);
void ofs_image_close(struct ofs_image *img);

/* Parse the content of `metadata` (superblock, free map, inode table) into img->inodes (for
 * the fuzzer and ofs_image_open; the MAC is checked by the caller).  img->dir names it. */
int ofs_image_parse(struct ofs_image *img, const uint8_t *meta, size_t len, char *err, size_t errlen);
/* Parse a directory's content (DiskEntry records) of inode `id`: calls `each` for every child
 * (after checking "." and ".."); for the fuzzer and the tree load. */
int ofs_sefs_dir_parse(const uint8_t *data, size_t len, uint32_t id, uint32_t parent,
                       int (*each)(void *ctx, const char *name, size_t nl, uint32_t id, uint32_t type),
                       void *ctx, const char *where, char *err, size_t errlen);
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

/* Open a regular file: its inode file's node 0 checked, its MAC against the inode MAC.
 * Errors read "<image dir>: /<path>: <what failed>". */
int ofs_ifile_open(const struct ofs_image *img, const struct ofs_entry *e, struct ofs_ifile *f,
                   char *err, size_t errlen);
void ofs_ifile_close(struct ofs_ifile *f);
/* Read up to len bytes at off; each node touched is checked against its parent first.
 * Returns the byte count, or -errno (-EIO on a verification failure, described in err). */
ssize_t ofs_ifile_read(struct ofs_ifile *f, void *buf, size_t len, uint64_t off, char *err,
                       size_t errlen);

#endif
