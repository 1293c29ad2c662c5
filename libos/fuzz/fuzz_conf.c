/* libFuzzer harness: the protected config container and its JSON (conf.c), and the init
 * stage's image_config.json parser.  The conf MAC is computed from the input itself so that
 * inputs with a valid container reach the JSON parser.  docs/runtime.md "Fuzzing". */
#include "conf.h"
#include "initstage.h"

#include <openssl/sha.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ocb_err e;
    uint8_t mac[32];
    SHA256(data, size, mac);
    struct ocb_config c;
    if (ocb_conf_load_buf("fuzz", data, size, mac, &c, &e) == 0) {
        (void)ocb_entry_allowed(&c.app, "/bin/x");
        ocb_config_free(&c);
    }
    /* The same bytes as a bare payload: wrap them in a valid container. */
    if (size < 65536) {
        static uint8_t buf[65536 + 48];
        memcpy(buf, "OCBCONF1\1\0\0\0", 12);
        ocb_put_le32(buf + 12, (uint32_t)size);
        memcpy(buf + 16, data, size);
        SHA256(buf, 16 + size, buf + 16 + size);
        SHA256(buf, 48 + size, mac);
        if (ocb_conf_load_buf("fuzz", buf, 48 + size, mac, &c, &e) == 0)
            ocb_config_free(&c);
        int enc;
        (void)ocb_parse_image_config("fuzz", (const char *)data, size, &enc, &e);
    }
    uint64_t v;
    char s[32];
    size_t n = size < sizeof s - 1 ? size : sizeof s - 1;
    memcpy(s, data, n);
    s[n] = '\0';
    (void)ocb_parse_size(s, &v);
    return 0;
}
