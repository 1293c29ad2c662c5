"""Enclave signing keys and signers.

SGX requires RSA-3072 with public exponent 3; anything else is refused with the key file
named.  Private key material is never printed, logged or written except by
:func:`generate_signing_key` (mode 0600).

A :class:`Signer` signs the 256-byte SIGSTRUCT header+body (RSASSA-PKCS1-v1_5, SHA-256) and
returns the signature big-endian, exactly as ``openssl dgst -sha256 -sign key.pem`` writes it.

``ToolSigner`` protocol (two-step / HSM flow): the tool is run as
``TOOL <data-file> <signature-file>`` (TOOL may carry arguments, split like a shell would);
``<data-file>`` holds the 256 bytes to sign, the tool writes the 384-byte big-endian
signature to ``<signature-file>`` and exits 0.  A non-zero exit, a missing or wrongly sized
signature, or one that does not verify with the configured public key is an error.  Example:
``--sign-tool 'sh -c "openssl dgst -sha256 -sign /keys/k.pem -out \\"$2\\" \\"$1\\"" sign'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..errors import EXIT_FAILURE, KeyFileError, OcclumError, VerifyError
from ..fsutil import atomic_write
from ..inputfile import MAX_KEY_FILE_BYTES, read_limited
from .sigstruct import EXPONENT, KEY_BYTES, verify_signature

KEY_BITS = 3072


@runtime_checkable
class Signer(Protocol):
    """Anything that can sign SIGSTRUCT data with an RSA-3072 e=3 key."""

    @property
    def public_key(self) -> rsa.RSAPublicKey: ...

    def sign(self, data: bytes) -> bytes:
        """Signature over ``data`` (the 256 signed bytes), big-endian, 384 bytes."""
        ...


def check_key(key: rsa.RSAPublicKey | rsa.RSAPrivateKey | object, where: str) -> None:
    """Refuse anything but RSA-3072 with e=3 (what SGX accepts)."""
    if not isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        raise KeyFileError(f"not an RSA key ({type(key).__name__}); SGX needs RSA-3072 with exponent 3",
                           where=where)
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    nums = pub.public_numbers()
    if pub.key_size != KEY_BITS or nums.e != EXPONENT:
        raise KeyFileError(f"RSA-{pub.key_size} key with exponent {nums.e}; SGX needs RSA-3072 with "
                           "exponent 3 (create one with 'occlum gen-sign-key' or 'openssl genrsa -3 3072')",
                           where=where)


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    return read_limited(path, what=what, limit=MAX_KEY_FILE_BYTES, error=KeyFileError)


def _pem_loaders() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """cryptography's ``load_pem_private_key`` and ``load_pem_public_key``.

    ``serialization`` re-exports them from the Rust bindings, and importing it also imports
    the SSH key code, every cipher and every other key type: about half of the cost of the
    cryptography imports of `occlum-sgx-sign sign`.  So they are taken from the bindings
    (the same function objects: tests/sgx/test_pem_signer.py checks), and from
    ``serialization`` only by a cryptography that does not have them there."""
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        return rust_openssl.keys.load_pem_private_key, rust_openssl.keys.load_pem_public_key
    except (ImportError, AttributeError):
        from cryptography.hazmat.primitives import serialization

        return serialization.load_pem_private_key, serialization.load_pem_public_key


def load_signing_key(path: str | os.PathLike[str], *, validate: bool = True) -> rsa.RSAPrivateKey:
    """Load a PEM private key (PKCS#1 or PKCS#8, unencrypted) and check it is RSA-3072 e=3.

    ``validate=False`` skips OpenSSL's consistency check of the private key (primality of p
    and q, n = pq, d, the CRT values): it costs ~0.1 s for RSA-3072 at every load.  Only a
    caller that verifies every signature it makes with the public key before using it may
    skip it (:class:`PemSigner` does); the RSA-3072 / e=3 checks are made either way."""
    raw = _read(path, "signing key file")
    try:
        key = _pem_loaders()[0](raw, password=None, unsafe_skip_rsa_key_validation=not validate)
    except TypeError:
        raise KeyFileError("signing key is encrypted; give an unencrypted PEM key or use --sign-tool",
                           where=str(path)) from None
    except (ValueError, UnsupportedAlgorithm):
        # never echo the content: it may be key material
        raise KeyFileError("not a PEM private key", where=str(path)) from None
    check_key(key, str(path))
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def load_public_key(path: str | os.PathLike[str], *, allow_private: bool = False) -> rsa.RSAPublicKey:
    """Load a PEM public key (SubjectPublicKeyInfo or PKCS#1) and check it is RSA-3072 e=3.

    With ``allow_private`` a PEM private key is accepted too and only its public half is kept."""
    raw = _read(path, "public key file")
    try:
        key = _pem_loaders()[1](raw)
    except (ValueError, UnsupportedAlgorithm):
        if allow_private and b"PRIVATE KEY" in raw:
            return load_signing_key(path).public_key()
        raise KeyFileError("not a PEM public key", where=str(path)) from None
    check_key(key, str(path))
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def generate_signing_key(path: str | os.PathLike[str], *, overwrite: bool = False) -> rsa.RSAPublicKey:
    """Create an RSA-3072 e=3 key as PEM (PKCS#1, like ``openssl genrsa -3 3072``), mode 0600."""
    from cryptography.hazmat.primitives import serialization

    p = os.fspath(path)
    if os.path.exists(p) and not overwrite:
        raise KeyFileError("already exists; refusing to overwrite a signing key", where=p)
    key = rsa.generate_private_key(public_exponent=EXPONENT, key_size=KEY_BITS)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    atomic_write(p, pem, mode=0o600)
    return key.public_key()


class PemSigner:
    """Signs with a private key from a PEM file.

    The key is loaded without OpenSSL's private key validation (``validate=False``, ~0.1 s of
    every `occlum build` that re-signs).  That is safe because :meth:`sign` verifies each
    signature with the public key (n, e=3) before returning it: an inconsistent private key
    (wrong d, p, q or CRT values) cannot produce a signature that verifies, so it is refused
    here, and a faulty CRT signature -- which could reveal a factor of n -- never leaves this
    object.  A malformed key file is still refused at load (the PEM/ASN.1 parse), and the
    RSA-3072 / e=3 checks still apply.  docs/sgx-signing.md "Key validation"."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = str(path)
        self._key = load_signing_key(path, validate=False)
        self._public = self._key.public_key()

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    def sign(self, data: bytes) -> bytes:
        sig = self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if not verify_signature(self._public, data, sig):
            raise KeyFileError("the private key is inconsistent: its signature does not verify with "
                               "its own public key (check the key file, e.g. 'openssl rsa -check')",
                               where=self.path)
        return sig

    def __repr__(self) -> str:  # never show key material
        return f"PemSigner({self.path!r})"


class ToolSigner:
    """Signs by running an external program (HSM, remote signer); see the module docstring.

    ``public_key_path``: the PEM public key whose private half the tool uses (a PEM private key
    is accepted too; only its public half is kept)."""

    def __init__(self, tool: str, public_key_path: str | os.PathLike[str], *, timeout: float | None = 600):
        self.tool = tool
        import shlex  # here, not at module level: `sign` with a PEM key never needs it

        self.argv = shlex.split(tool)
        if not self.argv:
            raise OcclumError("empty --sign-tool command")
        self._public_key = load_public_key(public_key_path, allow_private=True)
        self.timeout = timeout

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._public_key

    def sign(self, data: bytes) -> bytes:
        import subprocess
        import tempfile

        with tempfile.TemporaryDirectory(prefix="occlum-sign-") as d:
            data_file = os.path.join(d, "sigstruct.data")
            sig_file = os.path.join(d, "sigstruct.sig")
            with open(data_file, "wb") as f:
                f.write(data)
            from .. import log

            argv = [*self.argv, data_file, sig_file]
            log.get("sign").log(log.TRACE, "exec %s", " ".join(argv))
            try:
                r = subprocess.run(argv, stdin=subprocess.DEVNULL,
                                   capture_output=True, timeout=self.timeout, check=False)
            except FileNotFoundError:
                raise OcclumError(f"sign tool not found: {self.argv[0]}", exit_code=EXIT_FAILURE) from None
            except subprocess.TimeoutExpired:
                raise OcclumError(f"sign tool timed out after {self.timeout} s: {self.tool}",
                                  exit_code=EXIT_FAILURE) from None
            if r.returncode != 0:
                tail = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
                raise OcclumError(f"sign tool failed with exit status {r.returncode}: {self.tool}"
                                  + (f" ({tail[0]})" if tail[0] else ""), exit_code=EXIT_FAILURE)
            if not os.path.exists(sig_file):
                raise OcclumError(f"sign tool wrote no signature file: {self.tool}", exit_code=EXIT_FAILURE)
            with open(sig_file, "rb") as f:
                sig = f.read()
        if len(sig) != KEY_BYTES:
            raise VerifyError(f"sign tool returned {len(sig)} bytes, expected a {KEY_BYTES}-byte RSA-3072 "
                              f"signature: {self.tool}")
        if not verify_signature(self._public_key, data, sig):
            raise VerifyError("the signature from the sign tool does not verify with the public key: "
                              f"{self.tool}")
        return sig
