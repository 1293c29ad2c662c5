/* The .note.sgxmeta section the Intel-compatible signer fills (docs/formats/libos-enclave.md):
 * a non-ALLOC note, namesz 13 ("sgx_metadata\0"), descsz 0x6000, type 1, descriptor zero.
 * The descriptor follows the name without padding (metadata at sh_offset + 25), and the
 * section is padded to a multiple of 4: sh_size 0x601c. */
    .section .note.sgxmeta, "", @note
    .p2align 2
    .long 13
    .long 0x6000
    .long 1
    .ascii "sgx_metadata\0"
    .fill 0x6000, 1, 0
    .p2align 2
    .section .note.GNU-stack, "", @progbits
