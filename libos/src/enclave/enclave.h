/* The SIM-mode LibOS "enclave" (docs/formats/libos-enclave.md, docs/runtime.md).
 * Freestanding: no libc, no undefined symbols.  The PAL maps the verified bytes of the signed
 * file and calls enclave_entry(); the enclave reaches the host only through the ocall table
 * passed in. */
#ifndef OCCLUM_ENCLAVE_H
#define OCCLUM_ENCLAVE_H

#include <stddef.h>
#include <stdint.h>

#define OCCLUM_ENCLAVE_BUILTIN_CONFIG_SIZE 47 /* as Occlum's LibOS: the MAC text; the patch adds a newline in the padding after it */
#define OCCLUM_ENCLAVE_GLOBAL_DATA_SIZE 1768
/* SDK 2.26.100: major << 32 | minor << 16 | revision. */
#define OCCLUM_ENCLAVE_SDK_VERSION 0x2001A0064ULL

/* A measured marker the PAL looks for before it runs the entry point, so that a validly signed
 * enclave of another kind (an SDK enclave) is refused instead of being called. */
#define OCCLUM_ENCLAVE_MARKER "occlum-build SIM LibOS v1"

/* ECALL numbers. */
enum {
    OCCLUM_ECALL_GET_BUILTIN_CONFIG = 1, /* arg: uint8_t[47] out */
    OCCLUM_ECALL_GET_VERSION = 2,        /* arg: uint32_t out */
};

/* Returns 0 on success, -1 for an unknown ECALL or a NULL argument. */
typedef long (*occlum_enclave_entry_fn)(long ecall, void *arg);

#endif
