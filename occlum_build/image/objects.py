"""Writing and reading content objects (docs/formats/image.md section 4).

Cost model (docs/benchmarks.md, "Image builds"): the format hashes each 4 KiB block on its
own (natively when libocclum-build.so is there: native.py); everything else here is kept
to a fixed handful of syscalls per file and no per-chunk allocation: each thread reads into
one reused, page-aligned buffer with ``preadv``; the blocks of an integrity-only object of
1 MiB or more go from that buffer to the device with O_DIRECT (directio.py), a smaller
file is written with a single ``writev`` (blocks and leaves); paths are plain strings.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from ..errors import OcclumError, OutputError
from . import directio, native
from .crypto import ImageKey, leaves_of, root_of, seal_parts
from .format import BLOCK_SIZE, object_size

CHUNK = 256 * BLOCK_SIZE  # 1 MiB read/hash/encrypt unit
TMP_PREFIX = ".tmp-"
_counter = itertools.count()
_local = threading.local()
_tmp_lock = threading.Lock()
_tmp_dirs: set[str] = set()


class SourceChanged(OcclumError):
    """A source file changed while it was being read."""


def _read_error(path: Path | str, e: OSError) -> OcclumError:
    return OcclumError(f"cannot read source file: {e.strerror or e}", where=str(path))


def changed(path: Path | str) -> SourceChanged:
    return SourceChanged("file changed while it was being read; run the build again", where=str(path))


def write_error(objects_dir: Path | str | None, e: OSError) -> OutputError:
    if e.errno == errno.ENOSPC:
        return OutputError("no space left on device; previous image kept", where=str(objects_dir))
    return OutputError(f"cannot write image object: {e.strerror or e}", where=str(objects_dir))


def temp_path(odir: str) -> str:
    """A new temp name for an object, in this thread's own temp directory under the objects
    directory: creating a file locks its directory, and on ext4 finding a free inode can be
    slow (it skips recently deleted ones), so threads sharing one directory wait for each
    other (spinning, in the kernel). Each build removes its temp directories
    (:func:`remove_temp_dirs`); the next build removes those of a killed one."""
    d = f"{odir}/{TMP_PREFIX}{os.getpid()}-{threading.get_ident()}"
    with _tmp_lock:
        if d not in _tmp_dirs:
            os.makedirs(d, exist_ok=True)
            _tmp_dirs.add(d)
    return f"{d}/{next(_counter)}"


def remove_temp_dirs(odir: Path | str) -> None:
    """Remove this process's temp directories under ``odir`` (empty unless a build failed)."""
    prefix = f"{os.fspath(odir)}/"
    with _tmp_lock:
        mine = [d for d in _tmp_dirs if d.startswith(prefix)]
        _tmp_dirs.difference_update(mine)
    for d in mine:
        shutil.rmtree(d, ignore_errors=True)


def buffer() -> memoryview:
    """This thread's read buffer (CHUNK + 1 bytes: one more than a chunk shows a file that
    grew). Reused, so reading costs no allocation and no page faults after the first."""
    buf = getattr(_local, "buf", None)
    if buf is None:  # page-aligned: its blocks can be written with O_DIRECT (directio.py)
        buf = _local.buf = directio.aligned_buffer(CHUNK + directio.ALIGN)[: CHUNK + 1]
    return buf


def read_at(fd: int, mv: memoryview, offset: int, path: Path | str) -> int:
    """Fill ``mv`` from ``offset`` (less only at end of file): block boundaries must not
    depend on how the kernel splits reads."""
    got = 0
    while got < len(mv):
        try:
            n = os.preadv(fd, [mv[got:]], offset + got)
        except OSError as e:
            raise _read_error(path, e) from None
        if not n:
            break
        got += n
    return got


def write_all(fd: int, parts: list, offset: int | None = None) -> None:
    """Write ``parts`` (bytes-like) in order, with ``writev``/``pwritev``, at ``offset`` or
    at the file position."""
    total = sum(len(p) for p in parts)
    try:
        n = os.writev(fd, parts) if offset is None else os.pwritev(fd, parts, offset)
    except OSError as e:
        if e.errno != errno.EINVAL or not directio.is_direct(fd):
            raise
        directio.buffered(fd)  # a device wanting a larger alignment than ALIGN: plainly
        n = os.writev(fd, parts) if offset is None else os.pwritev(fd, parts, offset)
    if n == total:
        return
    directio.buffered(fd)  # a short write (rare): finish it plainly, unaligned
    rest = memoryview(b"".join(parts))[n:]
    while rest:
        k = os.write(fd, rest) if offset is None else os.pwrite(fd, rest, offset + n)
        rest = rest[k:]
        n += k


def open_source(path: Path | str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise _read_error(path, e) from None


def content_sha256(path: Path | str, size: int, tick: Callable[[int], None] | None = None) -> bytes:
    """SHA-256 of a file's content, checking that it still has ``size`` bytes."""
    h = hashlib.sha256()
    buf = buffer()
    fd = open_source(path)
    try:
        off = 0
        while True:
            got = read_at(fd, buf, off, path)
            if not got:
                break
            h.update(buf[:got])
            off += got
            if tick:
                tick(got)
    finally:
        os.close(fd)
    if off != size:
        raise changed(path)
    return h.digest()


def read_small(path: Path | str, size: int) -> memoryview:
    """The whole content of a file of at most CHUNK bytes, in this thread's buffer (valid
    until the thread reads again), checking its size."""
    buf = buffer()
    fd = open_source(path)
    try:
        got = read_at(fd, buf[: size + 1], 0, path)
    finally:
        os.close(fd)
    if got != size:
        raise changed(path)
    return buf[:size]


def store_object(
    path: Path,
    size: int,
    objects_dir: Path | None,
    key: ImageKey | None,
    file_id: bytes | None,
    tick: Callable[[int], None] | None = None,
    created: list[Path] | None = None,
    data: bytes | memoryview | None = None,
    direct: bool = False,
) -> tuple[bytes, bool]:
    """Read ``path`` once (or take its content ``data`` already read) and build its object,
    written under ``objects_dir`` if given (``direct``: with O_DIRECT where it applies).
    Returns (root, new): ``new`` is False when an object of the right size was already there
    (it is replaced all the same, which heals a torn one). Objects that did not exist at all
    are appended to ``created`` (so a failed build can remove them)."""
    cipher = key.file_cipher(file_id) if key is not None and file_id is not None else None
    odir = os.fspath(objects_dir) if objects_dir is not None else None
    tmp: str | None = None
    src = out = -1
    odirect = False  # out has O_DIRECT
    leaves: list[bytes] = []
    try:
        if odir is not None:
            tmp = temp_path(odir)
        if data is None:
            src = open_source(path)
        if tmp is not None and odir is not None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            # Aligned output: integrity-only blocks from the aligned buffer(), or blocks sealed
            # natively into its aligned buffer (256 stored blocks of 4112 bytes are 257 pages).
            if direct and ((cipher is None and data is None) or (cipher is not None and native.sealer())):
                out, odirect = directio.open_object(tmp, odir, size, flags)
            else:
                out = os.open(tmp, flags, 0o644)
        buf = buffer()
        pending: list = []  # written with the leaves: a one-chunk file, or the last block's tail
        off = 0
        while off < size:
            want = min(CHUNK, size - off)
            if data is None:
                # The last chunk asks for one byte more: getting it means the file grew.
                last = off + want == size
                got = read_at(src, buf[: want + last], off, path)
                if got != want:
                    raise changed(path)
                mv = buf[:want]
            else:
                mv = memoryview(data)[off : off + want]
            if cipher is None:
                leaves.append(leaves_of(mv, BLOCK_SIZE))
                parts = [mv]
            else:
                parts, lv = seal_parts(cipher, mv, off // BLOCK_SIZE, size)
                leaves.append(lv)
            off += want
            if odirect and len(parts) != 1:  # sealed in Python (a short last chunk): unaligned
                directio.buffered(out)
                odirect = False
            if out >= 0:
                if odirect:  # whole pages straight from the buffer; a tail comes last
                    one = memoryview(parts[0])
                    whole = directio.split(len(one))
                    if whole:
                        write_all(out, [one[:whole]])
                    if whole < len(one):
                        pending = [one[whole:]]
                elif want == size:
                    pending = parts  # one chunk: one writev below, with the leaves
                else:
                    write_all(out, parts)
            if tick:
                tick(want)
        all_leaves = b"".join(leaves)
        root = root_of(all_leaves)
        if out < 0 or odir is None or tmp is None:
            return root, False
        final = f"{odir}/{root.hex()}"
        try:
            existed = os.stat(final).st_size == object_size(size, cipher is not None)
        except FileNotFoundError:
            existed = False
            if created is not None:
                created.append(Path(final))
        # Always replace: a fresh object heals one torn by a power failure (objects are not
        # fsynced one by one; see cache.py on boot ids).
        if odirect:
            directio.buffered(out)
        write_all(out, [*pending, all_leaves])
        os.fchmod(out, 0o644)
        fd, out = out, -1  # never closed twice: a failing close still releases the number
        os.close(fd)
        os.replace(tmp, final)
        tmp = None
        return root, not existed
    except OSError as e:
        raise write_error(odir, e) from None
    finally:
        for fd in (src, out):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
