/* Small wrappers over OpenSSL libcrypto used by the file system (image and writable layer).
 * Every function returns 0 on success and -1 on failure (a bad tag, an OpenSSL error). */
#ifndef OFS_CRYPTO_H
#define OFS_CRYPTO_H

#include <openssl/types.h>
#include <stddef.h>
#include <stdint.h>

#define OFS_GCM_TAG 16
#define OFS_BLOCK 4096 /* plain bytes per block of a writable-layer file (docs/formats/writable-layer.md) */
#define OFS_GCM_NONCE 12

void ofs_sha256(const void *data, size_t len, uint8_t out[32]);
/* SHA-256 of the concatenation of up to three buffers (NULL/0 ones are skipped). */
void ofs_sha256_3(const void *a, size_t alen, const void *b, size_t blen, const void *c,
                  size_t clen, uint8_t out[32]);
void ofs_hmac_sha256(const void *key, size_t klen, const void *data, size_t len, uint8_t out[32]);
/* RFC 5869 HKDF-SHA256. */
int ofs_hkdf(const void *ikm, size_t ikmlen, const void *salt, size_t saltlen, const void *info,
             size_t infolen, void *out, size_t outlen);
/* AES-128-GCM; out gets len bytes, tag is separate. */
int ofs_gcm_encrypt(const uint8_t key[16], const uint8_t nonce[12], const void *aad, size_t aadlen,
                    const void *in, size_t len, void *out, uint8_t tag[16]);
int ofs_gcm_decrypt(const uint8_t key[16], const uint8_t nonce[12], const void *aad, size_t aadlen,
                    const void *in, size_t len, void *out, const uint8_t tag[16]);
int ofs_random(void *buf, size_t len);
/* Constant-time comparison: 0 when equal. */
int ofs_memneq(const void *a, const void *b, size_t len);
/* Parse 16 bytes written as "xx-xx-...-xx" (Occlum's key and MAC text); trailing CR/LF allowed. */
int ofs_parse_hex16(const char *text, size_t len, uint8_t out[16]);
void ofs_format_hex16(const uint8_t in[16], char out[48]);
void ofs_hex(const uint8_t *in, size_t len, char *out);

static inline void ofs_put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void ofs_put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint64_t ofs_get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static inline uint32_t ofs_get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint16_t ofs_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

#endif
