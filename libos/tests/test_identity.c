/* identity.c: Occlum's --config-id (base64) and --config-svn syntax, expected measurements,
 * and the sgx_report_body_t layout of the simulated report (offsets as in Intel's
 * sgx_report.h). */
#include "check.h"
#include "identity.h"

#include <stdlib.h>

static void test_report_offsets(void)
{
    static const struct { const char *name; int off; } want[] = {
        {"cpu_svn", 0},      {"misc_select", 16},   {"isv_ext_prod_id", 32}, {"attributes", 48},
        {"mr_enclave", 64},  {"mr_signer", 128},    {"config_id", 192},      {"isv_prod_id", 256},
        {"isv_svn", 258},    {"config_svn", 260},   {"isv_family_id", 304},  {"report_data", 320},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(ocb_field_offset(ocb_report_body_fields, want[i].name) == want[i].off);
    uint32_t end = 0;
    for (const struct ocb_field *f = ocb_report_body_fields; f->name; f++) {
        CHECK(f->offset == end); /* contiguous, in order */
        end = f->offset + f->size;
    }
    CHECK(end == OCB_REPORT_BODY_SIZE);
}

static void test_config_id(void)
{
    uint8_t id[64];
    struct ocb_err e;
    CHECK(ocb_parse_config_id("AAECAw==", id, &e) == 0);
    CHECK(id[0] == 0 && id[1] == 1 && id[2] == 2 && id[3] == 3 && id[4] == 0 && id[63] == 0);
    CHECK(ocb_parse_config_id("AAECAw", id, &e) == 0 && id[3] == 3); /* padding optional */
    CHECK(ocb_parse_config_id("+/+/", id, &e) == 0 && id[0] == 0xfb && id[1] == 0xff && id[2] == 0xbf);
    /* 64 bytes (88 characters) pass, 65 do not. */
    char b64[200];
    memset(b64, 'A', 86);
    strcpy(b64 + 86, "==");
    CHECK(ocb_parse_config_id(b64, id, &e) == 0);
    memset(b64, 'A', 87);
    strcpy(b64 + 87, "=");
    CHECK(ocb_parse_config_id(b64, id, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "decodes to 65 bytes");
    CHECK(ocb_parse_config_id("", id, &e) != 0);
    CHECK(ocb_parse_config_id("A", id, &e) != 0);
    CHECK(ocb_parse_config_id("AB=C", id, &e) != 0);
    CHECK(ocb_parse_config_id("QQ=", id, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "padding");
    CHECK(ocb_parse_config_id("QR==", id, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "not canonical");
    CHECK(ocb_parse_config_id("AA-_", id, &e) != 0); /* the URL alphabet is not Occlum's */
    CHECK_STR_CONTAINS(e.msg, "character 3 is '-'");
}

static void test_config_svn(void)
{
    uint16_t v = 1;
    struct ocb_err e;
    CHECK(ocb_parse_config_svn("0", &v, &e) == 0 && v == 0);
    CHECK(ocb_parse_config_svn("65535", &v, &e) == 0 && v == 65535);
    CHECK(ocb_parse_config_svn("0x1234", &v, &e) == 0 && v == 0x1234);
    CHECK(ocb_parse_config_svn("0XFFFF", &v, &e) == 0 && v == 0xffff);
    CHECK(ocb_parse_config_svn("010", &v, &e) == 0 && v == 8);
    CHECK(ocb_parse_config_svn("65536", &v, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "over 65535");
    static const char *const bad[] = {"", "-1", "+1", " 1", "1 ", "0x", "09", "1a", "0x1g", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(ocb_parse_config_svn(bad[i], &v, &e) != 0);
}

static void test_expected(void)
{
    struct ocb_libos l;
    memset(&l, 0, sizeof l);
    for (int i = 0; i < 32; i++)
        l.mrenclave[i] = (uint8_t)i, l.mrsigner[i] = 0xab;
    char mre[65];
    ocb_hex(l.mrenclave, 32, mre);
    struct ocb_identity id;
    struct ocb_err e;
    unsetenv(OCB_ENV_CONF_ID);
    unsetenv(OCB_ENV_CONF_SVN);
    setenv(OCB_ENV_EXPECT_MRENCLAVE, mre, 1);
    setenv(OCB_ENV_EXPECT_MRSIGNER, "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB", 1);
    CHECK(ocb_identity_from_env("libos", &l, &id, &e) == 0);
    l.mrenclave[31] ^= 1;
    CHECK(ocb_identity_from_env("libos", &l, &id, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "MRENCLAVE mismatch: expected 000102");
    CHECK_STR_CONTAINS(e.msg, "1e1f (--expect-mrenclave), measured 000102");
    unsetenv(OCB_ENV_EXPECT_MRENCLAVE);
    setenv(OCB_ENV_EXPECT_MRSIGNER, "12", 1);
    CHECK(ocb_identity_from_env("libos", &l, &id, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "not 64 hex digits");
    unsetenv(OCB_ENV_EXPECT_MRSIGNER);
    /* KSS values need KSS. */
    setenv(OCB_ENV_CONF_SVN, "7", 1);
    CHECK(ocb_identity_from_env("libos", &l, &id, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "enable_kss");
    l.attributes_flags = OCB_FLAGS_KSS;
    setenv(OCB_ENV_CONF_ID, "/w==", 1);
    CHECK(ocb_identity_from_env("libos", &l, &id, &e) == 0);
    CHECK(id.kss && id.config_svn == 7 && id.config_id[0] == 0xff && id.config_id[1] == 0);
    uint8_t body[OCB_REPORT_BODY_SIZE];
    ocb_report_body(&l, &id, body);
    CHECK(body[192] == 0xff && body[260] == 7 && body[261] == 0);
    CHECK(memcmp(body + 64, l.mrenclave, 32) == 0 && memcmp(body + 128, l.mrsigner, 32) == 0);
    CHECK((body[48] & 0x83) == 0x83); /* INIT, DEBUG (debuggable: no DEBUG in the mask), KSS */
    char json[1024];
    CHECK(ocb_identity_json(&l, &id, json, sizeof json) > 0);
    CHECK_STR_CONTAINS(json, "\"config_svn\": 7");
    CHECK_STR_CONTAINS(json, "\"kss\": true");
    CHECK(ocb_identity_json(&l, &id, json, 100) == -1);
    unsetenv(OCB_ENV_CONF_ID);
    unsetenv(OCB_ENV_CONF_SVN);
}

int main(void)
{
    test_report_offsets();
    test_config_id();
    test_config_svn();
    test_expected();
    CHECK_DONE();
}
