"""Reading an image: the MAC and metadata at open, each block when it is read."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag

from . import metadata
from .crypto import block_aad, block_nonce, image_mac, load_key, root_of
from .format import (
    BLOCK_DECRYPT,
    BLOCK_MISMATCH,
    BLOCK_SIZE,
    LEAF_SIZE,
    MAC_MISMATCH,
    METADATA_FILE,
    METADATA_MALFORMED,
    OBJECT_MISSING,
    OBJECT_SIZE,
    OBJECTS_DIR,
    ROOT_MISMATCH,
    TAG_SIZE,
    TYPE_DIR,
    TYPE_FILE,
    Entry,
    ImageError,
    block_count,
    object_size,
)


class ImageReader:
    """An opened, MAC-checked image. ``read`` verifies each block it returns."""

    def __init__(self, out_dir: Path, mac: bytes, key: bytes | None = None):
        self.dir = Path(out_dir)
        self.key = load_key(key)
        where = str(self.dir / METADATA_FILE)
        try:
            data = (self.dir / METADATA_FILE).read_bytes()
        except OSError as e:
            raise ImageError(MAC_MISMATCH, f"cannot read the metadata: {e.strerror}", where=where) from None
        if not hmac.compare_digest(image_mac(data), mac):
            raise ImageError(MAC_MISMATCH, "the metadata does not match the image MAC", where=where)
        self._entries = metadata.decode(data, self.key, where)
        self._by_path = {e.path: e for e in self._entries}

    @property
    def encrypted(self) -> bool:
        return self.key is not None

    def entries(self) -> list[Entry]:
        return list(self._entries)

    def entry(self, path: str | bytes) -> Entry:
        p = _norm(path)
        e = self._by_path.get(p)
        if e is None:
            raise FileNotFoundError(f"/{p.decode('utf-8', 'replace')}: not in the image")
        return e

    def listdir(self, path: str | bytes) -> list[Entry]:
        e = self.entry(path)
        if e.type != TYPE_DIR:
            raise NotADirectoryError(e.display)
        pre = e.path + b"/" if e.path else b""
        return [
            x for x in self._entries if x.path.startswith(pre) and x.path and b"/" not in x.path[len(pre) :]
        ]

    def _open_object(self, e: Entry) -> tuple[int, bytes]:
        """Open an entry's object and check its size and leaves; return (fd, leaves)."""
        p = self.dir / OBJECTS_DIR / e.root.hex()
        try:
            fd = os.open(p, os.O_RDONLY)
        except FileNotFoundError:
            raise ImageError(OBJECT_MISSING, "object file is missing", path=e.display, where=str(p)) from None
        except OSError as e2:
            raise ImageError(
                OBJECT_MISSING, f"cannot open object: {e2.strerror}", path=e.display, where=str(p)
            ) from None
        try:
            want = object_size(e.size, self.encrypted)
            have = os.fstat(fd).st_size
            if have != want:
                raise ImageError(
                    OBJECT_SIZE, f"object is {have} bytes, expected {want}", path=e.display, where=str(p)
                )
            n = block_count(e.size)
            leaves = os.pread(fd, n * LEAF_SIZE, want - n * LEAF_SIZE)
            if len(leaves) != n * LEAF_SIZE or root_of(leaves) != e.root:
                raise ImageError(
                    ROOT_MISMATCH, "block hashes do not match the object root", path=e.display, where=str(p)
                )
            return fd, leaves
        except BaseException:
            os.close(fd)
            raise

    def read(self, path: str | bytes, offset: int = 0, length: int | None = None) -> bytes:
        """The plain bytes of a regular file (or a range of it), every block verified."""
        e = self.entry(path)
        if e.type != TYPE_FILE:
            raise IsADirectoryError(e.display) if e.type == TYPE_DIR else OSError(f"{e.display}: not a file")
        end = e.size if length is None else min(e.size, offset + length)
        if e.size == 0 or offset >= end:
            return b""
        fd, leaves = self._open_object(e)
        try:
            return b"".join(self._blocks(fd, leaves, e, offset // BLOCK_SIZE, (end - 1) // BLOCK_SIZE))[
                offset % BLOCK_SIZE : offset % BLOCK_SIZE + (end - offset)
            ]
        finally:
            os.close(fd)

    def check(self, e: Entry) -> None:
        """Verify every block of one entry's object (verify_image)."""
        if e.type != TYPE_FILE or e.size == 0:
            return
        fd, leaves = self._open_object(e)
        try:
            n = block_count(e.size)
            step = 256
            for first in range(0, n, step):
                for _ in self._blocks(fd, leaves, e, first, min(n, first + step) - 1):
                    pass
        finally:
            os.close(fd)

    def _blocks(self, fd: int, leaves: bytes, e: Entry, first: int, last: int):
        sb = BLOCK_SIZE + (TAG_SIZE if self.encrypted else 0)
        cipher = self.key.file_cipher(e.file_id) if self.key is not None else None
        nblocks = block_count(e.size)
        data = os.pread(fd, (last - first + 1) * sb, first * sb)
        mv = memoryview(data)
        off = 0
        sha = hashlib.sha256
        for i in range(first, last + 1):
            plain_len = BLOCK_SIZE if i < nblocks - 1 else e.size - BLOCK_SIZE * (nblocks - 1)
            slen = plain_len + (TAG_SIZE if cipher else 0)
            s = mv[off : off + slen]
            off += slen
            if sha(s).digest() != leaves[i * LEAF_SIZE : (i + 1) * LEAF_SIZE]:
                raise ImageError(
                    BLOCK_MISMATCH, f"block {i} does not match its hash", path=e.display, where=str(self.dir)
                )
            if cipher is None:
                yield bytes(s)
            else:
                try:
                    yield cipher.decrypt(block_nonce(i), bytes(s), block_aad(i, e.size))
                except InvalidTag:
                    raise ImageError(
                        BLOCK_DECRYPT, f"block {i} fails to decrypt", path=e.display, where=str(self.dir)
                    ) from None


def _norm(path: str | bytes) -> bytes:
    p = os.fsencode(path) if isinstance(path, str) else path
    p = p.strip(b"/")
    return p


__all__ = ["ImageReader", "METADATA_MALFORMED"]
