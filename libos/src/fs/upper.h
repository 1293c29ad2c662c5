/* The writable layer of the root FS (docs/formats/writable-layer.md).
 *
 * The whole tree of the layer (names, types, modes, sizes, link targets, whiteouts, opaque
 * directories) lives in memory and is stored encrypted in <dir>/index; file contents are
 * stored in <dir>/data/<id> as AES-128-GCM blocks.  Callers serialize all calls (the union
 * holds one lock, union.h). */
#ifndef OFS_UPPER_H
#define OFS_UPPER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define OFS_U_WHITEOUT 4 /* a deleted lower entry; types 1-3 are those of image.h */

struct unode {
    char *name;
    uint8_t type;   /* OFS_T_FILE, OFS_T_DIR, OFS_T_SYMLINK or OFS_U_WHITEOUT */
    uint8_t opaque; /* directory hides the lower directory at the same path */
    uint32_t mode;
    uint64_t size; /* file: content size; symlink: target length */
    uint64_t id;   /* file: data object id */
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    char *target;
    struct unode *parent, *child, *next;
    /* open state of a file */
    int opens;
    int fd;
    int detached; /* unlinked while open: freed (and its data removed) on the last close */
    uint8_t key[16];
};

struct ofs_upper {
    char *dir;
    int dfd;
    uint8_t master[16];
    uint8_t salt[32];
    uint8_t kidx[16];
    struct unode *root;
    uint64_t next_id;
    int dirty;
    /* Data files of removed files, deleted once an index without them is written (so a
     * crash never leaves an index naming a missing data file). */
    uint64_t *doomed;
    size_t ndoomed, capdoomed;
};

/* Open (creating when absent) the layer in dir with the 16-byte master key; a new layer's
 * root directory gets root_mode (the image root's mode). */
int ofs_upper_open(const char *dir, const uint8_t key[16], uint32_t root_mode,
                   struct ofs_upper **out, char *err, size_t errlen);
/* Flush and free. */
int ofs_upper_close(struct ofs_upper *up, char *err, size_t errlen);
/* Write the index if it changed (atomically: temp file, fsync, rename). 0 or -errno. */
int ofs_upper_flush(struct ofs_upper *up);

struct unode *ofs_upper_child(const struct unode *dir, const char *name, size_t len);
/* Add a node under parent (replacing a whiteout of that name).  Files get a new empty data
 * object.  Returns NULL with errno set on failure. */
struct unode *ofs_upper_add(struct ofs_upper *up, struct unode *parent, const char *name,
                            size_t len, uint8_t type, uint32_t mode, const char *target);
/* Remove a node (a directory must hold only whiteouts); frees it or, when open, detaches it. */
void ofs_upper_remove(struct ofs_upper *up, struct unode *n);
/* Turn n into a whiteout in place (n must not be a directory with real children). */
struct unode *ofs_upper_whiteout(struct ofs_upper *up, struct unode *n);
/* Move n under parent with a new name (no node of that name may exist). */
int ofs_upper_move(struct ofs_upper *up, struct unode *n, struct unode *parent, const char *name,
                   size_t len);
void ofs_upper_touch(struct unode *n);

/* File contents. */
int ofs_upper_fopen(struct ofs_upper *up, struct unode *n);
void ofs_upper_fclose(struct ofs_upper *up, struct unode *n);
ssize_t ofs_upper_read(struct ofs_upper *up, struct unode *n, void *buf, size_t len, uint64_t off);
ssize_t ofs_upper_write(struct ofs_upper *up, struct unode *n, const void *buf, size_t len,
                        uint64_t off);
int ofs_upper_truncate(struct ofs_upper *up, struct unode *n, uint64_t size);

/* Parse decrypted index bytes into up->root (used by open and by the fuzzer). */
int ofs_upper_parse_index(struct ofs_upper *up, const uint8_t *p, size_t len, char *err,
                          size_t errlen);
void ofs_upper_free_tree(struct unode *n);

#endif
