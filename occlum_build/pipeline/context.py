"""What one build is asked to do and shares between its stages (options, context, keys)."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import keys, log, paths
from ..errors import ConfigError, KeyFileError, OcclumError
from ..install import OcclumInstall, load_install
from ..paths import Instance
from .state import StateDir

if TYPE_CHECKING:  # checker.py imports doit; `occlum` commands other than build do not need it
    from .checker import HashCache

_log = log.get("pipeline")

SGX_MODES = ("HW", "SIM")
IMAGE_METADATA = "metadata"  # the file of an image directory that its MAC covers (formats/sefs.md)
BUILTIN_CONFIG_SECTION = ".builtin_config"


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
    occlum_dir: Path | None = None  # build for this real Occlum install (install.py)
    normalize_modes: bool = False  # image/ modes as git sees them (sefs.normalized_mode)
    keep_mtimes: bool = False  # image/ files keep their mtimes, capped at $SOURCE_DATE_EPOCH


YES = ("Y", "YES", "Yes", "yes", "True", "true", "1")  # tools/occlum's --enable-edmm values


def env_defaults(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The BuildOptions fields the environment sets when a caller does not (one place for
    `occlum build` and dodo()): $SGX_MODE (else HW), $ENABLE_EDMM, $OCCLUM_DIR."""
    from ..install import OCCLUM_DIR_ENV

    e = os.environ if env is None else env
    occlum_dir = e.get(OCCLUM_DIR_ENV) or None
    return {"sgx_mode": (e.get("SGX_MODE") or "HW").upper(),
            "edmm_platform": e.get("ENABLE_EDMM", "N") in YES,
            "occlum_dir": Path(occlum_dir).absolute() if occlum_dir else None}


def key_fingerprint(key: bytes | None) -> str:
    """A name for an image key that is safe to store: the key is 128 random bits."""
    if key is None:
        return "none"
    return hashlib.sha256(b"occlum-build image key fingerprint\0" + key).hexdigest()[:32]


def source_date_epoch() -> int | None:
    """$SOURCE_DATE_EPOCH (reproducible-builds.org) as seconds, or None when unset or empty."""
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return None
    try:
        v = int(raw)
        datetime.fromtimestamp(v, UTC)
    except (ValueError, OverflowError, OSError):
        raise ConfigError(f"SOURCE_DATE_EPOCH={raw!r} is not a number of seconds") from None
    return v


def sign_date() -> int | None:
    """The SIGSTRUCT date pinned by SOURCE_DATE_EPOCH (its UTC day, as sgx_sign's 0xYYYYMMDD),
    or None: today (UTC).  The date is signed but not measured: it never changes MRENCLAVE."""
    v = source_date_epoch()
    return None if v is None else int(datetime.fromtimestamp(v, UTC).strftime("%Y%m%d"), 16)


def mtimes_desc(policy: Any) -> str:
    """What the image stage records of its mtime policy (a change rebuilds the image)."""
    if policy is None:
        return "zero"
    return "keep" if policy.clamp is None else f"keep, at most {policy.clamp}"


@dataclass
class BuildContext:
    """Everything the stage actions share in one build process."""

    inst: Instance
    opts: BuildOptions
    state: StateDir
    cache: HashCache
    run_id: str = field(default_factory=lambda: secrets.token_hex(16))
    image_key: bytes | None = None
    install: OcclumInstall | None = None  # the real Occlum install targeted, if any
    progress: Callable[[str], Callable[..., None] | None] = lambda stage: None
    announce: Callable[[str], None] = lambda msg: None
    status_before: str | None = None  # the status before stages.outputs_changing
    outputs_replaced: bool = False  # a stage of this build has replaced outputs in build/
    error: BaseException | None = None  # the first stage failure, re-raised by run.py
    doit_errors: list[str] = field(default_factory=list)  # what doit reported besides
    report: dict[str, Any] = field(default_factory=dict)  # set by the final task
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
        from .checker import HashCache

        state = StateDir(inst)
        ctx = cls(inst, opts, state, HashCache())
        if opts.image_key is not None:
            ctx.image_key = keys.read_image_key(opts.image_key)
        if opts.occlum_dir is not None:
            ctx.install = load_install(opts.occlum_dir, opts.sgx_mode)
        return ctx

    @property
    def edmm_platform(self) -> bool:
        return self.opts.edmm_platform and self.opts.sgx_mode == "HW"

    def native(self, name: str) -> Path:
        return paths.native_dir() / name

    @property
    def mtimes(self) -> Any:
        """The image's mtime policy (sefs.KeepMtimes or None: zero, as sefs-cli)."""
        if not self.opts.keep_mtimes:
            return None
        from ..image import KeepMtimes

        return KeepMtimes(clamp=source_date_epoch())

    @property
    def libos_source(self) -> Path:
        from .target import libos_source

        return libos_source(self.inst, self.install, paths.native_dir())

    @property
    def libos_unsigned(self) -> Path:
        from .target import libos_output

        return libos_output(self.inst, self.install)

    @property
    def target(self) -> dict[str, str]:
        from .target import describe

        return describe(self.install)


# ---------------------------------------------------------------------------- stage wrapper
