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
    objs = sorted((p for p in (inst / "build/mount/__ROOT").iterdir() if p.name != "metadata"),
                  key=lambda p: p.stat().st_size)
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


def _css_offset(data: bytes) -> int:
    """File offset of the SIGSTRUCT in the signed LibOS (it starts with a fixed header)."""
    off = data.find(bytes.fromhex("06000000e10000000000010000000000"))
    assert off > 0
    return off


def _rewrite(path, data: bytes) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(data)


def test_tampered_signed_libos_fails_verify(inst, occlum):
    """The enclave check of `occlum verify` is strict: a bad signature, a measured byte
    changed, and a report naming another MRENCLAVE are each refused (exit 3)."""
    from occlum_build.sgx.sigstruct import SIGSTRUCT

    occlum.build()
    signed = inst / "build/lib/libocclum-libos.signed.so"
    good = signed.read_bytes()
    sig = _css_offset(good) + SIGSTRUCT.offset("signature")
    bad = bytearray(good)
    bad[sig + 7] ^= 1
    _rewrite(signed, bytes(bad))
    rc, _, err = occlum("verify")
    assert rc == EXIT_VERIFY and "SIGSTRUCT does not verify" in err and "libocclum-libos.signed.so" in err

    # A measured byte: the first byte of the .text section (loaded, EEXTENDed).
    import io

    from elftools.elf.elffile import ELFFile

    text = ELFFile(io.BytesIO(good)).get_section_by_name(".text")["sh_offset"]
    bad = bytearray(good)
    bad[text] ^= 0x80
    _rewrite(signed, bytes(bad))
    rc, _, err = occlum("verify")
    assert rc == EXIT_VERIFY and "measurement of the file does not match" in err

    _rewrite(signed, good)
    rc, _, err = occlum("verify")
    assert rc == 0, err
    report = inst / "build/report.json"
    rep = report.read_text()
    import json

    mre = json.loads(rep)["mrenclave"]
    report.write_text(rep.replace(mre, "0" * 64))
    rc, _, err = occlum("verify")
    assert rc == EXIT_VERIFY and "MRENCLAVE" in err
