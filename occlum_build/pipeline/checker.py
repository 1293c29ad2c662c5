"""Content-hash up-to-date checks for doit, with a stat-key cache.

doit's default ``md5`` checker trusts an unchanged mtime (a content edit with the mtime reset
is missed) and, after a bare ``touch``, re-hashes the touched file on every later run because
doit saves state only for tasks that ran (research/doit_ecosystem.md 1.4, PR #431).  Here:

* a file's *stat key* is fsutil.stat_key (dev, ino, size, mtime_ns, ctime_ns, mode); ctime
  cannot be set by ``touch -d``/``utime``, so an edit whose mtime was reset still changes it;
* when the key differs from the saved one, the file is hashed (SHA-256) and compared by
  content, so ``touch`` alone never makes a task run;
* every digest computed is kept in :class:`HashCache` (``build/.state/hashes.json``) under its
  new stat key, so a touched file is hashed once, not on every later run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, cast

from doit.dependency import FileChangedChecker

from .. import log
from ..fsutil import StatKey, atomic_write, stat_key

_log = log.get("pipeline")

CACHE_VERSION = 2  # 2: the six-field fsutil.stat_key
_K = 6  # len(StatKey)
_SIZE = 2  # StatKey's st_size field


def sha256_file(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class HashCache:
    """path -> (stat key, sha256) for files we hashed; persisted between runs.

    A corrupt or unreadable cache file is ignored (everything is re-hashed): it is an
    optimisation, never trusted for more than "this exact stat key had this digest".
    """

    def __init__(self, path: Path | None = None):
        self.path = path
        self._map: dict[str, tuple[StatKey, str]] = {}
        self._dirty = False
        self.hashed = 0  # files actually read this run (for tests and benchmarks)
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            raw = json.loads(path.read_text())
            if raw.get("version") != CACHE_VERSION:
                return
            for p, (k, d) in raw["files"].items():
                if len(k) == _K and isinstance(d, str) and len(d) == 64:
                    # cast: a StatKey, as len(k) == _K was checked
                    self._map[p] = (cast(StatKey, tuple(int(x) for x in k)), d)
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            _log.warning("ignoring unreadable hash cache %s (files will be re-hashed)", path)
            self._map.clear()

    def digest(self, path: str | os.PathLike[str], st: os.stat_result | None = None) -> str:
        """SHA-256 of ``path``, read from disk only if its stat key is not cached."""
        p = os.fspath(path)
        if st is None:
            st = os.stat(p)
        key = stat_key(st)
        hit = self._map.get(p)
        if hit is not None and hit[0] == key:
            return hit[1]
        d = sha256_file(p)
        self.hashed += 1
        # A file modified while we read it gets a new key; record the key seen before reading
        # only if it is still current, so a racing edit is hashed again next time.
        if stat_key(os.stat(p)) == key:
            self._map[p] = (key, d)
            self._dirty = True
        return d

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        data = {"version": CACHE_VERSION,
                "files": {p: [list(k), d] for p, (k, d) in sorted(self._map.items())}}
        # Not fsynced: an older or empty cache after a crash only costs re-hashing (each entry
        # is a fact about one stat key, true whenever it was written).
        atomic_write(self.path, json.dumps(data, separators=(",", ":")), durable=False)
        self._dirty = False


class Sha256Checker(FileChangedChecker):  # type: ignore[misc]  # doit is untyped: its class is Any
    """doit checker: state is the stat key's fields and the sha256: ``[*stat_key, sha256]``.

    doit instantiates the checker class without arguments, so the cache is a class attribute;
    :func:`checker_class` makes a subclass bound to one cache (same class name, so doit does
    not treat a new process as a checker change).
    """

    cache: HashCache = HashCache()

    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        if not isinstance(state, list) or len(state) != _K + 1:
            return True  # state written by another checker (or version) or corrupt: rebuild
        key = list(stat_key(file_stat))
        if state[:_K] == key:
            return False
        if file_stat.st_size != state[_SIZE]:
            return True
        recorded: object = state[_K]  # the digest it recorded (a str unless corrupt)
        return self.cache.digest(file_path, file_stat) != recorded

    def get_state(self, dep: str, current_state: Any) -> list[Any] | None:
        st = os.stat(dep)
        key = list(stat_key(st))
        if isinstance(current_state, list) and len(current_state) == _K + 1 and current_state[:_K] == key:
            return None
        return key + [self.cache.digest(dep, st)]


def checker_class(cache: HashCache) -> type[Sha256Checker]:
    """A :class:`Sha256Checker` bound to ``cache``."""
    return type("Sha256Checker", (Sha256Checker,), {"cache": cache})
