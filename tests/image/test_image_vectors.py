"""The committed vectors: reproducible, readable, and every failure case reported as specified."""

from __future__ import annotations

import filecmp
import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from occlum_build.errors import VerifyError
from occlum_build.image import ImageError, ImageReader, read_mac_file, unprotect_config, verify_image
from occlum_build.image.protect import conf_mac
from occlum_build.keys import parse_hex16

VEC = Path(__file__).resolve().parents[1] / "vectors"
IMG = VEC / "image"
PC = VEC / "protected-config"
CASES = json.loads((IMG / "cases.json").read_text())


def _key(text):
    return None if text is None else parse_hex16(text, "vector")


def test_regenerating_gives_identical_files(tmp_path):
    subprocess.run([sys.executable, str(IMG / "make_vectors.py"), str(tmp_path)], check=True)
    for sub in ("image", "protected-config"):
        a, b = VEC / sub, tmp_path / sub
        gen = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
        committed = sorted(
            p.relative_to(a)
            for p in a.rglob("*")
            if p.is_file() and p.name not in ("README.md", "make_vectors.py")
        )
        assert gen == committed
        for rel in gen:
            assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


@pytest.mark.parametrize("name", ["integrity", "encrypted"])
def test_image_matches_manifest(name):
    man = json.loads((IMG / name / "manifest.json").read_text())
    mac = read_mac_file(IMG / name / "ROOT_MAC")
    assert man["mac"] == "-".join(f"{b:02x}" for b in mac)
    key = _key(man["key"])
    rep = verify_image(IMG / name / "image", mac, key=key)
    r = ImageReader(IMG / name / "image", mac, key)
    got = r.entries()
    assert [bytes.fromhex(e["path_hex"]) for e in man["entries"]] == [e.path for e in got]
    for want, e in zip(man["entries"], got, strict=True):
        assert int(want["mode"], 8) == e.mode and want["size"] == e.size
        if want["type"] == "file":
            assert hashlib.sha256(r.read(e.path)).hexdigest() == want["sha256"]
        if want["type"] == "symlink":
            assert e.target.decode() == want["target"]
    assert rep.files == sum(1 for e in man["entries"] if e["type"] == "file")


def test_no_plaintext_in_encrypted_image():
    man = json.loads((IMG / "encrypted" / "manifest.json").read_text())
    blob = b"".join(p.read_bytes() for p in (IMG / "encrypted" / "image").rglob("*") if p.is_file())
    for needle in (b"127.0.0.1 localhost", b"nowhere/at/all", b"leaf.txt", b"big.same", b"deep\n"):
        assert needle not in blob
    assert man["mode"] == "encrypted"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_failure_case(case):
    with pytest.raises(ImageError) as ei:
        verify_image(IMG / case["image"], _key(case["mac"]), key=_key(case["key"]))
    assert ei.value.kind == case["error"]
    assert ei.value.path == case["path"]
    assert isinstance(ei.value, VerifyError)


def test_partial_reads_verify_only_what_they_read():
    # A reader reading /bin/b4097 of the block-flip image succeeds; /lib/big block 0 too, block 1 fails.
    case = next(c for c in CASES if c["name"] == "integrity-block-flip")
    r = ImageReader(IMG / case["image"], _key(case["mac"]))
    assert len(r.read("/bin/b4097")) == 4097
    assert len(r.read("/lib/big", 0, 4096)) == 4096
    with pytest.raises(ImageError, match="block 1"):
        r.read("/lib/big", 4096, 10)


# --- an independent reading of the spec (no occlum_build code) -----------------------------


def _spec_hkdf(k, salt, info, n):
    return HKDF(hashes.SHA256(), n, salt or None, info).derive(k)


@pytest.mark.parametrize("name", ["integrity", "encrypted"])
def test_independent_spec_implementation(name):
    man = json.loads((IMG / name / "manifest.json").read_text())
    d = IMG / name / "image"
    meta = (d / "metadata").read_bytes()
    assert hashlib.sha256(meta).digest()[:16].hex("-") == man["mac"]
    key = _key(man["key"])
    if key:
        assert meta[:8] == b"OCBIMGE1"
        k_meta = _spec_hkdf(key, b"", b"occlum-build image v1 metadata", 16)
        p = AESGCM(k_meta).decrypt(meta[16:28], meta[28:], meta[:16])
    else:
        p = meta
    magic, ver, flags, bs, n, strsz = struct.unpack_from("<8sIIIIQ", p)
    assert (magic, ver, flags, bs, n) == (b"OCBIMG01", 1, 1 if key else 0, 4096, len(man["entries"]))
    strtab = p[64 + 96 * n :]
    assert len(strtab) == strsz
    for i, want in enumerate(man["entries"]):
        po, pl, typ, mode, size, to, root, fid = struct.unpack_from("<QIB3xI4xQQ32s16s8x", p, 64 + 96 * i)
        assert strtab[po : po + pl].hex() == want["path_hex"]
        assert typ == {"file": 1, "dir": 2, "symlink": 3}[want["type"]]
        if typ == 1 and size:
            obj = (d / "objects" / root.hex()).read_bytes()
            nb = -(-size // 4096)
            leaves = obj[-32 * nb :]
            assert hashlib.sha256(leaves).digest() == root
            sb = 4096 + (16 if key else 0)
            plain = b""
            for j in range(nb):
                s = obj[j * sb : min((j + 1) * sb, len(obj) - 32 * nb)]
                assert hashlib.sha256(s).digest() == leaves[32 * j : 32 * j + 32]
                if key:
                    kf = _spec_hkdf(key, fid, b"occlum-build image v1 file", 16)
                    s = AESGCM(kf).decrypt(struct.pack("<QI", j, 0), s, struct.pack("<QQ", j, size))
                plain += s
            assert hashlib.sha256(plain).hexdigest() == want["sha256"]
            if key:
                k_id = _spec_hkdf(key, b"", b"occlum-build image v1 file-id", 32)
                import hmac

                assert hmac.new(k_id, hashlib.sha256(plain).digest(), "sha256").digest()[:16] == fid


# --- protected config ----------------------------------------------------------------------


def test_protected_config_vectors():
    prot = (PC / "sys.json.protected").read_bytes()
    assert conf_mac(prot) == parse_hex16((PC / "conf_mac.txt").read_text(), "conf_mac.txt")
    for c in json.loads((PC / "cases.json").read_text()):
        data = (PC / c["file"]).read_bytes()
        if c["error"] is None:
            assert unprotect_config(data, c["file"]) == (PC / c["payload"]).read_bytes()
            continue
        with pytest.raises(VerifyError, match=c["error"]):
            unprotect_config(data, c["file"])
        with pytest.raises(VerifyError, match="conf MAC"):
            unprotect_config(data, c["file"], expected_mac=conf_mac(prot))
