"""Protecting a build's regular files into SEFS inode files, on every CPU when it pays.

Each file is independent (a Protected FS file whose only input besides its content is its
clean name, the inode id), so a large build hands files to worker processes: the encrypted
mode (a per-node key derivation and AES-GCM) is CPU-bound, and the GIL would keep threads on
one core.  Small builds stay in this process (a worker pool costs ~20 ms to start).  The
output bytes do not depend on the number of workers or the order in which they finish.

Errors come back as values and are raised again here with their message and location, so a
source error in a worker reads exactly as one in this process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass

from ..errors import OcclumError, OutputError
from . import pfs
from .sefs import SefsSourceError

# Below this many bytes to protect, or with one CPU, files are protected in this process.
POOL_MIN_BYTES = 64 << 20
MAX_WORKERS = 8


@dataclass(frozen=True)
class Job:
    rel: bytes  # path in the source tree
    size: int  # as planned: a file of another size changed while the image was built
    clean_name: bytes  # the inode file's name (the PFS clean name)
    dest: str | None  # None: compute the MAC only


def protect_file(src: str, job: Job, key: bytes | None) -> bytes:
    """Protect one file; return its MAC."""
    full = os.path.join(src, os.fsdecode(job.rel))
    try:
        fd_in = os.open(full, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        raise SefsSourceError(f"cannot read: {e.strerror}", where=full) from None
    try:
        if os.fstat(fd_in).st_size != job.size:
            raise SefsSourceError("changed while the image was built; build again", where=full)
        target = os.devnull if job.dest is None else job.dest
        flags = os.O_WRONLY | os.O_CLOEXEC | (0 if job.dest is None else os.O_CREAT | os.O_TRUNC)
        try:
            fd_out = os.open(target, flags, 0o644)
        except OSError as e:
            raise OutputError(f"cannot write: {e.strerror}", where=target) from None
        try:
            if job.dest is not None:
                os.fchmod(fd_out, 0o644)  # whatever the umask
            body = pfs.write_body(fd_out, fd_in, job.size, key, where=full)
            node0, mac = pfs.meta_node(job.clean_name, body, key)
            if job.dest is not None:
                os.pwrite(fd_out, node0, 0)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
    return mac


_Result = tuple[bytes | None, tuple[str, str, str | None, int] | None]


def _die_with_parent(parent: int) -> None:
    """Worker initializer: a killed build must not leave workers behind (they would go on
    writing temp files, and hold what the build held: its locks are inherited descriptors)."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the build died before prctl took effect
        os._exit(1)


def _worker(src: str, key: bytes | None, jobs: Sequence[Job]) -> list[_Result]:
    out: list[_Result] = []
    for job in jobs:
        try:
            out.append((protect_file(src, job, key), None))
        except OcclumError as e:
            out.append((None, (type(e).__name__, e.message, e.where, e.exit_code)))
            break
        except OSError as e:  # a write failure (a full disk, say): the build maps it
            out.append((None, ("OSError", e.strerror or str(e), e.filename, e.errno or 0)))
            break
    return out


def _raise(err: tuple[str, str, str | None, int]) -> None:
    kind, message, where, code = err
    if kind == "OSError":
        raise OSError(code, message, where)
    cls = {"SefsSourceError": SefsSourceError, "OutputError": OutputError}.get(kind, OcclumError)
    raise cls(message, where=where, exit_code=code)


def workers_for(total_bytes: int) -> int:
    cpus = len(os.sched_getaffinity(0))
    if cpus < 2 or total_bytes < POOL_MIN_BYTES:
        return 1
    return min(cpus, MAX_WORKERS)


def protect_all(src: str, jobs: Sequence[Job], key: bytes | None,
                progress: Callable[[int], None] | None = None) -> list[bytes]:
    """The MAC of each job, in the order given; ``progress`` gets the bytes of each finished
    batch.  The first error stops the build (files already written are the caller's temps)."""
    n = workers_for(sum(j.size for j in jobs))
    if n == 1:
        macs = []
        for j in jobs:
            macs.append(protect_file(src, j, key))
            if progress is not None:
                progress(j.size)
        return macs
    # Batches of about 16 MiB, largest files first, so the workers finish together.
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].size)
    batches: list[list[int]] = []
    cur: list[int] = []
    cur_bytes = 0
    for i in order:
        cur.append(i)
        cur_bytes += jobs[i].size
        if cur_bytes >= 16 << 20:
            batches.append(cur)
            cur, cur_bytes = [], 0
    if cur:
        batches.append(cur)
    macs: list[bytes | None] = [None] * len(jobs)
    ctx = multiprocessing.get_context("fork")  # no re-import; the build is single-threaded
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        futs: dict[Future[list[_Result]], list[int]] = {
            pool.submit(_worker, src, key, [jobs[i] for i in b]): b for b in batches}
        pending = set(futs)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for f in done:
                results = f.result()
                for i, (mac, err) in zip(futs[f], results, strict=False):
                    if err is not None:
                        for p in pending:
                            p.cancel()
                        _raise(err)
                    macs[i] = mac
                if progress is not None:
                    progress(sum(jobs[i].size for i in futs[f]))
    assert all(m is not None for m in macs)
    return [m for m in macs if m is not None]
