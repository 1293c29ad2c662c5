/* The SIM-mode LibOS enclave image.  Its bytes are measured into MRENCLAVE; the signer patches
 * .builtin_config (the conf MAC) before measuring.  Everything here is freestanding C. */
#include "enclave.h"

#define EXPORT __attribute__((visibility("default"), used))

/* global_data_t of SDK >= 2.20 (ELF64): the signer checks sdk_version in the file and
 * replaces the whole struct with its template in the measured image. */
EXPORT __attribute__((aligned(64))) volatile uint64_t
    g_global_data[OCCLUM_ENCLAVE_GLOBAL_DATA_SIZE / 8] = {OCCLUM_ENCLAVE_SDK_VERSION};

/* Marks a simulation-mode enclave, as the SDK's simulation trts does. */
EXPORT volatile uint64_t g_global_data_sim[8];

/* The conf MAC of build/.Occlum_sys.json.protected (docs/formats/protected-fs.md).
 * Zero in the unsigned file; `occlum build` writes it before signing.  Read through a volatile
 * pointer so the compiler cannot fold the (zero) initial value into the code. */
__attribute__((section(".builtin_config"), used, aligned(16))) static const uint8_t
    builtin_config[OCCLUM_ENCLAVE_BUILTIN_CONFIG_SIZE];

#define LIBOS_VERSION 1u

__attribute__((used)) static const char marker[] = OCCLUM_ENCLAVE_MARKER;

EXPORT long enclave_entry(long ecall, void *arg)
{
    if (arg == NULL)
        return -1;
    switch (ecall) {
    case OCCLUM_ECALL_GET_BUILTIN_CONFIG: {
        volatile uint8_t *out = arg;
        const volatile uint8_t *in = builtin_config;
        for (size_t i = 0; i < OCCLUM_ENCLAVE_BUILTIN_CONFIG_SIZE; i++)
            out[i] = in[i];
        return 0;
    }
    case OCCLUM_ECALL_GET_VERSION:
        *(uint32_t *)arg = LIBOS_VERSION;
        return 0;
    default:
        return -1;
    }
}
