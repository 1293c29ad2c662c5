"""200 `occlum exec`, 8 at a time, each writing its own file and reading it back in a second
exec: nothing is lost (the programs of a started instance share one root FS and writable
layer, served by one FUSE server).  About 30 s here (2 cores)."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .rt_helpers import BIN, OCCLUM, needs_runtime, occlum

pytestmark = [pytest.mark.native, needs_runtime]

EXECS, PARALLEL = 200, 8


@pytest.mark.stress
def test_concurrent_execs_lose_nothing(instance_copy: Path) -> None:
    inst = instance_copy
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")

    def one(i: int) -> str | None:
        path, text = f"/root/exec-{i}", f"payload {i} " + "x" * (i * 37 % 5000)
        w = subprocess.run([OCCLUM, "exec", "/bin/probe", "write", path, text], cwd=inst, env=env,
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if w.returncode != 0:
            return f"{i}: write exited {w.returncode}: {w.stderr.strip()}"
        r = subprocess.run([OCCLUM, "exec", "/bin/probe", "cat", path], cwd=inst, env=env,
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if (r.returncode, r.stdout) != (0, text):
            return f"{i}: read back {r.returncode} {r.stdout[:40]!r}: {r.stderr.strip()}"
        return None

    assert occlum(inst, "start").returncode == 0
    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            lost = [e for e in pool.map(one, range(EXECS)) if e]
    finally:
        assert occlum(inst, "stop").returncode == 0
    assert lost == []
    # Everything is still there after the server stopped (the index was written at stop).
    r = occlum(inst, "run", "/bin/probe", "cat", f"/root/exec-{EXECS - 1}")
    assert r.returncode == 0 and r.stdout.startswith(f"payload {EXECS - 1} "), r.stderr


def _server_pids(inst: Path) -> list[int]:
    """The server and the processes forked from it (its root FS server, the handlers)."""
    out = subprocess.run(["pgrep", "-f", f"occlum-run --instance {inst} .*--serve"],
                         capture_output=True, text=True).stdout.split()
    assert out, "no occlum-run --serve process"
    return [int(p) for p in out]


@pytest.mark.stress
def test_writes_of_finished_execs_survive_a_server_kill(instance_copy: Path) -> None:
    """The guarantee (docs/runtime.md, "Durability"): a program's writes to the root FS are on
    disk when its exit is reported (occlum exec returns, occlum run exits): the writable
    layer's index is written before.  So 40 execs in flight, 8 at a time, with a SIGKILL of
    the server and its root FS server in the middle: every exec that returned 0 before the
    kill has its file after a restart."""
    import signal
    import time

    inst = instance_copy
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    assert occlum(inst, "start").returncode == 0
    done: list[int] = []
    killed_at: list[float] = []

    def one(i: int) -> None:
        w = subprocess.run([OCCLUM, "exec", "/bin/probe", "write", f"/root/k-{i}", f"v{i}"], cwd=inst,
                           env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if w.returncode == 0 and not killed_at:
            done.append(i)

    try:
        pids = _server_pids(inst)
        assert len(pids) >= 2  # the server and its root FS server
        with ThreadPoolExecutor(8) as pool:
            futs = [pool.submit(one, i) for i in range(40)]
            while len(done) < 15:
                time.sleep(0.01)
            killed_at.append(time.monotonic())
            for pid in pids:  # all at once, the root FS server too: nothing gets to clean up
                os.kill(pid, signal.SIGKILL)
            for f in futs:
                f.result()
        assert len(done) >= 15
        r = occlum(inst, "start")
        assert r.returncode == 0, r.stderr
        lost = []
        for i in done:
            r = occlum(inst, "exec", "/bin/probe", "cat", f"/root/k-{i}")
            if (r.returncode, r.stdout) != (0, f"v{i}"):
                lost.append(i)
        assert not lost, f"writes of finished execs lost after the kill: {lost}"
    finally:
        occlum(inst, "stop")
