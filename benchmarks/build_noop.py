"""P1: a no-op `occlum build` on a 10,000-file image vs a bare os.scandir+stat walk.

Aim (issue 4): no-op build <= 3x the walk + 0.3 s.  Both are measured in this run on the same
tree (warm page cache); the build is timed end to end as a CLI process (interpreter start,
imports, lock, doit, every stage's check) and also in-process (run_build).  CLI processes use
a bytecode cache, as an installed package does (build_fixed_cost.env_with_bytecode_cache).

    python benchmarks/build_noop.py [--files 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from build_fixed_cost import env_with_bytecode_cache

from occlum_build.instance import new_instance
from occlum_build.pipeline.graph import BuildOptions
from occlum_build.pipeline.run import run_build


def make_tree(root: Path, n: int) -> None:
    rnd = random.Random(1)
    for i in range(n):
        d = root / f"d{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}").write_bytes(rnd.randbytes(rnd.randint(256, 8192)))


def walk(top: str) -> int:
    n = 0
    stack = [top]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                e.stat(follow_symlinks=False)
                n += 1
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
    return n


def timed(f, runs: int) -> float:
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inst = new_instance(Path(tmp) / "inst")
        make_tree(inst.image / "data", a.files)
        opts = BuildOptions(sgx_mode="SIM")
        devnull = open(os.devnull, "w")
        t0 = time.perf_counter()
        run_build(inst.root, opts, out=devnull)
        first = time.perf_counter() - t0
        base = timed(lambda: walk(str(inst.image)), a.runs)
        inproc = timed(lambda: run_build(inst.root, opts, out=devnull), a.runs)
        cmd = [sys.executable, "-m", "occlum_build.cli.main", "build", "--sgx-mode", "SIM"]
        env = env_with_bytecode_cache(os.path.join(tmp, "pycache"))
        cli_runs = []
        for _ in range(a.runs):
            cli_runs.append(timed(lambda: subprocess.run(cmd, cwd=inst.root, check=True, env=env,
                                                         stderr=subprocess.DEVNULL), 1))
        cli = statistics.median(cli_runs)
        py = timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), a.runs)
        entries = walk(str(inst.image))
    budget = 3 * base + 0.3
    print(f"image entries              {entries}")
    print(f"first build                {first:.3f} s")
    print(f"scandir+stat walk          {base:.4f} s   (baseline)")
    print(f"no-op build, in-process    {inproc:.3f} s   ratio {inproc / base:.1f}x")
    print(f"no-op build, CLI process   {cli:.3f} s   ratio {cli / base:.1f}x "
          f"(min {min(cli_runs):.3f}, max {max(cli_runs):.3f}; python -c pass: {py:.3f} s)")
    print(f"load average               {os.getloadavg()[0]:.2f}")
    print(f"aim: <= 3 x walk + 0.3 s = {budget:.3f} s -> CLI {'met' if cli <= budget else 'NOT met'}, "
          f"in-process {'met' if inproc <= budget else 'NOT met'}")


if __name__ == "__main__":
    main()
