"""Replay of the SDK loader's page-adding order (psw/urts/loader.cpp) into a Measurement.

Used both when signing (with the metadata just built) and when checking a signed file (with
the metadata embedded in it).  Order: ECREATE; the PT_LOAD segments page by page (file
bytes, zero-padded partial pages, then zero .bss pages); then the layout entries, a group
re-running the previous ``entry_count`` entries ``load_times`` times at ``load_step`` strides.
"""

from __future__ import annotations

from collections.abc import Sequence

from .elf import PAGE, Segment
from .measure import SI_FLAG_W, SI_FLAGS_TCS, Measurement
from .metadata import (
    PAGE_ATTR_EADD,
    PAGE_ATTR_EEXTEND,
    TCS,
    VERSION_LEGACY_1_3,
    Entry,
)


def _round(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


def _is_reloc_page(rva: int, bitmap: bytes) -> bool:
    frame = rva >> 12
    return frame // 8 < len(bitmap) and bool(bitmap[frame // 8] & (1 << (frame % 8)))


def _mem_region(m: Measurement, raw: bytes | memoryview, rva: int, vsize: int, flags: int, delta: int,
                bitmap: bytes = b"") -> None:
    """loader.cpp build_mem_region: file-backed pages, then zero pages up to ``vsize``."""
    offset = 0
    while offset < len(raw):
        at = rva + offset
        in_page = at & (PAGE - 1)
        size = min(PAGE - in_page, len(raw) - offset)
        f = flags
        if _is_reloc_page(at, bitmap) and not flags & SI_FLAG_W:
            f = flags | SI_FLAG_W
        page = bytes(in_page) + bytes(raw[offset:offset + size]) if in_page else raw[offset:offset + size]
        m.add_page((at & ~(PAGE - 1)) + delta, f, page)
        offset += PAGE - in_page
    if vsize > offset:
        at = rva + offset
        size = _round(vsize - offset + (at & (PAGE - 1)))
        m.add_pages((at & ~(PAGE - 1)) + delta, size // PAGE, flags, extend=True)


def measure_sections(m: Measurement, image: bytes, segments: Sequence[Segment], version: int, delta: int = 0,
                     bitmap: bytes = b"") -> None:
    """loader.cpp build_sections for an ELF (no FIPS provider)."""
    last: Segment | None = None
    max_rva = 0

    def legacy_gap_page(nxt: Segment | None) -> bool:
        if version != VERSION_LEGACY_1_3 or last is None:
            return False
        end = _round(last.vaddr + last.memsz)
        if not end < _round(_round(last.memsz) + last.vaddr):
            return False
        return nxt is None or end < (nxt.vaddr & ~(PAGE - 1))

    for s in segments:
        if legacy_gap_page(s):
            assert last is not None
            m.add_pages(_round(last.vaddr + last.memsz) + delta, 1, last.flags, extend=True)
        if s.vaddr > max_rva:
            max_rva = s.vaddr
            last = s
        raw = memoryview(image)[s.offset:s.offset + s.filesz]
        _mem_region(m, raw, s.vaddr, s.memsz, s.flags, delta, bitmap)
    if legacy_gap_page(None):
        assert last is not None
        m.add_pages(_round(last.vaddr + last.memsz) + delta, 1, last.flags, extend=True)


def measure_layout(m: Measurement, entries: Sequence[Entry], metadata: bytes | bytearray,
                   delta: int = 0) -> None:
    """loader.cpp build_contexts over the whole layout table."""
    _contexts(m, entries, 0, len(entries), 0, metadata, delta)


def _contexts(m: Measurement, entries: Sequence[Entry], lo: int, hi: int, step: int, md: bytes | bytearray,
              delta: int) -> None:
    for i in range(lo, hi):
        e = entries[i]
        if not e.is_group:
            _context(m, e, step, md, delta)
            continue
        if e.entry_count > i:
            raise ValueError(f"layout group at index {i} refers to {e.entry_count} earlier entries")
        s = 0
        for _ in range(e.load_times):
            s += e.load_step
            _contexts(m, entries, i - e.entry_count, i, s, md, delta)


def _context(m: Measurement, e: Entry, start: int, md: bytes | bytearray, delta: int) -> None:
    """loader.cpp build_context."""
    if not e.attributes & PAGE_ATTR_EADD:
        return
    rva = start + e.rva
    extend = (e.attributes & (PAGE_ATTR_EADD | PAGE_ATTR_EEXTEND)) == PAGE_ATTR_EADD | PAGE_ATTR_EEXTEND
    if e.content_offset:
        content = bytes(md[e.content_offset:e.content_offset + e.content_size])
        if e.si_flags == SI_FLAGS_TCS:
            page = bytearray(PAGE)
            page[:len(content)] = content
            for f in ("ossa", "ofs_base", "ogs_base"):
                v = TCS.get(page, f)
                assert isinstance(v, int)
                TCS.set(page, f, v + rva)
            for k in range(e.page_count):
                m.add_page(rva + k * PAGE + delta, e.si_flags, bytes(page), extend=extend)
        else:
            _mem_region(m, content, rva, e.page_count * PAGE, e.si_flags, delta)
    elif e.si_flags:
        if e.content_size:
            fill = e.content_size.to_bytes(4, "little")
            if len(set(fill)) == 1:
                m.add_pages(rva + delta, e.page_count, e.si_flags, extend=extend, fill=fill[0])
            else:
                filled = fill * (PAGE // 4)  # not `page`: a bytearray above
                for k in range(e.page_count):
                    m.add_page(rva + k * PAGE + delta, e.si_flags, filled, extend=extend)
        else:
            m.add_pages(rva + delta, e.page_count, e.si_flags, extend=extend)
