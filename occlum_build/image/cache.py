"""The per-file manifest that makes image builds incremental.

One JSON file per image in the cache directory maps each source path to its stat key
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
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .. import log

VERSION = "occlum-build image cache 1"
RACY_NS = 100_000_000  # > the coarse clock tick of Linux file timestamps (1-10 ms)

_log = log.get("image.cache")

StatKey = tuple[int, int, int, int, int, int]


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"  # never equal to a recorded id below, so the cache is not trusted


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


class Record(NamedTuple):
    content: bytes  # content digest (see module docstring)
    root: bytes
    file_id: bytes
    root_hex: str


@dataclass
class Manifest:
    """Records kept in their JSON form (``[*stat key, content, root, file id]`` with hex
    digests) and parsed only when looked up: a no-op build parses only what it uses."""

    mode_tag: str  # "integrity-only" or "encrypted:<key fingerprint>"
    raw: dict[str, list] = field(default_factory=dict)

    def lookup(self, rel: str, st: os.stat_result) -> Record | None:
        """The record of ``rel`` if its stat key is that of ``st`` (a hot loop of every
        rebuild: fields compared one by one, most likely to differ first)."""
        v = self.raw.get(rel)
        if (
            v is None
            or len(v) != 9
            or v[3] != st.st_mtime_ns
            or v[4] != st.st_ctime_ns
            or v[2] != st.st_size
            or v[1] != st.st_ino
            or v[0] != st.st_dev
            or v[5] != st.st_mode
        ):
            return None
        try:
            rec = Record(bytes.fromhex(v[6]), bytes.fromhex(v[7]), bytes.fromhex(v[8]), v[7])
        except (TypeError, ValueError):
            return None
        if len(rec.content) != 32 or len(rec.root) != 32 or len(rec.file_id) != 16:
            return None
        return rec

    def put(self, rel: str, key: StatKey, content: bytes, root: bytes, file_id: bytes) -> None:
        self.raw[rel] = [*key, content.hex(), root.hex(), file_id.hex()]

    def keep(self, rel: str, old: Manifest) -> None:
        """Carry a record looked up in ``old`` over unchanged."""
        self.raw[rel] = old.raw[rel]


def manifest_path(cache_dir: Path, out_name: str = "image") -> Path:
    return cache_dir / f"{out_name}.manifest.json"


def load(path: Path, mode_tag: str) -> Manifest:
    """The manifest at ``path`` if it is intact and valid for ``mode_tag``; else an empty one.

    The records are stored as one JSON text with its SHA-256 beside it, so a damaged or
    truncated manifest is recognised as a whole and discarded."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Manifest(mode_tag)
    except OSError as e:
        _log.warning("image cache %s unreadable (%s); rebuilding", path, e.strerror)
        return Manifest(mode_tag)
    try:
        doc = json.loads(raw)
        if doc.get("version") != VERSION or doc.get("mode") != mode_tag:
            return Manifest(mode_tag)
        if doc.get("boot") != boot_id() or doc.get("boot") == "unknown":
            _log.debug("image cache %s is from another boot; rebuilding", path)
            return Manifest(mode_tag)
        text = doc["files"]
        if hashlib.sha256(text.encode()).hexdigest() != doc["sha256"]:
            raise ValueError("checksum mismatch")
        files = json.loads(text)
        if not isinstance(files, dict):
            raise ValueError("bad records")
        return Manifest(mode_tag, files)
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeError) as e:
        _log.warning("image cache %s is corrupt (%s); rebuilding", path, e)
        return Manifest(mode_tag)


def save(path: Path, manifest: Manifest, now_ns: int, old: Manifest | None = None) -> None:
    """Write ``manifest`` (without racily clean records); skipped when equal to ``old``."""
    limit = now_ns - RACY_NS
    files = {rel: v for rel, v in manifest.raw.items() if max(v[3], v[4]) < limit}
    if old is not None and files == old.raw and path.exists():
        return
    text = json.dumps(files, separators=(",", ":"), sort_keys=True)
    doc = {
        "version": VERSION,
        "mode": manifest.mode_tag,
        "boot": boot_id(),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "files": text,
    }
    # Not fsynced: the manifest is a hint; a lost or torn one only costs a full re-read.
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        _log.warning("cannot save image cache %s (%s); the next build reads every file", path, e.strerror)
