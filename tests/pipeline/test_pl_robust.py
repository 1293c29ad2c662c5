"""Concurrent builds, a full disk, a killed build: clear errors, previous outputs intact."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from pipeline_helpers import Occlum, make_instance, needs_native

from occlum_build.errors import EXIT_IO
from occlum_build.image import SefsReader, read_mac_file, verify_image
from occlum_build.paths import Instance
from occlum_build.pipeline.state import build_lock

pytestmark = needs_native
BUILD = [sys.executable, "-m", "occlum_build.cli.main", "build", "--sgx-mode", "SIM"]


def test_a_build_waits_for_the_lock_holder(inst):
    with build_lock(Instance.at(inst)):
        p = subprocess.Popen(BUILD, cwd=inst, stderr=subprocess.PIPE, text=True)
        first = p.stderr.readline()
        assert "Waiting for another build" in first
        assert p.poll() is None  # still waiting while we hold the lock
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err


def test_two_builds_at_once_are_serialized(inst, capsys):
    procs = [subprocess.Popen(BUILD, cwd=inst, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    rc, out, err = Occlum(inst, capsys)("verify")
    assert rc == 0, err


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_disk_full_keeps_previous_outputs(tmp_path, capsys):
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], check=True)
    try:
        inst = make_instance(mnt)
        oc = Occlum(inst, capsys)
        good = oc.build()
        before = {p: p.read_bytes() for p in (inst / "build").rglob("*")
                  if p.is_file() and ".state" not in p.parts}
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        big = inst / "image/bin/big"
        with open(big, "wb") as f:  # fits in image/, not a second time in build/
            f.write(os.urandom(free * 2 // 3))
        rc, _, err = oc("build", "--sgx-mode", "SIM")
        assert rc == EXIT_IO and "no space left" in err and "Traceback" not in err
        for p, data in before.items():
            assert p.read_bytes() == data, p  # every previous output intact
        assert not [p for p in (inst / "build/mount/__ROOT").iterdir() if p.name.startswith(".tmp")]
        big.unlink()
        rep = oc.build()
        assert rep["image_mac"] == good["image_mac"]
        rc, _, err = oc("verify")
        assert rc == 0, err
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _edit_config(inst) -> None:
    cfg = json.loads((inst / "Occlum.json").read_text())
    cfg["env"]["default"].append("ADDED=1")
    (inst / "Occlum.json").write_text(json.dumps(cfg, indent=4))


def test_a_late_stage_failure_marks_the_build_unfinished(inst, capsys, monkeypatch):
    """enclave_xml, sys_json and protect have replaced their outputs when the LibOS stage
    fails: build/ now mixes two builds, and run/package must not take it for a finished one."""
    from occlum_build.pipeline import stages

    oc = Occlum(inst, capsys)
    oc.build()
    assert (inst / ".__occlum_status").read_text() == "built\n"
    _edit_config(inst)

    def full(ctx):
        raise OSError(errno.ENOSPC, "No space left on device", str(ctx.inst.libos_unsigned))

    monkeypatch.setattr(stages, "patch_libos", full)
    rc, _, err = oc("build", "--sgx-mode", "SIM")
    assert rc == EXIT_IO and "no space left" in err
    assert (inst / ".__occlum_status").read_text() == "unfinished\n"
    rc, out, _ = oc("status")
    assert out.strip() == "unfinished"
    rc, _, err = oc("package", "--debug", str(inst.parent / "p.tar.gz"))
    assert rc != 0 and "did not finish" in err
    assert not (inst.parent / "p.tar.gz").exists()
    rc, _, err = oc("run", "/bin/hello.txt")
    assert rc != 0 and "did not finish" in err and err.count("\n") == 1
    r = subprocess.run([sys.executable, "-m", "occlum_build.cli.main", "print", "mrenclave"],
                       cwd=inst, capture_output=True, text=True)
    assert r.returncode == 0 and len(r.stdout.strip()) == 64 and "did not finish" in r.stderr
    monkeypatch.undo()
    oc.build()
    assert (inst / ".__occlum_status").read_text() == "built\n"
    rc, _, err = oc("verify")
    assert rc == 0, err


def test_a_config_error_keeps_the_last_good_build_usable(inst, capsys):
    """A stage that fails before any stage replaced an output leaves build/ whole: the status
    stays "built" (an Occlum.json typo must not make the previous build unusable)."""
    oc = Occlum(inst, capsys)
    oc.build()
    before = {p: p.read_bytes() for p in (inst / "build").rglob("*")
              if p.is_file() and ".state" not in p.parts}
    (inst / "Occlum.json").write_text((inst / "Occlum.json").read_text().replace('"300MB"', '"300XB"'))
    rc, _, err = oc("build", "--sgx-mode", "SIM")
    assert rc == 2 and "300XB" in err
    assert (inst / ".__occlum_status").read_text() == "built\n"
    for p, data in before.items():
        assert p.read_bytes() == data, p


@pytest.mark.slow
def test_killed_build_leaves_last_good_outputs(inst, capsys):
    oc = Occlum(inst, capsys)
    good = oc.build()
    with open(inst / "image/bin/big", "wb") as f:
        for _ in range(48):
            f.write(os.urandom(4 << 20))
    p = subprocess.Popen(BUILD, cwd=inst, stderr=subprocess.DEVNULL)
    objects = inst / "build/mount/__ROOT"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:
        if any(n.startswith(".tmp") for n in os.listdir(objects)):
            break
        time.sleep(0.005)
    assert p.poll() is None, "the build finished before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    mac = read_mac_file(inst / "build/mount/.ROOT_MAC")
    assert mac.hex() == good["image_mac"]  # the last good image, whole and verifiable
    verify_image(inst / "build/mount/__ROOT", mac)
    assert "/bin/big" not in {e.path for e in SefsReader(inst / "build/mount/__ROOT", mac).walk()}
    assert json.loads((inst / "build/report.json").read_text())["image_mac"] == good["image_mac"]
    rep = oc.build()  # the next build recovers
    assert rep["image_mac"] != good["image_mac"]
    rc, _, err = oc("verify")
    assert rc == 0, err


def test_leftover_temp_files_of_a_killed_write_are_removed(inst, capsys):
    oc = Occlum(inst, capsys)
    oc.build()
    stale = [inst / "build/mount/..ROOT_MAC.tmp4242", inst / "build/lib/.libocclum-libos.signed.so.tmp99"]
    for p in stale:
        p.write_bytes(b"half")
    oc.build()
    assert not any(p.exists() for p in stale)
