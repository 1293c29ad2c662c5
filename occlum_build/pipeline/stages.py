"""The stage actions of `occlum build`: plain functions of the build context.

Each reads its inputs, calls the stage module (config, image, sgx) and writes its outputs
atomically; graph.py turns them into doit tasks.  Stage modules are imported inside the
functions, so a stage that has not landed does not break the others.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .. import fsutil, keys, log, paths
from ..errors import StateError
from ..fsutil import atomic_write
from ..paths import Instance
from .context import (
    IMAGE_METADATA,
    BuildContext,
    key_fingerprint,
    mtimes_desc,
)

_log = log.get("pipeline")


def record_outputs(ctx: BuildContext, targets: list[Path]) -> dict[str, Any]:
    return {"outputs": {str(t): ctx.cache.digest(t) for t in targets}}


def clean_outputs(ctx: BuildContext) -> None:
    """Remove every build output and the image manifests; doit's db and the hash cache stay
    (they are keyed by content, and the missing targets make every stage run)."""
    b = ctx.inst.build
    if b.is_dir():
        for child in b.iterdir():
            if child.name == ctx.state.dir.name:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    for d in (ctx.state.image_cache, ctx.state.initfs_cache, ctx.state.initfs_staging,
              ctx.state.dir / "stages"):
        shutil.rmtree(d, ignore_errors=True)


def temp_dirs(ctx: BuildContext) -> list[Path]:
    """Every directory a build writes into with fsutil.atomic_write (outputs, status and
    development key in the instance root, the bookkeeping in build/.state)."""
    inst, sd = ctx.inst, ctx.state
    return [inst.root, inst.build, inst.build_lib, inst.build_bin, inst.build / "mount",
            inst.build / "initfs", sd.dir, sd.dir / "stages", sd.image_cache, sd.initfs_cache]


def remove_stale_temps(ctx: BuildContext) -> None:
    """Temporary files of atomic writes interrupted by a kill (never a finished output, never
    the temp of a writer still running: fsutil.remove_stale_temps)."""
    for d in temp_dirs(ctx):
        for p in fsutil.remove_stale_temps(d):
            _log.debug("removed %s, left by an interrupted build", p)


def prepare(ctx: BuildContext) -> None:
    inst, opts = ctx.inst, ctx.opts
    remove_stale_temps(ctx)
    recorded = None
    try:
        recorded = inst.sgx_mode_file.read_text().strip()
    except FileNotFoundError:
        pass
    from .target import read_target

    target_was = read_target(inst)
    target_changed = target_was is not None and target_was != ctx.target
    clean = opts.force or (recorded is not None and recorded != opts.sgx_mode) or target_changed
    if clean:
        # A build that is bound to fail on its configuration must not first wipe the
        # previous outputs (Occlum's `make clean` does; we keep the last good build).
        _config(ctx)
    if opts.force:
        ctx.announce("Forced clean build")
    elif target_changed:
        ctx.announce(f"Target changed from {_target_text(target_was)} to {_target_text(ctx.target)}: "
                     "clean build")
    elif clean:
        ctx.announce(f"SGX mode changed from {recorded} to {opts.sgx_mode}: clean build")
    if clean:
        outputs_changing(ctx)
        ctx.outputs_replaced = True
        clean_outputs(ctx)


def _target_text(t: dict[str, Any] | None) -> str:
    if not t or t.get("kind") != "occlum":
        return "the SIM runtime"
    return f"Occlum {t.get('occlum_version')} at {t.get('occlum_dir')}"


def outputs_changing(ctx: BuildContext) -> None:
    """Called before a stage may replace outputs in build/: a status of "built" becomes
    "unfinished" until the build's last task writes "built" again, so that a build that
    fails or is killed half-way cannot leave a mix of two builds that `occlum run` and
    `occlum package` would take for a finished one.  See :func:`outputs_kept`."""
    if ctx.status_before is not None:
        return
    try:
        ctx.status_before = ctx.inst.status_file.read_text().strip()
    except FileNotFoundError:
        ctx.status_before = ""
        return
    if ctx.status_before in (paths.STATUS_BUILT, paths.STATUS_RUNNING):
        atomic_write(ctx.inst.status_file, paths.STATUS_UNFINISHED + "\n")


def outputs_kept(ctx: BuildContext) -> None:
    """A stage failed: if no stage of this build had replaced an output (each stage renames
    its outputs into place only when it succeeds), build/ still holds the previous build,
    whole, and the status it had is put back (an Occlum.json typo must not make the last good
    build unusable)."""
    if ctx.outputs_replaced or not ctx.status_before:
        return
    if ctx.status_before in (paths.STATUS_BUILT, paths.STATUS_RUNNING):
        atomic_write(ctx.inst.status_file, ctx.status_before + "\n")


def _config(ctx: BuildContext) -> Any:
    from ..config import load_config

    return load_config(ctx.inst.config)


def write_enclave_xml(ctx: BuildContext) -> None:
    from ..config import enclave_xml

    atomic_write(ctx.inst.enclave_xml, enclave_xml(_config(ctx), edmm_platform=ctx.edmm_platform))


def write_image_config(ctx: BuildContext) -> None:
    from ..config import image_config_json

    atomic_write(ctx.inst.image_config_json, image_config_json(ctx.image_key is not None))


def _build_layer(ctx: BuildContext, stage: str, src: Path, out: Path, mac_file: Path,
                 cache_dir: Path, key: bytes | None, normalize_modes: bool = False,
                 mtimes: Any = None) -> dict[str, Any]:
    from ..image import build_image

    fp = key_fingerprint(key)
    rec = ctx.state.read_stage(stage) or {}
    last_fp = (rec.get("stats") or {}).get("key_fingerprint")
    if last_fp != fp or not mac_file.is_file() or not out.is_dir():
        if last_fp is not None and last_fp != fp:
            ctx.announce(f"{stage}: the image key changed; rebuilding the {stage}")
        shutil.rmtree(cache_dir, ignore_errors=True)
    from .treestamp import tree_stamp

    stamp, racy = tree_stamp(src)  # before the build reads anything: a later edit changes it
    prog = ctx.progress(stage)
    try:
        res = build_image(src, out, mac_file, key=key, cache_dir=cache_dir, progress=prog,
                          normalize_modes=normalize_modes, mtimes=mtimes)
    finally:
        if prog is not None and hasattr(prog, "close"):
            prog.close()  # end the progress line before the next stage's message
    outputs = record_outputs(ctx, [out / IMAGE_METADATA, mac_file])
    return {
        **outputs,
        "tree_stamp": None if racy else stamp,
        "key_fingerprint": fp,
        "normalize_modes": normalize_modes,
        "mtimes": mtimes_desc(mtimes),
        "encrypted": key is not None,
        "mac": res.mac.hex(),
        "entries": res.entries,
        "files": res.files,
        "bytes_in": res.bytes_in,
        "bytes_stored": res.bytes_stored,
        "objects_written": res.objects_written,
        "objects_reused": res.objects_reused,
    }


def build_image_layer(ctx: BuildContext) -> dict[str, Any]:
    src = ctx.inst.image
    if not src.is_dir():
        raise StateError(f"{src} does not exist; put the application's files there "
                         "(occlum new creates it; copy_bom -f app.yaml --root image fills it)")
    return _build_layer(ctx, "image", src, ctx.inst.image_out, ctx.inst.image_mac_file,
                        ctx.state.image_cache, ctx.image_key, ctx.opts.normalize_modes, ctx.mtimes)


def stage_initfs_src(ctx: BuildContext) -> Path:
    from ..config import image_config_json
    from .staging import stage_initfs

    generated: dict[str, tuple[bytes, int]] = {
        paths.INITFS_IMAGE_CONFIG: (image_config_json(ctx.image_key is not None), 0o644)}
    if ctx.inst.init_ra_conf.is_file():
        generated["etc/" + paths.INIT_RA_CONF] = (ctx.inst.init_ra_conf.read_bytes(), 0o644)
    from .target import initfs_files

    generated.update(initfs_files(ctx.install))
    if ctx.opts.buildin_image_key:
        assert ctx.image_key is not None
        generated[paths.INITFS_IMAGE_KEY] = ((keys.format_hex16(ctx.image_key) + "\n").encode(), 0o600)
    staging = ctx.state.initfs_staging
    stage_initfs(ctx.inst.initfs, staging, generated)
    return staging


def build_initfs_layer(ctx: BuildContext) -> dict[str, Any]:
    staging = stage_initfs_src(ctx)
    try:
        # The init FS is never encrypted (as in Occlum): init reads the image key from it.
        return _build_layer(ctx, "initfs", staging, ctx.inst.initfs_out, ctx.inst.initfs_mac_file,
                            ctx.state.initfs_cache, None)
    finally:
        drop_staged_key(ctx)


def drop_staged_key(ctx: BuildContext) -> None:
    """The staged key copy is not kept around (it is rewritten when the init FS is built)."""
    (ctx.state.initfs_staging / paths.INITFS_IMAGE_KEY).unlink(missing_ok=True)


def _read_mac_text(path: Path) -> str:
    from ..image import read_mac_file

    return keys.format_hex16(read_mac_file(path))


def write_sys_json(ctx: BuildContext) -> None:
    from ..config import sys_json

    data = sys_json(_config(ctx), image_mac=_read_mac_text(ctx.inst.image_mac_file),
                    initfs_mac=_read_mac_text(ctx.inst.initfs_mac_file),
                    edmm_platform=ctx.edmm_platform)
    atomic_write(ctx.inst.sys_json, data)


def write_protected(ctx: BuildContext) -> None:
    from ..image.protect import protect_config

    atomic_write(ctx.inst.sys_json_protected, protect_config(ctx.inst.sys_json.read_bytes()))


def conf_mac_of(inst: Instance) -> bytes:
    from ..image.protect import conf_mac

    return conf_mac(inst.sys_json_protected.read_bytes())


def builtin_config_bytes(mac: bytes) -> bytes:
    """The conf MAC file Occlum feeds `objcopy --update-section .builtin_config=`: the
    47-character MAC text and a newline (48 bytes), what the section holds once patched."""
    return keys.format_hex16(mac).encode() + b"\n"


def native_file(ctx: BuildContext, name: str) -> Path:
    p = ctx.native(name)
    if not p.is_file():
        raise StateError(f"the native runtime is not built: {p} is missing "
                         f"(run 'make -C libos', or set {paths.NATIVE_DIR_ENV})")
    return p


def patch_libos(ctx: BuildContext) -> None:
    from ..sgx.elf import update_builtin_config
    from .target import make_libos_links

    src = ctx.libos_source if ctx.install is not None else native_file(ctx, paths.LIBOS_SO)
    patched = update_builtin_config(src.read_bytes(), builtin_config_bytes(conf_mac_of(ctx.inst)),
                                    where=str(src))
    atomic_write(ctx.libos_unsigned, patched, mode=0o755)
    make_libos_links(ctx.inst, ctx.install)


# (native artifact, build/ subdirectory, required?)  Copies, not links to the install
# location as Occlum's build/bin is, so that a package is complete on its own.
RUNTIME_FILES = ((paths.PAL_SO, "lib", True), (paths.RUN_BIN, "bin", False),
                 (paths.FS_BIN, "bin", False))


def runtime_files(ctx: BuildContext) -> list[tuple[Path, Path]]:
    """(source, destination) of the runtime files to copy; a missing required one is an error
    when the stage runs, a missing optional one (a program the runtime build did not make)
    is left out with a warning."""
    from .target import install_runtime_copies

    if ctx.install is not None:
        return install_runtime_copies(ctx.inst, ctx.install)
    out = []
    for name, sub, required in RUNTIME_FILES:
        src = ctx.native(name)
        if required or src.is_file():
            out.append((src, ctx.inst.build / sub / name))
        else:
            _log.warning("%s is not built (make -C libos); build/%s/%s is left out", src, sub, name)
    return out


def copy_runtime(ctx: BuildContext, files: list[tuple[Path, Path]]) -> None:
    from .target import make_runtime_links

    for src, dst in files:
        if ctx.install is None:
            src = native_file(ctx, src.name)
        atomic_write(dst, src.read_bytes(), mode=0o755)
    make_runtime_links(ctx.inst, ctx.install)


# ---------------------------------------------------------------------------- the graph
