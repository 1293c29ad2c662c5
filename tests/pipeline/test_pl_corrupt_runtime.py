"""An empty or corrupt build/bin/occlum-run or build/lib/libocclum-pal.so (issue 15 A): `occlum
run/start/exec` say in one line which file it is and that `occlum build` restores it, exit 1
(was: exit 70 "Exec format error", or the loader's "file too short" with exit 127, which reads
as "the program cannot start")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_helpers import needs_native

from occlum_build import paths
from occlum_build.errors import EXIT_FAILURE

pytestmark = needs_native
OCCLUM = [sys.executable, "-m", "occlum_build.cli.main"]


def occlum(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("OCCLUM_LOG_LEVEL", None)
    return subprocess.run(OCCLUM + list(args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("corrupt")
    assert occlum("new", "inst", cwd=base).returncode == 0
    inst = base / "inst"
    r = occlum("build", "--sgx-mode", "SIM", cwd=inst)
    assert r.returncode == 0, r.stderr
    return inst


CORRUPTIONS = {"empty": b"", "garbage": b"\x01\x02" * 50, "bad-elf": b"\x7fELF" + b"\xff" * 60}


@pytest.mark.parametrize("name", [f"bin/{paths.RUN_BIN}", f"lib/{paths.PAL_SO}"])
@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_corrupt_native_file_is_named(built: Path, name: str, how: str) -> None:
    f = built / "build" / name
    good = f.read_bytes()
    if how == "bad-elf" and name.startswith("lib/"):
        pytest.skip("a PAL with the ELF magic is the loader's to refuse")
    try:
        f.write_bytes(CORRUPTIONS[how])
        # (`occlum stop` of an instance that is not started says so first: it runs nothing.)
        r = occlum("stop", cwd=built)
        assert r.returncode == EXIT_FAILURE and r.stderr.strip().endswith("the instance is not running")
        for cmd in (["run", "/bin/true"], ["start"], ["exec", "/bin/true"]):
            r = occlum(*cmd, cwd=built)
            assert r.returncode == EXIT_FAILURE, (cmd, r.stderr)
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1, (cmd, r.stderr)
            assert lines[0] == (f"Error: {f}: empty or corrupt ({len(CORRUPTIONS[how])} bytes, "
                                "not a runnable ELF file); run 'occlum build' to copy it again"), cmd
        r = occlum("build", "--sgx-mode", "SIM", cwd=built)  # as the message says
        assert r.returncode == 0, r.stderr
        assert f.read_bytes() == good
        r = occlum("run", "/bin/no-such-program", cwd=built)  # boots again, up to the program
        assert r.returncode == 127 and "cannot execute /bin/no-such-program" in r.stderr, r.stderr
    finally:
        f.write_bytes(good)
