"""The manifest that makes image builds incremental.

One file per image in the cache directory lists every entry of the last image built, in
metadata order, with its *entry key* (scan.entry_key: the stat key ``(dev, ino, size,
mtime_ns, ctime_ns, mode)`` of files and symlinks, the mode alone for directories) and
what the build derived from it (type, size, content digest, object root, file id; the
digest is the plain object root for integrity-only images and SHA-256 of the content for
encrypted ones). It also holds the SHA-256 of the metadata file built with it. An entry
whose key is unchanged is not read again; when no path was added or removed, the previous
metadata is patched at the changed entries instead of being encoded again.

The manifest is only a hint: it is discarded when it cannot be parsed, when its version
differs, or when it was made for another mode or image key (it holds a one-way fingerprint
of the key, never the key); the object it names must still exist, and the metadata it
patches must still have the recorded SHA-256.

Objects are not fsynced one by one (that would cost more than hashing them); the manifest
records the kernel boot id instead, and a manifest from another boot is discarded, so the
first build after a reboot (perhaps a power failure that tore unsynced objects) reads every
file again and rewrites every object. The metadata and MAC file are fsynced.

Entries modified within ``RACY_NS`` of the scan are recorded with a key that matches
nothing (as git's "racily clean" rule): a later write inside the same timestamp tick would
not change the stat key, so such files are read again on the next build.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .. import fsutil, log
from .format import TYPE_FILE, object_size
from .scan import KEY, key_times

VERSION = "occlum-build image cache 4"
RACY_NS = fsutil.RACY_NS

_log = log.get("image.cache")

NEVER = b"\xff" * KEY.size  # the key of a racy entry: no lstat packs to it (mode bits)
# What a build derived from an entry: type, size, object root, file id.
REC = struct.Struct("<B7xQ32s16s")
ROOT = slice(16, 48)  # of a REC
FILE_ID = slice(48, 64)
NO_ROOT = bytes(32)
NO_REC = REC.pack(0, 0, b"", b"")


class Totals(NamedTuple):
    """What the records add up to (reported by a build)."""

    files: int
    bytes_in: int  # plain bytes of all regular files
    stored: int  # bytes of all distinct objects
    objects: int  # distinct objects


def totals(recs: bytes | bytearray, encrypted: bool) -> tuple[Totals, set[bytes]]:
    """The totals of all records, and the object roots they name."""
    files = bytes_in = 0
    sizes: dict[bytes, int] = {}
    for t, size, root, _ in REC.iter_unpack(recs):
        if t == TYPE_FILE:
            files += 1
            if size:
                bytes_in += size
                sizes[root] = size
    stored = sum(object_size(n, encrypted) for n in sizes.values())
    return Totals(files, bytes_in, stored, len(sizes)), set(sizes)


def has_root(recs: bytes | bytearray, root: bytes) -> bool:
    """Whether a record names object ``root`` (a search through the records' bytes)."""
    at = recs.find(root)
    while at >= 0:
        if at % REC.size == ROOT.start:
            return True
        at = recs.find(root, at + 1)
    return False


def updated_totals(
    old: Totals, prev: bytes | bytearray, new: bytes | bytearray, changed: list[int], encrypted: bool
) -> tuple[Totals, set[bytes]]:
    """The totals of ``new``, records that differ from ``prev`` only at ``changed`` (whose
    totals are ``old``), and the roots no longer named by any record."""
    files, bytes_in = old.files, old.bytes_in
    dropped: dict[bytes, int] = {}
    added: dict[bytes, int] = {}
    for recs, sign, roots in ((prev, -1, dropped), (new, 1, added)):
        for i in changed:
            t, size, root, _ = REC.unpack_from(recs, i * REC.size)
            if t == TYPE_FILE:
                files += sign
                bytes_in += sign * size
                if size:
                    roots[root] = size
    gone = {r: n for r, n in dropped.items() if not has_root(new, r)}
    fresh = {r: n for r, n in added.items() if not has_root(prev, r)}
    stored = old.stored + sum(object_size(n, encrypted) for n in fresh.values())
    stored -= sum(object_size(n, encrypted) for n in gone.values())
    return Totals(files, bytes_in, stored, old.objects + len(fresh) - len(gone)), set(gone)


def is_racy(key: bytes, now_ns: int) -> bool:
    """Whether the entry with this key changed within ``RACY_NS`` of ``now_ns``."""
    return max(key_times(key)) >= now_ns - RACY_NS


def differing(new: bytes, old: bytes, size: int) -> list[int]:
    """Numbers of the ``size``-byte records that differ between two equally long blobs,
    found by bisection (a rebuild after a few edits compares a few slices, not every
    record)."""
    out: list[int] = []
    todo = [(0, len(new) // size)]
    while todo:
        lo, hi = todo.pop()
        a, b = lo * size, hi * size
        if new[a:b] == old[a:b]:
            continue
        if hi - lo == 1:
            out.append(lo)
        else:
            mid = (lo + hi) // 2
            todo += ((mid, hi), (lo, mid))
    return out


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"  # never equal to a recorded id below, so the cache is not trusted


@dataclass
class Manifest:
    """Entry ``i`` is ``paths[i]``, with entry key ``keys[i*KEY.size:]`` and record
    ``recs[i*REC.size:]`` (kept as loaded: one compare tells a no-op build, and a rebuild
    after a few edits patches a few records)."""

    mode_tag: str  # "integrity-only" or "encrypted:<key fingerprint>"
    paths: list[bytes] = field(default_factory=list)
    keys: bytes = b""
    recs: bytes | bytearray = b""
    metadata_sha: bytes = b""  # SHA-256 of the metadata file built with these records
    totals: Totals = Totals(0, 0, 0, 0)
    # (dev, ino, mtime_ns, ctime_ns) of the objects directory when it held exactly the
    # objects the records name, or None; see objects_stat().
    objects: tuple[int, ...] | None = None
    names: bytes = b""  # the paths as stored (each followed by NUL), when known
    _index: dict[bytes, int] | None = None

    def key(self, i: int) -> bytes:
        return self.keys[i * KEY.size : (i + 1) * KEY.size]

    def rec(self, i: int) -> bytes:
        return bytes(self.recs[i * REC.size : (i + 1) * REC.size])

    def index(self) -> dict[bytes, int]:
        """Entry number by path (built on first use: only when paths were added or removed)."""
        if self._index is None:
            self._index = dict(zip(self.paths, range(len(self.paths)), strict=True))
        return self._index

    def roots(self) -> set[bytes]:
        """Object roots named by the records."""
        return {r[2] for r in REC.iter_unpack(self.recs)} - {NO_ROOT}


def objects_stat(objects_dir: Path, now_ns: int) -> tuple[int, ...] | None:
    """The stat key of a directory, if it last changed more than ``RACY_NS`` before
    ``now_ns`` (any later change of its entries then changes the key); else None."""
    try:
        st = os.stat(objects_dir)
    except OSError:
        return None
    if max(st.st_mtime_ns, st.st_ctime_ns) >= now_ns - RACY_NS:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def manifest_path(cache_dir: Path, out_name: str = "image") -> Path:
    return cache_dir / f"{out_name}.manifest"


# File layout: six header lines, then the body:
#   occlum-build image cache 4 / mode <tag> / boot <id> / sha256 <hex of what follows>
#   / metadata <hex SHA-256 of the metadata file> <the 4 Totals> / entries <n> objects
#   <dev ino mtime_ns ctime_ns of the objects directory, or "-">
# then the n paths, each followed by NUL (the bytes of the path, as in the image; NUL
# never occurs in a path), then the n keys (KEY.size bytes each), then the n records
# (REC.size bytes each), all in metadata order.


def load(path: Path, mode_tag: str) -> Manifest:
    """The manifest at ``path`` if it is intact and valid for ``mode_tag``; else an empty one.

    The body's SHA-256 is in the header, so a damaged or truncated manifest is recognised
    as a whole and discarded."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Manifest(mode_tag)
    except OSError as e:
        _log.warning("image cache %s unreadable (%s); rebuilding", path, e.strerror)
        return Manifest(mode_tag)
    try:
        head = raw.split(b"\n", 6)
        if len(head) != 7 or head[0].decode() != VERSION or head[1].decode() != f"mode {mode_tag}":
            return Manifest(mode_tag)
        boot = head[2].decode()
        if boot != f"boot {boot_id()}" or boot == "boot unknown":
            _log.debug("image cache %s is from another boot; rebuilding", path)
            return Manifest(mode_tag)
        signed = raw[len(head[0]) + len(head[1]) + len(head[2]) + len(head[3]) + 4 :]
        if head[3].decode() != f"sha256 {hashlib.sha256(signed).hexdigest()}":
            raise ValueError("checksum mismatch")
        meta = head[4].decode().split(" ")
        line = head[5].decode().split(" ")
        if len(meta) != 6 or meta[0] != "metadata" or len(line) not in (4, 7) or line[2] != "objects":
            raise ValueError("bad header")
        if line[0] != "entries":
            raise ValueError("bad header")
        sums = Totals(*map(int, meta[2:]))
        n = int(line[1])
        objects = tuple(map(int, line[3:])) if len(line) == 7 else None
        body = head[6]
        split = len(body) - n * (KEY.size + REC.size)
        if n < 1 or split < n:
            raise ValueError("bad entry count")
        paths = body[:split].split(b"\0")
        if len(paths) != n + 1 or paths[-1]:
            raise ValueError("bad paths")
        del paths[-1]
        names = body[:split]
        keys = body[split : split + n * KEY.size]
        recs = body[split + n * KEY.size :]
        return Manifest(mode_tag, paths, keys, recs, bytes.fromhex(meta[1]), sums, objects, names)
    except (ValueError, UnicodeError) as e:
        _log.warning("image cache %s is corrupt (%s); rebuilding", path, e)
        return Manifest(mode_tag)


def save(path: Path, manifest: Manifest) -> None:
    """Write ``manifest`` (not fsynced: it is a hint; a lost or torn one only costs a full
    re-read)."""
    names = manifest.names or b"".join([p + b"\0" for p in manifest.paths])
    ostat = " ".join(map(str, manifest.objects)) if manifest.objects else "-"
    signed = (
        f"metadata {manifest.metadata_sha.hex()} {' '.join(map(str, manifest.totals))}\n"
        f"entries {len(manifest.paths)} objects {ostat}\n".encode()
        + names
        + manifest.keys
        + manifest.recs
    )
    digest = hashlib.sha256(signed).hexdigest()
    head = f"{VERSION}\nmode {manifest.mode_tag}\nboot {boot_id()}\nsha256 {digest}\n".encode()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(head)
            f.write(signed)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        _log.warning("cannot save image cache %s (%s); the next build reads every file", path, e.strerror)
