/* Reader of Intel SGX Protected FS files as Occlum's SDK fork writes them
 * (docs/formats/protected-fs.md).  Node 0 (the metadata node) is checked when a file is
 * opened: its mode (integrity-only or user key), its MAC, the clean name against the name
 * the file is opened under, and the file length.  Every other node is checked against its
 * parent before any of its bytes are used: reads never return unverified data. */
#ifndef OFS_PFS_H
#define OFS_PFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PFS_NODE 4096
#define PFS_META_DATA 3072 /* content bytes held by node 0 */
#define PFS_NAME_MAX 260
#define PFS_MHT_CACHE 8

/* What node 0 says about a file. */
struct pfs_meta {
    uint64_t size;
    uint8_t mac[16]; /* meta_data_gmac: the file MAC */
    uint8_t mht_key[16], mht_gmac[16];
    uint8_t head[PFS_META_DATA];
};

struct pfs_file {
    int fd;
    const char *where; /* names the file in messages (not owned) */
    int keyed;
    uint8_t key[16];
    struct pfs_meta m;
    uint8_t *root;                    /* verified root MHT node (PFS_NODE), NULL until read */
    int64_t cache_id[PFS_MHT_CACHE];  /* MHT node numbers in cache (-1: empty) */
    uint8_t *cache;                   /* PFS_MHT_CACHE * PFS_NODE */
};

/* Check a metadata node; `name` is the basename the file is opened under; key NULL:
 * integrity-only.  Returns OFS_OK or OFS_ERR_VERIFY with one line in err. */
int pfs_parse_meta(const uint8_t node0[PFS_NODE], const char *name, const uint8_t *key,
                   const char *where, struct pfs_meta *out, char *err, size_t errlen);

/* Open `name` in directory `dirfd` (reads and checks node 0 and the length).  `where` is
 * kept for messages.  OFS_OK, OFS_ERR_INPUT (missing, unreadable), OFS_ERR_VERIFY. */
int pfs_open(struct pfs_file *f, int dirfd, const char *name, const uint8_t *key,
             const char *where, char *err, size_t errlen);
/* The same over an open descriptor (taken over: closed by pfs_close). */
int pfs_open_fd(struct pfs_file *f, int fd, const char *name, const uint8_t *key,
                const char *where, char *err, size_t errlen);
void pfs_close(struct pfs_file *f);

/* Read up to len content bytes at off, each node verified first.  Returns the byte count
 * (short only at the end of the file) or -1 with one line in err (a MAC mismatch names the
 * node). */
ssize_t pfs_read(struct pfs_file *f, void *buf, size_t len, uint64_t off, char *err, size_t errlen);

/* Bytes of the protected file holding `size` content bytes (whole nodes). */
uint64_t pfs_file_size(uint64_t size);

#endif
