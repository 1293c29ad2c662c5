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

#define PCONF REPO_ROOT "/tests/vectors/occlum-interop/protected-config/"

static size_t slurp(const char *path, uint8_t *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void read_mac(const char *dir, uint8_t mac[16])
{
    char p[512], t[64] = {0};
    snprintf(p, sizeof p, "%s%s/conf_mac.txt", PCONF, dir);
    size_t n = slurp(p, (uint8_t *)t, sizeof t - 1);
    CHECK(n == 48 && ocb_parse_key16(t, n, mac) == 0);
}

/* The JSON parser over a whole .Occlum_sys.json. */
static void test_parse(void)
{
    struct ocb_config c;
    struct ocb_err e = {{0}};
    CHECK(ocb_conf_parse_json("sys", (const uint8_t *)sys_json, strlen(sys_json), &c, &e) == 0);
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
    CHECK(ocb_conf_parse_json("p", (const uint8_t *)"{", 1, &c, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "JSON error at line");
}

/* The upstream protected-config vectors (Occlum's protect tool): the template's config loads
 * with its conf MAC; a wrong MAC, a flipped byte, a truncation and another name are refused. */
static void test_protected_vectors(void)
{
    static uint8_t buf[1 << 16];
    uint8_t mac[16];
    struct ocb_config c;
    struct ocb_err e = {{0}};
    read_mac("template", mac);
    size_t n = slurp(PCONF "template/.Occlum_sys.json.protected", buf, sizeof buf);
    CHECK(n == 4096);
    CHECK(ocb_conf_load(PCONF "template/.Occlum_sys.json.protected", mac, &c, &e) == 0);
    CHECK(c.init_lower && strcmp(c.init_lower->source, "./build/initfs/__ROOT") == 0);
    CHECK(c.root_upper && strcmp(c.root_upper->source, "./run/mount/__ROOT") == 0);
    ocb_config_free(&c);
    const char *name = "build/.Occlum_sys.json.protected";
    CHECK(ocb_conf_load_buf(name, buf, n, mac, &c, &e) == 0);
    ocb_config_free(&c);
    uint8_t bad[16];
    memcpy(bad, mac, 16);
    bad[3] ^= 1;
    CHECK(ocb_conf_load_buf(name, buf, n, bad, &c, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "build/.Occlum_sys.json.protected: conf MAC");
    buf[300] ^= 1;
    CHECK(ocb_conf_load_buf(name, buf, n, mac, &c, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "metadata node: MAC mismatch");
    buf[300] ^= 1;
    CHECK(ocb_conf_load_buf(name, buf, n - 1, mac, &c, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "truncated");
    CHECK(ocb_conf_load_buf("build/renamed.protected", buf, n, mac, &c, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "file name mismatch");
    /* a valid file whose content is not an Occlum config */
    read_mac("hello", mac);
    CHECK(ocb_conf_load(PCONF "hello/.Occlum_sys.json.protected", mac, &c, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "missing resource_limits");
    CHECK(ocb_conf_load("/dev/null", mac, &c, &e) != 0);
    CHECK_STR_CONTAINS(e.msg, "not a regular file");
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
    test_parse();
    test_protected_vectors();
    CHECK_DONE();
}
