"""Walking a source tree into normalized entries (docs/formats/image.md section 2)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

from ..errors import OcclumError
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
    st: os.stat_result | None  # lstat of regular files (stat key), else None
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


def scan(src: Path) -> list[Node]:
    """All entries of the tree under ``src``, sorted by path bytes (memcmp order)."""
    try:
        st = os.stat(src)
    except OSError as e:
        raise SourceError(f"cannot read the source directory: {e.strerror}", where=str(src)) from None
    if not stat.S_ISDIR(st.st_mode):
        raise SourceError("the image source is not a directory", where=str(src))
    nodes = [Node(b"", TYPE_DIR, stat.S_IMODE(st.st_mode) & 0o777, 0, b"", None)]
    base = os.fsencode(src)
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
                    items = list(it)
            except BaseException:
                os.close(fd)
                raise
        except OSError as e:
            raise SourceError(
                f"cannot list directory: {e.strerror}; fix its permissions", where=os.fsdecode(full)
            ) from None
        try:
            _scan_entries(full, fd, rel, items, nodes, stack)
        finally:
            os.close(fd)
        if len(nodes) > MAX_ENTRIES:
            raise SourceError(f"more than {MAX_ENTRIES} entries", where=str(src))
    nodes.sort(key=attrgetter("path"))
    return nodes


def _scan_entries(
    full: bytes, fd: int, rel: bytes, items: list[os.DirEntry[str]], nodes: list[Node], stack: list[bytes]
) -> None:
    """Append the nodes of one directory's entries (``items``, listed from ``fd``) and push
    its subdirectories on ``stack``."""
    fsencode = os.fsencode
    for de in items:
        name = fsencode(de.name)  # a descriptor's scandir gives str names
        child = rel + b"/" + name if rel else name
        # The parent was checked; a readdir name is never empty, ".", ".." or holds "/".
        if len(child) > MAX_PATH or len(name) > MAX_NAME or b"\0" in name:
            why = path_problem(child) or "bad file name"
            raise SourceError(
                f"{why}: cannot be stored in an image", where=os.fsdecode(os.path.join(full, name))
            )
        try:
            cst = de.stat(follow_symlinks=False)
        except OSError as e:
            raise SourceError(
                f"cannot stat: {e.strerror}", where=os.fsdecode(os.path.join(full, name))
            ) from None
        m = cst.st_mode
        fmt = m & _S_IFMT
        if fmt == stat.S_IFREG:
            if cst.st_size > MAX_FILE_SIZE:
                raise SourceError(
                    "file is larger than the image format allows (2^48 bytes)",
                    where=os.fsdecode(os.path.join(full, name)),
                )
            nodes.append(Node(child, TYPE_FILE, m & 0o777, cst.st_size, b"", cst))
        elif fmt == stat.S_IFDIR:
            nodes.append(Node(child, TYPE_DIR, m & 0o777, 0, b"", None))
            stack.append(child)
        elif fmt == stat.S_IFLNK:
            where = os.fsdecode(os.path.join(full, name))
            try:
                target = os.readlink(name, dir_fd=fd)
            except OSError as e:
                raise SourceError(f"cannot read symlink: {e.strerror}", where=where) from None
            if not 1 <= len(target) <= MAX_TARGET or b"\0" in target:
                raise SourceError(f"symlink target longer than {MAX_TARGET} bytes", where=where)
            nodes.append(Node(child, TYPE_SYMLINK, SYMLINK_MODE, len(target), target, None))
        else:
            what = _SPECIAL.get(fmt, "a special file")
            raise SourceError(
                f"{what} cannot be stored in an image; remove it from the source tree",
                where=os.fsdecode(os.path.join(full, name)),
            )
