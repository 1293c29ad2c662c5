"""Finding and starting the native SIM runtime (docs/runtime.md).

The runtime is C (libos/): ``occlum-run`` boots an instance and runs one program,
``occlum-fs`` serves an image through FUSE (``occlum mount``).  This module only locates them,
checks that the instance is built, and builds their command lines; the verified boot itself
happens in the native code, so nothing here is trusted for security.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from pathlib import Path

from . import keys, paths
from .errors import OcclumError, StateError

RUN_LOCK = ".runtime.lock"  # in run/, held by occlum-run (libos/src/pal.c) and occlum mount


def native_binary(name: str, inst: paths.Instance | None = None) -> Path:
    """The native program ``name``: the instance's build/bin copy (what `occlum package`
    ships), else the one in :func:`occlum_build.paths.native_dir`."""
    candidates = []
    if inst is not None:
        candidates.append(inst.build_bin / name)
    candidates.append(paths.native_dir() / name)
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise StateError(f"the native runtime is not built: {candidates[-1]} is missing "
                     f"(run 'make -C libos', or set {paths.NATIVE_DIR_ENV})")


def require_built(inst: paths.Instance) -> None:
    """Refuse an instance that has no signed LibOS yet (run `occlum build` first)."""
    if not inst.config.is_file():
        raise StateError(f"{inst.root} is not an Occlum instance (no {paths.CONFIG_FILE}); "
                         "run 'occlum new' or 'occlum init'")
    if not inst.libos_signed.is_file():
        raise StateError(f"{inst.root} is not built ({inst.libos_signed} is missing); "
                         "run 'occlum build'")


def run_argv(inst: paths.Instance, path: str, args: Sequence[str]) -> list[str]:
    """Command line of ``occlum run <path> [args]`` for ``inst``."""
    require_built(inst)
    return [str(native_binary(paths.RUN_BIN, inst)), "--instance", str(inst.root), path, *args]


def exec_run(inst: paths.Instance, path: str, args: Sequence[str]) -> None:
    """Replace this process with occlum-run, so that stdio, signals and the exit status are
    the program's own (occlum-run's rules: status & 0x7f, 128+signal, 127, 1)."""
    argv = run_argv(inst, path, args)
    os.execv(argv[0], argv)


def mount_argv(inst: paths.Instance, mountpoint: str, image_key: str | None = None) -> list[str]:
    """Command line of ``occlum mount``: the root FS (verified image + writable layer) served
    by occlum-fs at ``mountpoint`` in the foreground, until unmounted."""
    require_built(inst)
    mp = Path(mountpoint)
    if not mp.is_dir():
        raise OcclumError(f"{mountpoint}: not an existing directory (occlum mount <path>)")
    argv = [str(native_binary(paths.FS_BIN, inst))]
    if image_key is not None:
        keys.read_image_key(image_key)  # one clear error for a bad key file, before FUSE
        argv += ["--image-key", str(Path(image_key).resolve())]
    argv += [str(inst.image_out), str(inst.image_mac_file), str(inst.run_upper), str(mp.resolve())]
    return argv


def hold_run_lock(inst: paths.Instance) -> int:
    """Take the instance's runtime lock (shared with occlum-run) and return its descriptor,
    inheritable so that it stays held by a program exec'd from here."""
    inst.run.mkdir(parents=True, exist_ok=True)
    fd = os.open(inst.run / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateError(f"{inst.root}: the instance is in use (occlum run or occlum mount)") from None
    os.set_inheritable(fd, True)
    return fd


def exec_mount(inst: paths.Instance, mountpoint: str, image_key: str | None = None) -> None:
    argv = mount_argv(inst, mountpoint, image_key)
    inst.run_upper.mkdir(parents=True, exist_ok=True)
    hold_run_lock(inst)
    os.execv(argv[0], argv)
