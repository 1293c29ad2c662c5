"""`doit build` / `doit list` in an application repository with a three-line dodo.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from pipeline_helpers import make_instance, needs_native

pytestmark = needs_native

DODO = '''\
# dodo.py of an application repository (docs/build.md)
from occlum_build.pipeline.run import dodo
globals().update(dodo("occlum_instance", sgx_mode="SIM"))
'''


def _doit(repo, *args):
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=repo, capture_output=True,
                          text=True, timeout=300)


def test_doit_build_and_list(tmp_path):
    repo = tmp_path / "app"
    repo.mkdir()
    make_instance(repo, "occlum_instance")
    (repo / "dodo.py").write_text(DODO)
    assert len(DODO.splitlines()) == 3
    r = _doit(repo, "list")
    assert r.returncode == 0, r.stderr
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
    assert {"build", "image", "initfs", "sys_json", "protect", "enclave_xml"} <= listed
    r = _doit(repo, "build")
    assert r.returncode == 0, r.stderr + r.stdout
    inst = repo / "occlum_instance"
    rep = json.loads((inst / "build/report.json").read_text())
    assert rep["sgx_mode"] == "SIM" and len(rep["image_mac"]) == 32
    assert (inst / ".__occlum_status").read_text() == "built\n"
    # a second run, and `occlum build` after it, find everything up to date (one state)
    r = _doit(repo, "build")
    assert r.returncode == 0
    rep2 = json.loads((inst / "build/report.json").read_text())
    assert not any(s["ran"] for n, s in rep2["stages"].items() if n not in ("prepare", "build"))
    r = subprocess.run([sys.executable, "-m", "occlum_build.cli.main", "build", "--sgx-mode", "SIM",
                        "--json"], cwd=inst, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rep3 = json.loads(r.stdout)
    assert rep3["image_mac"] == rep["image_mac"]
    assert not any(s["ran"] for n, s in rep3["stages"].items() if n not in ("prepare", "build"))


def test_doit_build_reports_bad_config(tmp_path):
    repo = tmp_path / "app"
    repo.mkdir()
    make_instance(repo, "occlum_instance")
    (repo / "dodo.py").write_text(DODO)
    (repo / "occlum_instance/Occlum.json").write_text("{")
    r = _doit(repo, "build")
    assert r.returncode != 0 and "Occlum.json" in (r.stdout + r.stderr)


def test_doit_bad_option_is_one_line(tmp_path):
    repo = tmp_path / "app"
    repo.mkdir()
    make_instance(repo, "occlum_instance")
    (repo / "dodo.py").write_text(DODO.replace('sgx_mode="SIM"', 'sgx_mode="SIM", image_key="nope.key"'))
    r = _doit(repo, "build")
    assert r.returncode == 2 and "nope.key" in r.stderr and "Traceback" not in r.stderr


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "doit-app"


def test_example_app_repo_chains_compile_copy_bom_and_build(tmp_path):
    """examples/doit-app: `doit` compiles, copies with copy_bom and builds; a second `doit`
    runs nothing; an edit of hello.c flows through to a new image and MRENCLAVE."""
    repo = tmp_path / "app"
    shutil.copytree(EXAMPLE, repo)
    r = subprocess.run([sys.executable, "-m", "occlum_build.cli.main", "new", "occlum_instance"],
                       cwd=repo, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = _doit(repo)
    assert r.returncode == 0, r.stderr + r.stdout
    inst = repo / "occlum_instance"
    assert (inst / "image/bin/hello").read_bytes() == (repo / "build-out/hello").read_bytes()
    rep = json.loads((inst / "build/report.json").read_text())
    image_mac = rep["image_mac"]
    r = _doit(repo)
    assert r.returncode == 0, r.stderr + r.stdout
    # doit prints ".  task" for each task it executes, "-- task" for one up to date; prepare
    # and build always run (a cleanup check and the report, a few ms).
    ran = [ln[3:] for ln in (r.stdout + r.stderr).splitlines() if ln.startswith(".  ")]
    assert ran == ["prepare", "build"], r.stdout + r.stderr
    assert "-- copy_bom" in r.stdout + r.stderr and "-- compile" in r.stdout + r.stderr
    rep2 = json.loads((inst / "build/report.json").read_text())
    assert not any(s["ran"] for n, s in rep2["stages"].items() if n not in ("prepare", "build"))
    (repo / "hello.c").write_text((repo / "hello.c").read_text().replace("Hello", "Hi"))
    r = _doit(repo)
    assert r.returncode == 0, r.stderr + r.stdout
    assert b"Hi from" in (inst / "image/bin/hello").read_bytes()
    rep3 = json.loads((inst / "build/report.json").read_text())
    assert rep3["image_mac"] != image_mac and rep3["mrenclave"] != rep["mrenclave"]


def test_copy_bom_task_fails_with_one_line(tmp_path):
    repo = tmp_path / "app"
    shutil.copytree(EXAMPLE, repo)
    subprocess.run([sys.executable, "-m", "occlum_build.cli.main", "new", "occlum_instance"],
                   cwd=repo, check=True, capture_output=True)
    (repo / "app.yaml").write_text("targets:\n  - target: /bin\n    copy:\n      - files: [../nope]\n")
    r = _doit(repo)
    assert r.returncode != 0
    assert "copy_bom" in r.stderr + r.stdout and "nope" in r.stderr + r.stdout
    assert not (repo / "occlum_instance/build/report.json").exists()
