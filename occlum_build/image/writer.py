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
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from cryptography.exceptions import InvalidTag

from ..errors import OutputError
from ..keys import format_hex16
from . import bigfile, cache, directio, metadata
from .bigfile import BigFile, Result, Unit
from .crypto import ImageKey, image_mac, load_key
from .format import METADATA_FILE, OBJECTS_DIR, TYPE_DIR, TYPE_FILE, TYPE_SYMLINK, object_size
from .objects import CHUNK, TMP_PREFIX, content_sha256, read_small, remove_temp_dirs, store_object
from .scan import KEY, Node, SourceError, Walk, node_of, walk

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
    """What a build decided: the new manifest's entry keys and records (``cache.REC``
    each, in one buffer) and a metadata node for each entry it (re)makes, by number."""

    keys: list[bytes]
    recs: bytearray
    nodes: dict[int, Node]
    aligned: bool  # same paths as the previous manifest, entry for entry
    todo: list[int]  # entries whose files must be read
    written: set[bytes] = field(default_factory=set)  # roots of the objects written
    bytes_read: int = 0

    def set_rec(self, i: int, rec: bytes) -> None:
        self.recs[i * cache.REC.size : (i + 1) * cache.REC.size] = rec


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
    direct: bool = False,
) -> tuple[bytes, bytes, bytes, bool]:
    """(content digest, root, file_id, written) of one file that must be read."""
    if key is None:
        root, written = store_object(abs_path, node.size, objects_dir, None, None, tick, created,
                                     direct=direct)
        return root, root, bytes(16), written
    if node.size <= CHUNK:  # read once (into this thread's buffer): hash, then seal from memory
        data = read_small(abs_path, node.size)
        digest = hashlib.sha256(data).digest()
    else:
        data, digest = None, content_sha256(abs_path, node.size)
    fid = key.file_id(digest)
    root, written = store_object(abs_path, node.size, objects_dir, key, fid, tick, created, data, direct)
    return digest, root, fid, written


def default_jobs() -> int:
    """Worker threads when ``jobs`` is 0: one per CPU, at most 8. Leaves hashed natively
    (native.py) and O_DIRECT writes hold no GIL; without the native library every 4 KiB
    hash call releases and retakes it, and more threads mostly add contention."""
    return max(1, min(8, os.cpu_count() or 1))


SMALL_FILE = 256 << 10  # files below this go to one worker only (see _run_units)


def _run_units(units: list[Unit], jobs: int, tick: _Ticker, small: list[Unit] | None = None) -> None:
    """Run units of work on worker threads. A unit may return follow-up units, run next.
    Progress is reported from this thread; the first failure is re-raised once every
    worker has stopped.

    ``small`` (files below SMALL_FILE) are run by one worker only, which takes the other
    units once they are done: a small file is mostly Python and syscalls, each syscall
    hands the interpreter lock over, and two threads doing that at once spend more time
    waking each other (futex) than working: measured, 3276 files of 16 KiB took 0.54 s on
    two workers, about half that on one. The large units (native hashing, O_DIRECT
    writes) hold the lock little, so they run beside it on the other workers."""
    queue: collections.deque[Unit] = collections.deque(units)
    smalls: collections.deque[Unit] = collections.deque(small or ())
    errors: list[BaseException] = []
    cond = threading.Condition()
    active = 0

    def worker(takes_small: bool) -> None:
        nonlocal active
        while True:
            with cond:
                while not queue and not (takes_small and smalls) and active and not errors:
                    cond.wait()
                if errors or not (queue or (takes_small and smalls)):
                    cond.notify_all()
                    return
                unit = smalls.popleft() if takes_small and smalls else queue.popleft()
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

    n = max(1, min(jobs if jobs > 0 else default_jobs(), len(units) + (1 if smalls else 0) or 1))
    threads = [threading.Thread(target=worker, args=(k == 0,), name=f"image-{k}", daemon=True)
               for k in range(n)]
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
    direct: bool,
) -> list[Unit]:
    results[i] = _file_job(node, path, objects_dir, key, tick, created, direct)
    return []


def _decide(
    w: Walk, prev: cache.Manifest, existing: set[str] | None
) -> tuple[list[int], dict[int, int] | None]:
    """(the entries to make again, the previous record number of each other entry).

    When the paths are those of the previous manifest (no entry added or removed: the
    usual edit-and-rebuild) entry ``i`` is compared with record ``i`` and the numbering
    returned is None; else records are found by path. A record is reused when its entry
    key is unchanged and, if ``existing`` lists the objects present, its object is there."""
    same: dict[int, int] | None = None
    if w.paths == prev.paths:
        changed = cache.differing(b"".join(w.keys), prev.keys, KEY.size)
    else:
        index, key = prev.index(), prev.key
        same, changed = {}, []
        for i, (path, k) in enumerate(zip(w.paths, w.keys, strict=True)):
            j = index.get(path)
            if j is not None and key(j) == k:
                same[i] = j
            else:
                changed.append(i)
    if existing is not None:  # objects listed: reuse only records whose object is there
        roots = [r[2] for r in cache.REC.iter_unpack(prev.recs)]
        pairs = enumerate(roots) if same is None else ((i, roots[j]) for i, j in same.items())
        gone = {i for i, r in pairs if r != cache.NO_ROOT and r.hex() not in existing}
        if gone:
            changed = sorted(set(changed) | gone)
            if same is not None:
                for i in gone:
                    del same[i]
    return changed, same


def _plan(src: Path, w: Walk, prev: cache.Manifest, existing: set[str] | None, now_ns: int) -> _Plan:
    """Decide which entries to make again (``_decide``) and make their nodes: every
    entry that cannot be stored is reported here, before anything is written. The files
    among them are read by ``_read``."""
    changed, same = _decide(w, prev, existing)
    if same is None:
        recs = bytearray(prev.recs)
    else:
        recs = bytearray(
            b"".join([prev.rec(same[i]) if i in same else cache.NO_REC for i in range(len(w.paths))])
        )
    plan = _Plan(list(w.keys), recs, {}, same is None, [])
    for i in changed:
        k = w.keys[i]
        n = plan.nodes[i] = node_of(src, w.paths[i], k)
        if n.type == TYPE_FILE and n.size:
            plan.todo.append(i)
        else:
            plan.set_rec(i, cache.REC.pack(n.type, n.size, b"", b""))
        if n.type != TYPE_DIR and cache.is_racy(k, now_ns):
            plan.keys[i] = cache.NEVER
    return plan


def _read(
    src: Path,
    plan: _Plan,
    objects_dir: Path | None,
    key: ImageKey | None,
    progress: Progress | None,
    jobs: int,
) -> None:
    """Read the files of ``plan.todo``, store their objects and fill in their records."""
    nodes = plan.nodes
    results = _read_files(src, nodes, plan.todo, objects_dir, key, progress, jobs)
    for i in plan.todo:
        n = nodes[i]
        _, root, fid, w = results[i]
        n.root, n.file_id = root, fid
        plan.set_rec(i, cache.REC.pack(n.type, n.size, root, fid))
        plan.bytes_read += n.size
        if w:
            plan.written.add(root)


def _read_files(
    src: Path,
    nodes: dict[int, Node],
    todo: list[int],
    objects_dir: Path | None,
    key: ImageKey | None,
    progress: Progress | None,
    jobs: int,
) -> dict[int, Result]:
    """Read the files ``todo`` (entry numbers) on worker threads and store their objects."""
    results: dict[int, Result] = {}
    tick = _Ticker(sum(nodes[i].size for i in todo), progress)
    tick.report()
    if not todo:
        return results
    # Largest first keeps every worker busy to the end.
    todo = sorted(todo, key=lambda i: -nodes[i].size)
    created: list[Path] = []
    direct = tick.total >= directio.MIN_BUILD
    bigs: list[BigFile] = []
    units: list[Unit] = []
    small: list[Unit] = []
    for i in todo:
        n = nodes[i]
        path = src / os.fsdecode(n.path)
        if n.size > bigfile.SEGMENT:
            big = BigFile(path, n.size, objects_dir, key, tick, created, partial(results.__setitem__, i),
                          direct)
            bigs.append(big)
            units.extend(big.units())
        else:
            unit = partial(_small_unit, results, i, n, path, objects_dir, key, tick, created, direct)
            (small if n.size < SMALL_FILE else units).append(unit)
    try:
        if len(todo) == 1 and not bigs:  # one file (an edit): no worker thread to start
            (units or small)[0]()
            tick.report()
        else:
            _run_units(units, jobs, tick, small)
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
    return results


def _metadata(
    src: Path, w: Walk, plan: _Plan, prev: cache.Manifest, old: bytes | None, key: ImageKey | None
) -> bytes:
    """The metadata file bytes: the previous ones (``old``, whose SHA-256 the manifest
    recorded) patched at the changed entries when that is possible, else encoded from a
    node per entry."""
    if old is not None and plan.aligned and hashlib.sha256(old).digest() == prev.metadata_sha:
        if not plan.nodes:
            return old
        changed = sorted(plan.nodes.items())
        if all(n.type != TYPE_SYMLINK and prev.recs[i * cache.REC.size] != TYPE_SYMLINK for i, n in changed):
            try:
                return metadata.seal(metadata.patch_plain(metadata.open_sealed(old, key), changed), key)
            except (ValueError, InvalidTag):
                pass  # not what this writer wrote: encode from scratch
    entries = []
    for i, (path, k) in enumerate(zip(w.paths, w.keys, strict=True)):
        n = plan.nodes.get(i)
        if n is None:
            n = node_of(src, path, k)
            r = plan.recs[i * cache.REC.size : (i + 1) * cache.REC.size]
            n.root, n.file_id = bytes(r[cache.ROOT]), bytes(r[cache.FILE_ID])
        entries.append(n)
    return metadata.encode(entries, key)


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
    mpath = cache.manifest_path(cache_dir, MANIFEST_NAME)
    # The walk (bad input is reported before anything is written) runs in C without the GIL
    # (native.py): load the manifest meanwhile.
    walked: list[Walk | BaseException] = []
    walker = threading.Thread(target=_walk_into, args=(src, walked), name="image-walk")
    walker.start()
    try:
        prev = cache.load(mpath, _mode_tag(ikey))
        # The objects directory unchanged since the manifest was saved holds exactly the
        # objects its records name: no need to list it (nor to check that a record's object
        # exists).
        known = prev.objects is not None and prev.objects == cache.objects_stat(objects_dir, now_ns)
    finally:
        walker.join()
    if isinstance(walked[0], BaseException):
        raise walked[0]
    w = walked[0]
    existing = None if known else _list_objects(objects_dir)
    plan = _plan(src, w, prev, existing, now_ns)
    try:
        objects_dir.mkdir(parents=True, exist_ok=True)
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output directory: {e.strerror}", where=str(out_dir)) from None
    for path in (out_dir / METADATA_FILE, mac_file):  # temps of a build killed while committing
        for stale in path.parent.glob(f".{path.name}.tmp*"):
            with contextlib.suppress(OSError):
                stale.unlink()
    _read(src, plan, objects_dir, ikey, progress, jobs)
    old = _read_or_none(out_dir / METADATA_FILE) if prev.metadata_sha else None
    meta = _metadata(src, w, plan, prev, old, ikey)
    mac = image_mac(meta)
    outputs = [(out_dir / METADATA_FILE, meta), (mac_file, format_hex16(mac).encode())]
    if meta != old or not _same_bytes(mac_file, outputs[1][1]):  # a no-op build writes nothing
        _commit(outputs)
    encrypted = ikey is not None
    if plan.aligned and existing is None:  # only the objects of changed records can be unreferenced
        changed = sorted(plan.nodes)
        sums, gone = cache.updated_totals(prev.totals, prev.recs, plan.recs, changed, encrypted)
        stale = {r.hex() for r in gone}
    else:
        sums, roots = cache.totals(plan.recs, encrypted)
        if existing is None:  # only the objects of dropped records can be unreferenced
            stale = {r.hex() for r in prev.roots() - roots}
        else:
            stale = existing - {r.hex() for r in roots}
    pruned = _remove_objects(objects_dir, stale)
    meta_sha = hashlib.sha256(meta).digest()
    new = cache.Manifest(prev.mode_tag, w.paths, b"".join(plan.keys), plan.recs, meta_sha, sums)
    if plan.aligned:
        new.names = prev.names
    if pruned:
        new.objects = cache.objects_stat(objects_dir, time.time_ns())
    if not (
        plan.aligned
        and not plan.nodes
        and new.metadata_sha == prev.metadata_sha
        and new.objects == prev.objects
    ):
        cache.save(mpath, new)
    return ImageResult(
        mac=mac,
        entries=len(w.paths),
        files=sums.files,
        bytes_in=sums.bytes_in,
        bytes_stored=sums.stored,
        objects_written=len(plan.written),
        objects_reused=sums.objects - len(plan.written),
        seconds=time.perf_counter() - t0,
        bytes_read=plan.bytes_read,
    )


def _walk_into(src: Path, out: list[Walk | BaseException]) -> None:
    try:
        out.append(walk(src))
    except BaseException as e:  # noqa: BLE001 - re-raised by the caller
        out.append(e)


def compute_mac(src: Path, *, key: bytes | None, cache_dir: Path | None = None) -> bytes:
    """The MAC ``build_image`` would produce for ``src``, writing nothing.

    With ``cache_dir``, files whose stat key matches the manifest are not read (fast, trusts
    the cache); without it every file is read (what ``occlum verify`` should use).
    """
    ikey = load_key(key)
    tag = _mode_tag(ikey)
    prev = cache.load(cache.manifest_path(Path(cache_dir), MANIFEST_NAME), tag) if cache_dir else None
    w = walk(Path(src))
    plan = _plan(Path(src), w, prev or cache.Manifest(tag), None, time.time_ns())
    _read(Path(src), plan, None, ikey, None, 0)
    return image_mac(_metadata(Path(src), w, plan, cache.Manifest(tag), None, ikey))


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


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
    names: set[str] = set()
    if not objects_dir.is_dir():
        return names
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
