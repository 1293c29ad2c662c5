"""Atomic output writing: temp file in the same directory, fsync, rename.

A failed or killed build must leave the previous output intact and never a half-written
file; every stage writes through these helpers.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from .errors import OutputError

# The stat key: what every cache keyed by stat compares (pipeline/checker.py's hash cache,
# pipeline/treestamp.py, the image manifest of image/sefs_build.py, bom/stamp.py,
# bom/elfcache.py).  Any write, chmod, chown, rename over or touch changes the ctime, which
# no user can set back, so an edit whose mtime was reset still changes the key; dev and ino
# tell a replaced or copied file from the original.
StatKey = tuple[int, int, int, int, int, int]  # (dev, ino, size, mtime_ns, ctime_ns, mode)
STAT_KEY = struct.Struct("<QQqqqI")  # its packed form (44 bytes)

# A file changed less than this before a stat may change again within the same timestamp
# tick without its stat changing: caches keyed by stat do not trust such entries (as git's
# "racily clean" rule); the cost of a racy entry is one more read of it on the next run.
# Linux file systems with nanosecond times step them by the kernel's coarse clock tick
# (1-10 ms): RACY_NS.  Where times are whole seconds (FAT's 2 s, some network file systems;
# seen as a ctime with no sub-second part, which no user can set), RACY_COARSE_NS.
RACY_NS = 100_000_000
RACY_COARSE_NS = 2_000_000_000


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


def is_racy(key: StatKey | os.stat_result | Sequence[int], now_ns: int) -> bool:
    """Changed within the racy window before ``now_ns`` (time.time_ns()): not to be trusted
    later.  The window is RACY_NS, or RACY_COARSE_NS when the ctime is whole seconds."""
    if isinstance(key, os.stat_result):
        mtime, ctime = key.st_mtime_ns, key.st_ctime_ns
    else:
        mtime, ctime = key[3], key[4]
    window = RACY_COARSE_NS if ctime % 1_000_000_000 == 0 else RACY_NS
    return now_ns - max(mtime, ctime) < window


def _fsync_dir(d: str) -> None:
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: int = 0o644, *,
                durable: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only if the block completes.

    ``durable=False`` leaves out the two fsyncs (file, directory): the replacement is still
    atomic for readers and against a killed process, but after a power loss or OS crash the
    file may hold its previous content or be empty.  Only for bookkeeping that is checked
    against the outputs before it is trusted (build/.state stage records, the hash cache).

    (os.path, not pathlib: this module is on the path of every command, occlum-sgx-sign's
    included, which imports nothing else of pathlib.)"""
    p = os.fspath(path)
    p = p.rstrip("/") or p
    parent, name = os.path.split(p)
    parent = parent or "."
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{name}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
        if durable:
            _fsync_dir(parent)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if e.errno == errno.ENOSPC:
            raise OutputError("no space left on device; previous output kept", where=p) from None
        raise OutputError(f"cannot write: {e.strerror or e}", where=p) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o644, *,
                 durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (text is encoded as UTF-8); ``durable``: see
    :func:`atomic_open`."""
    if isinstance(data, str):
        data = data.encode()
    with atomic_open(path, mode, durable=durable) as f:
        f.write(data)


def makedirs(path: str | os.PathLike[str], mode: int = 0o755) -> None:
    """``mkdir -p`` whose new directories get exactly ``mode``, whatever the umask (an
    existing directory is left as it is)."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        return
    if not p.parent.is_dir():
        makedirs(p.parent, mode)
    try:
        os.mkdir(p, mode)
    except FileExistsError:
        if not p.is_dir():
            raise
        return
    os.chmod(p, mode)


def boot_id() -> str:
    """The kernel's boot id: caches of files written without fsync record it, and a cache
    from another boot (perhaps after a power failure) is not trusted."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"
