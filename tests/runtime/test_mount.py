"""`occlum mount`: the instance's root FS (verified image + writable layer) served at a
directory; what is written there is what `occlum run` sees, and the other way round."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .rt_helpers import BIN, OCCLUM, needs_runtime, occlum

pytestmark = [pytest.mark.native, pytest.mark.slow, needs_runtime]


def _wait_mounted(mnt: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until the mount table lists mnt (or the server exited)."""
    while proc.poll() is None:
        if any(line.split()[1] == str(mnt) for line in Path("/proc/mounts").read_text().splitlines()):
            return
        try:
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            pass
    raise AssertionError(f"occlum mount exited with {proc.returncode}")


def test_mount_shares_the_root_fs_with_run(instance_copy: Path, tmp_path: Path) -> None:
    inst = instance_copy
    assert occlum(inst, "run", "/bin/probe", "write", "/root/from-run", "written by run").returncode == 0
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    proc = subprocess.Popen([OCCLUM, "mount", str(mnt)], cwd=inst, env=env, stderr=subprocess.PIPE)
    try:
        _wait_mounted(mnt, proc)
        assert (mnt / "bin" / "hello").read_bytes() == (inst / "image/bin/hello").read_bytes()
        assert (mnt / "root" / "from-run").read_text() == "written by run"
        (mnt / "root" / "from-mount").write_text("written by mount")
        r = occlum(inst, "run", "/bin/hello")  # one runtime per instance
        assert r.returncode == 1 and "already running" in r.stderr
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        rc = proc.wait(timeout=60)
    assert rc == 0, proc.stderr.read() if proc.stderr else ""
    r = occlum(inst, "run", "/bin/probe", "cat", "/root/from-mount")
    assert (r.returncode, r.stdout) == (0, "written by mount"), r.stderr


def test_mount_needs_a_directory(instance_copy: Path, tmp_path: Path) -> None:
    r = occlum(instance_copy, "mount", str(tmp_path / "missing"))
    assert r.returncode == 2 and "not an existing directory" in r.stderr
