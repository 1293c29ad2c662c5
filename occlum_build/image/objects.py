"""Writing and reading content objects (docs/formats/image.md section 4)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import threading
from collections.abc import Callable
from pathlib import Path

from ..errors import OcclumError, OutputError
from .crypto import ImageKey, leaves_of, root_of, seal_blocks
from .format import BLOCK_SIZE, TAG_SIZE

CHUNK = 256 * BLOCK_SIZE  # 1 MiB read/hash/encrypt unit
TMP_PREFIX = ".tmp-"
_counter = itertools.count()


class SourceChanged(OcclumError):
    """A source file changed while it was being read."""


def _read_error(path: Path, e: OSError) -> OcclumError:
    return OcclumError(f"cannot read source file: {e.strerror or e}", where=str(path))


def _fill(f, mv: memoryview, path: Path) -> int:
    """Read until ``mv`` is full or at end of file: block boundaries must not depend on how
    the kernel splits reads."""
    got = 0
    while got < len(mv):
        try:
            n = f.readinto(mv[got:])
        except OSError as e:
            raise _read_error(path, e) from None
        if not n:
            break
        got += n
    return got


def pread_full(fd: int, length: int, offset: int, path: Path) -> bytes:
    """``length`` bytes at ``offset`` (fewer only at end of file)."""
    parts = []
    while length:
        try:
            b = os.pread(fd, length, offset)
        except OSError as e:
            raise _read_error(path, e) from None
        if not b:
            break
        parts.append(b)
        length -= len(b)
        offset += len(b)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _chunks(f, path: Path):
    """Successive full CHUNK-sized views of a file (the last one shorter), one buffer."""
    mv = memoryview(bytearray(CHUNK))
    while got := _fill(f, mv, path):
        yield mv[:got]


def read_small(path: Path, size: int) -> bytes:
    """The whole content of a file of at most CHUNK bytes, checking its size."""
    try:
        with open(path, "rb", buffering=0) as f:
            buf = memoryview(bytearray(size + 1))
            got = _fill(f, buf, path)
    except OSError as e:
        raise _read_error(path, e) from None
    if got != size:
        raise SourceChanged("file changed while it was being read; run the build again", where=str(path))
    return bytes(buf[:got])


def content_sha256(path: Path, size: int, tick: Callable[[int], None] | None = None) -> bytes:
    """SHA-256 of a file's content, checking that it still has ``size`` bytes."""
    h = hashlib.sha256()
    n = 0
    try:
        with open(path, "rb", buffering=0) as f:
            buf = bytearray(CHUNK)
            mv = memoryview(buf)
            while True:
                got = f.readinto(buf)
                if not got:
                    break
                h.update(mv[:got])
                n += got
                if tick:
                    tick(got)
    except OSError as e:
        raise _read_error(path, e) from None
    if n != size:
        raise SourceChanged("file changed while it was being read; run the build again", where=str(path))
    return h.digest()


def store_object(
    path: Path,
    size: int,
    objects_dir: Path | None,
    key: ImageKey | None,
    file_id: bytes | None,
    tick: Callable[[int], None] | None = None,
    created: list[Path] | None = None,
    data: bytes | None = None,
) -> tuple[bytes, bool]:
    """Read ``path`` once (or take its content ``data`` already read) and build its object,
    written under ``objects_dir`` if given.
    Returns (root, new): ``new`` is False when an object of the right size was already there
    (it is replaced all the same, which heals a torn one). Objects that did not exist at all
    are appended to ``created`` (so a failed build can remove them)."""
    cipher = key.file_cipher(file_id) if key is not None and file_id is not None else None
    tmp: Path | None = None
    out = None
    if objects_dir is not None:
        tmp = objects_dir / f"{TMP_PREFIX}{os.getpid()}-{threading.get_ident()}-{next(_counter)}"
    leaves = []
    n = 0
    block_index = 0
    try:
        if data is None:
            try:
                src = open(path, "rb", buffering=0)
            except OSError as e:
                raise _read_error(path, e) from None
        else:
            src = contextlib.nullcontext()
        with src:
            if tmp is not None:
                out = open(tmp, "wb", buffering=0)
            for mv in [memoryview(data)] if data is not None else _chunks(src, path):
                got = len(mv)
                n += got
                if n > size:
                    break
                if cipher is None:
                    stored = mv[:got]
                    leaves.append(leaves_of(stored, BLOCK_SIZE))
                else:
                    stored = seal_blocks(cipher, mv[:got], block_index, size)
                    leaves.append(leaves_of(stored, BLOCK_SIZE + TAG_SIZE))
                block_index += (got + BLOCK_SIZE - 1) // BLOCK_SIZE
                if out is not None:
                    out.write(stored)
                if tick:
                    tick(got)
        if n != size:
            raise SourceChanged("file changed while it was being read; run the build again", where=str(path))
        all_leaves = b"".join(leaves)
        root = root_of(all_leaves)
        if out is None or tmp is None or objects_dir is None:
            return root, False
        final = objects_dir / root.hex()
        try:
            existed = os.stat(final).st_size == size + len(all_leaves) + (
                len(all_leaves) // 2 if cipher else 0
            )
        except FileNotFoundError:
            existed = False
            if created is not None:
                created.append(final)
        # Always replace: a fresh object heals one torn by a power failure (objects are not
        # fsynced one by one; see cache.py on boot ids).
        out.write(all_leaves)
        out.close()
        out = None
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
        return root, not existed
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise OutputError(
                "no space left on device; previous image kept", where=str(objects_dir)
            ) from None
        raise OutputError(f"cannot write image object: {e.strerror or e}", where=str(objects_dir)) from None
    finally:
        if out is not None:
            with contextlib.suppress(OSError):
                out.close()
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
