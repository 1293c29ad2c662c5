"""`occlum verify`: a fresh build verifies; each kind of difference is named, exit 3."""

from __future__ import annotations

import os

from pipeline_helpers import needs_native

from occlum_build import keys
from occlum_build.errors import EXIT_VERIFY

pytestmark = needs_native


def test_fresh_build_verifies(inst, occlum):
    occlum.build()
    rc, out, err = occlum("verify")
    assert rc == 0, err
    assert "Verified" in out and "image" in out and "initfs" in out


def test_changed_file_is_named(inst, occlum):
    occlum.build()
    (inst / "image/etc/app.conf").write_bytes(b"y" * 10000)
    rc, _, err = occlum("verify")
    assert rc == EXIT_VERIFY and "image/etc/app.conf: content differs" in err


def test_added_file_and_mode_change_are_named(inst, occlum):
    occlum.build()
    (inst / "image/bin/new").write_text("n")
    rc, _, err = occlum("verify")
    assert rc == EXIT_VERIFY and "image/bin/new is not in the built image" in err
    (inst / "image/bin/new").unlink()
    os.chmod(inst / "image/bin/hello.txt", 0o600)
    rc, _, err = occlum("verify")
    assert rc == EXIT_VERIFY and "image/bin/hello.txt: mode" in err


def test_initfs_change_is_named(inst, occlum):
    occlum.build()
    (inst / "initfs/etc/hosts").write_text("10.0.0.1 other\n")
    rc, _, err = occlum("verify")
    assert rc == EXIT_VERIFY and "initfs/etc/hosts" in err


def test_tampered_object_and_config(inst, occlum):
    occlum.build()
    objs = sorted((inst / "build/mount/__ROOT/objects").iterdir(), key=lambda p: p.stat().st_size)
    big = objs[-1]
    data = bytearray(big.read_bytes())
    data[len(data) // 2] ^= 1
    os.chmod(big, 0o644)
    big.write_bytes(bytes(data))
    rc, _, err = occlum("verify")
    assert rc == EXIT_VERIFY and "build/mount/__ROOT" in err
    occlum.build("-f")
    p = inst / "build/.Occlum_sys.json"
    p.write_bytes(p.read_bytes().replace(b"OCCLUM=yes", b"OCCLUM=no!"))
    rc, _, err = occlum("verify")
    assert rc == EXIT_VERIFY and ".Occlum_sys.json" in err


def test_encrypted_image_needs_the_right_key(inst, occlum, tmp_path):
    k1, k2 = tmp_path / "k1", tmp_path / "k2"
    keys.write_image_key(k1, b"\x11" * 16)
    keys.write_image_key(k2, b"\x22" * 16)
    occlum.build("--image-key", str(k1), "--buildin-image-key")
    rc, out, err = occlum("verify", "--image-key", str(k1))
    assert rc == 0, err
    rc, _, err = occlum("verify")
    assert rc != 0 and "--image-key" in err
    rc, _, err = occlum("verify", "--image-key", str(k2))
    assert rc == EXIT_VERIFY
