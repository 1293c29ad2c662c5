"""End to end: sign a real SDK 2.26 enclave and compare with real sgx_sign output, byte for byte."""

import pytest

from occlum_build.sgx import metadata as M
from occlum_build.sgx.profiles import SDK_2_20, SDK_2_21, SDK_2_26
from occlum_build.sgx.sign import sign_enclave
from occlum_build.sgx.signer import PemSigner
from occlum_build.sgx.sigstruct import SIGSTRUCT, verify_sigstruct

MRENCLAVE = "6478d9e3e12396357aa6cce73c55b8ff54a6a5e6ed8161618a720a2c775e3ef9"
MRSIGNER = "2321bcb26158330340b9287d28e59a12ead44c161c0f149e7a01770d64c5b195"


@pytest.fixture(scope="module")
def h0mur0():
    from sgx_vectors import VECTORS

    d = VECTORS / "h0mur0"
    return {
        "so": (d / "enclave.so").read_bytes(),
        "signed": (d / "enclave.signed.so").read_bytes(),
        "xml": (d / "Enclave.config.xml").read_bytes(),
        "key": d / "Enclave_private_test.pem",
    }


def test_h0mur0_byte_identical(h0mur0):
    r = sign_enclave(h0mur0["so"], h0mur0["xml"], PemSigner(h0mur0["key"]), date=0x20250927)
    assert r.mrenclave.hex() == MRENCLAVE
    assert r.mrsigner.hex() == MRSIGNER
    assert r.signed == h0mur0["signed"]
    verify_sigstruct(r.sigstruct)
    assert SIGSTRUCT.get(r.sigstruct, "date") == 0x20250927
    assert r.metadata_version == M.make_version(1, 5) and r.sdk == "2.26.100"


def test_date_changes_only_sigstruct(h0mur0):
    r = sign_enclave(h0mur0["so"], h0mur0["xml"], PemSigner(h0mur0["key"]), date=0x20260101)
    assert r.mrenclave.hex() == MRENCLAVE
    assert r.signed != h0mur0["signed"] and len(r.signed) == len(h0mur0["signed"])
    assert SIGSTRUCT.get(r.sigstruct, "date") == 0x20260101


def test_structure_offsets():
    assert M.METADATA_HEADER_DIR4.size == 0x770 and M.METADATA_HEADER_DIR2.size == 0x760
    assert M.METADATA_HEADER_DIR4.offset("enclave_css") == 64
    assert M.METADATA_HEADER_DIR4.offset("dir_patch_offset") == 1872
    assert M.METADATA_HEADER_DIR4.offset("dir_elrange_offset") == 1888
    assert (M.LAYOUT_ENTRY.size, M.LAYOUT_GROUP.size, M.PATCH_ENTRY.size) == (32, 32, 32)
    assert M.LAYOUT_ENTRY.offset("rva") == 8 and M.LAYOUT_ENTRY.offset("si_flags") == 24
    assert M.TCS.size == 72 and M.TCS.offset("oentry") == 32 and M.TCS.offset("ofs_limit") == 64
    assert M.THREAD_DATA.size == 192 and M.THREAD_DATA.offset("tls_addr") == 104
    assert M.THREAD_DATA.offset("first_ssa_xsave") == 88 and M.THREAD_DATA.offset("xsave_size") == 56
    assert M.GLOBAL_DATA_FIPS.size == 1768 and M.GLOBAL_DATA_NO_FIPS.size == 1760
    for gd in (M.GLOBAL_DATA_FIPS, M.GLOBAL_DATA_NO_FIPS):
        for name, off in (("td_template", 80), ("tcs_template", 272), ("layout_entry_num", 344),
                          ("layout_table", 352), ("enclave_image_address", 1728), ("edmm_bk_overhead", 1752)):
            assert gd.offset(name) == off
    assert M.GLOBAL_DATA_FIPS.offset("fips_on") == 1760


def test_profile_table():
    """The facts each profile pins (metadata.h, global_data.h, se_version.h at each tag)."""
    assert SDK_2_26.sdk_version == 0x2001A0064 and SDK_2_20.sdk_version == 0x200140064
    assert SDK_2_21.sdk_version == 0x200150064
    assert (SDK_2_26.metadata_size, SDK_2_26.dir_num, SDK_2_26.global_data.size) == (0x6000, 4, 1768)
    for p in (SDK_2_20, SDK_2_21):
        assert (p.metadata_size, p.dir_num, p.global_data.size) == (0x5000, 2, 1760)
        assert p.metadata_version(compat=False, elrange=False) == M.make_version(3, 0)
        assert p.metadata_version(compat=True, elrange=True) == M.make_version(11, 4)
        assert p.compat_for_sgx2_only and not p.misc_select_masked
    assert SDK_2_26.metadata_version(compat=False, elrange=True) == M.make_version(13, 3)
    assert SDK_2_26.xfrm_reserved & 0x18 and not SDK_2_20.xfrm_reserved & 0x18  # fork: MPX allowed
