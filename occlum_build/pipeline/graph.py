"""The `occlum build` task graph: doit task dicts built from the stage functions (stages.py),
the build context (context.py) and the instance paths.

Stages (one doit task each; `doit list` shows them):

    prepare       clean build after -f or an SGX mode change (always runs, cheap)
    enclave_xml   Occlum.json -> build/Enclave.xml
    image_config  -> build/image_config.json ({"image_type": ...})
    image         image/  -> build/mount/__ROOT + build/mount/.ROOT_MAC
    initfs        initfs/ (+ generated etc/ files) -> build/initfs/__ROOT + .ROOT_MAC
    sys_json      Occlum.json + both MACs -> build/.Occlum_sys.json
    protect       -> build/.Occlum_sys.json.protected (its conf MAC)
    libos         libocclum-libos.so with the conf MAC in .builtin_config
    sign          -> build/lib/libocclum-libos.signed.so (MRENCLAVE, MRSIGNER)
    runtime       PAL library and occlum-run copied into build/lib, build/bin
    build         build/report.json, status "built", .sgx_mode, fresh run/

Small inputs are doit ``file_dep`` checked by content (checker.py).  The image stages keep
their own per-file manifest in build/.state (one doit task per file is 11-15x slower at
100k files) and run every time; an unchanged tree costs a stat walk.  Up-to-date decisions
never depend on a secret: the image stage sees a key *fingerprint*, never the key.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed
from doit.tools import config_changed

from .. import log, pathlimit, paths
from ..errors import ConfigError, OcclumError, OutputError
from . import signing
from . import stages as st
from .context import (
    BUILTIN_CONFIG_SECTION,
    IMAGE_METADATA,
    SGX_MODES,
    BuildContext,
    BuildOptions,
    key_fingerprint,
    mtimes_desc,
    sign_date,
)
from .stages import builtin_config_bytes, conf_mac_of

_log = log.get("pipeline")


def _stage(ctx: BuildContext, name: str, func: Callable[[], dict[str, Any] | None]) -> Callable[[], Any]:
    """A doit action running ``func``: times it, records it, turns failures into one line."""

    def action() -> Any:
        t0 = time.monotonic()
        replaces = name not in ("prepare", "build")  # this stage replaces outputs in build/
        try:
            if replaces:
                st.outputs_changing(ctx)
            stats = func() or {}
        except OcclumError as e:
            ctx.error = ctx.error or e
            return _failed(str(e))
        except OSError as e:
            too_long = pathlimit.error_message(e, e.filename) if e.filename else None
            err = OcclumError(too_long) if too_long else OutputError(
                "no space left on device; previous outputs kept" if e.errno == errno.ENOSPC
                else f"{e.strerror or e}",
                where=pathlimit.shown(e.filename) if e.filename else f"stage {name}")
            ctx.error = ctx.error or err
            return _failed(str(err))
        except Exception as e:  # a bug: keep it for run.py, which reports it as internal
            ctx.error = ctx.error or e
            return _failed(f"{type(e).__name__}: {e}")
        if replaces:
            ctx.outputs_replaced = True
        rec = {"run_id": ctx.run_id, "seconds": round(time.monotonic() - t0, 6), "stats": stats}
        ctx.state.write_stage(name, rec)
        return None

    def _failed(msg: str) -> TaskFailed:
        with contextlib.suppress(OSError, OcclumError):
            st.outputs_kept(ctx)
        return TaskFailed(msg)

    action.__name__ = f"stage_{name}"
    return action


def _targets_intact(ctx: BuildContext, name: str, targets: list[Path]) -> Callable[..., bool]:
    """doit checks targets only for existence; we also compare their content with what the
    stage wrote, so a tampered or truncated output is rebuilt, not trusted."""

    def check(task: Any, values: Any) -> bool:
        rec = ctx.state.read_stage(name) or {}
        want = (rec.get("stats") or {}).get("outputs")
        if not isinstance(want, dict):
            return False
        try:
            return all(ctx.cache.digest(t) == want.get(str(t)) for t in targets)
        except OSError:
            return False

    return check


def _small_task(ctx: BuildContext, name: str, doc: str, func: Callable[[], None], *,
                file_dep: list[Path], targets: list[Path], config: dict[str, Any] | None = None,
                task_dep: list[str] | None = None) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        func()
        return st.record_outputs(ctx, targets)

    uptodate: list[Any] = [_targets_intact(ctx, name, targets)]
    if config is not None:
        uptodate.append(config_changed(json.dumps(config, sort_keys=True)))
    return {"basename": name, "doc": doc, "actions": [_stage(ctx, name, run)],
            "file_dep": [str(p) for p in file_dep], "targets": [str(p) for p in targets],
            "uptodate": uptodate, "task_dep": ["prepare"] + (task_dep or []), "verbosity": 2}


# ---------------------------------------------------------------------------- stages
def _layer_uptodate(ctx: BuildContext, stage: str, src: Callable[[], Path], out: Path,
                    mac_file: Path, cache_dir: Path, key: Callable[[], bytes | None],
                    normalize_modes: bool = False, mtimes: Any = None) -> Callable[..., bool]:
    """Up to date when the outputs are the ones this stage wrote, for the same key, and the
    source tree is unchanged: first by its stat-key stamp (treestamp.py: one walk, nothing
    read), else by recomputing its MAC with the stage's own manifest (files whose stat key is
    unchanged are not read).  A MAC match refreshes the stamp, so after a `touch` the files
    are hashed once, not on every later build."""

    def check(task: Any, values: Any) -> bool:
        from ..image import matches_mac, read_mac_file
        from .treestamp import tree_stamp

        rec = ctx.state.read_stage(stage) or {}
        stats = rec.get("stats") or {}
        if stats.get("key_fingerprint") != key_fingerprint(key()):
            return False
        if bool(stats.get("normalize_modes")) != normalize_modes or \
                stats.get("mtimes", "zero") != mtimes_desc(mtimes):
            return False
        want = stats.get("outputs")
        if not isinstance(want, dict):
            return False
        try:
            if any(ctx.cache.digest(p) != want.get(str(p)) for p in (out / IMAGE_METADATA, mac_file)):
                return False
            s = src()
            if not s.is_dir():
                return False
            stamp, racy = tree_stamp(s)
            if stamp == stats.get("tree_stamp"):
                return True
            if not matches_mac(s, read_mac_file(mac_file), key=key(), cache_dir=cache_dir,
                               normalize_modes=normalize_modes, mtimes=mtimes):
                return False
            if not racy:
                ctx.state.write_stage(stage, {**rec, "stats": {**stats, "tree_stamp": stamp}})
            return True
        except (OSError, OcclumError):
            return False  # let the stage run and report the problem properly
        finally:
            if stage == "initfs":
                st.drop_staged_key(ctx)

    return check


def stage_names(ctx: BuildContext) -> list[str]:
    """The stages in this build, in order."""
    return ["enclave_xml", "image_config", "image", "initfs", "sys_json", "protect", "libos",
            "sign", "runtime"]


def tasks(ctx: BuildContext, finish: Callable[[BuildContext], None]) -> list[dict[str, Any]]:
    """All task dicts of the build; ``finish`` writes the report and the status."""
    inst = ctx.inst
    out: list[dict[str, Any]] = [{
        "basename": "prepare", "doc": "clean build after -f or an SGX mode change",
        "actions": [_stage(ctx, "prepare", lambda: st.prepare(ctx))], "uptodate": [False],
        "verbosity": 2}]
    out.append(_small_task(
        ctx, "enclave_xml", "Occlum.json -> build/Enclave.xml", lambda: st.write_enclave_xml(ctx),
        file_dep=[inst.config], targets=[inst.enclave_xml],
        config={"edmm_platform": ctx.edmm_platform}))
    out.append(_small_task(
        ctx, "image_config", "build/image_config.json", lambda: st.write_image_config(ctx),
        file_dep=[], targets=[inst.image_config_json],
        config={"encrypted": ctx.image_key is not None}))
    # The image stages run every time: their own manifest makes an unchanged tree a stat walk.
    sd = ctx.state
    out.append({"basename": "image", "doc": "image/ -> build/mount/__ROOT + .ROOT_MAC",
                "actions": [_stage(ctx, "image", lambda: st.build_image_layer(ctx))],
                "targets": [str(inst.image_mac_file)],
                "uptodate": [_layer_uptodate(ctx, "image", lambda: inst.image, inst.image_out,
                                             inst.image_mac_file, sd.image_cache, lambda: ctx.image_key,
                                             ctx.opts.normalize_modes, ctx.mtimes)],
                "task_dep": ["prepare"], "verbosity": 2})
    # The init FS source is the staged mirror (staging.py); staging is cheap and happens in
    # the check, so the check sees exactly what the stage would build.
    out.append({"basename": "initfs", "doc": "initfs/ -> build/initfs/__ROOT + .ROOT_MAC",
                "actions": [_stage(ctx, "initfs", lambda: st.build_initfs_layer(ctx))],
                "targets": [str(inst.initfs_mac_file)],
                "uptodate": [_layer_uptodate(ctx, "initfs", lambda: st.stage_initfs_src(ctx),
                                             inst.initfs_out, inst.initfs_mac_file,
                                             sd.initfs_cache, lambda: None)],
                "task_dep": ["prepare"], "verbosity": 2})
    out.append(_small_task(
        ctx, "sys_json", "Occlum.json + MACs -> build/.Occlum_sys.json", lambda: st.write_sys_json(ctx),
        file_dep=[inst.config, inst.image_mac_file, inst.initfs_mac_file], targets=[inst.sys_json],
        config={"edmm_platform": ctx.edmm_platform},
        task_dep=["enclave_xml"]))  # enclave_xml validates Occlum.json first
    out.append(_small_task(
        ctx, "protect", "build/.Occlum_sys.json.protected (conf MAC)", lambda: st.write_protected(ctx),
        file_dep=[inst.sys_json], targets=[inst.sys_json_protected]))
    out.append(_small_task(
        ctx, "libos", "LibOS with the conf MAC in .builtin_config", lambda: st.patch_libos(ctx),
        file_dep=[ctx.libos_source, inst.sys_json_protected], targets=[ctx.libos_unsigned],
        config={"target": ctx.target}))
    sign_state: dict[str, Any] = {}

    def do_sign() -> dict[str, Any]:
        signer, _ = sign_state["signer"]
        stats = signing.sign(ctx, signer)
        stats.update(st.record_outputs(ctx, [inst.libos_signed]))
        return stats

    # The signer (and a missing development key) is resolved when the graph is made: its
    # description is part of the sign stage's up-to-date check.
    sign_state["signer"] = signing.signer_for(ctx)
    desc = {"signer": sign_state["signer"][1], "date": sign_date()}
    out.append({"basename": "sign", "doc": "sign -> build/lib/libocclum-libos.signed.so",
                "actions": [_stage(ctx, "sign", do_sign)],
                "file_dep": [str(ctx.libos_unsigned), str(inst.enclave_xml)],
                "targets": [str(inst.libos_signed)],
                "uptodate": [_targets_intact(ctx, "sign", [inst.libos_signed]),
                             config_changed(json.dumps(desc, sort_keys=True))],
                "task_dep": ["prepare"], "verbosity": 2})
    rt = st.runtime_files(ctx)
    out.append(_small_task(ctx, "runtime", "PAL and occlum-run -> build/lib, build/bin",
                           lambda: st.copy_runtime(ctx, rt), file_dep=[s for s, _ in rt],
                           targets=[d for _, d in rt], config={"target": ctx.target}))
    # Stages run in the order of `names` (doit would otherwise order independent tasks by
    # set iteration): Occlum.json is validated before any image is hashed, and the output
    # reads the same on every build.
    names = stage_names(ctx)
    by_name = {t["basename"]: t for t in out}
    for prev, name in zip(names, names[1:], strict=False):
        deps = by_name[name].setdefault("task_dep", [])
        if prev not in deps:
            deps.append(prev)
    out.append({"basename": "build", "doc": "build the instance: report.json, status 'built'",
                "actions": [_stage(ctx, "build", lambda: finish(ctx))], "uptodate": [False],
                "task_dep": names, "verbosity": 2})
    _check_inputs(ctx, out)
    return out


def _check_inputs(ctx: BuildContext, made: list[dict[str, Any]]) -> None:
    """Every file a stage depends on that no stage makes must exist: doit would otherwise
    stop with its own "checking dependencies: Dependent file ... does not exist"."""
    targets = {t for task in made for t in task.get("targets", ())}
    for task in made:
        for dep in task.get("file_dep", ()):
            if dep in targets or os.path.exists(dep):
                continue
            if dep == str(ctx.inst.config):
                from ..config.model import missing_config_message

                raise ConfigError(missing_config_message(ctx.inst.config))
            if Path(dep).parent == paths.native_dir():
                st.native_file(ctx, Path(dep).name)  # raises, naming it and how to build it
            raise OcclumError(f"{dep}: input of the {task['basename']} stage is missing")


__all__ = ["BUILTIN_CONFIG_SECTION", "SGX_MODES", "BuildContext", "BuildOptions", "builtin_config_bytes",
           "conf_mac_of", "stage_names", "tasks"]
