/* Parsing of a signed enclave file: ELF program headers, the `.note.sgxmeta` metadata_t and
 * the SIGSTRUCT inside it (Intel SDK 2.26 layouts; ../shared/research/sgx_sign.md 2.5, 3).
 * Their offsets are sgx_layout.h's, generated from the Python field tables (one source). */
#ifndef OCB_SGXMETA_H
#define OCB_SGXMETA_H

#include "ocb.h"
#include "sgx_layout.h"

#define OCB_PAGE 4096u
#define OCB_METADATA_SIZE 0x6000u
#define OCB_METADATA_MAGIC 0x86A80294635D0E4CULL
#define OCB_SIGSTRUCT_SIZE OCB_SS_STRUCT_SIZE
#define OCB_MAX_SEGS 16

/* A field table of a structure that has no Python table (identity.c's report body). */
struct ocb_field {
    const char *name;
    uint32_t offset;
    uint32_t size;
};

/* Offset of a named field in a table, or -1. */
int ocb_field_offset(const struct ocb_field *table, const char *name);

struct ocb_segment {
    uint64_t offset, vaddr, filesz, memsz;
    uint32_t flags; /* PF_R 4, PF_W 2, PF_X 1 */
};

struct ocb_sigstruct {
    uint8_t header[16], header2[16];
    uint32_t vendor, date, swdefined, exponent, miscselect, miscmask;
    uint8_t modulus[384], signature[384], q1[384], q2[384]; /* little-endian, as stored */
    uint8_t isvfamilyid[16], isvextprodid[16];
    uint64_t attributes_flags, attributes_xfrm, attributemask_flags, attributemask_xfrm;
    uint8_t enclavehash[32];
    uint16_t isvprodid, isvsvn;
    uint8_t signed_data[256]; /* bytes [0,128) || [900,1028): what the signature covers */
};

struct ocb_metadata {
    uint64_t magic, version;
    uint32_t size, tcs_policy, ssa_frame_size, max_save_buffer_size, desired_misc_select,
        tcs_min_pool;
    uint64_t enclave_size, attributes_flags, attributes_xfrm;
    uint32_t dir_offset[4], dir_size[4]; /* PATCH, LAYOUT, ELRANGE, EXTEND */
    const uint8_t *raw;                   /* the whole 0x6000 bytes inside the file */
};

enum { OCB_DIR_PATCH = 0, OCB_DIR_LAYOUT = 1, OCB_DIR_ELRANGE = 2, OCB_DIR_EXTEND = 3 };

/* A parsed enclave file.  Pointers point into the caller's buffer. */
struct ocb_enclave_file {
    const uint8_t *data;
    size_t size;
    struct ocb_segment segs[OCB_MAX_SEGS];
    size_t nsegs;
    size_t meta_offset; /* file offset of metadata_t (note descriptor) */
    struct ocb_metadata meta;
    struct ocb_sigstruct css;
};

/* Parse the ELF headers and the metadata/SIGSTRUCT of a signed enclave file.  Checks only
 * structure (bounds, magic); use ocb_sigstruct_verify and ocb_measure for trust. */
int ocb_enclave_parse(const uint8_t *data, size_t size, struct ocb_enclave_file *out,
                      struct ocb_err *e);

/* Unpack a 1808-byte SIGSTRUCT.  Fails on a wrong fixed header. */
int ocb_sigstruct_parse(const uint8_t *raw, size_t size, struct ocb_sigstruct *out,
                        struct ocb_err *e);

/* Unpack a metadata_t of OCB_METADATA_SIZE bytes (magic, directories inside bounds). */
int ocb_metadata_parse(const uint8_t *raw, size_t size, struct ocb_metadata *out,
                       struct ocb_err *e);

/* RSA-3072, e = 3, PKCS#1 v1.5 SHA-256 over signed_data; also checks q1 and q2. */
int ocb_sigstruct_verify(const struct ocb_sigstruct *css, struct ocb_err *e);

/* MRSIGNER = SHA-256 of the little-endian modulus as stored. */
void ocb_sigstruct_mrsigner(const struct ocb_sigstruct *css, uint8_t out[32]);

/* Replay the measurement (ECREATE, patched PT_LOAD pages, layout entries) of a parsed file.
 * max_pages bounds the work (0: no bound). */
int ocb_measure(const struct ocb_enclave_file *f, uint64_t max_pages, uint8_t mrenclave[32],
                struct ocb_err *e);

/* The patched image the measurement covers: a copy of the file with the metadata's patch
 * table applied (malloc'ed, caller frees). */
int ocb_patched_image(const struct ocb_enclave_file *f, uint8_t **image, struct ocb_err *e);

/* oentry of the first TCS layout entry (the measured entry point rva). */
int ocb_tcs_oentry(const struct ocb_enclave_file *f, uint64_t *oentry, struct ocb_err *e);

#endif
