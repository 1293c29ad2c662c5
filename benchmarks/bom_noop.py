#!/usr/bin/env python3
"""Benchmark: a second copy_bom run over an unchanged tree vs a bare scandir+stat walk.

The bom includes the shipped bom/python3.yaml: Debian's python3 (the binary, /usr/lib/python3.11
with lib-dynload, and every library they need), copied into a fresh root.  After one real run,
the no-change run must copy nothing; its time is compared with the least any tool must do:
walk the source tree with os.scandir and stat every entry; and with the floor of any
no-change check: that walk plus one lstat of each entry's destination.  Two no-change runs
are timed: the plain one (as the CLI runs it), which answers from the run stamp of the
previous run (occlum_build/bom/stamp.py: one stat per recorded path), and the full one
(bom parsing, planning with ELF dependency resolution with the ELF cache that the first run
filled, the quick check of every destination file), forced by passing a resolver.
``--repeat`` runs of each, alternating; best and median wall time and median CPU time of
each are printed.

    python benchmarks/bom_noop.py [--repeat N]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from occlum_build.bom import copy_bom, elfcache
from occlum_build.bom.elfdeps import Resolver

BOM = "includes: [base.yaml, python3.yaml]\n"  # both shipped in bom/
SOURCES = ["/usr/bin/python3.11", "/usr/lib/python3.11"]
EXCLUDED = {"/usr/lib/python3.11/test"}  # python3.yaml excludes it: not walked by either side


def bare_walk(paths: list[str], dest_root: str | None = None) -> int:
    """scandir + one stat per source entry; with ``dest_root``, also one lstat of where each
    entry lies in the root (the floor of a no-change run: both sides of every file checked)."""
    n = 0
    stack = []
    for p in paths:
        os.stat(p)
        if dest_root is not None:
            os.lstat(dest_root + p)
        n += 1
        if os.path.isdir(p):
            stack.append(p)
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                e.stat(follow_symlinks=False)
                if dest_root is not None and e.path not in EXCLUDED:
                    os.lstat(dest_root + e.path)
                n += 1
                if e.is_dir(follow_symlinks=False) and e.path not in EXCLUDED:
                    stack.append(e.path)
    return n


Times = list[tuple[float, float]]


def interleaved(funcs: list, repeat: int) -> tuple[list[Times], list[object]]:
    """(wall, CPU) times of each function, run in turn so that machine load hits all alike."""
    times: list[Times] = [[] for _ in funcs]
    results: list[object] = [None] * len(funcs)
    for _ in range(repeat):
        for i, f in enumerate(funcs):
            t, c = time.perf_counter(), time.process_time()
            results[i] = f()
            times[i].append((time.perf_counter() - t, time.process_time() - c))
    return times, results


def spread(times: Times) -> str:
    wall = sorted(w for w, _ in times)
    cpu = sorted(c for _, c in times)
    return (f"best {wall[0] * 1000:6.1f} ms, median {wall[len(wall) // 2] * 1000:6.1f} ms wall; "
            f"CPU median {cpu[len(cpu) // 2] * 1000:6.1f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args()
    logging.getLogger("occlum").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        bom = Path(tmp) / "python.yaml"
        bom.write_text(BOM)
        root = Path(tmp) / "instance" / "image"
        os.environ[elfcache.CACHE_ENV] = str(Path(tmp) / "elf-cache.json")  # filled by the first run
        t = time.perf_counter()
        first = copy_bom(bom, root)
        t_first = time.perf_counter() - t
        time.sleep(0.2)  # past the racy window of the files just written (stamp.py)
        copy_bom(bom, root)  # writes the stamp if the first run could not
        cache = elfcache.ElfCache.default()
        (noop, full, walk, floor), (rep, frep, n, _) = interleaved(
            [lambda: copy_bom(bom, root), lambda: copy_bom(bom, root, resolver=Resolver(None, cache)),
             lambda: bare_walk(SOURCES), lambda: bare_walk(SOURCES, str(root))],
            a.repeat)
        assert not rep.changed, rep.operations[:5]  # type: ignore[union-attr]
        assert not frep.changed and frep.up_to_date == rep.up_to_date  # type: ignore[union-attr]

    def best(t: Times) -> float:
        return min(w for w, _ in t)

    def med(t: Times) -> float:
        return sorted(w for w, _ in t)[len(t) // 2]

    def cpu(t: Times) -> float:
        return sorted(c for _, c in t)[len(t) // 2]

    print(f"tree: {n} source entries, {first.files_copied} files / {first.bytes_copied >> 20} MiB copied "
          f"by the first run ({t_first * 1000:.0f} ms), {len(first.libraries)} of them libraries")
    print(f"bare os.scandir+stat walk:   {spread(walk)}")
    print(f"same + lstat of each dest:   {spread(floor)}  (the floor: both sides of every entry)")
    print(f"copy_bom, nothing to copy:   {spread(noop)}  ({rep.up_to_date} files checked)")  # type: ignore[union-attr]
    print(f"  same, full run (no stamp): {spread(full)}")
    print(f"ratio: {best(noop) / best(walk):.2f}x the bare walk (best of each; median "
          f"{med(noop) / med(walk):.2f}x); full run {best(full) / best(walk):.2f}x; the floor is "
          f"{best(floor) / best(walk):.2f}x (median {med(floor) / med(walk):.2f}x)")
    print(f"by median CPU time: copy_bom {cpu(noop) / cpu(walk):.2f}x the bare walk, full run "
          f"{cpu(full) / cpu(walk):.2f}x, the floor {cpu(floor) / cpu(walk):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
