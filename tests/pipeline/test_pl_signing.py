"""The signing stage as wired into `occlum build`: SIGSTRUCT fields from Occlum.json, bad keys,
the native runtime missing, progress output."""

from __future__ import annotations

import io
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pipeline_helpers import needs_native

from occlum_build.errors import EXIT_STATE, EXIT_USAGE
from occlum_build.sgx.dump import dump_enclave

pytestmark = needs_native


def _dump(inst):
    return dump_enclave((inst / "build/lib/libocclum-libos.signed.so").read_bytes())


def test_release_metadata_shows_in_the_sigstruct(inst, occlum):
    rep = occlum.build()
    d = _dump(inst)
    assert d.debuggable is True and d.isv_prod_id == 0 and d.isv_svn == 0
    assert d.mrenclave == rep["mrenclave"] and d.mrsigner == rep["mrsigner"]
    assert d.signature_valid and d.replayed_mrenclave == d.mrenclave
    cfg = json.loads((inst / "Occlum.json").read_text())
    cfg["metadata"].update(debuggable=False, product_id=7, version_number=3)
    (inst / "Occlum.json").write_text(json.dumps(cfg, indent=4))
    rep2 = occlum.build()
    d2 = _dump(inst)
    assert d2.debuggable is False and d2.isv_prod_id == 7 and d2.isv_svn == 3
    assert rep2["mrenclave"] == d2.mrenclave
    rc, out, _ = occlum("print", "mrenclave")
    assert rc == 0 and out.strip() == rep2["mrenclave"]
    rc, out, _ = occlum("print", "mrsigner")
    assert rc == 0 and out.strip() == rep2["mrsigner"]


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.mark.parametrize("make,why", [
    (lambda: _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "RSA-2048"),
    (lambda: _pem(ec.generate_private_key(ec.SECP256R1())), "not an RSA key"),
    (lambda: b"-----BEGIN RSA PRIVATE KEY-----\nnot base64\n-----END RSA PRIVATE KEY-----\n", ""),
])
def test_bad_sign_key_is_one_line_and_nothing_written(inst, occlum, tmp_path, make, why):
    good = occlum.build()
    signed = (inst / "build/lib/libocclum-libos.signed.so").read_bytes()
    key = tmp_path / "bad.pem"
    key.write_bytes(make())
    rc, _, err = occlum("build", "--sgx-mode", "SIM", "--sign-key", str(key))
    assert rc == EXIT_USAGE and str(key) in err and why in err and "Traceback" not in err
    assert (inst / "build/lib/libocclum-libos.signed.so").read_bytes() == signed
    assert json.loads((inst / "build/report.json").read_text())["mrsigner"] == good["mrsigner"]


def test_missing_native_runtime(inst, occlum, tmp_path, monkeypatch):
    monkeypatch.setenv("OCCLUM_NATIVE_DIR", str(tmp_path / "nothing"))
    rc, _, err = occlum("build", "--sgx-mode", "SIM")
    assert rc == EXIT_STATE and "make -C libos" in err


def test_progress_on_a_terminal(inst):
    from occlum_build.pipeline.graph import BuildOptions
    from occlum_build.pipeline.run import run_build

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    (inst / "image/big").write_bytes(b"\1" * (3 << 20))
    out = Tty()
    run_build(inst, BuildOptions(sgx_mode="SIM"), out=out)
    text = out.getvalue()
    assert "\r  image: 100%" in text and "MiB" in text
    line = text[text.index("\r  image: 100%"):]
    assert line.split("\n", 1)[1].startswith("Building the initfs"), repr(text)  # the line was ended
    assert "Building the image..." in text and "Signing the enclave..." in text
