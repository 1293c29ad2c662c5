/* Shared helpers of the native runtime: error reporting and small byte utilities. */
#ifndef OCB_H
#define OCB_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* One-line error message; every failing function fills it and returns -1. */
struct ocb_err {
    char msg[512];
};

__attribute__((format(printf, 2, 3))) int ocb_fail(struct ocb_err *e, const char *fmt, ...);

static inline uint16_t ocb_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t ocb_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t ocb_le64(const uint8_t *p)
{
    return (uint64_t)ocb_le32(p) | (uint64_t)ocb_le32(p + 4) << 32;
}
static inline void ocb_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void ocb_put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* OCCLUM_LOG_LEVEL, as Occlum names its levels (docs/runtime.md "Log levels").  Unset or empty
 * is OCB_LOG_DEFAULT (warn: unlike Occlum's off, failures of verification while a program runs
 * are shown); an unknown name is OCB_LOG_DEFAULT too. */
enum { OCB_LOG_OFF, OCB_LOG_ERROR, OCB_LOG_WARN, OCB_LOG_INFO, OCB_LOG_DEBUG, OCB_LOG_TRACE };
#define OCB_LOG_DEFAULT OCB_LOG_WARN
int ocb_log_level(const char *name);
const char *ocb_log_level_name(int level);

/* Read a whole file (at most max_size bytes) into a malloc'ed buffer. */
int ocb_read_file(const char *path, size_t max_size, uint8_t **data, size_t *size,
                  struct ocb_err *e);

/* Lower-case hex of n bytes into out (2n+1 chars). */
void ocb_hex(const uint8_t *in, size_t n, char *out);

/* "xx-xx-...-xx" (16 bytes, as image keys and MACs are written): one parser for the whole
 * runtime, ofs_parse_hex16 (fs/ofs_crypto.c: trailing CR/LF allowed, nothing else, the rule
 * of occlum_build/keys.py too; tests/vectors/hex16). 0 on success. */
#include "ofs_crypto.h"
#define ocb_parse_key16 ofs_parse_hex16
/* Format 16 bytes as "xx-xx-...-xx" (47 chars + NUL). */
#define ocb_format_key16 ofs_format_hex16

#endif
