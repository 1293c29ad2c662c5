"""`occlum build --occlum-dir DIR` refuses what is not a usable Occlum install, with one line
naming the file (fake_install.py makes the install)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from fake_install import VEC, VERSION, build, make_install, new_instance


@pytest.mark.parametrize("breakage,message", [
    ("no-header", "not an Occlum install: include/occlum_version.h is missing"),
    ("no-init", "not an Occlum install: build/bin/init is missing"),
    ("no-exec-server", "not an Occlum install: build/bin/occlum_exec_server is missing"),
    ("pal-version", "version mismatch: the install is 0.30.1 (occlum_version.h) but has "
                    "libocclum-pal_sim.so.0.30.0"),
    ("no-sim-libos", "not an Occlum install for SGX mode SIM: libocclum-libos_sim.so.0.30.1 is missing"),
    ("not-a-dir", "--occlum-dir: not a directory"),
])
def test_a_bad_install_is_one_line_naming_the_file(tmp_path: Path, breakage: str, message: str) -> None:
    fake = make_install(tmp_path / "opt-occlum")
    if breakage == "no-header":
        (fake / "include/occlum_version.h").unlink()
    elif breakage == "no-init":
        (fake / "build/bin/init").unlink()
    elif breakage == "no-exec-server":
        (fake / "build/bin/occlum_exec_server").unlink()
    elif breakage == "pal-version":
        lib = fake / "build/lib"
        os.rename(lib / "libocclum-pal_sim.so.0.30.1", lib / "libocclum-pal_sim.so.0.30.0")
    elif breakage == "no-sim-libos":
        (fake / "build/lib/libocclum-libos_sim.so.0.30.1").unlink()
    elif breakage == "not-a-dir":
        shutil.rmtree(fake)
        fake.write_text("x")
    inst = new_instance(tmp_path)
    r = build(inst, "--sgx-mode", "SIM", "--occlum-dir", str(fake))
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (inst / "build").exists() or not any((inst / "build").iterdir())  # nothing written


def test_a_libos_without_room_after_builtin_config_is_refused(tmp_path: Path) -> None:
    fake = make_install(tmp_path / "opt-occlum")
    libos = fake / f"build/lib/libocclum-libos_sim.so.{VERSION}"
    # The upstream objcopy vector whose .builtin_config is followed at once by another section.
    shutil.copy(VEC.parent / "builtin-config/nopad.so", libos)
    inst = new_instance(tmp_path)
    r = build(inst, "--sgx-mode", "SIM", "--occlum-dir", str(fake))
    assert r.returncode == 2, r.stderr
    assert str(libos) in r.stderr and "no room after .builtin_config" in r.stderr, r.stderr


@pytest.mark.parametrize("what", ["no-section", "unknown-sdk"])
def test_a_libos_the_build_cannot_use_is_refused(tmp_path: Path, what: str) -> None:
    fake = make_install(tmp_path / "opt-occlum")
    libos = fake / f"build/lib/libocclum-libos_sim.so.{VERSION}"
    if what == "no-section":  # an SDK 2.26 enclave of ours without .builtin_config
        shutil.copy(VEC.parent.parent / "sgx/h0mur0/enclave.so", libos)
        want = "no .builtin_config section"
    else:  # g_global_data.sdk_version of an SDK we have no profile for (2.19.100)
        data = bytearray(libos.read_bytes())
        at = data.find(bytes.fromhex("6400140002000000"))
        data[at:at + 8] = bytes.fromhex("6400130002000000")
        libos.write_bytes(bytes(data))
        want = "2.19.100"
    inst = new_instance(tmp_path)
    r = build(inst, "--sgx-mode", "SIM", "--occlum-dir", str(fake))
    assert r.returncode == 2, r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("Error")]
    assert len(err) == 1 and want in err[0] and str(libos.name) in err[0], r.stderr
    assert "Traceback" not in r.stderr
