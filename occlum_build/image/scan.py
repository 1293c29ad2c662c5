"""Walking a source tree into normalized entries (docs/formats/image.md section 2)."""

from __future__ import annotations

import os
import stat
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import OcclumError
from . import native
from .format import (
    FILE_ID_SIZE,
    MAX_ENTRIES,
    MAX_FILE_SIZE,
    MAX_NAME,
    MAX_PATH,
    MAX_TARGET,
    ROOT_SIZE,
    SYMLINK_MODE,
    TYPE_DIR,
    TYPE_FILE,
    TYPE_SYMLINK,
    path_problem,
)


class SourceError(OcclumError):
    """The source tree cannot be turned into an image."""


@dataclass(slots=True)
class Node:
    path: bytes  # relative, "/"-joined
    type: int
    mode: int
    size: int
    target: bytes
    # Set by the writer for files with content; with the fields above, what the metadata
    # encoder reads of an entry (the attributes of format.Entry).
    root: bytes = bytes(ROOT_SIZE)
    file_id: bytes = bytes(FILE_ID_SIZE)


_SPECIAL = {
    stat.S_IFSOCK: "a socket",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


_S_IFMT = 0o170000
_S_IFDIR = stat.S_IFDIR
_FS_ENCODING = sys.getfilesystemencoding()


# The entry key: what must be unchanged for an entry's metadata and content to be taken
# from the previous build. Files and symlinks: (dev, ino, size, mtime_ns, ctime_ns, mode) of
# their lstat; directories: the mode alone (their times and size change with their entries).
KEY = struct.Struct("<QQQqqQ")
assert KEY.size == native.WALK_KEY_SIZE


def entry_key(st: os.stat_result) -> bytes:
    m = st.st_mode
    if m & _S_IFMT == stat.S_IFDIR:
        return KEY.pack(0, 0, 0, 0, 0, m)
    return KEY.pack(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, m)


@dataclass(slots=True)
class Walk:
    """Every entry of a tree, the root (path ``b""``) first and the rest sorted by path
    bytes (memcmp order), as the metadata lists them: ``paths[i]`` and ``keys[i]``, its
    entry key (which holds all node_of() needs of the ``lstat``)."""

    paths: list[bytes]
    keys: list[bytes]


def walk(src: Path) -> Walk:
    """List and ``lstat`` the tree under ``src`` (the hot loop of every rebuild).

    Whether an entry can be stored is decided by node_of(), which the writer calls for
    new and changed entries only: an unchanged one passed it in the build that recorded
    it. Only directories are checked here (path length, before descending)."""
    try:
        st = os.stat(src)
    except OSError as e:
        raise SourceError(f"cannot read the source directory: {e.strerror}", where=str(src)) from None
    if not stat.S_ISDIR(st.st_mode):
        raise SourceError("the image source is not a directory", where=str(src))
    base = os.fsencode(src)
    fast = native.walker()
    if fast is not None:  # the same walk in C (native.py); None on any error: walk again here
        got = fast(base, MAX_ENTRIES, MAX_PATH)
        if got is not None:
            paths, kb = got
            n = KEY.size
            return Walk([b"", *paths], [entry_key(st), *[kb[i : i + n] for i in range(0, len(kb), n)]])
    items: list[tuple[bytes, bytes]] = []
    stack = [b""]
    while stack:
        rel = stack.pop()
        full = os.path.join(base, rel) if rel else base
        # Entries are stat-ed relative to the directory's descriptor (fstatat): the kernel
        # does not walk the whole path again for each of them.
        try:
            fd = os.open(full, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                with os.scandir(fd) as it:
                    listed = list(it)
            except BaseException:
                os.close(fd)
                raise
        except OSError as e:
            raise SourceError(
                f"cannot list directory: {e.strerror}; fix its permissions", where=os.fsdecode(full)
            ) from None
        try:
            _walk_dir(full, rel, listed, items, stack)
        finally:
            os.close(fd)
        if len(items) >= MAX_ENTRIES:
            raise SourceError(f"more than {MAX_ENTRIES} entries", where=str(src))
    items.sort()  # by path: paths are unique, so the other fields are never compared
    items.insert(0, (b"", entry_key(st)))
    paths, keys = zip(*items, strict=True)
    return Walk(list(paths), list(keys))


def _walk_dir(
    full: bytes,
    rel: bytes,
    listed: list[os.DirEntry[str]],
    items: list[tuple[bytes, bytes]],
    stack: list[bytes],
) -> None:
    prefix = rel + b"/" if rel else b""
    pack = KEY.pack
    for de in listed:
        # A descriptor's scandir gives str names: this is os.fsencode (UTF-8 file system
        # encoding, surrogateescape) without its per-call checks.
        child = prefix + de.name.encode(_FS_ENCODING, "surrogateescape")
        try:
            st = de.stat(follow_symlinks=False)
        except OSError as e:
            raise SourceError(
                f"cannot stat: {e.strerror}", where=os.fsdecode(os.path.join(full, child[len(prefix) :]))
            ) from None
        m = st.st_mode
        if m & _S_IFMT == _S_IFDIR:
            if len(child) > MAX_PATH:  # checked before descending: the walk may not get far
                _check_path(child, os.path.join(full, child[len(prefix) :]))
            stack.append(child)
            items.append((child, pack(0, 0, 0, 0, 0, m)))
        else:  # entry_key(), inline (hot loop)
            items.append(
                (child, pack(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, m))
            )


def node_of(src: Path, path: bytes, key: bytes) -> Node:
    """The metadata node of a walked entry (``key``: its entry key); SourceError if it
    cannot be stored."""
    where = os.path.join(os.fsencode(src), path) if path else os.fsencode(src)
    _, _, size, _, _, m = KEY.unpack(key)
    fmt = m & _S_IFMT
    if fmt == stat.S_IFDIR:
        if path:
            _check_path(path, where)
        return Node(path, TYPE_DIR, m & 0o777, 0, b"")
    _check_path(path, where)
    if fmt == stat.S_IFREG:
        if size > MAX_FILE_SIZE:
            raise SourceError(
                "file is larger than the image format allows (2^48 bytes)", where=os.fsdecode(where)
            )
        return Node(path, TYPE_FILE, m & 0o777, size, b"")
    if fmt == stat.S_IFLNK:
        try:
            target = os.readlink(where)
        except OSError as e:
            raise SourceError(f"cannot read symlink: {e.strerror}", where=os.fsdecode(where)) from None
        if not 1 <= len(target) <= MAX_TARGET or b"\0" in target:
            raise SourceError(f"symlink target longer than {MAX_TARGET} bytes", where=os.fsdecode(where))
        return Node(path, TYPE_SYMLINK, SYMLINK_MODE, len(target), target)
    what = _SPECIAL.get(fmt, "a special file")
    raise SourceError(
        f"{what} cannot be stored in an image; remove it from the source tree", where=os.fsdecode(where)
    )


def key_times(key: bytes) -> tuple[int, int]:
    """(mtime_ns, ctime_ns) of an entry key (zero for a directory)."""
    return KEY.unpack(key)[3:5]


def _check_path(path: bytes, where: bytes) -> None:
    name = path[path.rfind(b"/") + 1 :]
    # A readdir name is never empty, ".", ".." and holds no "/" or NUL.
    if len(path) > MAX_PATH or len(name) > MAX_NAME:
        why = path_problem(path) or "bad file name"
        raise SourceError(f"{why}: cannot be stored in an image", where=os.fsdecode(where))


def scan(src: Path) -> list[Node]:
    """All entries of the tree under ``src`` as metadata nodes, in metadata order."""
    w = walk(src)
    return [node_of(src, path, key) for path, key in zip(w.paths, w.keys, strict=True)]
