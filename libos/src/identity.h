/* The identity of the SIM enclave at run time (docs/runtime.md "Identity and attestation"):
 * what the measured LibOS carries (MRENCLAVE, MRSIGNER, ISV ids, attributes), the KSS values
 * given at launch (CONFIGID, CONFIGSVN: `occlum run --config-id/--config-svn`, which real
 * Occlum passes to sgx_create_enclave_ex through OCCLUM_CONF_ID_BASE64 and OCCLUM_CONF_SVN),
 * the measurement a user expects (`--expect-mrenclave/--expect-mrsigner`), and the simulated
 * SGX report body the sandbox shows the program at /dev/attestation. */
#ifndef OCB_IDENTITY_H
#define OCB_IDENTITY_H

#include "sgxmeta.h"
#include "verify.h"

#define OCB_CONFIG_ID_SIZE 64
#define OCB_REPORT_BODY_SIZE 384
#define OCB_FLAGS_INIT 0x1ull
#define OCB_FLAGS_DEBUG 0x2ull
#define OCB_FLAGS_KSS 0x80ull

/* Environment of the PAL (set by occlum-run's options, or by the user as with Occlum). */
#define OCB_ENV_CONF_ID "OCCLUM_CONF_ID_BASE64"
#define OCB_ENV_CONF_SVN "OCCLUM_CONF_SVN"
#define OCB_ENV_EXPECT_MRENCLAVE "OCCLUM_EXPECT_MRENCLAVE"
#define OCB_ENV_EXPECT_MRSIGNER "OCCLUM_EXPECT_MRSIGNER"

struct ocb_identity {
    uint8_t config_id[OCB_CONFIG_ID_SIZE];
    uint16_t config_svn;
    int kss; /* the enclave was signed with KSS (metadata.enable_kss) */
};

/* sgx_report_body_t (Intel SDK sgx_report.h), in offset order, NULL-terminated. */
extern const struct ocb_field ocb_report_body_fields[];

/* Occlum's --config-id: standard base64 (RFC 4648, padding optional) of at most 64 bytes,
 * zero-padded to 64 as Occlum's PAL does.  0, or -1 with a message naming what is wrong. */
int ocb_parse_config_id(const char *text, uint8_t out[OCB_CONFIG_ID_SIZE], struct ocb_err *e);

/* Occlum's --config-svn: an unsigned number as strtoul(text, 0) reads it (decimal, 0x hex,
 * leading-0 octal), at most 0xFFFF.  0 or -1. */
int ocb_parse_config_svn(const char *text, uint16_t *out, struct ocb_err *e);

/* 64 hex digits (either case) into 32 bytes; 0 or -1. */
int ocb_parse_hex32(const char *text, uint8_t out[32]);

/* At boot, after the LibOS was verified (`path` names it in messages): the KSS values from the
 * environment (refused unless the enclave has KSS), then the expected MRENCLAVE/MRSIGNER
 * against the measured ones.  0, or -1 with one line (the expected and the measured value). */
int ocb_identity_from_env(const char *path, const struct ocb_libos *l, struct ocb_identity *id,
                          struct ocb_err *e);

/* The simulated report body of the running enclave (REPORTDATA and CPUSVN zero).  No CPU key
 * MACs it: it says what the runtime measured, nothing vouches for it. */
void ocb_report_body(const struct ocb_libos *l, const struct ocb_identity *id,
                     uint8_t out[OCB_REPORT_BODY_SIZE]);

/* The same as one JSON object (hex strings, numbers), newline-terminated, into buf; its
 * length, or -1 if buf is too small. */
int ocb_identity_json(const struct ocb_libos *l, const struct ocb_identity *id, char *buf,
                      size_t n);

#endif
