/* Protected config container, conf MAC, JSON parsing, sizes and entry points. */
#include "check.h"
#include "conf.h"
#include "initstage.h"

#include <openssl/sha.h>

static const char sys_json[] =
    "{\"resource_limits\": {\"user_space_init_size\": \"314572800B\", \"user_space_max_size\": \"314572800B\"},"
    " \"process\": {\"default_stack_size\": \"4MB\", \"default_heap_size\": \"32MB\", \"default_mmap_size\": \"100MB\"},"
    " \"env\": {\"default\": [\"OCCLUM=yes\"], \"untrusted\": [\"EXAMPLE\"]}, \"disable_log\": false,"
    " \"app\": [{\"entry_points\": [\"/bin\"], \"stage\": \"init\", \"mount\": [{\"target\": \"/\", \"type\": \"unionfs\","
    "   \"options\": {\"layers\": [{\"options\": {\"MAC\": \"ff-ee-dd-cc-bb-aa-99-88-77-66-55-44-33-22-11-00\"},"
    "   \"source\": \"./build/initfs/__ROOT\", \"target\": \"/\", \"type\": \"sefs\"},"
    "   {\"source\": \"./run/initfs/__ROOT\", \"target\": \"/\", \"type\": \"sefs\"}]}}]},"
    "  {\"entry_points\": [\"/bin\", \"/usr/local/bin/\"], \"stage\": \"app\", \"mount\": ["
    "   {\"target\": \"/proc\", \"type\": \"procfs\"},"
    "   {\"target\": \"/\", \"type\": \"unionfs\", \"options\": {\"layers\": [{\"options\": {\"MAC\": "
    "   \"00-11-22-33-44-55-66-77-88-99-aa-bb-cc-dd-ee-ff\"}, \"source\": \"./build/mount/__ROOT\", \"target\": \"/\", \"type\": \"sefs\"},"
    "   {\"source\": \"./run/mount/__ROOT\", \"target\": \"/\", \"type\": \"sefs\"}]}},"
    "   {\"source\": \".\", \"target\": \"/host\", \"type\": \"hostfs\"}, {\"target\": \"/tmp\", \"type\": \"ramfs\"}]}]}";

/* Build the container of docs/formats/protected-config.md and its conf MAC. */
static size_t protect(const char *json, uint8_t *out, uint8_t mac[16])
{
    uint32_t len = (uint32_t)strlen(json);
    memcpy(out, "OCBCONF1", 8);
    ocb_put_le32(out + 8, 1);
    ocb_put_le32(out + 12, len);
    memcpy(out + 16, json, len);
    SHA256(out, 16 + len, out + 16 + len);
    uint8_t d[32];
    SHA256(out, 48 + len, d);
    memcpy(mac, d, 16);
    return 48 + len;
}

static void test_sizes(void)
{
    uint64_t v;
    CHECK(ocb_parse_size("4MB", &v) == 0 && v == 4u << 20);
    CHECK(ocb_parse_size(" 314572800B ", &v) == 0 && v == 314572800u);
    CHECK(ocb_parse_size("1GB", &v) == 0 && v == 1u << 30);
    CHECK(ocb_parse_size("256KB", &v) == 0 && v == 256u << 10);
    CHECK(ocb_parse_size("4mb", &v) != 0);
    CHECK(ocb_parse_size("MB", &v) != 0);
    CHECK(ocb_parse_size("-1MB", &v) != 0);
    CHECK(ocb_parse_size("99999999999999999999TB", &v) != 0);
}

static void test_load(void)
{
    static uint8_t buf[8192];
    uint8_t mac[16];
    size_t n = protect(sys_json, buf, mac);
    struct ocb_config c;
    struct ocb_err e = {{0}};
    CHECK(ocb_conf_load_buf("build/.Occlum_sys.json.protected", buf, n, mac, &c, &e) == 0);
    CHECK(c.stack_size == 4u << 20 && c.heap_size == 32u << 20 && c.mmap_size == 100u << 20);
    CHECK(c.user_space_max == 314572800u);
    CHECK(c.nenv_default == 1 && strcmp(c.env_default[0], "OCCLUM=yes") == 0);
    CHECK(c.nenv_untrusted == 1 && strcmp(c.env_untrusted[0], "EXAMPLE") == 0);
    CHECK(c.init_lower && strcmp(c.init_lower->source, "./build/initfs/__ROOT") == 0);
    CHECK(c.init_lower && c.init_lower->mac[0] == 0xff && c.init_lower->mac[15] == 0x00);
    CHECK(c.root_lower && c.root_lower->mac[1] == 0x11);
    CHECK(c.root_upper && strcmp(c.root_upper->source, "./run/mount/__ROOT") == 0);
    CHECK(c.app.nmounts == 4);
    CHECK(ocb_entry_allowed(&c.app, "/bin/hello"));
    CHECK(ocb_entry_allowed(&c.app, "/usr/local/bin/x"));
    CHECK(!ocb_entry_allowed(&c.app, "/binary"));
    CHECK(!ocb_entry_allowed(&c.app, "/bin"));
    CHECK(!ocb_entry_allowed(&c.app, "/usr/bin/x"));
    ocb_config_free(&c);

    /* Wrong MAC, flipped payload byte, flipped digest, truncation, bad magic. */
    uint8_t bad[16];
    memcpy(bad, mac, 16);
    bad[3] ^= 1;
    CHECK(ocb_conf_load_buf("p", buf, n, bad, &c, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "p: conf MAC");
    buf[40] ^= 1;
    CHECK(ocb_conf_load_buf("p", buf, n, mac, &c, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "digest mismatch");
    buf[40] ^= 1;
    buf[n - 1] ^= 1;
    CHECK(ocb_conf_load_buf("p", buf, n, mac, &c, &e) != 0);
    buf[n - 1] ^= 1;
    CHECK(ocb_conf_load_buf("p", buf, n - 1, mac, &c, &e) != 0);
    buf[0] = 'X';
    CHECK(ocb_conf_load_buf("p", buf, n, mac, &c, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "bad magic");

    /* Valid container, invalid content: each refused with the JSON place. */
    n = protect("{\"resource_limits\": {}}", buf, mac);
    CHECK(ocb_conf_load_buf("p", buf, n, mac, &c, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "missing resource_limits");
    n = protect("{", buf, mac);
    CHECK(ocb_conf_load_buf("p", buf, n, mac, &c, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "JSON error at line");
}

/* Vectors written by the Python writer (tests/vectors/protected-config/README.md). */
static void test_vectors(void)
{
    struct ocb_err e = {{0}};
    uint8_t *data, *mac_text;
    size_t size, mac_len;
    uint8_t mac[16];
    const char *dir = REPO_ROOT "/tests/vectors/protected-config/";
    char path[512];
    snprintf(path, sizeof path, "%sconf_mac.txt", dir);
    CHECK(ocb_read_file(path, 4096, &mac_text, &mac_len, &e) == 0);
    CHECK(ocb_parse_key16((const char *)mac_text, mac_len, mac) == 0);
    free(mac_text);
    static const struct { const char *file, *error; } cases[] = {
        /* Container and conf MAC accepted; its payload is a sample, not a whole
         * .Occlum_sys.json, so the schema step is what refuses it. */
        {"sys.json.protected", "sys.json.protected: missing resource_limits, process or app"},
        {"payload-flip.protected", "digest mismatch"},
        {"truncated.protected", "does not match payload length"},
        {"bad-magic.protected", "bad magic"},
        {"length-plus-one.protected", "does not match payload length"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s%s", dir, cases[i].file);
        CHECK(ocb_read_file(path, 1 << 20, &data, &size, &e) == 0);
        struct ocb_config c;
        int rc = ocb_conf_load_buf(path, data, size, mac, &c, &e);
        if (cases[i].error == NULL) {
            CHECK(rc == 0);
            if (rc == 0)
                ocb_config_free(&c);
            else
                fprintf(stderr, "%s\n", e.msg);
        } else {
            CHECK(rc != 0);
            CHECK_STR_CONTAINS(e.msg, cases[i].error);
        }
        free(data);
    }
}

static void test_image_config(void)
{
    struct ocb_err e = {{0}};
    int enc = -1;
    const char *ok1 = "{\"image_type\": \"encrypted\"}";
    CHECK(ocb_parse_image_config("c", ok1, strlen(ok1), &enc, &e) == 0 && enc == 1);
    const char *ok2 = "{\"image_type\":\"integrity-only\"}\n";
    CHECK(ocb_parse_image_config("c", ok2, strlen(ok2), &enc, &e) == 0 && enc == 0);
    static const char *const bad[] = {
        "{\"image_type\": \"plain\"}", "{\"image_type\": 1}", "{}", "[]",
        "{\"image_type\": \"encrypted\", \"x\": 1}", /* Occlum: deny_unknown_fields */
        "{\"image_type\": \"encrypted\", \"image_type\": \"integrity-only\"}", "{"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(ocb_parse_image_config("initfs:/etc/image_config.json", bad[i], strlen(bad[i]), &enc, &e) != 0);
        CHECK_STR_CONTAINS(e.msg, "initfs:/etc/image_config.json: ");
    }
}

int main(void)
{
    test_image_config();
    test_sizes();
    test_load();
    test_vectors();
    CHECK_DONE();
}
