/* See walk.h. */
#include "walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ent {
    size_t off, len; /* the path in the arena */
    uint8_t key[OCB_WALK_KEY];
};

struct walk {
    char *arena; /* every path, NUL-terminated */
    size_t used, cap;
    struct ent *ents;
    size_t n, ecap;
    size_t *stack; /* entry numbers of directories still to list */
    size_t depth, scap;
};

static int grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2 / size) return -1;
        c *= 2;
    }
    void *q = realloc(*p, c * size);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void make_key(uint8_t *k, const struct stat *st) {
    uint64_t mode = (uint64_t)st->st_mode;
    if (S_ISDIR(st->st_mode)) {
        memset(k, 0, 40);
    } else {
        put64(k, (uint64_t)st->st_dev);
        put64(k + 8, (uint64_t)st->st_ino);
        put64(k + 16, (uint64_t)st->st_size);
        put64(k + 24, (uint64_t)((int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec));
        put64(k + 32, (uint64_t)((int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec));
    }
    put64(k + 40, mode);
}

/* Appends "prefix/name" (or "name" at the top) as a new entry; returns its number or -1. */
static long add(struct walk *w, size_t pre_off, size_t pre_len, const char *name, size_t nlen) {
    size_t len = pre_len ? pre_len + 1 + nlen : nlen;
    if (grow((void **)&w->arena, &w->cap, w->used + len + 1, 1) ||
        grow((void **)&w->ents, &w->ecap, w->n + 1, sizeof(struct ent)))
        return -1;
    char *dst = w->arena + w->used;
    if (pre_len) {
        memcpy(dst, w->arena + pre_off, pre_len);
        dst[pre_len] = '/';
        memcpy(dst + pre_len + 1, name, nlen);
    } else {
        memcpy(dst, name, nlen);
    }
    dst[len] = '\0';
    w->ents[w->n].off = w->used;
    w->ents[w->n].len = len;
    w->used += len + 1;
    return (long)w->n++;
}

/* Lists one directory (full path root/rel); -1 on any error. */
static int list_dir(struct walk *w, const char *root, size_t rlen, long dir, size_t max_path) {
    size_t pre_off = 0, pre_len = 0;
    if (dir >= 0) {
        pre_off = w->ents[dir].off;
        pre_len = w->ents[dir].len;
    }
    char *full = malloc(rlen + 1 + pre_len + 1);
    if (!full) return -1;
    memcpy(full, root, rlen);
    size_t flen = rlen;
    if (pre_len) {
        full[flen++] = '/';
        memcpy(full + flen, w->arena + pre_off, pre_len);
        flen += pre_len;
    }
    full[flen] = '\0';
    int fd = open(full, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(full);
    if (fd < 0) return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (nm[0] == '.' && (nm[1] == '\0' || (nm[1] == '.' && nm[2] == '\0'))) continue;
        struct stat st;
        if (fstatat(dirfd(d), nm, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = -1;
            break;
        }
        /* pre_off may move if the arena grows: add() copies the prefix from the arena by
         * offset, which stays valid. */
        long i = add(w, pre_off, pre_len, nm, strlen(nm));
        if (i < 0) {
            rc = -1;
            break;
        }
        make_key(w->ents[i].key, &st);
        if (S_ISDIR(st.st_mode)) {
            if (w->ents[i].len > max_path ||
                grow((void **)&w->stack, &w->scap, w->depth + 1, sizeof(size_t))) {
                rc = -1;
                break;
            }
            w->stack[w->depth++] = (size_t)i;
        }
    }
    closedir(d);
    return rc;
}

static _Thread_local const char *sort_arena; /* qsort has no context argument in C11 */

static int by_path(const void *a, const void *b) {
    const struct ent *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(sort_arena + x->off, sort_arena + y->off, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

long ocb_walk(const char *root, size_t max_entries, size_t max_path, uint8_t **paths,
              size_t *paths_len, uint8_t **keys) {
    struct walk w = {0};
    size_t rlen = strlen(root);
    long result = -1;
    if (list_dir(&w, root, rlen, -1, max_path) != 0) goto out;
    while (w.depth) {
        if (w.n >= max_entries) goto out;
        size_t dir = w.stack[--w.depth];
        if (list_dir(&w, root, rlen, (long)dir, max_path) != 0) goto out;
    }
    if (w.n >= max_entries) goto out;
    sort_arena = w.arena;
    if (w.n) qsort(w.ents, w.n, sizeof(struct ent), by_path);
    uint8_t *p = malloc(w.used ? w.used : 1), *k = malloc(w.n ? w.n * OCB_WALK_KEY : 1);
    if (!p || !k) {
        free(p);
        free(k);
        goto out;
    }
    size_t at = 0;
    for (size_t i = 0; i < w.n; i++) {
        memcpy(p + at, w.arena + w.ents[i].off, w.ents[i].len + 1);
        at += w.ents[i].len + 1;
        memcpy(k + i * OCB_WALK_KEY, w.ents[i].key, OCB_WALK_KEY);
    }
    *paths = p;
    *paths_len = at;
    *keys = k;
    result = (long)w.n;
out:
    free(w.arena);
    free(w.ents);
    free(w.stack);
    return result;
}

void ocb_walk_free(void *p) { free(p); }
