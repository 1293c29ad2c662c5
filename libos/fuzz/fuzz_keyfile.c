/* libFuzzer harness for the 16-byte key/MAC text parsers ("xx-xx-...-xx" with trailing
 * whitespace): ocb_parse_key16 (image_key files, MACs in the config, the conf MAC in the
 * enclave) and ofs_parse_hex16 (occlum-fs key files and MACs, run/.sim_seal_key).  A parsed
 * key must format back to the text it came from, up to hex case.  Also the launch option parsers
 * of identity.c (--config-id base64, --config-svn, --expect-* hex): a config id must encode back
 * to its text, a CONFIGSVN must be what strtoul reads.  docs/runtime.md "Fuzzing". */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "ocb.h"
#include "ofs_crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(const char *text, const uint8_t key[16]) {
    char a[48], b[48];
    ocb_format_key16(key, a);
    ofs_format_hex16(key, b);
    if (memcmp(a, b, 47)) abort();
    for (int i = 0; i < 47; i++)
        if (tolower((unsigned char)text[i]) != a[i]) abort();
}

static void launch_options(const uint8_t *data, size_t size) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *text = malloc(size + 1);
    if (!text) return;
    memcpy(text, data, size);
    text[size] = '\0';
    size_t len = strlen(text); /* up to the first NUL, as from the environment */
    uint8_t id[OCB_CONFIG_ID_SIZE];
    struct ocb_err e;
    if (ocb_parse_config_id(text, id, &e) == 0) {
        size_t n = len;
        while (n > 0 && text[n - 1] == '=') n--;
        size_t bytes = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
        if (bytes == 0 || bytes > OCB_CONFIG_ID_SIZE) abort();
        for (size_t i = bytes; i < OCB_CONFIG_ID_SIZE; i++)
            if (id[i]) abort();
        char out[100];
        size_t o = 0;
        uint32_t acc = 0;
        int bits = 0;
        for (size_t i = 0; i < bytes; i++) {
            acc = acc << 8 | id[i];
            bits += 8;
            while (bits >= 6) out[o++] = b64[(acc >> (bits -= 6)) & 63];
        }
        if (bits) out[o++] = b64[(acc << (6 - bits)) & 63];
        if (o != n || memcmp(out, text, n)) abort();
    }
    uint16_t svn;
    if (ocb_parse_config_svn(text, &svn, &e) == 0) {
        char *end;
        unsigned long v = strtoul(text, &end, 0);
        if (*end || v != svn || text[0] < '0' || text[0] > '9') abort();
    }
    uint8_t mr[32];
    if (ocb_parse_hex32(text, mr) == 0) {
        char hex[65];
        ocb_hex(mr, 32, hex);
        for (int i = 0; i < 64; i++)
            if (tolower((unsigned char)text[i]) != hex[i]) abort();
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    launch_options(data, size);
    uint8_t k1[16], k2[16];
    int r1 = ocb_parse_key16(text, size, k1);
    int r2 = ofs_parse_hex16(text, size, k2);
    if (r1 == 0) round_trip(text, k1);
    if (r2 == 0) {
        round_trip(text, k2);
        if (r1 != 0 || memcmp(k1, k2, 16)) abort(); /* ofs accepts a subset of what ocb does */
    }
    return 0;
}
