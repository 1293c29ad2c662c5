"""Building an image from a source tree, incrementally (docs/formats/image.md).

Order of effects, so that a failure at any point leaves the previous image usable:
objects (content addressed, each written to a temp name, fsynced, renamed) -> metadata
(atomic) -> MAC file (atomic) -> removal of objects no longer referenced -> manifest.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from ..errors import KeyFileError, OutputError
from ..keys import format_hex16
from . import cache, metadata
from .crypto import ImageKey, image_mac
from .format import METADATA_FILE, OBJECTS_DIR, TYPE_FILE, Entry, object_size
from .objects import TMP_PREFIX, content_sha256, store_object
from .scan import Node, scan

MANIFEST_NAME = "image"
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ImageResult:
    mac: bytes
    entries: int
    files: int
    bytes_in: int  # plain bytes of all regular files in the tree
    bytes_stored: int  # bytes of all distinct objects of the image
    objects_written: int
    objects_reused: int
    seconds: float
    bytes_read: int = 0  # source bytes read by this build (0 on a no-op build)


@dataclass
class _Plan:
    entries: list[Entry]
    roots: set[bytes]
    written: int
    reused: int
    bytes_read: int
    files: int
    bytes_in: int


def _mode_tag(key: ImageKey | None) -> str:
    return "integrity-only" if key is None else f"encrypted:{key.fingerprint()}"


class _Ticker:
    """Thread-safe byte counter reported to ``progress`` from the calling thread."""

    def __init__(self, total: int, progress: Progress | None):
        self.done = 0
        self.total = total
        self.progress = progress
        self._lock = threading.Lock()

    def __call__(self, n: int) -> None:
        with self._lock:
            self.done += n

    def report(self) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total)


def _file_job(
    node: Node,
    abs_path: Path,
    objects_dir: Path | None,
    key: ImageKey | None,
    tick: _Ticker,
    created: list[Path],
) -> tuple[bytes, bytes, bytes, bool]:
    """(content digest, root, file_id, written) of one file that must be read."""
    if key is None:
        root, written = store_object(abs_path, node.size, objects_dir, None, None, tick, created)
        return root, root, bytes(16), written
    digest = content_sha256(abs_path, node.size)
    fid = key.file_id(digest)
    root, written = store_object(abs_path, node.size, objects_dir, key, fid, tick, created)
    return digest, root, fid, written


def _plan(
    src: Path,
    nodes: list[Node],
    objects_dir: Path | None,
    key: ImageKey | None,
    manifest: cache.Manifest,
    progress: Progress | None,
    jobs: int,
) -> tuple[_Plan, cache.Manifest]:
    new_manifest = cache.Manifest(manifest.mode_tag)
    results: dict[int, tuple[bytes, bytes, bytes, bool]] = {}
    todo: list[int] = []
    files = bytes_in = 0
    for i, n in enumerate(nodes):
        if n.type != TYPE_FILE or n.size == 0:
            continue
        files += 1
        bytes_in += n.size
        rel = os.fsdecode(n.path)
        assert n.st is not None
        rec = manifest.lookup(rel, cache.stat_key(n.st))
        if rec is not None and (objects_dir is None or _object_ok(objects_dir / rec.root.hex(), n.size, key)):
            results[i] = (rec.content, rec.root, rec.file_id, False)
        else:
            todo.append(i)
    files += sum(1 for n in nodes if n.type == TYPE_FILE and n.size == 0)
    tick = _Ticker(sum(nodes[i].size for i in todo), progress)
    tick.report()
    if todo:
        workers = jobs if jobs > 0 else (os.cpu_count() or 1)
        # Largest first keeps both workers busy to the end.
        todo.sort(key=lambda i: -nodes[i].size)
        created: list[Path] = []
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="image") as pool:
                futs: dict[Future[tuple[bytes, bytes, bytes, bool]], int] = {}
                try:
                    for i in todo:
                        path = src / os.fsdecode(nodes[i].path)
                        futs[pool.submit(_file_job, nodes[i], path, objects_dir, key, tick, created)] = i
                    pending = set(futs)
                    while pending:
                        done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                        for f in done:
                            results[futs[f]] = f.result()
                        tick.report()
                except BaseException:
                    for f in futs:
                        f.cancel()
                    raise
        except BaseException:
            # Objects this build created are referenced by no metadata yet: remove them.
            for p in created:
                with contextlib.suppress(OSError):
                    p.unlink()
            raise
    entries = []
    roots: set[bytes] = set()
    written: set[bytes] = set()
    for i, n in enumerate(nodes):
        if i in results:
            digest, root, fid, w = results[i]
            if w:
                written.add(root)
            roots.add(root)
            assert n.st is not None
            new_manifest.files[os.fsdecode(n.path)] = cache.Record(cache.stat_key(n.st), digest, root, fid)
            entries.append(Entry(n.path, n.type, n.mode, n.size, b"", root, fid))
        else:
            entries.append(Entry(n.path, n.type, n.mode, n.size, n.target))
    plan = _Plan(entries, roots, len(written), len(roots) - len(written), tick.done, files, bytes_in)
    return plan, new_manifest


def _object_ok(path: Path, size: int, key: ImageKey | None) -> bool:
    """Cheap sanity check before reusing an object the manifest names."""
    try:
        return os.stat(path).st_size == object_size(size, key is not None)
    except OSError:
        return False


def _load_key(key: bytes | None) -> ImageKey | None:
    if key is None:
        return None
    if not isinstance(key, bytes) or len(key) != 16:
        raise KeyFileError("an image key must be 16 bytes (a file written by `occlum gen-image-key`)")
    return ImageKey.from_key(key)


def build_image(
    src: Path,
    out_dir: Path,
    mac_file: Path,
    *,
    key: bytes | None,
    cache_dir: Path,
    progress: Progress | None = None,
    jobs: int = 0,
) -> ImageResult:
    """Build (or update) the image of ``src`` in ``out_dir`` and its MAC file.

    ``cache_dir`` holds this image's manifest (give each image its own directory).
    ``progress(done, total)`` is called from this thread with source bytes read so far
    and to be read. ``jobs`` is the number of worker threads (0: one per CPU).
    """
    t0 = time.perf_counter()
    now_ns = time.time_ns()
    ikey = _load_key(key)
    src, out_dir, mac_file, cache_dir = Path(src), Path(out_dir), Path(mac_file), Path(cache_dir)
    objects_dir = out_dir / OBJECTS_DIR
    nodes = scan(src)  # bad input is reported before anything is written
    try:
        objects_dir.mkdir(parents=True, exist_ok=True)
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output directory: {e.strerror}", where=str(out_dir)) from None
    _remove_temps(objects_dir)
    mpath = cache.manifest_path(cache_dir, MANIFEST_NAME)
    manifest = cache.load(mpath, _mode_tag(ikey))
    plan, new_manifest = _plan(src, nodes, objects_dir, ikey, manifest, progress, jobs)
    meta = metadata.encode(plan.entries, ikey)
    mac = image_mac(meta)
    _commit([(out_dir / METADATA_FILE, meta), (mac_file, format_hex16(mac).encode())])
    stored = _prune(objects_dir, plan.roots)
    cache.save(mpath, new_manifest, now_ns)
    return ImageResult(
        mac=mac,
        entries=len(plan.entries),
        files=plan.files,
        bytes_in=plan.bytes_in,
        bytes_stored=stored,
        objects_written=plan.written,
        objects_reused=plan.reused,
        seconds=time.perf_counter() - t0,
        bytes_read=plan.bytes_read,
    )


def compute_mac(src: Path, *, key: bytes | None, cache_dir: Path | None = None) -> bytes:
    """The MAC ``build_image`` would produce for ``src``, writing nothing.

    With ``cache_dir``, files whose stat key matches the manifest are not read (fast, trusts
    the cache); without it every file is read (what ``occlum verify`` should use).
    """
    ikey = _load_key(key)
    tag = _mode_tag(ikey)
    manifest = cache.load(cache.manifest_path(Path(cache_dir), MANIFEST_NAME), tag) if cache_dir else None
    plan, _ = _plan(Path(src), scan(Path(src)), None, ikey, manifest or cache.Manifest(tag), None, 0)
    return image_mac(metadata.encode(plan.entries, ikey))


def _commit(files: list[tuple[Path, bytes]]) -> None:
    """Write every file to a temp name and fsync them all, then rename them all: running out
    of space (or any write error) leaves every previous output as it was."""
    temps: list[Path] = []
    try:
        for path, data in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            temps.append(tmp)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
                os.fchmod(fd, 0o644)
            finally:
                os.close(fd)
        for (path, _), tmp in zip(files, temps, strict=True):
            os.replace(tmp, path)
        for d in {p.parent for p, _ in files}:
            dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError as e:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        what = "no space left on device" if e.errno == errno.ENOSPC else f"cannot write: {e.strerror or e}"
        raise OutputError(f"{what}; previous image kept", where=str(e.filename or files[0][0])) from None


def _remove_temps(objects_dir: Path) -> None:
    """Temp objects left by a killed build."""
    with os.scandir(objects_dir) as it:
        for de in it:
            if de.name.startswith(TMP_PREFIX):
                with contextlib.suppress(OSError):
                    os.unlink(de.path)


def _prune(objects_dir: Path, keep: set[bytes]) -> int:
    """Remove objects not in ``keep``; return the total size of the kept ones."""
    names = {r.hex() for r in keep}
    total = 0
    with os.scandir(objects_dir) as it:
        for de in it:
            if de.name in names:
                total += de.stat().st_size
            elif not de.name.startswith(TMP_PREFIX):
                with contextlib.suppress(OSError):
                    os.unlink(de.path)
    return total


__all__ = ["ImageResult", "build_image", "compute_mac", "object_size"]
