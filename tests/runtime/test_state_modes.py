"""Permissions of build and run-time state (issue 15, item 6): every directory occlum-build
and its runtime own gets an explicit mode whatever the umask: the writable layer
run/mount/__ROOT 0700 as documented (it was 0755), and under umask 000 build/, build/.state and
the layer are no longer 0777; no file or directory in build/ or run/ is group/other writable."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from .rt_helpers import BIN, OCCLUM, needs_runtime

pytestmark = [pytest.mark.native, needs_runtime]

MODES = {
    "build": 0o755,
    "build/.state": 0o700,
    "build/bin": 0o755,
    "build/lib": 0o755,
    "build/mount": 0o755,
    "build/mount/__ROOT": 0o755,
    "build/initfs": 0o755,
    "build/initfs/__ROOT": 0o755,
    "run": 0o755,
    "run/mount": 0o755,
    "run/mount/__ROOT": 0o700,
    "run/mount/__ROOT/data": 0o700,
    "run/initfs": 0o755,
    "run/initfs/__ROOT": 0o700,
    "run/root": 0o700,
    "run/.sim_seal_key": 0o600,
    "run/.runtime.lock": 0o600,
    "run/occlum_exec.log": 0o600,
    "run/mount/__ROOT/index": 0o600,
    "run/mount/__ROOT/layer": 0o600,
}


def _occlum(inst: Path, umask: int, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    r = subprocess.run([OCCLUM, *argv], cwd=inst, env=env, text=True, capture_output=True,
                       preexec_fn=lambda: os.umask(umask), timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, (argv, r.stderr)
    return r


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_modes_whatever_the_umask(instance_copy: Path, umask: int) -> None:
    inst = instance_copy
    shutil.rmtree(inst / "build")
    _occlum(inst, umask, "build", "--sgx-mode", "SIM")
    _occlum(inst, umask, "run", "/bin/probe", "write", "/root/f", "x")
    _occlum(inst, umask, "start")
    _occlum(inst, umask, "exec", "/bin/probe", "write", "/root/g", "y")
    _occlum(inst, umask, "stop")
    got = {rel: stat.S_IMODE(os.lstat(inst / rel).st_mode) for rel in MODES}
    assert got == MODES
    for top in ("build", "run"):
        for p in [inst / top, *(inst / top).rglob("*")]:
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                continue
            assert not st.st_mode & 0o022, f"{p.relative_to(inst)} is {stat.S_IMODE(st.st_mode):o}"
    for f in (inst / "run/mount/__ROOT/data").iterdir():
        assert stat.S_IMODE(os.lstat(f).st_mode) == 0o600, f


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_runtime_recreates_run_with_its_modes(instance_copy: Path, umask: int) -> None:
    """run/ removed by hand: the runtime (libos/src/pal.c, the writable layer's open) makes it
    again with the same modes."""
    inst = instance_copy
    shutil.rmtree(inst / "run", ignore_errors=True)
    _occlum(inst, umask, "run", "/bin/probe", "write", "/root/f", "x")
    for rel in ("run", "run/mount", "run/mount/__ROOT", "run/mount/__ROOT/data", "run/root",
                "run/.sim_seal_key", "run/.runtime.lock", "run/mount/__ROOT/index"):
        assert stat.S_IMODE(os.lstat(inst / rel).st_mode) == MODES[rel], rel
