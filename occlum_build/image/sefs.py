"""SEFS images as Occlum's ``sefs-cli zip`` writes them (docs/formats/sefs.md; records in
sefs_layout.py, files in pfs.py; the reader is sefs_reader.py).

``plan`` walks a source tree in sefs-cli's order (depth first, pre-order, children sorted by
name bytes) and gives every file, directory and symlink its inode id; ``encode_dir`` and
``encode_metadata`` make the directory contents and the ``metadata`` table from the plan.
What sefs-cli drops silently (FIFOs, sockets, devices; setuid, setgid and sticky bits) is
dropped here too, with a warning per path; what makes sefs-cli panic (a name that is not
UTF-8 or is over 255 bytes) is an error naming the path.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import fsutil, pathlimit
from ..errors import OcclumError, VerifyError
from ..fsutil import stat_key
from . import pfs
from .sefs_layout import (
    BLOCK,
    DISK_ENTRY,
    DISK_INODE,
    GROUP_BLOCKS,
    MAGIC,
    MAX_INODES,
    METADATA_FILE,
    NAME_MAX,
    ROOT_ID,
    SUPERBLOCK,
    T_DIR,
    T_FILE,
    T_SYMLINK,
    disk_id,
    disk_name,
    groups_for,
    ids,
    metadata_size,
)

Warn = Callable[[str], None]


class SefsSourceError(OcclumError):
    """The source tree cannot be made into an SEFS image (exit 2); names the path."""


class SefsError(VerifyError):
    """An SEFS image failed a check (exit 3); names the image and the path inside it."""


@dataclass
class Inode:
    """One inode of a planned image."""

    id: int
    path: bytes  # relative to the tree root, b"" for the root, b"/"-joined
    type: int
    mode: int  # permission bits as stored (& 0o777)
    size: int = 0  # files: content bytes; symlinks: target bytes
    target: bytes = b""
    children: list[Inode] = field(default_factory=list)
    parent: int = ROOT_ID
    mac: bytes = bytes(16)  # the PFS MAC of the inode's file, once written
    stat_key: tuple[int, ...] = ()  # (dev, ino, size, mtime_ns, ctime_ns, mode) of the source
    mtime: int = 0  # seconds; 0 as sefs-cli stores it, unless the build keeps mtimes

    @property
    def name(self) -> bytes:
        return self.path.rsplit(b"/", 1)[-1]

    @property
    def nlinks(self) -> int:
        if self.type == T_DIR:
            return 2 + sum(1 for c in self.children if c.type == T_DIR)
        return 1

    @property
    def blocks(self) -> int:
        return 2 + len(self.children) if self.type == T_DIR else 0


def _show(path: bytes) -> str:
    return "/" + path.decode("utf-8", errors="backslashreplace")


@dataclass(frozen=True)
class KeepMtimes:
    """Store regular files' mtimes (whole seconds) instead of 0, so that programs which check
    them (Python's .pyc against its .py) see the source's; ``clamp`` (e.g.
    $SOURCE_DATE_EPOCH) caps them, so files newer than it (a fresh checkout) give the same
    image on any machine.  Directories and symlinks keep 0: their mtimes follow the order
    their entries were made in."""

    clamp: int | None = None


MtimePolicy = KeepMtimes | None


def normalized_mode(kind: int, st_mode: int) -> int:
    """The mode ``--normalize-modes`` stores, as git sees a checkout: directories 0755, files
    0755 when the owner may execute them else 0644, symlinks as they are."""
    if kind == T_DIR:
        return 0o755
    if kind == T_FILE:
        return 0o755 if st_mode & 0o100 else 0o644
    return st_mode & 0o777


def plan(src: Path, warn: Warn | None = None, normalize_modes: bool = False,
         mtimes: MtimePolicy = None) -> list[Inode]:
    """Every inode of the image of ``src``, in id order (ids 2, 3, ... without the free-map
    blocks).  ``warn`` gets one line per path sefs-cli would silently drop or change.
    ``normalize_modes``: store :func:`normalized_mode` instead of ``mode & 0o777``.
    ``mtimes``: None stores 0 (sefs-cli); else regular files keep their mtime in whole
    seconds, clamped to ``mtimes.clamp`` when it is set (see :class:`MtimePolicy`)."""
    say = warn or (lambda msg: None)
    root_st = os.lstat(src)
    if not stat.S_ISDIR(root_st.st_mode):
        raise SefsSourceError("not a directory", where=str(src))
    root = Inode(0, b"", T_DIR, 0o755, stat_key=stat_key(root_st))
    order = [root]
    _walk(os.fsencode(src), b"", root, order, say)
    if normalize_modes:
        for n in order[1:]:  # the root is always 0755
            n.mode = normalized_mode(n.type, n.mode)
    if mtimes is not None:
        for n in order:
            if n.type == T_FILE:
                sec = n.stat_key[3] // 1_000_000_000
                n.mtime = sec if mtimes.clamp is None else min(sec, mtimes.clamp)
    for node, i in zip(order, ids(len(order)), strict=True):
        node.id = i
    for node in order:
        for c in node.children:
            c.parent = node.id
    return order


def _walk(top: bytes, rel: bytes, parent: Inode, order: list[Inode], say: Warn) -> None:
    where = top + (b"/" + rel if rel else b"")
    try:
        names = sorted(os.listdir(where))
    except OSError as e:
        raise SefsSourceError(f"cannot list: {e.strerror}", where=pathlimit.shown(where)) from None
    for name in names:
        path = rel + b"/" + name if rel else name
        temp = fsutil.parse_temp_name(os.fsdecode(name))
        if temp is not None and temp[1] == fsutil.COPY_BOM_TAG:
            say(f"{_show(path)}: a partial copy left by an interrupted copy_bom, not stored in "
                "the image (run copy_bom again: it removes it)")
            continue
        try:
            name.decode("utf-8")
        except UnicodeDecodeError:
            raise SefsSourceError("the name is not UTF-8 (SEFS stores UTF-8 names)",
                                  where=_show(path)) from None
        if len(name) > NAME_MAX:
            raise SefsSourceError(f"the name is {len(name)} bytes, SEFS allows {NAME_MAX}",
                                  where=_show(path))
        full = top + b"/" + path
        if pathlimit.too_long(full):  # the kernel would refuse it (ENAMETOOLONG)
            raise SefsSourceError(pathlimit.message(full))
        try:
            st = os.lstat(full)
        except OSError as e:
            raise SefsSourceError(f"cannot stat: {e.strerror}", where=pathlimit.shown(full)) from None
        m = st.st_mode
        if stat.S_ISDIR(m):
            kind, size, target = T_DIR, 0, b""
        elif stat.S_ISREG(m):
            kind, size, target = T_FILE, st.st_size, b""
            if size > pfs.MAX_SIZE:
                raise SefsSourceError(f"a file of {size} bytes is over the SEFS file size limit "
                                      f"({pfs.MAX_SIZE})", where=_show(path))
        elif stat.S_ISLNK(m):
            try:
                target = os.readlink(full)
            except OSError as e:
                raise SefsSourceError(f"cannot read the link: {e.strerror}", where=_show(path)) from None
            kind, size = T_SYMLINK, len(target)
        else:
            say(f"{_show(path)}: {fsutil.special_kind(m)}, not stored in the image "
                "(as sefs-cli skips it)")
            continue
        if m & 0o7000 and kind != T_SYMLINK:
            say(f"{_show(path)}: setuid/setgid/sticky bits {oct(m & 0o7000)} dropped "
                "(SEFS stores mode & 0o777)")
        node = Inode(0, path, kind, m & 0o777, size, target, stat_key=stat_key(st))
        parent.children.append(node)
        order.append(node)
        if len(order) > MAX_INODES:  # checked as we go: such a tree would not fit in memory
            raise SefsSourceError(f"over {MAX_INODES} inodes, the most an SEFS image can hold "
                                  "(inode ids are u32)", where=_show(path))
        if kind == T_DIR:
            _walk(top, path, node, order, say)


# Struct's "s" format pads a short name with NULs to the field's 256 bytes (and would
# truncate a long one: plan() refuses names over 255 bytes first).
_pack_entry = DISK_ENTRY.packer("id", "name", "type")
_pack_inode = DISK_INODE.packer("size", "type", "mode", "nlinks", "blocks", "mtime",
                                "disk_filename", "inode_mac")


def encode_dir(node: Inode) -> bytes:
    """A directory's content: DiskEntry records for ".", ".." and the children in order."""
    pack = _pack_entry
    recs = [pack(node.id, b".", T_DIR), pack(node.parent, b"..", T_DIR)]
    recs += [pack(c.id, c.name, c.type) for c in node.children]
    return b"".join(recs)


def _timespec(sec: int) -> bytes:
    """An rcore-fs Timespec {i64 sec, i64 nsec} with nsec 0."""
    return sec.to_bytes(8, "little", signed=True) + bytes(8)


def encode_metadata(order: list[Inode]) -> bytes:
    """The ``metadata`` table of a planned image whose inode MACs are known."""
    max_id = order[-1].id
    groups = groups_for(max_id)
    out = bytearray(metadata_size(max_id, groups))
    SUPERBLOCK.set(out, "magic", MAGIC)
    SUPERBLOCK.set(out, "blocks", GROUP_BLOCKS * groups)
    SUPERBLOCK.set(out, "unused_blocks", GROUP_BLOCKS * groups - groups - 1 - len(order))
    SUPERBLOCK.set(out, "groups", groups)
    used = [bytearray(b"\xff" * (GROUP_BLOCKS // 8)) for _ in range(groups)]

    def mark(b: int) -> None:
        g, bit = divmod(b, GROUP_BLOCKS)
        used[g][bit // 8] &= ~(1 << (bit % 8)) & 0xFF

    pack = _pack_inode
    mark(0)
    for g in range(groups):
        mark(GROUP_BLOCKS * g + 1)
    for n in order:
        mark(n.id)
        base = n.id * BLOCK
        out[base:base + DISK_INODE.size] = pack(n.size if n.type != T_DIR else 0, n.type, n.mode,
                                                n.nlinks, n.blocks, _timespec(n.mtime),
                                                disk_id(n.id), n.mac)
    for g in range(groups):
        off = (GROUP_BLOCKS * g + 1) * BLOCK
        out[off:off + BLOCK] = used[g]
    return bytes(out)


# ------------------------------------------------------------------------------ writer
def write_inode(out_dir: Path, node: Inode, src: Path, key: bytes | None) -> bytes:
    """Write inode ``node``'s file into ``out_dir``; return (and record) its PFS MAC."""
    name = disk_name(node.id)
    if node.type == T_FILE:
        full = src / os.fsdecode(node.path)
        fd_out = os.open(out_dir / name, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.fchmod(fd_out, 0o644)  # whatever the umask
            try:
                fd_in = os.open(full, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError as e:
                raise SefsSourceError(f"cannot read: {e.strerror}", where=str(full)) from None
            try:
                if os.fstat(fd_in).st_size != node.size:
                    raise SefsSourceError("changed while the image was built", where=str(full))
                body = pfs.write_body(fd_out, fd_in, node.size, key, where=str(full))
            finally:
                os.close(fd_in)
            node0, mac = pfs.meta_node(name.encode(), body, key)
            os.pwrite(fd_out, node0, 0)
        finally:
            os.close(fd_out)
    else:
        content = encode_dir(node) if node.type == T_DIR else node.target
        data, mac = pfs.protect_bytes(content, name.encode(), key)
        fsutil.write_file(out_dir / name, data)
    node.mac = mac
    return mac


def zip_tree(src: Path, out_dir: Path, key: bytes | None = None, warn: Warn | None = None) -> bytes:
    """Write the SEFS image of ``src`` into the (empty or new) ``out_dir``, as
    ``sefs-cli zip`` does; return the root MAC (the PFS MAC of ``metadata``)."""
    order = plan(src, warn)
    fsutil.makedirs(out_dir, 0o755)
    for node in reversed(order):  # children before parents (not needed: MACs are per file)
        write_inode(out_dir, node, src, key)
    data, mac = pfs.protect_bytes(encode_metadata(order), METADATA_FILE.encode(), key)
    fsutil.write_file(out_dir / METADATA_FILE, data)
    return mac


# ------------------------------------------------------------------------------ reader
