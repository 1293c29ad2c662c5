"""Helpers for the runtime end-to-end tests: real instances made and built through the CLI,
real programs (occlum-gcc/musl, gcc/glibc, bash, dd), run with `occlum run`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from occlum_build import paths

REPO = paths.REPO_DIR
BIN = Path(sys.executable).parent
OCCLUM = str(BIN / "occlum")
PROBE_SRC = REPO / "libos" / "tests" / "progs" / "probe.c"

HELLO_C = '#include <stdio.h>\nint main(void) { puts("Hello World"); return 0; }\n'

# The Occlum manual's per-process resource limit example (demos/fish/test_per_process_config.sh),
# in bash: ulimit overrides the Occlum.json defaults for the processes the shell starts.
ULIMIT_SH = """\
ulimit -a
# ulimit defined below will override configuration in Occlum.json
ulimit -Sv 102400 # virtual memory size 100M (including heap, stack, mmap size)
ulimit -Ss 10240 # stack size 10M
ulimit -Sd 40960 # heap size 40M
echo "ulimit result:"
ulimit -a
# A high-memory-consumption process
/bin/dd if=/dev/zero of=/root/test bs=40M count=2
"""


def native_ready() -> bool:
    d = paths.native_dir()
    return all((d / n).is_file() for n in (paths.RUN_BIN, paths.PAL_SO, paths.LIBOS_SO))


def can_namespace() -> bool:
    return os.geteuid() == 0 and Path("/dev/fuse").exists()


needs_runtime = pytest.mark.skipif(not (native_ready() and can_namespace()),
                                   reason="needs make -C libos, root and /dev/fuse")


def occlum(inst: Path, *argv: str, env: dict[str, str] | None = None, timeout: float = 120,
           input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}:{e.get('PATH', '')}"
    if env:
        e.update(env)
    return subprocess.run([OCCLUM, *argv], cwd=inst, env=e, capture_output=True, text=True,
                          timeout=timeout, input=input_text,
                          stdin=None if input_text is not None else subprocess.DEVNULL)


def _copy_with_libs(inst: Path, prog: str, dest: str) -> None:
    """Copy a host glibc program into image/ with the libraries ldd lists, at the same paths."""
    img = inst / "image"
    shutil.copy2(prog, img / dest.lstrip("/"))
    out = subprocess.run(["ldd", prog], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        lib = next((p for p in parts if p.startswith("/")), None)
        if lib is None:
            continue
        target = img / lib.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(lib), target)


def build(inst: Path, *argv: str) -> None:
    r = occlum(inst, "build", "--sgx-mode", "SIM", *argv)
    assert r.returncode == 0, r.stderr
    assert (inst / "build/lib/libocclum-libos.signed.so").is_file(), "the build did not sign the LibOS"


def make_instance(parent: Path) -> Path:
    """An instance with hello (musl, occlum-gcc), hello_glibc (gcc), probe (musl), bash + dd +
    the ulimit script, and a copy of probe outside the entry points (/root/probe)."""
    r = subprocess.run([OCCLUM, "new", str(parent / "inst")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    inst = parent / "inst"
    (parent / "hello.c").write_text(HELLO_C)
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    for cmd in (["occlum-gcc", "-o", "image/bin/hello", "../hello.c"],
                ["gcc", "-o", "image/bin/hello_glibc", "../hello.c"],
                ["occlum-gcc", "-static", "-o", "image/bin/probe", str(PROBE_SRC)]):
        subprocess.run(cmd, cwd=inst, env=env, check=True)
    _copy_with_libs(inst, "/lib64/ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2")
    _copy_with_libs(inst, shutil.which("bash") or "/bin/bash", "/bin/bash")
    _copy_with_libs(inst, shutil.which("dd") or "/bin/dd", "/bin/dd")
    (inst / "image" / "bin" / "ulimit_test.sh").write_text(ULIMIT_SH)
    shutil.copy2(inst / "image" / "bin" / "probe", inst / "image" / "root" / "probe")
    build(inst)
    return inst


def flip(path: Path, offset: int) -> None:
    b = bytearray(path.read_bytes())
    b[offset] ^= 0x01
    path.write_bytes(bytes(b))
