"""Intel SGX enclave measurement and signing, byte-compatible with SDK 2.26 ``sgx_sign``.

Public API (docs/sgx-signing.md):

* :class:`Signer` (protocol), :class:`PemSigner`, :class:`ToolSigner`
* :func:`sign_enclave` -> :class:`SignResult`; :func:`gendata`; :func:`catsig`
* :func:`dump_enclave` -> :class:`EnclaveInfo`; :func:`verify_signed_enclave`
* :func:`patch_section`
* :func:`load_signing_key`, :func:`load_public_key`, :func:`generate_signing_key`
"""

from .dump import EnclaveInfo, dump_enclave, verify_signed_enclave
from .elf import EnclaveError, patch_section
from .sign import SignResult, catsig, gendata, sign_enclave, today
from .signer import (
    PemSigner,
    Signer,
    ToolSigner,
    generate_signing_key,
    load_public_key,
    load_signing_key,
)

__all__ = [
    "EnclaveError", "EnclaveInfo", "PemSigner", "SignResult", "Signer", "ToolSigner", "catsig",
    "dump_enclave", "gendata", "generate_signing_key", "load_public_key", "load_signing_key",
    "patch_section", "sign_enclave", "today", "verify_signed_enclave",
]
