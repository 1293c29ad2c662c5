/* The image writer's native tree walk (src/buildhelp/walk.c): entries, order, keys, and the
 * refusals that send the Python side back to its own walk.  Runs under ASan/UBSan too. */
#include "check.h"
#include "walk.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[] = "/tmp/ocb-walk-XXXXXX";

static void mk(const char *rel, int dir) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    if (dir) {
        CHECK(mkdir(p, 0755) == 0);
    } else {
        FILE *f = fopen(p, "w");
        CHECK(f != NULL);
        if (f) {
            fputs(rel, f);
            fclose(f);
        }
    }
}

static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

int main(void) {
    CHECK(mkdtemp(root) != NULL);
    mk("b", 1);
    mk("b/z", 0);
    mk("a", 0);
    mk("a.d", 1);
    mk("b/c", 1);
    mk("b/c/deep", 0);
    char lp[256];
    snprintf(lp, sizeof lp, "%s/link", root);
    CHECK(symlink("a", lp) == 0);

    uint8_t *paths = NULL, *keys = NULL;
    size_t plen = 0;
    long n = ocb_walk(root, 1000, 4095, &paths, &plen, &keys);
    CHECK(n == 7);
    const char *want[] = {"a", "a.d", "b", "b/c", "b/c/deep", "b/z", "link"};
    size_t at = 0;
    for (long i = 0; i < n && i < 7; i++) {
        const char *got = (const char *)paths + at;
        CHECK(strcmp(got, want[i]) == 0);
        char full[256];
        snprintf(full, sizeof full, "%s/%s", root, got);
        struct stat st;
        CHECK(lstat(full, &st) == 0);
        const uint8_t *k = keys + i * OCB_WALK_KEY;
        CHECK(get64(k + 40) == (uint64_t)st.st_mode);
        if (S_ISDIR(st.st_mode)) {
            CHECK(get64(k) == 0 && get64(k + 8) == 0 && get64(k + 16) == 0);
        } else {
            CHECK(get64(k + 8) == (uint64_t)st.st_ino && get64(k + 16) == (uint64_t)st.st_size);
            CHECK(get64(k + 24) == (uint64_t)(st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec));
        }
        at += strlen(got) + 1;
    }
    CHECK(at == plen);
    ocb_walk_free(paths);
    ocb_walk_free(keys);

    /* Refusals: too many entries, a directory path too long, a missing root. */
    CHECK(ocb_walk(root, 3, 4095, &paths, &plen, &keys) == -1);
    CHECK(ocb_walk(root, 1000, 2, &paths, &plen, &keys) == -1); /* "b/c" is 3 bytes */
    CHECK(ocb_walk("/nonexistent/ocb-walk", 1000, 4095, &paths, &plen, &keys) == -1);

    /* An empty directory: no entries. */
    char empty[300];
    snprintf(empty, sizeof empty, "%s/a.d", root);
    CHECK(ocb_walk(empty, 1000, 4095, &paths, &plen, &keys) == 0 && plen == 0);
    ocb_walk_free(paths);
    ocb_walk_free(keys);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK(system(cmd) == 0);
    CHECK_DONE();
}
