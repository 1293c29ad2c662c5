"""Paths over the Linux limit of 4095 bytes (issue 15 A): `occlum build` of an image/ with a
deeper tree and copy_bom with such a source or destination say so in one readable line, exit 2
(was: exit 5 and a 4 KB line printing a Python bytes repr), and leave the last build usable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from occlum_build.errors import EXIT_USAGE
from occlum_build.pathlimit import MAX_PATH_BYTES, message, shown

OCCLUM = [sys.executable, "-m", "occlum_build.cli.main"]
COPY_BOM = [sys.executable, "-m", "occlum_build.cli.bom"]
LIMIT_TEXT = f"over the Linux limit of {MAX_PATH_BYTES} bytes (PATH_MAX)"


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("OCCLUM_LOG_LEVEL", None)
    env["OCCLUM_BOM_CACHE"] = "off"
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def deep_tree(top: Path, levels: int = 30) -> Path:
    """A tree under ``top`` whose deepest file path is over 4095 bytes (made relative to the
    current directory, as the kernel refuses the full path)."""
    old = os.getcwd()
    os.chdir(top)
    try:
        for _ in range(levels):
            os.mkdir("d" * 200)
            os.chdir("d" * 200)
        Path("f").write_text("x")
    finally:
        os.chdir(old)
    return top


def the_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == EXIT_USAGE, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: "), r.stderr
    assert "Traceback" not in r.stderr and "b'" not in r.stderr, r.stderr
    assert LIMIT_TEXT in lines[-1], lines[-1]
    assert len(lines[-1]) < 400, lines[-1]
    return lines[-1]


def test_message_shortens_the_path() -> None:
    p = "/x/" + "a/" * 3000
    m = message(p)
    assert m == f"path {p[:60]}...{p[-40:]} is {len(p)} bytes, {LIMIT_TEXT}"
    assert shown("/short/path") == "/short/path"
    assert shown(b"/bad/\xff") == "/bad/\\xff"


def test_build_refuses_a_deep_image_tree_and_keeps_the_build(tmp_path: Path) -> None:
    assert run(OCCLUM + ["new", "inst"], tmp_path).returncode == 0
    inst = tmp_path / "inst"
    r = run(OCCLUM + ["build", "--sgx-mode", "SIM"], inst)
    assert r.returncode == 0, r.stderr
    deep_tree(inst / "image" / "bin")
    line = the_error(run(OCCLUM + ["build", "--sgx-mode", "SIM"], inst))
    assert f"Error: path {(str(inst) + '/image/bin/' + 'd' * 200)[:60]}..." in line
    assert (inst / ".__occlum_status").read_text() == "built\n"  # the last build still runs


def test_copy_bom_source_file_path_over_the_limit(tmp_path: Path) -> None:
    long = "/tmp/" + "a/" * 2100 + "x"
    bom = tmp_path / "app.yaml"
    bom.write_text(f"targets:\n  - target: /bin\n    copy:\n      - files: [{long}]\n")
    line = the_error(run(COPY_BOM + ["-f", str(bom), "--root", "root"], tmp_path))
    assert f"{bom}:4:17: targets[0].copy[0].files[0]: source {shown(long)} is" in line
    assert not (tmp_path / "root").exists()


def test_copy_bom_dir_holding_a_path_over_the_limit(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    deep_tree(tmp_path / "src")
    bom = tmp_path / "app.yaml"
    bom.write_text("targets:\n  - target: /x\n    copy:\n      - dirs: [src/]\n")
    line = the_error(run(COPY_BOM + ["-f", str(bom), "--root", "root"], tmp_path))
    assert f"Error: path {(str(tmp_path) + '/src/' + 'd' * 200)[:60]}..." in line


def test_copy_bom_destination_over_the_limit(tmp_path: Path) -> None:
    target = "/" + "b/" * 2100 + "x"
    bom = tmp_path / "app.yaml"
    bom.write_text(f"targets:\n  - target: {target}\n    copy:\n      - files: [/etc/hostname]\n")
    line = the_error(run(COPY_BOM + ["-f", str(bom), "--root", "root"], tmp_path))
    dest = f"{tmp_path}/root{target}"
    assert f"{bom}:2:13: targets[0].target: destination {shown(dest)} is" in line
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("levels", [1500])
def test_copy_bom_deep_target_within_the_limit(tmp_path: Path, levels: int) -> None:
    """1500 levels fit in 4095 bytes: made without hitting Python's recursion limit."""
    target = "/" + "b/" * levels + "x"
    bom = tmp_path / "app.yaml"
    bom.write_text(f"targets:\n  - target: {target}\n    copy:\n      - files: [/etc/hostname]\n")
    try:
        r = run(COPY_BOM + ["-f", str(bom), "--root", "root"], tmp_path)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "root" / target.lstrip("/") / "hostname").is_file()
    finally:  # shutil.rmtree (pytest's clean-up) recurses once per level
        subprocess.run(["rm", "-rf", str(tmp_path / "root")], check=True)
