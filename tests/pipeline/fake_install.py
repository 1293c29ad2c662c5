"""A fake Occlum install for the `--occlum-dir` tests.

No real install exists here: the fake one is laid out as /opt/occlum with the synthetic
SDK-2.20-layout enclave of tests/vectors/occlum-interop/signing-sdk220 as its LibOS (it has a
47-byte .builtin_config with padding after it, as Occlum's LibOS) and stand-in PAL, programs
and init (never run: the build only copies, links and measures them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

OCCLUM = str(Path(sys.executable).parent / "occlum")
VEC = Path(__file__).resolve().parents[1] / "vectors" / "occlum-interop" / "signing-sdk220"
VERSION = "0.30.1"
EPOCH = "1736942400"  # 2025-01-15, the vectors' signing date


def make_install(root: Path, version: str = VERSION, *, modes: tuple[str, ...] = ("", "_sim")) -> Path:
    maj, mi, pa = version.split(".")
    (root / "include").mkdir(parents=True)
    (root / "include/occlum_version.h").write_text(
        "#ifndef _OCCLUM_VERSION_H_\n#define _OCCLUM_VERSION_H_\n\n"
        f"// Version = {version}\n#define OCCLUM_MAJOR_VERSION    {maj}\n"
        f"#define OCCLUM_MINOR_VERSION    {mi}\n#define OCCLUM_PATCH_VERSION    {pa}\n\n#endif\n")
    lib, bin_ = root / "build/lib", root / "build/bin"
    lib.mkdir(parents=True)
    bin_.mkdir(parents=True)
    for m in modes:
        shutil.copy(VEC / "enclave.so", lib / f"libocclum-libos{m}.so.{version}")
        (lib / f"libocclum-pal{m}.so.{version}").write_bytes(f"stand-in PAL{m} {version}\n".encode())
    for name in ("occlum-run", "occlum_exec_client", "occlum_exec_server", "init"):
        (bin_ / name).write_bytes(f"#!/bin/sh\necho stand-in {name}\n".encode())
        (bin_ / name).chmod(0o755)
    (root / "etc/template").mkdir(parents=True)
    shutil.copy(VEC / "signing_key.pem", root / "etc/template/Enclave.pem")
    return root


def run_cli(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OCCLUM, *argv], cwd=cwd, env={**os.environ, **(env or {})}, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=600)


def build(inst: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("build", *argv, cwd=inst, env={"SOURCE_DATE_EPOCH": EPOCH, **(env or {})})


def new_instance(tmp: Path) -> Path:
    r = run_cli("new", str(tmp / "inst"), cwd=tmp)
    assert r.returncode == 0, r.stderr
    return tmp / "inst"


def tree(d: Path) -> dict[str, str]:
    """path -> "dir" | "file" | "-> target" for everything under d (our .state left out)."""
    out = {}
    for p in sorted(d.rglob("*")):
        rel = str(p.relative_to(d))
        if rel.startswith((".state", "report.json")):
            continue
        out[rel] = f"-> {os.readlink(p)}" if p.is_symlink() else "dir" if p.is_dir() else "file"
    return out


