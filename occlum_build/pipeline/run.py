"""Running the graph: doit embedded in-process (`occlum build`) or from a dodo.py (`doit build`).

`occlum build` takes the instance's build lock, validates build/.state (discarding it with a
warning if it is unreadable), then runs doit's ``run`` command through
``DoitMain(ModuleTaskLoader(namespace))`` with our checker, an sqlite3 dependency db inside
build/.state and ``config_filenames=()`` (a user's doit.cfg / pyproject [tool.doit] do not
change how an instance is built).  A stage failure is re-raised here as the stage's own
OcclumError, so the CLI prints one line and exits with its documented code.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain
from doit.reporter import ZeroReporter

from .. import ignored_paths, log, paths, runtime
from ..errors import OcclumError, OutputError
from ..fsutil import atomic_write, own_dir
from ..instance import require_instance
from ..paths import Instance
from .checker import HashCache, checker_class
from .context import env_defaults
from .graph import BuildContext, BuildOptions, tasks
from .report import make_report, summary, write_report
from .state import build_lock
from .target import write_target

_log = log.get("pipeline")

STAGE_MESSAGES = {
    "enclave_xml": "Validating Occlum.json, writing Enclave.xml",
    "image_config": "Writing image_config.json",
    "image": "Building the image",
    "initfs": "Building the initfs",
    "sys_json": "Writing .Occlum_sys.json",
    "protect": "Protecting .Occlum_sys.json",
    "libos": "Building libOS (conf MAC into .builtin_config)",
    "sign": "Signing the enclave",
    "runtime": "Copying the runtime",
}


class Progress:
    """Per-file progress of a long stage on a terminal: ``  image: 41% 12.0 MiB / 29.3 MiB``.

    Redraws at most 10 times a second; prints nothing when stderr is not a terminal (logs of
    CI runs stay readable: each stage still gets its one line)."""

    def __init__(self, out: TextIO, stage: str):
        self.out, self.stage = out, stage
        self.last = 0.0
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        pct = 100 * done // total if total else 100
        self.out.write(f"\r  {self.stage}: {pct:3d}% {done / 2**20:.1f} MiB / {total / 2**20:.1f} MiB")
        self.out.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.out.write("\n")
            self.out.flush()
            self.shown = False


def finish(ctx: BuildContext) -> None:
    """The last task: report, status, SGX mode, a fresh run/ (as Occlum does on every build)."""
    inst = ctx.inst
    rep = make_report(ctx)
    rep["seconds"] = round(time.monotonic() - ctx.started, 6)
    write_report(ctx, rep)
    _write_if_changed(inst.sgx_mode_file, ctx.opts.sgx_mode + "\n")
    write_target(inst, ctx.target)
    # Occlum deletes run/ on every build: the writable layer of the previous image is stale.
    if inst.run.is_dir() and not inst.run.is_symlink():
        shutil.rmtree(inst.run)
    elif inst.run.exists() or inst.run.is_symlink():
        inst.run.unlink()
    for d in (inst.run_upper, inst.run_initfs_upper):
        own_dir(d, paths.LAYER_DIR_MODE, parent_mode=paths.OUTPUT_DIR_MODE)
    for d in (inst.run, inst.run_upper.parent, inst.run_initfs_upper.parent, inst.build,
              inst.build_bin, inst.build_lib):
        own_dir(d, paths.OUTPUT_DIR_MODE)
    _write_if_changed(inst.status_file, paths.STATUS_BUILT + "\n")
    ctx.cache.save()
    ctx.report = rep


def _write_if_changed(path: Path, text: str) -> None:
    """atomic_write, left out when the file already says exactly this (two fsyncs saved on
    every build: .sgx_mode and the status rarely change)."""
    try:
        if path.read_text() == text:
            return
    except (OSError, ValueError):
        pass
    atomic_write(path, text)


def doit_config(ctx: BuildContext, reporter: Any = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "dep_file": str(ctx.state.dep_file),
        "backend": "sqlite3",
        "check_file_uptodate": checker_class(ctx.cache),
        "default_tasks": ["build"],
        "verbosity": 2,
    }
    if reporter is not None:
        cfg["reporter"] = reporter
    return cfg


def namespace(ctx: BuildContext, reporter: Any = None) -> dict[str, Any]:
    """A dodo-like namespace: DOIT_CONFIG and one task creator yielding every stage.

    The task dicts are made here, not inside doit's loader: a bad input found while making
    them (a signing key that does not load, say) is then our one-line error, not a traceback
    from doit."""
    made = tasks(ctx, finish)

    def task_occlum() -> Iterable[dict[str, Any]]:
        yield from made

    task_occlum.__doc__ = "occlum build stages"
    return {"DOIT_CONFIG": doit_config(ctx, reporter), "task_occlum": task_occlum}


def _reporter_for(ctx: BuildContext, out: TextIO) -> type:
    class OcclumReporter(ZeroReporter):  # type: ignore[misc]  # doit is untyped
        """One line per stage that runs; failures are collected for run_build, which raises
        them as one line (doit's ZeroReporter prints nothing else)."""

        desc = "occlum build"

        def __init__(self, outstream: Any, options: Any):
            super().__init__(outstream, options)
            self.errors: list[str] = []

        def execute_task(self, task: Any) -> None:
            msg = STAGE_MESSAGES.get(task.name)
            if msg:
                out.write(f"{msg}...\n")
                out.flush()

        def add_failure(self, task: Any, fail: Any) -> None:
            self.errors.append(f"{task.name}: {fail.get_msg().strip()}")

        def skip_uptodate(self, task: Any) -> None:
            if task.name in STAGE_MESSAGES:
                _log.debug("%s: up to date", task.name)

        def cleanup_error(self, exception: Any) -> None:
            self.errors.append(str(exception))

        def runtime_error(self, msg: str) -> None:
            self.errors.append(msg)

        def complete_run(self) -> None:
            ctx.doit_errors = self.errors

    return OcclumReporter


def _progress_factory(out: TextIO) -> tuple[Callable[[str], Any], list[Progress]]:
    made: list[Progress] = []

    def factory(stage: str) -> Progress | None:
        if not out.isatty():
            return None
        p = Progress(out, stage)
        made.append(p)
        return p

    return factory, made


def run_build(instance_dir: str | os.PathLike[str], opts: BuildOptions, *,
              targets: Iterable[str] = ("build",), out: TextIO | None = None) -> dict[str, Any]:
    """Build the instance (or the named stages); return the report (empty if not built)."""
    out = log.status_stream(out)
    inst = require_instance(instance_dir)
    ctx = BuildContext.create(inst, opts)
    _warn_hw_without_sgx(opts)
    _warn_ignored_paths(inst)
    factory, progresses = _progress_factory(out)
    ctx.progress = factory
    ctx.announce = lambda msg: print(msg, file=out, flush=True)
    with _runtimes_excluded(inst), build_lock(inst):
        ctx.state.prepare()
        ctx.cache = HashCache(ctx.state.hashes)
        ns = namespace(ctx, _reporter_for(ctx, out))
        args = ["run", *(["--always-execute"] if opts.force else []), *targets]
        try:
            rc = DoitMain(ModuleTaskLoader(ns), config_filenames=()).run(args)
        except sqlite3.Error as e:
            raise OutputError(f"cannot write the dependency database: {e}",
                              where=str(ctx.state.dep_file)) from None
        finally:
            for p in progresses:
                p.close()
        with contextlib.suppress(OcclumError):
            ctx.cache.save()
        if rc != 0:
            if ctx.error is not None:
                raise ctx.error
            errs = ctx.doit_errors or [f"doit exited with {rc}"]
            raise OcclumError("build failed: " + "; ".join(e.splitlines()[0] for e in errs if e))
    return ctx.report


def _warn_hw_without_sgx(opts: BuildOptions) -> None:
    if opts.sgx_mode == "HW" and (note := runtime.hw_without_sgx_note("building")):
        _log.warning("%s", note)


def _warn_ignored_paths(inst: Instance) -> None:
    """Files of image/ that Occlum's images use and no program here reads (ignored_paths)."""
    for note in ignored_paths.notes(inst.image):
        _log.warning("%s", note)


@contextlib.contextmanager
def _runtimes_excluded(inst: Instance) -> Iterator[None]:
    """No runtime uses the instance while it is built: a started or running instance is
    refused (exit 4) before anything changes, and none can start until the build is done."""
    fd = runtime.exclude_runtimes(inst, "occlum build")
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


# ---------------------------------------------------------------------------- dodo.py support
_held: list[Any] = []


def dodo(instance_dir: str | os.PathLike[str] = ".", *, after: Sequence[str] = (),
         **options: Any) -> dict[str, Any]:
    """The namespace for an application's dodo.py (docs/build.md)::

        from occlum_build.pipeline.run import dodo
        globals().update(dodo("occlum_instance", sgx_mode="SIM"))

    ``options`` are :class:`BuildOptions` fields (paths relative to the dodo.py directory);
    ``sgx_mode``, ``edmm_platform`` and ``occlum_dir`` default to $SGX_MODE (else HW),
    $ENABLE_EDMM and $OCCLUM_DIR, as for `occlum build` (context.env_defaults).  The instance's build
    lock is taken here and held until doit exits (`doit list` included).  ``after``: names
    of the app's tasks that write into image/ or initfs/ (apptasks.copy_bom_task, a compile
    step): the image stages run after them.
    """
    log.setup()
    try:
        inst = require_instance(Path(instance_dir))
        for k, v in env_defaults().items():
            options.setdefault(k, v)
        for k in ("sign_key", "image_key", "occlum_dir"):
            if options.get(k) is not None:
                options[k] = Path(os.path.abspath(options[k]))
        ctx = BuildContext.create(inst, BuildOptions(**options))
        _warn_hw_without_sgx(ctx.opts)
        _warn_ignored_paths(inst)
        status = log.status_stream()
        ctx.announce = lambda msg: print(msg, file=status, flush=True)
        excluded = _runtimes_excluded(inst)
        excluded.__enter__()
        _held.append(excluded)
        lock = build_lock(inst)
        lock.__enter__()
        _held.append(lock)
        ctx.state.prepare()
        ctx.cache = HashCache(ctx.state.hashes)

        def print_summary(c: BuildContext) -> None:
            finish(c)
            print("Built the Occlum image and enclave successfully\n" + summary(c.report),
                  file=status)

        made = tasks(ctx, print_summary)
        for t in made:
            if t["basename"] in ("image", "initfs"):
                t["task_dep"] = [*t.get("task_dep", []), *after]
    except OcclumError as e:  # one line, the documented exit code; no doit traceback
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None

    def task_occlum() -> Iterable[dict[str, Any]]:
        yield from made

    task_occlum.__doc__ = "occlum build stages"
    return {"DOIT_CONFIG": doit_config(ctx), "task_occlum": task_occlum}


__all__ = ["BuildOptions", "Instance", "dodo", "run_build"]
