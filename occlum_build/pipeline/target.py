"""Which runtime a build targets, and the files that differ between the two targets.

- our SIM runtime (the default): the LibOS, PAL, occlum-run and occlum-fs built by
  ``make -C libos``; build/lib/libocclum-libos.so is the patched copy; the PAL and programs
  are copied into build/ so that a package carries its runtime (docs/runtime.md);
- a real Occlum install (``--occlum-dir``, install.py): the build/ tree real `occlum build`
  makes (tools/occlum_build.mk): the patched copy ``build/lib/<libos>.<ver>`` with the
  symlinks ``libocclum-libos.so.<major>`` and ``libocclum-libos.so``, the PAL copied with its
  two symlinks, ``build/bin/{occlum_exec_client,occlum_exec_server,occlum-run}`` as symlinks
  into the install, and the install's init as the init FS's /bin/init.

The target of the last build is recorded in build/.state/target.json: a change of target
makes a clean build (as an SGX mode change does), and `occlum run` refuses an instance built
for real Occlum (read_target).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from .. import paths
from ..fsutil import atomic_write
from ..install import BIN_LINKS, OcclumInstall
from ..paths import Instance

SIM_TARGET: dict[str, str] = {"kind": "sim-runtime"}
INIT_IN_INITFS = "bin/init"


def describe(install: OcclumInstall | None) -> dict[str, str]:
    return SIM_TARGET if install is None else install.describe()


def read_target(inst: Instance) -> dict[str, Any] | None:
    """The target recorded by the last build, or None (never built by this version)."""
    try:
        t = json.loads(inst.target_file.read_text())
    except (OSError, ValueError):
        return None
    return t if isinstance(t, dict) and isinstance(t.get("kind"), str) else None


def write_target(inst: Instance, desc: dict[str, str]) -> None:
    text = json.dumps(desc, sort_keys=True) + "\n"
    with contextlib.suppress(OSError):
        if inst.target_file.read_text() == text:
            return
    atomic_write(inst.target_file, text)


def libos_source(inst: Instance, install: OcclumInstall | None, native: Path) -> Path:
    return native / paths.LIBOS_SO if install is None else install.libos


def libos_output(inst: Instance, install: OcclumInstall | None) -> Path:
    """The patched, unsigned LibOS in build/lib (what the sign stage signs)."""
    return inst.libos_unsigned if install is None else inst.build_lib / install.libos_name


def _link(path: Path, target: str) -> None:
    """``ln -sf target path``, atomically and only when it differs."""
    with contextlib.suppress(OSError):
        if os.readlink(path) == target:
            return
    tmp = path.with_name(f".{path.name}.link{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, path)


def make_libos_links(inst: Instance, install: OcclumInstall | None) -> None:
    if install is not None:
        for name, target in install.libos_links():
            _link(inst.build_lib / name, target)


def install_runtime_copies(inst: Instance, install: OcclumInstall) -> list[tuple[Path, Path]]:
    """(source, destination) of the runtime files copied into build/ from an install."""
    return [(install.pal, inst.build_lib / install.pal_name)]


def make_runtime_links(inst: Instance, install: OcclumInstall | None) -> None:
    """The symlinks of the runtime stage (none for our SIM runtime)."""
    if install is None:
        return
    for name, target in install.pal_links():
        _link(inst.build_lib / name, target)
    inst.build_bin.mkdir(parents=True, exist_ok=True)
    for name in BIN_LINKS:
        _link(inst.build_bin / name, str(install.bin(name)))


def initfs_files(install: OcclumInstall | None) -> dict[str, tuple[bytes, int]]:
    """Files the target puts into the init FS: the install's init program."""
    if install is None:
        return {}
    return {INIT_IN_INITFS: (install.init.read_bytes(), 0o755)}
