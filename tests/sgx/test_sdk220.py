"""The SDK 2.20 signer profile against Occlum's fork of sgx_sign (occlum/linux-sgx@cd4e96fd,
2.20.100.4): tests/vectors/occlum-interop/signing-sdk220 (UPSTREAM-README.md there), an
SGX1-only config (default/) and an EDMM config (edmm/: metadata 3.0 followed by compat 1.4,
the fork's patch 64e8e0c9).  Also the 2.21 profile, the refusal of other SDK versions and of
a note size that does not match the enclave's SDK."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import synth
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from occlum_build.cli.sgxsign import main
from occlum_build.errors import ConfigError
from occlum_build.sgx import EnclaveError, PemSigner, dump_enclave, gendata, sign_enclave
from occlum_build.sgx import metadata as M
from occlum_build.sgx.dump import read_metadata, replay_mrenclave
from occlum_build.sgx.elf import parse_enclave
from occlum_build.sgx.profiles import SDK_2_20, SDK_2_21, global_data_offset
from occlum_build.sgx.sigstruct import SIGSTRUCT

D = Path(__file__).resolve().parent.parent / "vectors" / "occlum-interop" / "signing-sdk220"
KEY = D / "signing_key.pem"
CONFIGS = ["default", "edmm"]
DATE = 0x20250115
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


def expected(cfg: str) -> dict:
    return json.loads((D / cfg / "expected.json").read_text())


@pytest.fixture(scope="module")
def key():
    return PemSigner(KEY)


@pytest.fixture(scope="module")
def unsigned() -> bytes:
    return (D / "enclave.so").read_bytes()


def with_sdk_version(so: bytes, version: int) -> bytes:
    off = global_data_offset(parse_enclave(so))
    return so[:off] + version.to_bytes(8, "little") + so[off + 8:]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sign_byte_identical(unsigned, key, cfg):
    exp = expected(cfg)
    r = sign_enclave(unsigned, (D / cfg / "Enclave.xml").read_bytes(), key, date=DATE)
    assert r.sdk == "2.20.100"
    assert r.mrenclave.hex() == exp["mrenclave"] and r.mrsigner.hex() == exp["mrsigner"]
    assert r.sigstruct == (D / cfg / "sigstruct.bin").read_bytes()
    assert r.signed == (D / cfg / "enclave.signed.so").read_bytes()
    mds, _ = read_metadata(r.signed)
    assert [hex(md.version) for md in mds] == exp["metadata_versions"]
    assert [hex(int(md.header["size"])) for md in mds] == exp["metadata_sizes"]
    assert [hex(int(md.header["enclave_size"])) for md in mds] == exp["enclave_size"]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_gendata_external_signature_catsig(unsigned, cfg, tmp_path, capsys):
    """gendata = sigdata.bin; signed elsewhere (the cryptography library, as an HSM would);
    catsig writes the same file as sgx_sign."""
    xml = D / cfg / "Enclave.xml"
    data, sig, out = tmp_path / "data.bin", tmp_path / "sig.bin", tmp_path / "out.so"
    assert gendata(unsigned, xml.read_bytes(), date=DATE) == (D / cfg / "sigdata.bin").read_bytes()
    assert main(["gendata", "-enclave", str(D / "enclave.so"), "-config", str(xml), "-out", str(data),
                 "-date", "20250115"]) == 0
    assert data.read_bytes() == (D / cfg / "sigdata.bin").read_bytes()
    priv = serialization.load_pem_private_key(KEY.read_bytes(), None)
    sig.write_bytes(priv.sign(data.read_bytes(), padding.PKCS1v15(), hashes.SHA256()))  # type: ignore[union-attr]
    pub = tmp_path / "pub.pem"
    pub.write_bytes(priv.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    capsys.readouterr()
    assert main(["catsig", "-enclave", str(D / "enclave.so"), "-config", str(xml), "-key", str(pub),
                 "-sig", str(sig), "-unsigned", str(data), "-out", str(out)]) == 0
    assert out.read_bytes() == (D / cfg / "enclave.signed.so").read_bytes()
    text = capsys.readouterr().out
    assert expected(cfg)["mrenclave"] in text and expected(cfg)["mrsigner"] in text


@needs_openssl
@pytest.mark.parametrize("cfg", CONFIGS)
def test_cli_sign_and_openssl_two_step(cfg, tmp_path, capsys):
    xml = D / cfg / "Enclave.xml"
    base = ["-enclave", str(D / "enclave.so"), "-config", str(xml)]
    out = tmp_path / "signed.so"
    assert main(["sign", "-key", str(KEY), *base, "-out", str(out), "-date", "20250115"]) == 0
    assert out.read_bytes() == (D / cfg / "enclave.signed.so").read_bytes()
    data, sig, cat = tmp_path / "data.bin", tmp_path / "sig.bin", tmp_path / "cat.so"
    assert main(["gendata", *base, "-out", str(data), "-date", "20250115"]) == 0
    subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(KEY), "-out", str(sig), str(data)], check=True)
    assert main(["catsig", *base, "-key", str(KEY), "-sig", str(sig), "-unsigned", str(data),
                 "-out", str(cat)]) == 2  # a private key where the public one is expected
    pub = tmp_path / "pub.pem"
    subprocess.run(["openssl", "pkey", "-in", str(KEY), "-pubout", "-out", str(pub)], check=True)
    assert main(["catsig", *base, "-key", str(pub), "-sig", str(sig), "-unsigned", str(data),
                 "-out", str(cat)]) == 0
    assert cat.read_bytes() == (D / cfg / "enclave.signed.so").read_bytes()


def parse_intel_dump(text: str) -> list[dict[str, int | bytes]]:
    """sgx_sign -dumpfile: one dict per metadata ("metadata->a.b: 0x.." and hex byte blocks)."""
    out: list[dict] = []
    cur: dict | None = None
    name = None
    for line in text.splitlines():
        m = re.fullmatch(r"metadata->([\w.]+):(?: (0x[0-9a-f]+))?\s*", line)
        if m:
            if m.group(1) == "magic_num":
                cur = {}
                out.append(cur)
            assert cur is not None
            name = m.group(1)
            cur[name] = int(m.group(2), 16) if m.group(2) else b""
        elif line.startswith("mrsigner->value:"):
            cur, name = {}, "mrsigner"
            out.append({"mrsigner": b""})
            cur = out[-1]
        elif line.startswith("0x") and cur is not None and name is not None:
            cur[name] += bytes(int(x, 16) for x in line.split())
        else:
            name = None
    return out


@pytest.mark.parametrize("cfg", CONFIGS)
def test_dump_matches_sgx_sign_dumpfile(cfg, tmp_path):
    """Our dump agrees with sgx_sign's -dumpfile on every metadata header field and every SIGSTRUCT
    field the dump reports, for each metadata; each metadata replays to MRENCLAVE."""
    data = (D / cfg / "enclave.signed.so").read_bytes()
    intel = parse_intel_dump((D / cfg / "metadata_dump.txt").read_text())
    *metas, signer = intel
    info = dump_enclave(data)
    assert info.signature_valid and info.measurement_matches
    assert bytes.fromhex(info.mrsigner) == signer["mrsigner"]
    assert len(info.metadata) == len(metas)
    mds, elf = read_metadata(data)
    for ours, theirs, md in zip(info.metadata, metas, mds, strict=True):
        for k in ("version", "size", "tcs_policy", "ssa_frame_size", "max_save_buffer_size",
                  "desired_misc_select", "enclave_size"):
            assert ours[k] == theirs[k], k
        assert ours["attributes_flags"] == theirs["attributes.flags"]
        assert ours["attributes_xfrm"] == theirs["attributes.xfrm"]
        assert theirs["enclave_css.body.enclave_hash.m"].hex() == info.mrenclave
        assert replay_mrenclave(data, md, elf).hex() == info.mrenclave
        assert md.css == mds[0].css
    t = metas[0]
    assert int(info.date.replace("-", ""), 16) == t["enclave_css.header.date"]
    assert (info.misc_select, info.misc_mask) == (t["enclave_css.body.misc_select"],
                                                  t["enclave_css.body.misc_mask"])
    assert info.attributes_flags == t["enclave_css.body.attributes.flags"]
    assert info.attributes_xfrm == t["enclave_css.body.attributes.xfrm"]
    assert info.attributes_mask_flags == t["enclave_css.body.attribute_mask.flags"]
    assert info.attributes_mask_xfrm == t["enclave_css.body.attribute_mask.xfrm"]
    assert info.isv_prod_id == t["enclave_css.body.isv_prod_id"]
    assert info.isv_svn == t["enclave_css.body.isv_svn"]
    css = mds[0].css
    assert info.vendor == t["enclave_css.header.module_vendor"]
    assert SIGSTRUCT.get(css, "header") == t["enclave_css.header.header"]
    assert SIGSTRUCT.get(css, "header2") == t["enclave_css.header.header2"]
    assert SIGSTRUCT.get(css, "type") == t["enclave_css.header.type"]
    assert SIGSTRUCT.get(css, "swdefined") == t["enclave_css.header.hw_version"]
    assert SIGSTRUCT.get(css, "exponent").to_bytes(4, "little") == t["enclave_css.key.exponent"]
    assert SIGSTRUCT.get(css, "modulus") == t["enclave_css.key.modulus"]
    assert SIGSTRUCT.get(css, "signature") == t["enclave_css.key.signature"]
    assert SIGSTRUCT.get(css, "q1") == t["enclave_css.buffer.q1"]
    assert SIGSTRUCT.get(css, "q2") == t["enclave_css.buffer.q2"]
    css_file = tmp_path / "c"
    assert main(["dump", "-enclave", str(D / cfg / "enclave.signed.so"), "-cssfile", str(css_file)]) == 0
    assert css_file.read_bytes() == (D / cfg / "sigstruct.bin").read_bytes()


@pytest.mark.parametrize("cfg", CONFIGS)
def test_sdk221_profile(unsigned, key, cfg):
    """2.21.100 (Occlum 0.31): sgx_sign 2.21 = 2.20 but for the version, so the signed file is the
    2.20 vector with the same sdk_version byte changed (the measured template has sdk_version 0)."""
    so = with_sdk_version(unsigned, SDK_2_21.sdk_version)
    r = sign_enclave(so, (D / cfg / "Enclave.xml").read_bytes(), key, date=DATE)
    assert r.sdk == "2.21.100" and r.mrenclave.hex() == expected(cfg)["mrenclave"]
    assert r.signed == with_sdk_version((D / cfg / "enclave.signed.so").read_bytes(), SDK_2_21.sdk_version)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "occlum_build.cli.sgxsign", *args], capture_output=True,
                          text=True)


def test_unknown_sdk_version_refused(unsigned, tmp_path):
    e = tmp_path / "e.so"
    e.write_bytes(with_sdk_version(unsigned, 0x200160064))  # 2.22.100
    out = tmp_path / "o.so"
    for args in (["sign", "-key", str(KEY)], ["gendata"]):
        p = run_cli(*args, "-enclave", str(e), "-config", str(D / "default" / "Enclave.xml"),
                    "-out", str(out))
        assert p.returncode == 2 and not out.exists() and p.stdout == ""
        assert p.stderr == (f"Error: {e}: g_global_data.sdk_version is 0x200160064 (2.22.100); this signer "
                            "supports SDK 2.20.100, 2.21.100 and 2.26.100\n")


def test_note_size_must_match_the_sdk(tmp, key):
    so = synth.build(tmp, "v220n6000", synth.TEXT, synth.gdata(0x200140064, size=1760), synth.note(0x6000))
    with pytest.raises(EnclaveError, match=r"\.note\.sgxmeta holds 0x6000 bytes, but an SDK 2\.20\.100 "
                                           r"enclave \(g_global_data\.sdk_version\) has 0x5000"):
        sign_enclave(so, b"<EnclaveConfiguration/>", key)
    so = synth.build(tmp, "v226n5000", synth.TEXT, synth.gdata(), synth.note(0x5000))
    with pytest.raises(EnclaveError, match=r"holds 0x5000 bytes, but an SDK 2\.26\.100 enclave .* 0x6000"):
        gendata(so, b"<EnclaveConfiguration/>")


def test_note_size_cli_message(tmp, tmp_path):
    so = tmp_path / "e.so"
    so.write_bytes(synth.build(tmp, "v226n5000", synth.TEXT, synth.gdata(), synth.note(0x5000)))
    p = run_cli("gendata", "-enclave", str(so), "-out", str(tmp_path / "d"))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert "holds 0x5000 bytes, but an SDK 2.26.100 enclave" in p.stderr


def test_fips_elements_unknown_to_sdk220(unsigned):
    with pytest.raises(ConfigError, match="unknown element <EnableIPPFIPS>: SDK 2.20.100 sgx_sign has no"):
        gendata(unsigned, b"<EnclaveConfiguration><EnableIPPFIPS>0</EnableIPPFIPS></EnclaveConfiguration>")


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("synth220")


def xml(**kw) -> bytes:
    return ("<EnclaveConfiguration>" + "".join(f"<{k}>{v}</{k}>" for k, v in kw.items())
            + "</EnclaveConfiguration>").encode()


@pytest.mark.parametrize("cfg,versions", [
    (dict(), ["1.4"]),
    (dict(MiscSelect=1, MiscMask="0xFFFFFFFE", HeapInitSize="0x10000"), ["3.0", "1.4"]),  # both
    (dict(MiscSelect=1, MiscMask="0xFFFFFFFF", StackMinSize="0x4000"), ["3.0", "1.4"]),  # SGX2 only: + compat
    (dict(ELRangeSize="0x100000000", ELRangeStartAddress="0x100000000", EnclaveImageAddress="0x100400000"),
     ["11.4"]),
    (dict(MiscSelect=1, MiscMask="0xFFFFFFFE", HeapInitSize="0x10000", ELRangeSize="0x100000000",
          ELRangeStartAddress="0x100000000", EnclaveImageAddress="0x100400000"), ["13.0", "11.4"]),
])
def test_sdk220_paths_without_vector(tmp, key, cfg, versions):
    """Versions chosen and replay for 2.20 paths the vectors do not cover (ELRANGE: the entry is
    found through a data_directory_t at the start of data[])."""
    r = sign_enclave(synth.minimal_220(tmp), xml(**cfg), key, date=DATE)
    info = dump_enclave(r.signed)
    assert r.sdk == "2.20.100" and info.metadata_versions == versions
    assert info.signature_valid and info.measurement_matches
    mds, elf = read_metadata(r.signed)
    for md in mds:
        assert replay_mrenclave(r.signed, md, elf) == r.mrenclave
        assert md.header["desired_misc_select"] == 0
    if "ELRangeSize" in cfg:
        d = M.DATA_DIRECTORY.unpack(mds[0].raw, SDK_2_20.header.size)
        assert d["size"] == M.ELRANGE_ENTRY.size and d["offset"] == SDK_2_20.header.size + 8
        assert mds[0].elrange() == (0x100400000, 0x100000000, 0x100000000)


@pytest.mark.parametrize("kind", ["fifo", "dir"])
def test_an_enclave_path_that_is_not_a_file_is_one_line(tmp_path, kind):
    """A FIFO (an open that would block forever) or a directory given as -enclave: refused
    before it is opened, one line naming it, exit 2 (inputfile.read_limited)."""
    bad = tmp_path / "enclave.so"
    os.mkfifo(bad) if kind == "fifo" else bad.mkdir()
    r = subprocess.run([sys.executable, "-m", "occlum_build.cli.sgxsign", "dump", "-enclave", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in r.stderr, r.stderr
