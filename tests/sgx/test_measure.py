"""The measurement primitive and the SGXS reader, against Fortanix's public vectors."""

import hashlib

import pytest

from occlum_build.errors import OcclumError
from occlum_build.sgx import measure as M
from occlum_build.sgx.sgxs import read_sgxs
from occlum_build.sgx.sigstruct import SIGSTRUCT

TEST_ENCLAVE_MRENCLAVE = "784acfd7d5096a8f0fbd3265760bff21b120f62407a9a9e5ba31aa3c8ed198fc"


def test_record_layouts():
    rec = M.ecreate_record(1, 0x40000)
    assert rec == b"ECREATE\0" + b"\1\0\0\0" + (0x40000).to_bytes(8, "little") + bytes(44)
    r = M.eadd_record(0x3000, M.SI_FLAGS_RX)
    assert len(r) == 64 and r[:8] == b"EADD\0\0\0\0" and r[8:16] == (0x3000).to_bytes(8, "little")
    assert r[16:24] == (0x205).to_bytes(8, "little") and r[24:] == bytes(40)
    h = M.eextend_header(0x3100)
    assert len(h) == 64 and h[:8] == b"EEXTEND\0" and h[8:16] == (0x3100).to_bytes(8, "little")
    assert h[16:] == bytes(48)
    assert (M.SI_FLAGS_R, M.SI_FLAGS_RW, M.SI_FLAGS_RX, M.SI_FLAGS_RWX, M.SI_FLAGS_TCS) == (
        0x201, 0x203, 0x205, 0x207, 0x100)


def test_sgxs_hash_equals_enclavehash(vectors):
    data = (vectors / "fortanix" / "test_enclave.sgxs").read_bytes()
    sig = (vectors / "fortanix" / "test_enclave.sig").read_bytes()
    stream = read_sgxs(data)  # also replays every page through Measurement and cross-checks
    assert stream.mrenclave.hex() == TEST_ENCLAVE_MRENCLAVE
    assert stream.mrenclave == sig[SIGSTRUCT.span("enclavehash")]
    assert (stream.ssa_frame_size, stream.size) == (1, 0x40000)
    assert {p.flags for p in stream.pages} == {0x201, 0x203, 0x205, 0x100}


def test_sgxs_replayed_by_measurement(vectors):
    """Rebuild test_enclave's measurement with Measurement calls only (no file hashing)."""
    stream = read_sgxs((vectors / "fortanix" / "test_enclave.sgxs").read_bytes())
    m = M.Measurement()
    m.ecreate(stream.ssa_frame_size, stream.size)
    for p in stream.pages:
        if p.chunks:
            m.add_page(p.offset, p.flags, b"".join(p.chunks[c] for c in sorted(p.chunks)))
        else:
            m.add_page(p.offset, p.flags, extend=False)
    assert m.digest().hex() == TEST_ENCLAVE_MRENCLAVE


def test_report_sgxs_parses(vectors):
    s = read_sgxs((vectors / "fortanix" / "report.sgxs").read_bytes())
    assert s.record_count == 52 and s.size == 0x4000


@pytest.mark.parametrize("extend", [False, True])
@pytest.mark.parametrize("start,count", [(0, 1), (3, 70), (4090, 20), (15, 3), (0x1234, 300), (8191, 4098)])
def test_add_pages_equals_page_loop(extend, start, count):
    """The windowed fast path gives exactly the records of a per-page loop, in the sink too."""
    fast, slow = [], []
    a = M.Measurement(sink=fast.append)
    b = M.Measurement(sink=slow.append)
    for m in (a, b):
        m.ecreate(2, 1 << 36)
    a.add_pages(start * 4096, count, M.SI_FLAGS_RW, extend=extend, fill=0xCC)
    a.add_pages((1 << 35) + 4096 * 4095, 2, M.SI_FLAGS_RWX, extend=extend, fill=0)
    page = bytes([0xCC]) * 4096
    for p in range(start, start + count):
        b.add_page(p * 4096, M.SI_FLAGS_RW, page, extend=extend)
    for p in range(2):
        b.add_page((1 << 35) + 4096 * (4095 + p), M.SI_FLAGS_RWX, extend=extend)
    assert b"".join(fast) == b"".join(slow)
    assert a.digest() == b.digest() == hashlib.sha256(b"".join(slow)).digest()


def test_bad_measurement_calls():
    m = M.Measurement()
    with pytest.raises(ValueError, match="before ECREATE"):
        m.add_page(0, M.SI_FLAGS_RW)
    with pytest.raises(ValueError, match="power of two"):
        m.ecreate(1, 0x3000)
    m.ecreate(1, 0x10000)
    with pytest.raises(ValueError, match="page-aligned"):
        m.add_page(0x10, M.SI_FLAGS_RW)
    with pytest.raises(ValueError, match="beyond"):
        m.add_pages(0xF000, 2, M.SI_FLAGS_RW, extend=False)
    with pytest.raises(ValueError, match="TCS"):
        m.add_page(0, M.SI_FLAGS_TCS | M.SI_FLAG_R)
    with pytest.raises(ValueError, match="outside"):
        m.add_page(0, 0x10203)


@pytest.mark.parametrize("mutate,why", [
    (lambda d: b"EADD\0\0\0\0" + d[8:], "start with an ECREATE"),
    (lambda d: d + d[:64], "second ECREATE"),
    (lambda d: d[:-10], "truncated|256 data"),
    (lambda d: d[:64] + b"UNMEASRD" + d[72:], "unknown record tag"),
])
def test_bad_sgxs(vectors, mutate, why):
    data = (vectors / "fortanix" / "test_enclave.sgxs").read_bytes()
    with pytest.raises(OcclumError, match=why):
        read_sgxs(mutate(data), where="t.sgxs")
