"""`.Occlum_sys.json.protected` and the conf MAC (docs/formats/protected-config.md)."""

from __future__ import annotations

import hashlib
import hmac

from ..errors import VerifyError
from .format import Field, Layout

MAGIC = b"OCBCONF1"
VERSION = 1
DIGEST_SIZE = 32

PROTECTED_HEADER = Layout(
    "protected config header",
    16,
    (
        Field("magic", 0, 8, "bytes"),
        Field("version", 8, 4, "u32"),
        Field("length", 12, 4, "u32"),
    ),
)


def protect_config(sys_json: bytes) -> bytes:
    """Wrap the exact bytes of .Occlum_sys.json into the protected container."""
    if len(sys_json) >= 2**32:
        raise ValueError("configuration too large")
    body = PROTECTED_HEADER.pack(magic=MAGIC, version=VERSION, length=len(sys_json)) + sys_json
    return body + hashlib.sha256(body).digest()


def conf_mac(protected: bytes) -> bytes:
    """The 16-byte conf MAC of a protected file (patched into .builtin_config)."""
    return hashlib.sha256(protected).digest()[:16]


def unprotect_config(data: bytes, where: str, *, expected_mac: bytes | None = None) -> bytes:
    """Check a protected file (and its conf MAC if given); return the JSON payload bytes."""
    if expected_mac is not None and not hmac.compare_digest(conf_mac(data), expected_mac):
        raise VerifyError("conf MAC mismatch: the protected configuration was changed", where=where)
    if len(data) < PROTECTED_HEADER.size + DIGEST_SIZE:
        raise VerifyError("bad-size: protected configuration is truncated", where=where)
    h = PROTECTED_HEADER.unpack(data)
    if h["magic"] != MAGIC:
        raise VerifyError("bad-magic: not a protected occlum-build configuration", where=where)
    if h["version"] != VERSION:
        raise VerifyError(f"bad-magic: unknown protected configuration version {h['version']}", where=where)
    n = h["length"]
    if len(data) != PROTECTED_HEADER.size + n + DIGEST_SIZE:
        raise VerifyError(
            f"bad-size: protected configuration is {len(data)} bytes, expected {48 + n}", where=where
        )
    body, digest = data[:-DIGEST_SIZE], data[-DIGEST_SIZE:]
    if not hmac.compare_digest(hashlib.sha256(body).digest(), digest):
        raise VerifyError("digest-mismatch: protected configuration was changed", where=where)
    return body[PROTECTED_HEADER.size :]
