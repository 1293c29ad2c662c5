/* The image writer's tree walk (occlum_build/image/scan.py, walk()), for libocclum-build.so.
 *
 * Lists and lstat-s every entry under a directory, as the Python walk does: each directory
 * opened by its full path, each entry stat-ed relative to it (fstatat, AT_SYMLINK_NOFOLLOW),
 * paths relative to the root as raw bytes, sorted in memcmp order (a prefix first).  Keys
 * are the 48 bytes of scan.KEY ("<QQQqqQ"): dev, ino, size, mtime_ns, ctime_ns, mode for
 * files, symlinks and special files; five zeros and the mode for directories.
 *
 * Only the plain case is handled here: on any error (a directory that cannot be opened, an
 * entry that cannot be stat-ed, a directory path longer than max_path, more than
 * max_entries entries, out of memory) it returns -1 and the caller walks again in Python,
 * which reports the error in its own words. */
#ifndef OCB_WALK_H
#define OCB_WALK_H

#include <stddef.h>
#include <stdint.h>

#define OCB_WALK_KEY 48

/* On success returns the number of entries n (the root itself not included) and sets
 * *paths (n NUL-terminated paths, back to back, *paths_len bytes) and *keys (n * 48 bytes),
 * both to be released with ocb_walk_free.  Returns -1 on any failure (nothing to free). */
long ocb_walk(const char *root, size_t max_entries, size_t max_path, uint8_t **paths,
              size_t *paths_len, uint8_t **keys);
void ocb_walk_free(void *p);

#endif
