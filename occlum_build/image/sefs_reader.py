"""Reading an SEFS image as the LibOS does (docs/formats/sefs.md; the writer is sefs.py):
``metadata`` against the root MAC before anything is parsed, each inode's file against its
``inode_mac`` when it is opened, each node of a file against its parent when it is read.
Used by `occlum verify`, the tests, and to name the path inside an image in errors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import pfs
from .pfs_reader import PfsReader
from .sefs import SefsError
from .sefs_layout import (
    BLOCK,
    DISK_ENTRY,
    DISK_INODE,
    GROUP_BLOCKS,
    MAGIC,
    METADATA_FILE,
    ROOT_ID,
    SUPERBLOCK,
    T_DIR,
    T_FILE,
    T_SYMLINK,
    disk_id,
    disk_name,
    is_freemap_block,
)


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

    def _open(self, name: str, what: str, mac: bytes | None) -> PfsReader:
        try:
            data = (self.dir / name).read_bytes()
        except FileNotFoundError:
            raise self._fail(what, f"missing file {name}") from None
        except OSError as e:
            raise self._fail(what, f"cannot read {name}: {e.strerror}") from None
        try:
            r = PfsReader(data, name, self.key, where=name)
        except pfs.PfsError as e:
            raise self._fail(what, str(e)) from None
        if mac is not None and r.mac != mac:
            raise self._fail(what, f"inode MAC mismatch ({name} is not the file the metadata names)")
        return r

    def _read(self, r: PfsReader, what: str) -> bytes:
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
