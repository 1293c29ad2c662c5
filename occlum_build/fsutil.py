"""Atomic output writing: temp file in the same directory, fsync, rename; and the removal
of the temp files a killed writer left behind.

A failed or killed build must leave the previous output intact and never a half-written
file; every stage writes through these helpers.  A temp name is ``.<name>.<tag><pid>`` beside
its target, ``<tag>`` being ``tmp`` (atomic_open) or ``copy_bom`` (copy_bom's copies): this
module is the one place for that pattern (docs/build.md, "State, lock, failures").
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import struct
import time
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from .errors import OutputError
from .pathlimit import NAME_MAX

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
    makedirs(parent, 0o755)  # a missing parent gets 0755, not what the umask makes of 0777
    tmp = os.path.join(parent, temp_name(name))
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


def write_file(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Create or truncate ``path`` with exactly ``mode`` (whatever the umask) and write
    ``data``; not atomic (for temporary names that are renamed into place, or files whose
    set is committed by a marker)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def makedirs(path: str | os.PathLike[str], mode: int = 0o755, *,
             parent_mode: int | None = None) -> None:
    """``mkdir -p`` whose new directories get exactly ``mode`` (new parents: ``parent_mode``,
    default ``mode``), whatever the umask (an existing directory is left as it is)."""
    p = os.fspath(path)  # (os.path, not pathlib: see atomic_open)
    if os.path.isdir(p):
        return
    parent = os.path.dirname(p.rstrip("/"))
    if parent and not os.path.isdir(parent):
        makedirs(parent, mode if parent_mode is None else parent_mode)
    try:
        os.mkdir(p, mode)
    except FileExistsError:
        if not os.path.isdir(p):
            raise
        return
    os.chmod(p, mode)


def own_dir(path: str | os.PathLike[str], mode: int, *, parent_mode: int = 0o755) -> None:
    """A directory occlum-build owns (in build/ or run/): created as :func:`makedirs` does,
    and given exactly ``mode`` if it exists with another one (an older build's umask)."""
    makedirs(path, mode, parent_mode=parent_mode)
    if os.stat(path).st_mode & 0o7777 != mode:
        os.chmod(path, mode)


def boot_id() -> str:
    """The kernel's boot id: caches of files written without fsync record it, and a cache
    from another boot (perhaps after a power failure) is not trusted."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


# ---------------------------------------------------------------- temp names and their clean-up
TMP_TAG = "tmp"  # atomic_open
COPY_BOM_TAG = "copy_bom"  # copy_bom's per-file copies (bom/fscopy.py)
_TEMP_RE = re.compile(r"\.(?P<name>.+)\.(?P<tag>tmp|copy_bom)(?P<pid>[1-9][0-9]*)")


def temp_name(name: str, tag: str = TMP_TAG) -> str:
    """The temp name this process writes ``name`` under, in the same directory.  A name too
    long to take the suffix within Linux's 255-byte limit is replaced by a digest of it."""
    out = f".{name}.{tag}{os.getpid()}"
    if len(os.fsencode(out)) > NAME_MAX:
        digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:32]
        out = f".{digest}.{tag}{os.getpid()}"
    return out


def parse_temp_name(name: str) -> tuple[str, str, int] | None:
    """(target name, tag, pid) if ``name`` is one of our temp names, else None."""
    m = _TEMP_RE.fullmatch(name)
    return (m["name"], m["tag"], int(m["pid"])) if m else None


def _started(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None if there is no live
    process with that id (a zombie is dead: it writes nothing)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return 0.0  # exists but unreadable: assume it is old and alive
    fields = raw[raw.rfind(b")") + 2:].split()  # after "pid (comm)"; comm may hold spaces
    if not fields or fields[0] in (b"Z", b"X"):
        return None
    # field 22, starttime: clock ticks after boot (CLOCK_BOOTTIME)
    since_start = time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return time.time() - since_start


# A process start time is known to a clock tick (10 ms), and the clocks are read one after the
# other: a file is only taken as older than its pid's process when it is older by more than this.
_START_SLACK = 1.0


def is_stale_temp(path: str | os.PathLike[str], pid: int) -> bool:
    """True if the temp file ``path`` written by ``pid`` belongs to no running writer: no live
    process has that id, or the one that has it started after the file was last changed (the
    id was reused, by this process too).  A live writer's temp is never stale.  The file's
    ctime is compared, not its mtime: copy_bom gives its temp the source's mtime before the
    rename, and a ctime cannot be set back."""
    try:
        changed = os.lstat(path).st_ctime
    except OSError:
        return False
    started = _started(pid)
    return started is None or changed < started - _START_SLACK


def stale_temps(directory: str | os.PathLike[str], *, tag: str = TMP_TAG,
                target: str | None = None) -> list[str]:
    """The temp files of killed writers in ``directory`` (not recursive): names of our
    pattern with ``tag`` (and, if given, for ``target`` only) whose writer is gone
    (:func:`is_stale_temp`), sorted."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    out = []
    for n in names:
        parsed = parse_temp_name(n)
        if parsed is None or parsed[1] != tag or (target is not None and parsed[0] != target):
            continue
        p = os.path.join(directory, n)
        if is_stale_temp(p, parsed[2]):
            out.append(p)
    return sorted(out)


def remove_stale_temps(directory: str | os.PathLike[str], *, tag: str = TMP_TAG,
                       target: str | None = None) -> list[str]:
    """Remove :func:`stale_temps` (files and symlinks only); returns the paths removed."""
    removed = []
    for p in stale_temps(directory, tag=tag, target=target):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            os.unlink(p)
            removed.append(p)
    return removed


def special_kind(mode: int) -> str:
    """'a FIFO', 'a socket' or 'a device node': how every message names a special file that
    is left out of an image (the image stage) or of a copy into one (copy_bom)."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device node"
