/* Protected configuration (conf.h).  The container is checked (magic, version, length,
 * digest), then its conf MAC = SHA-256(file)[0:16] is compared with the MAC from the verified
 * LibOS, then the JSON is parsed with jansson into struct ocb_config. */
#include "conf.h"
#include "fs/pfs.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONF_SIZE (16u << 20)

int ocb_parse_size(const char *text, uint64_t *out)
{
    static const struct { const char *suffix; uint64_t mult; } units[] = {
        {"KB", 1ULL << 10}, {"MB", 1ULL << 20}, {"GB", 1ULL << 30}, {"TB", 1ULL << 40}, {"B", 1}};
    size_t len = strlen(text);
    while (len && isspace((unsigned char)text[len - 1]))
        len--;
    while (len && isspace((unsigned char)*text))
        text++, len--;
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        size_t sl = strlen(units[u].suffix);
        if (len < sl || memcmp(text + len - sl, units[u].suffix, sl) != 0)
            continue;
        size_t n = len - sl;
        while (n && isspace((unsigned char)text[n - 1]))
            n--;
        if (n == 0 || n > 19)
            return -1;
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++) {
            if (!isdigit((unsigned char)text[i]))
                return -1;
            v = v * 10 + (uint64_t)(text[i] - '0');
        }
        if (v > UINT64_MAX / units[u].mult)
            return -1;
        *out = v * units[u].mult;
        return 0;
    }
    return -1;
}

static char *dup_str(json_t *j) { return json_is_string(j) ? strdup(json_string_value(j)) : NULL; }

static int str_list(json_t *arr, char ***out, size_t *n, const char *where, struct ocb_err *e)
{
    *out = NULL;
    *n = 0;
    if (arr == NULL)
        return 0;
    if (!json_is_array(arr))
        return ocb_fail(e, "%s is not an array", where);
    size_t cnt = json_array_size(arr);
    *out = calloc(cnt + 1, sizeof(char *));
    if (*out == NULL)
        return ocb_fail(e, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        if (((*out)[i] = dup_str(json_array_get(arr, i))) == NULL)
            return ocb_fail(e, "%s[%zu] is not a string", where, i);
        *n = i + 1;
    }
    return 0;
}

/* JSON paths of nested mounts for messages, cut to the buffer (nesting has no fixed depth). */
#define SUBPATH_MAX 256
__attribute__((format(printf, 2, 3))) static void subpath(char sub[SUBPATH_MAX], const char *fmt,
                                                          ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sub, SUBPATH_MAX, fmt, ap);
    va_end(ap);
}

static int mount_list(json_t *arr, struct ocb_mount **out, size_t *n, const char *where,
                      struct ocb_err *e);

static int parse_mount(json_t *j, struct ocb_mount *m, const char *where, struct ocb_err *e)
{
    memset(m, 0, sizeof *m);
    if (!json_is_object(j))
        return ocb_fail(e, "%s is not an object", where);
    m->type = dup_str(json_object_get(j, "type"));
    m->target = dup_str(json_object_get(j, "target"));
    if (m->type == NULL || m->target == NULL)
        return ocb_fail(e, "%s needs string \"type\" and \"target\"", where);
    json_t *src = json_object_get(j, "source");
    if (src != NULL && (m->source = dup_str(src)) == NULL)
        return ocb_fail(e, "%s.source is not a string", where);
    json_t *opt = json_object_get(j, "options");
    if (opt == NULL)
        return 0;
    if (!json_is_object(opt))
        return ocb_fail(e, "%s.options is not an object", where);
    json_t *mac = json_object_get(opt, "MAC");
    if (mac != NULL) {
        if (!json_is_string(mac) ||
            ocb_parse_key16(json_string_value(mac), strlen(json_string_value(mac)), m->mac) != 0)
            return ocb_fail(e, "%s.options.MAC is not a MAC (xx-xx-...)", where);
        m->has_mac = 1;
    }
    m->temporary = json_is_true(json_object_get(opt, "temporary"));
    json_t *layers = json_object_get(opt, "layers");
    if (layers != NULL) {
        char sub[SUBPATH_MAX];
        subpath(sub, "%s.options.layers", where);
        if (mount_list(layers, &m->layers, &m->nlayers, sub, e) != 0)
            return -1;
    }
    return 0;
}

/* The JSON array of mounts at where into a calloc'ed array with one zeroed spare entry. */
static int mount_list(json_t *arr, struct ocb_mount **out, size_t *n, const char *where,
                      struct ocb_err *e)
{
    if (!json_is_array(arr))
        return ocb_fail(e, "%s is not an array", where);
    *n = json_array_size(arr);
    *out = calloc(*n + 1, sizeof **out);
    if (*out == NULL)
        return ocb_fail(e, "out of memory");
    for (size_t i = 0; i < *n; i++) {
        char sub[SUBPATH_MAX];
        subpath(sub, "%s[%zu]", where, i);
        if (parse_mount(json_array_get(arr, i), &(*out)[i], sub, e) != 0)
            return -1;
    }
    return 0;
}

static int parse_stage(json_t *j, struct ocb_stage *st, const char *where, struct ocb_err *e)
{
    char sub[96];
    snprintf(sub, sizeof sub, "%s.entry_points", where);
    if (str_list(json_object_get(j, "entry_points"), &st->entry_points, &st->nentry, sub, e) != 0)
        return -1;
    for (size_t i = 0; i < st->nentry; i++)
        if (st->entry_points[i][0] != '/')
            return ocb_fail(e, "%s[%zu] is not an absolute path", sub, i);
    snprintf(sub, sizeof sub, "%s.mount", where);
    return mount_list(json_object_get(j, "mount"), &st->mounts, &st->nmounts, sub, e);
}

/* The root union of a stage: mount at "/" of type unionfs with two layers, the first holding
 * the image MAC. */
static int find_root(const struct ocb_stage *st, const struct ocb_mount **lower,
                     const struct ocb_mount **upper, const char *where, struct ocb_err *e)
{
    for (size_t i = 0; i < st->nmounts; i++) {
        const struct ocb_mount *m = &st->mounts[i];
        if (strcmp(m->target, "/") != 0 || strcmp(m->type, "unionfs") != 0)
            continue;
        if (m->nlayers != 2 || !m->layers[0].has_mac || m->layers[0].source == NULL ||
            m->layers[1].source == NULL)
            return ocb_fail(e, "%s: the root unionfs must have an image layer with a MAC and a writable layer", where);
        *lower = &m->layers[0];
        *upper = &m->layers[1];
        return 0;
    }
    return ocb_fail(e, "%s has no root unionfs mount", where);
}

static int size_field(json_t *obj, const char *key, uint64_t *out, const char *where,
                      struct ocb_err *e)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v) || ocb_parse_size(json_string_value(v), out) != 0)
        return ocb_fail(e, "%s.%s is not a size", where, key);
    return 0;
}

static int parse_json(const uint8_t *payload, size_t len, struct ocb_config *c, struct ocb_err *e)
{
    json_error_t jerr;
    json_t *root = json_loadb((const char *)payload, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return ocb_fail(e, "JSON error at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
    int rc = -1;
    json_t *rl = json_object_get(root, "resource_limits"), *proc = json_object_get(root, "process");
    json_t *env = json_object_get(root, "env"), *app = json_object_get(root, "app");
    if (!json_is_object(root) || !json_is_object(rl) || !json_is_object(proc) || !json_is_array(app)) {
        ocb_fail(e, "missing resource_limits, process or app");
        goto out;
    }
    if (size_field(rl, "user_space_init_size", &c->user_space_init, "resource_limits", e) ||
        size_field(rl, "user_space_max_size", &c->user_space_max, "resource_limits", e) ||
        size_field(proc, "default_stack_size", &c->stack_size, "process", e) ||
        size_field(proc, "default_heap_size", &c->heap_size, "process", e) ||
        size_field(proc, "default_mmap_size", &c->mmap_size, "process", e))
        goto out;
    if (env != NULL && !json_is_object(env)) {
        ocb_fail(e, "env is not an object");
        goto out;
    }
    if (str_list(json_object_get(env, "default"), &c->env_default, &c->nenv_default, "env.default", e) ||
        str_list(json_object_get(env, "untrusted"), &c->env_untrusted, &c->nenv_untrusted,
                 "env.untrusted", e))
        goto out;
    for (size_t i = 0; i < c->nenv_default; i++)
        if (strchr(c->env_default[i], '=') == NULL) {
            ocb_fail(e, "env.default[%zu] is not NAME=value", i);
            goto out;
        }
    c->disable_log = json_is_true(json_object_get(root, "disable_log"));
    int have_init = 0, have_app = 0;
    for (size_t i = 0; i < json_array_size(app); i++) {
        json_t *st = json_array_get(app, i);
        const char *stage = json_string_value(json_object_get(st, "stage"));
        char where[32];
        snprintf(where, sizeof where, "app[%zu]", i);
        if (stage != NULL && strcmp(stage, "init") == 0 && !have_init) {
            if (parse_stage(st, &c->init, where, e) != 0 ||
                find_root(&c->init, &c->init_lower, &c->init_upper, where, e) != 0)
                goto out;
            have_init = 1;
        } else if (stage != NULL && strcmp(stage, "app") == 0 && !have_app) {
            if (parse_stage(st, &c->app, where, e) != 0 ||
                find_root(&c->app, &c->root_lower, &c->root_upper, where, e) != 0)
                goto out;
            have_app = 1;
        } else {
            ocb_fail(e, "%s: unknown or repeated stage", where);
            goto out;
        }
    }
    if (!have_init || !have_app) {
        ocb_fail(e, "app needs an \"init\" and an \"app\" stage");
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int ocb_conf_parse_json(const char *name, const uint8_t *json, size_t len, struct ocb_config *out,
                        struct ocb_err *e)
{
    memset(out, 0, sizeof *out);
    if (parse_json(json, len, out, e) != 0) {
        char tmp[sizeof e->msg];
        memcpy(tmp, e->msg, sizeof tmp);
        ocb_config_free(out);
        return ocb_fail(e, "%s: %s", name, tmp);
    }
    return 0;
}

/* The protected config is a Protected FS integrity-only file (docs/formats/protected-fs.md)
 * whose clean name is its basename: its MAC (node 0) is checked against the conf MAC before
 * any of its content is read, then every node as it is read. */
static int load_fd(const char *path, int fd, const uint8_t mac[16], struct ocb_config *out,
                   struct ocb_err *e)
{
    memset(out, 0, sizeof *out);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    struct pfs_file pf;
    char err[sizeof e->msg];
    if (pfs_open_fd(&pf, fd, base, NULL, path, err, sizeof err) != 0)
        return ocb_fail(e, "%s", err);
    if (CRYPTO_memcmp(pf.m.mac, mac, 16) != 0) {
        char got[48], want[48];
        ocb_format_key16(pf.m.mac, got);
        ocb_format_key16(mac, want);
        pfs_close(&pf);
        return ocb_fail(e, "%s: conf MAC %s does not match the MAC %s built into the signed LibOS",
                        path, got, want);
    }
    if (pf.m.size > MAX_CONF_SIZE) {
        pfs_close(&pf);
        return ocb_fail(e, "%s: %llu bytes is over the %u-byte limit", path,
                        (unsigned long long)pf.m.size, MAX_CONF_SIZE);
    }
    uint8_t *json = malloc(pf.m.size ? pf.m.size : 1);
    ssize_t got = json ? pfs_read(&pf, json, pf.m.size, 0, err, sizeof err) : -1;
    pfs_close(&pf);
    if (got != (ssize_t)pf.m.size) {
        free(json);
        return json ? ocb_fail(e, "%s", err) : ocb_fail(e, "%s: out of memory", path);
    }
    int rc = ocb_conf_parse_json(path, json, pf.m.size, out, e);
    free(json);
    return rc;
}

int ocb_conf_load_buf(const char *name, const uint8_t *data, size_t size, const uint8_t mac[16],
                      struct ocb_config *out, struct ocb_err *e)
{
    memset(out, 0, sizeof *out);
    int fd = memfd_create("conf", MFD_CLOEXEC);
    if (fd < 0)
        return ocb_fail(e, "%s: memfd_create: %s", name, strerror(errno));
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) {
            close(fd);
            return ocb_fail(e, "%s: write: %s", name, strerror(errno));
        }
        done += (size_t)w;
    }
    return load_fd(name, fd, mac, out, e); /* pfs_close closes fd */
}

int ocb_conf_load(const char *path, const uint8_t mac[16], struct ocb_config *out,
                  struct ocb_err *e)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return ocb_fail(e, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ocb_fail(e, "%s: not a regular file", path);
    }
    return load_fd(path, fd, mac, out, e);
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

static void free_mount(struct ocb_mount *m)
{
    free(m->type), free(m->target), free(m->source);
    for (size_t i = 0; i < m->nlayers; i++)
        free_mount(&m->layers[i]);
    free(m->layers);
}

static void free_stage(struct ocb_stage *st)
{
    free_list(st->entry_points, st->nentry);
    for (size_t i = 0; i < st->nmounts; i++)
        free_mount(&st->mounts[i]);
    free(st->mounts);
}

void ocb_config_free(struct ocb_config *c)
{
    free_list(c->env_default, c->nenv_default);
    free_list(c->env_untrusted, c->nenv_untrusted);
    free_stage(&c->init);
    free_stage(&c->app);
    memset(c, 0, sizeof *c);
}

int ocb_entry_allowed(const struct ocb_stage *st, const char *path)
{
    for (size_t i = 0; i < st->nentry; i++) {
        const char *ep = st->entry_points[i];
        size_t n = strlen(ep);
        while (n > 1 && ep[n - 1] == '/')
            n--;
        if (n == 1 && ep[0] == '/')
            return 1;
        if (strncmp(path, ep, n) == 0 && path[n] == '/')
            return 1;
    }
    return 0;
}
