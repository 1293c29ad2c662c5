/* Boot step (b): build/.Occlum_sys.json.protected (a Protected FS file, docs/formats/protected-fs.md) checked
 * against the conf MAC, and the parsed configuration the runtime needs. */
#ifndef OCB_CONF_H
#define OCB_CONF_H

#include "ocb.h"

struct ocb_mount {
    char *type, *target, *source; /* source may be NULL */
    int has_mac;
    uint8_t mac[16];
    int temporary;
    struct ocb_mount *layers;
    size_t nlayers;
};

struct ocb_stage {
    char **entry_points;
    size_t nentry;
    struct ocb_mount *mounts;
    size_t nmounts;
};

struct ocb_config {
    uint64_t user_space_init, user_space_max;
    uint64_t stack_size, heap_size, mmap_size;
    char **env_default;
    size_t nenv_default;
    char **env_untrusted;
    size_t nenv_untrusted;
    int disable_log;
    struct ocb_stage init, app;
    /* The root unionfs layers of each stage: lower (image, with MAC) and upper (writable). */
    const struct ocb_mount *init_lower, *init_upper, *root_lower, *root_upper;
};

/* Open the protected config (a Protected FS integrity-only file whose clean name is the
 * basename of `name`), check its MAC against the conf MAC, then read and parse the JSON.
 * `name` is used in messages.  The config is owned by the caller (ocb_config_free). */
int ocb_conf_load_buf(const char *name, const uint8_t *data, size_t size, const uint8_t mac[16],
                      struct ocb_config *out, struct ocb_err *e);
int ocb_conf_load(const char *path, const uint8_t mac[16], struct ocb_config *out,
                  struct ocb_err *e);
void ocb_config_free(struct ocb_config *c);
/* Parse .Occlum_sys.json content (no container; for the fuzzer and the loader). */
int ocb_conf_parse_json(const char *name, const uint8_t *json, size_t len, struct ocb_config *out,
                        struct ocb_err *e);

/* Occlum size strings: "<n>KB|MB|GB|TB|B" (1024-based, case-sensitive); 0 on success. */
int ocb_parse_size(const char *text, uint64_t *out);

/* 1 if `path` (absolute, normalized by the caller) lies under one of the entry points. */
int ocb_entry_allowed(const struct ocb_stage *st, const char *path);

#endif
