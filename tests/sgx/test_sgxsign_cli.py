"""occlum-sgx-sign and occlum gen-sign-key on real files; external signatures made by openssl."""

import json
import os
import shutil
import stat
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sgx_vectors import VECTORS

from occlum_build.cli import main as occlum_main
from occlum_build.cli.sgxsign import main
from occlum_build.errors import KeyFileError, OcclumError, VerifyError
from occlum_build.sgx import PemSigner, ToolSigner, load_signing_key, sign_enclave

H = VECTORS / "h0mur0"
MRENCLAVE = "6478d9e3e12396357aa6cce73c55b8ff54a6a5e6ed8161618a720a2c775e3ef9"
BASE = ["-enclave", str(H / "enclave.so"), "-config", str(H / "Enclave.config.xml")]
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


def write_key(path, bits=3072, e=3):
    k = rsa.generate_private_key(public_exponent=e, key_size=bits)
    path.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return k


def pubkey(tmp_path, key_path, name="pub.pem"):
    k = serialization.load_pem_private_key(key_path.read_bytes(), None)
    out = tmp_path / name
    out.write_bytes(k.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))
    return out


def test_sign_cli_identical(tmp_path, capsys):
    out = tmp_path / "e.signed.so"
    assert main(["sign", "-key", str(H / "Enclave_private_test.pem"), *BASE, "-out", str(out),
                 "-date", "20250927"]) == 0
    assert out.read_bytes() == (H / "enclave.signed.so").read_bytes()
    text = capsys.readouterr().out
    assert MRENCLAVE in text and "PRIVATE" not in text


@needs_openssl
def test_two_step_with_openssl(tmp_path):
    data, sig, out = tmp_path / "data.bin", tmp_path / "sig.bin", tmp_path / "cat.so"
    assert main(["gendata", *BASE, "-out", str(data), "-date", "20250927"]) == 0
    assert len(data.read_bytes()) == 256
    subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(H / "Enclave_private_test.pem"),
                    "-out", str(sig), str(data)], check=True)
    pub = pubkey(tmp_path, H / "Enclave_private_test.pem")
    assert main(["catsig", *BASE, "-key", str(pub), "-sig", str(sig), "-unsigned", str(data),
                 "-out", str(out)]) == 0
    assert out.read_bytes() == (H / "enclave.signed.so").read_bytes()

    # wrong public key: nothing written
    other = tmp_path / "other.pem"
    write_key(other)
    out2 = tmp_path / "cat2.so"
    assert main(["catsig", *BASE, "-key", str(pubkey(tmp_path, other, "o.pub")), "-sig", str(sig),
                 "-unsigned", str(data), "-out", str(out2)]) == 3
    assert not out2.exists()
    # signature over other bytes
    bad = bytearray(sig.read_bytes())
    bad[10] ^= 1
    (tmp_path / "bad.sig").write_bytes(bad)
    assert main(["catsig", *BASE, "-key", str(pub), "-sig", str(tmp_path / "bad.sig"), "-unsigned", str(data),
                 "-out", str(out2)]) == 3
    # unsigned data for a different config (body differs)
    tampered = bytearray(data.read_bytes())
    tampered[128 + 124] ^= 1  # ISVPRODID
    (tmp_path / "t.bin").write_bytes(tampered)
    assert main(["catsig", *BASE, "-key", str(pub), "-sig", str(sig), "-unsigned", str(tmp_path / "t.bin"),
                 "-out", str(out2)]) == 3
    assert not out2.exists()


def test_dump_json(capsys):
    assert main(["dump", "-enclave", str(H / "enclave.signed.so"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["mrenclave"] == MRENCLAVE and d["measurement_matches"] and d["signature_valid"]
    assert d["date"] == "2025-09-27" and d["debuggable"] and d["metadata_versions"] == ["1.5"]


def test_dump_older_sdk(capsys, tmp_path):
    """An enclave signed by SDK 2.13 (metadata 2.4/2.1/1.4): SIGSTRUCT read and measurement replayed."""
    css = tmp_path / "css.bin"
    assert main(["dump", "-enclave", str(VECTORS / "sdk213" / "enclave.signed.so"),
                 "-cssfile", str(css)]) == 0
    out = capsys.readouterr().out
    assert "18a37ad9fae5cf34cf98ccb0de00410f1191466a9040e9cfb83b2bc8ee473a62" in out
    assert "2.4, 2.1, 1.4" in out and "matches the file" in out
    assert len(css.read_bytes()) == 1808


def test_dump_detects_tampering(tmp_path, capsys):
    data = bytearray((H / "enclave.signed.so").read_bytes())
    data[0x2100] ^= 1  # a byte of .text
    p = tmp_path / "t.so"
    p.write_bytes(data)
    assert main(["dump", "-enclave", str(p)]) == 3
    assert "DOES NOT MATCH" in capsys.readouterr().out


@pytest.mark.parametrize("make,why,code", [
    (lambda t: write_key(t / "k.pem", 2048, 65537), "RSA-2048 key with exponent 65537", 2),
    (lambda t: write_key(t / "k.pem", 3072, 65537), "RSA-3072 key with exponent 65537", 2),
    (lambda t: (t / "k.pem").write_text("hello"), "not a PEM private key", 2),
])
def test_bad_keys(tmp_path, capsys, make, why, code):
    make(tmp_path)
    out = tmp_path / "o.so"
    assert main(["sign", "-key", str(tmp_path / "k.pem"), *BASE, "-out", str(out)]) == code
    err = capsys.readouterr().err
    assert why in err and str(tmp_path / "k.pem") in err and not out.exists()


@pytest.mark.parametrize("content,why", [
    (b"not an elf at all" * 10, "not an ELF file"),
    (b"\x7fELF\x01\x01\x01" + bytes(100), "not a 64-bit ELF"),
])
def test_bad_enclave_files(tmp_path, capsys, content, why):
    e = tmp_path / "e.so"
    e.write_bytes(content)
    out = tmp_path / "o.so"
    rc = main(["sign", "-key", str(H / "Enclave_private_test.pem"), "-enclave", str(e), "-out", str(out)])
    assert rc == 2 and why in capsys.readouterr().err and not out.exists()


def test_already_signed_and_bad_date(tmp_path, capsys):
    out = tmp_path / "o.so"
    args = ["sign", "-key", str(H / "Enclave_private_test.pem"), "-enclave", str(H / "enclave.signed.so"),
            "-config", str(H / "Enclave.config.xml"), "-out", str(out)]
    assert main(args) == 2 and "already signed" in capsys.readouterr().err
    assert main([*args, "-resign", "-date", "20250927"]) == 0
    assert out.read_bytes() == (H / "enclave.signed.so").read_bytes()
    assert main([*args, "-resign", "-date", "20251399"]) == 2


@needs_openssl
def test_tool_signer(tmp_path):
    key = H / "Enclave_private_test.pem"
    pub = pubkey(tmp_path, key)
    tool = tmp_path / "sign.sh"
    tool.write_text(f'#!/bin/sh\nexec openssl dgst -sha256 -sign {key} -out "$2" "$1"\n')
    tool.chmod(0o755)
    r = sign_enclave((H / "enclave.so").read_bytes(), (H / "Enclave.config.xml").read_bytes(),
                     ToolSigner(str(tool), pub), date=0x20250927)
    assert r.signed == (H / "enclave.signed.so").read_bytes()

    other = tmp_path / "other.pem"
    write_key(other)
    liar = tmp_path / "liar.sh"
    liar.write_text(f'#!/bin/sh\nexec openssl dgst -sha256 -sign {other} -out "$2" "$1"\n')
    liar.chmod(0o755)
    with pytest.raises(VerifyError, match="does not verify"):
        sign_enclave((H / "enclave.so").read_bytes(), b"<EnclaveConfiguration/>", ToolSigner(str(liar), pub))
    with pytest.raises(OcclumError, match="exit status 3") as ei:
        sign_enclave((H / "enclave.so").read_bytes(), b"<EnclaveConfiguration/>",
                     ToolSigner("sh -c 'exit 3' x", pub))
    assert ei.value.exit_code == 1


def test_gen_sign_key(tmp_path, capsys):
    p = tmp_path / "sk.pem"
    assert occlum_main.main(["gen-sign-key", str(p)]) == 0
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    out = capsys.readouterr().out
    assert "PRIVATE" not in out and "mrsigner:" in out
    k = load_signing_key(p)
    assert k.key_size == 3072 and k.public_key().public_numbers().e == 3
    assert occlum_main.main(["gen-sign-key", str(p)]) == 2
    assert PemSigner(p).public_key.public_numbers() == k.public_key().public_numbers()


def test_key_errors_name_the_file(tmp_path):
    with pytest.raises(KeyFileError, match="missing.pem: signing key file does not exist"):
        load_signing_key(tmp_path / "missing.pem")


def test_tool_signer_bad_outputs(tmp_path):
    pub = pubkey(tmp_path, H / "Enclave_private_test.pem")
    so, cfg = (H / "enclave.so").read_bytes(), (H / "Enclave.config.xml").read_bytes()
    with pytest.raises(VerifyError, match="returned 5 bytes"):
        sign_enclave(so, cfg, ToolSigner("sh -c 'printf hello > \"$2\"' x", pub))
    with pytest.raises(OcclumError, match="wrote no signature file"):
        sign_enclave(so, cfg, ToolSigner("true", pub))
    with pytest.raises(OcclumError, match="sign tool not found") as ei:
        sign_enclave(so, cfg, ToolSigner(str(tmp_path / "no-such-tool"), pub))
    assert ei.value.exit_code == 1
    with pytest.raises(KeyFileError, match="RSA-2048"):
        other = tmp_path / "o.pem"
        write_key(other, 2048, 3)
        ToolSigner("true", pubkey(tmp_path, other, "o.pub"))


@needs_openssl
def test_tool_signer_accepts_private_pem_for_public_half(tmp_path):
    key = H / "Enclave_private_test.pem"
    tool = f"sh -c 'exec openssl dgst -sha256 -sign {key} -out \"$2\" \"$1\"' x"
    r = sign_enclave((H / "enclave.so").read_bytes(), (H / "Enclave.config.xml").read_bytes(),
                     ToolSigner(tool, key), date=0x20250927)
    assert r.signed == (H / "enclave.signed.so").read_bytes()
