"""ELF dependency resolution without running the loader (files read by elfread: pyelftools + a fast path).

Occlum runs ``LD_LIBRARY_PATH=<config dirs> <loader> --list <file>`` once per ELF.  This module
reproduces what that command reports by reading the ELF files themselves and following the
loader's search rules:

glibc (``_dl_map_object``): breadth-first over DT_NEEDED; a name already loaded (by the name it
was loaded as, its path or its DT_SONAME) is reused; names with a ``/`` are opened as paths;
otherwise the DT_RPATHs of the requesting object and its loaders (unless the requester has a
DT_RUNPATH), LD_LIBRARY_PATH (the loader's configured dirs), the requester's DT_RUNPATH, the
dirs of /etc/ld.so.conf (standing in for ld.so.cache) and the default dirs, unless DF_1_NODEFLIB.
A candidate of the wrong ELF class or machine is skipped; a file already loaded under another
path (same device and inode) is reused.

musl (``load_library``): the reserved names (libc, libpthread, libm, ...) are the loader itself;
then LD_LIBRARY_PATH, the DT_RPATH/DT_RUNPATH of the requester and of whoever needed it, then
/etc/ld-musl-<arch>.path (or /lib:/usr/local/lib:/usr/lib).

$ORIGIN, $LIB and $PLATFORM are expanded in run paths and in names.  Not modelled: glibc hwcaps
subdirectories (none exist on a default Debian 12) and the exact ld.so.cache ordering.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BomError
from .elfcache import ElfCache
from .elfread import ElfInfo, read_elf
from .elfread import NotElf as NotElf  # re-exported: plan.py and callers catch elfdeps.NotElf
from .loaders import GLIBC, MUSL, Loader, LoaderConfig, load_loader_config

# Debian 12 x86_64 facts used for $LIB / $PLATFORM and the loaders' built-in paths.
GLIBC_DEFAULT_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib")
GLIBC_LD_SO_CONF = "/etc/ld.so.conf"
MUSL_DEFAULT_DIRS = ("/lib", "/usr/local/lib", "/usr/lib")
DST_LIB = "lib/x86_64-linux-gnu"
DST_PLATFORM = "x86_64"
_MUSL_RESERVED = frozenset(("c", "pthread", "rt", "m", "dl", "util", "xnet"))
_DST = re.compile(r"\$(\{(ORIGIN|LIB|PLATFORM)\}|(ORIGIN|LIB|PLATFORM)(?![A-Za-z0-9_]))")


@dataclass
class Dep:
    """One library as the loader finds it: the name it was needed as and the host path."""

    name: str
    path: str


@dataclass
class Resolution:
    """The run-time dependencies of one ELF file."""

    elf: str
    interp: str | None  # PT_INTERP as written (where the loader goes in the image)
    loader: Loader | None  # None for a static ELF or a library without a known loader
    libs: list[Dep] = field(default_factory=list)  # load order, without the loader itself
    missing: list[str] = field(default_factory=list)

    def dest_of(self, dep: Dep) -> str:
        """Where Occlum puts a library in the image: the loader's dir for libraries found in
        one of the loader's configured dirs, else the same absolute path as on the host."""
        if self.loader is not None and os.path.dirname(dep.path) in self.loader.lib_dirs:
            return os.path.join(self.loader.dir, dep.name if "/" not in dep.name else
                                os.path.basename(dep.path))
        return dep.path


@dataclass(eq=False)
class _Obj:
    name: str
    path: str
    info: ElfInfo | None  # None for the "not found" placeholder
    parent: _Obj | None
    rpath_dirs: tuple[str, ...] = ()
    runpath_dirs: tuple[str, ...] = ()


class Resolver:
    """Resolves dependencies of many ELF files, caching parsed files and directory listings."""

    def __init__(self, config: LoaderConfig | None = None, cache: ElfCache | None = None):
        self.config = config if config is not None else load_loader_config()
        self.cache = cache
        self._info: dict[str, ElfInfo | None] = {}
        self._stat: dict[str, os.stat_result | None] = {}
        self._ld_so_conf: tuple[str, ...] | None = None
        self._musl_path: dict[str, tuple[str, ...]] = {}
        # resolutions by (the main file's ELF facts, its dir, loader): see resolve()
        self._memo: dict[tuple[object, ...],
                         tuple[tuple[Dep, ...], tuple[str, ...], frozenset[tuple[int, int]]]] = {}

    # -- cached file system access -------------------------------------------------------
    def info(self, path: str, st: os.stat_result | None = None) -> ElfInfo:
        """Parsed ELF info (cached); raises NotElf or BomError (malformed).  ``st``: the
        file's stat (links followed) if the caller has it, for the persistent cache."""
        if path not in self._info:
            self._info[path] = self._read(path, st)
        got = self._info[path]
        if got is None:
            raise NotElf(path)
        return got

    def _read(self, path: str, st: os.stat_result | None) -> ElfInfo | None:
        if self.cache is None:
            try:
                return read_elf(path)
            except NotElf:
                return None
        if st is None:
            st = self.lookup(path)
        else:
            self._stat.setdefault(path, st)
        if st is None:  # gone: let read_elf raise what it raises
            return read_elf(path)
        got = self.cache.get(path, st)
        if got is not False:
            return got
        try:
            info: ElfInfo | None = read_elf(path)
        except NotElf:
            info = None
        self.cache.put(st, info)
        return info

    def lookup(self, path: str) -> os.stat_result | None:
        """stat() of a candidate path, cached (None if the loader could not open it)."""
        try:
            return self._stat[path]
        except KeyError:
            pass
        try:
            st: os.stat_result | None = os.stat(path)
        except OSError:
            st = None
        self._stat[path] = st
        return st

    def probed(self) -> list[tuple[str, os.stat_result | None]]:
        """Every path looked up so far with what stat() gave (None: absent): what the
        resolutions depended on (besides the files' contents, which the stats identify)."""
        return list(self._stat.items())

    def _cands(self, dirs: Iterable[str], name: str) -> Iterator[str]:
        for d in dirs:
            p = f"{d}/{name}"
            if self.lookup(p) is not None:
                yield p

    def _try(self, path: str, want: ElfInfo) -> ElfInfo | None:
        """The ELF at ``path`` if the loader would accept it for an object like ``want``."""
        try:
            info = self.info(path)
        except (NotElf, OSError, BomError):
            return None
        if info.elfclass != want.elfclass or info.machine != want.machine:
            return None
        return info

    def ld_so_conf_dirs(self) -> tuple[str, ...]:
        if self._ld_so_conf is None:
            self._ld_so_conf = tuple(_read_ld_so_conf(GLIBC_LD_SO_CONF, set()))
        return self._ld_so_conf

    def musl_sys_path(self, loader: Loader) -> tuple[str, ...]:
        arch = loader.name[len("ld-musl-"):].split(".so", 1)[0]
        if arch not in self._musl_path:
            try:
                text = Path(f"/etc/ld-musl-{arch}.path").read_text()
                dirs = tuple(d for d in re.split(r"[:\n]", text) if d.strip())
            except OSError:
                dirs = MUSL_DEFAULT_DIRS
            self._musl_path[arch] = dirs
        return self._musl_path[arch]

    # -- resolution ----------------------------------------------------------------------
    def loader_for(self, info: ElfInfo, hint: Loader | None = None) -> Loader | None:
        """The loader an ELF runs with: its PT_INTERP, else ``hint``, else inferred from
        DT_NEEDED (musl's libc.so vs anything else = glibc).  None if it needs no loader."""
        if info.interp:
            return self.config.for_interp(info.interp)
        if not info.needed:
            return None
        if hint is not None:
            return hint
        musl = "libc.so" in info.needed  # glibc's is libc.so.6
        return self.config.of_kind(MUSL if musl else GLIBC)

    def resolve(self, path: str | os.PathLike[str], hint: Loader | None = None) -> Resolution:
        """Everything ``path`` needs at run time, as its loader would find it on this host."""
        main_path = os.path.abspath(os.fspath(path))
        info = self.info(main_path)
        res = Resolution(main_path, info.interp, None)
        if not info.loadable:
            return res
        loader = self.loader_for(info, hint)
        res.loader = loader
        if loader is None:
            return res
        # Many ELF files (the extension modules of a dir) need the same names with the same
        # search path: the search depends on the main file only through its ELF facts, its dir
        # ($ORIGIN) and its identity; a result is shared only when the search never met the
        # main file itself and the other file is none of the libraries found.
        st = self.lookup(main_path) or os.stat(main_path)
        me = (st.st_dev, st.st_ino)
        mkey = (info.elfclass, info.machine, info.etype, info.interp, info.needed, info.soname, info.rpath,
                info.runpath, info.has_runpath, info.nodeflib, os.path.dirname(main_path), loader)
        hit = self._memo.get(mkey)
        if hit is not None and me not in hit[2]:
            res.libs, res.missing = list(hit[0]), list(hit[1])
            return res
        shareable = self._search(main_path, info, loader, res, me)
        found = [self.lookup(p) for p in [loader.path] + [d.path for d in res.libs]]
        if shareable and all(found):
            self._memo[mkey] = (tuple(res.libs), tuple(res.missing),
                                frozenset((f.st_dev, f.st_ino) for f in found if f is not None))
        return res

    def _rtld(self, loader: Loader, names: dict[str, _Obj], keys: dict[tuple[int, int], _Obj]) -> None:
        st = self.lookup(loader.path)
        if st is None:
            return
        rinfo = None
        try:
            rinfo = self.info(loader.path)
        except (NotElf, BomError, OSError):
            pass
        rtld = _Obj(loader.path, loader.path, rinfo, None)
        keys[(st.st_dev, st.st_ino)] = rtld
        names[loader.path] = rtld
        if rinfo is not None and rinfo.soname:
            names[rinfo.soname] = rtld

    def _search(self, main_path: str, info: ElfInfo, loader: Loader, res: Resolution,
                me: tuple[int, int]) -> bool:
        """Fills ``res`` breadth-first over DT_NEEDED by ``loader``'s rules (glibc's or musl's);
        True if the search never involved the main file's path or identity."""
        musl = loader.kind == MUSL
        names: dict[str, _Obj] = {}
        keys: dict[tuple[int, int], _Obj] = {}
        self._rtld(loader, names, keys)
        main = self._new_obj(main_path, main_path, info, None)
        if musl:
            own: tuple[str | None, ...] = ()
            sys_path = self.musl_sys_path(loader)
        else:  # glibc knows the main file by its path and soname from the start
            names[main_path] = main
            if info.soname:
                names.setdefault(info.soname, main)
            own = (main_path, info.soname)
            defaults = self.ld_so_conf_dirs() + GLIBC_DEFAULT_DIRS
        keys.setdefault(me, main)
        slash = False
        queue = [main]
        for obj in queue:
            assert obj.info is not None
            for raw in obj.info.needed:
                name = _expand_dst(raw, os.path.dirname(obj.path))
                if musl and _musl_reserved(name):
                    # musl's libc is the loader; Occlum copies it under this name too.
                    if name not in names or names[name].path != loader.path:
                        names[name] = _Obj(name, loader.path, None, obj)
                        res.libs.append(Dep(name, loader.path))
                    continue
                if name in names:
                    continue
                if "/" in name:
                    slash = True
                    cands: Iterable[str] = [name if name.startswith("/")
                                            else os.path.join(os.path.dirname(main_path), name)]
                elif musl:
                    cands = self._cands(_musl_dirs(obj, loader, sys_path), name)
                else:
                    cands = self._cands(_glibc_dirs(obj, loader, defaults), name)
                found = self._first(cands, main.info, names, keys, name, obj)
                if found is None:
                    names[name] = _Obj(name, "", None, obj)
                    res.missing.append(name)
                elif found is not _REUSED:
                    queue.append(found)
                    res.libs.append(Dep(name, found.path))
        return not slash and _only_own_names(main, names, keys, me, own)

    def _first(self, cands: Iterable[str], want: ElfInfo | None, names: dict[str, _Obj],
               keys: dict[tuple[int, int], _Obj], name: str, parent: _Obj) -> _Obj | None:
        assert want is not None
        for cand in cands:
            got = self._try(cand, want)
            if got is None:
                continue
            st = self.lookup(cand)
            if st is None:
                continue
            key = (st.st_dev, st.st_ino)
            if key in keys:  # the same file under another name: the loader reuses it
                names[name] = keys[key]
                return _REUSED
            obj = self._new_obj(name, cand, got, parent)
            keys[key] = obj
            names[name] = obj
            if got.soname:
                names.setdefault(got.soname, obj)
            return obj
        return None

    @staticmethod
    def _new_obj(name: str, path: str, info: ElfInfo, parent: _Obj | None) -> _Obj:
        origin = os.path.dirname(path)
        return _Obj(name, path, info, parent,
                    _run_dirs(info.rpath, origin), _run_dirs(info.runpath, origin))


_REUSED = _Obj("", "", None, None)  # _first's answer for "already loaded under another name"


def _only_own_names(main: _Obj, names: dict[str, _Obj], keys: dict[tuple[int, int], _Obj],
                    me: tuple[int, int], own: tuple[str | None, ...]) -> bool:
    """The main file was not met during the search: it is the owner of its identity (it is not
    the loader) and no name other than its own path and soname leads to it."""
    return keys.get(me) is main and not any(o is main and n not in own for n, o in names.items())


def _glibc_dirs(obj: _Obj, loader: Loader, defaults: tuple[str, ...]) -> tuple[str, ...]:
    """glibc's search path for what ``obj`` needs: DT_RPATH up the chain of objects that needed it (unless
    ``obj`` has DT_RUNPATH), the loader's dirs, DT_RUNPATH, then the defaults (unless NODEFLIB)."""
    assert obj.info is not None
    dirs: list[str] = []
    if not obj.info.has_runpath:
        o: _Obj | None = obj
        while o is not None:
            dirs.extend(o.rpath_dirs)
            o = o.parent
    dirs.extend(loader.lib_dirs)
    dirs.extend(obj.runpath_dirs)
    if not obj.info.nodeflib:
        dirs.extend(defaults)
    return tuple(dict.fromkeys(dirs))


def _musl_dirs(obj: _Obj, loader: Loader, sys_path: tuple[str, ...]) -> tuple[str, ...]:
    """musl's search path: the loader's dirs, DT_RPATH and DT_RUNPATH up the chain, the system path."""
    dirs: list[str] = list(loader.lib_dirs)
    o: _Obj | None = obj
    while o is not None:
        dirs.extend(o.rpath_dirs + o.runpath_dirs)
        o = o.parent
    dirs.extend(sys_path)
    return tuple(dict.fromkeys(dirs))


def _musl_reserved(name: str) -> bool:
    if not name.startswith("lib"):
        return False
    stem = name[3:].split(".", 1)
    return len(stem) == 2 and stem[0] in _MUSL_RESERVED


def _expand_dst(s: str, origin: str) -> str:
    if "$" not in s:
        return s

    def sub(m: re.Match[str]) -> str:
        tok = m.group(2) or m.group(3)
        return {"ORIGIN": origin, "LIB": DST_LIB, "PLATFORM": DST_PLATFORM}[tok]

    return _DST.sub(sub, s)


def _run_dirs(entries: tuple[str, ...], origin: str) -> tuple[str, ...]:
    out = []
    for e in entries:
        if not e:
            continue
        d = _expand_dst(e, origin)
        d = d.rstrip("/") or "/"
        out.append(d)
    return tuple(out)


def _read_ld_so_conf(path: str, seen: set[str]) -> list[str]:
    """Directories listed in ld.so.conf (following ``include`` globs), in file order."""
    import glob

    if path in seen:
        return []
    seen.add(path)
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    dirs: list[str] = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("include"):
            pat = line.split(None, 1)[1] if len(line.split(None, 1)) == 2 else ""
            if not pat.startswith("/"):
                pat = os.path.join(os.path.dirname(path), pat)
            for inc in sorted(glob.glob(pat)):
                dirs.extend(_read_ld_so_conf(inc, seen))
        elif line.startswith("/"):
            d = line.rstrip("/") or "/"
            if d not in dirs:
                dirs.append(d)
    return dirs


def resolve_deps(elf_path: str | os.PathLike[str], *, config: LoaderConfig | None = None,
                 resolver: Resolver | None = None) -> list[Path]:
    """Host paths of every file ``elf_path`` needs at run time: its loader first (if it has
    one), then each library in the order the loader would load it.

    Raises BomError if the file is not an ELF or a library is missing.
    """
    r = resolver or Resolver(config)
    p = os.fspath(elf_path)
    try:
        res = r.resolve(p)
    except NotElf:
        raise BomError("not an ELF file; cannot resolve its dependencies", where=p) from None
    except OSError as e:
        raise BomError(f"cannot read: {e.strerror or e}", where=p) from None
    if res.missing:
        raise BomError("missing libraries: " + ", ".join(res.missing), where=p)
    out = [Path(res.loader.path)] if res.loader is not None and res.interp else []
    out.extend(Path(d.path) for d in res.libs if Path(d.path) not in out)
    return out
