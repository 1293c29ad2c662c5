/* libFuzzer harness: the signed-enclave parser (ELF headers, .note.sgxmeta, metadata_t,
 * SIGSTRUCT), signature check and a bounded measurement replay.  docs/runtime.md "Fuzzing". */
#include "sgxmeta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ocb_err e;
    struct ocb_sigstruct css;
    if (ocb_sigstruct_parse(data, size, &css, &e) == 0)
        (void)ocb_sigstruct_verify(&css, &e);
    struct ocb_enclave_file f;
    if (ocb_enclave_parse(data, size, &f, &e) == 0) {
        uint8_t mr[32];
        uint64_t oentry;
        (void)ocb_measure(&f, 64, mr, &e);
        (void)ocb_tcs_oentry(&f, &oentry, &e);
    }
    return 0;
}
