"""occlum-gcc builds PIE musl binaries that run natively."""

import shutil
import subprocess
from pathlib import Path

import pytest

from occlum_build.paths import REPO_DIR

TC = REPO_DIR / "toolchains"
pytestmark = pytest.mark.skipif(shutil.which("musl-gcc") is None, reason="musl-tools not installed")


def test_occlum_gcc_pie(tmp_path: Path):
    src = tmp_path / "hello.c"
    src.write_text('#include <stdio.h>\nint main(void){puts("Hello World");return 0;}\n')
    exe = tmp_path / "hello"
    subprocess.run([TC / "occlum-gcc", "-o", exe, src], check=True)
    hdr = exe.read_bytes()[:20]
    assert hdr[:4] == b"\x7fELF" and hdr[16] == 3  # ET_DYN: a PIE
    out = subprocess.run(["readelf", "-l", exe], capture_output=True, text=True).stdout
    assert "/lib/ld-musl-x86_64.so.1" in out
    assert subprocess.run([exe], capture_output=True, text=True).stdout == "Hello World\n"


def test_occlum_gcc_compile_only_and_ld(tmp_path: Path):
    src = tmp_path / "m.c"
    src.write_text('#include <stdio.h>\nint main(void){puts("linked");return 0;}\n')
    obj = tmp_path / "m.o"
    subprocess.run([TC / "occlum-gcc", "-c", "-o", obj, src], check=True)
    exe = tmp_path / "m"
    subprocess.run([TC / "occlum-gcc", "-o", exe, obj], check=True)
    assert subprocess.run([exe], capture_output=True, text=True).stdout == "linked\n"
