#!/usr/bin/env python3
"""Sequential read of a 256 MB file through occlum-fs (verification on) vs a plain C FUSE
passthrough of the same file.  Prints MB/s and the ratio; aim >= 0.5x.  Needs root (FUSE).

    python benchmarks/fs_read.py [--size-mb 256] [--runs 3] [--workdir DIR]

Both servers use the same libfuse API, multi-threaded loop and cache settings; each run is a
fresh mount (so the kernel page cache of the FUSE file is cold) while the backing files are
warm in the host page cache (so the disk is not measured).  The passthrough baseline
(libos/bench/passthrough.c) is compiled here and not shipped.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from occlum_build.image import build_image  # noqa: E402
from occlum_build.keys import format_hex16  # noqa: E402
from tests.runtime.fsmount import Mount, occlum_fs_binary  # noqa: E402

CHUNK = 1 << 20


def read_all(path: Path) -> tuple[int, float]:
    buf = bytearray(CHUNK)
    n = 0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while (k := f.readinto(buf)) > 0:
            n += k
    return n, time.perf_counter() - t0


def warm(directory: Path) -> None:
    for p in directory.rglob("*"):
        if p.is_file():
            read_all(p)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def passthrough_run(binary: Path, src: Path, mnt: Path, name: str) -> tuple[float, float]:
    proc = subprocess.Popen([str(binary), str(src), str(mnt)])
    try:
        for _ in range(200):
            if os.path.ismount(mnt):
                break
            time.sleep(0.05)
        c0 = cpu_seconds(proc.pid)
        n, dt = read_all(mnt / name)
        cpu = cpu_seconds(proc.pid) - c0
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        proc.wait(timeout=60)
    return n / dt / 1e6, cpu


def occlum_fs_run(out: Path, mac: Path, mnt: Path, name: str, extra: list[str]) -> tuple[float, float]:
    with Mount(out, mac, None, mnt, "--read-only", *extra) as m:
        c0 = cpu_seconds(m.proc.pid)
        n, dt = read_all(mnt / name)
        cpu = cpu_seconds(m.proc.pid) - c0
    return n / dt / 1e6, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("fs_read: needs root (FUSE)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="fs_read.") as tmp_s:
        tmp = Path(tmp_s)
        pt = tmp / "passthrough"
        subprocess.run(
            f"gcc -std=c11 -O2 -Wall -Wextra -Werror {REPO}/libos/bench/passthrough.c -o {pt} "
            "$(pkg-config --cflags --libs fuse3)", shell=True, check=True)
        occlum_fs_binary()
        src = tmp / "src"
        src.mkdir()
        name = "big.bin"
        with open(src / name, "wb") as f:
            for _ in range(args.size_mb):
                f.write(os.urandom(CHUNK))
        key = bytes(range(16))
        (tmp / "key").write_text(format_hex16(key))
        images = {}
        for mode, k in (("integrity-only", None), ("encrypted", key)):
            out, mac = tmp / mode / "image", tmp / mode / "MAC"
            build_image(src, out, mac, key=k, cache_dir=tmp / mode / "cache")
            images[mode] = (out, mac, ["--image-key", str(tmp / "key")] if k else [])
        mnt = tmp / "mnt"
        mnt.mkdir()
        # Rounds interleave the three servers so that load from other processes on the
        # machine hits them alike; the ratio is taken per round, then the median.
        runs: dict[str, list[float]] = {"passthrough": [], **{m: [] for m in images}}
        cpus: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.runs):
            warm(src)
            mbs, cpu = passthrough_run(pt, src, mnt, name)
            runs["passthrough"].append(mbs)
            cpus["passthrough"].append(cpu)
            for mode, (out, mac, extra) in images.items():
                warm(out)
                mbs, cpu = occlum_fs_run(out, mac, mnt, name, extra)
                runs[mode].append(mbs)
                cpus[mode].append(cpu)
        base = runs["passthrough"]
        print(f"file: {args.size_mb} MB, {args.runs} rounds of fresh mounts, median MB/s")
        print(f"  passthrough (C, no verification) : {statistics.median(base):8.0f} MB/s"
              f"  {[round(x) for x in base]}  server CPU {statistics.median(cpus['passthrough']):.2f} s")
        for mode in images:
            r = runs[mode]
            ratio = statistics.median(x / y for x, y in zip(r, base, strict=True))
            print(f"  occlum-fs {mode:<15s}        : {statistics.median(r):8.0f} MB/s"
                  f"  {[round(x) for x in r]}  ratio {ratio:.2f}x"
                  f"  server CPU {statistics.median(cpus[mode]):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
