"""patch_section: overwrite a section in place, same size and offset, or fail clearly."""

import pytest
from sgx_vectors import VECTORS

from occlum_build.sgx import EnclaveError, patch_section


def test_patch_in_place():
    so = (VECTORS / "h0mur0" / "enclave.so").read_bytes()
    out = patch_section(so, ".comment", b"x" * 0x3C)
    assert len(out) == len(so) and out[0x403F4:0x403F4 + 0x3C] == b"x" * 0x3C
    diff = [i for i in range(len(so)) if so[i] != out[i]]
    assert diff and min(diff) >= 0x403F4 and max(diff) < 0x403F4 + 0x3C


@pytest.mark.parametrize("name,size,why", [
    (".nosuch", 4, "no section '.nosuch'"),
    (".comment", 4, "is 60 bytes, the patch is 4"),
    (".bss", 0xF5E0, "no file bytes"),
])
def test_patch_errors(name, size, why):
    so = (VECTORS / "h0mur0" / "enclave.so").read_bytes()
    with pytest.raises(EnclaveError, match=why):
        patch_section(so, name, bytes(size))
