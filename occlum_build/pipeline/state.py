"""The pipeline's state directory (build/.state) and the build lock.

build/.state holds occlum-build's own bookkeeping, never an input a user edits:

    state.json      format version of this directory (anything else means "discard it") and
                    the instance dir it was made in (a copied or moved instance: relocate)
    doit.sqlite     doit's dependency database (sqlite3 backend: one file, transactional)
    hashes.json     stat-key -> sha256 cache of the content checker (checker.py)
    image/, initfs/ the image stage's per-file manifests (its cache_dir)
    stages/<n>.json what each stage recorded the last time it ran (stats, seconds)

Nothing in it is trusted blindly: a state dir that cannot be read is discarded with a
warning and the build starts from scratch (every output is then rebuilt or re-checked).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import log
from ..errors import OutputError
from ..fsutil import atomic_write, own_dir
from ..paths import CONFIG_FILE, OUTPUT_DIR_MODE, STATE_DIR_MODE, Instance

_log = log.get("pipeline")

STATE_VERSION = 1


@dataclass(frozen=True)
class StateDir:
    """Paths inside build/.state of one instance."""

    inst: Instance

    @property
    def dir(self) -> Path:
        return self.inst.state_dir

    @property
    def meta(self) -> Path:
        return self.dir / "state.json"

    @property
    def dep_file(self) -> Path:
        return self.dir / "doit.sqlite"

    @property
    def hashes(self) -> Path:
        return self.dir / "hashes.json"

    @property
    def image_cache(self) -> Path:
        return self.dir / "image"

    @property
    def initfs_cache(self) -> Path:
        return self.dir / "initfs"

    @property
    def initfs_staging(self) -> Path:
        return self.dir / "initfs-src"

    def stage_file(self, name: str) -> Path:
        return self.dir / "stages" / f"{name}.json"

    # ------------------------------------------------------------------ lifecycle
    def prepare(self) -> None:
        """Create the state dir, or discard it (with a warning) if it is not readable."""
        problem = self._problem() if self.dir.exists() or self.dir.is_symlink() else None
        if problem:
            _log.warning("discarding the build state in %s (%s); rebuilding from scratch",
                         self.dir, problem)
            self.discard()
        try:
            own_dir(self.inst.build, OUTPUT_DIR_MODE)
            own_dir(self.dir, STATE_DIR_MODE)
        except OSError as e:
            raise OutputError(f"cannot create the build state dir: {e.strerror}",
                              where=str(self.dir)) from None
        if not self.meta.exists():
            self._write_meta()
            return
        old = self._recorded_root()
        if old != str(self.inst.root):
            if old is not None:
                self.relocate(old)
            self._write_meta()

    def _write_meta(self) -> None:
        atomic_write(self.meta, json.dumps({"version": STATE_VERSION, "root": str(self.inst.root)}) + "\n")

    def _recorded_root(self) -> str | None:
        """The instance dir recorded in state.json; for a state dir written before it was
        recorded, the dir of the Occlum.json that doit's database names."""
        try:
            root = json.loads(self.meta.read_text()).get("root")
        except (OSError, ValueError, AttributeError):
            return None
        if isinstance(root, str):
            return root
        try:
            con = sqlite3.connect(f"file:{self.dep_file}?mode=ro", uri=True)
            try:
                row = con.execute("SELECT task_data FROM doit WHERE task_id = 'enclave_xml'").fetchone()
            finally:
                con.close()
            deps = json.loads(row[0]).get("deps:") if row else None
        except (sqlite3.Error, ValueError, AttributeError):
            return None
        for d in deps if isinstance(deps, list) else ():
            if isinstance(d, str) and d.endswith("/" + CONFIG_FILE):
                return d[: -len(CONFIG_FILE) - 1]
        return None

    def relocate(self, old: str) -> None:
        """The instance was copied (``cp -a``) or moved from ``old``: the bookkeeping names
        files by absolute path (doit's dependency db, the hash cache, the stage records), so
        the paths under ``old`` are renamed to the same paths under this instance.  Nothing is
        trusted more for it: each file's stat key (inode, ctime) differs after a copy, so every
        one is hashed once and compared by content, and an unchanged copy rebuilds nothing."""
        new = str(self.inst.root)
        _log.debug("build state of %s: relocating paths from %s", new, old)

        def move(path: str) -> str:
            return new + path[len(old):] if path == old or path.startswith(old + "/") else path

        def move_keys(d: dict[str, Any]) -> dict[str, Any]:
            return {move(k): v for k, v in d.items()}

        if self.dep_file.exists():
            try:
                con = sqlite3.connect(self.dep_file)
                try:
                    with con:
                        rows = con.execute("SELECT task_id, task_data FROM doit").fetchall()
                        for task_id, blob in rows:
                            data = move_keys(json.loads(blob))
                            if isinstance(data.get("deps:"), list):
                                data["deps:"] = [move(d) for d in data["deps:"]]
                            con.execute("UPDATE doit SET task_data = ? WHERE task_id = ?",
                                        (json.dumps(data), task_id))
                finally:
                    con.close()
            except (sqlite3.Error, ValueError, AttributeError) as e:
                _log.warning("discarding the dependency database %s (%s)", self.dep_file, e)
                self.dep_file.unlink(missing_ok=True)
        try:
            cache = json.loads(self.hashes.read_text())
            if isinstance(cache, dict) and isinstance(cache.get("files"), dict):
                cache["files"] = move_keys(cache["files"])
                atomic_write(self.hashes, json.dumps(cache, separators=(",", ":")), durable=False)
        except (OSError, ValueError):
            pass  # no cache, or an unreadable one (the checker ignores it)
        stages = self.dir / "stages"
        for f in sorted(stages.glob("*.json")) if stages.is_dir() else ():
            rec = self.read_stage(f.stem)
            stats = rec.get("stats") if rec else None
            if rec and isinstance(stats, dict) and isinstance(stats.get("outputs"), dict):
                self.write_stage(f.stem, {**rec, "stats": {**stats, "outputs": move_keys(stats["outputs"])}})

    def _problem(self) -> str | None:
        if self.dir.is_symlink() or not self.dir.is_dir():
            return "not a directory"
        try:
            meta = json.loads(self.meta.read_text())
        except FileNotFoundError:
            return "no state.json"
        except (OSError, ValueError) as e:
            return f"state.json unreadable: {e}"
        if not isinstance(meta, dict) or meta.get("version") != STATE_VERSION:
            return "state.json of another format version"
        if self.dep_file.exists():
            try:
                con = sqlite3.connect(f"file:{self.dep_file}?mode=ro", uri=True)
                try:
                    ok = con.execute("PRAGMA quick_check").fetchone()
                    if not ok or ok[0] != "ok":
                        return "dependency database fails its integrity check"
                    for (blob,) in con.execute("SELECT task_data FROM doit"):
                        json.loads(blob)
                finally:
                    con.close()
            except (sqlite3.Error, ValueError) as e:
                return f"dependency database unreadable: {e}"
        return None

    def discard(self) -> None:
        if self.dir.is_symlink() or (self.dir.exists() and not self.dir.is_dir()):
            self.dir.unlink()
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ stage records
    def write_stage(self, name: str, record: dict[str, Any]) -> None:
        # Not fsynced (fsutil.atomic_open): a record lost or emptied by a crash reads as None
        # or as the previous record, whose output digests no longer match the (fsynced)
        # outputs, so the stage runs again; a record is never trusted without that check.
        atomic_write(self.stage_file(name), json.dumps(record, sort_keys=True) + "\n", durable=False)

    def read_stage(self, name: str) -> dict[str, Any] | None:
        try:
            rec = json.loads(self.stage_file(name).read_text())
        except (OSError, ValueError):
            return None
        return rec if isinstance(rec, dict) else None


@contextlib.contextmanager
def build_lock(inst: Instance, *, shared: bool = False) -> Iterator[None]:
    """Hold the instance's build lock (exclusive for builds, shared for readers).

    Waits for a concurrent holder, saying so on stderr.  flock is released by the kernel when
    the holder exits, so a killed build never leaves a stale lock behind.
    """
    path = inst.build_lock
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise OutputError(f"cannot open the build lock: {e.strerror}", where=str(path)) from None
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            print(f"Waiting for another build of {inst.root} (pid {holder}) to finish...",
                  file=log.status_stream(), flush=True)
            fcntl.flock(fd, mode)
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
