"""Building an image from a source tree, incrementally (docs/formats/image.md).

Order of effects, so that a failure at any point leaves the previous image usable:
objects (content addressed, each written to a temp name and renamed; not fsynced one by
one, see cache.py) -> metadata and MAC file (both written to temp names and fsynced, then
both renamed; skipped when unchanged) -> removal of objects no longer referenced ->
manifest. A failed build removes the objects it created. docs/formats/image.md section 9.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..errors import OutputError
from ..keys import format_hex16
from . import bigfile, cache, metadata
from .bigfile import BigFile, Result, Unit
from .crypto import ImageKey, image_mac, load_key
from .format import METADATA_FILE, OBJECTS_DIR, TYPE_FILE, object_size
from .objects import CHUNK, TMP_PREFIX, content_sha256, read_small, remove_temp_dirs, store_object
from .scan import Node, SourceError, scan

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
    entries: list[Node]  # the scan nodes, root and file id set: the metadata entries
    roots: set[bytes]
    written: int
    reused: int
    bytes_read: int
    files: int
    with_content: int  # files of at least one byte (each has an object)
    bytes_in: int
    stored: int


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
    if node.size <= CHUNK:  # read once (into this thread's buffer): hash, then seal from memory
        data = read_small(abs_path, node.size)
        digest = hashlib.sha256(data).digest()
    else:
        data, digest = None, content_sha256(abs_path, node.size)
    fid = key.file_id(digest)
    root, written = store_object(abs_path, node.size, objects_dir, key, fid, tick, created, data)
    return digest, root, fid, written


def default_jobs() -> int:
    """Worker threads when ``jobs`` is 0: one per CPU, at most 8 (every 4 KiB hash call
    releases and retakes the GIL, so more threads mostly add contention)."""
    return max(1, min(8, os.cpu_count() or 1))


def _run_units(units: list[Unit], jobs: int, tick: _Ticker) -> None:
    """Run units of work on worker threads (hashlib and AES-GCM release the GIL on large
    buffers). A unit may return follow-up units, run next. Progress is reported from this
    thread; the first failure is re-raised once every worker has stopped."""
    queue: collections.deque[Unit] = collections.deque(units)
    errors: list[BaseException] = []
    cond = threading.Condition()
    active = 0

    def worker() -> None:
        nonlocal active
        while True:
            with cond:
                while not queue and active and not errors:
                    cond.wait()
                if errors or not queue:
                    cond.notify_all()
                    return
                unit = queue.popleft()
                active += 1
            try:
                more = unit()
            except BaseException as e:  # noqa: BLE001 - handed to the calling thread
                more = []
                with cond:
                    errors.append(e)
            with cond:
                queue.extendleft(reversed(more))
                active -= 1
                cond.notify_all()

    n = max(1, min(jobs if jobs > 0 else default_jobs(), len(units) or 1))
    threads = [threading.Thread(target=worker, name=f"image-{k}", daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.25)
                tick.report()
    except BaseException:
        with cond:
            errors.append(KeyboardInterrupt())  # stop the workers, then re-raise
            cond.notify_all()
        for t in threads:
            t.join()
        raise
    if errors:
        raise errors[0]
    tick.report()


def _small_unit(
    results: dict[int, Result],
    i: int,
    node: Node,
    path: Path,
    objects_dir: Path | None,
    key: ImageKey | None,
    tick: _Ticker,
    created: list[Path],
) -> list[Unit]:
    results[i] = _file_job(node, path, objects_dir, key, tick, created)
    return []


def _plan(
    src: Path,
    nodes: list[Node],
    objects_dir: Path | None,
    key: ImageKey | None,
    manifest: cache.Manifest,
    progress: Progress | None,
    jobs: int,
    existing: set[str] | None,
) -> tuple[_Plan, cache.Manifest]:
    """Decide per file: reuse (stat key in the manifest and, when writing, its object present
    in ``existing``) or read; read on worker threads. Sets the root and file id of the file
    nodes (which then serve as the metadata entries); returns the plan and new manifest."""
    new_manifest = cache.Manifest(manifest.mode_tag)
    results: dict[int, Result] = {}
    todo: list[int] = []
    roots: set[bytes] = set()
    files = with_content = bytes_in = stored = 0
    encrypted = key is not None
    lookup, keep = manifest.lookup, new_manifest.keep
    for i, n in enumerate(nodes):  # hot loop of every rebuild (P3)
        if n.type != TYPE_FILE:
            continue
        files += 1
        size = n.size
        if not size:
            continue
        with_content += 1
        bytes_in += size
        rel = n.path
        rec = lookup(rel, n.st)
        if rec is not None and (existing is None or rec.root.hex() in existing):
            n.root = root = rec.root
            n.file_id = rec.file_id
            keep(rel, manifest)
            if root not in roots:
                roots.add(root)
                stored += object_size(size, encrypted)
        else:
            todo.append(i)
    tick = _Ticker(sum(nodes[i].size for i in todo), progress)
    tick.report()
    if todo:
        # Largest first keeps every worker busy to the end.
        todo.sort(key=lambda i: -nodes[i].size)
        created: list[Path] = []
        bigs: list[BigFile] = []
        units: list[Unit] = []
        for i in todo:
            path = src / os.fsdecode(nodes[i].path)
            if nodes[i].size > bigfile.SEGMENT:
                big = BigFile(
                    path, nodes[i].size, objects_dir, key, tick, created, partial(results.__setitem__, i)
                )
                bigs.append(big)
                units.extend(big.units())
            else:
                units.append(
                    partial(_small_unit, results, i, nodes[i], path, objects_dir, key, tick, created)
                )
        try:
            _run_units(units, jobs, tick)
        except BaseException:
            # Objects this build created are referenced by no metadata yet: remove them.
            for big in bigs:
                big.cleanup()
            for p in created:
                with contextlib.suppress(OSError):
                    p.unlink()
            raise
        finally:
            if objects_dir is not None:
                remove_temp_dirs(objects_dir)
    written: set[bytes] = set()
    for i in todo:
        n = nodes[i]
        assert n.st is not None
        digest, root, fid, w = results[i]
        n.root, n.file_id = root, fid
        new_manifest.put(n.path, cache.stat_key(n.st), digest, root, fid)
        if w:
            written.add(root)
        if root not in roots:
            roots.add(root)
            stored += object_size(n.size, encrypted)
    entries = nodes
    reused = len(roots) - len(written)
    plan = _Plan(entries, roots, len(written), reused, tick.done, files, with_content, bytes_in, stored)
    return plan, new_manifest


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
    and to be read. ``jobs`` is the number of worker threads (0: one per CPU, at most 8).
    """
    t0 = time.perf_counter()
    now_ns = time.time_ns()
    ikey = load_key(key)
    src, out_dir, mac_file, cache_dir = Path(src), Path(out_dir), Path(mac_file), Path(cache_dir)
    objects_dir = out_dir / OBJECTS_DIR
    for p in (out_dir, mac_file, cache_dir):
        if p.resolve().is_relative_to(src.resolve()):
            raise SourceError(
                "the image output would be inside its own source tree; choose another place", where=str(p)
            )
    nodes = scan(src)  # bad input is reported before anything is written
    try:
        objects_dir.mkdir(parents=True, exist_ok=True)
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output directory: {e.strerror}", where=str(out_dir)) from None
    for path in (out_dir / METADATA_FILE, mac_file):  # temps of a build killed while committing
        for stale in path.parent.glob(f".{path.name}.tmp*"):
            with contextlib.suppress(OSError):
                stale.unlink()
    mpath = cache.manifest_path(cache_dir, MANIFEST_NAME)
    manifest = cache.load(mpath, _mode_tag(ikey))
    # The objects directory unchanged since the manifest was saved holds exactly the objects
    # its records name: no need to list it (nor to check that a record's object exists).
    known = manifest.objects is not None and manifest.objects == cache.objects_stat(objects_dir, now_ns)
    existing = None if known else _list_objects(objects_dir)
    plan, new_manifest = _plan(src, nodes, objects_dir, ikey, manifest, progress, jobs, existing)
    meta = metadata.encode(plan.entries, ikey)
    mac = image_mac(meta)
    outputs = [(out_dir / METADATA_FILE, meta), (mac_file, format_hex16(mac).encode())]
    if not all(_same_bytes(p, b) for p, b in outputs):  # a no-op build writes nothing
        _commit(outputs)
    if existing is None:  # only the objects of dropped records can have become unreferenced
        stale = {r.hex() for r in cache.dropped_roots(manifest, new_manifest) - plan.roots}
    else:
        stale = existing - {r.hex() for r in plan.roots}
    pruned = _remove_objects(objects_dir, stale)
    if pruned and len(new_manifest.raw) == plan.with_content:
        new_manifest.objects = cache.objects_stat(objects_dir, time.time_ns())
    cache.save(mpath, new_manifest, now_ns, manifest)
    return ImageResult(
        mac=mac,
        entries=len(plan.entries),
        files=plan.files,
        bytes_in=plan.bytes_in,
        bytes_stored=plan.stored,
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
    ikey = load_key(key)
    tag = _mode_tag(ikey)
    manifest = cache.load(cache.manifest_path(Path(cache_dir), MANIFEST_NAME), tag) if cache_dir else None
    plan, _ = _plan(Path(src), scan(Path(src)), None, ikey, manifest or cache.Manifest(tag), None, 0, None)
    return image_mac(metadata.encode(plan.entries, ikey))


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        if os.stat(path).st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


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


def _list_objects(objects_dir: Path) -> set[str]:
    """Names of the objects present (one readdir, no stat); temp files of a killed build
    are removed on the way."""
    names = set()
    with os.scandir(objects_dir) as it:
        for de in it:
            if de.name.startswith(TMP_PREFIX):  # a file or a thread's temp directory
                if de.is_dir(follow_symlinks=False):
                    shutil.rmtree(de.path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(de.path)
            else:
                names.add(de.name)
    return names


def _remove_objects(objects_dir: Path, stale: set[str]) -> bool:
    """Remove the objects that were there before this build and are no longer referenced;
    False if one could not be removed."""
    ok = True
    for name in stale:
        try:
            os.unlink(objects_dir / name)
        except FileNotFoundError:
            pass
        except OSError:
            ok = False
    return ok


__all__ = ["ImageResult", "build_image", "compute_mac", "object_size"]
