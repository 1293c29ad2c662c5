"""`occlum build` refuses a started or running instance (issue 15, item 3): one line, exit 4
(EXIT_STATE), and nothing in the instance changes.  It used to replace run/ under a live
server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from occlum_build.errors import EXIT_STATE

from .rt_helpers import BIN, OCCLUM, needs_runtime, occlum

pytestmark = [pytest.mark.native, needs_runtime]


LAYER = Path("run/mount/__ROOT")


def _snapshot(inst: Path) -> dict[str, tuple[int, ...]]:
    """Every path of the instance -> (mode, size, mtime_ns).  The live writable layer is the
    runtime's to change (its flusher writes the index up to a second after the app's last
    write): of it only the identity (inodes of the directory and its layer file) is kept,
    which a build that resets run/ would change."""
    out: dict[str, tuple[int, ...]] = {}
    for p in sorted(inst.rglob("*")):
        rel = p.relative_to(inst)
        if rel == LAYER or LAYER in rel.parents:
            continue
        st = p.lstat()
        out[str(rel)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    out[str(LAYER)] = (os.lstat(inst / LAYER).st_ino, os.lstat(inst / LAYER / "layer").st_ino)
    return out


def _touch_input(inst: Path) -> None:
    """Give the build something to do (a changed image file)."""
    (inst / "image" / "etc" / "changed").write_text("new input\n")


def _refused(inst: Path, why: str) -> None:
    _touch_input(inst)
    before = _snapshot(inst)
    r = occlum(inst, "build", "--sgx-mode", "SIM")
    assert r.returncode == EXIT_STATE, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "occlum build refused" in lines[0] and why in lines[0], r.stderr
    assert _snapshot(inst) == before


def test_build_refuses_a_started_instance(instance_copy: Path) -> None:
    inst = instance_copy
    assert occlum(inst, "start").returncode == 0
    try:
        assert occlum(inst, "exec", "/bin/probe", "write", "/root/kept", "x").returncode == 0
        _refused(inst, "occlum stop first")
        # The server still works on the same instance.
        r = occlum(inst, "exec", "/bin/probe", "cat", "/root/kept")
        assert (r.returncode, r.stdout) == (0, "x"), r.stderr
    finally:
        assert occlum(inst, "stop").returncode == 0
    assert occlum(inst, "build", "--sgx-mode", "SIM").returncode == 0
    r = occlum(inst, "status")
    assert r.stdout.strip() == "built"


def test_build_refuses_an_instance_in_occlum_run(instance_copy: Path) -> None:
    inst = instance_copy
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    p = subprocess.Popen([OCCLUM, "run", "/bin/probe", "wait"], cwd=inst, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        _refused(inst, "running")
    finally:
        p.terminate()
        p.wait(timeout=30)
    assert occlum(inst, "build", "--sgx-mode", "SIM").returncode == 0
