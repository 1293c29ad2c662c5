"""HW mode on a machine without SGX is never silent (issue 15, item 5).

`occlum build` defaults to HW, as Occlum does; on a machine without an SGX device the build
warns, `occlum run`/`start` (and occlum-run itself) refuse with one line that says what to do,
OCCLUM_SIM_RUNS_HW=1 runs it on the SIM runtime anyway, and `occlum package` of such a HW
release warns."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from occlum_build.runtime import SIM_RUNS_HW_ENV, sgx_device

from .rt_helpers import needs_runtime, occlum

pytestmark = [pytest.mark.native, needs_runtime,
              pytest.mark.skipif(sgx_device() is not None, reason="this machine has SGX")]


def _one_refusal(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "no SGX device" in lines[0] and "--sgx-mode SIM" in lines[0] and SIM_RUNS_HW_ENV in lines[0]


@pytest.fixture
def hw_built(instance_copy: Path) -> Path:
    r = occlum(instance_copy, "build", env={"SGX_MODE": ""})  # the default: HW
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "without SGX" in warnings[0] and "--sgx-mode SIM" in warnings[0]
    assert (instance_copy / ".sgx_mode").read_text() == "HW\n"
    return instance_copy


def test_run_and_start_refuse_a_hw_build(hw_built: Path) -> None:
    inst = hw_built
    _one_refusal(occlum(inst, "run", "/bin/hello"))  # the fast path (execs build/bin/occlum-run)
    _one_refusal(occlum(inst, "run", "--", "/bin/hello"))  # the usual path
    r = subprocess.run([str(inst / "build/bin/occlum-run"), "/bin/hello"], capture_output=True,
                       text=True, env={k: v for k, v in os.environ.items() if k != SIM_RUNS_HW_ENV})
    _one_refusal(r)
    _one_refusal(occlum(inst, "start"))
    assert occlum(inst, "status").stdout.strip() != "running"
    r = occlum(inst, "exec", "/bin/hello")
    assert r.returncode == 1 and "not running" in r.stderr


def test_override_runs_a_hw_build_on_sim(hw_built: Path) -> None:
    inst = hw_built
    env = {SIM_RUNS_HW_ENV: "1"}
    r = occlum(inst, "run", "/bin/hello", env=env)
    assert (r.returncode, r.stdout) == (0, "Hello World\n"), r.stderr
    assert occlum(inst, "start", env=env).returncode == 0
    try:
        r = occlum(inst, "exec", "/bin/hello")
        assert (r.returncode, r.stdout) == (0, "Hello World\n"), r.stderr
    finally:
        assert occlum(inst, "stop").returncode == 0
    _one_refusal(occlum(inst, "run", "/bin/hello", env={SIM_RUNS_HW_ENV: "0"}))


def test_sim_build_runs_without_a_word(instance_copy: Path) -> None:
    r = occlum(instance_copy, "build", "--sgx-mode", "SIM")
    assert r.returncode == 0 and "Warning" not in r.stderr, r.stderr
    r = occlum(instance_copy, "run", "/bin/hello")
    assert (r.returncode, r.stdout, r.stderr) == (0, "Hello World\n", "")


def test_package_of_a_hw_release_warns(instance_copy: Path) -> None:
    inst = instance_copy
    cfg = json.loads((inst / "Occlum.json").read_text())
    cfg["metadata"]["debuggable"] = False
    (inst / "Occlum.json").write_text(json.dumps(cfg, indent=4))
    assert occlum(inst, "build", "--sgx-mode", "HW").returncode == 0
    r = occlum(inst, "package")
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "without SGX" in warnings[0] and "packaging a release" in warnings[0]
