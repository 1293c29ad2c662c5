"""Read what the dynamic loader reads from an ELF file: PT_INTERP and the dynamic section.

Two readers give the same :class:`ElfInfo`:
- :func:`read_elf_pyelftools`, the reference: pyelftools, which handles every ELF variant and
  reports malformed files precisely;
- a fast path for little-endian files, which reads only the ELF header, the program headers,
  the dynamic entries and the string table with ``os.pread``.  pyelftools spends about 4 ms per
  file building its parsers, which would make us slower than running ``ld.so --list`` (Occlum's
  method); the fast path takes tens of microseconds.  Anything unexpected (big-endian, offsets
  outside the file, no string table) falls back to pyelftools.  tests/bom/test_bom_elfread.py
  checks that both agree on every ELF file in the system library dirs.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, cast

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

from ..elfstruct import (
    DT_FLAGS_1,
    DT_NEEDED,
    DT_NULL,
    DT_RPATH,
    DT_RUNPATH,
    DT_SONAME,
    DT_STRSZ,
    DT_STRTAB,
    DYN,
    EHDR,
    ELF_MAGIC,
    ET_NAMES,
    PHDR,
    PT_DYNAMIC,
    PT_INTERP,
    PT_LOAD,
)
from ..errors import BomError

DF_1_NODEFLIB = 0x800

# The field tables are elfstruct's (one declaration per structure); their positions, resolved once.
_EHDR = {c: (t, t.index("e_type"), t.index("e_machine"), t.index("e_phoff"), t.index("e_phentsize"),
             t.index("e_phnum")) for c, t in EHDR.items()}
_PHDR = {c: (t, t.index("p_type"), t.index("p_offset"), t.index("p_vaddr"), t.index("p_filesz"))
         for c, t in PHDR.items()}


class NotElf(Exception):
    """The file is not an ELF file (no magic)."""


class _Fallback(Exception):
    """The fast path cannot read this file; let pyelftools do it."""


@dataclass(frozen=True)
class ElfInfo:
    """What the loader reads from one ELF file."""

    path: str
    elfclass: int
    machine: int
    etype: str
    interp: str | None
    needed: tuple[str, ...]
    soname: str | None
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    has_runpath: bool
    nodeflib: bool

    @property
    def loadable(self) -> bool:
        return self.etype in ("ET_DYN", "ET_EXEC")


def read_elf(path: str) -> ElfInfo:
    """Parse the parts of an ELF file the loader needs; NotElf if it is no ELF at all,
    BomError if it is a malformed one."""
    fd = os.open(path, os.O_RDONLY)
    try:
        head = os.pread(fd, _HEAD, 0)
        if head[:4] != ELF_MAGIC:
            raise NotElf(path)
        try:
            return _fast(fd, path, head)
        except (_Fallback, struct.error, UnicodeDecodeError, IndexError, ValueError):
            pass
    finally:
        os.close(fd)
    return read_elf_pyelftools(path)


_HEAD = 4096  # one read serves the headers and often the interpreter


def _fast(fd: int, path: str, head: bytes) -> ElfInfo:
    def pread(n: int, off: int) -> bytes:
        if off + n <= len(head):
            return head[off:off + n]
        return os.pread(fd, n, off)

    cls = {1: 32, 2: 64}.get(head[4]) if len(head) >= 64 else None
    if cls is None or head[5] != 1:  # only little endian here
        raise _Fallback
    etable, i_etype, i_machine, i_phoff, i_phentsize, i_phnum = _EHDR[cls]
    eh = etable.unpack_tuple(head)
    etype, machine = eh[i_etype], eh[i_machine]
    phoff, phentsize, phnum = eh[i_phoff], eh[i_phentsize], eh[i_phnum]
    ptable, i_type, i_off, i_vaddr, i_filesz = _PHDR[cls]
    if phnum and phentsize != ptable.size:
        raise _Fallback
    size = os.fstat(fd).st_size
    raw = pread(phentsize * phnum, phoff) if phnum else b""
    if len(raw) != phentsize * phnum:
        raise _Fallback
    interp = None
    loads: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset)
    dyn_seg = None
    for ph in ptable.iter_unpack(raw):
        t = ph[i_type]
        if t > PT_INTERP:
            continue
        off, filesz = ph[i_off], ph[i_filesz]
        if off + filesz > size:
            raise _Fallback
        if t == PT_INTERP:
            interp = pread(filesz, off).split(b"\0", 1)[0].decode()
        elif t == PT_DYNAMIC:
            dyn_seg = (off, filesz)
        elif t == PT_LOAD:
            loads.append((ph[i_vaddr], filesz, off))
    needed_off: list[int] = []
    soname_off = None
    rpath_off: list[int] = []
    runpath_off: list[int] = []
    strtab = strsz = None
    nodeflib = False
    if dyn_seg is not None:
        dtable = DYN[cls]
        data = pread(dyn_seg[1], dyn_seg[0])
        for tag, val in dtable.iter_unpack(data[: len(data) - len(data) % dtable.size]):
            if tag == DT_NULL:
                break
            if tag == DT_NEEDED:
                needed_off.append(val)
            elif tag == DT_SONAME:
                soname_off = val
            elif tag == DT_RPATH:
                rpath_off.append(val)
            elif tag == DT_RUNPATH:
                runpath_off.append(val)
            elif tag == DT_STRTAB:
                strtab = val
            elif tag == DT_STRSZ:
                strsz = val
            elif tag == DT_FLAGS_1:
                nodeflib = bool(val & DF_1_NODEFLIB)
    strings = b""
    base = 0  # string-table offset of strings[0]
    offs = needed_off + rpath_off + runpath_off + ([soname_off] if soname_off is not None else [])
    if offs:
        if strtab is None or strsz is None or max(offs) >= strsz:
            raise _Fallback
        for vaddr, filesz, off in loads:
            if vaddr <= strtab < vaddr + filesz:
                table = strtab - vaddr + off
                break
        else:
            raise _Fallback
        # Read only the span holding the wanted strings (the table is mostly symbol names and
        # can be hundreds of KiB), plus room for the last one; widen to the end if cut short.
        base = min(offs)
        strings = pread(min(max(offs) + 4096, strsz) - base, table + base)
        if strings.find(b"\0", max(offs) - base) < 0:
            strings = pread(strsz - base, table + base)

    def s(o: int) -> str:
        end = strings.index(b"\0", o - base)
        return strings[o - base:end].decode()

    rpath = tuple(p for o in rpath_off for p in s(o).split(":"))
    runpath = tuple(p for o in runpath_off for p in s(o).split(":"))
    return ElfInfo(path, cls, machine, ET_NAMES.get(etype, str(etype)), interp,
                   tuple(s(o) for o in needed_off), s(soname_off) if soname_off is not None else None,
                   rpath, runpath, bool(runpath_off), nodeflib)


def read_elf_pyelftools(path: str) -> ElfInfo:
    """The reference reader (any ELF variant); BomError for a malformed file."""
    with open(path, "rb") as f:
        if f.read(4) != ELF_MAGIC:
            raise NotElf(path)
        f.seek(0)
        try:
            elf = ELFFile(f)
            interp = None
            needed: list[str] = []
            soname = None
            rpath: list[str] = []
            runpath: list[str] = []
            has_runpath = False
            nodeflib = False
            for seg in elf.iter_segments():
                t = seg["p_type"]
                if t == "PT_INTERP":
                    # elftools makes every PT_INTERP an InterpSegment, every PT_DYNAMIC a DynamicSegment
                    interp = cast(InterpSegment, seg).get_interp_name()
                elif t == "PT_DYNAMIC":
                    for tag in cast(DynamicSegment, seg).iter_tags():
                        d = tag.entry.d_tag
                        # DynamicTag sets .needed/.soname/.rpath/.runpath with setattr: untyped
                        if d == "DT_NEEDED":
                            needed.append(tag.needed)  # type: ignore[attr-defined]
                        elif d == "DT_SONAME":
                            soname = tag.soname  # type: ignore[attr-defined]
                        elif d == "DT_RPATH":
                            rpath.extend(tag.rpath.split(":"))  # type: ignore[attr-defined]
                        elif d == "DT_RUNPATH":
                            has_runpath = True
                            runpath.extend(tag.runpath.split(":"))  # type: ignore[attr-defined]
                        elif d == "DT_FLAGS_1":
                            nodeflib = bool(tag.entry.d_val & DF_1_NODEFLIB)
            machine = elf.header.e_machine
            machine_raw = machine if isinstance(machine, int) else _raw_machine(f, elf.little_endian)
            etype = elf.header.e_type
            etype_name = etype if isinstance(etype, str) else ET_NAMES.get(etype, str(etype))
            return ElfInfo(path, elf.elfclass, machine_raw, etype_name, interp, tuple(needed),
                           soname, tuple(rpath), tuple(runpath), has_runpath, nodeflib)
        except (ELFError, ValueError, KeyError, AttributeError, UnicodeDecodeError, struct.error) as e:
            raise BomError(f"malformed ELF file ({e}); fix it or set autodep: false", where=path) from None


def _raw_machine(f: BinaryIO, little: bool) -> int:
    f.seek(18)
    return int.from_bytes(f.read(2), "little" if little else "big")


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == ELF_MAGIC
    except OSError:
        return False
