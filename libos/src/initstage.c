/* Boot step (c), see initstage.h.  Occlum runs /bin/init from the init FS for this; the SIM
 * runtime performs the same steps natively (it runs no code from the init FS). */
#include "initstage.h"

#include "image.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SMALL_FILE 65536

/* Read a small file of the image (every block verified by the reader). 1 found, 0 absent. */
static int read_small(const struct ofs_image *img, const char *path, char *buf, size_t cap,
                      size_t *len, struct ocb_err *e)
{
    const struct ofs_entry *en = ofs_image_lookup(img, path, strlen(path));
    if (en == NULL)
        return 0;
    if (en->type != OFS_T_FILE)
        return ocb_fail(e, "%s: /%s is not a regular file", img->dir, path);
    if (en->size >= cap)
        return ocb_fail(e, "%s: /%s is too large", img->dir, path);
    struct ofs_ifile f;
    char err[400];
    *len = 0;
    if (en->size == 0)
        return 1;
    if (ofs_ifile_open(img, en, &f, err, sizeof err) != OFS_OK)
        return ocb_fail(e, "%s", err);
    ssize_t n = ofs_ifile_read(&f, buf, (size_t)en->size, 0, err, sizeof err);
    ofs_ifile_close(&f);
    if (n < 0 || (uint64_t)n != en->size)
        return ocb_fail(e, "%s", n < 0 ? err : "short read");
    *len = (size_t)n;
    return 1;
}

int ocb_parse_image_config(const char *name, const char *text, size_t len, int *encrypted,
                           struct ocb_err *e)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return ocb_fail(e, "%s: JSON error at line %d column %d: %s", name, jerr.line, jerr.column, jerr.text);
    const char *t = json_string_value(json_object_get(root, "image_type"));
    int rc = -1;
    if (!json_is_object(root) || json_object_size(root) != 1 || t == NULL)
        ocb_fail(e, "%s: expected {\"image_type\": \"encrypted\" | \"integrity-only\"}", name);
    else if (strcmp(t, "encrypted") == 0)
        *encrypted = 1, rc = 0;
    else if (strcmp(t, "integrity-only") == 0)
        *encrypted = 0, rc = 0;
    else
        ocb_fail(e, "%s: unknown image_type \"%s\"", name, t);
    json_decref(root);
    return rc;
}

int ocb_init_stage(const char *initfs_dir, const uint8_t mac[16], const char *key_file,
                   struct ocb_init_result *out, struct ocb_err *e)
{
    memset(out, 0, sizeof *out);
    struct ofs_image *img = NULL;
    char err[400];
    if (ofs_image_open(initfs_dir, mac, NULL, &img, err, sizeof err) != OFS_OK)
        return ocb_fail(e, "%s", err);
    char *buf = malloc(MAX_SMALL_FILE);
    int rc = -1;
    size_t len = 0;
    char name[512];
    snprintf(name, sizeof name, "%s:/etc/image_config.json", initfs_dir);
    int found = buf ? read_small(img, "etc/image_config.json", buf, MAX_SMALL_FILE, &len, e) : -1;
    if (found == 0)
        ocb_fail(e, "%s: missing (the init stage needs it)", name);
    if (found != 1 || ocb_parse_image_config(name, buf, len, &out->encrypted, e) != 0)
        goto out;
    if (!out->encrypted) {
        rc = 0;
        goto out;
    }
    found = read_small(img, "etc/image_key", buf, MAX_SMALL_FILE, &len, e);
    if (found < 0)
        goto out;
    if (found == 1) {
        if (ocb_parse_key16(buf, len, out->image_key) != 0) {
            ocb_fail(e, "%s:/etc/image_key: not an image key (xx-xx-...)", initfs_dir);
            goto out;
        }
        out->key_from_initfs = 1;
        rc = 0;
        goto out;
    }
    if (key_file == NULL || key_file[0] == '\0') {
        ocb_fail(e, "%s: the root image is encrypted but no image key is available: build with "
                    "--buildin-image-key or set OCCLUM_IMAGE_KEY_FILE", initfs_dir);
        goto out;
    }
    uint8_t *kb;
    size_t kl;
    if (ocb_read_file(key_file, 4096, &kb, &kl, e) != 0)
        goto out;
    int bad = ocb_parse_key16((const char *)kb, kl, out->image_key);
    free(kb);
    if (bad) {
        ocb_fail(e, "%s: not an image key (xx-xx-...)", key_file);
        goto out;
    }
    rc = 0;
out:
    free(buf);
    ofs_image_close(img);
    return rc;
}
