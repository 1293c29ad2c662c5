"""`occlum build` end to end on real instances: outputs, incrementality, report, bad input."""

from __future__ import annotations

import json
import os
import re
import socket

import pytest
from pipeline_helpers import needs_native

from occlum_build import keys
from occlum_build.errors import EXIT_STATE, EXIT_USAGE, VerifyError
from occlum_build.image import SefsReader, read_mac_file

pytestmark = needs_native
HEX32 = re.compile(r"[0-9a-f]{32}")


def test_first_build_outputs_and_report(inst, occlum):
    rep = occlum.build()
    for k in ("image_mac", "initfs_mac", "conf_mac"):
        assert HEX32.fullmatch(rep[k]), k
    assert rep["image_mac"] == read_mac_file(inst / "build/mount/.ROOT_MAC").hex()
    assert json.loads((inst / "build/report.json").read_text()) == rep
    assert rep["image"]["files"] >= 2 and rep["sizes"]["image"] > 10000
    for f in ("Enclave.xml", "image_config.json", ".Occlum_sys.json", ".Occlum_sys.json.protected",
              "mount/__ROOT/metadata", "initfs/__ROOT/metadata", "lib/libocclum-pal.so"):
        assert (inst / "build" / f).is_file(), f
    assert (inst / ".__occlum_status").read_text() == "built\n"
    assert (inst / ".sgx_mode").read_text() == "SIM\n"
    assert (inst / "run/mount/__ROOT").is_dir() and (inst / "run/initfs/__ROOT").is_dir()
    sysj = json.loads((inst / "build/.Occlum_sys.json").read_text())
    assert keys.format_hex16(bytes.fromhex(rep["image_mac"])) in json.dumps(sysj)


def test_noop_and_config_only_change(inst, occlum):
    occlum.build()
    mac_ino = os.stat(inst / "build/mount/.ROOT_MAC").st_ino
    rep = occlum.build()
    assert occlum.ran(rep) == set()
    cfg = json.loads((inst / "Occlum.json").read_text())
    cfg["resource_limits"]["user_space_size"] = "400MB"
    (inst / "Occlum.json").write_text(json.dumps(cfg, indent=4))
    rep2 = occlum.build()
    assert "image" not in occlum.ran(rep2) and "initfs" not in occlum.ran(rep2)
    assert {"enclave_xml", "sys_json", "protect"} <= occlum.ran(rep2)
    assert os.stat(inst / "build/mount/.ROOT_MAC").st_ino == mac_ino  # image not rewritten
    assert rep2["image_mac"] == rep["image_mac"] and rep2["conf_mac"] != rep["conf_mac"]


def test_edit_with_mtime_reset_rebuilds_touch_does_not(inst, occlum):
    rep = occlum.build()
    f = inst / "image/bin/hello.txt"
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert occlum.ran(occlum.build()) == set()  # touch: nothing rebuilt
    f.write_text("HELLO\n")  # same size, mtime reset
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    rep2 = occlum.build()
    assert "image" in occlum.ran(rep2) and rep2["image_mac"] != rep["image_mac"]
    assert rep2["image"]["objects_written"] == 1


def test_force_rebuilds_everything(inst, occlum):
    occlum.build()
    rep = occlum.build("-f")
    assert {"enclave_xml", "image_config", "image", "initfs", "sys_json", "protect",
            "runtime"} <= occlum.ran(rep)


def test_sgx_mode_change_forces_clean_build(inst, occlum):
    occlum.build()
    (inst / "build/stray").write_text("left over")
    rc, out, err = occlum("build", "--sgx-mode", "HW", "--json")
    assert rc == 0, err
    assert "SGX mode changed from SIM to HW" in err
    assert not (inst / "build/stray").exists()
    assert (inst / ".sgx_mode").read_text() == "HW\n"
    assert "image" in occlum.ran(json.loads(out))


@pytest.mark.parametrize("argv", [("-f",), ("--sgx-mode", "HW")])
def test_clean_build_with_a_bad_config_keeps_the_last_good_outputs(inst, occlum, argv):
    rep = occlum.build()
    before = sorted(p.relative_to(inst) for p in (inst / "build").rglob("*"))
    signed = (inst / "build/lib/libocclum-libos.signed.so").read_bytes() if "mrenclave" in rep else None
    cfg = inst / "Occlum.json"
    cfg.write_text(cfg.read_text().replace('"300MB"', '"300XB"'))
    rc, _, err = occlum("build", *argv)
    assert rc == EXIT_USAGE and "300XB" in err, err
    assert sorted(p.relative_to(inst) for p in (inst / "build").rglob("*")) == before
    if signed is not None:
        assert (inst / "build/lib/libocclum-libos.signed.so").read_bytes() == signed
    assert json.loads((inst / "build/report.json").read_text())["image_mac"] == rep["image_mac"]


def test_tampered_output_is_rebuilt(inst, occlum):
    occlum.build()
    good = (inst / "build/Enclave.xml").read_bytes()
    (inst / "build/Enclave.xml").write_bytes(good.replace(b"<", b"[", 1))
    rep = occlum.build()
    assert "enclave_xml" in occlum.ran(rep)
    assert (inst / "build/Enclave.xml").read_bytes() == good


def test_image_key_change_rebuilds_without_force(inst, occlum, tmp_path):
    k1, k2 = tmp_path / "k1", tmp_path / "k2"
    keys.write_image_key(k1, b"\x01" * 16)
    keys.write_image_key(k2, b"\x02" * 16)
    plain = occlum.build()
    enc1 = occlum.build("--image-key", str(k1))
    assert "image" in occlum.ran(enc1) and enc1["image"]["encrypted"] is True
    assert enc1["image_mac"] != plain["image_mac"]
    assert json.loads((inst / "build/image_config.json").read_text())["image_type"] == "encrypted"
    assert occlum.ran(occlum.build("--image-key", str(k1))) == set()
    rc, out, err = occlum("build", "--sgx-mode", "SIM", "--json", "--image-key", str(k2))
    assert rc == 0 and "image key changed" in err
    enc2 = json.loads(out)
    assert "image" in occlum.ran(enc2) and enc2["image_mac"] != enc1["image_mac"]
    # the image is readable with the new key only
    list(SefsReader(inst / "build/mount/__ROOT", bytes.fromhex(enc2["image_mac"]), b"\x02" * 16).walk())
    with pytest.raises(VerifyError):
        SefsReader(inst / "build/mount/__ROOT", bytes.fromhex(enc2["image_mac"]), b"\x01" * 16)
    # no key material in the report, the state dir or the initfs (without --buildin-image-key)
    for p in (inst / "build").rglob("*"):
        if p.is_file():
            assert keys.format_hex16(b"\x02" * 16).encode() not in p.read_bytes(), p


def test_buildin_image_key_goes_into_the_initfs_image_not_the_users_initfs(inst, occlum, tmp_path):
    k = tmp_path / "k"
    keys.write_image_key(k, b"\x07" * 16)
    before = sorted(str(p.relative_to(inst)) for p in (inst / "initfs").rglob("*"))
    rep = occlum.build("--image-key", str(k), "--buildin-image-key")
    after = sorted(str(p.relative_to(inst)) for p in (inst / "initfs").rglob("*"))
    assert before == after  # the user's initfs/ is not touched
    r = SefsReader(inst / "build/initfs/__ROOT", bytes.fromhex(rep["initfs_mac"]))
    names = {e.path.lstrip("/") for e in r.walk()}
    assert "etc/image_key" in names and "etc/image_config.json" in names
    assert not (inst / "build/.state/initfs-src/etc/image_key").exists()
    rep2 = occlum.build("--image-key", str(k))  # without: the key leaves the initfs
    r2 = SefsReader(inst / "build/initfs/__ROOT", bytes.fromhex(rep2["initfs_mac"]))
    names2 = {e.path.lstrip("/") for e in r2.walk()}
    assert "etc/image_key" not in names2


@pytest.mark.parametrize("content,why", [(b"", "47 characters"), (b"zz" + b"-00" * 15, "hex"),
                                         (b"\xff\xfe", "not text")])
def test_malformed_image_key_is_rejected(inst, occlum, tmp_path, content, why):
    k = tmp_path / "bad.key"
    k.write_bytes(content)
    rc, out, err = occlum("build", "--sgx-mode", "SIM", "--image-key", str(k))
    assert rc == EXIT_USAGE and str(k) in err and why in err
    assert "Traceback" not in err and not (inst / "build/report.json").exists()


def test_missing_key_file(inst, occlum, tmp_path):
    rc, _, err = occlum("build", "--sgx-mode", "SIM", "--image-key", str(tmp_path / "nope"))
    assert rc == EXIT_USAGE and "does not exist" in err


def test_special_files_in_image_are_skipped_with_a_warning(inst, occlum, caplog):
    """As sefs-cli does (the image must be the one real Occlum would build), FIFOs and
    sockets are left out, each named in a warning."""
    good = occlum.build()
    os.mkfifo(inst / "image/bin/pipe")
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(inst / "image/tmp/sock"))
        rep = occlum.build()
    finally:
        s.close()
    assert "/bin/pipe: a FIFO, not stored in the image" in caplog.text
    assert "/tmp/sock: a socket, not stored in the image" in caplog.text
    assert rep["image_mac"] == good["image_mac"]  # the same image: times are not stored
    names = {e.path for e in SefsReader(inst / "build/mount/__ROOT", bytes.fromhex(rep["image_mac"])).walk()}
    assert "/bin/pipe" not in names and "/tmp/sock" not in names and "/bin" in names
    (inst / "image/bin/pipe").unlink()
    (inst / "image/tmp/sock").unlink()
    assert occlum.build()["image_mac"] == good["image_mac"]


def test_special_file_in_initfs_names_the_users_path(inst, occlum):
    os.mkfifo(inst / "initfs/etc/pipe")
    rc, _, err = occlum("build", "--sgx-mode", "SIM")
    assert rc == EXIT_USAGE and str(inst / "initfs/etc/pipe") in err


def test_corrupt_state_dir_and_manifest_are_discarded(inst, occlum, caplog):
    good = occlum.build()
    state = inst / "build/.state"
    (state / "doit.sqlite").write_bytes(b"garbage" * 1000)
    rc, out, err = occlum("build", "--sgx-mode", "SIM", "--json")
    assert rc == 0 and "discarding the build state" in caplog.text
    assert json.loads(out)["image_mac"] == good["image_mac"]
    for f in (state / "image").iterdir():
        f.write_bytes(b"\x00garbage")
    (state / "hashes.json").write_text("[1,2")
    (inst / "image/bin/hello.txt").write_text("changed\n")
    rep = occlum.build()
    assert rep["image_mac"] != good["image_mac"]
    (inst / "image/bin/hello.txt").write_text("hello\n")
    assert occlum.build()["image_mac"] == good["image_mac"]


def test_not_an_instance(tmp_path, capsys):
    from pipeline_helpers import Occlum

    rc, _, err = Occlum(tmp_path, capsys)("build")
    assert rc == EXIT_STATE and "not an Occlum instance" in err


def test_bad_config_is_one_line(inst, occlum):
    (inst / "Occlum.json").write_text('{"resource_limits": ')
    rc, _, err = occlum("build", "--sgx-mode", "SIM")
    assert rc == EXIT_USAGE and "Occlum.json" in err and "Traceback" not in err


def test_missing_image_dir_is_a_clear_error(inst, occlum):
    import shutil

    shutil.rmtree(inst / "image")
    rc, _, err = occlum("build", "--sgx-mode", "SIM")
    assert rc == EXIT_STATE and "image" in err and "copy_bom" in err


def test_a_users_initfs_image_key_never_reaches_the_init_fs(inst, occlum, caplog):
    (inst / "initfs/etc/image_key").write_text(keys.format_hex16(b"\x09" * 16) + "\n")
    rep = occlum.build()
    assert "left out of the init FS" in caplog.text
    r = SefsReader(inst / "build/initfs/__ROOT", bytes.fromhex(rep["initfs_mac"]))
    assert "/etc/image_key" not in {e.path for e in r.walk()}
    rc, _, err = occlum("verify")
    assert rc == 0, err


def test_normalize_modes_gives_the_same_mrenclave_under_any_umask(tmp_path, capsys):
    """Two checkouts of one tree, one under umask 022 and one under 077 (files 0600, dirs 0700,
    one script 0700): as they are, the MACs differ (Occlum's behaviour); with
    --normalize-modes they are the same, and the image stores 0755/0644/0755."""
    from pipeline_helpers import Occlum, make_instance

    reps = {}
    for name, fmode, dmode, xmode in (("a", 0o644, 0o755, 0o755), ("b", 0o600, 0o700, 0o700)):
        inst = make_instance(tmp_path, name)
        app = inst / "image" / "app"
        app.mkdir()
        (app / "data.txt").write_text("data\n")
        (app / "run.sh").write_text("#!/bin/sh\necho hi\n")
        os.chmod(app / "data.txt", fmode)
        os.chmod(app / "run.sh", xmode)
        os.chmod(app, dmode)
        o = Occlum(inst, capsys)
        plain = o.build()
        norm = o.build("--normalize-modes")
        # The option alone rebuilds the image; its MAC changes only where a mode does.
        assert o.ran(norm) >= ({"image"} if name == "a" else {"image", "sys_json", "sign"})
        assert o.ran(o.build("--normalize-modes")) == set()  # and is then up to date
        rc, out, err = o("verify")
        assert rc == 0, err
        reps[name] = (plain, norm)
        r = SefsReader(inst / "build/mount/__ROOT", read_mac_file(inst / "build/mount/.ROOT_MAC"))
        modes = {e.path: e.mode & 0o777 for e in r.walk()}
        assert (modes["/app"], modes["/app/data.txt"], modes["/app/run.sh"]) == (0o755, 0o644, 0o755)
    assert reps["a"][0]["image_mac"] != reps["b"][0]["image_mac"]
    assert reps["a"][1]["image_mac"] == reps["b"][1]["image_mac"]
    # The same image MAC, Occlum.json and key give the same MRENCLAVE (dev keys differ per
    # instance, so compare the measurement, not MRSIGNER).
    assert reps["a"][1]["mrenclave"] == reps["b"][1]["mrenclave"]
