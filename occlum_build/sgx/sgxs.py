"""Reader for Fortanix's SGX stream format (``.sgxs``, fortanix/rust-sgx doc/SGXS.md).

An .sgxs file is the measurement record stream itself (ECREATE, EADD, EEXTEND + 256 data
bytes), so SHA-256 of the file is MRENCLAVE.  :func:`read_sgxs` parses and checks the stream
for canonicality (the rules of the format document) and replays it through
:class:`~occlum_build.sgx.measure.Measurement`, so the parser and the measurement primitive
check each other.  ESGXS extensions (UNSIZED, UNMEASRD) are rejected: they are not measured
streams.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..errors import OcclumError
from .measure import (
    CHUNK_SIZE,
    EADD_TAG,
    ECREATE_TAG,
    EEXTEND_TAG,
    PAGE_SIZE,
    RECORD_SIZE,
    Measurement,
)


@dataclass
class SgxsPage:
    offset: int
    flags: int
    chunks: dict[int, bytes] = field(default_factory=dict)  # chunk offset in page -> 256 bytes


@dataclass
class SgxsStream:
    ssa_frame_size: int
    size: int
    pages: list[SgxsPage]
    mrenclave: bytes

    @property
    def record_count(self) -> int:
        return 1 + sum(1 + len(p.chunks) for p in self.pages)


def read_sgxs(data: bytes, where: str = "sgxs") -> SgxsStream:
    """Parse a canonical SGXS stream; raise OcclumError naming the record offset if it is not."""

    def bad(pos: int, why: str) -> OcclumError:
        return OcclumError(f"record at byte {pos}: {why}", where=where)

    if len(data) < RECORD_SIZE or data[:8] != ECREATE_TAG:
        raise bad(0, "the stream must start with an ECREATE record")
    ssa = int.from_bytes(data[8:12], "little")
    size = int.from_bytes(data[12:20], "little")
    m = Measurement()
    try:
        m.ecreate(ssa, size)
    except ValueError as e:
        raise bad(0, str(e)) from None
    pages: list[SgxsPage] = []
    pos = RECORD_SIZE
    while pos < len(data):
        if len(data) - pos < RECORD_SIZE:
            raise bad(pos, "truncated record")
        tag = data[pos:pos + 8]
        off = int.from_bytes(data[pos + 8:pos + 16], "little")
        if tag == EADD_TAG:
            if off % PAGE_SIZE:
                raise bad(pos, f"EADD offset {off:#x} is not page-aligned")
            if pages and off <= pages[-1].offset:
                raise bad(pos, f"EADD offset {off:#x} not above the previous page")
            if any(data[pos + 24:pos + 64]):
                raise bad(pos, "EADD SECINFO reserved bytes are not zero")
            pages.append(SgxsPage(off, int.from_bytes(data[pos + 16:pos + 24], "little")))
            pos += RECORD_SIZE
        elif tag == EEXTEND_TAG:
            if not pages or off // PAGE_SIZE * PAGE_SIZE != pages[-1].offset:
                raise bad(pos, f"EEXTEND offset {off:#x} outside the page last added")
            if off % CHUNK_SIZE:
                raise bad(pos, f"EEXTEND offset {off:#x} is not 256-byte aligned")
            if any(data[pos + 16:pos + 64]):
                raise bad(pos, "EEXTEND reserved bytes are not zero")
            if len(data) - pos < RECORD_SIZE + CHUNK_SIZE:
                raise bad(pos, "EEXTEND record without its 256 data bytes")
            page = pages[-1]
            if off % PAGE_SIZE in page.chunks:
                raise bad(pos, f"EEXTEND offset {off:#x} measured twice")
            page.chunks[off % PAGE_SIZE] = data[pos + RECORD_SIZE:pos + RECORD_SIZE + CHUNK_SIZE]
            pos += RECORD_SIZE + CHUNK_SIZE
        elif tag == ECREATE_TAG:
            raise bad(pos, "a second ECREATE record")
        else:
            raise bad(pos, f"unknown record tag {tag!r} (ESGXS records are not measured streams)")
    digest = hashlib.sha256(data).digest()
    # The hash of the file is MRENCLAVE by definition.  Cross-check the measurement primitive
    # when every page is either not extended or fully extended in order (the SDK's shapes).
    full = list(range(0, PAGE_SIZE, CHUNK_SIZE))
    if all(not p.chunks or list(p.chunks) == full for p in pages):
        for p in pages:
            try:
                if p.chunks:
                    m.add_page(p.offset, p.flags, b"".join(p.chunks.values()))
                else:
                    m.add_page(p.offset, p.flags, extend=False)
            except ValueError as e:
                raise OcclumError(f"page at {p.offset:#x}: {e}", where=where) from None
        if m.digest() != digest:
            raise AssertionError("SGXS replay through Measurement disagrees with the file hash")
    return SgxsStream(ssa, size, pages, digest)
