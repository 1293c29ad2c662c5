#!/usr/bin/env python3
"""Start-up of `python3 -c pass` in a python3 instance (bom/python3.yaml), with the image's
mtimes at 0 (as sefs-cli stores them) and with `occlum build --keep-mtimes`.

    sudo python benchmarks/python_startup.py [--runs 10]

With mtime 0 every shipped .pyc looks stale to Python: each import of a module compiles it
again and writes a new .pyc into the writable layer.  `occlum build` resets run/ (as Occlum
does), so that cost comes back on the first run after every build; later runs use the
.pyc files the first one wrote.  Printed per build: the first run after the build, and the
best of --runs later runs; the baseline is the host's `python3 -c pass` in the same run.
Needs root (the SIM runtime's namespaces and FUSE) and Debian's python3.11.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
OCCLUM = str(BIN / "occlum")
ENV = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
CODE = "import json, email.parser, http.client, argparse"  # a few dozen stdlib modules


def timed(argv: list[str], cwd: Path | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=ENV, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    base = min(timed(["/usr/bin/python3.11", "-c", CODE]) for _ in range(args.runs))
    tmp = Path(tempfile.mkdtemp(prefix="occlum-pystart-", dir="/var/tmp"))
    try:
        inst = tmp / "inst"
        subprocess.run([OCCLUM, "new", str(inst)], env=ENV, check=True, capture_output=True)
        (tmp / "app.yaml").write_text("includes: [base.yaml, python3.yaml]\n")
        subprocess.run([str(BIN / "copy_bom"), "-f", "../app.yaml", "--root", "image"], cwd=inst,
                       env=ENV, check=True, capture_output=True)
        rows = []
        for label, extra in (("mtime 0 (default)", []), ("--keep-mtimes", ["--keep-mtimes"])):
            subprocess.run([OCCLUM, "build", "--sgx-mode", "SIM", *extra], cwd=inst, env=ENV,
                           check=True, capture_output=True)
            run = [OCCLUM, "run", "/bin/python3", "-c", CODE]
            first = timed(run, inst)
            later = min(timed(run, inst) for _ in range(args.runs))
            rows.append((label, first, later))
        print(f"host python3 -c {CODE!r}: {base * 1000:.0f} ms (best of {args.runs})")
        for label, first, later in rows:
            print(f"  occlum run, {label:18}: first run after the build {first * 1000:6.0f} ms "
                  f"({first / base:4.1f}x host), later runs {later * 1000:5.0f} ms ({later / base:4.1f}x)")
        print(f"summary: --keep-mtimes makes the first run {rows[0][1] / rows[1][1]:.1f}x faster")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
