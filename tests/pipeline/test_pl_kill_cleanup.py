"""Kills leave nothing behind (issue 15 B): real `occlum package`, `copy_bom` and `occlum build`
processes are SIGKILLed while their temp file exists; the next run removes it (only our own
temp names, only a dead writer's), never lets it into an image, and ends as a clean run does."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_helpers import needs_native

from occlum_build.image import SefsReader

pytestmark = needs_native
OCCLUM = [sys.executable, "-m", "occlum_build.cli.main"]
COPY_BOM = [sys.executable, "-m", "occlum_build.cli.bom"]
BIG = 256 << 20  # a sparse file: copying or packing it takes long enough to be caught at it


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("OCCLUM_LOG_LEVEL", None)
    return e


def run(argv: list[str], cwd: Path, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env={**env(), **(extra or {})}, capture_output=True,
                          text=True, timeout=300)


def kill_when_temp_appears(argv: list[str], cwd: Path, watch: Path, name: str, tag: str,
                           extra: dict[str, str] | None = None) -> Path:
    """Start ``argv``, SIGKILL it as soon as its temp file ``.<name>.<tag><pid>`` is in
    ``watch``; return that file (still there: nothing cleans up after a SIGKILL)."""
    p = subprocess.Popen(argv, cwd=cwd, env={**env(), **(extra or {})},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    temp = watch / f".{name}.{tag}{p.pid}"
    deadline = time.monotonic() + 120
    try:
        while not temp.exists():
            assert p.poll() is None, f"{argv} finished before {temp.name} appeared"
            assert time.monotonic() < deadline
            time.sleep(0.0005)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert temp.exists()
    return temp


def temps(d: Path) -> list[str]:
    return sorted(n for n in os.listdir(d) if re.fullmatch(r"\..+\.(tmp|copy_bom)\d+", n))


@pytest.fixture
def inst(tmp_path: Path) -> Path:
    assert run(OCCLUM + ["new", "inst"], tmp_path).returncode == 0
    inst = tmp_path / "inst"
    (inst / "image/bin/hello.txt").write_text("hello\n")
    r = run(OCCLUM + ["build", "--sgx-mode", "SIM"], inst)
    assert r.returncode == 0, r.stderr
    return inst


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_killed_package_leaves_no_temp_after_the_rerun(inst: Path) -> None:
    with open(inst / "run/mount/__ROOT/big", "wb") as f:  # run/ goes into the package
        f.truncate(BIG)
    pkg = inst / "inst.tar.gz"
    temp = kill_when_temp_appears(OCCLUM + ["package", "--debug"], inst, inst, pkg.name, "tmp")
    assert not pkg.exists()
    r = run(OCCLUM + ["package", "--debug"], inst)
    assert r.returncode == 0, r.stderr
    assert not temp.exists() and temps(inst) == []
    first = sha256(pkg)
    pkg.unlink()
    assert run(OCCLUM + ["package", "--debug"], inst).returncode == 0
    assert sha256(pkg) == first  # the same package as a run that was never interrupted


def test_killed_copy_bom_partial_copy_is_removed_and_never_imaged(inst: Path, tmp_path: Path) -> None:
    src = tmp_path / "app"
    src.mkdir()
    (src / "small").write_text("small\n")
    bom = tmp_path / "app.yaml"
    bom.write_text("targets:\n  - target: /app\n    copy:\n      - dirs: [../app/]\n")
    cache = {"OCCLUM_BOM_CACHE": str(tmp_path / "bomcache" / "elf.json")}
    argv = COPY_BOM + ["-f", str(bom), "--root", "image"]
    assert run(argv, inst, cache).returncode == 0  # a stamp of this clean run exists
    with open(src / "big", "wb") as f:
        f.truncate(BIG)
    dest_dir = inst / "image/app"
    temp = kill_when_temp_appears(argv, inst, dest_dir, "big", "copy_bom", cache)

    # occlum build before copy_bom ran again: the partial copy is named and left out
    r = run(OCCLUM + ["build", "--sgx-mode", "SIM", "--json"], inst)
    assert r.returncode == 0, r.stderr
    assert (f"/app/{temp.name}: a partial copy left by an interrupted copy_bom, not stored in "
            "the image (run copy_bom again: it removes it)") in r.stderr
    mac = json.loads(r.stdout)["image_mac"]
    names = {e.path for e in SefsReader(inst / "build/mount/__ROOT", bytes.fromhex(mac)).walk()}
    assert "/app/small" in names and not [n for n in names if "copy_bom" in n]

    dry = run(argv + ["--dry-run"], inst, cache)
    assert dry.returncode == 0 and f"rm {temp} (a partial copy left by an interrupted copy_bom)" \
        in dry.stderr
    assert temp.exists()  # a dry run changes nothing
    r = run(argv, inst, cache)
    assert r.returncode == 0, r.stderr
    assert not temp.exists() and temps(dest_dir) == []
    assert (dest_dir / "big").stat().st_size == BIG
    again = run(argv, inst, cache)
    assert "nothing to copy" in again.stderr, again.stderr


def test_live_copy_bom_temp_is_not_removed(inst: Path, tmp_path: Path) -> None:
    """A temp whose writer is alive (here: this test process, started before it) is left."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "f").write_text("f\n")
    bom = tmp_path / "app.yaml"
    bom.write_text("targets:\n  - target: /app\n    copy:\n      - dirs: [../app/]\n")
    (inst / "image/app").mkdir()
    live = inst / "image/app" / f".f.copy_bom{os.getpid()}"
    live.write_text("being written")
    r = run(COPY_BOM + ["-f", str(bom), "--root", "image"], inst, {"OCCLUM_BOM_CACHE": "off"})
    assert r.returncode == 0, r.stderr
    assert live.exists() and (inst / "image/app/f").read_text() == "f\n"


def test_build_removes_the_temps_of_a_killed_build(inst: Path, tmp_path: Path) -> None:
    """Processes killed inside fsutil.atomic_open of a stage record and of the status file
    (as a build killed in its first stage is) leave their temps; the next build removes them
    and ends as a clean build."""
    writer = ("import sys\nfrom occlum_build import fsutil\n"
              "with fsutil.atomic_open(sys.argv[1]) as f:\n    f.write(b'partial'); f.flush()\n"
              "    open(sys.argv[2], 'rb').read()\n")
    made = []
    for i, target in enumerate([inst / "build/.state/stages/enclave_xml.json",
                                inst / ".__occlum_status", inst / "build/Enclave.xml"]):
        fifo = tmp_path / f"fifo{i}"
        os.mkfifo(fifo)
        p = subprocess.Popen([sys.executable, "-c", writer, str(target), str(fifo)])
        temp = target.with_name(f".{target.name}.tmp{p.pid}")
        while not temp.exists():
            assert p.poll() is None
            time.sleep(0.005)
        p.send_signal(signal.SIGKILL)
        p.wait()
        made.append(temp)
    assert all(t.exists() for t in made)
    r = run(OCCLUM + ["build", "--sgx-mode", "SIM"], inst)
    assert r.returncode == 0, r.stderr
    assert not [t for t in made if t.exists()]
    for d in (inst, inst / "build", inst / "build/.state/stages"):
        assert temps(d) == [], d
    assert (inst / ".__occlum_status").read_text() == "built\n"


def test_build_killed_in_the_image_stage_converges(inst: Path) -> None:
    """A real build SIGKILLed while the image stage writes a new file: the next build leaves no
    temp anywhere in the instance and gives what `occlum verify` recomputes from the inputs."""
    with open(inst / "image/bin/big", "wb") as f:
        f.truncate(2 * BIG)
    p = subprocess.Popen(OCCLUM + ["build", "--sgx-mode", "SIM"], cwd=inst, env=env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = inst / "build/mount/__ROOT"
    deadline = time.monotonic() + 120
    try:
        while not any(n.startswith(".tmp-") for n in os.listdir(out)):
            assert p.poll() is None, "the build finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.0005)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert (inst / ".__occlum_status").read_text() == "unfinished\n"
    r = run(OCCLUM + ["build", "--sgx-mode", "SIM"], inst)
    assert r.returncode == 0, r.stderr
    for d, _, files in os.walk(inst):
        left = [f for f in files if re.fullmatch(r"\..+\.(tmp|copy_bom)\d+", f) or f.startswith(".tmp-")]
        assert left == [], d
    assert (inst / ".__occlum_status").read_text() == "built\n"
    r = run(OCCLUM + ["verify"], inst)
    assert r.returncode == 0, r.stderr
