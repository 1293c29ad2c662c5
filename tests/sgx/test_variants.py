"""Paths without a public sgx_sign vector (SGX2 metadata, EDMM user region, reserved memory,
ELRANGE, TLS, text relocations): signed from synthetic enclaves, then checked by replaying the
measurement from the metadata embedded in the output (the uRTS loader's view)."""

import pytest
import synth

from occlum_build.errors import ConfigError
from occlum_build.sgx import EnclaveError, PemSigner, dump_enclave, sign_enclave
from occlum_build.sgx import metadata as M
from occlum_build.sgx.dump import read_metadata
from occlum_build.sgx.sigstruct import SIGSTRUCT


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("synth")


@pytest.fixture(scope="module")
def minimal(tmp):
    return synth.minimal(tmp)


@pytest.fixture(scope="module")
def key(request):
    from sgx_vectors import VECTORS

    return PemSigner(VECTORS / "h0mur0" / "Enclave_private_test.pem")


def xml(**kw):
    return ("<EnclaveConfiguration>" + "".join(f"<{k}>{v}</{k}>" for k, v in kw.items())
            + "</EnclaveConfiguration>").encode()


def signed(so, cfg, key):
    r = sign_enclave(so, cfg, key, date=0x20250101)
    info = dump_enclave(r.signed)
    assert info.signature_valid and info.measurement_matches, info
    assert info.mrenclave == r.mrenclave.hex()
    return r, info


@pytest.mark.parametrize("cfg,versions", [
    (dict(), ["1.5"]),  # static: SGX1 only
    (dict(TCSNum=4, TCSMinPool=2, TCSMaxNum=6), ["1.5"]),  # dynamic threads but MiscSelect[0]=0
    (dict(MiscSelect=1, MiscMask="0xFFFFFFFE", HeapInitSize="0x10000"), ["3.3", "1.5"]),  # both
    (dict(MiscSelect=1, MiscMask="0xFFFFFFFF", StackMinSize="0x4000"), ["3.3"]),  # SGX2 only
    (dict(MiscSelect=1, MiscMask="0xFFFFFFFF", UserRegionSize="0x100000"), ["3.3"]),  # EDMM user region
    (dict(ReservedMemMaxSize="0x400000", ReservedMemMinSize="0x100000", ReservedMemExecutable=1), ["1.5"]),
    (dict(ELRangeSize="0x100000000", ELRangeStartAddress="0x100000000", EnclaveImageAddress="0x100400000"),
     ["11.5"]),
])
def test_metadata_versions_and_replay(minimal, key, cfg, versions):
    r, info = signed(minimal, xml(**cfg), key)
    assert info.metadata_versions == versions


def test_user_region_entry(minimal, key):
    r, _ = signed(minimal, xml(MiscSelect=1, MiscMask="0xFFFFFFFF", UserRegionSize="0x100000"), key)
    mds, _ = read_metadata(r.signed)
    user = [e for e in mds[0].layout if e.id == M.USER_REGION]
    assert len(user) == 1 and user[0].page_count * 4096 >= 0x100000 + 0x10000
    assert user[0].attributes == M.PAGE_ATTR_POST_ADD  # never measured


def test_reserved_memory_is_eadd_only(minimal, key):
    base, _ = signed(minimal, xml(), key)
    r, info = signed(minimal, xml(ReservedMemMaxSize="0x400000", ReservedMemMinSize="0x400000",
                                  ReservedMemInitSize="0x400000"), key)
    assert r.mrenclave != base.mrenclave
    mds, _ = read_metadata(r.signed)
    rsrv = [e for e in mds[0].layout if e.id == M.RSRV_MIN]
    assert rsrv and rsrv[0].attributes == M.PAGE_ATTR_EADD and rsrv[0].page_count == 0x400


def test_tls_sizes_thread_data(tmp, key):
    so = synth.build(tmp, "tls", synth.TEXT, synth.gdata(), synth.NOTE, synth.TLS)
    r, _ = signed(so, xml(TCSNum=2), key)
    mds, _ = read_metadata(r.signed)
    td = next(e for e in mds[0].layout if e.id == M.TD)
    assert td.page_count == 1 + 2  # PT_TLS memsz 5104 rounds to two pages


def test_kss_and_isv_fields(minimal, key):
    r, info = signed(minimal, xml(EnableKSS=1, ISVFAMILYID_H=1, ISVFAMILYID_L=2, ISVEXTPRODID_L="0x33",
                                  ProdID=7, ISVSVN=9, DisableDebug=1), key)
    f = SIGSTRUCT.unpack(r.sigstruct)
    assert f["attributes_flags"] & 0x80 and f["attributemask_flags"] & 0x80
    assert f["isvfamilyid"] == (2).to_bytes(8, "little") + (1).to_bytes(8, "little")
    assert f["isvextprodid"] == (0x33).to_bytes(8, "little") + bytes(8)
    assert (f["isvprodid"], f["isvsvn"]) == (7, 9)
    assert not info.debuggable and info.kss


def test_text_relocations(tmp, key):
    so = synth.build(tmp, "textrel", synth.TEXT, synth.gdata(), synth.NOTE, synth.TEXTREL,
                     ldflags=("-Wl,-z,notext",))
    with pytest.raises(EnclaveError, match="text relocations"):
        sign_enclave(so, xml(), key, date=0x20250101)
    r = sign_enclave(so, xml(), key, date=0x20250101, allow_text_relocations=True)
    assert dump_enclave(r.signed).measurement_matches


@pytest.mark.parametrize("parts,why", [
    ((synth.TEXT, synth.NOTE), "no g_global_data"),
    ((synth.TEXT, synth.gdata(version=0x200130064), synth.NOTE), r"sdk_version is 0x200130064 \(2.19.100\)"),
    ((synth.TEXT, synth.gdata()), "no .note.sgxmeta"),
    ((synth.TEXT, synth.gdata(), synth.NOTE, synth.UNDEFINED), "undefined symbol 'missing_function'"),
])
def test_bad_enclaves(tmp, key, parts, why):
    so = synth.build(tmp, f"bad{abs(hash(why))}", *parts)
    with pytest.raises(EnclaveError, match=why):
        sign_enclave(so, xml(), key, date=0x20250101)


@pytest.mark.parametrize("cfg,why", [
    (dict(HeapMaxSize="0x1000", HeapMinSize="0x2000"), "HeapMinSize is larger than HeapMaxSize"),
    (dict(HeapInitSize="0x3000", HeapMaxSize="0x2000"), "HeapInitSize is larger"),
    (dict(StackMaxSize="0x2800"), "multiples of 4 KB"),
    (dict(StackMinSize="0x8000", StackMaxSize="0x4000"), "StackMinSize is larger"),
    (dict(TCSNum=4, TCSMaxNum=2), "TCSMaxNum is smaller"),
    (dict(TCSNum=2, TCSMinPool=3), "TCSMinPool is larger"),
    (dict(ISVFAMILYID_H=1), "need EnableKSS"),
    (dict(HW=1), "HW and LaunchKey"),
    (dict(UserRegionSize="0x100000"), "UserRegionSize needs MiscSelect"),
    (dict(EnableIPPFIPS=1), "not supported"),
    (dict(EnclaveImageAddress="0x2000"), "needs ELRangeSize"),
    (dict(ELRangeSize="0x4000000", ELRangeStartAddress="0x4000000", EnclaveImageAddress="0x6800000"),
     "exceeds the ELRANGE"),
    (dict(ELRangeSize="0x3000000", ELRangeStartAddress="0", EnclaveImageAddress="0x1000"),
     "power of two"),
    (dict(HeapMaxSize="0x7FFFFFFFFFFF0000"), "HEAP_INIT needs .* pages, more than a layout entry holds"),
    (dict(TCSNum="0x3FFFFFF", StackMaxSize="0x8000000000"), "does not fit in a 64-bit enclave"),
    (dict(ReservedMemMaxSize="0x100000000000000"), "more than a layout entry holds"),
])
def test_bad_configs(minimal, key, cfg, why):
    with pytest.raises(ConfigError, match=why):
        sign_enclave(minimal, xml(**cfg), key, date=0x20250101)


def test_heap_that_does_not_fit(minimal, key):
    with pytest.raises(ConfigError, match="out of range"):
        sign_enclave(minimal, xml(HeapMaxSize="0x8000000000000000"), key, date=0x20250101)


def test_init_section(tmp, key):
    so = synth.build(tmp, "init", synth.TEXT, synth.gdata(), synth.NOTE, synth.INIT)
    with pytest.raises(EnclaveError, match=r"\.init section"):
        sign_enclave(so, xml(), key, date=0x20250101)
    assert sign_enclave(so, xml(), key, date=0x20250101, allow_init_section=True).mrenclave


def test_absurd_bss_refused(tmp, key):
    so = synth.build(tmp, "hugebss", synth.TEXT, synth.gdata(), synth.NOTE,
                     ".section .bss\n.globl big\nbig: .zero 0x1100000000\n")
    with pytest.raises(EnclaveError, match="more than 64 GiB is refused"):
        sign_enclave(so, xml(), key, date=0x20250101)


def test_aex_notify_tcs_flag(minimal, key):
    """EnableAEXNotify: SIGSTRUCT attribute 0x400 and TCS_FLAG_AEXNOTIFY (0x2) in the TCS template."""
    r, _ = signed(minimal, xml(EnableAEXNotify=1), key)
    f = SIGSTRUCT.unpack(r.sigstruct)
    assert f["attributes_flags"] & 0x400 and f["attributemask_flags"] & 0x400
    mds, _ = read_metadata(r.signed)
    tcs = next(e for e in mds[0].layout if e.id == M.TCS_ID)
    assert M.TCS.get(mds[0].raw, "flags", tcs.content_offset) == M.TCS_FLAG_AEXNOTIFY
    base, _ = signed(minimal, xml(), key)
    tcs = next(e for e in read_metadata(base.signed)[0][0].layout if e.id == M.TCS_ID)
    assert M.TCS.get(read_metadata(base.signed)[0][0].raw, "flags", tcs.content_offset) == 0
