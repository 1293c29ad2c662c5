"""The conf-MAC patch of .builtin_config, as `objcopy --update-section` does it (upstream
vectors in tests/vectors/occlum-interop/builtin-config, UPSTREAM-README.md there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from occlum_build.sgx.elf import EnclaveError, update_builtin_config

VEC = Path(__file__).resolve().parents[1] / "vectors" / "occlum-interop" / "builtin-config"
MAC = (VEC / "conf_mac.txt").read_bytes()


def test_pad_is_patched_like_objcopy():
    src = (VEC / "pad.so").read_bytes()
    out = update_builtin_config(src, MAC)
    assert out == (VEC / "pad.patched.so").read_bytes()
    assert sum(a != b for a, b in zip(src, out, strict=True)) <= 49
    # patching the patched file again gives the same bytes (a rebuild with the same MAC)
    assert update_builtin_config(out, MAC) == out


def test_nopad_is_refused():
    with pytest.raises(EnclaveError, match="no room after .builtin_config: .builtin_next"):
        update_builtin_config((VEC / "nopad.so").read_bytes(), MAC, where="nopad.so")


def test_bad_inputs():
    src = (VEC / "pad.so").read_bytes()
    with pytest.raises(EnclaveError, match="conf MAC file is 47 bytes"):
        update_builtin_config(src, MAC[:47])
    h0 = Path(__file__).resolve().parents[1] / "vectors" / "sgx" / "h0mur0" / "enclave.so"
    with pytest.raises(EnclaveError, match="no .builtin_config section"):
        update_builtin_config(h0.read_bytes(), MAC)
