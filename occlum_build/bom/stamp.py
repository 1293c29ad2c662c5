"""The no-change fast path of copy_bom: a stamp of everything a run's result depended on.

A repeated copy_bom over an unchanged tree still parses every bom, walks every source
tree, resolves the ELF dependencies and quick-checks every destination: 3.4x a bare
``scandir``+``stat`` walk of the sources. When a run changes nothing it decides nothing new
either, so after a clean run this module records what its decisions rested on, and the
next run only checks that record:

- every source it read, with the key of its ``stat`` taken *while planning* (files and dirs
  of the copied trees, ``files`` entries, the ``from`` dirs): a changed, added or removed
  entry changes its key or its directory's (mtime);
- every path the include search and the ELF dependency search probed, found or not (a
  library appearing earlier in a search path is a change), and the files the loaders'
  search paths come from (occlum_elf_loader.config, ld.so.conf and its include dir, musl's
  ld-musl-*.path);
- every destination in the root, with the key of its ``lstat`` after the run;
- the bom files themselves, and the values of the environment variables they expanded.

Key: fsutil.stat_key (device, inode, size, mtime_ns, ctime_ns, mode) -- any write, chmod,
chown, rename over or touch changes the ctime, which nobody can set back. If every key is still the same, the
run's answer is the recorded one ("nothing to copy", with its counts and conflict notes),
reached with one ``stat`` per path and no YAML, walk or ELF work. Anything different, a
missing, torn or foreign stamp: the full run, which then writes a new stamp.

A stamp is written only after a successful real run (never a dry run) that gave no
warning and found every library, whose sources did not change while it ran (their keys are
taken again at the end), and none of whose sources changed within RACY_NS of its start (a
later write inside the same timestamp tick could leave a key as it was). It lives beside
the ELF cache (elfcache.default_path; ``OCCLUM_BOM_CACHE=off`` disables both), never in the
root; deleting it is always safe. Format: docs/formats/copy_bom-stamp.md.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import NotRequired, TypedDict

from .. import __version__
from .. import log as oclog
from ..errors import OutputError
from ..fsutil import STAT_KEY, atomic_write, is_racy, stat_key
from . import elfcache

VERSION = b"occlum-build copy_bom stamp 2"
KEY = STAT_KEY  # fsutil.stat_key, packed: dev, ino, size, mtime_ns, ctime_ns, mode
ABSENT = bytes(KEY.size)  # a path that did not exist (no real entry has mode 0)
LOADER_FILES = ("/etc/ld.so.conf", "/etc/ld.so.conf.d")  # + the files in it, ld-musl-*.path

log = oclog.get("copy_bom")


class RunRecord(TypedDict):
    """The stamp's ``report``: what a later no-change run reports (docs/formats/copy_bom-stamp.md)."""

    boms: list[str]
    files: int
    libraries: list[list[str]]  # [name, path] pairs
    conflicts: list[str]
    ignored: NotRequired[list[str]]  # absent in older stamps; unchecked here (run.py checks it)


def key(st: os.stat_result | None) -> bytes:
    if st is None:
        return ABSENT
    return KEY.pack(*stat_key(st))


def _keys(paths: Iterable[str | bytes], follow: bool) -> Iterator[bytes]:
    """key() of each path, stat-ed now (the hot loop of a no-change run: inlined)."""
    f = os.stat if follow else os.lstat
    pack = KEY.pack
    for p in paths:
        try:
            s = f(p)
        except OSError:
            yield ABSENT
            continue
        yield pack(s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_mode)  # stat_key


def stamp_path(root: str, bom: str, include_dirs: Iterable[str], loader_config: str) -> Path | None:
    """Where the stamp of this invocation lives (None: caching is off)."""
    cache = elfcache.default_path()
    if cache is None:
        return None
    ident = "\0".join([os.path.abspath(root), os.path.abspath(bom), loader_config,
                       *(os.path.abspath(d) for d in include_dirs), str(os.geteuid()), __version__])
    return cache.parent / "copy_bom-runs" / (hashlib.sha256(ident.encode()).hexdigest()[:32] + ".stamp")


def loader_files() -> list[str]:
    """The files the loaders' default search paths are read from (glibc and musl)."""
    out = list(LOADER_FILES)
    out.extend(sorted(glob.glob("/etc/ld.so.conf.d/*")))
    out.extend(sorted(glob.glob("/etc/ld-musl-*.path")))
    return out


class RecordingEnv(Mapping[str, str]):
    """The environment, remembering which variables a run looked up (and their values)."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.used: dict[str, str | None] = {}

    def __getitem__(self, name: str) -> str:
        v = self.env.get(name)
        self.used[name] = v
        if v is None:
            raise KeyError(name)
        return v

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        v = self.env.get(name)
        self.used[name] = v
        return default if v is None else v

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


class Watch:
    """What a run depended on, gathered while it plans: sources by ``stat`` (``follow``:
    links followed) or ``lstat``, each with the result taken then (None: absent)."""

    def __init__(self) -> None:
        self.sources: dict[tuple[str, bool], os.stat_result | None] = {}

    def add(self, path: str, st: os.stat_result | None, follow: bool = True) -> None:
        self.sources.setdefault((path, follow), st)

    def add_now(self, paths: Iterable[str]) -> None:
        for p in paths:
            try:
                st: os.stat_result | None = os.stat(p)
            except OSError:
                st = None
            self.add(p, st)


def load(path: Path, env: Mapping[str, str]) -> RunRecord | None:
    """The recorded report if every recorded key still holds; else None (run in full)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        magic, digest, head, body = raw.split(b"\n", 3)
        if magic != VERSION or digest.decode() != hashlib.sha256(head + b"\n" + body).hexdigest():
            return None
        h = json.loads(head)
        if not _valid_head(h):
            return None
        for name, value in h["env"].items():
            if env.get(name) != value:
                log.debug("copy_bom stamp: $%s changed; full run", name)
                return None
        n_stat, n_lstat = h["stat"], h["lstat"]
        nkeys = (n_stat + n_lstat) * KEY.size
        names, keys = body[:-nkeys] if nkeys else body, body[-nkeys:] if nkeys else b""
        paths = names.split(b"\0")
        if len(paths) != n_stat + n_lstat + 1 or paths.pop():
            return None
    except (ValueError, KeyError, TypeError):
        return None
    now = b"".join(_keys(paths[:n_stat], True)) + b"".join(_keys(paths[n_stat:], False))
    if now != keys:
        log.debug("copy_bom stamp: %s changed; full run", _first_change(paths, now, keys, n_stat))
        return None
    if log.isEnabledFor(oclog.TRACE):  # every path the decision rested on
        for i, p in enumerate(paths):
            log.log(oclog.TRACE, "copy_bom stamp: %s%s unchanged", "" if i < n_stat else "destination ",
                    os.fsdecode(p))
    report: RunRecord = h["report"]  # its shape is checked by _valid_head
    return report


def _valid_head(h: object) -> bool:
    """The header's shape (docs/formats/copy_bom-stamp.md); anything else voids the stamp."""
    if not isinstance(h, dict) or not isinstance(h.get("env"), dict):
        return False
    if not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in h["env"].items()):
        return False
    if not all(type(h.get(k)) is int and h[k] >= 0 for k in ("stat", "lstat")):
        return False
    r = h.get("report")
    return (isinstance(r, dict) and type(r.get("files")) is int
            and all(isinstance(r.get(k), list) for k in ("boms", "libraries", "conflicts"))
            and all(isinstance(b, str) for b in r["boms"] + r["conflicts"])
            and all(isinstance(x, list) and len(x) == 2 and all(isinstance(y, str) for y in x)
                    for x in r["libraries"]))


def _first_change(paths: list[bytes], now: bytes, old: bytes, n_stat: int) -> str:
    for i, p in enumerate(paths):
        if now[i * KEY.size : (i + 1) * KEY.size] != old[i * KEY.size : (i + 1) * KEY.size]:
            return f"{'' if i < n_stat else 'destination '}{os.fsdecode(p)}"
    return "?"


def save(path: Path, watch: Watch, dests: Iterable[str], env_used: Mapping[str, str | None],
         report: RunRecord, started_ns: int) -> bool:
    """Write the stamp of a clean run; False (and nothing written) when it must not be
    trusted: a source changed during the run or within RACY_NS of its start."""
    items = sorted(watch.sources.items())
    stat_side = [(p, st) for (p, follow), st in items if follow]
    lstat_side = [(p, st) for (p, follow), st in items if not follow]
    then = [key(st) for _, st in stat_side] + [key(st) for _, st in lstat_side]
    again = list(_keys([p for p, _ in stat_side], True)) + list(_keys([p for p, _ in lstat_side], False))
    if again != then:
        log.debug("copy_bom stamp: a source changed while copying; not saved")
        return False
    if any(st is not None and is_racy(st, started_ns) for _, st in items):
        log.debug("copy_bom stamp: a source changed just before the run; not saved")
        return False
    stat_paths = [p for p, _ in stat_side]
    lstat_paths = [p for p, _ in lstat_side] + sorted(set(dests))
    dest_keys = list(_keys(lstat_paths[len(lstat_side):], False))
    head = json.dumps({"env": dict(env_used), "stat": len(stat_paths), "lstat": len(lstat_paths),
                       "report": report}, sort_keys=True, separators=(",", ":")).encode()
    body = (b"".join(os.fsencode(p) + b"\0" for p in stat_paths + lstat_paths)
            + b"".join(then) + b"".join(dest_keys))
    digest = hashlib.sha256(head + b"\n" + body).hexdigest().encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, VERSION + b"\n" + digest + b"\n" + head + b"\n" + body, 0o600, durable=False)
    except (OSError, OutputError) as e:
        log.debug("copy_bom stamp %s not saved: %s", path, e)
        return False
    return True
