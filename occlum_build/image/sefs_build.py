"""Building an SEFS image incrementally (docs/build.md, "The image stage").

The image a build writes is the one ``sefs-cli zip`` would write for the tree (sefs.py); this
module only decides what must be written.  A manifest in the cache directory records, for
every inode of the last image, its path, id, source stat key and the MAC of its file:

- a file whose stat key is unchanged is not read: its inode file is kept; if its id changed
  (a file was added or removed before it), the file is renamed and only its metadata node,
  the one node that holds the name, is rewritten (pfs.py: the body depends on content only);
- directories and symlinks are re-encoded (a few hundred bytes each) and written only when
  their bytes change; ``metadata`` likewise;
- a no-op build reads no file content and writes nothing.

Order of effects: new and changed files are written to temporary names first (a source
error or a full disk there leaves the previous image whole); then a marker file is created,
the kept files are renamed and re-headed, the new files renamed into place, stale files
removed, ``metadata`` and the MAC file replaced, the marker removed, the manifest saved.  A
build killed after the marker appeared leaves it behind, and the next build trusts nothing
of the old image (it rebuilds every file).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import fsutil, log
from ..errors import OutputError
from ..keys import format_hex16
from . import pfs
from .pfs_reader import read_meta_node
from .protect_files import Job, protect_all
from .sefs import Inode, MtimePolicy, SefsSourceError, encode_dir, encode_metadata, plan
from .sefs_layout import METADATA_FILE, T_DIR, T_FILE, disk_name

Progress = Callable[[int, int], None]
MANIFEST = "sefs-manifest.json"
VERSION = "occlum-build sefs manifest 1"
MARKER = ".commit-in-progress"
TMP_PREFIX = ".tmp-"
_log = log.get("image")


@dataclass(frozen=True)
class ImageResult:
    mac: bytes
    entries: int  # inodes
    files: int  # regular files
    bytes_in: int  # content bytes of all regular files
    bytes_stored: int  # bytes of all inode files and metadata
    objects_written: int  # inode files written or re-headed by this build
    objects_reused: int  # inode files kept as they were
    seconds: float
    bytes_read: int = 0  # source bytes read by this build (0 on a no-op build)


def key_tag(key: bytes | None) -> str:
    """What the manifest records of the key: its mode and a one-way fingerprint."""
    if key is None:
        return "integrity-only"
    return "key:" + hashlib.sha256(b"occlum-build sefs key fingerprint\0" + key).hexdigest()[:32]


def _load(cache_dir: Path, out_dir: Path, tag: str) -> dict[str, list]:
    """path (hex) -> [id, type, stat key or None, MAC hex] of the last image, or {} when the
    manifest is absent, of another version, key or boot, or the last commit did not end."""
    if (out_dir / MARKER).exists():
        return {}
    try:
        m = json.loads((cache_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(m, dict) or m.get("version") != VERSION or m.get("key") != tag \
            or m.get("boot_id") != fsutil.boot_id() or not isinstance(m.get("entries"), dict):
        return {}
    return m["entries"]


def _save(cache_dir: Path, tag: str, order: list[Inode], now_ns: int) -> None:
    entries = {}
    for n in order:
        # A key changed within RACY_NS of the build is not kept: a later write in the same
        # tick would keep it, so the file is read again next time (git's racily-clean rule).
        key = list(n.stat_key) if n.stat_key and not fsutil.is_racy(n.stat_key, now_ns) else None
        entries[n.path.hex()] = [n.id, n.type, key, n.mac.hex()]
    data = json.dumps({"version": VERSION, "key": tag, "boot_id": fsutil.boot_id(),
                       "entries": entries}, separators=(",", ":"))
    fsutil.atomic_write(cache_dir / MANIFEST, data, durable=False)


def _reusable(n: Inode, prev: dict[str, list]) -> list | None:
    rec = prev.get(n.path.hex())
    if rec is None or rec[1] != n.type or rec[2] is None or tuple(rec[2]) != n.stat_key:
        return None
    return rec


def _small_content(n: Inode) -> bytes:
    return encode_dir(n) if n.type == T_DIR else n.target


class _Build:
    def __init__(self, src: Path, out_dir: Path, key: bytes | None, progress: Progress | None):
        self.src, self.out, self.key, self.progress = src, out_dir, key, progress
        self.temps: list[Path] = []
        self.bytes_read = 0
        self.written = 0

    def tmp(self, i: int) -> Path:
        p = self.out / f"{TMP_PREFIX}{disk_name(i)}"
        self.temps.append(p)
        return p

    def job(self, n: Inode, dest: Path | None) -> Job:
        return Job(n.path, n.size, disk_name(n.id).encode(), None if dest is None else str(dest))

    def protect(self, work: list[tuple[Inode, Path | None]], done: int = 0, todo: int = 0) -> None:
        """Protect the files of ``work`` (on every CPU when large) and set their MACs."""
        progress = None
        if self.progress is not None:
            state = [done]

            def progress(nbytes: int) -> None:
                state[0] += nbytes
                assert self.progress is not None
                self.progress(state[0], todo)

        macs = protect_all(str(self.src), [self.job(n, d) for n, d in work], self.key, progress)
        for (n, _), mac in zip(work, macs, strict=True):
            n.mac = mac
            self.bytes_read += n.size

    def reheader(self, path: Path, old_id: int, n: Inode) -> None:
        """Give a kept file the clean name of its new id: rewrite node 0 only."""
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            old = os.pread(fd, pfs.NODE, 0)
            body, _ = read_meta_node(old, disk_name(old_id), self.key, where=str(path))
            node0, n.mac = pfs.meta_node(disk_name(n.id).encode(), body, self.key)
            os.pwrite(fd, node0, 0)
        finally:
            os.close(fd)


def _walk(src: Path, normalize_modes: bool, mtimes: MtimePolicy = None) -> list[Inode]:
    return plan(src, lambda msg: _log.warning("%s: %s", src, msg), normalize_modes, mtimes)


def build_image(src: Path, out_dir: Path, mac_file: Path, *, key: bytes | None, cache_dir: Path,
                progress: Progress | None = None, normalize_modes: bool = False,
                mtimes: MtimePolicy = None) -> ImageResult:
    """Build (or update) the SEFS image of ``src`` in ``out_dir`` and its MAC file (47
    characters, as sefs-cli writes ``.ROOT_MAC``)."""
    t0 = time.perf_counter()
    now_ns = time.time_ns()
    src, out_dir, mac_file, cache_dir = Path(src), Path(out_dir), Path(mac_file), Path(cache_dir)
    for p in (out_dir, mac_file, cache_dir):
        if p.resolve().is_relative_to(src.resolve()):
            raise SefsSourceError("the image output would be inside its own source tree; "
                                  "choose another place", where=str(p))
    order = _walk(src, normalize_modes, mtimes)
    tag = key_tag(key)
    prev = _load(cache_dir, out_dir, tag)
    try:
        fsutil.makedirs(out_dir, 0o755)
        fsutil.makedirs(cache_dir, 0o700)
    except OSError as e:
        raise OutputError(f"cannot create output directory: {e.strerror}", where=str(out_dir)) from None
    for stale in out_dir.glob(TMP_PREFIX + "*"):  # left by a killed build
        stale.unlink(missing_ok=True)
    b = _Build(src, out_dir, key, progress)
    moves: list[tuple[int, Inode]] = []  # (old id, node) of kept files whose id changed
    new: list[tuple[Path, Inode]] = []  # temp file -> node
    total = sum(n.size for n in order if n.type == T_FILE)
    todo = sum(n.size for n in order if n.type == T_FILE and _reusable(n, prev) is None)
    work: list[tuple[Inode, Path | None]] = []  # files to protect, into their temp files
    # One listing instead of a stat per kept file (a no-op build is mostly this loop).
    present = {e.name for e in os.scandir(out_dir) if e.is_file(follow_symlinks=False)}
    trace = _log.isEnabledFor(log.TRACE)  # OCCLUM_LOG_LEVEL=trace: one line per file
    try:
        for n in order:
            rec = _reusable(n, prev) if n.type == T_FILE else None
            if rec is not None and disk_name(rec[0]) in present:
                n.mac = bytes.fromhex(rec[3])
                if rec[0] != n.id:
                    moves.append((rec[0], n))
                if trace:
                    _log.log(log.TRACE, "%s: /%s: unchanged (%d bytes, MAC %s)", src,
                             os.fsdecode(n.path), n.size, n.mac.hex())
                continue
            if n.type == T_FILE:
                t = b.tmp(n.id)
                work.append((n, t))
                new.append((t, n))
                continue
            data, n.mac = pfs.protect_bytes(_small_content(n), disk_name(n.id).encode(), key)
            old = prev.get(n.path.hex())
            if old is not None and old[0] == n.id and old[3] == n.mac.hex() \
                    and disk_name(n.id) in present:
                continue
            t = b.tmp(n.id)
            fsutil.write_file(t, data)
            new.append((t, n))
        b.protect(work, 0, todo)
        if trace:
            for n, _ in work:
                _log.log(log.TRACE, "%s: /%s: hashed and stored (%d bytes, MAC %s)", src,
                         os.fsdecode(n.path), n.size, n.mac.hex())
    except BaseException:
        for t in b.temps:
            t.unlink(missing_ok=True)
        raise
    if moves or new:
        marker = out_dir / MARKER
        fsutil.write_file(marker, b"")
        # Kept files whose id changed: renamed straight to the new id and re-headed (new
        # metadata node and MAC).  Kept files keep their relative order (the traversal order
        # is a fixed order of paths), so moving the ones that go up highest first and the ones
        # that go down lowest first never lands on a kept file still to move; should that
        # ever happen, the file goes through a temporary name instead.
        pending = {old_id for old_id, _ in moves}
        staged = []
        ordered = sorted((m for m in moves if m[1].id > m[0]), key=lambda m: -m[0]) + \
            sorted((m for m in moves if m[1].id < m[0]), key=lambda m: m[0])
        for old_id, n in ordered:
            pending.discard(old_id)
            if n.id in pending:
                dest = b.tmp(n.id)
                staged.append((dest, n))
            else:
                dest = out_dir / disk_name(n.id)
            os.replace(out_dir / disk_name(old_id), dest)
            b.reheader(dest, old_id, n)
            b.written += 1
        for t, n in staged:
            os.replace(t, out_dir / disk_name(n.id))
        for t, n in new:
            os.replace(t, out_dir / disk_name(n.id))
            b.written += 1
        names = {disk_name(n.id) for n in order} | {METADATA_FILE, MARKER}
        for p in out_dir.iterdir():
            if p.name not in names:
                with contextlib.suppress(OSError):
                    p.unlink()
    meta, mac = pfs.protect_bytes(encode_metadata(order), METADATA_FILE.encode(), key)
    mac_text = format_hex16(mac).encode()
    if moves or new or _differs(out_dir / METADATA_FILE, meta) or _differs(mac_file, mac_text):
        (out_dir / MARKER).touch()
        fsutil.atomic_write(out_dir / METADATA_FILE, meta)
        fsutil.atomic_write(mac_file, mac_text)
        (out_dir / MARKER).unlink()
    _save(cache_dir, tag, order, now_ns)
    files = [n for n in order if n.type == T_FILE]
    return ImageResult(
        mac=mac, entries=len(order), files=len(files), bytes_in=total,
        bytes_stored=sum(pfs.file_size(n.size if n.type != T_DIR else len(encode_dir(n)))
                         for n in order) + len(meta),
        objects_written=b.written, objects_reused=len(order) - b.written,
        seconds=time.perf_counter() - t0, bytes_read=b.bytes_read)


def _differs(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() != data
    except OSError:
        return True


def compute_mac(src: Path, *, key: bytes | None, cache_dir: Path | None = None,
                normalize_modes: bool = False, mtimes: MtimePolicy = None) -> bytes:
    """The root MAC ``build_image`` would give ``src``, writing nothing.  With ``cache_dir``,
    files whose stat key matches the manifest are not read (trusts the cache); without it
    every file is read (``occlum verify``)."""
    return _compute(Path(src), key, cache_dir, normalize_modes, mtimes)[1]


def matches_mac(src: Path, mac: bytes, *, key: bytes | None, cache_dir: Path,
                normalize_modes: bool = False, mtimes: MtimePolicy = None) -> bool:
    """``compute_mac(src, key=key, cache_dir=cache_dir, ...) == mac``.  When it is and files
    had to be read because their stat keys changed (a ``touch``, a ``cp -a`` copy of the
    instance: new inodes and ctimes), the manifest is re-keyed to the files as they are now,
    so they are not read again: the root MAC covers every inode MAC, so each one computed
    here is the one in the image."""
    now_ns = time.time_ns()
    order, got, read = _compute(Path(src), key, cache_dir, normalize_modes, mtimes)
    if got != mac:
        return False
    if read:
        _save(Path(cache_dir), key_tag(key), order, now_ns)
    return True


def _compute(src: Path, key: bytes | None, cache_dir: Path | None, normalize_modes: bool,
             mtimes: MtimePolicy) -> tuple[list[Inode], bytes, int]:
    """(inodes with their MACs, root MAC, number of files read)."""
    order = _walk(src, normalize_modes, mtimes)
    prev = {} if cache_dir is None else _load(Path(cache_dir), Path("/nonexistent"), key_tag(key))
    b = _Build(src, Path("/nonexistent"), key, None)
    work: list[tuple[Inode, Path | None]] = []
    for n in order:
        rec = _reusable(n, prev) if n.type == T_FILE else None
        if rec is not None and rec[0] == n.id:
            n.mac = bytes.fromhex(rec[3])
        elif n.type == T_FILE:  # changed, new, or kept under another id (node 0 differs)
            work.append((n, None))
        else:
            _, n.mac = pfs.protect_bytes(_small_content(n), disk_name(n.id).encode(), key)
    b.protect(work)
    return order, pfs.protect_bytes(encode_metadata(order), METADATA_FILE.encode(), key)[1], len(work)
