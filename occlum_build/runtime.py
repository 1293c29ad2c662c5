"""Finding and starting the native SIM runtime (docs/runtime.md).

The runtime is C (libos/): ``occlum-run`` boots an instance and runs one program,
``occlum-fs`` serves an image through FUSE (``occlum mount``).  This module only locates them,
checks that the instance is built, and builds their command lines; the verified boot itself
happens in the native code, so nothing here is trusted for security.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from . import keys, log, paths
from .errors import EXIT_FAILURE, OcclumError, StateError
from .fsutil import makedirs, own_dir

_log = log.get("runtime")

# SGX device nodes: the in-kernel driver's two names and the out-of-tree driver's
# (libos/src/pal.c checks the same list).
SGX_DEVICES = ("/dev/sgx_enclave", "/dev/sgx/enclave", "/dev/isgx")
# Set to 1 to run a HW build on the SIM runtime of a machine without SGX (docs/runtime.md).
SIM_RUNS_HW_ENV = "OCCLUM_SIM_RUNS_HW"
RUN_LOCK = ".runtime.lock"  # in run/, held by occlum-run (libos/src/pal.c) and occlum mount
EXEC_SOCKET = "occlum_exec.sock"  # in run/, served by `occlum-run --serve` (libos/src/server.c)
EXEC_LOG = "occlum_exec.log"  # in run/: the server's messages after start-up


def sgx_device() -> str | None:
    """The SGX device node of this machine, or None when it has no SGX."""
    return next((d for d in SGX_DEVICES if os.path.exists(d)), None)


def hw_without_sgx_note(action: str) -> str | None:
    """A warning for ``action`` on a HW build when this machine has no SGX (None if it has):
    the SIM runtime here refuses such a build (docs/runtime.md, "SGX mode")."""
    if sgx_device() is not None:
        return None
    return (f"{action} for SGX hardware (HW, the default of occlum build) on a machine without "
            f"SGX ({', '.join(SGX_DEVICES)} missing): `occlum run` here refuses it unless "
            f"{SIM_RUNS_HW_ENV}=1; use 'occlum build --sgx-mode SIM' to run it on this machine")


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


def run_argv(inst: paths.Instance, path: str, args: Sequence[str],
             launch: Sequence[str] = ()) -> list[str]:
    """Command line of ``occlum run [launch options] <path> [args]`` for ``inst`` (the
    options checked by occlum_build.launch)."""
    require_built(inst)
    return [str(native_binary(paths.RUN_BIN, inst)), "--instance", str(inst.root), *launch, path,
            *args]


def exec_run(inst: paths.Instance, path: str, args: Sequence[str],
             launch: Sequence[str] = ()) -> None:
    """Replace this process with occlum-run, so that stdio, signals and the exit status are
    the program's own (occlum-run's rules: status & 0x7f, 128+signal, 127, 1)."""
    argv = run_argv(inst, path, args, launch)
    _execv(argv)


# The gdb commands of `occlum gdb` (docs/runtime.md "occlum gdb").
GDB_SCRIPT = paths.DATA_DIR / "occlum-gdb.gdb"
GDB_ARGS_ENV = "OCCLUM_GDB_ARGS"


def gdb_argv(inst: paths.Instance, path: str, args: Sequence[str], launch: Sequence[str] = (),
             gdb_args: str | None = None) -> list[str]:
    """Command line of ``occlum gdb``: Debian's gdb runs occlum-run (the verified boot) with
    our commands, which make it follow the sandbox's clone into the program."""
    import shlex
    import shutil

    run = run_argv(inst, path, args, launch)
    check_runnable(Path(run[0]))
    gdb = shutil.which("gdb")
    if gdb is None:
        raise OcclumError("gdb is not installed (apt-get install gdb)", exit_code=EXIT_FAILURE)
    text = gdb_args if gdb_args is not None else os.environ.get(GDB_ARGS_ENV, "")
    try:
        extra = shlex.split(text)
    except ValueError as e:
        raise OcclumError(f"cannot split {text!r}: {e}",
                          where="--gdb-args" if gdb_args is not None else GDB_ARGS_ENV) from None
    return [gdb, "-q", "-x", str(GDB_SCRIPT), *extra, "--args", *run]


def gdb(inst: paths.Instance, path: str, args: Sequence[str], launch: Sequence[str] = (),
        gdb_args: str | None = None) -> int:
    """`occlum gdb`: run gdb (its exit status is ours) and wait for the runtime it started.
    gdb detaches from occlum-run when it follows the program, so occlum-run may still be
    unmounting after gdb ends: as a child subreaper we inherit it and wait for it, so the
    instance is free again when `occlum gdb` returns."""
    import ctypes
    import signal

    argv = gdb_argv(inst, path, args, launch, gdb_args)
    pr_set_child_subreaper = 36
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C is gdb's, it stops the program
    try:
        _trace_exec(argv)
        try:
            rc = subprocess.run(argv).returncode
        except OSError as e:
            raise exec_error(Path(argv[0]), e) from None
        while True:  # the runtime gdb detached from, and what it still runs
            try:
                os.wait()
            except ChildProcessError:
                break
    finally:
        signal.signal(signal.SIGINT, old)
    return rc


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


def hold_run_lock(inst: paths.Instance, *, inheritable: bool = True) -> int:
    """Take the instance's runtime lock (shared with occlum-run) and return its descriptor,
    inheritable (by default) so that it stays held by a program exec'd from here.  As
    libos/src/runlock.c does, a busy lock is tried again for 50 ms: :func:`lock_held` holds it
    shared for a moment."""
    lock = inst.run / RUN_LOCK
    try:
        makedirs(inst.run, paths.OUTPUT_DIR_MODE)  # an existing run/ is left as it is
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise OcclumError(f"cannot open the runtime lock: {e.strerror or e}", where=str(lock),
                          exit_code=EXIT_FAILURE) from None
    for attempt in range(11):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt == 10:
                os.close(fd)
                raise StateError(f"{inst.root}: the instance is in use (occlum run, occlum start "
                                 "or occlum mount)") from None
            time.sleep(0.005)
    os.set_inheritable(fd, inheritable)
    return fd


def lock_held(inst: paths.Instance) -> bool:
    """Whether a runtime (occlum run, the occlum start server, occlum mount) holds the
    instance's runtime lock.  The kernel drops an flock with the last process holding it, so a
    crashed server never looks alive; never blocks."""
    lock = inst.run / RUN_LOCK
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO there must not block
    except FileNotFoundError:
        return False
    except OSError as e:  # e.g. not root: the runtime's state cannot be told
        raise OcclumError(f"cannot read the runtime lock: {e.strerror or e}", where=str(lock),
                          exit_code=EXIT_FAILURE) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # drops the shared lock at once
    return False


# What `occlum status` reports for a built instance (docs/instance.md, "States").
STATE_RUNNING = "running"  # a runtime holds the lock
STATE_CRASHED = "crashed"  # an occlum start server ended without occlum stop
STATE_STOPPED = "stopped"  # started since the last build, and stopped


def runtime_state(inst: paths.Instance) -> str | None:
    """The run-time state of a built instance, from the lock and what the server leaves in
    run/: None when no runtime has been started since the last build (``built``)."""
    if lock_held(inst):
        return STATE_RUNNING
    if os.path.lexists(inst.run / EXEC_SOCKET):  # a server removes it when it stops
        return STATE_CRASHED
    if (inst.run / EXEC_LOG).exists():  # written by every occlum start
        return STATE_STOPPED
    return None


def exclude_runtimes(inst: paths.Instance, what: str) -> int | None:
    """Take the runtime lock for ``what`` (`occlum build`, which replaces build/ and run/), so
    that no runtime starts while it runs; the descriptor (close it to release), or None when
    the instance has no run/ (nothing has run; nothing is created then).  A started or running
    instance is refused with a StateError (exit 4) before anything is changed."""
    if not inst.run.is_dir():
        return None
    try:
        return hold_run_lock(inst, inheritable=False)
    except StateError:
        if os.path.lexists(inst.run / EXEC_SOCKET):
            why = "started: its server uses build/ and run/ (occlum stop first)"
        else:
            why = "running (occlum run or occlum mount); let it end first"
        raise StateError(f"{inst.root}: {what} refused: the instance is {why}") from None


def exec_mount(inst: paths.Instance, mountpoint: str, image_key: str | None = None) -> None:
    argv = mount_argv(inst, mountpoint, image_key)
    own_dir(inst.run_upper, paths.LAYER_DIR_MODE, parent_mode=paths.OUTPUT_DIR_MODE)
    hold_run_lock(inst)
    _execv(argv)


def start(inst: paths.Instance, launch: Sequence[str] = ()) -> None:
    """`occlum start`: boot the instance in a background server (occlum-run --serve) and
    return once it accepts `occlum exec`; a boot failure is raised with the server's message.
    ``launch``: occlum-run launch options (occlum_build.launch), for every program."""
    require_built(inst)
    if lock_held(inst):
        if _server_answers(inst):
            raise StateError(f"{inst.root}: the instance is already started (occlum stop first)")
        raise StateError(f"{inst.root}: the instance is in use (occlum run or occlum mount)")
    if os.path.lexists(inst.run / EXEC_SOCKET):
        _log.warning("%s: the previous server ended without 'occlum stop' (crashed or killed); "
                     "starting a new one", inst.root)
    own_dir(inst.run, paths.OUTPUT_DIR_MODE)
    log_path = inst.run / EXEC_LOG
    r, w = os.pipe()
    argv = [str(native_binary(paths.RUN_BIN, inst)), "--instance", str(inst.root), *launch,
            "--serve", "--ready-fd", str(w)]
    check_runnable(Path(argv[0]))
    _trace_exec(argv)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.fchmod(log_fd, 0o600)  # the server's messages name paths of the app: not for everyone
    with os.fdopen(log_fd, "ab") as log:
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
    """`occlum stop`: stop the server (programs still running are killed).  A crashed server's
    socket is removed, so that the instance reads as stopped again; that and "nothing is
    started" exit 1 (docs/exit-codes.md)."""
    sock = inst.run / EXEC_SOCKET
    if not lock_held(inst):
        if os.path.lexists(sock):
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
            raise OcclumError(f"{inst.root}: the instance is not running: its server had ended "
                              f"without 'occlum stop' (crashed or killed); removed {sock}",
                              exit_code=EXIT_FAILURE)
        raise OcclumError(f"{inst.root}: the instance is not running", exit_code=EXIT_FAILURE)
    argv = [str(native_binary(paths.RUN_BIN, inst)), "--instance", str(inst.root), "--stop"]
    check_runnable(Path(argv[0]))
    _trace_exec(argv)
    try:
        return subprocess.run(argv).returncode
    except OSError as e:
        raise exec_error(Path(argv[0]), e) from None


# ---------------------------------------------------------------- native files that cannot run
def _trace_exec(argv: Sequence[str]) -> None:
    """OCCLUM_LOG_LEVEL=trace: every program started (the runtime then logs its own)."""
    _log.log(log.TRACE, "exec %s", " ".join(argv))


def _execv(argv: list[str]) -> None:
    """os.execv, with a native program or PAL that cannot run reported as one line."""
    binary = Path(argv[0])
    check_runnable(binary)
    _trace_exec(argv)
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
