"""Finding and starting the native SIM runtime (docs/runtime.md).

The runtime is C (libos/): ``occlum-run`` boots an instance and runs one program,
``occlum-fs`` serves an image through FUSE (``occlum mount``).  This module only locates them,
checks that the instance is built, and builds their command lines; the verified boot itself
happens in the native code, so nothing here is trusted for security.
"""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from . import keys, paths
from .errors import EXIT_FAILURE, OcclumError, StateError

RUN_LOCK = ".runtime.lock"  # in run/, held by occlum-run (libos/src/pal.c) and occlum mount
EXEC_SOCKET = "occlum_exec.sock"  # in run/, served by `occlum-run --serve` (libos/src/server.c)
EXEC_LOG = "occlum_exec.log"  # in run/: the server's messages after start-up


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
    if not inst.status_file.is_file():
        raise StateError(f"{inst.root} is not an Occlum instance (no {inst.status_file.name}); "
                         "run 'occlum init' or 'occlum new <dir>'")
    if inst.status_file.read_text().strip() == paths.STATUS_UNFINISHED:
        raise StateError(f"the last build of {inst.root} did not finish (build/ holds outputs of "
                         "two builds); run 'occlum build'")
    if not inst.libos_signed.is_file():
        raise StateError(f"{inst.root} is not built ({inst.libos_signed} is missing); "
                         "run 'occlum build'")
    from .pipeline.target import read_target

    target = read_target(inst) or {}
    if target.get("kind") == "occlum":
        raise StateError(f"{inst.root} was built for real Occlum {target.get('occlum_version')} "
                         f"(--occlum-dir {target.get('occlum_dir')}): run it with that install's "
                         "'occlum run' on an SGX machine; our SIM runtime runs instances built "
                         "without --occlum-dir")


def run_argv(inst: paths.Instance, path: str, args: Sequence[str]) -> list[str]:
    """Command line of ``occlum run <path> [args]`` for ``inst``."""
    require_built(inst)
    return [str(native_binary(paths.RUN_BIN, inst)), "--instance", str(inst.root), path, *args]


def exec_run(inst: paths.Instance, path: str, args: Sequence[str]) -> None:
    """Replace this process with occlum-run, so that stdio, signals and the exit status are
    the program's own (occlum-run's rules: status & 0x7f, 128+signal, 127, 1)."""
    argv = run_argv(inst, path, args)
    _execv(argv)


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
    _execv(argv)


def start(inst: paths.Instance) -> None:
    """`occlum start`: boot the instance in a background server (occlum-run --serve) and
    return once it accepts `occlum exec`; a boot failure is raised with the server's message."""
    require_built(inst)
    if (inst.run / EXEC_SOCKET).exists() and _server_answers(inst):
        raise StateError(f"{inst.root}: the instance is already started (occlum stop first)")
    inst.run.mkdir(parents=True, exist_ok=True)
    log_path = inst.run / EXEC_LOG
    r, w = os.pipe()
    argv = [str(native_binary(paths.RUN_BIN, inst)), "--instance", str(inst.root), "--serve",
            "--ready-fd", str(w)]
    check_runnable(Path(argv[0]))
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    pass_fds=(w,), start_new_session=True)
        except OSError as e:
            os.close(r)
            os.close(w)
            raise exec_error(Path(argv[0]), e) from None
    os.close(w)
    with os.fdopen(r, "rb") as ready:
        ok = ready.read(1) == b"1"
    if not ok:
        proc.wait()
        lines = log_path.read_text(errors="replace").strip().splitlines()
        why = lines[-1].removeprefix("occlum: ") if lines else f"the server exited ({proc.returncode})"
        raise OcclumError(why, exit_code=EXIT_FAILURE)


def _server_answers(inst: paths.Instance) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(inst.run / EXEC_SOCKET))
        except OSError:
            return False
    return True


def exec_in(inst: paths.Instance, path: str, args: Sequence[str]) -> None:
    """`occlum exec`: replace this process with the client, which runs the program in the
    started instance with our stdio, environment and signals (occlum-run's exit rules)."""
    argv = [str(native_binary(paths.RUN_BIN, inst)), "--instance", str(inst.root), "--exec", path, *args]
    _execv(argv)


def stop(inst: paths.Instance) -> int:
    """`occlum stop`: stop the server (programs still running are killed)."""
    argv = [str(native_binary(paths.RUN_BIN, inst)), "--instance", str(inst.root), "--stop"]
    check_runnable(Path(argv[0]))
    try:
        return subprocess.run(argv).returncode
    except OSError as e:
        raise exec_error(Path(argv[0]), e) from None


# ---------------------------------------------------------------- native files that cannot run
def _execv(argv: list[str]) -> None:
    """os.execv, with a native program or PAL that cannot run reported as one line."""
    binary = Path(argv[0])
    check_runnable(binary)
    try:
        os.execv(binary, argv)
    except OSError as e:
        raise exec_error(binary, e) from None


def check_runnable(binary: Path) -> None:
    """Refuse a native program, or the PAL library it loads ($ORIGIN, $ORIGIN/../lib, its
    RUNPATH), that is not an ELF file: an empty or corrupt copy (a killed copy, a full disk)
    would fail in the kernel ("Exec format error") or the loader, saying nothing of what to do."""
    for f in (binary, binary.parent / paths.PAL_SO, binary.parent.parent / "lib" / paths.PAL_SO):
        try:
            with open(f, "rb") as fh:
                head = fh.read(len(paths.ELF_MAGIC))
        except OSError:
            continue  # absent: the loader looks further, or says which library is missing
        if head != paths.ELF_MAGIC:
            raise _corrupt(f)
        if f.name == paths.PAL_SO:
            return  # the loader takes the first PAL it finds


def exec_error(binary: Path, e: OSError) -> OcclumError:
    """One line for a native program that could not be started."""
    if e.errno == errno.ENOEXEC:
        return _corrupt(binary)
    return OcclumError(f"cannot execute: {e.strerror or e}", where=str(binary), exit_code=EXIT_FAILURE)


def _corrupt(f: Path) -> OcclumError:
    try:
        size = f"{f.stat().st_size} bytes"
    except OSError:
        size = "unreadable"
    fix = ("run 'occlum build' to copy it again" if f.parent.parent.name == paths.BUILD_DIR
           else "rebuild the native runtime (make -C libos)")
    return OcclumError(f"empty or corrupt ({size}, not a runnable ELF file); {fix}", where=str(f),
                       exit_code=EXIT_FAILURE)
