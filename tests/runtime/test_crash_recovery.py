"""A crashed `occlum start` server is recovered (issue 15, item 2).

Killing the server with SIGKILL used to leave its connection handlers (and their programs)
running, one of them holding the listening socket: every later `occlum exec` hung, and
start/stop/run all said the instance was busy.  Now the programs die with the server, the
runtime lock (not the socket file) tells whether a server is alive, and `occlum status` says
running / crashed / stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .rt_helpers import BIN, OCCLUM, needs_runtime, occlum

pytestmark = [pytest.mark.native, needs_runtime]


def _procs_of(inst: Path) -> dict[int, tuple[int, list[bytes]]]:
    """pid -> (ppid, argv) of every process whose command line names the instance."""
    out = {}
    key = str(inst).encode()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            argv = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
            ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if any(key in a for a in argv):
            out[int(d)] = (ppid, argv)
    return out


def _server_pid(inst: Path) -> int:
    """The `occlum-run --serve` process itself (not one of its forked children)."""
    procs = {p: v for p, v in _procs_of(inst).items() if b"--serve" in v[1]}
    top = [p for p, (ppid, _) in procs.items() if ppid not in procs]
    assert len(top) == 1, procs
    return top[0]


def _wait_gone(inst: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        left = {p: v for p, v in _procs_of(inst).items()
                if Path(f"/proc/{p}/stat").exists()
                and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"}
        if not left:
            return
        assert time.monotonic() < deadline, f"still running after the server died: {left}"
        time.sleep(0.05)


def _status(inst: Path) -> str:
    r = occlum(inst, "status")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.fixture
def crashed(instance_copy: Path):
    """A started instance whose server was killed with SIGKILL while a program ran."""
    inst = instance_copy
    assert _status(inst) == "built"
    assert occlum(inst, "start").returncode == 0
    assert _status(inst) == "running"
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    bg = subprocess.Popen([OCCLUM, "exec", "/bin/probe", "wait"], cwd=inst, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert bg.stdout is not None and bg.stdout.readline() == "ready\n"
        os.kill(_server_pid(inst), signal.SIGKILL)
        # The program dies with its server; so does every process the server forked.
        assert bg.wait(timeout=10) == 128 + signal.SIGKILL
        assert "the program was killed" in (bg.stderr.read() if bg.stderr else "")
        _wait_gone(inst)
    finally:
        if bg.poll() is None:
            bg.kill()
            bg.wait()
    yield inst
    occlum(inst, "stop")


def test_exec_of_a_crashed_instance_fails_at_once(crashed: Path) -> None:
    assert _status(crashed) == "crashed"
    t0 = time.monotonic()
    r = occlum(crashed, "exec", "/bin/hello", timeout=10)
    assert time.monotonic() - t0 < 1.0
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not running" in lines[0] and "occlum start" in lines[0], r.stderr
    assert _status(crashed) == "crashed"  # a failed exec changes nothing


def test_start_recovers_a_crashed_instance(crashed: Path) -> None:
    r = occlum(crashed, "start", timeout=30)
    assert r.returncode == 0, r.stderr
    assert "ended without 'occlum stop'" in r.stderr
    assert _status(crashed) == "running"
    r = occlum(crashed, "exec", "/bin/hello", timeout=30)
    assert (r.returncode, r.stdout) == (0, "Hello World\n"), r.stderr
    assert occlum(crashed, "stop", timeout=30).returncode == 0
    assert _status(crashed) == "stopped"


def test_run_and_stop_after_a_crash(crashed: Path) -> None:
    r = occlum(crashed, "run", "/bin/hello", timeout=30)  # the lock was released
    assert (r.returncode, r.stdout) == (0, "Hello World\n"), r.stderr
    r = occlum(crashed, "stop", timeout=10)
    assert r.returncode == 1 and "crashed or killed" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (crashed / "run" / "occlum_exec.sock").exists()
    assert _status(crashed) == "stopped"
    r = occlum(crashed, "stop", timeout=10)
    assert r.returncode == 1 and "not running" in r.stderr


def test_status_follows_start_and_stop(instance_copy: Path) -> None:
    inst = instance_copy
    assert _status(inst) == "built"
    assert occlum(inst, "start").returncode == 0
    try:
        assert _status(inst) == "running"
        r = occlum(inst, "start")
        assert r.returncode == 4 and "already started" in r.stderr
    finally:
        assert occlum(inst, "stop").returncode == 0
    assert _status(inst) == "stopped"
    r = occlum(inst, "exec", "/bin/hello")
    assert r.returncode == 1 and "not running (occlum start)" in r.stderr


def test_unreadable_runtime_lock_is_one_line(instance_copy: Path) -> None:
    """A runtime lock that cannot be opened (here a symlink loop; for a user other than root,
    its mode 0600) is named in one line, not a traceback."""
    lock = instance_copy / "run" / ".runtime.lock"
    lock.parent.mkdir(exist_ok=True)
    lock.unlink(missing_ok=True)
    lock.symlink_to(lock.name)
    for cmd in (("status",), ("stop",), ("build", "--sgx-mode", "SIM")):
        r = occlum(instance_copy, *cmd)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and "runtime lock" in lines[0], (cmd, r.stderr)
        assert "Traceback" not in r.stderr
