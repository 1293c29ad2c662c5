"""ELF structures (System V gABI) as field tables, and a small reader of little-endian ELF64 files.

The tables are the one place each structure is declared: copy_bom's loader-view reader
(bom/elfread.py, ELF32 and ELF64) and the enclave signer (sgx/elf.py) read through them.

:class:`Elf64` reads what sgx_sign reads and nothing else: the file header, the program
headers, the section headers with their names, dynamic entries, symbol tables and relocation
tables (no DWARF, notes or versions; 32-bit and big-endian files are refused).  It replaces
pyelftools on the signing path, whose import and parse were a fifth of `occlum-sgx-sign sign`
(docs/benchmarks.md "Signing CLI").  What pyelftools checks on the parts read here, it checks
too (entry sizes, linked string tables); any table outside the file, or a structure cut short,
raises :class:`ElfFormatError`.  tests/sgx/test_elf_reader.py compares it with pyelftools.
"""

from __future__ import annotations

import sys
from array import array
from typing import Literal

from .fields import Struct

ELF_MAGIC = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB = 1
EV_CURRENT = 1
ET_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
ET_DYN = 3
EM_X86_64 = 62
EM_NAMES = {3: "EM_386", 8: "EM_MIPS", 20: "EM_PPC", 21: "EM_PPC64", 22: "EM_S390", 40: "EM_ARM",
            62: "EM_X86_64", 183: "EM_AARCH64", 243: "EM_RISCV", 258: "EM_LOONGARCH"}
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_TLS = 1, 2, 3, 7
SHT_NULL, SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOBITS, SHT_REL, SHT_DYNSYM = 0, 2, 3, 4, 8, 9, 11
SHT_SUNW_LDYNSYM = 0x6FFFFFF3
SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4
SHN_UNDEF, SHN_XINDEX = 0, 0xFFFF
PN_XNUM = 0xFFFF
STB_WEAK = 2
DT_NULL, DT_NEEDED, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SONAME = 0, 1, 5, 6, 10, 14
DT_RPATH, DT_REL, DT_TEXTREL, DT_RUNPATH, DT_FLAGS_1 = 15, 17, 22, 29, 0x6FFFFFFB

U: Literal["u"] = "u"  # the field kinds of fields.Struct, typed as its Kind literals
S: Literal["s"] = "s"
B: Literal["bytes"] = "bytes"
ELF64_EHDR = Struct("Elf64_Ehdr", 64, [
    ("e_ident", 0, 16, B), ("e_type", 16, 2, U), ("e_machine", 18, 2, U), ("e_version", 20, 4, U),
    ("e_entry", 24, 8, U), ("e_phoff", 32, 8, U), ("e_shoff", 40, 8, U), ("e_flags", 48, 4, U),
    ("e_ehsize", 52, 2, U), ("e_phentsize", 54, 2, U), ("e_phnum", 56, 2, U), ("e_shentsize", 58, 2, U),
    ("e_shnum", 60, 2, U), ("e_shstrndx", 62, 2, U)])
ELF32_EHDR = Struct("Elf32_Ehdr", 52, [
    ("e_ident", 0, 16, B), ("e_type", 16, 2, U), ("e_machine", 18, 2, U), ("e_version", 20, 4, U),
    ("e_entry", 24, 4, U), ("e_phoff", 28, 4, U), ("e_shoff", 32, 4, U), ("e_flags", 36, 4, U),
    ("e_ehsize", 40, 2, U), ("e_phentsize", 42, 2, U), ("e_phnum", 44, 2, U), ("e_shentsize", 46, 2, U),
    ("e_shnum", 48, 2, U), ("e_shstrndx", 50, 2, U)])
ELF64_PHDR = Struct("Elf64_Phdr", 56, [
    ("p_type", 0, 4, U), ("p_flags", 4, 4, U), ("p_offset", 8, 8, U), ("p_vaddr", 16, 8, U),
    ("p_paddr", 24, 8, U), ("p_filesz", 32, 8, U), ("p_memsz", 40, 8, U), ("p_align", 48, 8, U)])
ELF32_PHDR = Struct("Elf32_Phdr", 32, [
    ("p_type", 0, 4, U), ("p_offset", 4, 4, U), ("p_vaddr", 8, 4, U), ("p_paddr", 12, 4, U),
    ("p_filesz", 16, 4, U), ("p_memsz", 20, 4, U), ("p_flags", 24, 4, U), ("p_align", 28, 4, U)])
ELF64_SHDR = Struct("Elf64_Shdr", 64, [
    ("sh_name", 0, 4, U), ("sh_type", 4, 4, U), ("sh_flags", 8, 8, U), ("sh_addr", 16, 8, U),
    ("sh_offset", 24, 8, U), ("sh_size", 32, 8, U), ("sh_link", 40, 4, U), ("sh_info", 44, 4, U),
    ("sh_addralign", 48, 8, U), ("sh_entsize", 56, 8, U)])
ELF64_DYN = Struct("Elf64_Dyn", 16, [("d_tag", 0, 8, S), ("d_val", 8, 8, U)])
ELF32_DYN = Struct("Elf32_Dyn", 8, [("d_tag", 0, 4, S), ("d_val", 4, 4, U)])
ELF64_SYM = Struct("Elf64_Sym", 24, [
    ("st_name", 0, 4, U), ("st_info", 4, 1, U), ("st_other", 5, 1, U), ("st_shndx", 6, 2, U),
    ("st_value", 8, 8, U), ("st_size", 16, 8, U)])
ELF64_RELA = Struct("Elf64_Rela", 24, [("r_offset", 0, 8, U), ("r_info", 8, 8, U), ("r_addend", 16, 8, S)])
ELF64_REL = Struct("Elf64_Rel", 16, [("r_offset", 0, 8, U), ("r_info", 8, 8, U)])
EHDR = {32: ELF32_EHDR, 64: ELF64_EHDR}
PHDR = {32: ELF32_PHDR, 64: ELF64_PHDR}
DYN = {32: ELF32_DYN, 64: ELF64_DYN}
RELOC = {SHT_RELA: ELF64_RELA, SHT_REL: ELF64_REL}
_SYM_NAME, _SYM_INFO, _SYM_SHNDX, _SYM_VALUE = (ELF64_SYM.index(n) for n in ("st_name", "st_info", "st_shndx",
                                                                              "st_value"))


class ElfFormatError(Exception):
    """The file is not a well-formed little-endian ELF64 file."""


class Section:
    """One section header (``s["sh_type"]`` etc.) and its name."""

    __slots__ = ("index", "name", "header")

    def __init__(self, index: int, name: str, header: dict[str, int]):
        self.index, self.name, self.header = index, name, header

    def __getitem__(self, field: str) -> int:
        return self.header[field]

    def __repr__(self) -> str:
        return f"Section({self.index}, {self.name!r})"


class Relocations:
    """A relocation table's ``r_offset`` values and types (``r_info`` low 32 bits), in file order."""

    __slots__ = ("offsets", "types")

    def __init__(self, offsets: array[int], types: array[int]):
        self.offsets, self.types = offsets, types


class Elf64:
    """A little-endian ELF64 file in memory."""

    def __init__(self, data: bytes):
        if len(data) < ELF64_EHDR.size or data[:4] != ELF_MAGIC:
            raise ElfFormatError("not an ELF file")
        if data[4] != ELFCLASS64 or data[5] != ELFDATA2LSB:
            raise ElfFormatError("not a little-endian ELF64 file")
        self.data = data
        self.header: dict[str, int] = ELF64_EHDR.unpack(data)  # type: ignore[assignment]
        self._sections: list[Section] | None = None

    def __getitem__(self, field: str) -> int:
        return self.header[field]

    def _table(self, what: str, offset: int, count: int, entsize: int,
               table: Struct) -> list[dict[str, int]]:
        if count and entsize < table.size:
            raise ElfFormatError(f"{what} entry size {entsize} is smaller than {table.name} ({table.size})")
        if offset + count * entsize > len(self.data):
            raise ElfFormatError(f"{what} table at {offset:#x} ({count} entries) extends past the end of "
                                 "the file")
        return [table.unpack(self.data, offset + i * entsize) for i in range(count)]  # type: ignore[misc]

    def _section_header(self, n: int) -> dict[str, int]:
        entsize = self["e_shentsize"]
        return self._table("section header", self["e_shoff"] + n * entsize, 1, entsize, ELF64_SHDR)[0]

    def segments(self) -> list[dict[str, int]]:
        """The program headers, in order (``e_phnum`` = PN_XNUM: the count is section 0's sh_info)."""
        n = self["e_phnum"]
        if n == PN_XNUM:
            n = self._section_header(0)["sh_info"]
        return self._table("program header", self["e_phoff"], n, self["e_phentsize"], ELF64_PHDR)

    def sections(self) -> list[Section]:
        """The section headers with their names, in order (none if ``e_shoff`` is 0)."""
        if self._sections is None:
            self._sections = self._read_sections()
        return self._sections

    def _read_sections(self) -> list[Section]:
        if not self["e_shoff"]:
            return []
        n = self["e_shnum"] or self._section_header(0)["sh_size"]
        headers = self._table("section header", self["e_shoff"], n, self["e_shentsize"], ELF64_SHDR)
        strndx = self["e_shstrndx"]
        if strndx == SHN_XINDEX:
            strndx = headers[0]["sh_link"] if headers else 0
        if strndx >= len(headers):
            raise ElfFormatError(f"e_shstrndx {strndx} is not a section (there are {len(headers)})")
        names = headers[strndx]["sh_offset"]
        return [Section(i, self.string(names + h["sh_name"]), h) for i, h in enumerate(headers)]

    def section_by_name(self, name: str) -> Section | None:
        """The section named ``name`` (the last one if several are: pyelftools' choice)."""
        return next((s for s in reversed(self.sections()) if s.name == name), None)

    def string(self, offset: int) -> str:
        """The NUL-terminated string at file ``offset`` ("" if it runs off the file), as pyelftools
        reads names: not bounded by the string table's size, invalid UTF-8 replaced."""
        end = self.data.find(b"\0", offset)
        return "" if end < 0 else self.data[offset:end].decode("utf-8", "replace")

    def dynamic(self, segment: dict[str, int]) -> list[tuple[int, int]]:
        """(d_tag, d_val) of a PT_DYNAMIC segment up to DT_NULL (or the segment's end), DT_NULL excluded."""
        off, size = segment["p_offset"], segment["p_filesz"]
        if off + size > len(self.data):
            raise ElfFormatError("the dynamic segment extends past the end of the file")
        body = memoryview(self.data)[off:off + size - size % ELF64_DYN.size]
        out: list[tuple[int, int]] = []
        for tag, val in ELF64_DYN.iter_unpack(body):
            if tag == DT_NULL:
                break
            out.append((tag, val))
        return out

    def _contents(self, s: Section) -> memoryview:
        off, size = s["sh_offset"], s["sh_size"]
        if off + size > len(self.data):
            raise ElfFormatError(f"section {s.name or s.index} extends past the end of the file")
        return memoryview(self.data)[off:off + size]

    def symbols(self, s: Section) -> list[tuple[str, int, int, int]]:
        """(name, st_value, st_shndx, st_info) of every entry of a SYMTAB/DYNSYM section."""
        entsize = s["sh_entsize"]
        if not entsize or s["sh_size"] % entsize:
            raise ElfFormatError(f"symbol table {s.name}: size {s['sh_size']} is not a multiple of its "
                                 f"entry size {entsize}")
        if entsize < ELF64_SYM.size:
            raise ElfFormatError(f"symbol table {s.name}: entry size {entsize} is smaller than Elf64_Sym")
        sections = self.sections()
        link = s["sh_link"]
        if link >= len(sections) or sections[link]["sh_type"] != SHT_STRTAB:
            raise ElfFormatError(f"symbol table {s.name} does not link to a string table")
        names = sections[link]["sh_offset"]
        body = self._contents(s)
        out = []
        for i in range(0, len(body), entsize):
            e = ELF64_SYM.unpack_tuple(body, i)
            out.append((self.string(names + e[_SYM_NAME]), e[_SYM_VALUE], e[_SYM_SHNDX], e[_SYM_INFO]))
        return out

    def relocations(self, s: Section) -> Relocations:
        """The entries of a REL or RELA section (its sh_entsize must be the structure's size)."""
        table = RELOC[s["sh_type"]]
        if s["sh_entsize"] != table.size:
            raise ElfFormatError(f"relocation section {s.name}: sh_entsize {s['sh_entsize']}, expected "
                                 f"{table.size} ({table.name})")
        body = self._contents(s)
        words = table.size // 8
        body = body[:len(body) - len(body) % table.size]
        q, d = array("Q"), array("I")
        assert q.itemsize == 8 and d.itemsize == 4
        q.frombytes(body)
        d.frombytes(body)
        if sys.byteorder == "big":
            q.byteswap()
            d.byteswap()
        info = table.offset("r_info") // 4  # the low half of r_info: ELF64_R_TYPE
        return Relocations(q[table.offset("r_offset") // 8::words], d[info::2 * words])
