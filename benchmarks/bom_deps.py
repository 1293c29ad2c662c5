#!/usr/bin/env python3
"""Benchmark: ELF dependency resolution for the python3 tree, ours vs Occlum's method.

Occlum's copy_bom runs ``LD_LIBRARY_PATH=<dirs> <loader> --list <elf>`` once per ELF file.  We
read the ELF files with pyelftools instead.  Over the same inputs (python3.11 and every
extension module in lib-dynload) both must report the identical set of libraries (asserted
per file), and we print how much faster ours is.  Each side runs ``--repeat`` times from a cold
start (a fresh Resolver, so nothing is cached between repeats), alternating; the best time of
each counts.

    python benchmarks/bom_deps.py [--repeat N]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import time

from occlum_build.bom import load_loader_config
from occlum_build.bom.elfdeps import Resolver

PYTHON = "/usr/bin/python3.11"
DYNLOAD = "/usr/lib/python3.11/lib-dynload"
LINE = re.compile(r"^(\S+) => (\S+) \(")


def inputs() -> list[str]:
    return [PYTHON, *sorted(glob.glob(f"{DYNLOAD}/*.so"))]


def ours(files: list[str]) -> dict:
    """The timed part: a cold resolver (config read included) resolving every input."""
    r = Resolver(load_loader_config())
    return {f: r.resolve(f) for f in files}


def ours_pairs(results: dict) -> dict[str, set[tuple[str, str]]]:
    out = {}
    for f, res in results.items():
        if res.loader is None:  # no DT_NEEDED at all: nothing to load
            out[f] = set()
            continue
        lreal = os.path.realpath(res.loader.path)
        out[f] = {(d.name, d.path) for d in res.libs if os.path.realpath(d.path) != lreal}
    return out


def loader_list(files: list[str]) -> dict[str, set[tuple[str, str]]]:
    cfg = load_loader_config()
    glibc = cfg.of_kind("glibc")
    assert glibc is not None
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(glibc.lib_dirs))
    lreal = os.path.realpath(glibc.path)
    out = {}
    for f in files:
        p = subprocess.run([glibc.path, "--list", f], capture_output=True, text=True, env=env)
        pairs = set()
        for line in p.stdout.splitlines():
            m = LINE.match(line.strip())
            if m and os.path.realpath(m.group(2)) != lreal:
                pairs.add((m.group(1), m.group(2)))
        out[f] = pairs
    return out


def best(fn, files: list[str], repeat: int) -> tuple[float, dict]:
    times, result = [], {}
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn(files)
        times.append(time.perf_counter() - t)
    return min(times), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    a = ap.parse_args()
    files = inputs()
    t_ours, t_ld = [], []
    for _ in range(a.repeat):  # alternate, so that machine load hits both alike
        t_ours.append(best(ours, files, 1)[0])
        t_ld.append(best(loader_list, files, 1)[0])
    r_ours = ours_pairs(ours(files))
    r_ld = loader_list(files)
    t_ours, t_ld = min(t_ours), min(t_ld)
    for f in files:
        assert r_ours[f] == r_ld[f], (f, r_ours[f] ^ r_ld[f])
    libs = set().union(*r_ours.values())
    assert libs == set().union(*r_ld.values())
    print(f"inputs: {len(files)} ELF files (python3.11 + lib-dynload), {len(libs)} distinct libraries; "
          "identical library set per file")
    print(f"ld.so --list per ELF (Occlum): {t_ld * 1000:8.1f} ms")
    print(f"our resolver (no loader run):{t_ours * 1000:8.1f} ms")
    print(f"ratio: {t_ld / t_ours:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
