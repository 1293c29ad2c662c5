"""Turn parsed boms into a list of operations, validated before anything is written.

Everything that can be checked without writing is checked here (paths inside the root,
sources present and readable, hashes, ELF dependencies of ``files`` entries), so that bad input
fails before the root is touched.  Path rules (Occlum's): a target is a path inside the root
(leading ``/`` stripped); ``from``, ``dirs`` and ``files`` that are relative are relative to
the parent of ``--root``; ``mkdirs``, ``linkname`` and ``rename`` are relative to the target.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .. import pathlimit
from ..errors import BomError, VerifyError
from .elfdeps import NotElf, Resolution, Resolver
from .elfread import ElfInfo
from .fscopy import Entry, walk_tree
from .includes import expand
from .loaders import Loader
from .schema import BomSpec, FileSpec, Text
from .stamp import Watch


@dataclass
class Op:
    kind: str  # "mkdir" | "link" | "copydir" | "copyfile" | "lib"
    dest: str  # absolute path inside the root (for copydir: the destination dir)
    src: str = ""  # host source (for "link": the link's content)
    where: str = ""  # the bom entry it comes from
    contents: bool = False  # copydir with a trailing '/': copy what is inside src
    excludes: tuple[str, ...] = ()
    entries: list[Entry] | None = None  # copydir: the walked source tree
    st: os.stat_result | None = None  # copyfile / lib: stat of the source (links followed)

    @property
    def dir_key(self) -> str:
        """Where a dir copy lands, for Occlum's last-copy-wins rule."""
        return self.dest if self.contents else os.path.join(self.dest, os.path.basename(self.src))


@dataclass
class BomOps:
    bom: BomSpec
    mkdirs: list[Op] = field(default_factory=list)
    links: list[Op] = field(default_factory=list)
    copydirs: list[Op] = field(default_factory=list)
    copyfiles: list[Op] = field(default_factory=list)
    libs: list[Op] = field(default_factory=list)


@dataclass
class Plan:
    root: str
    boms: list[BomOps]
    dir_libs: list[Op] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _rel_inside(p: str, text: Text, what: str) -> str:
    parts = [x for x in p.split("/") if x not in ("", ".")]
    if ".." in parts:
        raise BomError(f"'{p}': '..' is not allowed in a {what} (it could write outside the root)",
                       where=text.where)
    return "/".join(parts)


def dest_in_root(root: str, p: str, text: Text, what: str = "target") -> str:
    rel = _rel_inside(p, text, what)
    return os.path.join(root, rel) if rel else root


def _relative_name(p: str, text: Text, what: str) -> str:
    if p.startswith("/"):
        raise BomError(f"'{p}': a {what} is relative to its target; drop the leading '/'", where=text.where)
    rel = _rel_inside(p, text, what)
    if not rel:
        raise BomError(f"'{p}' is not a valid {what}", where=text.where)
    return rel


def _stat_source(src: str, text: Text, want_dir: bool) -> os.stat_result:
    if pathlimit.too_long(src):
        raise BomError(pathlimit.message(src, "source"), where=text.where)
    try:
        st = os.stat(src)
    except FileNotFoundError:
        what = "directory" if want_dir else "file"
        hint = " (relative paths are relative to the parent of --root)" if not text.startswith("/") else ""
        raise BomError(f"source {what} {src} does not exist{hint}", where=text.where) from None
    except OSError as e:
        raise BomError(f"cannot access source {src}: {e.strerror or e}", where=text.where) from None
    if want_dir and not stat.S_ISDIR(st.st_mode):
        raise BomError(f"{src} is not a directory; list it under 'files'", where=text.where)
    if not want_dir and stat.S_ISDIR(st.st_mode):
        raise BomError(f"{src} is a directory; list it under 'dirs'", where=text.where)
    if not os.access(src, os.R_OK | (os.X_OK if want_dir else 0)):
        raise BomError(f"source {src} is not readable (permission denied)", where=text.where)
    return st


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest().upper()


class Planner:
    def __init__(self, root: str, resolver: Resolver, env: Mapping[str, str] | None,
                 warn: Callable[[str], None], watch: Watch | None = None):
        self.root = os.path.abspath(root)
        self.watch = watch  # gets every source stat-ed while planning (the run stamp)
        self.workspace = os.path.dirname(self.root)
        self.resolver = resolver
        self.env = env
        self.warn = warn
        self.missing: list[tuple[str, str, str]] = []  # (lib, needed by, where)

    def x(self, t: Text) -> str:
        return expand(t, self.env)

    def bom_ops(self, bom: BomSpec) -> BomOps:
        ops = BomOps(bom)
        ops.mkdirs.append(Op("mkdir", self.root, where=str(bom.path)))
        autodep: list[tuple[FileSpec, str, os.stat_result | None]] = []
        excludes = tuple(self.x(e) for e in bom.excludes)
        for t in bom.targets:
            tdest = dest_in_root(self.root, self.x(t.target), t.target)
            if pathlimit.too_long(tdest):
                raise BomError(pathlimit.message(tdest, "destination"), where=t.target.where)
            ops.mkdirs.append(Op("mkdir", tdest, where=t.target.where))
            for m in t.mkdirs:
                rel = _relative_name(self.x(m), m, "mkdirs entry")
                ops.mkdirs.append(Op("mkdir", os.path.join(tdest, rel), where=m.where))
            for ln in t.createlinks:
                name = _relative_name(self.x(ln.linkname), ln.linkname, "linkname")
                ops.links.append(Op("link", os.path.join(tdest, name), self.x(ln.src), where=ln.where))
            for c in t.copy:
                fromdir = self.workspace
                if c.from_ is not None:
                    fromdir = os.path.normpath(os.path.join(self.workspace, self.x(c.from_)))
                    self._seen(fromdir, _stat_source(fromdir, c.from_, True))
                for d in c.dirs or ():
                    rel = self.x(d)
                    src = os.path.normpath(os.path.join(fromdir, rel))
                    self._seen(src, _stat_source(src, d, True))
                    ops.copydirs.append(Op("copydir", tdest, os.path.normpath(src), d.where,
                                           contents=rel.endswith("/"), excludes=excludes))
                for f in c.files or ():
                    op = self._file_op(f, fromdir, tdest)
                    ops.copyfiles.append(op)
                    if f.autodep:
                        autodep.append((f, op.src, op.st))
                if c.dirs is None and c.files is None:
                    assert c.from_ is not None
                    ops.copydirs.append(Op("copydir", tdest, os.path.normpath(fromdir), c.from_.where,
                                           contents=True, excludes=excludes))
        try:
            rst = os.stat(self.root)
            root_key: tuple[int, int] | None = (rst.st_dev, rst.st_ino)
        except OSError:
            root_key = None
        for op in ops.copydirs:
            op.entries = walk_tree(op.src, op.contents, op.excludes, self.warn, root_key)
            if self.watch is not None:
                add = self.watch.add
                for e in op.entries:
                    add(e.src, e.st, e.kind != "link")  # links: their own lstat
        ops.libs = self._autodep_files(autodep)
        return ops

    def _seen(self, path: str, st: os.stat_result) -> None:
        if self.watch is not None:
            self.watch.add(path, st)

    def _file_op(self, f: FileSpec, fromdir: str, tdest: str) -> Op:
        name = self.x(f.name)
        src = os.path.normpath(os.path.join(fromdir, name))
        st = _stat_source(src, f.name, False)
        self._seen(src, st)
        if not stat.S_ISREG(st.st_mode):
            raise BomError(f"{src} is not a regular file", where=f.name.where)
        if f.hash is not None:
            actual = file_sha256(src)
            if actual != f.hash.upper():
                raise VerifyError(f"hash mismatch for {src}: expected {f.hash.upper()}, actual {actual}; "
                                  "update the hash if the file changed on purpose", where=f.hash.where)
        if f.rename is not None:
            dest = os.path.join(tdest, _relative_name(self.x(f.rename), f.rename, "rename"))
        else:
            dest = os.path.join(tdest, os.path.basename(src.rstrip("/")))
        return Op("copyfile", dest, src, f.where, st=st)

    def _autodep_files(self, files: list[tuple[FileSpec, str, os.stat_result | None]]) -> list[Op]:
        infos = []
        for f, src, st in files:
            try:
                info = self.resolver.info(src, st)
            except NotElf:
                if f.autodep_explicit:
                    raise BomError(f"{src} is not an ELF file, but autodep: true asks for its libraries; "
                                   "remove autodep or set it to false", where=f.where) from None
                continue  # scripts and data: nothing to resolve (as Occlum)
            if info.loadable:
                infos.append((f, src, info))
        hint = _common_loader(self.resolver, [i for _, _, i in infos])
        libs: list[Op] = []
        for f, src, _ in infos:
            res = self.resolver.resolve(src, hint)
            libs.extend(self._lib_ops(res, f.where))
            self.missing.extend((name, src, f.where) for name in res.missing)
        return libs

    def _lib_ops(self, res: Resolution, where: str) -> list[Op]:
        return [self._lib_op(src, dest, where, res.elf) for src, dest in _lib_pairs(res)]

    def _lib_op(self, src: str, dest_abs: str, where: str, needed_by: str) -> Op:
        st = self.resolver.lookup(src)  # stat'ed while resolving already
        if st is None:
            try:
                st = os.stat(src)
            except OSError as e:
                raise BomError(f"library {src} (needed by {needed_by}) cannot be read: {e.strerror}",
                               where=where) from None
        # normpath: a library found via $ORIGIN/.. keeps its host place, never climbs out
        dest = os.path.join(self.root, os.path.normpath("/" + dest_abs).lstrip("/"))
        return Op("lib", dest, src, where, st=st)

    def dir_autodep(self, plan: Plan) -> None:
        """Libraries for ELF files inside copied dirs (Occlum: warnings only when missing)."""
        copied_srcs = []
        cands: list[tuple[str, str, os.stat_result]] = []
        for bo in plan.boms:
            for op in bo.copydirs:
                copied_srcs.append(os.path.realpath(op.src) + os.sep)
                for e in op.entries or ():
                    # Candidates: executables and *.so* files (reading every file's magic would
                    # dominate a no-change run); they are then checked for the ELF magic.
                    if e.kind == "file" and (e.st.st_mode & 0o111 or (".so" in e.rel and
                                                                      ".so" in e.rel.rpartition("/")[2])):
                        cands.append((e.src, op.where, e.st))
        if not cands:
            return
        infos = []
        for src, where, st in cands:
            try:
                info = self.resolver.info(src, st)
            except NotElf:
                continue  # a script or data file
            except (BomError, OSError) as e:
                self.warn(f"{src}: {e}; its libraries are not resolved")
                continue
            if info.loadable:
                infos.append((src, where, info))
        hint = _common_loader(self.resolver, [i for _, _, i in infos])
        planned = {op.dest for bo in plan.boms for op in bo.copyfiles + bo.libs}
        real_dirs: dict[str, str] = {}
        seen: set[tuple[str, str]] = set()
        for src, where, _ in infos:
            res = self.resolver.resolve(src, hint)
            for name in res.missing:
                self.warn(f"library {name} needed by {src} (in a copied dir, {where}) was not found")
            for pair in _lib_pairs(res):
                if pair in seen:
                    continue  # the same library for the same place: decided already
                seen.add(pair)
                op = self._lib_op(*pair, where, res.elf)
                real = _realpath(op.src, real_dirs)
                if any(real.startswith(p) for p in copied_srcs):
                    continue  # copied with its dir already
                if op.dest not in planned:
                    planned.add(op.dest)
                    plan.dir_libs.append(op)


def _lib_pairs(res: Resolution) -> list[tuple[str, str]]:
    """(host source, absolute place in the image) of the loader and each library."""
    out = []
    if res.loader is not None and res.interp:
        out.append((res.loader.path, res.interp))
    out.extend((dep.path, res.dest_of(dep)) for dep in res.libs)
    return out


def _realpath(p: str, real_dirs: dict[str, str]) -> str:
    """os.path.realpath(p), resolving each directory once per run (libraries share a few dirs:
    a full realpath per library costs an lstat per path component)."""
    for _ in range(40):
        d, b = os.path.split(p)
        rd = real_dirs.get(d)
        if rd is None:
            rd = real_dirs[d] = os.path.realpath(d)
        q = os.path.join(rd, b)
        try:
            t = os.readlink(q)
        except OSError:
            return q  # not a symlink (or absent): realpath ends here too
        if ".." in t.split("/"):
            break  # '..' after a symlink: leave it to realpath
        p = os.path.normpath(os.path.join(rd, t))  # only '.' and '//' to fold here
    return os.path.realpath(p)


def _common_loader(resolver: Resolver, infos: list[ElfInfo]) -> Loader | None:
    """Occlum's default loader: the one loader all ELFs with a PT_INTERP share, if unique."""
    interps = {i.interp for i in infos if i.interp}
    if len(interps) == 1:
        return resolver.config.for_interp(interps.pop())
    return None


def dedupe(plan: Plan, note: Callable[[str], None]) -> None:
    """Occlum's conflict rules: the first mkdir of a dir wins; the last link, dir copy and file
    copy to one destination win (a file listed in a bom beats a library of the same bom)."""
    seen_dirs: set[str] = set()
    for bo in plan.boms:
        keep = []
        for op in bo.mkdirs:
            k = op.dest.rstrip("/")
            if k not in seen_dirs:
                seen_dirs.add(k)
                keep.append(op)
        bo.mkdirs = keep

    def last_wins(attr: str, key: Callable[[Op], str], seen: dict[str, Op], what: str) -> None:
        for bo in reversed(plan.boms):
            keep = []
            for op in reversed(getattr(bo, attr)):
                k = key(op)
                if k in seen:
                    winner = seen[k]
                    if winner.src != op.src or winner.kind != op.kind:
                        note(f"conflict: {what} {k}: {op.src} ({op.where}) is overridden by "
                             f"{winner.src} ({winner.where})")
                    continue
                seen[k] = op
                keep.append(op)
            keep.reverse()
            setattr(bo, attr, keep)

    last_wins("links", lambda o: o.dest, {}, "link")
    last_wins("copydirs", lambda o: o.dir_key, {}, "dir copy to")
    files: dict[str, Op] = {}
    for bo in reversed(plan.boms):  # within one bom, listed files before libraries
        for attr in ("copyfiles", "libs"):
            keep = []
            for op in reversed(getattr(bo, attr)):
                if op.dest in files:
                    w = files[op.dest]
                    if os.path.realpath(w.src) != os.path.realpath(op.src):
                        note(f"conflict: file {op.dest}: {op.src} ({op.where}) is overridden by "
                             f"{w.src} ({w.where})")
                    continue
                files[op.dest] = op
                keep.append(op)
            keep.reverse()
            setattr(bo, attr, keep)


def check_missing(planner: Planner, plan: Plan) -> None:
    """Occlum's lazy check (exit -8): a library missing for a ``files`` entry is an error unless
    a file of that name is in the root anyway (copied by another entry, or already there)."""
    if not planner.missing:
        return
    names = {os.path.basename(op.dest) for bo in plan.boms for op in bo.copyfiles + bo.libs}
    names.update(os.path.basename(op.dest) for op in plan.dir_libs)
    for bo in plan.boms:
        for op in bo.copydirs:
            names.update(os.path.basename(e.rel) for e in op.entries or ())
    still = [(n, by, w) for n, by, w in planner.missing if n not in names]
    if still and os.path.isdir(planner.root):
        in_root = set()
        for _, _, fs in os.walk(planner.root):
            in_root.update(fs)
        still = [m for m in still if m[0] not in in_root]
    if still:
        listed = "; ".join(f"{n} (needed by {by}, {w})" for n, by, w in still)
        raise BomError(f"copy_bom failed: these libraries are missing: {listed}. Install them, add their "
                       "dirs to occlum_elf_loader.config, or set autodep: false", exit_code=None)
