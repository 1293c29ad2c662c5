/* Internal interface between the two halves of the writable layer: upper.c (the tree of
 * nodes and the file contents) and upper_index.c (the layer and index files). */
#ifndef OFS_UPPER_INT_H
#define OFS_UPPER_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "upper.h"

/* HKDF of the layer's master key and salt with info (+ extra) into out. 0 or -1. */
int ofs_upper_derive(const struct ofs_upper *up, const char *info, const void *extra,
                     size_t elen, void *out, size_t outlen);
/* Whole-buffer pread (returns the bytes read, short only at EOF, or -1) and pwrite (0/-1). */
ssize_t ofs_upper_pread(int fd, void *buf, size_t len, off_t off);
int ofs_upper_pwrite(int fd, const void *buf, size_t len, off_t off);
/* A new detached node (errno ENOMEM on failure); freeing one node (closes its fd; not its
 * children). */
struct unode *ofs_unode_new(const char *name, size_t len, uint8_t type, uint32_t mode);
void ofs_unode_free(struct unode *n);
/* Unlink the data files of removed nodes once the index no longer names them. */
void ofs_upper_delete_doomed(struct ofs_upper *up);

#endif
