"""An instance copied with `cp -a` or moved (issue 15 E): build/.state names files by absolute
path and a copy has new inodes and ctimes, so every stage used to run again.  Now the paths are
relocated and every file whose stat key changed is compared by content: a copy rebuilds
nothing, and an image-stage error in it keeps the copied build usable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_helpers import needs_native

pytestmark = needs_native
OCCLUM = [sys.executable, "-m", "occlum_build.cli.main"]
STAGES = ("enclave_xml", "image_config", "image", "initfs", "sys_json", "protect", "libos", "sign",
          "runtime")


def occlum(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("OCCLUM_LOG_LEVEL", None)
    return subprocess.run(OCCLUM + list(args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def build(inst: Path) -> dict:
    r = occlum("build", "--sgx-mode", "SIM", "--json", cwd=inst)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def ran(rep: dict) -> set[str]:
    return {n for n in STAGES if rep["stages"][n]["ran"]}


def same_build(a: dict, b: dict) -> bool:
    return all(a[k] == b[k] for k in ("image_mac", "initfs_mac", "conf_mac", "mrenclave", "mrsigner"))


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, dict]:
    assert occlum("new", "inst", cwd=tmp_path).returncode == 0
    inst = tmp_path / "inst"
    (inst / "image/bin/hello.txt").write_text("hello\n")
    (inst / "image/etc/app.conf").write_bytes(b"x" * 10000)
    return inst, build(inst)


def cp_a(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return dst


def test_cp_a_copy_rebuilds_nothing(built: tuple[Path, dict], tmp_path: Path) -> None:
    inst, first = built
    copy = cp_a(inst, tmp_path / "copy")
    time.sleep(0.2)  # past fsutil.RACY_NS: the copied files' keys can be kept
    rep = build(copy)
    assert ran(rep) == set(), rep["stages"]
    assert same_build(rep, first)
    # the files were read once and the image manifest re-keyed to the copy's inodes, so an
    # edit later reads only what changed (sefs_build.matches_mac)
    m = json.loads((copy / "build/.state/image/sefs-manifest.json").read_text())
    key = m["entries"][b"etc/app.conf".hex()][2]
    assert key[1] == os.lstat(copy / "image/etc/app.conf").st_ino
    assert ran(build(copy)) == set()
    assert ran(build(inst)) == set()  # the original is untouched by its copy's build
    # the copy is an instance of its own: an edit there rebuilds the image, not the original
    (copy / "image/bin/hello.txt").write_text("hello, copy\n")
    rep2 = build(copy)
    assert "image" in ran(rep2) and rep2["image_mac"] != first["image_mac"]
    assert rep2["image"]["objects_written"] <= 3  # the file and its dir (and the root)
    assert ran(build(inst)) == set()


def test_moved_instance_rebuilds_nothing(built: tuple[Path, dict], tmp_path: Path) -> None:
    inst, first = built
    moved = tmp_path / "moved"
    os.rename(inst, moved)
    rep = build(moved)
    assert ran(rep) == set() and same_build(rep, first)


def test_image_error_in_a_copy_keeps_the_copied_build(built: tuple[Path, dict], tmp_path: Path) -> None:
    inst, _ = built
    copy = cp_a(inst, tmp_path / "copy")
    bad = os.fsencode(copy / "image/bin") + b"/bad-\xff-name"
    with open(bad, "wb") as f:
        f.write(b"x")
    r = occlum("build", "--sgx-mode", "SIM", cwd=copy)
    assert r.returncode == 2 and "the name is not UTF-8" in r.stderr, r.stderr
    assert (copy / ".__occlum_status").read_text() == "built\n"
    r = occlum("run", "/bin/no-such-program", cwd=copy)  # the copied build still boots
    assert r.returncode == 127 and "cannot execute /bin/no-such-program" in r.stderr, r.stderr


def test_copy_of_a_state_dir_that_does_not_record_its_dir(built: tuple[Path, dict], tmp_path: Path) -> None:
    """Instances built before state.json recorded the instance dir: the dir is taken from the
    Occlum.json path in doit's database."""
    inst, first = built
    (inst / "build/.state/state.json").write_text('{"version": 1}\n')
    copy = cp_a(inst, tmp_path / "copy")
    rep = build(copy)
    assert ran(rep) == set() and same_build(rep, first)
    assert json.loads((copy / "build/.state/state.json").read_text())["root"] == str(copy)
