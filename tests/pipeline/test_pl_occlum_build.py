"""`occlum build --occlum-dir DIR`: a build for a real Occlum install gives the build/ tree real
`occlum build` makes (tools/occlum_build.mk: file names, symlinks, formats), signed with the
SDK profile of the install's LibOS (fake_install.py makes the install)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_install import VEC, VERSION, build, make_install, new_instance, run_cli, tree

from occlum_build.image.sefs_reader import SefsReader
from occlum_build.keys import parse_hex16
from occlum_build.sgx.elf import update_builtin_config


@pytest.mark.parametrize("mode,suffix", [("SIM", "_sim"), ("HW", "")])
def test_build_for_a_real_install_makes_occlums_build_tree(tmp_path: Path, mode: str, suffix: str) -> None:
    fake = make_install(tmp_path / "opt-occlum")
    inst = new_instance(tmp_path)
    r = build(inst, "--sgx-mode", mode, "--occlum-dir", str(fake), "--json")
    assert r.returncode == 0, r.stderr
    libos = f"libocclum-libos{suffix}.so.{VERSION}"
    pal = f"libocclum-pal{suffix}.so.{VERSION}"
    b = str(fake / "build/bin")
    assert tree(inst / "build") == {
        ".Occlum_sys.json": "file", ".Occlum_sys.json.protected": "file", "Enclave.xml": "file",
        "bin": "dir", "bin/occlum-run": f"-> {b}/occlum-run",
        "bin/occlum_exec_client": f"-> {b}/occlum_exec_client",
        "bin/occlum_exec_server": f"-> {b}/occlum_exec_server",
        "image_config.json": "file",
        "initfs": "dir", "initfs/.ROOT_MAC": "file", "initfs/__ROOT": "dir",
        **{f"initfs/__ROOT/{n.name}": "file" for n in (inst / "build/initfs/__ROOT").iterdir()},
        "lib": "dir", f"lib/{libos}": "file", "lib/libocclum-libos.so.0": f"-> {libos}",
        "lib/libocclum-libos.so": "-> libocclum-libos.so.0", "lib/libocclum-libos.signed.so": "file",
        f"lib/{pal}": "file", "lib/libocclum-pal.so.0": f"-> {pal}",
        "lib/libocclum-pal.so": "-> libocclum-pal.so.0",
        "mount": "dir", "mount/.ROOT_MAC": "file", "mount/__ROOT": "dir",
        **{f"mount/__ROOT/{n.name}": "file" for n in (inst / "build/mount/__ROOT").iterdir()},
    }
    assert (inst / "run/mount/__ROOT").is_dir() and (inst / "run/initfs/__ROOT").is_dir()
    assert (inst / ".sgx_mode").read_text().strip() == mode
    # The LibOS copy is the install's, patched as objcopy --update-section does it.
    from occlum_build.image.protect import conf_mac
    from occlum_build.keys import format_hex16

    mac = conf_mac((inst / "build/.Occlum_sys.json.protected").read_bytes())
    assert (inst / "build/lib" / libos).read_bytes() == update_builtin_config(
        (fake / "build/lib" / libos).read_bytes(), format_hex16(mac).encode() + b"\n", where="t")
    assert (inst / "build/lib" / pal).read_bytes() == (fake / "build/lib" / pal).read_bytes()
    # Our Enclave.xml for the default Occlum.json is byte-identical to real Occlum's (the
    # vector's, from gen_internal_conf).
    assert (inst / "build/Enclave.xml").read_bytes() == (VEC / "default/Enclave.xml").read_bytes()
    # The init FS's /bin/init is the install's init.
    initfs_mac = parse_hex16((inst / "build/initfs/.ROOT_MAC").read_text(), where="initfs")
    reader = SefsReader(inst / "build/initfs/__ROOT", initfs_mac, None)
    assert reader.read("/bin/init") == (fake / "build/bin/init").read_bytes()
    rep = json.loads(r.stdout)
    assert rep["target"] == {"kind": "occlum", "occlum_dir": str(fake), "occlum_version": VERSION,
                             "sgx_mode": mode}
    # Signed with the install's Enclave.pem (real occlum build's default key): the vectors' key.
    assert rep["mrsigner"] == json.loads((VEC / "default/expected.json").read_text())["mrsigner"]
    p = run_cli("print", "mrenclave", cwd=inst)
    assert p.returncode == 0 and p.stdout.strip() == rep["mrenclave"], p.stderr
    v = run_cli("verify", cwd=inst)
    assert v.returncode == 0, v.stderr
    # Our SIM runtime refuses it, saying why.
    run = run_cli("run", "/bin/hello", cwd=inst)
    assert run.returncode == 4
    assert "built for real Occlum 0.30.1" in run.stderr and "SGX machine" in run.stderr
    # A rebuild is a no-op; the same inputs on another path give the same MRENCLAVE.
    r2 = build(inst, "--sgx-mode", mode, "--occlum-dir", str(fake), "--json")
    assert r2.returncode == 0, r2.stderr
    assert json.loads(r2.stdout)["mrenclave"] == rep["mrenclave"]
    assert not any(s["ran"] for n, s in json.loads(r2.stdout)["stages"].items() if n != "prepare")


def test_switching_target_is_a_clean_build(tmp_path: Path) -> None:
    fake = make_install(tmp_path / "opt-occlum")
    inst = new_instance(tmp_path)
    assert build(inst, "--sgx-mode", "SIM").returncode == 0
    sim_libos = inst / "build/lib/libocclum-libos.so"
    assert sim_libos.is_file() and not sim_libos.is_symlink()
    r = build(inst, "--sgx-mode", "SIM", "--occlum-dir", str(fake))
    assert r.returncode == 0, r.stderr
    assert "Target changed from the SIM runtime to Occlum 0.30.1" in r.stderr + r.stdout
    assert not (inst / "build/bin/occlum-fs").exists()  # nothing of the SIM target is left
    assert (inst / "build/lib/libocclum-libos.so").is_symlink()
    r = build(inst, "--sgx-mode", "SIM")
    assert r.returncode == 0, r.stderr
    assert "Target changed from Occlum 0.30.1" in r.stderr + r.stdout
    assert not (inst / "build/lib/libocclum-libos.so").is_symlink()
    assert run_cli("run", "/bin/hello", cwd=inst).returncode != 4


def test_occlum_dir_from_the_environment(tmp_path: Path) -> None:
    fake = make_install(tmp_path / "opt-occlum")
    inst = new_instance(tmp_path)
    r = build(inst, "--sgx-mode", "SIM", env={"OCCLUM_DIR": str(fake)})
    assert r.returncode == 0, r.stderr
    assert (inst / "build/bin/occlum-run").is_symlink()




def test_package_of_a_real_occlum_build_ships_what_occlum_package_ships(tmp_path: Path) -> None:
    """tools/occlum cmd_package: Occlum.json, build/bin (the symlinks into the install),
    the signed LibOS, build/lib/libocclum-pal.so*, both images, the protected config, initfs/,
    the empty run/ layer dirs, .__occlum_status and .sgx_mode; the same bytes twice."""
    import hashlib
    import tarfile

    fake = make_install(tmp_path / "opt-occlum")
    inst = new_instance(tmp_path)
    cfg = json.loads((inst / "Occlum.json").read_text())
    cfg["metadata"]["debuggable"] = False  # a release, as `occlum package` wants
    (inst / "Occlum.json").write_text(json.dumps(cfg, indent=4))
    assert build(inst, "--occlum-dir", str(fake)).returncode == 0  # HW, the default
    digests = []
    for _ in range(2):
        r = run_cli("package", "app.tar.gz", cwd=inst)
        assert r.returncode == 0, r.stderr
        digests.append(hashlib.sha256((inst / "app.tar.gz").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    with tarfile.open(inst / "app.tar.gz") as t:
        members = {m.name: m for m in t.getmembers()}
    names = {n.split("/", 1)[1] for n in members if "/" in n}

    def root(n: str) -> str:
        parts = n.split("/")
        return "/".join(parts[:2]) if parts[0] == "build" and len(parts) > 1 else parts[0]

    assert {root(n) for n in names} == {
        "Occlum.json", ".__occlum_status", ".sgx_mode", "initfs", "run", "build/bin",
        "build/lib", "build/initfs", "build/mount", "build/.Occlum_sys.json.protected"}
    assert {n for n in names if n.startswith("run")} == {
        "run", "run/mount", "run/mount/__ROOT", "run/initfs", "run/initfs/__ROOT"}  # empty dirs
    lib = sorted(n for n in names if n.startswith("build/lib/"))
    assert lib == ["build/lib/libocclum-libos.signed.so", "build/lib/libocclum-pal.so",
                   "build/lib/libocclum-pal.so.0", f"build/lib/libocclum-pal.so.{VERSION}"]
    b = str(fake / "build/bin")
    for prog in ("occlum-run", "occlum_exec_client", "occlum_exec_server"):
        m = members[f"app/build/bin/{prog}"]
        assert m.issym() and m.linkname == f"{b}/{prog}"
