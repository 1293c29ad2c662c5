"""Intel SGX enclave measurement and signing, byte-compatible with ``sgx_sign`` of SDK 2.26 and of
Occlum's SDK 2.20/2.21 forks (the enclave's ``g_global_data.sdk_version`` selects: profiles.py).

Public API (docs/sgx-signing.md):

* :class:`Signer` (protocol), :class:`PemSigner`, :class:`ToolSigner`
* :func:`sign_enclave` -> :class:`SignResult`; :func:`gendata`; :func:`catsig`
* :func:`dump_enclave` -> :class:`EnclaveInfo`; :func:`verify_signed_enclave`
* :func:`patch_section`
* :func:`load_signing_key`, :func:`load_public_key`, :func:`generate_signing_key`

The names are loaded on first use (PEP 562): importing ``occlum_build.sgx`` or one of its
modules does not import pyelftools and cryptography for the others, so an up-to-date
`occlum build` that only checks whether signing exists stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    "EnclaveInfo": "dump", "dump_enclave": "dump", "verify_signed_enclave": "dump",
    "EnclaveError": "elf", "patch_section": "elf",
    "SignResult": "sign", "catsig": "sign", "gendata": "sign", "sign_enclave": "sign", "today": "sign",
    "PemSigner": "signer", "Signer": "signer", "ToolSigner": "signer",
    "generate_signing_key": "signer", "load_public_key": "signer", "load_signing_key": "signer",
}

__all__ = [
    "EnclaveError", "EnclaveInfo", "PemSigner", "SignResult", "Signer", "ToolSigner", "catsig",
    "dump_enclave", "gendata", "generate_signing_key", "load_public_key", "load_signing_key",
    "patch_section", "sign_enclave", "today", "verify_signed_enclave",
]


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
