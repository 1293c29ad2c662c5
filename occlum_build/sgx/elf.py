"""The enclave ELF as Intel's sgx_sign (psw/urts/parser/elfparser.cpp, same in SDK 2.20 and 2.26) sees it.

Read with the small ELF64 reader of occlum_build/elfstruct.py (not pyelftools: its import
alone cost a fifth of `occlum-sgx-sign sign`); the checks are sgx_sign's: ELFCLASS64
little-endian ET_DYN x86-64, page-aligned non-overlapping PT_LOAD segments each with R/W/X, no
undefined non-weak dynamic symbols, only the relocation types the trusted loader supports
(RELA), no ``.ctors``, no ``.init`` section, no text relocations (unless explicitly allowed), a
well-formed ``.note.sgxmeta`` section.  The "sections" of the measurement are the PT_LOAD
program headers in program-header order.
"""

from bisect import bisect_left
from typing import NamedTuple

from ..elfstruct import (
    DT_REL,
    DT_SYMTAB,
    DT_TEXTREL,
    EM_NAMES,
    EM_X86_64,
    ET_DYN,
    ET_NAMES,
    EV_CURRENT,
    PT_DYNAMIC,
    PT_LOAD,
    PT_TLS,
    SHF_ALLOC,
    SHF_EXECINSTR,
    SHN_UNDEF,
    SHT_DYNSYM,
    SHT_NOBITS,
    SHT_NULL,
    SHT_REL,
    SHT_RELA,
    SHT_SUNW_LDYNSYM,
    SHT_SYMTAB,
    STB_WEAK,
    Elf64,
    ElfFormatError,
    Relocations,
    Section,
)
from ..errors import OcclumError

PAGE = 4096
METADATA_NOTE = ".note.sgxmeta"
METADATA_NOTE_NAME = b"sgx_metadata\0"
# Symbols sgx_sign records from .dynsym (elfparser.cpp check_symbol_table).
RECORDED_SYMBOLS = ("enclave_entry", "g_global_data_sim", "g_peak_heap_used", "g_global_data",
                    "g_peak_rsrv_mem_committed")
# R_X86_64_NONE, 64, GLOB_DAT, JUMP_SLOT, RELATIVE, DTPMOD64, DTPOFF64, TPOFF64
ALLOWED_RELOCATIONS = {0: "NONE", 1: "64", 6: "GLOB_DAT", 7: "JUMP_SLOT", 8: "RELATIVE", 16: "DTPMOD64",
                       17: "DTPOFF64", 18: "TPOFF64"}
PF_X, PF_W, PF_R = 1, 2, 4
MAX_SEGMENT = 64 << 30  # a sanity bound (not sgx_sign's): .bss pages are measured one by one


class EnclaveError(OcclumError):
    """The enclave file is not something sgx_sign would accept."""


class Segment(NamedTuple):
    """A PT_LOAD segment: what sgx_sign calls a section."""

    offset: int
    filesz: int
    memsz: int
    vaddr: int
    flags: int  # SECINFO flags (REG | R/W/X)


class EnclaveElf(NamedTuple):
    data: bytes
    segments: list[Segment]
    tls_size: int | None  # PT_TLS memsz rounded up to its alignment, or None
    symbols: dict[str, int]
    metadata_offset: int  # file offset of metadata_t inside .note.sgxmeta
    metadata_size: int  # the note's descsz (0x6000 for SDK >= 2.18)
    text_relocations: list[int]  # r_offset of relocations into code
    reloc_bitmap: bytes = b""  # pages written by relocations, when DT_TEXTREL is present

    def file_offset_of(self, rva: int, size: int = 1) -> int:
        """File offset of ``rva`` inside a segment's file-backed bytes (sgx_sign get_rawdata_by_rva)."""
        for s in self.segments:
            start = s.vaddr & ~(PAGE - 1)
            end = (s.vaddr + s.memsz + PAGE - 1) & ~(PAGE - 1)
            if start <= rva < end:
                off = rva - s.vaddr
                if off < 0 or off + size > s.filesz:
                    break
                return s.offset + off
        raise EnclaveError(f"address {rva:#x} is not in the file-backed part of a loadable segment")


def _fail(where: str, why: str) -> EnclaveError:
    return EnclaveError(why, where=where)


def _si_flags(p_flags: int) -> int:
    f = 0x200
    if p_flags & PF_R:
        f |= 1
    if p_flags & PF_W:
        f |= 2
    if p_flags & PF_X:
        f |= 4
    return f


def parse_enclave(data: bytes, where: str = "enclave", *, allow_text_relocations: bool = False,
                  allow_init_section: bool = False) -> EnclaveElf:
    """Parse and validate an enclave shared object; raise EnclaveError naming the problem."""
    if len(data) < 64 or data[:4] != b"\x7fELF":
        raise _fail(where, "not an ELF file")
    if data[4] != 2:
        raise _fail(where, "not a 64-bit ELF (ELFCLASS64 required; 32-bit enclaves are not supported)")
    if data[5] != 1:
        raise _fail(where, "not a little-endian ELF")
    try:
        return _parse(Elf64(data), data, where, allow_text_relocations, allow_init_section)
    except ElfFormatError as e:
        raise _fail(where, f"malformed ELF: {e}") from None
    except (ValueError, KeyError, IndexError) as e:  # truncated/corrupt input the reader missed
        raise _fail(where, f"malformed ELF ({type(e).__name__}: {e})") from None


def _parse(elf: Elf64, data: bytes, where: str, allow_textrel: bool, allow_init: bool) -> EnclaveElf:
    h = elf.header
    if data[6] != EV_CURRENT:
        raise _fail(where, "unsupported ELF version")
    if h["e_type"] != ET_DYN:
        raise _fail(where, f"not a shared object (e_type {ET_NAMES.get(h['e_type'], h['e_type'])}); "
                    "build the enclave with -shared")
    if h["e_machine"] != EM_X86_64:
        raise _fail(where, f"not an x86-64 ELF (e_machine {EM_NAMES.get(h['e_machine'], h['e_machine'])})")
    if h["e_phentsize"] != 56:
        raise _fail(where, "unexpected program header entry size")

    segments: list[Segment] = []
    tls_size = None
    ranges: list[tuple[int, int]] = []
    dynamic = None
    for idx, p in enumerate(elf.segments()):
        if len(data) < p["p_offset"] + p["p_filesz"]:
            raise _fail(where, f"program header {idx} extends past the end of the file")
        t = p["p_type"]
        if t == PT_LOAD:
            if p["p_memsz"] > MAX_SEGMENT:
                raise _fail(where, f"PT_LOAD segment {idx} is {p['p_memsz']:#x} bytes in memory; more than "
                            f"{MAX_SEGMENT >> 30} GiB is refused (every page of it would be measured)")
            if p["p_align"] % PAGE:
                raise _fail(where, f"PT_LOAD segment {idx} is not page-aligned (p_align {p['p_align']:#x})")
            lo = p["p_vaddr"]
            hi = -(-(p["p_vaddr"] + p["p_memsz"]) // p["p_align"]) * p["p_align"] - 1 if p["p_align"] else (
                p["p_vaddr"] + p["p_memsz"] - 1)
            for a, b in ranges:
                if lo <= b and a <= hi:
                    raise _fail(where, f"PT_LOAD segment {idx} overlaps another segment")
            ranges.append((lo, hi))
        if t in (PT_LOAD, PT_TLS):
            flags = _si_flags(p["p_flags"])
            if flags == 0x200:
                raise _fail(where, f"program header {idx} has none of R/W/X")
            if t == PT_LOAD:
                segments.append(Segment(p["p_offset"], p["p_filesz"], p["p_memsz"], p["p_vaddr"], flags))
            else:
                align = p["p_align"]
                size = p["p_memsz"]
                tls_size = size if align in (0, 1) else -(-size // align) * align
        if t == PT_DYNAMIC and dynamic is None:
            dynamic = p
    if dynamic is None:
        raise _fail(where, "no PT_DYNAMIC segment (not a dynamically linked shared object)")
    dyn: dict[int, int] = {}
    for tag, val in elf.dynamic(dynamic):
        dyn.setdefault(tag, val)
    if not dyn:
        raise _fail(where, "empty dynamic section")

    all_sections = elf.sections()
    relocs = {s.index: elf.relocations(s) for s in all_sections if s["sh_type"] in (SHT_RELA, SHT_REL)}
    sections = {s.name: s for s in all_sections}
    by_addr: dict[int, Section] = {}
    for s in all_sections:
        by_addr.setdefault(s["sh_addr"], s)

    symbols = _symbols(elf, dyn, by_addr, where)
    if DT_REL in dyn:
        raise _fail(where, "REL relocations on x86-64 (RELA required)")
    for s in all_sections:
        r = relocs.get(s.index)
        if r is not None and s["sh_flags"] & SHF_ALLOC and not set(r.types) <= ALLOWED_RELOCATIONS.keys():
            i, t = next((i, t) for i, t in enumerate(r.types) if t not in ALLOWED_RELOCATIONS)
            raise _fail(where, f"unsupported relocation type {t} in {s.name} at {r.offsets[i]:#x} "
                        "(the trusted loader handles RELATIVE, GLOB_DAT, JUMP_SLOT, 64, TLS)")
    if ".ctors" in sections:
        raise _fail(where, ".ctors section found: global initializers would not run; use .init_array")
    if ".init" in sections and not allow_init:
        raise _fail(where, ".init section found; the trusted runtime does not run it (use .init_array)")

    textrels = _text_relocations(all_sections, relocs)
    if textrels and not allow_textrel:
        raise _fail(where, f"text relocations at {', '.join(hex(x) for x in textrels[:4])}"
                    f"{' ...' if len(textrels) > 4 else ''}; rebuild with -fPIC (or allow them explicitly)")
    bitmap = _reloc_bitmap(all_sections, relocs, segments) if DT_TEXTREL in dyn else b""

    note = sections.get(METADATA_NOTE)
    if note is None:
        raise _fail(where, f"no {METADATA_NOTE} section; link with the SDK trts (metadata_sec.S) or add it")
    off = note["sh_offset"]
    namesz, descsz = (int.from_bytes(data[off + i:off + i + 4], "little") for i in (0, 4))
    align = note["sh_addralign"] or 1
    if note["sh_size"] != -(-(12 + namesz + descsz) // align) * align:
        raise _fail(where, f"{METADATA_NOTE} section size {note['sh_size']:#x} does not match its header")
    if data[off + 12:off + 12 + namesz] != METADATA_NOTE_NAME:
        raise _fail(where, f'the note in {METADATA_NOTE} must be named "sgx_metadata"')
    return EnclaveElf(data, segments, tls_size, symbols, off + 12 + namesz, descsz, textrels, bitmap)


def _symbols(elf: Elf64, dyn: dict[int, int], by_addr: dict[int, Section], where: str) -> dict[str, int]:
    symtab = by_addr.get(dyn[DT_SYMTAB]) if DT_SYMTAB in dyn else None
    if symtab is None or symtab["sh_type"] not in (SHT_DYNSYM, SHT_SYMTAB, SHT_SUNW_LDYNSYM):
        raise _fail(where, "no .dynsym section")
    out: dict[str, int] = {}
    for i, (name, value, shndx, info) in enumerate(elf.symbols(symtab)):
        if i == 0 or not name:
            continue
        if shndx == SHN_UNDEF and info >> 4 != STB_WEAK:
            raise _fail(where, f"undefined symbol '{name}' (an enclave must be self-contained)")
        if name in RECORDED_SYMBOLS:
            out[name] = value
    if "enclave_entry" not in out:
        out["enclave_entry"] = elf.header["e_entry"]
    return out


def _text_relocations(sections: list[Section], relocs: dict[int, Relocations]) -> list[int]:
    """r_offsets of relocations that land in executable sections (sgx_sign dump_textrels), in
    file order."""
    exec_ranges = [(s["sh_addr"], s["sh_addr"] + s["sh_size"]) for s in sections
                   if s["sh_flags"] & SHF_EXECINSTR]
    found: list[int] = []
    for s in sections:
        r = relocs.get(s.index)
        if r is None or not exec_ranges:
            continue
        ordered = sorted(r.offsets)  # the usual case, none in code, costs a sort and a search per range
        if any(bisect_left(ordered, a) < len(ordered) and ordered[bisect_left(ordered, a)] < b
               for a, b in exec_ranges):
            found += [o for o in r.offsets if any(a <= o < b for a, b in exec_ranges)]
    return found


def _reloc_bitmap(sections: list[Section], relocs: dict[int, Relocations], segments: list[Segment]) -> bytes:
    """Pages touched by dynamic relocations (sgx_sign get_reloc_bitmap); made writable when measured."""
    last = max(segments, key=lambda s: s.vaddr, default=None)
    if last is None:
        return b""
    size = last.vaddr + last.memsz
    bitmap = bytearray((((size + PAGE - 1) >> 12) + 7) // 8)
    for s in sections:
        r = relocs.get(s.index)
        if r is None or not s["sh_flags"] & SHF_ALLOC:
            continue
        for offset, rtype in zip(r.offsets, r.types, strict=True):
            if rtype == 0:
                continue
            for page in {offset >> 12, (offset + 7) >> 12}:
                if page // 8 < len(bitmap):
                    bitmap[page // 8] |= 1 << (page % 8)
    return bytes(bitmap)


def patch_section(elf: bytes, name: str, data: bytes) -> bytes:
    """Overwrite section ``name``'s file bytes with ``data`` (same size, same place).

    Used to put the conf MAC into ``.builtin_config`` before signing without moving anything.
    """
    try:
        sec = Elf64(elf).section_by_name(name)
    except ElfFormatError as e:
        raise EnclaveError(f"malformed ELF: {e}") from None
    if sec is None:
        raise EnclaveError(f"no section {name!r} in the enclave")
    if sec["sh_type"] == SHT_NOBITS:
        raise EnclaveError(f"section {name!r} has no file bytes (SHT_NOBITS)")
    if sec["sh_size"] != len(data):
        raise EnclaveError(f"section {name!r} is {sec['sh_size']} bytes, the patch is {len(data)}")
    off = sec["sh_offset"]
    if off + len(data) > len(elf):
        raise EnclaveError(f"section {name!r} extends past the end of the file")
    return elf[:off] + bytes(data) + elf[off + len(data):]


BUILTIN_CONFIG = ".builtin_config"
BUILTIN_CONFIG_SIZE = 47  # Occlum's LibOS: static OCCLUM_JSON_MAC: [u8; 47]


def update_builtin_config(elf: bytes, mac_file: bytes, where: str = "LibOS") -> bytes:
    """Put the conf MAC file (47 characters and a newline, as `show-mac` prints it) into
    ``.builtin_config`` exactly as ``objcopy --update-section .builtin_config=<mac file>``
    does when padding follows the 47-byte section: the 48 bytes at its file offset and its
    ``sh_size`` set to 48, nothing else moved.  When no padding follows, objcopy would shift
    the later sections (a broken enclave): that is refused."""
    if len(mac_file) != BUILTIN_CONFIG_SIZE + 1:
        raise EnclaveError(f"the conf MAC file is {len(mac_file)} bytes, expected 48", where=where)
    try:
        f = Elf64(elf)
        sec = f.section_by_name(BUILTIN_CONFIG)
        sections = f.sections()
        shoff, shentsize = f["e_shoff"], f["e_shentsize"]
    except ElfFormatError as e:
        raise EnclaveError(f"malformed ELF: {e}", where=where) from None
    if sec is None:
        raise EnclaveError(f"no {BUILTIN_CONFIG} section (not an Occlum LibOS)", where=where)
    idx = sec.index
    size, off, addr = sec["sh_size"], sec["sh_offset"], sec["sh_addr"]
    if sec["sh_type"] == SHT_NOBITS or size not in (BUILTIN_CONFIG_SIZE, BUILTIN_CONFIG_SIZE + 1):
        raise EnclaveError(f"{BUILTIN_CONFIG} is {size} bytes, expected {BUILTIN_CONFIG_SIZE}", where=where)
    end = off + len(mac_file)
    for i, other in enumerate(sections):
        if i == idx or other["sh_type"] == SHT_NULL:
            continue
        o_off, o_addr = other["sh_offset"], other["sh_addr"]
        o_size = other["sh_size"]
        in_file = other["sh_type"] != SHT_NOBITS and o_size > 0
        file_clash = in_file and off < o_off + o_size and o_off < end
        addr_clash = addr and o_addr and o_size and addr < o_addr + o_size and o_addr < addr + 48
        if file_clash or addr_clash:
            raise EnclaveError(f"no room after {BUILTIN_CONFIG}: {other.name} starts right after its "
                               f"{BUILTIN_CONFIG_SIZE} bytes (objcopy would move it and break the "
                               "enclave's layout); rebuild the LibOS with padding after the section",
                               where=where)
    if end > len(elf):
        raise EnclaveError(f"{BUILTIN_CONFIG} extends past the end of the file", where=where)
    size_at = shoff + idx * shentsize + 32  # Elf64_Shdr.sh_size
    out = bytearray(elf)
    out[off:end] = mac_file
    out[size_at:size_at + 8] = (BUILTIN_CONFIG_SIZE + 1).to_bytes(8, "little")
    return bytes(out)
