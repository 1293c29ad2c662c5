"""`.Occlum_sys.json.protected` and the conf MAC, as Occlum's `occlum-protect-integrity`
writes them: a Protected FS integrity-only file whose clean name is
``.Occlum_sys.json.protected`` (docs/formats/protected-fs.md); its MAC is the conf MAC."""

from __future__ import annotations

from . import pfs
from .pfs_reader import PfsReader

PROTECTED_NAME = ".Occlum_sys.json.protected"


def protect_config(sys_json: bytes) -> bytes:
    """The protected file for the exact bytes of .Occlum_sys.json."""
    return pfs.protect_bytes(sys_json, PROTECTED_NAME.encode())[0]


def conf_mac(protected: bytes, where: str = PROTECTED_NAME) -> bytes:
    """The 16-byte conf MAC of a protected config (what goes into .builtin_config); its
    metadata node is checked (mode, MAC, clean name)."""
    return PfsReader(protected, PROTECTED_NAME, where=where).mac


def unprotect_config(data: bytes, where: str, *, expected_mac: bytes | None = None) -> bytes:
    """Check a protected config (and its conf MAC if given); return the JSON bytes."""
    r = PfsReader(data, PROTECTED_NAME, where=where)
    if expected_mac is not None and r.mac != expected_mac:
        raise pfs.PfsError("conf MAC mismatch: the protected configuration was changed", where=where)
    return r.read()
