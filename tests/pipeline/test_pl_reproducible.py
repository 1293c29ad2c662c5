"""Same instance content at different paths, umasks and file times: same MACs, same MRENCLAVE,
and with a fixed key and SOURCE_DATE_EPOCH a byte-identical signed LibOS."""

from __future__ import annotations

import os
import re

from pipeline_helpers import Occlum, make_instance, needs_native

pytestmark = needs_native
HEX64 = re.compile(r"[0-9a-f]{64}")


def test_two_builds_same_measurements(tmp_path, capsys, monkeypatch):
    from occlum_build.sgx.signer import generate_signing_key

    key = tmp_path / "sign.pem"
    generate_signing_key(key)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    (tmp_path / "one").mkdir()
    (tmp_path / "two" / "deeper").mkdir(parents=True)
    a = make_instance(tmp_path / "one", "x")
    b = make_instance(tmp_path / "two" / "deeper", "y")
    for p in b.rglob("*"):  # other file times
        os.utime(p, (12345, 12345), follow_symlinks=False)
    reps, signed = [], []
    for inst, umask in ((a, 0o022), (b, 0o027)):
        old = os.umask(umask)
        try:
            reps.append(Occlum(inst, capsys).build("--sign-key", str(key)))
        finally:
            os.umask(old)
        signed.append((inst / "build/lib/libocclum-libos.signed.so").read_bytes())
    for k in ("image_mac", "initfs_mac", "conf_mac", "mrenclave", "mrsigner"):
        assert reps[0][k] == reps[1][k], k
    assert HEX64.fullmatch(reps[0]["mrenclave"]) and HEX64.fullmatch(reps[0]["mrsigner"])
    assert signed[0] == signed[1]


def test_dev_key_is_created_once_and_print_shows_measurements(inst, occlum):
    rep = occlum.build()
    key = inst / ".dev_sign_key.pem"
    assert key.is_file() and (key.stat().st_mode & 0o777) == 0o600
    pem = key.read_bytes()
    rep2 = occlum.build("-f")
    assert key.read_bytes() == pem and rep2["mrsigner"] == rep["mrsigner"]
    assert rep2["mrenclave"] == rep["mrenclave"]
    rc, out, err = occlum("print", "mrenclave")
    if rc == 0:  # needs the SIGSTRUCT reader of occlum_build.sgx
        assert out.strip() == rep["mrenclave"]
        rc, out, _ = occlum("print", "mrsigner")
        assert rc == 0 and out.strip() == rep["mrsigner"]
    # no private key material anywhere in build/
    body = b"".join(pem.splitlines()[1:-1])
    for p in (inst / "build").rglob("*"):
        if p.is_file():
            assert body[:40] not in p.read_bytes(), p


def test_sign_key_change_resigns_without_touching_images(inst, occlum, tmp_path):
    from occlum_build.sgx.signer import generate_signing_key

    rep = occlum.build()
    generate_signing_key(tmp_path / "k.pem")
    rep2 = occlum.build("--sign-key", str(tmp_path / "k.pem"))
    assert occlum.ran(rep2) == {"sign"}
    assert rep2["mrsigner"] != rep["mrsigner"] and rep2["mrenclave"] == rep["mrenclave"]


def test_sign_tool_two_step(inst, occlum, tmp_path):
    """--sign-tool: an external program signs the data file (here openssl, as an HSM would)."""
    import shutil
    import subprocess

    from occlum_build.sgx.signer import generate_signing_key

    if shutil.which("openssl") is None:
        import pytest

        pytest.skip("openssl not installed")
    priv = tmp_path / "hsm.pem"
    generate_signing_key(priv)
    pub = tmp_path / "hsm.pub.pem"
    subprocess.run(["openssl", "rsa", "-in", str(priv), "-pubout", "-out", str(pub)], check=True,
                   capture_output=True)
    tool = tmp_path / "signer.sh"
    tool.write_text(f'#!/bin/sh\nexec openssl dgst -sha256 -sign {priv} -out "$2" "$1"\n')
    tool.chmod(0o755)
    rep_tool = occlum.build("--sign-tool", str(tool), "--sign-key", str(pub))
    rep_key = occlum.build("--sign-key", str(priv), "-f")
    assert rep_tool["mrsigner"] == rep_key["mrsigner"] and rep_tool["mrenclave"] == rep_key["mrenclave"]
    bad = tmp_path / "bad.sh"
    bad.write_text('#!/bin/sh\nhead -c 384 /dev/zero > "$2"\n')
    bad.chmod(0o755)
    before = (inst / "build/lib/libocclum-libos.signed.so").read_bytes()
    rc, _, err = occlum("build", "--sgx-mode", "SIM", "--sign-tool", str(bad), "--sign-key", str(pub))
    assert rc != 0 and "does not verify" in err
    assert (inst / "build/lib/libocclum-libos.signed.so").read_bytes() == before
