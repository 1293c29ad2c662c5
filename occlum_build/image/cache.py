"""The per-file manifest that makes image builds incremental.

One file per image in the cache directory maps each source path to its stat key
``(dev, ino, size, mtime_ns, ctime_ns, mode)`` and to what the build derived from the
content: the content digest (integrity-only: the plain object root; encrypted: SHA-256 of
the content), the object root and the file id.  A file whose stat key is unchanged is not
read again.  The manifest is only a hint: it is discarded when it cannot be parsed, when
its version differs, or when it was made for another mode or image key (it holds a
one-way fingerprint of the key, never the key); the object it names must still exist.

Objects are not fsynced one by one (that would cost more than hashing them); the manifest
records the kernel boot id instead, and a manifest from another boot is discarded, so the
first build after a reboot (perhaps a power failure that tore unsynced objects) reads every
file again and rewrites every object.  The metadata and MAC file are fsynced.

Stat keys of files modified within ``RACY_NS`` of the scan are not recorded (as git's
"racily clean" rule): a later write inside the same timestamp tick would not change the
key, so such files are read again on the next build.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .. import log

VERSION = "occlum-build image cache 3"
RACY_NS = 100_000_000  # > the coarse clock tick of Linux file timestamps (1-10 ms)

_log = log.get("image.cache")

StatKey = tuple[int, int, int, int, int, int]

# One record per path: the stat key, then content digest, object root and file id.
_KEY = struct.Struct("<QQQqqQ")
_REC = struct.Struct("<QQQqqQ32s32s16s")
_ROOT = slice(_KEY.size + 32, _KEY.size + 64)
_FILE_ID = slice(_KEY.size + 64, _REC.size)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"  # never equal to a recorded id below, so the cache is not trusted


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


class Record(NamedTuple):
    """What a rebuild needs of a file it does not read (the content digest is only needed
    when a file is read, to record it)."""

    root: bytes
    file_id: bytes


@dataclass
class Manifest:
    """Records kept in their stored binary form (``_REC``) and unpacked only when looked
    up: a no-op build compares packed stat keys, and saving joins the records it kept as
    they are."""

    mode_tag: str  # "integrity-only" or "encrypted:<key fingerprint>"
    raw: dict[bytes, bytes] = field(default_factory=dict)  # by path, as in the image
    fresh: dict[bytes, int] = field(default_factory=dict)  # put records: newest of mtime, ctime
    # (dev, ino, mtime_ns, ctime_ns) of the objects directory when it held exactly the
    # objects the records name, or None; see objects_stat().
    objects: tuple[int, ...] | None = None

    def lookup(self, rel: bytes, st: os.stat_result) -> Record | None:
        """The record of ``rel`` if its stat key is that of ``st`` (a hot loop of every
        rebuild)."""
        v = self.raw.get(rel)
        if v is None or not v.startswith(
            _KEY.pack(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
        ):
            return None
        return Record(v[_ROOT], v[_FILE_ID])

    def put(self, rel: bytes, key: StatKey, content: bytes, root: bytes, file_id: bytes) -> None:
        if b"\0" in rel:  # cannot be stored (a path never holds NUL)
            return
        self.raw[rel] = _REC.pack(*key, content, root, file_id)
        self.fresh[rel] = max(key[3], key[4])

    def keep(self, rel: bytes, old: Manifest) -> None:
        """Carry a record looked up in ``old`` over unchanged."""
        self.raw[rel] = old.raw[rel]


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


def dropped_roots(old: Manifest, new: Manifest) -> set[bytes]:
    """Object roots of the records of ``old`` that ``new`` does not carry over as they are."""
    kept = new.raw
    if kept == old.raw:  # a no-op build (a quick test: equal records are the same objects)
        return set()
    return {v[_ROOT] for rel, v in old.raw.items() if kept.get(rel) is not v}


def manifest_path(cache_dir: Path, out_name: str = "image") -> Path:
    return cache_dir / f"{out_name}.manifest"


# File layout: five header lines, then the records:
#   occlum-build image cache 3 / mode <tag> / boot <id> / sha256 <hex of what follows>
#   / records <n> objects <dev ino mtime_ns ctime_ns of the objects directory, or "-">
# then the n paths, each followed by NUL (the bytes of the path, as in the image; NUL
# never occurs in a path), then n records of _REC.size bytes, in the same
# order.


def load(path: Path, mode_tag: str) -> Manifest:
    """The manifest at ``path`` if it is intact and valid for ``mode_tag``; else an empty one.

    The records carry their SHA-256 in the header, so a damaged or truncated manifest is
    recognised as a whole and discarded."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Manifest(mode_tag)
    except OSError as e:
        _log.warning("image cache %s unreadable (%s); rebuilding", path, e.strerror)
        return Manifest(mode_tag)
    try:
        head = raw.split(b"\n", 5)
        if len(head) != 6 or head[0].decode() != VERSION or head[1].decode() != f"mode {mode_tag}":
            return Manifest(mode_tag)
        boot = head[2].decode()
        if boot != f"boot {boot_id()}" or boot == "boot unknown":
            _log.debug("image cache %s is from another boot; rebuilding", path)
            return Manifest(mode_tag)
        body = head[5]
        digest = hashlib.sha256(head[4] + b"\n" + body).hexdigest()
        if head[3].decode() != f"sha256 {digest}":
            raise ValueError("checksum mismatch")
        line = head[4].decode().split(" ")
        if len(line) not in (4, 7) or line[0] != "records" or line[2] != "objects":
            raise ValueError("bad record count")
        n = int(line[1])
        objects = tuple(map(int, line[3:])) if len(line) == 7 else None
        size = _REC.size
        split = len(body) - n * size
        if n < 0 or split < n:
            raise ValueError("bad record count")
        paths = body[:split].split(b"\0")
        if len(paths) != n + 1 or paths[-1]:
            raise ValueError("bad paths")
        recs = [body[i : i + size] for i in range(split, len(body), size)]
        raw_map = dict(zip(paths[:-1], recs, strict=True))
        if len(raw_map) != n:
            raise ValueError("duplicate paths")
        return Manifest(mode_tag, raw_map, objects=objects)
    except (ValueError, UnicodeError) as e:
        _log.warning("image cache %s is corrupt (%s); rebuilding", path, e)
        return Manifest(mode_tag)


def save(path: Path, manifest: Manifest, now_ns: int, old: Manifest | None = None) -> None:
    """Write ``manifest`` (without racily clean records); skipped when equal to ``old``.
    Records carried over from a saved manifest passed this test when it was saved.
    ``manifest.objects`` is dropped when a record is left out (its object is then present
    but unnamed)."""
    limit = now_ns - RACY_NS
    racy = {rel for rel, t in manifest.fresh.items() if t >= limit}  # only put records
    files = {rel: v for rel, v in manifest.raw.items() if rel not in racy} if racy else manifest.raw
    objects = manifest.objects if len(files) == len(manifest.raw) else None
    if old is not None and files == old.raw and objects == old.objects and path.exists():
        return
    names = b"".join([rel + b"\0" for rel in files])
    body = names + b"".join(files.values())
    ostat = " ".join(map(str, objects)) if objects else "-"
    count = f"records {len(files)} objects {ostat}\n".encode()
    digest = hashlib.sha256(count + body).hexdigest()
    head = f"{VERSION}\nmode {manifest.mode_tag}\nboot {boot_id()}\nsha256 {digest}\n"
    # Not fsynced: the manifest is a hint; a lost or torn one only costs a full re-read.
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(head.encode() + count + body)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        _log.warning("cannot save image cache %s (%s); the next build reads every file", path, e.strerror)
