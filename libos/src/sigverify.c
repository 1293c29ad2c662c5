/* SIGSTRUCT signature check with OpenSSL: RSA-3072, e = 3, PKCS#1 v1.5 over SHA-256 of the
 * 256 signed bytes; q1 = floor(s^2 / n), q2 = floor(s * (s^2 mod n) / n) as EINIT uses them. */
#include "sgxmeta.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <string.h>

static BIGNUM *bn_le(const uint8_t *le, size_t n) { return BN_lebin2bn(le, (int)n, NULL); }

static int check_q(const struct ocb_sigstruct *css, BIGNUM *n, BIGNUM *s, struct ocb_err *e)
{
    int rc = -1;
    BN_CTX *ctx = BN_CTX_new();
    BIGNUM *s2 = BN_new(), *q1 = BN_new(), *r = BN_new(), *t = BN_new(), *q2 = BN_new();
    BIGNUM *want1 = bn_le(css->q1, 384), *want2 = bn_le(css->q2, 384);
    if (!ctx || !s2 || !q1 || !r || !t || !q2 || !want1 || !want2) {
        ocb_fail(e, "SIGSTRUCT: out of memory");
        goto out;
    }
    if (!BN_sqr(s2, s, ctx) || !BN_div(q1, r, s2, n, ctx) || !BN_mul(t, s, r, ctx) ||
        !BN_div(q2, NULL, t, n, ctx)) {
        ocb_fail(e, "SIGSTRUCT: big number arithmetic failed");
        goto out;
    }
    if (BN_cmp(q1, want1) != 0 || BN_cmp(q2, want2) != 0) {
        ocb_fail(e, "SIGSTRUCT: q1/q2 do not match the signature");
        goto out;
    }
    rc = 0;
out:
    BN_free(s2), BN_free(q1), BN_free(r), BN_free(t), BN_free(q2), BN_free(want1), BN_free(want2);
    BN_CTX_free(ctx);
    return rc;
}

int ocb_sigstruct_verify(const struct ocb_sigstruct *css, struct ocb_err *e)
{
    if (css->exponent != 3)
        return ocb_fail(e, "SIGSTRUCT: RSA exponent is %u, SGX requires 3", css->exponent);
    if ((css->modulus[383] & 0x80) == 0)
        return ocb_fail(e, "SIGSTRUCT: modulus is not a 3072-bit number");
    int rc = -1;
    BIGNUM *n = bn_le(css->modulus, 384), *ebn = BN_new(), *s = bn_le(css->signature, 384);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_MD_CTX *md = NULL;
    uint8_t sig_be[384];
    for (int i = 0; i < 384; i++)
        sig_be[i] = css->signature[383 - i];
    if (!n || !ebn || !s || !bld || !BN_set_word(ebn, 3) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, ebn) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
        EVP_PKEY_fromdata_init(pctx) <= 0 ||
        EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0 ||
        (md = EVP_MD_CTX_new()) == NULL) {
        ocb_fail(e, "SIGSTRUCT: cannot build the RSA public key");
        goto out;
    }
    if (BN_cmp(s, n) >= 0) {
        ocb_fail(e, "SIGSTRUCT: signature out of range");
        goto out;
    }
    if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) != 1 ||
        EVP_DigestVerify(md, sig_be, sizeof sig_be, css->signed_data, sizeof css->signed_data) != 1) {
        ocb_fail(e, "SIGSTRUCT: RSA signature does not verify");
        goto out;
    }
    rc = check_q(css, n, s, e);
out:
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n), BN_free(ebn), BN_free(s);
    return rc;
}

void ocb_sigstruct_mrsigner(const struct ocb_sigstruct *css, uint8_t out[32])
{
    SHA256(css->modulus, sizeof css->modulus, out);
}
