"""Hashing and encryption of image version 1 (docs/formats/image.md sections 4-6)."""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import KeyFileError
from . import native
from .format import BLOCK_SIZE, FILE_ID_SIZE, LEAF_SIZE, MAC_SIZE

_sha256 = hashlib.sha256
_IDX = struct.Struct("<Q")
_AAD = struct.Struct("<QQ")

INFO_FILE_ID = b"occlum-build image v1 file-id"
INFO_META = b"occlum-build image v1 metadata"
INFO_META_NONCE = b"occlum-build image v1 metadata-nonce"
INFO_FILE = b"occlum-build image v1 file"
INFO_FINGERPRINT = b"occlum-build image v1 cache key fingerprint"


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info).derive(ikm)


NATIVE_MIN_BLOCKS = 16  # fewer: hashlib is cheaper than the ctypes call (~5 us)


def leaves_of(stored: bytes | memoryview, block: int) -> bytes:
    """Concatenated leaf hashes of consecutive stored blocks of ``block`` bytes each.
    A writable buffer of several blocks is hashed by the native library once a build has
    loaded it (native.py: the interpreter lock is dropped once per call, not per block)."""
    mv = memoryview(stored)
    if len(mv) >= NATIVE_MIN_BLOCKS * block and not mv.readonly:
        fast = native.current()
        if fast is not None:
            return fast(mv, block)
    h = _sha256
    return b"".join([h(mv[i : i + block]).digest() for i in range(0, len(mv), block)])


def root_of(leaves: bytes) -> bytes:
    return _sha256(leaves).digest()


def image_mac(metadata: bytes) -> bytes:
    return _sha256(metadata).digest()[:MAC_SIZE]


@dataclass(frozen=True)
class FileCipher:
    """A file's key (section 5) and its AES-128-GCM; the raw key is for the native sealer."""

    key: bytes
    aead: AESGCM

    def encrypt(self, nonce: bytes, data: bytes | memoryview, aad: bytes) -> bytes:
        return self.aead.encrypt(nonce, data, aad)

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        return self.aead.decrypt(nonce, data, aad)


@dataclass(frozen=True)
class ImageKey:
    """The image key and the keys derived from it once (section 5)."""

    key: bytes
    k_id: bytes
    k_meta: bytes
    k_nonce: bytes

    @classmethod
    def from_key(cls, key: bytes) -> ImageKey:
        if len(key) != 16:
            raise ValueError("an image key is 16 bytes")
        return cls(
            key,
            hkdf(key, b"", INFO_FILE_ID, 32),
            hkdf(key, b"", INFO_META, 16),
            hkdf(key, b"", INFO_META_NONCE, 32),
        )

    def fingerprint(self) -> str:
        """A one-way identifier of the key for caches (never the key itself)."""
        return hkdf(self.key, b"", INFO_FINGERPRINT, 16).hex()

    def file_id(self, content_sha256: bytes) -> bytes:
        return hmac.new(self.k_id, content_sha256, "sha256").digest()[:FILE_ID_SIZE]

    def file_cipher(self, file_id: bytes) -> FileCipher:
        k = hkdf(self.key, file_id, INFO_FILE, 16)
        return FileCipher(k, AESGCM(k))

    def seal_metadata(self, header16: bytes, plain: bytes) -> tuple[bytes, bytes]:
        nonce = hmac.new(self.k_nonce, plain, "sha256").digest()[:12]
        return nonce, AESGCM(self.k_meta).encrypt(nonce, plain, header16)

    def open_metadata(self, header16: bytes, nonce: bytes, sealed: bytes) -> bytes:
        """Raises cryptography.exceptions.InvalidTag on a wrong key or tampering."""
        return AESGCM(self.k_meta).decrypt(nonce, sealed, header16)


def load_key(key: bytes | None) -> ImageKey | None:
    """The derived keys of a 16-byte image key (None: integrity-only)."""
    if key is None:
        return None
    if not isinstance(key, bytes) or len(key) != 16:
        raise KeyFileError("an image key must be 16 bytes (a file written by `occlum gen-image-key`)")
    return ImageKey.from_key(key)


def block_nonce(i: int) -> bytes:
    return _IDX.pack(i) + b"\0\0\0\0"


def block_aad(i: int, size: int) -> bytes:
    return _AAD.pack(i, size)


def seal_parts(cipher: FileCipher, plain: bytes | memoryview, first: int,
               size: int) -> tuple[list[bytes | memoryview], bytes]:
    """Encrypt consecutive plain blocks starting at block index ``first``: the stored blocks
    (to be written as they are, with ``writev``; from the native sealer, one buffer valid
    until this thread seals again) and their concatenated leaves."""
    mv = memoryview(plain)
    if len(mv) >= NATIVE_MIN_BLOCKS * BLOCK_SIZE and not mv.readonly:
        fast = native.sealer()
        if fast is not None:
            stored, leaves = fast(cipher.key, mv, first, size)
            return [stored], leaves
    enc = cipher.encrypt
    h = _sha256
    idx = _IDX.pack
    aad = _AAD.pack
    parts = [
        enc(idx(first + k) + b"\0\0\0\0", mv[off : off + BLOCK_SIZE], aad(first + k, size))
        for k, off in enumerate(range(0, len(mv), BLOCK_SIZE))
    ]
    return parts, b"".join([h(p).digest() for p in parts])


def stored_block_size(encrypted: bool) -> int:
    return BLOCK_SIZE + 16 if encrypted else BLOCK_SIZE


assert LEAF_SIZE == _sha256().digest_size
