"""The signer's ELF64 reader (occlum_build/elfstruct.py) against pyelftools, field for field, and
sgx/elf.py's checks through it on edited copies of a real enclave."""

from __future__ import annotations

import glob
import io
import os
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_D_TAG, ENUM_SH_TYPE_AMD64, ENUM_SH_TYPE_BASE
from sgx_vectors import VECTORS

from occlum_build.elfstruct import (
    DT_NULL,
    ELF64_DYN,
    ELF64_EHDR,
    ELF64_PHDR,
    ELF64_REL,
    ELF64_RELA,
    ELF64_SHDR,
    ELF64_SYM,
    PT_DYNAMIC,
    SHT_DYNSYM,
    SHT_REL,
    SHT_RELA,
    SHT_SYMTAB,
    Elf64,
)
from occlum_build.sgx.elf import EnclaveError, parse_enclave

ROOT = Path(__file__).resolve().parents[1] / "vectors"
ENCLAVE = VECTORS / "h0mur0" / "enclave.so"
SH_TYPES = {**ENUM_SH_TYPE_BASE, **ENUM_SH_TYPE_AMD64}


def _files() -> list[str]:
    out = [str(p) for p in sorted(ROOT.rglob("*")) if p.is_file() and p.read_bytes()[:4] == b"\x7fELF"]
    libs = sorted(glob.glob("/usr/lib/x86_64-linux-gnu/*.so*"))[::25] + sorted(glob.glob("/usr/bin/*"))[::40]
    for f in libs:
        if os.path.isfile(f) and not os.path.islink(f):
            with open(f, "rb") as fh:
                if fh.read(6) == b"\x7fELF\x02\x01":
                    out.append(f)
    return out


def _raw(enum: dict, value: object) -> object:
    return enum.get(value, value) if isinstance(value, str) else value


def test_field_table_sizes():
    # gABI sizes of the ELF64 structures
    sizes = (ELF64_EHDR.size, ELF64_PHDR.size, ELF64_SHDR.size, ELF64_DYN.size, ELF64_SYM.size,
             ELF64_RELA.size, ELF64_REL.size)
    assert sizes == (64, 56, 64, 16, 24, 24, 16)


def test_reader_matches_pyelftools():
    files = _files()
    assert len(files) >= 15
    relocations = 0
    for f in files:
        data = Path(f).read_bytes()
        ours, ref = Elf64(data), ELFFile(io.BytesIO(data))
        for k in ("e_entry", "e_phoff", "e_shoff", "e_phnum", "e_shnum", "e_shstrndx", "e_flags"):
            assert ours[k] == ref[k], (f, k)
        segs = ours.segments()
        assert len(segs) == ref.num_segments()
        for s, r in zip(segs, ref.iter_segments(), strict=True):
            for k in ("p_offset", "p_vaddr", "p_filesz", "p_memsz", "p_align", "p_flags"):
                assert s[k] == r[k], (f, k)
            if s["p_type"] == PT_DYNAMIC:
                want = []
                for t in r.iter_tags():
                    tag = _raw(ENUM_D_TAG, t.entry.d_tag)
                    if tag == DT_NULL:
                        break
                    want.append((tag, t.entry.d_val))
                assert ours.dynamic(s) == want, f
        secs = ours.sections()
        assert len(secs) == ref.num_sections()
        for s, r in zip(secs, ref.iter_sections(), strict=True):
            assert s.name == r.name, f
            assert s["sh_type"] == _raw(SH_TYPES, r["sh_type"]), (f, s.name)
            for k in ("sh_flags", "sh_addr", "sh_offset", "sh_size", "sh_link", "sh_info", "sh_addralign",
                      "sh_entsize"):
                assert s[k] == r[k], (f, s.name, k)
            if s["sh_type"] in (SHT_SYMTAB, SHT_DYNSYM):
                want_syms = [(y.name, y["st_value"], y["st_shndx"] == "SHN_UNDEF",
                              y["st_info"]["bind"] == "STB_WEAK") for y in r.iter_symbols()]
                got = [(n, v, shndx == 0, info >> 4 == 2) for n, v, shndx, info in ours.symbols(s)]
                assert got == want_syms, (f, s.name)
            if s["sh_type"] in (SHT_REL, SHT_RELA):
                rel = ours.relocations(s)
                assert list(rel.offsets) == [x["r_offset"] for x in r.iter_relocations()], (f, s.name)
                assert list(rel.types) == [x["r_info_type"] for x in r.iter_relocations()], (f, s.name)
                relocations += len(rel.offsets)
    assert relocations > 1000


def _edit(edits: list[tuple[int, bytes]], cut: int | None = None) -> bytes:
    data = bytearray(ENCLAVE.read_bytes())
    for off, b in edits:
        data[off:off + len(b)] = b
    return bytes(data[:cut])


def _shdr(n: int, field: str) -> int:
    data = ENCLAVE.read_bytes()
    eh = ELF64_EHDR.unpack(data)
    return eh["e_shoff"] + n * eh["e_shentsize"] + ELF64_SHDR.offset(field)


RELA_DYN = 8  # section index of .rela.dyn in the h0mur0 enclave (readelf -S)


@pytest.mark.parametrize("edits,cut,why", [
    ([(16, (2).to_bytes(2, "little"))], None, r"not a shared object \(e_type ET_EXEC\)"),
    ([(18, (3).to_bytes(2, "little"))], None, r"not an x86-64 ELF \(e_machine EM_386\)"),
    ([(18, (0x1234).to_bytes(2, "little"))], None, r"not an x86-64 ELF \(e_machine 4660\)"),
    ([(6, b"\x02")], None, "unsupported ELF version"),
    ([(54, (40).to_bytes(2, "little"))], None, "unexpected program header entry size"),
    ([], 0xCD750 + 10 * 64, "malformed ELF: section header table at 0xcd750 .* extends past the end"),
    ([(_shdr(RELA_DYN, "sh_entsize"), (16).to_bytes(8, "little"))], None,
     "malformed ELF: relocation section .rela.dyn: sh_entsize 16, expected 24"),
    ([(0x4A8 + 8, (2).to_bytes(8, "little"))], None,
     r"unsupported relocation type 2 in \.rela\.dyn at 0x3f6b0 \(the trusted loader handles"),
    ([(_shdr(4, "sh_link"), (0).to_bytes(4, "little"))], None,
     "malformed ELF: symbol table .dynsym does not link to a string table"),
])
def test_enclave_checks_through_the_reader(edits, cut, why):
    with pytest.raises(EnclaveError, match=why):
        parse_enclave(_edit(edits, cut))


def test_enclave_parse_of_the_vector():
    elf = parse_enclave(ENCLAVE.read_bytes())
    assert [(s.vaddr, s.flags) for s in elf.segments] == [(0, 0x201), (0x2000, 0x205), (0x35000, 0x201),
                                                          (0x3F6B0, 0x203)]
    assert set(elf.symbols) >= {"enclave_entry", "g_global_data"} and elf.metadata_size == 0x6000
    assert elf.text_relocations == [] and elf.reloc_bitmap == b""


def test_signed_fields():
    """Sxword fields (d_tag, r_addend) are two's complement; values are reduced as C stores them."""
    from occlum_build.fields import Struct

    t = Struct("t", 10, [("a", 0, 2, "u"), ("b", 2, 8, "s")])
    raw = t.pack({"a": -1, "b": -5})
    assert raw == b"\xff\xff" + (-5).to_bytes(8, "little", signed=True)
    assert t.unpack(raw) == {"a": 0xFFFF, "b": -5} and t.get(raw, "b") == -5
    buf = bytearray(10)
    t.set(buf, "b", (1 << 64) - 2)
    assert t.unpack_tuple(buf) == (0, -2) and list(t.iter_unpack(bytes(buf) * 2)) == [(0, -2)] * 2
    assert ELF64_RELA.unpack((1).to_bytes(8, "little") * 2 + (-8).to_bytes(8, "little", signed=True)) == {
        "r_offset": 1, "r_info": 1, "r_addend": -8}
