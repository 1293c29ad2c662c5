"""`occlum package` ships no secrets and no run-time state (issue 15, item 4): of run/ only the
empty layer directories, as Occlum's package has them; never run/.sim_seal_key (it used to go
in, mode 0644), never what the app wrote, the lock, the socket or the log; whatever the umask."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from occlum_build.package import RUN_DIRS

from .rt_helpers import BIN, OCCLUM, needs_runtime, occlum

pytestmark = [pytest.mark.native, needs_runtime]


def _package(inst: Path, umask: int) -> Path:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    r = subprocess.run([OCCLUM, "package", "--debug", "pkg"], cwd=inst, env=env, text=True,
                       capture_output=True, preexec_fn=lambda: os.umask(umask), timeout=120)
    assert r.returncode == 0, r.stderr
    return inst / "pkg.tar.gz"


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_package_has_no_run_time_state(instance_copy: Path, umask: int) -> None:
    inst = instance_copy
    r = occlum(inst, "run", "/bin/probe", "write", "/root/app-data", "TOP-SECRET-APP-DATA")
    assert r.returncode == 0, r.stderr
    assert occlum(inst, "start").returncode == 0
    assert occlum(inst, "exec", "/bin/probe", "write", "/tmp/more", "x").returncode == 0
    assert occlum(inst, "stop").returncode == 0
    seal = inst / "run" / ".sim_seal_key"
    assert seal.is_file() and any((inst / "run" / "mount" / "__ROOT").iterdir())
    secret = seal.read_bytes().strip()

    with tarfile.open(_package(inst, umask)) as t:
        members = t.getmembers()
        blobs = [f.read() for m in members if m.isfile() and (f := t.extractfile(m)) is not None]
    run = [m for m in members if m.name == "pkg/run" or m.name.startswith("pkg/run/")]
    assert sorted(m.name for m in run) == sorted(f"pkg/{d}" for d in RUN_DIRS)
    assert all(m.isdir() and m.mode == 0o755 for m in run)
    names = [m.name for m in members]
    for never in ("seal_key", "sign_key", ".runtime.lock", "occlum_exec", "app-data"):
        assert not any(never in n for n in names), never
    assert not any(secret in b for b in blobs), "the instance secret's text is in the package"
    assert all(m.mode in (0o755, 0o644, 0o777) for m in members)
