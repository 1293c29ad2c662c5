#!/usr/bin/env python3
"""Image build throughput (P2), incremental cost (P3) and peak memory.

    python benchmarks/image_build.py [--size-mb 1024] [--jobs 0]

Builds a synthetic tree of --size-mb MiB in a temporary directory under /tmp (deleted at
the end): half in 64 MiB files, 45% in 1 MiB files, 5% in 16 KiB files, all distinct
random contents. Every measurement runs in a fresh child process (so ru_maxrss is its
own) on a warm page cache, and is compared with a baseline measured in the same run:

  P2  full integrity-only build vs. hashlib.sha256 reading the same files on one core
      (a baseline run right before each build), by wall time and by CPU time (user+system of the process,
      which other load on the machine disturbs less); encrypted build reported the same way
  P3  rebuild after rewriting one 1 MiB file vs. the full integrity-only build
  no-op rebuild, and peak RSS of each child at --size-mb and at 1/8 of it.
The full integrity-only build is also run with its output on tmpfs (/dev/shm, deleted at
the end), which separates our CPU cost from the cost of creating files on the disk file
system (high and variable under /tmp on the shared CI machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import hashlib, json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
what, root = sys.argv[2], Path(sys.argv[3])
out = {}
if what == "hash":
    t, c = time.perf_counter(), time.process_time()
    n = 0
    for p in sorted((root / "src").rglob("*")):
        if p.is_file():
            h = hashlib.sha256()
            with open(p, "rb", buffering=0) as f:
                while b := f.read(1 << 20):
                    h.update(b)
                    n += len(b)
    out["seconds"] = time.perf_counter() - t
    out["cpu"] = time.process_time() - c
    out["bytes"] = n
else:
    from occlum_build.image import build_image
    key = bytes(range(16)) if what == "encrypted" else None
    name = "enc" if key else "int"
    dst = Path(sys.argv[5]) if what == "integrity-tmpfs" else root / name
    c = time.process_time()
    r = build_image(root / "src", dst / "__ROOT", dst / ".ROOT_MAC", key=key,
                    cache_dir=dst / "state", jobs=int(sys.argv[4]))
    out.update(seconds=r.seconds, cpu=time.process_time() - c, bytes_read=r.bytes_read, files=r.files,
               entries=r.entries,
               written=r.objects_written, reused=r.objects_reused)
# VmHWM: this process's peak RSS (ru_maxrss would carry the parent's over fork+exec).
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
out["maxrss_mb"] = int(hwm.split()[1]) / 1024
print(json.dumps(out))
"""


def child(what: str, root: Path, jobs: int, dst: Path | None = None) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO), what, str(root), str(jobs), str(dst)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(r.stdout)


def make_tree(src: Path, total: int, seed: bytes) -> Path:
    """Return the path of one 1 MiB file (the one P3 rewrites)."""
    pool = os.urandom((64 << 20) + (1 << 20))
    plan = [(64 << 20, total // 2), (1 << 20, total * 45 // 100), (16 << 10, total // 20)]
    k = 0
    one_mb = None
    for size, budget in plan:
        d = src / f"s{size}"
        for i in range(max(1, budget // size)):
            sub = d / f"{i // 256:03d}"
            sub.mkdir(parents=True, exist_ok=True)
            off = (k * 7919) % (len(pool) - size)
            head = seed + k.to_bytes(8, "little")
            p = sub / f"f{i}"
            with open(p, "wb") as f:
                f.write(head)
                f.write(memoryview(pool)[off + len(head) : off + size])
            if size == 1 << 20 and one_mb is None:
                one_mb = p
            k += 1
    assert one_mb is not None
    return one_mb


def create_cost(d: Path, n: int) -> float:
    """Seconds to create and rename n empty files in d (what each new object costs besides
    its bytes); on this machine it differs a lot between directories of one file system."""
    d.mkdir()
    t = time.perf_counter()
    for i in range(n):
        fd = os.open(d / f".t{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        os.rename(d / f".t{i}", d / f"o{i}")
    secs = time.perf_counter() - t
    shutil.rmtree(d)
    return secs


def run(size_mb: int, jobs: int, root: Path) -> dict:
    """Each full build is preceded by its own baseline run (which also re-warms the page
    cache): the machine's load drifts, so a ratio compares adjacent runs."""
    src = root / "src"
    one_mb = make_tree(src, size_mb << 20, b"bench")
    res: dict = {"size_mb": size_mb}
    h = child("hash", root, jobs)
    full = child("integrity", root, jobs)
    res["hash"] = {
        "seconds": h["seconds"],
        "mb_s": h["bytes"] / h["seconds"] / 1e6,
        "maxrss_mb": h["maxrss_mb"],
    }
    res["full"] = full
    res["P2_ratio"] = h["seconds"] / full["seconds"]
    res["P2_cpu_ratio"] = h["cpu"] / full["cpu"]
    res["noop"] = child("integrity", root, jobs)
    with open(one_mb, "r+b") as f:
        f.write(os.urandom(1 << 20))
    res["one_file"] = child("integrity", root, jobs)
    h = child("hash", root, jobs)
    res["encrypted"] = child("encrypted", root, jobs)
    res["P2_encrypted_ratio"] = h["seconds"] / res["encrypted"]["seconds"]
    res["P2_encrypted_cpu_ratio"] = h["cpu"] / res["encrypted"]["cpu"]
    if Path("/dev/shm").is_dir():
        shm = Path(tempfile.mkdtemp(prefix="occlum-image-bench-", dir="/dev/shm"))
        try:
            h = child("hash", root, jobs)
            res["tmpfs"] = child("integrity-tmpfs", root, jobs, shm)
        finally:
            shutil.rmtree(shm, ignore_errors=True)
        res["P2_tmpfs_ratio"] = h["seconds"] / res["tmpfs"]["seconds"]
        res["P2_tmpfs_cpu_ratio"] = h["cpu"] / res["tmpfs"]["cpu"]
    res["creates"] = create_cost(root / "create-test", full["files"])
    res["P3_percent"] = 100 * res["one_file"]["seconds"] / full["seconds"]
    res["noop_percent"] = 100 * res["noop"]["seconds"] / full["seconds"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--jobs", type=int, default=0, help="worker threads (0: one per CPU)")
    args = ap.parse_args()
    results = []
    for size in (max(8, args.size_mb // 8), args.size_mb):
        root = Path(tempfile.mkdtemp(prefix="occlum-image-bench-", dir="/tmp"))
        try:
            results.append(run(size, args.jobs, root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    small, big = results
    for r in results:
        print(f"== {r['size_mb']} MiB, {r['full']['files']} files, {os.cpu_count()} CPUs, jobs={args.jobs}")
        rows = [
            ("baseline hashlib.sha256, 1 core", r["hash"]["seconds"], f"{r['hash']['mb_s']:.0f} MB/s"),
            (
                "full build, integrity-only",
                r["full"]["seconds"],
                f"P2 ratio {r['P2_ratio']:.2f}x wall, {r['P2_cpu_ratio']:.2f}x CPU time",
            ),
            (
                "full build, encrypted",
                r["encrypted"]["seconds"],
                f"ratio {r['P2_encrypted_ratio']:.2f}x wall, {r['P2_encrypted_cpu_ratio']:.2f}x CPU time",
            ),
            ("no-op rebuild", r["noop"]["seconds"], f"{r['noop_percent']:.2f}% of full"),
            ("one 1 MiB file changed", r["one_file"]["seconds"], f"P3 {r['P3_percent']:.2f}% of full"),
        ]
        if "tmpfs" in r:
            rows.insert(
                2,
                (
                    "  same, output on tmpfs /dev/shm",
                    r["tmpfs"]["seconds"],
                    f"ratio {r['P2_tmpfs_ratio']:.2f}x wall, {r['P2_tmpfs_cpu_ratio']:.2f}x CPU time",
                ),
            )
        for label, secs, note in rows:
            print(f"  {label:<34} {secs:8.3f} s  {note}")
        print(
            f"  (creating+renaming {r['full']['files']} empty files in the output directory alone takes "
            f"{r['creates']:.3f} s)"
        )
        rss = [f"{k} {r[k]['maxrss_mb']:.0f} MB" for k in ("hash", "full", "encrypted", "one_file")]
        print("  peak RSS: " + ", ".join(rss))
    grow = big["full"]["maxrss_mb"] - small["full"]["maxrss_mb"]
    print(f"peak RSS growth from {small['size_mb']} to {big['size_mb']} MiB (full build): {grow:+.1f} MB")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
