"""Sign the native LibOS built by `make -C libos` (rtcore), if it is built here."""

import pytest
from sgx_vectors import VECTORS

from occlum_build import paths
from occlum_build.sgx import PemSigner, dump_enclave, patch_section, sign_enclave

LIBOS = paths.native_dir() / paths.LIBOS_SO

pytestmark = [pytest.mark.native,
              pytest.mark.skipif(not LIBOS.exists(), reason=f"{LIBOS} is not built (make -C libos)")]


def test_sign_native_libos():
    data = LIBOS.read_bytes()
    key = PemSigner(VECTORS / "h0mur0" / "Enclave_private_test.pem")
    mac = bytes(range(48))
    patched = patch_section(data, ".builtin_config", mac)
    r1 = sign_enclave(patched, b"<EnclaveConfiguration/>", key, date=0x20250101)
    info = dump_enclave(r1.signed)
    assert info.signature_valid and info.measurement_matches
    # the conf MAC is measured: a different MAC gives a different MRENCLAVE, same layout
    r2 = sign_enclave(patch_section(data, ".builtin_config", bytes(48)), b"<EnclaveConfiguration/>", key,
                      date=0x20250101)
    assert r2.mrenclave != r1.mrenclave and len(r2.signed) == len(r1.signed)
