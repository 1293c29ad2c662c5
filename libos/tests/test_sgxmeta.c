/* SIGSTRUCT/metadata parsing, signature verification and measurement replay on public vectors
 * (tests/vectors/sgx/README.md) and on tampered copies of them. */
#include "check.h"
#include "ocb.h"
#include "sgxmeta.h"
#include "verify.h"

#define V(p) REPO_ROOT "/tests/vectors/sgx/" p

static void hexof(const uint8_t *b, size_t n, char *out) { ocb_hex(b, n, out); }

/* The offsets are sgx_layout.h's, generated from the Python tables (tests/sgx/test_c_layout.py
 * checks the header is current); a few against the SDM, so a wrong table shows here too. */
_Static_assert(OCB_SS_MODULUS == 128 && OCB_SS_EXPONENT == 512 && OCB_SS_SIGNATURE == 516, "SIGSTRUCT");
_Static_assert(OCB_SS_MISCSELECT == 900 && OCB_SS_ATTRIBUTES_FLAGS == 928, "SIGSTRUCT body");
_Static_assert(OCB_SS_ENCLAVEHASH == 960 && OCB_SS_ISVPRODID == 1024 && OCB_SS_Q2 == 1424, "SIGSTRUCT");
_Static_assert(OCB_SS_STRUCT_SIZE == 1808, "SIGSTRUCT size");
_Static_assert(OCB_MD_ENCLAVE_CSS == 64 && OCB_MD_DIR_PATCH_OFFSET == 1872, "metadata_t");
_Static_assert(OCB_MD_STRUCT_SIZE == 0x770, "metadata_t data[] offset");
_Static_assert(OCB_LE_SI_FLAGS == 24 && OCB_PE_SIZE == 12 && OCB_TCS_OENTRY == 32, "entries");
_Static_assert(OCB_LE_STRUCT_SIZE == 32 && OCB_LG_STRUCT_SIZE == 32 && OCB_PE_STRUCT_SIZE == 32, "32-byte");


static void test_css_file(const char *path, const char *mrsigner_hex)
{
    uint8_t *data;
    size_t size;
    struct ocb_err e = {{0}};
    CHECK(ocb_read_file(path, 1 << 20, &data, &size, &e) == 0);
    struct ocb_sigstruct css;
    CHECK(ocb_sigstruct_parse(data, size, &css, &e) == 0);
    CHECK(ocb_sigstruct_verify(&css, &e) == 0);
    uint8_t mrs[32];
    char hex[65];
    ocb_sigstruct_mrsigner(&css, mrs);
    hexof(mrs, 32, hex);
    CHECK(strcmp(hex, mrsigner_hex) == 0);
    /* Any flipped signed byte, signature byte or q1 byte is refused. */
    const size_t flips[] = {20, 960, 1024, 600, 1100};
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        data[flips[i]] ^= 1;
        CHECK(ocb_sigstruct_parse(data, size, &css, &e) == 0);
        CHECK(ocb_sigstruct_verify(&css, &e) != 0);
        data[flips[i]] ^= 1;
    }
    data[0] ^= 1;
    CHECK(ocb_sigstruct_parse(data, size, &css, &e) != 0);
    CHECK(ocb_sigstruct_parse(data, 100, &css, &e) != 0);
    free(data);
}

static void test_signed_enclave(void)
{
    uint8_t *data;
    size_t size;
    struct ocb_err e = {{0}};
    CHECK(ocb_read_file(V("h0mur0/enclave.signed.so"), 64 << 20, &data, &size, &e) == 0);
    struct ocb_enclave_file f;
    CHECK(ocb_enclave_parse(data, size, &f, &e) == 0);
    CHECK(f.meta.enclave_size == 0x1000000);
    CHECK(ocb_sigstruct_verify(&f.css, &e) == 0);
    uint8_t mr[32];
    char hex[65];
    CHECK(ocb_measure(&f, 0, mr, &e) == 0);
    hexof(mr, 32, hex);
    CHECK(strcmp(hex, "6478d9e3e12396357aa6cce73c55b8ff54a6a5e6ed8161618a720a2c775e3ef9") == 0);
    CHECK(memcmp(mr, f.css.enclavehash, 32) == 0);
    ocb_sigstruct_mrsigner(&f.css, mr);
    hexof(mr, 32, hex);
    CHECK(strcmp(hex, "2321bcb26158330340b9287d28e59a12ead44c161c0f149e7a01770d64c5b195") == 0);

    /* A flipped byte of code (first page of the second PT_LOAD) changes the measurement. */
    size_t code = (size_t)f.segs[1].offset + 16;
    data[code] ^= 0x40;
    CHECK(ocb_enclave_parse(data, size, &f, &e) == 0);
    CHECK(ocb_measure(&f, 0, mr, &e) == 0);
    CHECK(memcmp(mr, f.css.enclavehash, 32) != 0);
    data[code] ^= 0x40;
    /* So does a flipped layout entry (first entry's si_flags). */
    CHECK(ocb_enclave_parse(data, size, &f, &e) == 0);
    size_t lay = f.meta_offset + f.meta.dir_offset[OCB_DIR_LAYOUT] + 24;
    data[lay] ^= 0x02;
    CHECK(ocb_enclave_parse(data, size, &f, &e) == 0);
    CHECK(ocb_measure(&f, 0, mr, &e) == 0);
    CHECK(memcmp(mr, f.css.enclavehash, 32) != 0);
    data[lay] ^= 0x02;
    /* A bounded replay refuses a layout bigger than the bound. */
    CHECK(ocb_enclave_parse(data, size, &f, &e) == 0);
    CHECK(ocb_measure(&f, 10, mr, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "too large");
    /* Wrong metadata magic. */
    data[f.meta_offset] ^= 1;
    CHECK(ocb_enclave_parse(data, size, &f, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "not signed");
    free(data);
}

static void test_unsigned(void)
{
    const char *paths[] = {V("h0mur0/enclave.so"), BUILD_DIR "/libocclum-libos.so"};
    for (int i = 0; i < 2; i++) {
        uint8_t *data;
        size_t size;
        struct ocb_err e = {{0}};
        CHECK(ocb_read_file(paths[i], 64 << 20, &data, &size, &e) == 0);
        struct ocb_enclave_file f;
        CHECK(ocb_enclave_parse(data, size, &f, &e) != 0);
        CHECK_STR_CONTAINS(e.msg, "not signed");
        /* Every truncation is refused without reading out of bounds. */
        for (size_t n = 0; n < size; n += size / 97 + 1)
            CHECK(ocb_enclave_parse(data, n, &f, &e) != 0);
        free(data);
    }
}

/* The whole boot step (a) on buffers: a valid SDK enclave is not our LibOS; a modified one
 * fails the measurement; both errors name the artifact. */
static void test_verify_libos(void)
{
    uint8_t *data;
    size_t size;
    struct ocb_err e = {{0}};
    struct ocb_libos lo;
    CHECK(ocb_read_file(V("h0mur0/enclave.signed.so"), 64 << 20, &data, &size, &e) == 0);
    CHECK(ocb_verify_libos_buf("lib/x.signed.so", data, size, &lo, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "lib/x.signed.so: not an occlum-build LibOS");
    data[0x1234] ^= 0xff;
    CHECK(ocb_verify_libos_buf("lib/x.signed.so", data, size, &lo, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "lib/x.signed.so: measurement ");
    CHECK_STR_CONTAINS(e.msg, "does not match the signed ENCLAVEHASH");
    free(data);
    CHECK(ocb_verify_libos(BUILD_DIR "/libocclum-libos.so", &lo, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "libocclum-libos.so: no SGX metadata");
    CHECK(ocb_verify_libos("/nonexistent/libos.so", &lo, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "/nonexistent/libos.so: cannot open");
}

int main(void)
{
    test_verify_libos();
    test_css_file(V("mobilecoin/valid.css"),
                  "7ee5e29d74623fdbc6fbf1454be6f3bb0b86c12366b7b478ad13353e44de8411");
    test_css_file(V("intel/le_prod_css.bin"),
                  "acb77012053e05a63d413b8bbae8fb6c5d73b3f2996d91c43bbbf90959c0f8d4");
    test_css_file(V("fortanix/sig1.sigstruct.bin"),
                  "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e");
    test_signed_enclave();
    test_unsigned();
    CHECK_DONE();
}
