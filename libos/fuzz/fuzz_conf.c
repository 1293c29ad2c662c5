/* libFuzzer harness: the protected config (a Protected FS file, conf.c), its JSON, and the
 * init stage's image_config.json parser.  The conf MAC is taken from the input's own metadata
 * node so that well-formed files reach the reader and the JSON parser.  docs/runtime.md
 * "Fuzzing". */
#include "conf.h"
#include "initstage.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ocb_err e;
    uint8_t mac[16] = {0};
    if (size >= 93)
        memcpy(mac, data + 77, 16); /* meta_data_gmac */
    struct ocb_config c;
    if (ocb_conf_load_buf(".Occlum_sys.json.protected", data, size, mac, &c, &e) == 0) {
        (void)ocb_entry_allowed(&c.app, "/bin/x");
        ocb_config_free(&c);
    }
    if (ocb_conf_parse_json("fuzz", data, size, &c, &e) == 0) {
        (void)ocb_entry_allowed(&c.app, "/bin/x");
        ocb_config_free(&c);
    }
    int enc;
    (void)ocb_parse_image_config("fuzz", (const char *)data, size, &enc, &e);
    uint64_t v;
    char s[32];
    size_t n = size < sizeof s - 1 ? size : sizeof s - 1;
    memcpy(s, data, n);
    s[n] = '\0';
    (void)ocb_parse_size(s, &v);
    return 0;
}
