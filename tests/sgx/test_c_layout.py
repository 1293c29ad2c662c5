"""libos/src/sgx_layout.h (the C runtime's SGX offsets) is the output of occlum_build.sgx.c_layout
over the Python field tables: one source for every offset, checked here."""

from __future__ import annotations

from pathlib import Path

from occlum_build.sgx import c_layout

HEADER = Path(__file__).resolve().parents[2] / "libos" / "src" / "sgx_layout.h"


def test_c_header_is_generated_from_the_python_tables() -> None:
    assert HEADER.read_text() == c_layout.render(), (
        "libos/src/sgx_layout.h is stale: python -m occlum_build.sgx.c_layout > libos/src/sgx_layout.h")
