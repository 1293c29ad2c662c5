"""Teardown never hangs (issue 15, item 1).

A SIGTERM that the kernel hands to one of our helper threads instead of libfuse's main thread
sets libfuse's exit flag without waking the main loop, and occlum_pal_destroy then waited for
the root FS server forever.  Every helper thread now blocks all signals (ofs_thread.c), the
server resets an ignored SIGTERM, and the PAL sends SIGTERM again until the server is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .rt_helpers import BIN, OCCLUM, needs_runtime, occlum

pytestmark = [pytest.mark.native, needs_runtime]

# Signals a helper thread must never take (all of them are blocked; these are checked).
CHECKED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
           signal.SIGUSR2, signal.SIGCHLD, signal.SIGPIPE, signal.SIGALRM)
# libfuse's own worker threads block these four (fuse_loop_mt.c).
FUSE_BLOCKED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def _threads(pid: int) -> dict[int, tuple[str, int]]:
    """tid -> (name, blocked-signal mask) of every thread of pid."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        status = Path(f"/proc/{pid}/task/{t}/status").read_text()
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        out[int(t)] = (fields["Name"].strip(), int(fields["SigBlk"], 16))
    return out


def _blocks(mask: int, sigs: tuple[int, ...]) -> bool:
    return all(mask & (1 << (s - 1)) for s in sigs)


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for t in os.listdir(f"/proc/{pid}/task"):
        kids += [int(k) for k in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
    return kids


def _server_pid(inst: Path) -> int:
    """The `occlum-run --serve` process of inst."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            argv = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--serve" in argv and str(inst).encode() in argv:
            return int(d)
    raise AssertionError("no occlum-run --serve process")


def _fs_server(pid: int) -> int:
    """The child of the PAL process that serves the root FS (the one with the flusher)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for k in _children(pid):
            try:
                if any(name == "ofs-flusher" for name, _ in _threads(k).values()):
                    return k
            except OSError:
                continue
        time.sleep(0.05)
    raise AssertionError(f"no child of {pid} runs a thread named ofs-flusher")


def _check_helper_threads(fs_pid: int) -> None:
    threads = _threads(fs_pid)
    assert not _blocks(threads[fs_pid][1], (signal.SIGTERM,)), "the FUSE main thread blocks SIGTERM"
    for tid, (name, mask) in threads.items():
        if tid == fs_pid:
            continue
        # Every other thread leaves SIGTERM to the main thread; ours block everything.
        assert _blocks(mask, FUSE_BLOCKED), f"thread {tid} ({name}) can take SIGTERM: {mask:#x}"
        if name.startswith("ofs-"):
            assert _blocks(mask, CHECKED), f"helper thread {name} takes signals: {mask:#x}"


def test_helper_threads_of_the_root_fs_server_block_signals(instance_copy: Path) -> None:
    r = occlum(instance_copy, "start")
    assert r.returncode == 0, r.stderr
    try:
        _check_helper_threads(_fs_server(_server_pid(instance_copy)))
    finally:
        assert occlum(instance_copy, "stop").returncode == 0


def _mount_with(inst: Path, mnt: Path, preexec: object) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    proc = subprocess.Popen([OCCLUM, "mount", str(mnt)], cwd=inst, env=env,
                            stderr=subprocess.PIPE, preexec_fn=preexec)  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    while not os.path.ismount(mnt):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "occlum mount did not mount"
        time.sleep(0.02)
    return proc


def _ignore_term() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _block_term() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


@pytest.mark.parametrize("preexec", [_ignore_term, _block_term], ids=["ignored", "blocked"])
def test_occlum_mount_stops_on_sigterm(instance_copy: Path, tmp_path: Path, preexec: object) -> None:
    """`occlum mount` started with SIGTERM ignored or blocked (inherited, e.g. from a service
    manager or nohup-like wrapper) still stops on SIGTERM and unmounts."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = _mount_with(instance_copy, mnt, preexec)
    try:
        _check_helper_threads(proc.pid)  # occlum mount execs occlum-fs: same pid
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
    assert rc == 0, proc.stderr.read() if proc.stderr else ""
    assert not os.path.ismount(mnt)


# 300 failed starts: the hang was seen 7 times in 9,150 runs.  About 25 s here.
FAILED_STARTS = 300


@pytest.mark.stress
def test_failed_starts_never_hang(instance_copy: Path) -> None:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    for i in range(FAILED_STARTS):
        try:
            r = subprocess.run([OCCLUM, "run", "/bin/does-not-exist"], cwd=instance_copy, env=env,
                               capture_output=True, text=True, timeout=10,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run {i + 1} of {FAILED_STARTS} hung (> 10 s)")
        assert r.returncode == 127 and "/bin/does-not-exist" in r.stderr, (i, r.returncode, r.stderr)
