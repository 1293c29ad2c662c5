/* Boot step (c): the init FS and the init stage (docs/runtime.md "Init stage"). */
#ifndef OCB_INITSTAGE_H
#define OCB_INITSTAGE_H

#include "ocb.h"

struct ocb_init_result {
    int encrypted;         /* image_config.json image_type */
    uint8_t image_key[16]; /* valid when encrypted */
    int key_from_initfs;   /* the key was the init FS's /etc/image_key */
};

/* Open the init FS image in `initfs_dir` against `mac`, read /etc/image_config.json
 * ({"image_type": "encrypted" | "integrity-only"}, nothing else) and, for an encrypted root
 * image, the image key: /etc/image_key of the init FS when present (--buildin-image-key), else
 * the file `key_file` (OCCLUM_IMAGE_KEY_FILE; a stand-in for the KMS of Occlum's RA init). */
int ocb_init_stage(const char *initfs_dir, const uint8_t mac[16], const char *key_file,
                   struct ocb_init_result *out, struct ocb_err *e);

/* Parse the bytes of image_config.json; *encrypted set on success. */
int ocb_parse_image_config(const char *name, const char *text, size_t len, int *encrypted,
                           struct ocb_err *e);

#endif
