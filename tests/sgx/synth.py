"""Build small synthetic enclave .so files with gcc for tests that need variants of an ELF
(missing symbols, text relocations, TLS, wrong SDK version).  They carry what sgx_sign looks
for: enclave_entry, g_global_data (1768 bytes, sdk_version 2.26.100) and .note.sgxmeta."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HAVE_GCC = shutil.which("gcc") is not None

def note(size: int = 0x6000) -> str:
    """.note.sgxmeta with a zero descriptor of ``size`` bytes (METADATA_SIZE: 0x6000 for SDK 2.26,
    0x5000 for 2.20/2.21)."""
    return f"""
.section .note.sgxmeta,"",@note
.balign 4
.long 13
.long {size:#x}
.long 1
.ascii "sgx_metadata\\0"
.fill {size:#x},1,0
.balign 4
"""


NOTE = note()

TEXT = """
.text
.globl enclave_entry
.type enclave_entry,@function
enclave_entry:
    ret
"""


def gdata(version: int = 0x2001A0064, name: str = "g_global_data", size: int = 1768) -> str:
    return f"""
.data
.balign 64
.globl {name}
.type {name},@object
.size {name},{size}
{name}:
.quad {version:#x}
.fill {size - 8},1,0
"""


def minimal_220(tmp: Path) -> bytes:
    """An SDK 2.20-layout enclave: sdk_version 2.20.100, 1760-byte g_global_data, 0x5000 note."""
    return build(tmp, "minimal220", TEXT, gdata(0x200140064, size=1760), note(0x5000))


TLS = """
.section .tdata,"awT",@progbits
.balign 16
tls_var: .fill 100,1,7
.section .tbss,"awT",@nobits
.balign 16
tls_zero: .fill 5000,1,0
"""

TEXTREL = """
.text
textrel_target:
    .quad extern_data
.data
.globl extern_data
extern_data: .quad 1
"""

UNDEFINED = """
.data
.quad missing_function
"""


def build(tmp: Path, name: str, *parts: str, ldflags: tuple[str, ...] = ()) -> bytes:
    if not HAVE_GCC:
        pytest.skip("gcc is not installed")
    src = tmp / f"{name}.S"
    out = tmp / f"{name}.so"
    src.write_text("".join(parts))
    subprocess.run(["gcc", "-shared", "-nostdlib", "-Wl,--build-id=none", "-Wl,-z,max-page-size=4096",
                    "-o", str(out), str(src), *ldflags], check=True, capture_output=True)
    return out.read_bytes()


def minimal(tmp: Path) -> bytes:
    return build(tmp, "minimal", TEXT, gdata(), NOTE)

INIT = """
.section .init,"ax",@progbits
    ret
"""
