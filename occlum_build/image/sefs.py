"""SEFS images as Occlum's ``sefs-cli zip`` writes them, and a reader that checks them as the
LibOS does (docs/formats/sefs.md; records in sefs_layout.py, files in pfs.py).

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
from collections.abc import Callable, Iterator
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
    is_freemap_block,
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
            what = ("a FIFO" if stat.S_ISFIFO(m) else "a socket" if stat.S_ISSOCK(m)
                    else "a device node")
            say(f"{_show(path)}: {what}, not stored in the image (as sefs-cli skips it)")
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
@dataclass(frozen=True)
class Entry:
    """An inode as the reader found it."""

    id: int
    path: str  # "/" for the root, "/bin/init", ...
    type: int
    mode: int
    size: int
    nlinks: int
    mac: bytes
    mtime: int = 0  # seconds


class SefsReader:
    """An SEFS image checked as the LibOS checks it: ``metadata`` against the root MAC before
    anything is parsed, each inode's file against its ``inode_mac`` when it is opened, each
    node of a file against its parent when it is read."""

    def __init__(self, image_dir: Path, root_mac: bytes, key: bytes | None = None):
        self.dir = Path(image_dir)
        self.key = key
        meta = self._open(METADATA_FILE, "metadata", None)
        if meta.mac != root_mac:
            raise SefsError(f"metadata: root MAC mismatch (the image holds "
                            f"{pfs.format_mac(meta.mac)}, expected {pfs.format_mac(root_mac)})",
                            where=str(self.dir))
        self._parse(self._read(meta, "metadata"))

    def _fail(self, what: str, msg: str) -> SefsError:
        return SefsError(f"{what}: {msg}", where=str(self.dir))

    def _open(self, name: str, what: str, mac: bytes | None) -> pfs.PfsReader:
        try:
            data = (self.dir / name).read_bytes()
        except FileNotFoundError:
            raise self._fail(what, f"missing file {name}") from None
        except OSError as e:
            raise self._fail(what, f"cannot read {name}: {e.strerror}") from None
        try:
            r = pfs.PfsReader(data, name, self.key, where=name)
        except pfs.PfsError as e:
            raise self._fail(what, str(e)) from None
        if mac is not None and r.mac != mac:
            raise self._fail(what, f"inode MAC mismatch ({name} is not the file the metadata names)")
        return r

    def _read(self, r: pfs.PfsReader, what: str) -> bytes:
        try:
            return r.read()
        except pfs.PfsError as e:
            raise self._fail(what, str(e)) from None

    def _parse(self, meta: bytes) -> None:
        if len(meta) < 2 * BLOCK:
            raise self._fail("metadata", f"{len(meta)} bytes is too short")
        sb = SUPERBLOCK.unpack(meta)
        groups = int(sb["groups"])  # type: ignore[arg-type]
        if sb["magic"] != MAGIC or groups < 1 or sb["blocks"] != GROUP_BLOCKS * groups:
            raise self._fail("metadata", "bad superblock")
        self.inodes: dict[int, dict[str, int | bytes]] = {}
        for g in range(groups):
            off = (GROUP_BLOCKS * g + 1) * BLOCK
            fm = meta[off:off + BLOCK]
            if len(fm) != BLOCK:
                raise self._fail("metadata", f"free map of group {g} is missing")
            for bit in range(GROUP_BLOCKS):
                b = GROUP_BLOCKS * g + bit
                if fm[bit // 8] >> (bit % 8) & 1 or b == 0 or is_freemap_block(b):
                    continue
                rec = meta[b * BLOCK:b * BLOCK + DISK_INODE.size]
                if len(rec) != DISK_INODE.size:
                    raise self._fail("metadata", f"inode {b} is past the end of the table")
                ino = DISK_INODE.unpack(rec)
                if ino["disk_filename"] != disk_id(b) or ino["type"] not in (T_FILE, T_DIR, T_SYMLINK) \
                        or int.from_bytes(bytes(ino["mtime"])[8:], "little") >= 10**9:  # type: ignore[arg-type]
                    raise self._fail("metadata", f"inode {b} is malformed")
                self.inodes[b] = ino
        used = len(self.inodes)
        if sb["unused_blocks"] != GROUP_BLOCKS * groups - groups - 1 - used:
            raise self._fail("metadata", "the superblock's free count does not match the free map")
        if ROOT_ID not in self.inodes or self.inodes[ROOT_ID]["type"] != T_DIR:
            raise self._fail("metadata", "no root directory")

    def _inode(self, i: int, path: str) -> dict[str, int | bytes]:
        ino = self.inodes.get(i)
        if ino is None:
            raise self._fail(path, f"names inode {i}, which is not in use")
        return ino

    def content(self, i: int, path: str) -> bytes:
        """The verified content of inode ``i`` (``path`` names it in errors)."""
        ino = self._inode(i, path)
        r = self._open(disk_name(i), path, bytes(ino["inode_mac"]))  # type: ignore[arg-type]
        data = self._read(r, path)
        want = ino["size"] if ino["type"] != T_DIR else DISK_ENTRY.size * int(ino["blocks"])  # type: ignore[arg-type]
        if len(data) != want:
            raise self._fail(path, f"content is {len(data)} bytes, the inode says {want}")
        return data

    def dir_entries(self, i: int, path: str) -> list[tuple[str, int, int]]:
        """(name, id, type) of a directory's children, "." and ".." checked and left out."""
        data = self.content(i, path)
        out = []
        for k in range(len(data) // DISK_ENTRY.size):
            e = DISK_ENTRY.unpack(data, k * DISK_ENTRY.size)
            raw = bytes(e["name"])  # type: ignore[arg-type]
            name_b = raw.split(b"\0", 1)[0]
            try:
                name = name_b.decode("utf-8")
            except UnicodeDecodeError:
                raise self._fail(path, f"entry {k} has a name that is not UTF-8") from None
            if k < 2:
                if name != ("." if k == 0 else "..") or (k == 0 and e["id"] != i):
                    raise self._fail(path, "malformed '.' or '..' entry")
                continue
            if not name or "/" in name or name in (".", ".."):
                raise self._fail(path, f"entry {k} has a bad name {name!r}")
            out.append((name, int(e["id"]), int(e["type"])))  # type: ignore[arg-type]
        return out

    def walk(self) -> Iterator[Entry]:
        """Every inode from the root, depth first, in directory order."""
        seen: set[int] = set()
        stack = [(ROOT_ID, "/")]
        while stack:
            i, path = stack.pop()
            if i in seen:
                raise self._fail(path, f"inode {i} is reachable twice")
            seen.add(i)
            ino = self._inode(i, path)
            t = int(ino["type"])  # type: ignore[arg-type]
            mt = bytes(ino["mtime"])  # type: ignore[arg-type]
            yield Entry(i, path, t, int(ino["mode"]), int(ino["size"]),  # type: ignore[arg-type]
                        int(ino["nlinks"]), bytes(ino["inode_mac"]),  # type: ignore[arg-type]
                        int.from_bytes(mt[:8], "little", signed=True))
            if t == T_DIR:
                kids = self.dir_entries(i, path)
                for name, cid, ctype in reversed(kids):
                    cpath = path.rstrip("/") + "/" + name
                    if self._inode(cid, cpath)["type"] != ctype:
                        raise self._fail(cpath, "entry type differs from the inode's")
                    stack.append((cid, cpath))

    def lookup(self, path: str) -> int:
        """Inode id of ``path`` ("/a/b"); FileNotFoundError if absent."""
        i = ROOT_ID
        cur = ""
        for part in [p for p in path.split("/") if p]:
            cur += "/" + part
            kids = {n: cid for n, cid, _ in self.dir_entries(i, cur.rsplit("/", 1)[0] or "/")}
            if part not in kids:
                raise FileNotFoundError(cur)
            i = kids[part]
        return i

    def read(self, path: str) -> bytes:
        """Content of a file, or target of a symlink, at ``path``."""
        return self.content(self.lookup(path), path)
