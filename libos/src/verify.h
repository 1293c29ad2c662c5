/* Boot step (a): verify the signed LibOS and read its builtin config through its measured code. */
#ifndef OCB_VERIFY_H
#define OCB_VERIFY_H

#include "ocb.h"

struct ocb_libos {
    uint8_t mrenclave[32], mrsigner[32];
    uint16_t isvprodid, isvsvn;
    uint32_t version;      /* LibOS version reported by the enclave */
    uint8_t conf_mac[16];  /* from .builtin_config */
    uint64_t tcs_max_num;  /* from the measured g_global_data template (max_num_of_threads) */
    /* From the verified SIGSTRUCT (signed): what SECS and a report of the enclave carry. */
    uint32_t miscselect;
    uint64_t attributes_flags, attributes_xfrm, attributemask_flags;
    uint8_t isvfamilyid[16], isvextprodid[16];
};

/* Read `path`, check its SIGSTRUCT signature, replay the measurement and compare it with
 * ENCLAVEHASH, then map the measured image and ask its entry point for the builtin config.
 * Errors name `path`.  Refuses a LibOS whose .builtin_config is unpatched (all zero). */
int ocb_verify_libos(const char *path, struct ocb_libos *out, struct ocb_err *e);

/* The same on a buffer (for tests and fuzzing); `name` is used in messages. */
int ocb_verify_libos_buf(const char *name, const uint8_t *data, size_t size,
                         struct ocb_libos *out, struct ocb_err *e);

#endif
