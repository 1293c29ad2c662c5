/* See identity.h. */
#include "identity.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct ocb_field ocb_report_body_fields[] = {
    {"cpu_svn", 0, 16},        {"misc_select", 16, 4},    {"reserved1", 20, 12},
    {"isv_ext_prod_id", 32, 16}, {"attributes", 48, 16},  {"mr_enclave", 64, 32},
    {"reserved2", 96, 32},     {"mr_signer", 128, 32},    {"reserved3", 160, 32},
    {"config_id", 192, 64},    {"isv_prod_id", 256, 2},   {"isv_svn", 258, 2},
    {"config_svn", 260, 2},    {"reserved4", 262, 42},    {"isv_family_id", 304, 16},
    {"report_data", 320, 64},  {NULL, 0, 0},
};

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int ocb_parse_config_id(const char *text, uint8_t out[OCB_CONFIG_ID_SIZE], struct ocb_err *e)
{
    memset(out, 0, OCB_CONFIG_ID_SIZE);
    size_t len = strlen(text), pad = 0;
    while (pad < 2 && len > pad && text[len - 1 - pad] == '=')
        pad++;
    size_t n = len - pad; /* base64 digits */
    if (n == 0)
        return ocb_fail(e, "empty (a base64 text of at most 64 bytes)");
    if (pad && len % 4 != 0)
        return ocb_fail(e, "\"=\" padding where the text does not end a 4-character group");
    if (n % 4 == 1)
        return ocb_fail(e, "%zu base64 characters cannot be a whole number of bytes", n);
    size_t bytes = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    if (bytes > OCB_CONFIG_ID_SIZE)
        return ocb_fail(e, "decodes to %zu bytes, more than the 64 of an SGX CONFIGID", bytes);
    uint32_t acc = 0;
    size_t bits = 0, o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(text[i]);
        if (v < 0)
            return ocb_fail(e, "not base64: character %zu is '%c'", i + 1,
                            text[i] >= 0x20 && text[i] < 0x7f ? text[i] : '?');
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return ocb_fail(e, "not canonical base64 (the unused bits of the last character are not zero)");
    return 0;
}

int ocb_parse_config_svn(const char *text, uint16_t *out, struct ocb_err *e)
{
    const char *s = text;
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    } else if (s[0] == '0' && s[1] != '\0') {
        base = 8;
        s += 1;
    }
    if (*s == '\0')
        return ocb_fail(e, "\"%s\" is not a number (decimal, 0x hex or 0 octal, at most 65535)", text);
    unsigned long v = 0;
    for (; *s; s++) {
        int d = *s >= '0' && *s <= '9' ? *s - '0'
                : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
                : *s >= 'A' && *s <= 'F' ? *s - 'A' + 10
                                         : 99;
        if (d >= base)
            return ocb_fail(e, "\"%s\" is not a number (decimal, 0x hex or 0 octal, at most 65535)", text);
        v = v * (unsigned long)base + (unsigned long)d;
        if (v > 0xFFFF)
            return ocb_fail(e, "\"%s\" is over 65535 (CONFIGSVN is 16 bits)", text);
    }
    *out = (uint16_t)v;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ocb_parse_hex32(const char *text, uint8_t out[32])
{
    if (strlen(text) != 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        int hi = hexval(text[2 * i]), lo = hexval(text[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int check_expected(const char *path, const char *env, const char *what, const char *opt,
                          const uint8_t measured[32], struct ocb_err *e)
{
    const char *want = getenv(env);
    if (want == NULL || want[0] == '\0')
        return 0;
    uint8_t w[32];
    if (ocb_parse_hex32(want, w) != 0)
        return ocb_fail(e, "%s (%s): \"%.80s\" is not 64 hex digits", env, opt, want);
    if (memcmp(w, measured, 32) == 0)
        return 0;
    char got[65], exp[65];
    ocb_hex(measured, 32, got);
    ocb_hex(w, 32, exp);
    return ocb_fail(e, "%s: %s mismatch: expected %s (%s), measured %s; refused", path, what, exp,
                    opt, got);
}

int ocb_identity_from_env(const char *path, const struct ocb_libos *l, struct ocb_identity *id,
                          struct ocb_err *e)
{
    memset(id, 0, sizeof *id);
    id->kss = (l->attributes_flags & OCB_FLAGS_KSS) != 0;
    const char *cid = getenv(OCB_ENV_CONF_ID), *svn = getenv(OCB_ENV_CONF_SVN);
    int given_id = cid != NULL && cid[0] != '\0', given_svn = svn != NULL && svn[0] != '\0';
    if ((given_id || given_svn) && !id->kss)
        return ocb_fail(e, "%s: --config-id/--config-svn (%s) need an enclave signed with KSS: "
                           "set metadata.enable_kss to true in Occlum.json and build again",
                        path, given_id ? OCB_ENV_CONF_ID : OCB_ENV_CONF_SVN);
    struct ocb_err why = {{0}};
    if (given_id && ocb_parse_config_id(cid, id->config_id, &why) != 0)
        return ocb_fail(e, "%s (--config-id): %s", OCB_ENV_CONF_ID, why.msg);
    if (given_svn && ocb_parse_config_svn(svn, &id->config_svn, &why) != 0)
        return ocb_fail(e, "%s (--config-svn): %s", OCB_ENV_CONF_SVN, why.msg);
    if (check_expected(path, OCB_ENV_EXPECT_MRENCLAVE, "MRENCLAVE", "--expect-mrenclave",
                       l->mrenclave, e) != 0 ||
        check_expected(path, OCB_ENV_EXPECT_MRSIGNER, "MRSIGNER", "--expect-mrsigner",
                       l->mrsigner, e) != 0)
        return -1;
    return 0;
}

static uint64_t report_flags(const struct ocb_libos *l)
{
    /* Launched as Occlum launches it: debug unless the signer forbade it (DisableDebug puts
     * DEBUG into the attribute mask), initialized. */
    uint64_t f = l->attributes_flags | OCB_FLAGS_INIT;
    if (!(l->attributemask_flags & OCB_FLAGS_DEBUG))
        f |= OCB_FLAGS_DEBUG;
    return f;
}

static uint8_t *at(uint8_t *body, const char *name)
{
    return body + ocb_field_offset(ocb_report_body_fields, name);
}

void ocb_report_body(const struct ocb_libos *l, const struct ocb_identity *id,
                     uint8_t out[OCB_REPORT_BODY_SIZE])
{
    memset(out, 0, OCB_REPORT_BODY_SIZE);
    ocb_put_le32(at(out, "misc_select"), l->miscselect);
    memcpy(at(out, "isv_ext_prod_id"), l->isvextprodid, 16);
    ocb_put_le64(at(out, "attributes"), report_flags(l));
    ocb_put_le64(at(out, "attributes") + 8, l->attributes_xfrm);
    memcpy(at(out, "mr_enclave"), l->mrenclave, 32);
    memcpy(at(out, "mr_signer"), l->mrsigner, 32);
    memcpy(at(out, "config_id"), id->config_id, OCB_CONFIG_ID_SIZE);
    uint8_t *p = at(out, "isv_prod_id");
    p[0] = (uint8_t)l->isvprodid, p[1] = (uint8_t)(l->isvprodid >> 8);
    p = at(out, "isv_svn");
    p[0] = (uint8_t)l->isvsvn, p[1] = (uint8_t)(l->isvsvn >> 8);
    p = at(out, "config_svn");
    p[0] = (uint8_t)id->config_svn, p[1] = (uint8_t)(id->config_svn >> 8);
    memcpy(at(out, "isv_family_id"), l->isvfamilyid, 16);
}

int ocb_identity_json(const struct ocb_libos *l, const struct ocb_identity *id, char *buf, size_t n)
{
    char mre[65], mrs[65], cid[129], fam[33], ext[33];
    ocb_hex(l->mrenclave, 32, mre);
    ocb_hex(l->mrsigner, 32, mrs);
    ocb_hex(id->config_id, OCB_CONFIG_ID_SIZE, cid);
    ocb_hex(l->isvfamilyid, 16, fam);
    ocb_hex(l->isvextprodid, 16, ext);
    uint64_t flags = report_flags(l);
    int r = snprintf(buf, n,
                     "{\"mode\": \"SIM\", \"mr_enclave\": \"%s\", \"mr_signer\": \"%s\", "
                     "\"isv_prod_id\": %u, \"isv_svn\": %u, \"kss\": %s, \"config_id\": \"%s\", "
                     "\"config_svn\": %u, \"isv_family_id\": \"%s\", \"isv_ext_prod_id\": \"%s\", "
                     "\"attributes_flags\": \"0x%016llx\", \"attributes_xfrm\": \"0x%016llx\", "
                     "\"misc_select\": %u, \"debug\": %s}\n",
                     mre, mrs, (unsigned)l->isvprodid, (unsigned)l->isvsvn, id->kss ? "true" : "false",
                     cid, (unsigned)id->config_svn, fam, ext, (unsigned long long)flags,
                     (unsigned long long)l->attributes_xfrm, (unsigned)l->miscselect,
                     (flags & OCB_FLAGS_DEBUG) ? "true" : "false");
    return r < 0 || (size_t)r >= n ? -1 : r;
}
