"""Helpers for copy_bom tests: the vectors dir, building hello programs, running the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "bom"
OCCLUM_BOMS = VECTORS / "occlum"
DEBIAN_BOMS = VECTORS / "debian"
HELLO_C = '#include <stdio.h>\nint main(void) { puts("Hello World"); return 0; }\n'


def have(*cmds: str) -> bool:
    return all(shutil.which(c) for c in cmds)


def build_hello(dest: Path, compiler: str) -> Path:
    """Compile the Occlum hello_c demo's program with ``compiler`` (gcc or musl-gcc)."""
    if not have(compiler):
        pytest.skip(f"{compiler} not installed (scripts/packages/base.txt)")
    src = dest.parent / f"hello_{compiler}.c"
    src.write_text(HELLO_C)
    subprocess.run([compiler, "-O2", "-o", str(dest), str(src)], check=True)
    return dest


def run_cli(*args: str, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real copy_bom console entry (same interpreter) and capture its output."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "occlum_build.cli.bom", *args], capture_output=True,
                          text=True, env=e, cwd=cwd, timeout=300)  # a hang fails, not stalls


CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"


def chroot(root: Path, *argv: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([CHROOT, str(root), *argv], capture_output=True, text=True, timeout=timeout,
                          env={"PATH": "/bin:/usr/bin", "HOME": "/root", "LANG": "C.UTF-8"})


@pytest.fixture
def occlum_boms() -> Path:
    return OCCLUM_BOMS


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")
