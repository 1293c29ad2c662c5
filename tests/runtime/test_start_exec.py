"""`occlum start / exec / stop`: a background server keeps the instance booted."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from .rt_helpers import BIN, OCCLUM, flip, needs_runtime, occlum

pytestmark = [pytest.mark.native, pytest.mark.slow, needs_runtime]


@pytest.fixture
def started(instance_copy: Path):
    r = occlum(instance_copy, "start")
    assert r.returncode == 0, r.stderr
    yield instance_copy
    occlum(instance_copy, "stop")


def _exec_bg(inst: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    return subprocess.Popen([OCCLUM, "exec", *args], cwd=inst, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_exec_runs_programs(started: Path) -> None:
    r = occlum(started, "exec", "/bin/hello")
    assert (r.returncode, r.stdout) == (0, "Hello World\n"), r.stderr
    assert occlum(started, "exec", "--", "/bin/probe", "exit", "4").returncode == 4
    r = occlum(started, "exec", "/bin/probe", "env", env={"EXAMPLE": "e", "OTHER": "o"})
    assert r.stdout.splitlines() == ["OCCLUM=yes", "EXAMPLE=e"]
    # State written by one exec is seen by the next (same root FS, same writable layer).
    assert occlum(started, "exec", "/bin/probe", "write", "/root/s.txt", "kept").returncode == 0
    assert occlum(started, "exec", "/bin/probe", "cat", "/root/s.txt").stdout == "kept"


def test_exec_refusals(started: Path) -> None:
    r = occlum(started, "exec", "/root/probe", "hello")
    assert r.returncode == 127 and "not under an entry point" in r.stderr
    r = occlum(started, "run", "/bin/hello")  # one runtime per instance
    assert r.returncode == 1 and "already running" in r.stderr
    r = occlum(started, "start")
    assert r.returncode != 0 and "already started" in r.stderr


def test_signal_passes_through_exec(started: Path) -> None:
    p = _exec_bg(started, "/bin/probe", "wait")
    assert p.stdout is not None and p.stdout.readline() == "ready\n"  # it runs
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 128 + signal.SIGTERM


def test_stop_ends_running_programs(started: Path) -> None:
    p = _exec_bg(started, "/bin/probe", "wait")
    assert p.stdout is not None and p.stdout.readline() == "ready\n"  # it runs
    assert occlum(started, "stop").returncode == 0
    assert p.wait(timeout=30) == 128 + signal.SIGKILL
    r = occlum(started, "exec", "/bin/hello")
    assert r.returncode == 1 and "not running" in r.stderr
    assert not (started / "run" / "occlum_exec.sock").exists()
    # The instance is free again for occlum run.
    assert occlum(started, "run", "/bin/hello").returncode == 0


def test_start_refuses_tampered_instance(instance_copy: Path) -> None:
    flip(instance_copy / "build/.Occlum_sys.json.protected", 40)
    r = occlum(instance_copy, "start")
    assert r.returncode == 1
    assert "build/.Occlum_sys.json.protected" in r.stderr
    assert not (instance_copy / "run" / "occlum_exec.sock").exists()
