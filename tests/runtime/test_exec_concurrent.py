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
