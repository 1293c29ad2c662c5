"""`occlum-sgx-sign sign` wall time, as a process, against C baselines measured in the same run.

Enclave: the small vector tests/vectors/occlum-interop/signing-sdk220 (37 KB, SDK 2.20 profile,
Occlum's default config: 32 threads of 1 MB stack, 32 MB heap, 300 MB reserved memory).

  ours:      occlum-sgx-sign sign -key K -enclave E -config X -out O -date 20250115
             (interpreter start, imports, ELF parse, layout, measurement, RSA-3072, write)
  stream:    openssl dgst -sha256 over the enclave's whole ECREATE/EADD/EEXTEND record stream
             (written to a file beforehand), then openssl pkeyutl -sign of that digest with the
             same key (two processes: start-up, key load, hash, RSA): the C floor of what
             sgx_sign really does, and issue 12's baseline (goal: ours <= 3x)
  baseline:  the same over the signed file (37 KB) instead of the stream

Each case runs --runs times, interleaved; the median and minimum wall time and the median CPU
time (user + system of the processes, less sensitive to other load on the machine) are printed,
with the ratios ours/stream and ours/baseline.  CLI processes use a bytecode cache, as an
installed package does.  --profile adds the import time per top-level package (`python -X
importtime`).  --heap-gb N signs with the vector's config but an N GiB heap (HeapMin/Init/Max),
e.g. 16: a 312 MB record stream.

    python benchmarks/sign_cli.py [--runs 15] [--profile] [--heap-gb 16]
"""

from __future__ import annotations

import argparse
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from build_fixed_cost import env_with_bytecode_cache

VEC = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "occlum-interop" / "signing-sdk220"
ENCLAVE, KEY, CONFIG = VEC / "enclave.so", VEC / "signing_key.pem", VEC / "default" / "Enclave.xml"


def timed(cmds: list[list[str]], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall, CPU user+system) seconds of running ``cmds`` one after the other."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    for c in cmds:
        subprocess.run(c, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def config_with_heap(gib: int) -> bytes:
    """The vector's Enclave.xml with HeapMinSize = HeapInitSize = HeapMaxSize = ``gib`` GiB."""
    return re.sub(rb"<(Heap(?:Min|Init|Max)Size)>\d+</", lambda m: b"<%s>%d</" % (m[1], gib << 30),
                  CONFIG.read_bytes())


def record_stream(path: Path, config: bytes) -> int:
    """Write the enclave's measurement record stream to ``path``; return its size."""
    from occlum_build.sgx.elf import parse_enclave
    from occlum_build.sgx.enclave_xml import parse_enclave_xml
    from occlum_build.sgx.layout import build_metadata
    from occlum_build.sgx.loader import measure_layout, measure_sections
    from occlum_build.sgx.measure import Measurement

    so = ENCLAVE.read_bytes()
    elf = parse_enclave(so)
    built = build_metadata(elf, parse_enclave_xml(config))
    image = bytearray(so)
    for dst, src, size in built.patches:
        image[dst:dst + size] = built.buf[src:src + size]
    with path.open("wb") as f:
        m = Measurement(f.write)
        m.ecreate(built.ssa_frame_size, built.ecreate_size)
        measure_sections(m, bytes(image), elf.segments, built.version, built.page_delta, elf.reloc_bitmap)
        measure_layout(m, built.layout, built.buf, built.page_delta)
        m.digest()
    return path.stat().st_size


def import_profile(env: dict[str, str]) -> None:
    """Import time of the sign command by top-level package: the sum of each module's own
    ("self") time, so nothing is counted twice (`-X importtime` inflates the totals a little)."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", "import occlum_build.cli.sgxsign"],
                       env=env, check=True, capture_output=True, text=True)
    tops: dict[str, int] = {}
    for line in r.stderr.splitlines():  # "import time: self | cumulative | <2 spaces per level>name"
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        top = parts[2].strip().split(".")[0]
        tops[top] = tops.get(top, 0) + int(parts[0].split(":")[1])
    print(f"imports: {sum(tops.values()) / 1e3:.1f} ms, by top-level package (self times)")
    for k, v in sorted(tops.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {k:<16}{v / 1e3:>7.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--heap-gb", type=int, default=0, help="sign with an N GiB heap instead")
    a = ap.parse_args()
    if shutil.which("openssl") is None:
        sys.exit("openssl is needed for the baseline")
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        env = env_with_bytecode_cache(str(t / "pycache"))
        tool = shutil.which("occlum-sgx-sign")
        config = config_with_heap(a.heap_gb) if a.heap_gb else CONFIG.read_bytes()
        (t / "Enclave.xml").write_bytes(config)
        ours_cmd = ([tool] if tool else [sys.executable, "-m", "occlum_build.cli.sgxsign"]) + [
            "sign", "-key", str(KEY), "-enclave", str(ENCLAVE), "-config", str(t / "Enclave.xml"),
            "-out", str(t / "signed.so"), "-date", "20250115"]
        subprocess.run(ours_cmd, env=env, check=True, capture_output=True)
        if not a.heap_gb:
            assert (t / "signed.so").read_bytes() == (VEC / "default" / "enclave.signed.so").read_bytes()
        stream_size = record_stream(t / "stream.bin", config)

        def c_sign(data: Path) -> list[list[str]]:
            return [["openssl", "dgst", "-sha256", "-binary", "-out", str(t / "digest"), str(data)],
                    ["openssl", "pkeyutl", "-sign", "-inkey", str(KEY), "-pkeyopt", "digest:sha256",
                     "-in", str(t / "digest"), "-out", str(t / "sig")]]

        py_start = [sys.executable, "-c", "pass"]
        rows: dict[str, list[tuple[float, float]]] = {"ours": [], "stream": [], "baseline": [],
                                                      "python -c pass": []}
        for _ in range(a.runs):
            rows["ours"].append(timed([ours_cmd], env))
            rows["stream"].append(timed(c_sign(t / "stream.bin")))
            rows["baseline"].append(timed(c_sign(t / "signed.so")))
            rows["python -c pass"].append(timed([py_start], env))
        wall = {k: statistics.median(w for w, _ in v) for k, v in rows.items()}
        low = {k: min(w for w, _ in v) for k, v in rows.items()}
        cpu = {k: statistics.median(c for _, c in v) for k, v in rows.items()}
        heap = f", heap {a.heap_gb} GiB" if a.heap_gb else ""
        print(f"enclave {ENCLAVE.stat().st_size / 1e3:.0f} KB{heap}, record stream "
              f"{stream_size / 1e6:.1f} MB, {a.runs} runs (ms)")
        print(f"  {'case':<16}{'wall med':>10}{'wall min':>10}{'cpu med':>10}")
        for k in rows:
            print(f"  {k:<16}{wall[k] * 1e3:>10.1f}{low[k] * 1e3:>10.1f}{cpu[k] * 1e3:>10.1f}")
        for base in ("stream", "baseline"):
            print(f"ratio ours/{base:<9} wall med {wall['ours'] / wall[base]:5.2f}  wall min "
                  f"{low['ours'] / low[base]:5.2f}  cpu {cpu['ours'] / cpu[base]:5.2f}"
                  + ("   (goal <= 3)" if base == "stream" else ""))
        if a.profile:
            import_profile(env)


if __name__ == "__main__":
    main()
