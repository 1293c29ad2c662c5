"""A cache of what copy_bom read from ELF files, kept between runs, keyed by file identity.

A no-change copy_bom run re-reads the headers of every executable and ``*.so*`` file in the
copied dirs and of every library they need, only to learn what it learnt last time.  This
cache keeps the parsed :class:`ElfInfo` (PT_INTERP, DT_NEEDED, run paths, ...) of each file
under its stat key (fsutil.stat_key less the mode: dev, ino, size, mtime_ns, ctime_ns).  Any
write to a file, a chmod, a rename over it or a touch changes its ctime (which a user cannot
set back), so a changed file never matches its old entry.  Only the facts read from a file's
own bytes are cached: the dependency search itself (which files exist where, the loader
config, ld.so.conf) runs in full on every run, so its result is identical to an uncached one.

The file lives OUTSIDE the image root (never in the enclave image): by default
``$XDG_CACHE_HOME/occlum-build/copy_bom-elf.json`` (``~/.cache/...``);
``$OCCLUM_BOM_CACHE`` names another file, or disables the cache when set to ``off`` or empty.
It is advisory: an unreadable, corrupt or foreign-version file is ignored (and replaced on
the next save); deleting it is always safe.  Format: docs/formats/copy_bom-elf-cache.md.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .. import log as oclog
from ..errors import OutputError
from ..fsutil import atomic_write, is_racy, stat_key
from .elfread import ElfInfo

CACHE_ENV = "OCCLUM_BOM_CACHE"
VERSION = "occlum-build copy_bom elf cache 1"
MAX_ENTRIES = 20000  # beyond this, a save keeps only the entries this run used

log = oclog.get("copy_bom")

_FIELDS = ("elfclass", "machine", "etype", "interp", "needed", "soname", "rpath", "runpath",
           "has_runpath", "nodeflib")


def default_path() -> Path | None:
    """Where the cache lives, or None if it is switched off."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return None if env.strip() in ("", "off") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "occlum-build" / "copy_bom-elf.json"


def key_of(st: os.stat_result) -> str:
    """The entry key: fsutil.stat_key without the mode (a chmod does not change what an ELF
    file says), in decimal: ``dev:ino:size:mtime_ns:ctime_ns``."""
    return ":".join(map(str, stat_key(st)[:5]))


def _encode(info: ElfInfo | None) -> list | None:
    if info is None:
        return None
    return [getattr(info, f) if not isinstance(getattr(info, f), tuple) else list(getattr(info, f))
            for f in _FIELDS]


def _valid(v: object) -> bool:
    """Shape check of one entry (None = not an ELF file); anything else voids the file."""
    if v is None:
        return True
    if not isinstance(v, list) or len(v) != len(_FIELDS):
        return False
    elfclass, machine, etype, interp, needed, soname, rpath, runpath, has_runpath, nodeflib = v
    strs = (needed, rpath, runpath)
    return (type(elfclass) is int and type(machine) is int and isinstance(etype, str)
            and (interp is None or isinstance(interp, str)) and (soname is None or isinstance(soname, str))
            and all(isinstance(x, list) and all(isinstance(s, str) for s in x) for x in strs)
            and type(has_runpath) is bool and type(nodeflib) is bool)


class ElfCache:
    """Parsed ELF facts by file identity; :meth:`save` writes back what a run added."""

    def __init__(self, path: Path | None):
        self.path = path
        self._old: dict[str, list | None] = {}
        self._used: dict[str, list | None] = {}
        self._dirty = False
        self._now = time.time_ns()
        if path is not None:
            self._old = _load(path)

    @classmethod
    def default(cls) -> ElfCache:
        return cls(default_path())

    def get(self, path: str, st: os.stat_result) -> ElfInfo | None | bool:
        """The cached info (None: not an ELF file), or False if the cache does not know."""
        k = key_of(st)
        if k in self._used:
            v = self._used[k]
        elif k in self._old:
            v = self._used[k] = self._old[k]
        else:
            return False
        if not _valid(v):
            del self._used[k]
            return False  # a damaged entry: read the file again
        if v is None:
            return None
        f = dict(zip(_FIELDS, v, strict=True))
        for name in ("needed", "rpath", "runpath"):
            f[name] = tuple(f[name])
        return ElfInfo(path=path, **f)

    def put(self, st: os.stat_result, info: ElfInfo | None) -> None:
        if is_racy(st, self._now):
            return  # could change again within the same timestamp tick, unseen
        k = key_of(st)
        self._used[k] = _encode(info)
        self._dirty = True

    def save(self) -> None:
        """Write the cache if this run learnt something; failures only cost speed next time."""
        if self.path is None or not self._dirty:
            return
        entries = dict(self._old) if len(self._old) + len(self._used) <= MAX_ENTRIES else {}
        entries.update(self._used)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps({"version": VERSION, "entries": entries},
                                               separators=(",", ":")), 0o600)
            self._dirty = False
        except (OSError, OutputError) as e:  # a cache that cannot be written is no error
            log.debug("ELF cache %s not saved: %s", self.path, e)


def _load(path: Path) -> dict[str, list | None]:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.debug("ELF cache %s ignored: %s", path, e)
        return {}
    ok = isinstance(data, dict) and data.get("version") == VERSION and isinstance(data.get("entries"), dict)
    if not ok:
        log.debug("ELF cache %s ignored: not a version-1 cache", path)
        return {}
    return data["entries"]  # each entry is checked when used
