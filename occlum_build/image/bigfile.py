"""Large files split into segments that several worker threads build at once.

A file of more than ``SEGMENT`` bytes becomes one unit of work per segment (integrity-only),
or one unit that hashes the whole content followed by one unit per segment (encrypted: the
file id, hence the key, depends on the whole content). Each unit reads its range with
``pread``, computes its leaves (and ciphertext) and writes them with ``pwrite`` at their
place in a temp object; the unit that finishes last appends the leaves and renames the
object into place. Output bytes are those of :func:`objects.store_object`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

from . import directio, native
from .crypto import ImageKey, leaves_of, root_of, seal_parts
from .format import BLOCK_SIZE, LEAF_SIZE, TAG_SIZE, block_count
from .objects import (
    CHUNK,
    _read_error,
    buffer,
    changed,
    content_sha256,
    read_at,
    temp_path,
    write_all,
    write_error,
)

SEGMENT = 32 * CHUNK  # 32 MiB per unit of work

Unit = Callable[[], list["Unit"]]
Result = tuple[bytes, bytes, bytes, bool]  # (content digest, root, file_id, written)


class BigFile:
    def __init__(
        self,
        path: Path,
        size: int,
        objects_dir: Path | None,
        key: ImageKey | None,
        tick: Callable[[int], None],
        created: list[Path],
        done: Callable[[Result], None],
        direct: bool = False,
    ):
        self.path, self.size, self.objects_dir, self.key = path, size, objects_dir, key
        self.tick, self.created, self.done = tick, created, done
        self.nseg = (size + SEGMENT - 1) // SEGMENT
        self.leaves: list[bytes | None] = [None] * self.nseg
        self.remaining = self.nseg
        self.lock = threading.Lock()
        self.src_fd = -1
        self.out_fd = -1
        self.direct_ok = direct
        self.direct = False  # out_fd has O_DIRECT (integrity-only): see directio.py
        self.tail = b""  # the last block's partial tail, written with the leaves
        self.tmp: Path | None = None
        self.digest = b""
        self.file_id = bytes(16)
        self.cipher = None
        self.failed = False

    def units(self) -> list[Unit]:
        """The first units of work for this file."""
        if self.key is None:
            return [self._open_and(self._segment_units)]
        return [self._open_and(self._hash)]

    # -- units ---------------------------------------------------------------------------

    def _open_and(self, then: Callable[[], list[Unit]]) -> Unit:
        def unit() -> list[Unit]:
            try:
                self.src_fd = os.open(self.path, os.O_RDONLY)
            except OSError as e:
                raise _read_error(self.path, e) from None
            if self.objects_dir is not None:
                try:
                    odir = os.fspath(self.objects_dir)
                    self.tmp = Path(temp_path(odir))
                    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                    if self.direct_ok and (self.key is None or native.sealer()):  # aligned output
                        self.out_fd, self.direct = directio.open_object(os.fspath(self.tmp), odir,
                                                                        self.size, flags)
                    else:
                        self.out_fd = os.open(self.tmp, flags, 0o644)
                except OSError as e:
                    self.cleanup()
                    raise write_error(self.objects_dir, e) from None
            return then()

        return unit

    def _hash(self) -> list[Unit]:
        self.digest = content_sha256(self.path, self.size)
        assert self.key is not None
        self.file_id = self.key.file_id(self.digest)
        self.cipher = self.key.file_cipher(self.file_id)
        return self._segment_units()

    def _segment_units(self) -> list[Unit]:
        return [lambda k=k: self._segment(k) for k in range(self.nseg)]

    def _segment(self, k: int) -> list[Unit]:
        if self.failed:
            return []
        first = k * SEGMENT
        end = min(first + SEGMENT, self.size)
        sb = BLOCK_SIZE + (TAG_SIZE if self.cipher else 0)
        out_off = (first // BLOCK_SIZE) * sb
        buf = buffer()
        parts = []
        pos = first
        try:
            while pos < end:
                want = min(CHUNK, end - pos)
                if read_at(self.src_fd, buf[:want], pos, self.path) != want:
                    raise changed(self.path)
                mv = buf[:want]
                if self.cipher is None:
                    stored = [mv]
                    parts.append(leaves_of(mv, BLOCK_SIZE))
                else:
                    stored, lv = seal_parts(self.cipher, mv, pos // BLOCK_SIZE, self.size)
                    parts.append(lv)
                if self.direct and len(stored) != 1:  # sealed in Python: unaligned from here on
                    directio.buffered(self.out_fd)  # (other segments then write buffered too)
                    self.direct = False
                if self.direct and len(stored[0]) % directio.ALIGN:  # the file's last chunk
                    one = memoryview(stored[0])
                    whole = directio.split(len(one))
                    self.tail = bytes(one[whole:])
                    stored = [one[:whole]] if whole else []
                if self.out_fd >= 0 and stored:
                    try:
                        write_all(self.out_fd, stored, out_off)
                    except OSError as e:
                        raise write_error(self.objects_dir, e) from None
                out_off += want + (sb - BLOCK_SIZE) * block_count(want)
                pos += want
                self.tick(want)
        except BaseException:
            self.failed = True
            raise
        self.leaves[k] = b"".join(parts)
        with self.lock:
            self.remaining -= 1
            last = self.remaining == 0
        if last:
            self._finish()
        return []

    def _finish(self) -> None:
        try:
            if os.fstat(self.src_fd).st_size != self.size:
                raise changed(self.path)
            leaves = b"".join(self.leaves)  # type: ignore[arg-type]
            assert len(leaves) == block_count(self.size) * LEAF_SIZE
            root = root_of(leaves)
            written = False
            if self.out_fd >= 0 and self.tmp is not None and self.objects_dir is not None:
                sb = BLOCK_SIZE + (TAG_SIZE if self.cipher else 0)
                final = self.objects_dir / root.hex()
                try:
                    if self.direct:
                        directio.buffered(self.out_fd)
                    end = self.size + block_count(self.size) * (sb - BLOCK_SIZE)
                    write_all(self.out_fd, [self.tail, leaves], end - len(self.tail))
                    os.fchmod(self.out_fd, 0o644)
                    fd, self.out_fd = self.out_fd, -1
                    os.close(fd)
                    try:
                        want = os.stat(final).st_size
                        written = want != os.stat(self.tmp).st_size
                    except FileNotFoundError:
                        written = True
                        self.created.append(final)
                    os.replace(self.tmp, final)
                    self.tmp = None
                except OSError as e:
                    raise write_error(self.objects_dir, e) from None
            digest = self.digest if self.key is not None else root
            self.done((digest, root, self.file_id, written))
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        for fd in (self.src_fd, self.out_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.src_fd = self.out_fd = -1
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                self.tmp.unlink()
            self.tmp = None
