"""The sign stage: which signer a build uses (a PEM key, the development key, or an external
tool), how it is described for the up-to-date check without loading the key, and the
signing itself (sgx/sign.py does the format work)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import KeyFileError, OcclumError
from ..fsutil import atomic_write
from ..inputfile import MAX_KEY_FILE_BYTES, read_limited
from .context import BuildContext, sign_date


def signer_for(ctx: BuildContext) -> tuple[Any, dict[str, Any]]:
    """The signer and a description of it for up-to-date checks (no secret in it: the
    digest of the public key, which MRSIGNER follows from, and the tool command)."""
    opts = ctx.opts
    if opts.sign_tool is not None:
        from ..sgx.signer import ToolSigner

        assert opts.sign_key is not None
        signer: Any = ToolSigner(opts.sign_tool, opts.sign_key)
        return signer, {"tool": opts.sign_tool, "public_key": _public_key_sha256(signer.public_key)}
    key = opts.sign_key
    if key is None and ctx.install is not None and ctx.install.sign_key.is_file():
        key = ctx.install.sign_key  # real `occlum build`'s default: the install's Enclave.pem
        ctx.announce(f"Signing with the install's development key {key} (not for release: "
                     "sign releases with --sign-key)")
    if key is None:
        key = ctx.inst.dev_sign_key
        if not key.exists():
            from ..sgx.signer import generate_signing_key

            ctx.announce(f"Creating a development signing key {key} (for development only: "
                         "sign releases with --sign-key)")
            generate_signing_key(key)
    return _pem_signer(ctx, key)


# build/.state/signer.json: {"key_file": fingerprint of the key file's bytes, "public_key":
# the digest of its public key}.  An up-to-date build then needs neither cryptography nor the
# key parsed; any other key file content loads the key.
SIGNER_CACHE = "signer.json"


def _pem_signer(ctx: BuildContext, key: Path) -> tuple[Any, dict[str, Any]]:
    cache_file = ctx.state.dir / SIGNER_CACHE
    # A key path naming /dev/zero, a FIFO or a huge file is refused here, naming it.
    raw = read_limited(key, what="signing key file", limit=MAX_KEY_FILE_BYTES, error=KeyFileError)
    fp = hashlib.sha256(b"occlum-build signing key file\0" + raw).hexdigest()
    try:
        cached = json.loads(cache_file.read_text())
        if isinstance(cached, dict) and cached.get("key_file") == fp and \
                isinstance(cached.get("public_key"), str):
            return _LazyPemSigner(key), {"public_key": cached["public_key"]}
    except (OSError, ValueError):
        pass  # no cache yet
    pem = _LazyPemSigner(key)
    pub = _public_key_sha256(pem.public_key)  # loads the key: a bad key file fails the build here
    with contextlib.suppress(OcclumError):
        atomic_write(cache_file, json.dumps({"key_file": fp, "public_key": pub}) + "\n",
                     durable=False)
    return pem, {"public_key": pub}


class _LazyPemSigner:
    """A PemSigner made on first use (when the sign stage runs or the key is not cached).

    PemSigner loads the key without OpenSSL's slow private key validation: it verifies every
    signature it makes instead (sgx/signer.py, docs/sgx-signing.md)."""

    def __init__(self, path: Path):
        self.path = path
        self._signer: Any = None

    def _get(self) -> Any:
        if self._signer is None:
            from ..sgx.signer import PemSigner

            self._signer = PemSigner(self.path)
        return self._signer

    @property
    def public_key(self) -> Any:
        return self._get().public_key

    def sign(self, data: bytes) -> bytes:
        return self._get().sign(data)


def _public_key_sha256(pub: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def sign(ctx: BuildContext, signer: Any) -> dict[str, Any]:
    from ..sgx.sign import sign_enclave

    res = sign_enclave(ctx.libos_unsigned.read_bytes(), ctx.inst.enclave_xml.read_bytes(),
                       signer, date=sign_date(), where=str(ctx.libos_unsigned),
                       config_where=str(ctx.inst.enclave_xml))
    atomic_write(ctx.inst.libos_signed, res.signed, mode=0o755)
    return {"mrenclave": _hex(res.mrenclave), "mrsigner": _hex(res.mrsigner)}


def _hex(v: Any) -> str:
    return v.hex() if isinstance(v, bytes | bytearray) else str(v).lower()
