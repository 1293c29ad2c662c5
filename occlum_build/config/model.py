"""OcclumConfig: a validated Occlum.json with typed accessors, and load_config()."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ..errors import ConfigError
from ..inputfile import MAX_CONFIG_BYTES, read_limited
from ..sizes import parse_size
from . import jsonc, limits, schema


@dataclass(frozen=True)
class OcclumConfig:
    """A valid Occlum.json.  ``data`` is the parsed object exactly as written."""

    path: Path
    data: dict[str, Any]

    # -- metadata ------------------------------------------------------------------------
    @property
    def debuggable(self) -> bool:
        return bool(self.data["metadata"]["debuggable"])

    @property
    def enable_kss(self) -> bool:
        return bool(self.data["metadata"]["enable_kss"])

    @property
    def disable_log(self) -> bool:
        """metadata.disable_log if given, else true exactly for release (non-debuggable) enclaves."""
        return bool(self.data["metadata"].get("disable_log", not self.debuggable))

    @property
    def product_id(self) -> int:
        return int(self.data["metadata"]["product_id"])

    @property
    def version_number(self) -> int:
        return int(self.data["metadata"]["version_number"])

    @property
    def family_id(self) -> tuple[int, int]:
        """(high, low) of metadata.family_id."""
        return _id_pair(self.data["metadata"]["family_id"])

    @property
    def ext_prod_id(self) -> tuple[int, int]:
        """(high, low) of metadata.ext_prod_id."""
        return _id_pair(self.data["metadata"]["ext_prod_id"])

    # -- feature -------------------------------------------------------------------------
    def _feature(self, key: str, default: Any) -> Any:
        return self.data["feature"].get(key, default)

    @property
    def edmm(self) -> bool:
        """feature.enable_edmm (the build also turns EDMM on for an EDMM platform)."""
        return bool(self._feature("enable_edmm", False))

    @property
    def enable_posix_shm(self) -> bool:
        return bool(self._feature("enable_posix_shm", False))

    @property
    def amx(self) -> int:
        return int(self._feature("amx", 0))

    @property
    def pkru(self) -> int:
        return int(self._feature("pkru", 0))

    @property
    def io_uring(self) -> int:
        return int(self._feature("io_uring", 0))

    # -- resource limits (bytes / counts, as written; see limits.compute for enclave values)
    def _rl_size(self, key: str) -> int | None:
        v = self.data["resource_limits"].get(key)
        return None if v is None else parse_size(v)

    @property
    def kernel_space_heap_size(self) -> int:
        return parse_size(self.data["resource_limits"]["kernel_space_heap_size"])

    @property
    def kernel_space_heap_max_size(self) -> int | None:
        return self._rl_size("kernel_space_heap_max_size")

    @property
    def kernel_space_stack_size(self) -> int:
        return parse_size(self.data["resource_limits"]["kernel_space_stack_size"])

    @property
    def user_space_size(self) -> int:
        return parse_size(self.data["resource_limits"]["user_space_size"])

    @property
    def user_space_max_size(self) -> int | None:
        return self._rl_size("user_space_max_size")

    @property
    def max_num_of_threads(self) -> int:
        return int(self.data["resource_limits"]["max_num_of_threads"])

    @property
    def init_num_of_threads(self) -> int | None:
        n: int | None = self.data["resource_limits"].get("init_num_of_threads")  # schema: an integer
        return n

    @property
    def default_stack_size(self) -> int:
        return parse_size(self.data["process"]["default_stack_size"])

    @property
    def default_heap_size(self) -> int:
        return parse_size(self.data["process"]["default_heap_size"])

    @property
    def default_mmap_size(self) -> int:
        return parse_size(self.data["process"]["default_mmap_size"])

    # -- what runs -----------------------------------------------------------------------
    @property
    def entry_points(self) -> tuple[str, ...]:
        return tuple(self.data["entry_points"])

    @property
    def env_default(self) -> tuple[str, ...]:
        """Trusted environment, ``NAME=value`` strings."""
        return tuple(self.data["env"]["default"])

    @property
    def env_untrusted(self) -> tuple[str, ...]:
        """Names the host may pass in at run time."""
        return tuple(self.data["env"]["untrusted"])

    @property
    def mounts(self) -> list[dict[str, Any]]:
        """The user's mount list as written (the build adds /proc and /dev)."""
        mounts: list[dict[str, Any]] = self.data["mount"]  # schema: an array of mount objects
        return mounts

    def limits(self, *, edmm_platform: bool = False) -> limits.EnclaveLimits:
        """Enclave numbers; EDMM is on when the platform has it or feature.enable_edmm is set."""
        return limits.compute(
            stack_size=self.kernel_space_stack_size, heap_size=self.kernel_space_heap_size,
            heap_max_size=self.kernel_space_heap_max_size, user_size=self.user_space_size,
            user_max_size=self.user_space_max_size, max_threads=self.max_num_of_threads,
            init_threads=self.init_num_of_threads, edmm=edmm_platform or self.edmm)


def _id_pair(pair: dict[str, str]) -> tuple[int, int]:
    return _hex(pair["high"]), _hex(pair["low"])


def _hex(s: str) -> int:
    return int(s[2:] if s.startswith("0x") else s, 16)


def missing_config_message(path: Path) -> str:
    """What a build or print says when Occlum.json is missing (one place for the wording)."""
    return f"{path}: no such file (run 'occlum init' to create Occlum.json)"


def load_config(path: str | os.PathLike[str]) -> OcclumConfig:
    """Read, parse and validate an Occlum.json; raise ConfigError (exit 2) naming file:line:col."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(missing_config_message(p)) from None
    raw = read_limited(p, what=p.name, limit=MAX_CONFIG_BYTES, error=ConfigError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(f"byte 0x{raw[e.start]:02x} is not UTF-8 (save the file as UTF-8)",
                          where=f"{p}:{line}:{col}") from None
    if text.startswith("\ufeff"):
        raise ConfigError("byte order mark at the start of the file (save as UTF-8 without BOM)",
                          where=f"{p}:1:1")
    doc = jsonc.parse(text, str(p))
    schema.validate(doc)
    # cast: schema.validate raised unless the document is an object (Validator.obj)
    return OcclumConfig(path=p, data=cast(dict[str, Any], doc.value))
