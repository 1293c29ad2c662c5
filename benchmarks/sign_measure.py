"""Measurement cost vs plain hashlib over the same record stream.

For each configuration the enclave's ECREATE/EADD/EEXTEND record stream is produced once
into memory (the baseline input), then timed two ways in the same run:
  baseline: hashlib.sha256 over the materialized stream (the floor: hashing alone);
  ours:     occlum_build.sgx measuring the enclave (records generated on the fly + hashing).
Prints the ratio ours/baseline (goal <= 1.3), the time to parse the ELF and build the
layout/metadata (prep, not part of the measurement) and the end-to-end sign time (with RSA).

    python benchmarks/sign_measure.py [--repeat N]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

from occlum_build.sgx import PemSigner, sign_enclave
from occlum_build.sgx.elf import parse_enclave
from occlum_build.sgx.enclave_xml import parse_enclave_xml
from occlum_build.sgx.layout import build_metadata
from occlum_build.sgx.loader import measure_layout, measure_sections
from occlum_build.sgx.measure import Measurement

VEC = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "sgx" / "h0mur0"

# Enclave.xml as Occlum 0.31 derives it from the default Occlum.json (kernel heap 32 MB,
# kernel stack 1 MB, 32 threads, 300 MB user space as reserved memory).
OCCLUM_DEFAULT = b"""<EnclaveConfiguration>
  <ProdID>0</ProdID><ISVSVN>0</ISVSVN>
  <StackMaxSize>0x100000</StackMaxSize><StackMinSize>0x100000</StackMinSize>
  <HeapMaxSize>0x2000000</HeapMaxSize><HeapMinSize>0x2000000</HeapMinSize><HeapInitSize>0x2000000</HeapInitSize>
  <TCSNum>32</TCSNum><TCSPolicy>1</TCSPolicy><DisableDebug>0</DisableDebug>
  <ReservedMemMaxSize>0x12C00000</ReservedMemMaxSize><ReservedMemMinSize>0x12C00000</ReservedMemMinSize>
  <ReservedMemInitSize>0x12C00000</ReservedMemInitSize><ReservedMemExecutable>1</ReservedMemExecutable>
  <MiscSelect>0</MiscSelect><MiscMask>0xFFFFFFFF</MiscMask>
</EnclaveConfiguration>"""
RSRV_16G = OCCLUM_DEFAULT.replace(b"0x12C00000", b"0x400000000")


def prepare(so: bytes, xml: bytes):  # type: ignore[no-untyped-def]
    """ELF parsing and the layout/metadata build: not part of the measurement proper."""
    elf = parse_enclave(so)
    built = build_metadata(elf, parse_enclave_xml(xml))
    image = bytearray(so)
    for dst, src, size in built.patches:
        image[dst:dst + size] = built.buf[src:src + size]
    return elf, built, bytes(image)


def measure(prepared, sink=None) -> bytes:  # type: ignore[no-untyped-def]
    elf, built, image = prepared
    m = Measurement(sink)
    m.ecreate(built.ssa_frame_size, built.ecreate_size)
    measure_sections(m, image, elf.segments, built.version, built.page_delta, elf.reloc_bitmap)
    measure_layout(m, built.layout, built.buf, built.page_delta)
    return m.digest()


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    so = (VEC / "enclave.so").read_bytes()
    key = PemSigner(VEC / "Enclave_private_test.pem")
    print(f"{'config':<28}{'stream MB':>10}{'hashlib s':>11}{'ours s':>9}{'ratio':>7}{'prep s':>8}"
          f"{'sign s':>8}")
    for name, xml in (("Occlum default (300 MB rsrv)", OCCLUM_DEFAULT), ("16 GB reserved memory", RSRV_16G)):
        t_prep = best(lambda: prepare(so, xml), args.repeat)  # noqa: B023
        prepared = prepare(so, xml)
        chunks: list[bytes] = []
        digest = measure(prepared, chunks.append)
        total = sum(map(len, chunks))

        def baseline(chunks: list[bytes] = chunks, digest: bytes = digest) -> None:
            h = hashlib.sha256()
            for c in chunks:
                h.update(c)
            assert h.digest() == digest

        t_base = best(baseline, args.repeat)
        del baseline
        t_ours = best(lambda: measure(prepared), args.repeat)  # noqa: B023
        del chunks
        t_sign = best(lambda: sign_enclave(so, xml, key, date=0x20250101), 1)  # noqa: B023
        print(f"{name:<28}{total / 1e6:>10.1f}{t_base:>11.3f}{t_ours:>9.3f}{t_ours / t_base:>7.2f}"
              f"{t_prep:>8.3f}{t_sign:>8.3f}")


if __name__ == "__main__":
    main()
