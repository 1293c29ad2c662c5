#include "ofs_crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

void ofs_sha256(const void *data, size_t len, uint8_t out[32]) {
    ofs_sha256_3(data, len, NULL, 0, NULL, 0, out);
}

void ofs_sha256_3(const void *a, size_t alen, const void *b, size_t blen, const void *c,
                  size_t clen, uint8_t out[32]) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 32;
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
        (alen && !EVP_DigestUpdate(ctx, a, alen)) || (blen && !EVP_DigestUpdate(ctx, b, blen)) ||
        (clen && !EVP_DigestUpdate(ctx, c, clen)) || !EVP_DigestFinal_ex(ctx, out, &n)) {
        /* Only on allocation failure: make the digest match nothing real. */
        memset(out, 0xff, 32);
    }
    EVP_MD_CTX_free(ctx);
}

void ofs_hmac_sha256(const void *key, size_t klen, const void *data, size_t len, uint8_t out[32]) {
    unsigned int n = 32;
    if (!HMAC(EVP_sha256(), key, (int)klen, data, len, out, &n)) memset(out, 0xff, 32);
}

int ofs_hkdf(const void *ikm, size_t ikmlen, const void *salt, size_t saltlen, const void *info,
             size_t infolen, void *out, size_t outlen) {
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    int rc = -1;
    static const uint8_t empty[1] = {0};
    if (kctx) {
        OSSL_PARAM params[5], *p = params;
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikmlen);
        /* An empty salt means HashLen zero bytes (RFC 5869); OpenSSL does the same for "". */
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
                                                 saltlen ? (void *)salt : (void *)empty, saltlen);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, infolen);
        *p = OSSL_PARAM_construct_end();
        if (EVP_KDF_derive(kctx, out, outlen, params) > 0) rc = 0;
    }
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return rc;
}

static int gcm(int enc, const uint8_t key[16], const uint8_t nonce[12], const void *aad,
               size_t aadlen, const void *in, size_t len, void *out, uint8_t tag[16]) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, ok = 0;
    if (!ctx) return -1;
    if (!EVP_CipherInit_ex(ctx, EVP_aes_128_gcm(), NULL, key, nonce, enc)) goto out;
    if (aadlen && !EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aadlen)) goto out;
    if (len && !EVP_CipherUpdate(ctx, out, &n, in, (int)len)) goto out;
    if (!enc && !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag)) goto out;
    if (EVP_CipherFinal_ex(ctx, (uint8_t *)out + len, &n) <= 0) goto out;
    if (enc && !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag)) goto out;
    ok = 1;
out:
    EVP_CIPHER_CTX_free(ctx);
    return ok ? 0 : -1;
}

int ofs_gcm_encrypt(const uint8_t key[16], const uint8_t nonce[12], const void *aad, size_t aadlen,
                    const void *in, size_t len, void *out, uint8_t tag[16]) {
    return gcm(1, key, nonce, aad, aadlen, in, len, out, tag);
}

int ofs_gcm_decrypt(const uint8_t key[16], const uint8_t nonce[12], const void *aad, size_t aadlen,
                    const void *in, size_t len, void *out, const uint8_t tag[16]) {
    return gcm(0, key, nonce, aad, aadlen, in, len, out, (uint8_t *)tag);
}

int ofs_random(void *buf, size_t len) { return RAND_bytes(buf, (int)len) == 1 ? 0 : -1; }

int ofs_memneq(const void *a, const void *b, size_t len) { return CRYPTO_memcmp(a, b, len) != 0; }

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int ofs_parse_hex16(const char *text, size_t len, uint8_t out[16]) {
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    if (len != 47) return -1;
    for (int i = 0; i < 16; i++) {
        int hi = hexval(text[3 * i]), lo = hexval(text[3 * i + 1]);
        if (hi < 0 || lo < 0 || (i < 15 && text[3 * i + 2] != '-')) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

void ofs_hex(const uint8_t *in, size_t len, char *out) {
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * len] = 0;
}

void ofs_format_hex16(const uint8_t in[16], char out[48]) {
    static const char d[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[3 * i] = d[in[i] >> 4];
        out[3 * i + 1] = d[in[i] & 15];
        out[3 * i + 2] = i < 15 ? '-' : 0;
    }
}
