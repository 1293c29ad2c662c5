/* libFuzzer harness for the 16-byte key/MAC text parsers ("xx-xx-...-xx" with trailing
 * whitespace): ocb_parse_key16 (image_key files, MACs in the config, the conf MAC in the
 * enclave) and ofs_parse_hex16 (occlum-fs key files and MACs, run/.sim_seal_key).  A parsed
 * key must format back to the text it came from, up to hex case.  docs/runtime.md "Fuzzing". */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
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
