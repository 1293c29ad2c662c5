#!/usr/bin/env python3
"""Image build throughput (P2), incremental cost (P3) and peak memory, in one run.

    python benchmarks/image_build.py [--size-mb 1024]

Builds a synthetic tree of --size-mb MiB in a temporary directory under --dir (deleted at
the end): half in 64 MiB files, 45% in 1 MiB files, 5% in 16 KiB files, all distinct
random contents; then the same at 1/8 of the size. Every measurement runs in a fresh child
process on a warm page cache, and each full build is compared with a baseline run right
before it (hashlib.sha256 reading the same files on one core):

  P2  full build (integrity-only; encrypted) vs. the baseline, by wall time and by CPU time
      (user+system of the build process, all its threads, and of any children)
  P3  rebuild after rewriting one 1 MiB file, and after adding one file at the front of the
      tree (every later inode id shifts), vs. the full integrity-only build
  peak memory: VmHWM of the full build at --size-mb vs. at 1/8 of it, and the largest
      worker process's (builds of over 64 MiB protect files on every CPU).
On a VM, memory the guest has never touched is slow to hand out the first time (the host
maps it on first touch: here a first build spent 0.78 s of system time writing 256 MiB, the
next one 0.11 s).  A machine that has run for a while has touched its memory; so before the
runs a child process touches (writes) 4x the tree's size of memory and exits ("prefault"),
and the first build is still shown in its own row ("first build").
Also printed per row: the CPU that other processes used meanwhile (from /proc/stat, in
cores), the full build with its output on tmpfs (/dev/shm) and a floor for the file
system's share (each file copied kernel-side to a new file, no hashing).
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
import hashlib, json, os, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
what, root = sys.argv[2], Path(sys.argv[3])
out = {}
def busy():
    # Non-idle jiffies of the whole machine (all CPUs): what other jobs used meanwhile.
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")
def cpu():
    # user+system of this process (all its threads) and of any children it waited for
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime
if what == "hash":
    t, c, m0 = time.perf_counter(), cpu(), busy()
    n = 0
    for p in sorted((root / "src").rglob("*")):
        if p.is_file():
            h = hashlib.sha256()
            with open(p, "rb", buffering=0) as f:
                while b := f.read(1 << 20):
                    h.update(b)
                    n += len(b)
    out["seconds"] = time.perf_counter() - t
    out["cpu"] = cpu() - c
    out["bytes"] = n
elif what == "copy":
    # The file system's share: each file copied (kernel side) to a new file in the output
    # directory and renamed, as the build does with its objects, with no hashing.
    dst = root / "copy"
    dst.mkdir()
    files = [p for p in sorted((root / "src").rglob("*")) if p.is_file()]
    t, c, m0 = time.perf_counter(), cpu(), busy()
    for i, p in enumerate(files):
        fi = os.open(p, os.O_RDONLY)
        fo = os.open(dst / f".t{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        left = os.fstat(fi).st_size
        while left > 0:
            left -= os.copy_file_range(fi, fo, left)
        os.close(fi)
        os.close(fo)
        os.rename(dst / f".t{i}", dst / f"o{i}")
    out["seconds"] = time.perf_counter() - t
    out["cpu"] = cpu() - c
else:
    from occlum_build.image import build_image
    key = bytes(range(16)) if what.startswith("encrypted") else None
    name = "enc" if key else "int"
    dst = Path(sys.argv[5]) if what.endswith("-tmpfs") else root / name
    c, m0 = cpu(), busy()
    r = build_image(root / "src", dst / "__ROOT", dst / ".ROOT_MAC", key=key,
                    cache_dir=dst / "state")
    out.update(seconds=r.seconds, cpu=cpu() - c, bytes_read=r.bytes_read, files=r.files,
               entries=r.entries,
               written=r.objects_written, reused=r.objects_reused)
out["others_cpu"] = max(0.0, busy() - m0 - out["cpu"])
# VmHWM: this process's peak RSS (ru_maxrss would carry the parent's over fork+exec).
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
out["maxrss_mb"] = int(hwm.split()[1]) / 1024
# the largest worker process of the build (image/protect_files.py), if it used any
out["worker_maxrss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps(out))
"""


def child(what: str, root: Path, dst: Path | None = None) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO), what, str(root), "0", str(dst)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(r.stdout)


def prefault(n: int) -> None:
    """Touch ``n`` bytes of memory in a child process (see the module docstring)."""
    code = "import sys; b = bytearray(int(sys.argv[1])); b[::4096] = b'x' * len(b[::4096])"
    subprocess.run([sys.executable, "-c", code, str(n)], check=True)


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


def run(size_mb: int, root: Path) -> dict:
    """Each full build is preceded by its own baseline run (which also re-warms the page
    cache): the machine's load drifts, so a ratio compares adjacent runs."""
    src = root / "src"
    one_mb = make_tree(src, size_mb << 20, b"bench")
    # The tree was just written: let its write-back finish now rather than during the timed
    # runs (an image/ tree is normally written well before it is built).
    os.sync()
    res: dict = {"size_mb": size_mb}

    def pair(name: str, what: str, dst: Path | None = None) -> None:
        h = child("hash", root)
        b = res[name] = child(what, root, dst)
        b["wall_ratio"] = h["seconds"] / b["seconds"]
        b["cpu_ratio"] = h["cpu"] / b["cpu"]
        b["hash"] = h

    prefault(4 * (size_mb << 20))
    pair("cold", "integrity")
    shutil.rmtree(root / "int")
    pair("full", "integrity")
    # A rebuild trusts the objects directory without listing it only if it last changed
    # more than cache.RACY_NS (100 ms) before the previous build saved its manifest; a
    # child started right after the full build can fall inside that window (then it lists
    # the 3744 objects, ~5 ms). An edit-and-rebuild comes later than that: wait it out.
    time.sleep(0.2)
    res["noop"] = child("integrity", root)
    time.sleep(0.2)
    with open(one_mb, "r+b") as f:
        f.write(os.urandom(1 << 20))
    res["one_file"] = child("integrity", root)
    time.sleep(0.2)
    # "0front" sorts before every other top-level name: it takes the first id after the
    # root, and every other inode's id moves up by one.
    (src / "0front").write_bytes(os.urandom(16 << 10))
    res["add_front"] = child("integrity", root)
    # Each output is deleted once measured: its page-cache memory goes back to the free
    # lists, already touched, for the next build (as on a machine that has run a while).
    shutil.rmtree(root / "int")
    pair("encrypted", "encrypted")
    shutil.rmtree(root / "enc")
    if Path("/dev/shm").is_dir():
        shm = Path(tempfile.mkdtemp(prefix="occlum-image-bench-", dir="/dev/shm"))
        try:
            pair("tmpfs", "integrity-tmpfs", shm / "int")
            pair("enc_tmpfs", "encrypted-tmpfs", shm / "enc")
        finally:
            shutil.rmtree(shm, ignore_errors=True)
    pair("copy", "copy")
    res["P3_percent"] = 100 * res["one_file"]["seconds"] / res["full"]["seconds"]
    res["front_percent"] = 100 * res["add_front"]["seconds"] / res["full"]["seconds"]
    res["noop_percent"] = 100 * res["noop"]["seconds"] / res["full"]["seconds"]
    return res


def show(r: dict) -> None:
    h = r["full"]["hash"]
    print(f"== {r['size_mb']} MiB, {r['full']['files']} files, {os.cpu_count()} CPUs")
    print(f"  {'':44} {'wall s':>7} {'CPU s':>7}  ratio: wall  CPU   others' load")

    def row(label: str, b: dict, note: str = "") -> None:
        load = b["others_cpu"] / b["seconds"] if b["seconds"] else 0.0
        ratios = f"{b['wall_ratio']:5.2f}x {b['cpu_ratio']:5.2f}x" if "wall_ratio" in b else " " * 13
        print(f"  {label:44} {b['seconds']:7.3f} {b['cpu']:7.3f}  {ratios}  {load:4.2f} cores {note}")

    print(
        f"  baseline: hashlib.sha256, 1 core: {h['seconds']:.3f} s wall, {h['cpu']:.3f} s CPU, "
        f"{h['bytes'] / h['seconds'] / 1e6:.0f} MB/s"
    )
    row("first build, integrity-only, on disk", r["cold"])
    row("P2 full build, integrity-only, output on disk", r["full"])
    row("   same, output on tmpfs /dev/shm", r["tmpfs"]) if "tmpfs" in r else None
    row("P2 full build, encrypted, output on disk", r["encrypted"])
    row("   same, output on tmpfs /dev/shm", r["enc_tmpfs"]) if "enc_tmpfs" in r else None
    row("   floor: copy files to new files, no hash", r["copy"])
    row("no-op rebuild", r["noop"], f"{r['noop_percent']:.2f}% of full")
    row("P3 one 1 MiB file changed", r["one_file"], f"{r['P3_percent']:.2f}% of full")
    row("P3 one file added at the front (ids shift)", r["add_front"],
        f"{r['front_percent']:.2f}% of full, {r['add_front']['written']} files written")
    rss = [f"{k} {r[k]['maxrss_mb']:.0f} MB (largest worker {r[k]['worker_maxrss_mb']:.0f} MB)"
           for k in ("full", "encrypted", "one_file")]
    print(f"  peak RSS: baseline {h['maxrss_mb']:.0f} MB, " + ", ".join(rss))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument(
        "--dir",
        default="/var/tmp",
        help="where the trees and images are made (default /var/tmp: on the shared CI VM, /tmp is "
        "full of just-deleted test files, which makes every file creation there ~15x slower)",
    )
    args = ap.parse_args()
    print(
        f"trees and images under {args.dir}; load average at start: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    results = []
    # The large tree first: deleting a tree makes file creation in the same block group
    # slower for a while on ext4 without a journal (docs/benchmarks.md).
    for size in (args.size_mb, max(8, args.size_mb // 8)):
        root = Path(tempfile.mkdtemp(prefix="occlum-image-bench-", dir=args.dir))
        try:
            results.append(run(size, root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    big, small = results
    for r in results:
        show(r)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    grow = big["full"]["maxrss_mb"] / small["full"]["maxrss_mb"]
    print("summary:")
    print(
        f"  P2 integrity-only {big['full']['wall_ratio']:.2f}x wall, {big['full']['cpu_ratio']:.2f}x CPU "
        f"(output on tmpfs: {big['tmpfs']['wall_ratio']:.2f}x wall, {big['tmpfs']['cpu_ratio']:.2f}x CPU)"
    )
    print(
        f"  P2 encrypted      {big['encrypted']['wall_ratio']:.2f}x wall, "
        f"{big['encrypted']['cpu_ratio']:.2f}x CPU (output on tmpfs: "
        f"{big['enc_tmpfs']['wall_ratio']:.2f}x wall, {big['enc_tmpfs']['cpu_ratio']:.2f}x CPU)"
    )
    print(f"  P3                {big['P3_percent']:.2f}% of the full build (one 1 MiB file); "
          f"{big['front_percent']:.2f}% (a file added at the front)")
    print(
        f"  peak memory       full build at {big['size_mb']} MiB / at {small['size_mb']} MiB: {grow:.2f}x "
        f"({big['full']['maxrss_mb']:.0f} / {small['full']['maxrss_mb']:.0f} MB; "
        f"{big['full']['files']} vs {small['full']['files']} files)"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
