"""The fast ELF reader agrees with the pyelftools reader, field for field."""

from __future__ import annotations

import glob
import os

import pytest
from bom_helpers import build_hello

from occlum_build.bom.elfread import NotElf, read_elf, read_elf_pyelftools
from occlum_build.elfstruct import DYN, EHDR, PHDR
from occlum_build.errors import BomError


def _elf_files() -> list[str]:
    cands = sorted(glob.glob("/usr/lib/x86_64-linux-gnu/*.so*"))[::6]  # a spread of ~300 libraries
    cands += sorted(glob.glob("/usr/bin/*"))[::10]
    cands += sorted(glob.glob("/usr/lib/python3.11/lib-dynload/*.so"))
    cands += ["/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "/usr/lib/x86_64-linux-musl/libc.so"]
    out = []
    for c in cands:
        if os.path.isfile(c):
            with open(c, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    out.append(os.path.realpath(c))
    return sorted(set(out))


def test_fast_reader_matches_pyelftools(tmp_path):
    files = _elf_files() + [str(build_hello(tmp_path / "hm", "musl-gcc")),
                            str(build_hello(tmp_path / "hg", "gcc"))]
    assert len(files) > 150
    with_runpath = 0
    for f in files:
        fast, ref = read_elf(f), read_elf_pyelftools(f)
        assert fast == ref, f
        with_runpath += bool(fast.runpath or fast.rpath)
    assert with_runpath >= 1


def test_field_tables_sizes():
    # ELF gABI: Elf64_Ehdr 64, Elf32_Ehdr 52, Elf64_Phdr 56, Elf32_Phdr 32, Elf64_Dyn 16, Elf32_Dyn 8
    assert EHDR[64].size == 64 and EHDR[32].size == 52
    assert EHDR[64].offset("e_phnum") == 56 and EHDR[32].offset("e_phnum") == 44
    assert PHDR[64].size == 56 and PHDR[32].size == 32
    assert PHDR[64].offset("p_flags") == 4 and PHDR[32].offset("p_flags") == 24
    assert DYN[64].size == 16 and DYN[32].size == 8


def test_not_elf_and_truncated(tmp_path):
    (tmp_path / "t.txt").write_text("text")
    with pytest.raises(NotElf):
        read_elf(str(tmp_path / "t.txt"))
    (tmp_path / "bad").write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x03\x00" + b"\xff" * 40)
    with pytest.raises(BomError, match="malformed ELF"):
        read_elf(str(tmp_path / "bad"))
