"""The `occlum build` task graph: doit task dicts built from the stage functions and paths.

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

import errno
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from doit.exceptions import TaskFailed
from doit.tools import config_changed

from .. import keys, log, paths
from ..errors import ConfigError, KeyFileError, OcclumError, OutputError, StateError
from ..fsutil import atomic_write
from ..paths import Instance
from .checker import HashCache
from .state import StateDir

_log = log.get("pipeline")

SGX_MODES = ("HW", "SIM")
IMAGE_METADATA = "metadata"  # the file of an image directory that its MAC covers (formats/image.md)
BUILTIN_CONFIG_SECTION = ".builtin_config"


# What the signing stage uses from occlum_build.sgx: (module, name).
SGX_API = (("sign", "sign_enclave"), ("elf", "patch_section"), ("signer", "PemSigner"),
           ("signer", "ToolSigner"), ("signer", "generate_signing_key"))


def signing_available() -> bool:
    """Whether occlum_build.sgx offers the signing API.  Stages land independently; until it
    does, the libos and sign stages are absent from the graph (never faked)."""
    try:
        for mod, name in SGX_API:
            if importlib.util.find_spec(f"occlum_build.sgx.{mod}") is None:
                return False
            if not hasattr(importlib.import_module(f"occlum_build.sgx.{mod}"), name):
                return False
    except ImportError:
        return False
    return True


def dump_function() -> Callable[..., Any] | None:
    """occlum_build.sgx's ``dump_enclave(data, where)`` (SIGSTRUCT fields, signature and
    measurement replay), or None while that part of the signer is not there."""
    for mod in ("occlum_build.sgx.dump", "occlum_build.sgx"):
        try:
            f = getattr(importlib.import_module(mod), "dump_enclave", None)
        except ImportError:
            continue
        if f is not None:
            return f
    return None


@dataclass(frozen=True)
class BuildOptions:
    """What `occlum build` was asked to do (CLI flags, or dodo.py arguments)."""

    sgx_mode: str = "HW"
    sign_key: Path | None = None
    sign_tool: str | None = None  # a command; it gets the data and signature file paths
    image_key: Path | None = None
    buildin_image_key: bool = False
    edmm_platform: bool = False
    force: bool = False


def key_fingerprint(key: bytes | None) -> str:
    """A name for an image key that is safe to store: the key is 128 random bits."""
    if key is None:
        return "none"
    return hashlib.sha256(b"occlum-build image key fingerprint\0" + key).hexdigest()[:32]


def sign_date() -> int | None:
    """The SIGSTRUCT date pinned by SOURCE_DATE_EPOCH (its UTC day, as sgx_sign's 0xYYYYMMDD),
    or None: today (UTC).  The date is signed but not measured: it never changes MRENCLAVE."""
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return None
    try:
        return int(datetime.fromtimestamp(int(raw), UTC).strftime("%Y%m%d"), 16)
    except (ValueError, OverflowError, OSError):
        raise ConfigError(f"SOURCE_DATE_EPOCH={raw!r} is not a number of seconds") from None


@dataclass
class BuildContext:
    """Everything the stage actions share in one build process."""

    inst: Instance
    opts: BuildOptions
    state: StateDir
    cache: HashCache
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    image_key: bytes | None = None
    progress: Callable[[str], Callable[..., None] | None] = lambda stage: None
    announce: Callable[[str], None] = lambda msg: None
    error: BaseException | None = None  # the first stage failure, re-raised by run.py
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def create(cls, inst: Instance, opts: BuildOptions) -> BuildContext:
        if opts.sgx_mode not in SGX_MODES:
            raise OcclumError(f"--sgx-mode: {opts.sgx_mode!r} is not one of {', '.join(SGX_MODES)} "
                              "(HYPER mode is not supported)")
        if opts.buildin_image_key and opts.image_key is None:
            raise OcclumError("--buildin-image-key needs --image-key <key file>")
        if opts.sign_tool is not None and opts.sign_key is None:
            raise KeyFileError("--sign-tool needs --sign-key <public key PEM> to check the "
                               "signature the tool returns")
        if opts.sign_key is not None and not opts.sign_key.exists():
            raise KeyFileError("--sign-key: file does not exist", where=str(opts.sign_key))
        state = StateDir(inst)
        ctx = cls(inst, opts, state, HashCache())
        if opts.image_key is not None:
            ctx.image_key = keys.read_image_key(opts.image_key)
        return ctx

    @property
    def edmm_platform(self) -> bool:
        return self.opts.edmm_platform and self.opts.sgx_mode == "HW"

    def native(self, name: str) -> Path:
        return paths.native_dir() / name


# ---------------------------------------------------------------------------- stage wrapper
def _stage(ctx: BuildContext, name: str, func: Callable[[], dict[str, Any] | None]) -> Callable[[], Any]:
    """A doit action running ``func``: times it, records it, turns failures into one line."""

    def action() -> Any:
        t0 = time.monotonic()
        try:
            stats = func() or {}
        except OcclumError as e:
            ctx.error = ctx.error or e
            return TaskFailed(str(e))
        except OSError as e:
            err = OutputError(
                "no space left on device; previous outputs kept" if e.errno == errno.ENOSPC
                else f"{e.strerror or e}", where=e.filename or f"stage {name}")
            ctx.error = ctx.error or err
            return TaskFailed(str(err))
        except Exception as e:  # a bug: keep it for run.py, which reports it as internal
            ctx.error = ctx.error or e
            return TaskFailed(f"{type(e).__name__}: {e}")
        rec = {"run_id": ctx.run_id, "seconds": round(time.monotonic() - t0, 6), "stats": stats}
        ctx.state.write_stage(name, rec)
        return None

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


def _record_outputs(ctx: BuildContext, targets: list[Path]) -> dict[str, Any]:
    return {"outputs": {str(t): ctx.cache.digest(t) for t in targets}}


def _small_task(ctx: BuildContext, name: str, doc: str, func: Callable[[], None], *,
                file_dep: list[Path], targets: list[Path], config: dict[str, Any] | None = None,
                task_dep: list[str] | None = None) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        func()
        return _record_outputs(ctx, targets)

    uptodate: list[Any] = [_targets_intact(ctx, name, targets)]
    if config is not None:
        uptodate.append(config_changed(json.dumps(config, sort_keys=True)))
    return {"basename": name, "doc": doc, "actions": [_stage(ctx, name, run)],
            "file_dep": [str(p) for p in file_dep], "targets": [str(p) for p in targets],
            "uptodate": uptodate, "task_dep": ["prepare"] + (task_dep or []), "verbosity": 2}


# ---------------------------------------------------------------------------- stages
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


def _prepare(ctx: BuildContext) -> None:
    inst, opts = ctx.inst, ctx.opts
    recorded = None
    try:
        recorded = inst.sgx_mode_file.read_text().strip()
    except FileNotFoundError:
        pass
    if opts.force:
        ctx.announce("Forced clean build")
        clean_outputs(ctx)
    elif recorded is not None and recorded != opts.sgx_mode:
        ctx.announce(f"SGX mode changed from {recorded} to {opts.sgx_mode}: clean build")
        clean_outputs(ctx)


def _config(ctx: BuildContext) -> Any:
    from ..config import load_config

    return load_config(ctx.inst.config)


def _enclave_xml(ctx: BuildContext) -> None:
    from ..config import enclave_xml

    atomic_write(ctx.inst.enclave_xml, enclave_xml(_config(ctx), edmm_platform=ctx.edmm_platform))


def _image_config(ctx: BuildContext) -> None:
    from ..config import image_config_json

    atomic_write(ctx.inst.image_config_json, image_config_json(ctx.image_key is not None))


def _build_layer(ctx: BuildContext, stage: str, src: Path, out: Path, mac_file: Path,
                 cache_dir: Path, key: bytes | None) -> dict[str, Any]:
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
    res = build_image(src, out, mac_file, key=key, cache_dir=cache_dir,
                      progress=ctx.progress(stage))
    outputs = _record_outputs(ctx, [out / IMAGE_METADATA, mac_file])
    return {
        **outputs,
        "tree_stamp": None if racy else stamp,
        "key_fingerprint": fp,
        "encrypted": key is not None,
        "mac": res.mac.hex(),
        "entries": res.entries,
        "files": res.files,
        "bytes_in": res.bytes_in,
        "bytes_stored": res.bytes_stored,
        "objects_written": res.objects_written,
        "objects_reused": res.objects_reused,
    }


def _layer_uptodate(ctx: BuildContext, stage: str, src: Callable[[], Path], out: Path,
                    mac_file: Path, cache_dir: Path, key: Callable[[], bytes | None]) -> Callable[..., bool]:
    """Up to date when the outputs are the ones this stage wrote, for the same key, and the
    source tree is unchanged: first by its stat-key stamp (treestamp.py: one walk, nothing
    read), else by recomputing its MAC with the stage's own manifest (files whose stat key is
    unchanged are not read).  A MAC match refreshes the stamp, so after a `touch` the files
    are hashed once, not on every later build."""

    def check(task: Any, values: Any) -> bool:
        from ..image import compute_mac, read_mac_file
        from .treestamp import tree_stamp

        rec = ctx.state.read_stage(stage) or {}
        st = rec.get("stats") or {}
        if st.get("key_fingerprint") != key_fingerprint(key()):
            return False
        want = st.get("outputs")
        if not isinstance(want, dict):
            return False
        try:
            if any(ctx.cache.digest(p) != want.get(str(p)) for p in (out / IMAGE_METADATA, mac_file)):
                return False
            s = src()
            if not s.is_dir():
                return False
            stamp, racy = tree_stamp(s)
            if stamp == st.get("tree_stamp"):
                return True
            if compute_mac(s, key=key(), cache_dir=cache_dir) != read_mac_file(mac_file):
                return False
            if not racy:
                ctx.state.write_stage(stage, {**rec, "stats": {**st, "tree_stamp": stamp}})
            return True
        except (OSError, OcclumError):
            return False  # let the stage run and report the problem properly
        finally:
            if stage == "initfs":
                _drop_staged_key(ctx)

    return check


def _image(ctx: BuildContext) -> dict[str, Any]:
    src = ctx.inst.image
    if not src.is_dir():
        raise StateError(f"{src} does not exist; put the application's files there "
                         "(occlum new creates it; copy_bom -f app.yaml --root image fills it)")
    return _build_layer(ctx, "image", src, ctx.inst.image_out, ctx.inst.image_mac_file,
                        ctx.state.image_cache, ctx.image_key)


def _stage_initfs_src(ctx: BuildContext) -> Path:
    from ..config import image_config_json
    from .staging import stage_initfs

    generated: dict[str, tuple[bytes, int]] = {
        paths.INITFS_IMAGE_CONFIG: (image_config_json(ctx.image_key is not None), 0o644)}
    if ctx.inst.init_ra_conf.is_file():
        generated["etc/" + paths.INIT_RA_CONF] = (ctx.inst.init_ra_conf.read_bytes(), 0o644)
    if ctx.opts.buildin_image_key:
        assert ctx.image_key is not None
        generated[paths.INITFS_IMAGE_KEY] = ((keys.format_hex16(ctx.image_key) + "\n").encode(), 0o600)
    staging = ctx.state.initfs_staging
    stage_initfs(ctx.inst.initfs, staging, generated)
    return staging


def _initfs(ctx: BuildContext) -> dict[str, Any]:
    staging = _stage_initfs_src(ctx)
    try:
        # The init FS is never encrypted (as in Occlum): init reads the image key from it.
        return _build_layer(ctx, "initfs", staging, ctx.inst.initfs_out, ctx.inst.initfs_mac_file,
                            ctx.state.initfs_cache, None)
    finally:
        _drop_staged_key(ctx)


def _drop_staged_key(ctx: BuildContext) -> None:
    """The staged key copy is not kept around (it is rewritten when the init FS is built)."""
    (ctx.state.initfs_staging / paths.INITFS_IMAGE_KEY).unlink(missing_ok=True)


def _read_mac_text(path: Path) -> str:
    from ..image import read_mac_file

    return keys.format_hex16(read_mac_file(path))


def _sys_json(ctx: BuildContext) -> None:
    from ..config import sys_json

    data = sys_json(_config(ctx), image_mac=_read_mac_text(ctx.inst.image_mac_file),
                    initfs_mac=_read_mac_text(ctx.inst.initfs_mac_file),
                    edmm_platform=ctx.edmm_platform)
    atomic_write(ctx.inst.sys_json, data)


def _protect(ctx: BuildContext) -> None:
    from ..image.protect import protect_config

    atomic_write(ctx.inst.sys_json_protected, protect_config(ctx.inst.sys_json.read_bytes()))


def conf_mac_of(inst: Instance) -> bytes:
    from ..image.protect import conf_mac

    return conf_mac(inst.sys_json_protected.read_bytes())


def builtin_config_bytes(mac: bytes) -> bytes:
    """What goes into .builtin_config: the 47-character MAC text and a NUL (48 bytes)."""
    return keys.format_hex16(mac).encode() + b"\0"


def _native_file(ctx: BuildContext, name: str) -> Path:
    p = ctx.native(name)
    if not p.is_file():
        raise StateError(f"the native runtime is not built: {p} is missing "
                         f"(run 'make -C libos', or set {paths.NATIVE_DIR_ENV})")
    return p


def _libos(ctx: BuildContext) -> None:
    from ..sgx.elf import patch_section

    data = _native_file(ctx, paths.LIBOS_SO).read_bytes()
    patched = patch_section(data, BUILTIN_CONFIG_SECTION, builtin_config_bytes(conf_mac_of(ctx.inst)))
    atomic_write(ctx.inst.libos_unsigned, patched, mode=0o755)


def signer_for(ctx: BuildContext) -> tuple[Any, dict[str, Any]]:
    """The signer and a description of it for up-to-date checks (no secret in it: the
    digest of the public key, which MRSIGNER follows from, and the tool command)."""
    from ..sgx.signer import PemSigner, ToolSigner, generate_signing_key

    opts = ctx.opts
    if opts.sign_tool is not None:
        assert opts.sign_key is not None
        signer: Any = ToolSigner(opts.sign_tool, opts.sign_key)
        return signer, {"tool": opts.sign_tool, "public_key": _public_key_sha256(signer.public_key)}
    key = opts.sign_key
    if key is None:
        key = ctx.inst.dev_sign_key
        if not key.exists():
            ctx.announce(f"Creating a development signing key {key} (for development only: "
                         "sign releases with --sign-key)")
            generate_signing_key(key)
    # PemSigner validates the key (slow: ~0.1 s for RSA-3072); only signing needs that.
    return _LazyPemSigner(key, PemSigner), {"public_key": _public_key_sha256(_quick_public_key(key))}


class _LazyPemSigner:
    def __init__(self, path: Path, cls: Any):
        self.path, self.cls, self._signer = path, cls, None

    def _get(self) -> Any:
        if self._signer is None:
            self._signer = self.cls(self.path)
        return self._signer

    @property
    def public_key(self) -> Any:
        return self._get().public_key

    def sign(self, data: bytes) -> bytes:
        return self._get().sign(data)


def _quick_public_key(path: Path) -> Any:
    """The public half of a PEM private key, without the full key validation (the signer
    does that when it signs); a key file that does not load is reported by the signer."""
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(path.read_bytes(), None,
                                                  unsafe_skip_rsa_key_validation=True).public_key()
    except (ValueError, TypeError, OSError):
        from ..sgx.signer import load_signing_key

        return load_signing_key(path).public_key()  # raises the signer's own KeyFileError


def _public_key_sha256(pub: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _sign(ctx: BuildContext, signer: Any) -> dict[str, Any]:
    from ..sgx.sign import sign_enclave

    res = sign_enclave(ctx.inst.libos_unsigned.read_bytes(), ctx.inst.enclave_xml.read_bytes(),
                       signer, date=sign_date(), where=str(ctx.inst.libos_unsigned),
                       config_where=str(ctx.inst.enclave_xml))
    atomic_write(ctx.inst.libos_signed, res.signed, mode=0o755)
    return {"mrenclave": _hex(res.mrenclave), "mrsigner": _hex(res.mrsigner)}


def _hex(v: Any) -> str:
    return v.hex() if isinstance(v, bytes | bytearray) else str(v).lower()


# (native artifact, build/ subdirectory, required?)  Copies, not links to the install
# location as Occlum's build/bin is, so that a package is complete on its own.
RUNTIME_FILES = ((paths.PAL_SO, "lib", True), (paths.RUN_BIN, "bin", False),
                 (paths.FS_BIN, "bin", False))


def runtime_files(ctx: BuildContext) -> list[tuple[Path, Path]]:
    """(source, destination) of the runtime files to copy; a missing required one is an error
    when the stage runs, a missing optional one (a program the runtime build did not make)
    is left out with a warning."""
    out = []
    for name, sub, required in RUNTIME_FILES:
        src = ctx.native(name)
        if required or src.is_file():
            out.append((src, ctx.inst.build / sub / name))
        else:
            _log.warning("%s is not built (make -C libos); build/%s/%s is left out", src, sub, name)
    return out


def _runtime(ctx: BuildContext, files: list[tuple[Path, Path]]) -> None:
    for src, dst in files:
        atomic_write(dst, _native_file(ctx, src.name).read_bytes(), mode=0o755)


# ---------------------------------------------------------------------------- the graph
def stage_names(ctx: BuildContext) -> list[str]:
    """The stages in this build, in order (signing only once occlum_build.sgx exists)."""
    names = ["enclave_xml", "image_config", "image", "initfs", "sys_json", "protect"]
    if signing_available():
        names += ["libos", "sign"]
    names += ["runtime"]
    return names


def tasks(ctx: BuildContext, finish: Callable[[BuildContext], None]) -> list[dict[str, Any]]:
    """All task dicts of the build; ``finish`` writes the report and the status."""
    inst = ctx.inst
    out: list[dict[str, Any]] = [{
        "basename": "prepare", "doc": "clean build after -f or an SGX mode change",
        "actions": [_stage(ctx, "prepare", lambda: _prepare(ctx))], "uptodate": [False],
        "verbosity": 2}]
    out.append(_small_task(
        ctx, "enclave_xml", "Occlum.json -> build/Enclave.xml", lambda: _enclave_xml(ctx),
        file_dep=[inst.config], targets=[inst.enclave_xml],
        config={"edmm_platform": ctx.edmm_platform}))
    out.append(_small_task(
        ctx, "image_config", "build/image_config.json", lambda: _image_config(ctx),
        file_dep=[], targets=[inst.image_config_json],
        config={"encrypted": ctx.image_key is not None}))
    # The image stages run every time: their own manifest makes an unchanged tree a stat walk.
    st = ctx.state
    out.append({"basename": "image", "doc": "image/ -> build/mount/__ROOT + .ROOT_MAC",
                "actions": [_stage(ctx, "image", lambda: _image(ctx))],
                "targets": [str(inst.image_mac_file)],
                "uptodate": [_layer_uptodate(ctx, "image", lambda: inst.image, inst.image_out,
                                             inst.image_mac_file, st.image_cache, lambda: ctx.image_key)],
                "task_dep": ["prepare"], "verbosity": 2})
    # The init FS source is the staged mirror (staging.py); staging is cheap and happens in
    # the check, so the check sees exactly what the stage would build.
    out.append({"basename": "initfs", "doc": "initfs/ -> build/initfs/__ROOT + .ROOT_MAC",
                "actions": [_stage(ctx, "initfs", lambda: _initfs(ctx))],
                "targets": [str(inst.initfs_mac_file)],
                "uptodate": [_layer_uptodate(ctx, "initfs", lambda: _stage_initfs_src(ctx),
                                             inst.initfs_out, inst.initfs_mac_file,
                                             st.initfs_cache, lambda: None)],
                "task_dep": ["prepare"], "verbosity": 2})
    out.append(_small_task(
        ctx, "sys_json", "Occlum.json + MACs -> build/.Occlum_sys.json", lambda: _sys_json(ctx),
        file_dep=[inst.config, inst.image_mac_file, inst.initfs_mac_file], targets=[inst.sys_json],
        config={"edmm_platform": ctx.edmm_platform},
        task_dep=["enclave_xml"]))  # enclave_xml validates Occlum.json first
    out.append(_small_task(
        ctx, "protect", "build/.Occlum_sys.json.protected (conf MAC)", lambda: _protect(ctx),
        file_dep=[inst.sys_json], targets=[inst.sys_json_protected]))
    names = stage_names(ctx)
    if "sign" in names:
        libos_src = ctx.native(paths.LIBOS_SO)
        out.append(_small_task(
            ctx, "libos", "LibOS with the conf MAC in .builtin_config", lambda: _libos(ctx),
            file_dep=[libos_src, inst.sys_json_protected], targets=[inst.libos_unsigned]))
        sign_state: dict[str, Any] = {}

        def do_sign() -> dict[str, Any]:
            signer, _ = sign_state["signer"]
            stats = _sign(ctx, signer)
            stats.update(_record_outputs(ctx, [inst.libos_signed]))
            return stats

        # The signer is resolved lazily (a missing dev key is created only when signing runs),
        # but its description must be known for the up-to-date check: resolve it here.
        sign_state["signer"] = signer_for(ctx)
        desc = {"signer": sign_state["signer"][1], "date": sign_date()}
        out.append({"basename": "sign", "doc": "sign -> build/lib/libocclum-libos.signed.so",
                    "actions": [_stage(ctx, "sign", do_sign)],
                    "file_dep": [str(inst.libos_unsigned), str(inst.enclave_xml)],
                    "targets": [str(inst.libos_signed)],
                    "uptodate": [_targets_intact(ctx, "sign", [inst.libos_signed]),
                                 config_changed(json.dumps(desc, sort_keys=True))],
                    "task_dep": ["prepare"], "verbosity": 2})
    rt = runtime_files(ctx)
    out.append(_small_task(ctx, "runtime", "PAL and occlum-run -> build/lib, build/bin",
                           lambda: _runtime(ctx, rt), file_dep=[s for s, _ in rt],
                           targets=[d for _, d in rt]))
    out.append({"basename": "build", "doc": "build the instance: report.json, status 'built'",
                "actions": [_stage(ctx, "build", lambda: finish(ctx))], "uptodate": [False],
                "task_dep": names, "verbosity": 2})
    return out
