"""Protected FS (Occlum's fork of Intel's SGX protected files) against the upstream vectors
(tests/vectors/occlum-interop/pfs, protected-config; UPSTREAM-README.md there)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import pytest

from occlum_build.image import pfs
from occlum_build.image.pfs_layout import ENCRYPTED, KDF_INPUT, NODE, PLAIN, data_phys, file_size, mht_phys
from occlum_build.image.pfs_reader import PfsReader
from occlum_build.keys import parse_hex16

VEC = Path(__file__).resolve().parents[1] / "vectors" / "occlum-interop"
INTEG = VEC / "pfs" / "integrity"
USERKEY = VEC / "pfs" / "userkey"
IVEC = json.loads((INTEG / "vectors.json").read_text())
UVEC = json.loads((USERKEY / "vectors.json").read_text())
UKEY = parse_hex16((USERKEY / "key.txt").read_text(), "key.txt")


def S(n: int, label: bytes = b"occlum-interop-pfs") -> bytes:
    out = b"".join(hashlib.sha256(label + struct.pack("<Q", k)).digest() for k in range((n + 31) // 32))
    return out[:n]


def test_field_tables_match_the_sdk_layout():
    assert (PLAIN.offset("meta_data_gmac"), PLAIN.offset("integrity_only"), PLAIN.size) == (77, 94, 95)
    assert (ENCRYPTED.offset("size") + 95, ENCRYPTED.offset("mht_key") + 95,
            ENCRYPTED.offset("data") + 95) == (355, 383, 415)
    assert KDF_INPUT.offset("node_number") == 72 and KDF_INPUT.offset("nonce") == 80
    assert [mht_phys(m) for m in (0, 1, 2)] == [1, 98, 195]
    assert [data_phys(d) for d in (0, 95, 96, 191, 192)] == [2, 97, 99, 194, 196]
    assert [file_size(n) for n in (0, 3072, 3073, 7168, 7169)] == [4096, 4096, 12288, 12288, 16384]


@pytest.mark.parametrize("f", IVEC["files"], ids=lambda f: str(f["content_size"]))
def test_integrity_writer_is_byte_identical(f):
    out, mac = pfs.protect_bytes(S(f["content_size"]), f["clean_name"].encode())
    assert len(out) == f["protected_size"]
    assert hashlib.sha256(out).hexdigest() == f["sha256_protected"]
    assert pfs.format_mac(mac) == f["mac"]
    if (INTEG / f["protected"]).exists():
        assert out == (INTEG / f["protected"]).read_bytes()


def test_streaming_writer_matches(tmp_path):
    """write_body from a file descriptor + meta_node give the same bytes as the vector."""
    f = next(x for x in IVEC["files"] if x["content_size"] == 1048576)
    src = tmp_path / "src"
    src.write_bytes(S(1048576))
    out = tmp_path / f["clean_name"]
    with open(src, "rb") as s, open(out, "wb+") as o:
        body = pfs.write_body(o.fileno(), s.fileno(), 1048576)
        node0, mac = pfs.meta_node(f["clean_name"].encode(), body)
        os.pwrite(o.fileno(), node0, 0)
    assert out.read_bytes() == (INTEG / f["protected"]).read_bytes()


@pytest.mark.parametrize("f", [x for x in IVEC["files"] if (INTEG / x["protected"]).exists()],
                         ids=lambda f: str(f["content_size"]))
def test_integrity_reader(f):
    r = PfsReader((INTEG / f["protected"]).read_bytes(), f["clean_name"])
    assert r.read() == S(f["content_size"]) and pfs.format_mac(r.mac) == f["mac"]
    assert r.size == f["content_size"]


def test_reader_checks_the_clean_name():
    data = (INTEG / "3073.bin.protected").read_bytes()
    with pytest.raises(pfs.PfsError, match="file name mismatch"):
        PfsReader(data, "other.protected")


def test_tampered_integrity_file_opens_but_the_read_fails():
    t = IVEC["tampered"]
    r = PfsReader((INTEG / t["file"]).read_bytes(), "3073.bin.protected", where=t["file"])
    assert pfs.format_mac(r.mac) == t["show_mac_out"]  # the MAC covers the MHT root only
    assert r.read(0, 3072) == S(3072)  # the head lives in the (intact) metadata node
    want = r"tampered/3073.bin.protected: data node 0 \(node 2\): MAC mismatch"
    with pytest.raises(pfs.PfsError, match=want):
        r.read()


def test_truncated_and_foreign_files_are_refused():
    data = (INTEG / "7169.bin.protected").read_bytes()
    with pytest.raises(pfs.PfsError, match="truncated"):
        PfsReader(data[:-NODE], "7169.bin.protected")
    with pytest.raises(pfs.PfsError, match="not a Protected FS file"):
        PfsReader(b"\0" * NODE, "x")
    bad = bytearray(data)
    bad[95 + 300] ^= 1  # the encrypted part (clear in integrity mode): node 0's MAC breaks
    with pytest.raises(pfs.PfsError, match="metadata node: MAC mismatch"):
        PfsReader(bytes(bad), "7169.bin.protected")


@pytest.mark.parametrize("f", UVEC["files"], ids=lambda f: str(f["content_size"]))
def test_userkey_reader_reads_upstream_files(f):
    data = (USERKEY / f["protected"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == f["sha256_protected"]
    r = PfsReader(data, f["clean_name"], UKEY)
    assert r.read() == S(f["content_size"]) and pfs.format_mac(r.mac) == f["mac"]
    with pytest.raises(pfs.PfsError, match="is a user-key file, opened as integrity-only"):
        PfsReader(data, f["clean_name"])


def test_userkey_tampered_and_wrong_key():
    t = UVEC["tampered"]
    r = PfsReader((USERKEY / t["tampered-data"]["file"]).read_bytes(), "396289.bin.protected", UKEY)
    assert pfs.format_mac(r.mac) == t["tampered-data"]["show_mac_out"]
    with pytest.raises(pfs.PfsError, match=r"data node 0 \(node 2\): MAC mismatch"):
        r.read()
    with pytest.raises(pfs.PfsError, match="metadata node: MAC mismatch"):
        PfsReader((USERKEY / t["tampered-meta"]["file"]).read_bytes(), "396289.bin.protected", UKEY)
    with pytest.raises(pfs.PfsError, match="metadata node: MAC mismatch"):
        PfsReader((USERKEY / "3073.bin.protected").read_bytes(), "3073.bin.protected", b"\x01" * 16)


@pytest.mark.parametrize("n", [0, 1, 3072, 3073, 7169, 396289, 96 * 4096 * 33 + 3072 + 5])
def test_userkey_writer_is_deterministic_and_readable(n):
    data = S(n, b"det")
    a, mac = pfs.protect_bytes(data, b"f.protected", UKEY)
    b, mac2 = pfs.protect_bytes(data, b"f.protected", UKEY)
    assert a == b and mac == mac2 and len(a) == file_size(n)
    assert PfsReader(a, "f.protected", UKEY).read() == data
    other, _ = pfs.protect_bytes(data, b"f.protected", b"\x02" * 16)
    assert other != a
    if n >= 3072 + 16:
        assert data[3072:3072 + 16] not in a  # no plaintext beyond node 0 ...
    if n >= 16:
        assert data[:16] not in a  # ... nor in it


@pytest.mark.parametrize("key", [None, UKEY], ids=["integrity", "userkey"])
def test_only_node0_depends_on_the_name(key):
    data = S(500000, b"name")
    a, _ = pfs.protect_bytes(data, b"0300", key)
    b, _ = pfs.protect_bytes(data, b"0400", key)
    assert a[:NODE] != b[:NODE] and a[NODE:] == b[NODE:]


def test_no_key_is_used_for_two_plaintexts():
    """Derived node keys follow the node's plaintext: equal keys only for equal nodes."""
    from occlum_build.image.pfs import _Keys

    k = _Keys(UKEY)
    assert k.node(2, b"a" * NODE) != k.node(2, b"b" * NODE)
    assert k.node(2, b"a" * NODE) != k.node(3, b"a" * NODE)
    assert k.node(2, b"a" * NODE) == k.node(2, b"a" * NODE)


@pytest.mark.parametrize("case", ["hello", "template"])
def test_protected_config_vectors(case):
    d = VEC / "protected-config" / case
    out, mac = pfs.protect_bytes((d / ".Occlum_sys.json").read_bytes(), b".Occlum_sys.json.protected")
    assert out == (d / ".Occlum_sys.json.protected").read_bytes()
    assert (pfs.format_mac(mac) + "\n").encode() == (d / "conf_mac.txt").read_bytes()
