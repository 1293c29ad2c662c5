"""The field tables match the spec's offsets (docs/formats/image.md, protected-config.md)."""

from occlum_build.image.format import ENC_HEADER, ENTRY, HEADER, object_size, path_problem
from occlum_build.image.protect import PROTECTED_HEADER


def _offsets(layout):
    return {f.name: (f.offset, f.size) for f in layout.fields}


def test_header_offsets():
    assert HEADER.size == 64
    assert _offsets(HEADER) == {
        "magic": (0, 8), "version": (8, 4), "flags": (12, 4), "block_size": (16, 4),
        "entry_count": (20, 4), "strtab_size": (24, 8), "reserved": (32, 32),
    }  # fmt: skip


def test_entry_offsets():
    assert ENTRY.size == 96 and ENTRY.struct.size == 96
    assert _offsets(ENTRY) == {
        "path_off": (0, 8), "path_len": (8, 4), "type": (12, 1), "reserved1": (13, 3), "mode": (16, 4),
        "reserved2": (20, 4), "size": (24, 8), "target_off": (32, 8), "root": (40, 32),
        "file_id": (72, 16), "reserved3": (88, 8),
    }  # fmt: skip


def test_encrypted_and_protected_headers():
    assert _offsets(ENC_HEADER) == {
        "magic": (0, 8),
        "version": (8, 4),
        "reserved": (12, 4),
        "nonce": (16, 12),
    }
    assert _offsets(PROTECTED_HEADER) == {"magic": (0, 8), "version": (8, 4), "length": (12, 4)}


def test_object_size_and_paths():
    assert object_size(0, False) == 0
    assert object_size(4097, False) == 4097 + 64
    assert object_size(4097, True) == 4097 + 2 * 48
    assert path_problem(b"a/../b") and path_problem(b"a//b") and path_problem(b"x" * 256)
    assert path_problem(b"a\0b") and path_problem(b"/".join([b"d" * 200] * 21))
    assert path_problem(b"") is None and path_problem(b"a/b.c") is None
