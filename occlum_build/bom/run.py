"""copy_bom: plan, then carry out (or, in a dry run, print) the operations in Occlum's order.

Order per bom (the top bom first, then includes breadth first): mkdirs (the root first),
createlinks, dir copies, file copies, libraries of the files; after all boms, the libraries of
ELF files inside copied dirs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import fsutil, ignored_paths, paths
from .. import log as oclog
from ..errors import OcclumError, OutputError
from . import stamp
from .elfcache import ElfCache
from .elfdeps import Resolver
from .fscopy import IS_ROOT, Entry, Writer, attrs_differ, quick_check
from .includes import collect_boms
from .loaders import LoaderConfig
from .plan import Op, Plan, Planner, check_missing, dedupe

log = oclog.get("copy_bom")


@dataclass
class CopyReport:
    """What a copy_bom run did (or, in a dry run, would do)."""

    root: Path
    dry_run: bool
    boms: list[Path] = field(default_factory=list)
    dirs_created: int = 0
    links_created: int = 0
    files_copied: int = 0
    bytes_copied: int = 0
    attrs_updated: int = 0
    up_to_date: int = 0
    libraries: list[tuple[str, str]] = field(default_factory=list)  # (host source, image dest)
    operations: list[str] = field(default_factory=list)  # every change, in order
    conflicts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # paths written that no program reads

    @property
    def changed(self) -> bool:
        return bool(self.operations)

    def summary(self) -> str:
        verb = "would copy" if self.dry_run else "copied"
        if not self.changed:
            return (f"copy_bom: nothing to copy, {self.root} is up to date "
                    f"({self.up_to_date} files checked)")
        return (f"copy_bom: {verb} {self.files_copied} files ({self.bytes_copied} bytes), "
                f"{self.links_created} links, {self.dirs_created} dirs, {self.attrs_updated} attribute "
                f"updates; {self.up_to_date} files up to date")


class _Exec:
    def __init__(self, root: str, dry: bool, report: CopyReport):
        self.w = Writer(root)
        self.root = self.w.root
        self.dry = dry
        self.r = report
        self._dirs: set[str] = set()
        self.trace = log.isEnabledFor(oclog.TRACE)  # one line per file, changed or not

    def did(self, text: str) -> None:
        self.r.operations.append(text)
        log.log(logging.INFO if self.dry else logging.DEBUG, "%s%s", "[dry-run] " if self.dry else "", text)

    def mkdir(self, dest: str, mode: int = 0o755) -> None:
        if dest in self._dirs:
            return
        self._dirs.add(dest)
        if os.path.isdir(dest):
            self.w.check_parent(os.path.join(dest, "x"), shown=dest)  # dest's own path
            return
        if self.dry:
            if os.path.isdir(os.path.dirname(dest)):
                self.w.check_parent(dest)
            self.r.dirs_created += 1
            self.did(f"mkdir -p {dest}")
            up = os.path.dirname(dest)  # mkdir -p makes the parents too
            while up.startswith(self.root) and up not in self._dirs:
                self._dirs.add(up)
                up = os.path.dirname(up)
            return
        if self.w.mkdir(dest, mode):
            self.r.dirs_created += 1
            self.did(f"mkdir -p {dest}")

    def link(self, target: str, dest: str, st: os.stat_result | None = None) -> None:
        self.mkdir(os.path.dirname(dest))
        if self.dry:
            if not (os.path.islink(dest) and os.readlink(dest) == target):
                self.r.links_created += 1
                self.did(f"ln -s {target} {dest}")
            return
        if self.w.symlink(target, dest, st):
            self.r.links_created += 1
            self.did(f"ln -s {target} {dest}")

    def file(self, src: str, st: os.stat_result, dest: str, parent_ok: bool = False) -> None:
        """Copy one file; ``parent_ok``: its dir was just made/checked by the dir copy."""
        if not parent_ok:
            self.mkdir(os.path.dirname(dest))
        what = self._dry_file(st, dest) if self.dry else self.w.file(src, st, dest, parent_ok)
        if what == "copied":
            self.r.files_copied += 1
            self.r.bytes_copied += st.st_size
            self.did(f"copy {src} -> {dest}")
        elif what == "attrs":
            self.r.attrs_updated += 1
            self.did(f"set mode/owner of {dest} from {src}")
        else:
            self.r.up_to_date += 1
            if self.trace:
                log.log(oclog.TRACE, "up to date: %s (from %s)", dest, src)

    @staticmethod
    def _dry_file(st: os.stat_result, dest: str) -> str:
        """What Writer.file would do, without doing it: 'copied', 'attrs' or 'same'."""
        try:
            return quick_check(os.lstat(dest), st)
        except OSError:
            return "copied"

    def copydir(self, op: Op) -> None:
        log.info("%scopy dir %s%s -> %s", "[dry-run] " if self.dry else "", op.src,
                 "/" if op.contents else "", op.dest)
        base = op.dest
        self.mkdir(base)
        n_ops = len(self.r.operations)
        dirs: list[tuple[str, Entry, os.stat_result | None]] = []
        lstat = os.lstat
        prefix = base + "/"
        same = 0
        for e in op.entries or ():
            dest = prefix + e.rel
            if e.kind == "file":
                # The no-change case inline (it is most of a repeated run): the quick check
                # (size, mtime) plus the attributes; the same st_mode means a regular file with
                # the same permission bits, as the source is one.
                st = e.st
                try:
                    d = lstat(dest)
                    if d.st_mtime_ns == st.st_mtime_ns and d.st_size == st.st_size and \
                            d.st_mode == st.st_mode and (not IS_ROOT or (d.st_uid == st.st_uid
                                                                         and d.st_gid == st.st_gid)):
                        same += 1
                        if self.trace:
                            log.log(oclog.TRACE, "up to date: %s (from %s)", dest, e.src)
                        continue
                except OSError:
                    pass
                self.file(e.src, st, dest, parent_ok=True)
            elif e.kind == "dir":
                d = None
                if dest not in self._dirs:
                    d = self.w.existing_dir(dest)
                if d is not None:
                    self._dirs.add(dest)
                else:
                    self.mkdir(dest, e.st.st_mode & 0o7777)
                dirs.append((dest, e, d))
            else:
                assert e.kind == "link" and e.link is not None
                self.link(e.link, dest, e.st)
        self.r.up_to_date += same
        if self.dry:  # what dir_attrs would change in the dirs that exist
            for dest, e, d in reversed(dirs):
                if d is not None and attrs_differ(d, e.st):
                    self.r.attrs_updated += 1
                    self.did(f"set mode/owner of {dest} from {e.src}")
        else:
            # nothing written by this copy: the lstat of each existing dir is still current
            fresh = len(self.r.operations) != n_ops
            for dest, e, d in reversed(dirs):  # rsync sets dir times after filling them
                if self.w.dir_attrs(dest, e.st, None if fresh else d):
                    self.r.attrs_updated += 1
                    self.did(f"set mode/owner of {dest} from {e.src}")


def _execute(ex: _Exec, plan: Plan, report: CopyReport) -> None:
    for bo in plan.boms:
        for op in bo.mkdirs:
            ex.mkdir(op.dest)
        for op in bo.links:
            ex.link(op.src, op.dest)
        for op in bo.copydirs:
            ex.copydir(op)
        for op in bo.copyfiles + bo.libs:
            assert op.st is not None
            if op.kind == "lib":
                report.libraries.append((op.src, op.dest))
            ex.file(op.src, op.st, op.dest)
    for op in plan.dir_libs:
        assert op.st is not None
        report.libraries.append((op.src, op.dest))
        ex.file(op.src, op.st, op.dest)


def copy_bom(bom_file: str | os.PathLike[str], root: str | os.PathLike[str], *,
             include_dirs: Sequence[str | os.PathLike[str]] = (), dry_run: bool = False,
             loader_config: LoaderConfig | None = None, env: Mapping[str, str] | None = None,
             resolver: Resolver | None = None) -> CopyReport:
    """Copy what ``bom_file`` (and its includes) describes into ``root``.

    Bad input raises BomError / VerifyError (exit code 2 / 3) before anything is written;
    write failures raise OutputError (5).  Nothing is ever deleted from ``root``.
    """
    report = CopyReport(Path(os.path.abspath(root)), dry_run)
    started_ns = time.time_ns()
    real_env = os.environ if env is None else env
    # The no-change fast path (stamp.py), for the plain invocation (the CLI's): with a
    # caller's loader config or resolver the run's inputs are not all known here.
    spath = None
    if loader_config is None and resolver is None:
        spath = stamp.stamp_path(str(report.root), os.fspath(bom_file), [os.fspath(d) for d in include_dirs],
                                 str(paths.elf_loader_config()))
    if spath is not None:
        rec = stamp.load(spath, real_env)
        if rec is not None:
            return _recorded(report, rec)

    def warn(msg: str) -> None:
        report.warnings.append(msg)
        log.warning("%s", msg)

    def note(msg: str) -> None:
        report.conflicts.append(msg)
        log.info("%s", msg)

    watch = stamp.Watch() if spath is not None and not dry_run else None
    rec_env = stamp.RecordingEnv(real_env)
    if watch is not None:  # what the loaders' search paths are read from, before they are
        watch.add_now([str(paths.elf_loader_config()), *stamp.loader_files()])
    boms = collect_boms(bom_file, include_dirs, rec_env, watch)
    report.boms = [b.path for b in boms]
    resolver = resolver or Resolver(loader_config, ElfCache.default())
    planner = Planner(str(report.root), resolver, rec_env, warn, watch)
    plan = Plan(planner.root, [planner.bom_ops(b) for b in boms])
    planner.dir_autodep(plan)
    dedupe(plan, note)
    check_missing(planner, plan)
    if os.path.isdir(planner.root) and any(os.scandir(planner.root)):
        log.debug("%s is not an empty directory before running copy_bom", planner.root)

    ex = _Exec(planner.root, dry_run, report)
    dests = _dests(plan)
    try:
        _remove_partial_copies(ex, dests)
        _execute(ex, plan, report)
    except OcclumError as e:
        # Say how far the run got: every file before this one is complete, none half-written.
        if report.changed:
            e.message += (f" (before this failure: {report.files_copied} files, {report.links_created} "
                          f"links, {report.dirs_created} dirs written, each complete; fix the cause "
                          "and run again, only what is missing is copied)")
        else:
            e.message += " (nothing was written to the root)"
        raise
    root = planner.root.rstrip("/")
    report.ignored = ignored_paths.notes(root, {"/" + os.path.relpath(d, root) for d in _dests(plan)})
    for msg in report.ignored:
        log.warning("%s", msg)
    if resolver.cache is not None and not dry_run:
        resolver.cache.save()
    if watch is not None and spath is not None and not report.warnings and not planner.missing:
        for p, st in resolver.probed():
            watch.add(p, st)
        stamp.save(spath, watch, dests, rec_env.used, _record(report), started_ns)
    log.info("%s", report.summary())
    return report


def _remove_partial_copies(ex: _Exec, dests: set[str]) -> None:
    """A killed copy_bom leaves the copy it was writing under its temp name beside the
    destination (``.NAME.copy_bomPID``, fsutil).  Every dir this run writes into is cleared
    of those whose writer is dead (nothing else is ever deleted), so a killed run converges to
    the clean result and no partial file reaches an image (which would leave it out anyway)."""
    inside = ex.root.rstrip("/") + "/"
    for d in sorted({os.path.dirname(p) for p in dests}):
        if d != ex.root and not d.startswith(inside):
            continue
        for p in fsutil.stale_temps(d, tag=fsutil.COPY_BOM_TAG):
            if not ex.dry:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    raise OutputError(f"cannot remove a partial copy of an interrupted copy_bom: "
                                      f"{e.strerror}", where=p) from None
            ex.did(f"rm {p} (a partial copy left by an interrupted copy_bom)")


def _dests(plan: Plan) -> set[str]:
    """Every path the plan writes or checks in the root, and every dir between them and the
    root (a dir swapped for a symlink is a change: the full run refuses to write through it)."""
    out: set[str] = set()
    for bo in plan.boms:
        out.update(op.dest for op in bo.mkdirs + bo.links + bo.copyfiles + bo.libs)
        for op in bo.copydirs:
            out.add(op.dest)
            out.update(op.dest + "/" + e.rel for e in op.entries or ())
    out.update(op.dest for op in plan.dir_libs)
    root = plan.root.rstrip("/")
    for p in list(out):
        d = os.path.dirname(p)
        while d.startswith(root) and len(d) > len(root) and d not in out:
            out.add(d)
            d = os.path.dirname(d)
    return out


def _record(r: CopyReport) -> dict:
    """What a later no-change run reports (stamp.py): every file is then up to date."""
    return {"boms": [str(b) for b in r.boms], "files": r.files_copied + r.attrs_updated + r.up_to_date,
            "libraries": [list(x) for x in r.libraries], "conflicts": r.conflicts,
            "ignored": r.ignored}


def _recorded(report: CopyReport, rec: dict) -> CopyReport:
    """The report of a run the stamp shows to have nothing to do."""
    report.boms = [Path(b) for b in rec["boms"]]
    report.up_to_date = rec["files"]
    report.libraries = [(a, b) for a, b in rec["libraries"]]
    report.conflicts = list(rec["conflicts"])
    for msg in report.conflicts:
        log.info("%s", msg)
    ignored = rec.get("ignored")  # absent in stamps of older versions
    report.ignored = [m for m in ignored if isinstance(m, str)] if isinstance(ignored, list) else []
    for msg in report.ignored:
        log.warning("%s", msg)
    log.debug("copy_bom: every input and destination is as the last run left it (stamp)")
    log.info("%s", report.summary())
    return report
