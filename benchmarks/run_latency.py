#!/usr/bin/env python3
"""Added start-up latency of `occlum run /bin/hello` over running the same binary natively.

Builds a fresh instance (occlum new, occlum-gcc hello, occlum build --sgx-mode SIM), then
times N runs of: the binary natively; occlum-run directly (verified boot + FUSE mount +
namespaces + exec); and `occlum run` through the CLI (adds the Python start-up).  Prints
medians and the added latency; the goal is <= 50 ms added (docs/benchmarks.md).

    python benchmarks/run_latency.py [-n 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.runtime.rt_helpers import BIN, HELLO_C, OCCLUM, build  # noqa: E402


def timed(argv: list[str], cwd: Path, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = subprocess.run(argv, cwd=cwd, capture_output=True)
        out.append(time.perf_counter() - t)
        if r.returncode != 0 or r.stdout != b"Hello World\n":
            raise SystemExit(f"{argv}: failed: {r.stderr.decode()}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20)
    n = ap.parse_args().n
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        subprocess.run([OCCLUM, "new", str(d / "inst")], check=True, capture_output=True)
        inst = d / "inst"
        (d / "hello.c").write_text(HELLO_C)
        env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
        subprocess.run(["occlum-gcc", "-o", "image/bin/hello", "../hello.c"], cwd=inst, env=env, check=True)
        build(inst)
        native = timed([str(inst / "image/bin/hello")], inst, n)
        run = timed([str(inst / "build/bin/occlum-run"), "--instance", str(inst), "/bin/hello"], inst, n)
        cli = timed([OCCLUM, "run", "/bin/hello"], inst, n)
    med = {k: statistics.median(v) * 1000 for k, v in (("native", native), ("occlum-run", run),
                                                         ("occlum run", cli))}
    print(f"runs per case: {n} (medians)")
    for k, v in med.items():
        print(f"  {k:<12} {v:8.1f} ms")
    added = med["occlum-run"] - med["native"]
    print(f"added by the runtime (occlum-run - native): {added:.1f} ms  (goal <= 50 ms: "
          f"{'met' if added <= 50 else 'NOT met'})")
    print(f"added by occlum run (CLI, incl. Python start-up): {med['occlum run'] - med['native']:.1f} ms")
    print(f"ratio occlum-run / native: {med['occlum-run'] / med['native']:.1f}x")


if __name__ == "__main__":
    main()
