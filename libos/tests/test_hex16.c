/* One rule for "xx-xx-...-xx" text: ofs_parse_hex16 on the shared cases of
 * tests/vectors/hex16/cases.json (tests/foundation/test_hex16.py runs them through Python). */
#include "check.h"
#include "ofs_crypto.h"

#include <jansson.h>

int main(void)
{
    json_error_t jerr;
    /* JSON_ALLOW_NUL: one case is text with a NUL in it */
    json_t *root = json_load_file(REPO_ROOT "/tests/vectors/hex16/cases.json", JSON_ALLOW_NUL, &jerr);
    CHECK(root != NULL);
    if (!root)
        CHECK_DONE();
    json_t *cases = json_object_get(root, "cases");
    size_t i, n = 0;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *why = json_string_value(json_object_get(c, "why"));
        json_t *text = json_object_get(c, "text");
        json_t *want = json_object_get(c, "bytes");
        uint8_t out[16];
        int rc = ofs_parse_hex16(json_string_value(text), json_string_length(text), out);
        if (json_is_null(want)) {
            if (rc == 0)
                fprintf(stderr, "accepted: %s\n", why);
            CHECK(rc != 0);
        } else {
            char hex[33];
            ofs_hex(out, 16, hex);
            if (rc != 0 || strcmp(hex, json_string_value(want)) != 0)
                fprintf(stderr, "refused or misread: %s\n", why);
            CHECK(rc == 0 && strcmp(hex, json_string_value(want)) == 0);
        }
        n++;
    }
    CHECK(n >= 10);
    json_decref(root);
    CHECK_DONE();
}
