"""The fixed cost of one `occlum build` process, and where it goes.

On a fresh instance (`occlum new`, nothing added: ~6 MiB of image), each CLI process is timed
end to end for a no-op build and for a rebuild after editing one 1 MiB file of image/; a probe
process then splits the same builds into interpreter start, imports and the build itself
(doit, stage checks, stage work, fsyncs), with the stage times from build/report.json.

The CLI runs with a bytecode cache (as an installed package has), even when the environment
sets PYTHONDONTWRITEBYTECODE: otherwise every process recompiles occlum_build (~0.2 s).

    python benchmarks/build_fixed_cost.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from occlum_build.instance import new_instance

# The modules a one-file rebuild imports (a no-op imports all but the sgx ones).
_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import occlum_build.cli.main as m
m.build_parser()
import occlum_build.pipeline.run, occlum_build.pipeline.report, occlum_build.image, occlum_build.config
if sys.argv[1] == "edit":
    import occlum_build.sgx.sign, occlum_build.sgx.elf, occlum_build.sgx.signer
t1 = time.perf_counter()
import contextlib, io
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
    rc = m.main(["build", "--sgx-mode", "SIM", "--json"])
t2 = time.perf_counter()
rep = json.loads(out.getvalue())
print(json.dumps({"imports": t1 - t0, "build": t2 - t1,
                  "stages": {k: v["seconds"] for k, v in rep["stages"].items() if v["ran"]}}))
"""


def env_with_bytecode_cache(cache: str) -> dict[str, str]:
    """The environment for CLI processes: bytecode cached in ``cache`` (filled here)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache
    mods = ("occlum_build.cli.main", "occlum_build.pipeline.run", "occlum_build.pipeline.report",
            "occlum_build.image", "occlum_build.config", "occlum_build.sgx.sign",
            "occlum_build.sgx.elf", "occlum_build.sgx.signer")
    subprocess.run([sys.executable, "-c", "import " + ", ".join(mods)], env=env, check=True)
    return env


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = env_with_bytecode_cache(os.path.join(tmp, "pycache"))
        inst = new_instance(Path(tmp) / "inst")
        victim = inst.image / "data.bin"
        victim.write_bytes(os.urandom(1 << 20))
        cli = [sys.executable, "-m", "occlum_build.cli.main", "build", "--sgx-mode", "SIM"]

        def run(cmd: list[str]) -> tuple[float, str]:
            t0 = time.perf_counter()
            r = subprocess.run(cmd, cwd=inst.root, env=env, check=True, capture_output=True, text=True)
            return time.perf_counter() - t0, r.stdout

        def edit() -> None:
            victim.write_bytes(os.urandom(1 << 20))

        run(cli)  # first build (dev key, bytecode cache)
        time.sleep(2.1)  # let the tree age past the racy window of the tree stamp
        run(cli)
        py = [run([sys.executable, "-c", "pass"])[0] for _ in range(a.runs)]
        noop = [run(cli)[0] for _ in range(a.runs)]
        edits = []
        for _ in range(a.runs):
            edit()
            edits.append(run(cli)[0])
        probes: dict[str, list[dict]] = {"noop": [], "edit": []}
        for _ in range(a.runs):
            probes["noop"].append(json.loads(run([sys.executable, "-c", _PROBE, "noop"])[1]))
            edit()
            probes["edit"].append(json.loads(run([sys.executable, "-c", _PROBE, "edit"])[1]))

    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs):.3f} (min {min(xs):.3f}, max {max(xs):.3f})"

    print(f"load average {os.getloadavg()[0]:.2f}; {a.runs} runs each; seconds, median (min, max)")
    print(f"python -c pass                 {med(py)}")
    print(f"no-op build, CLI process       {med(noop)}")
    print(f"1 MiB file edited, CLI process {med(edits)}")
    for kind in ("noop", "edit"):
        ps = probes[kind]
        print(f"{kind:>4}: imports {med([p['imports'] for p in ps])}  build {med([p['build'] for p in ps])}")
        names = sorted({n for p in ps for n in p["stages"]})
        st = {n: statistics.median([p["stages"].get(n, 0.0) for p in ps]) for n in names}
        print("      stages that ran (median s): " + ", ".join(f"{n} {v:.3f}" for n, v in st.items()))


if __name__ == "__main__":
    main()
