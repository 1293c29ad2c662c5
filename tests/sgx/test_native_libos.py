"""Sign the native LibOS built by `make -C libos` (rtcore), if it is built here."""

import pytest
from sgx_vectors import VECTORS

from occlum_build import paths
from occlum_build.sgx import PemSigner, dump_enclave, sign_enclave
from occlum_build.sgx.elf import update_builtin_config

LIBOS = paths.native_dir() / paths.LIBOS_SO

pytestmark = [pytest.mark.native,
              pytest.mark.skipif(not LIBOS.exists(), reason=f"{LIBOS} is not built (make -C libos)")]


def test_sign_native_libos():
    data = LIBOS.read_bytes()
    key = PemSigner(VECTORS / "h0mur0" / "Enclave_private_test.pem")
    patched = update_builtin_config(data, b"00-11-22-33-44-55-66-77-88-99-aa-bb-cc-dd-ee-ff\n")
    r1 = sign_enclave(patched, b"<EnclaveConfiguration/>", key, date=0x20250101)
    info = dump_enclave(r1.signed)
    assert info.signature_valid and info.measurement_matches
    # the conf MAC is measured: a different MAC gives a different MRENCLAVE, same layout
    r2 = sign_enclave(update_builtin_config(data, b"ff-11-22-33-44-55-66-77-88-99-aa-bb-cc-dd-ee-ff\n"),
                      b"<EnclaveConfiguration/>", key, date=0x20250101)
    assert r2.mrenclave != r1.mrenclave and len(r2.signed) == len(r1.signed)
