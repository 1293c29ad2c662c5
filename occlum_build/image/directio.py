"""Writing the data blocks of large integrity-only objects with O_DIRECT.

Why: a full build writes as many bytes as it reads. Through the page cache every written
byte is copied into a freshly allocated cache page, which on a VM (pages handed back to the
host and faulted in again) cost 0.3-2.6 s of CPU per GiB from one run to the next, more
than hashing the same bytes (docs/benchmarks.md, "Reading the figures"). With O_DIRECT the
device reads the blocks straight from the thread's read buffer: almost no CPU, and the
thread waits for the device with the GIL released while the others hash. Nobody reads a
fresh object back soon (the runtime reads it inside the enclave, after a build finishes),
so nothing is lost by keeping it out of the cache.

Only what O_DIRECT can take goes that way: whole 4 KiB blocks at 4 KiB offsets from a
page-aligned buffer. The tail of the last block and the leaves are written through the page
cache after :func:`buffered` clears the flag. Builds that read less than MIN_BUILD bytes
in all (a rebuild after an edit) do not use it: they wait on latency, not on copying. A
file system that refuses O_DIRECT (EINVAL on open) gets buffered writes, and is remembered
per directory. Output bytes are the same either way.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading

ALIGN = 4096  # offset, length and buffer address of every direct write
MIN_SIZE = 1 << 20  # smaller objects: buffered (a direct write waits for the device)
# A build reading less than this in all writes through the page cache: a rebuild after an
# edit is bound by latency (each direct write waits for the device), not by copying.
MIN_BUILD = 64 << 20
_FLAG = getattr(os, "O_DIRECT", 0)
_refused: set[str] = set()
_lock = threading.Lock()


def aligned_buffer(size: int) -> memoryview:
    """A zeroed, page-aligned, writable buffer of ``size`` bytes (anonymous mmap)."""
    return memoryview(mmap.mmap(-1, size))


def open_object(path: str, odir: str, size: int, flags: int) -> tuple[int, bool]:
    """Open the temp object ``path`` in ``odir`` with ``flags``; O_DIRECT added for an
    object of at least MIN_SIZE bytes where the file system takes it.
    Returns (fd, direct)."""
    if _FLAG and size >= MIN_SIZE and odir not in _refused:
        try:
            return os.open(path, flags | _FLAG, 0o644), True
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            with _lock:
                _refused.add(odir)
    return os.open(path, flags, 0o644), False


def split(n: int) -> int:
    """The part of ``n`` bytes a direct write can take (whole blocks)."""
    return n - n % ALIGN


def is_direct(fd: int) -> bool:
    return bool(_FLAG and fcntl.fcntl(fd, fcntl.F_GETFL) & _FLAG)


def buffered(fd: int) -> None:
    """Clear O_DIRECT on ``fd``: what follows (a block tail, the leaves) is unaligned."""
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    if fl & _FLAG:
        fcntl.fcntl(fd, fcntl.F_SETFL, fl & ~_FLAG)
