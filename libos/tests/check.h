/* Minimal assertion helpers for the C unit tests (each test is its own binary). */
#ifndef OCB_CHECK_H
#define OCB_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failures++;                                                       \
        }                                                                           \
    } while (0)

#define CHECK_STR_CONTAINS(hay, needle)                                                   \
    do {                                                                                  \
        if (strstr((hay), (needle)) == NULL) {                                            \
            fprintf(stderr, "%s:%d: '%s' does not contain '%s'\n", __FILE__, __LINE__,   \
                    (hay), (needle));                                                     \
            check_failures++;                                                             \
        }                                                                                 \
    } while (0)

#define CHECK_DONE()                                                            \
    do {                                                                        \
        if (check_failures) {                                                   \
            fprintf(stderr, "%s: %d check(s) failed\n", __FILE__, check_failures); \
            return 1;                                                           \
        }                                                                       \
        return 0;                                                               \
    } while (0)

#endif
