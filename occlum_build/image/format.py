"""The image format, version 1 (docs/formats/image.md): field tables and constants.

Every byte layout is declared once here as a table of fields (name, offset, size, type) and
packed/unpacked from that table; tests assert the offsets against the spec.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import VerifyError

BLOCK_SIZE = 4096
LEAF_SIZE = 32
TAG_SIZE = 16
ROOT_SIZE = 32
FILE_ID_SIZE = 16
MAC_SIZE = 16

MAGIC_PLAIN = b"OCBIMG01"
MAGIC_ENCRYPTED = b"OCBIMGE1"
VERSION = 1
FLAG_ENCRYPTED = 1

TYPE_FILE = 1
TYPE_DIR = 2
TYPE_SYMLINK = 3
TYPE_NAMES = {TYPE_FILE: "file", TYPE_DIR: "dir", TYPE_SYMLINK: "symlink"}

MAX_NAME = 255
MAX_PATH = 4095
MAX_TARGET = 4095
MAX_ENTRIES = 2**32 - 1
MAX_FILE_SIZE = 2**48 - 1
SYMLINK_MODE = 0o777

METADATA_FILE = "metadata"
OBJECTS_DIR = "objects"

_CODES = {"u8": "B", "u32": "I", "u64": "Q", "bytes": "s"}


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    size: int
    type: str  # u8 / u32 / u64 / bytes (bytes fields named "reserved*" must be zero)


class Layout:
    """A fixed-size little-endian record declared as a field table."""

    def __init__(self, name: str, size: int, fields: tuple[Field, ...]):
        self.name = name
        self.size = size
        self.fields = fields
        pos = 0
        fmt = "<"
        for f in fields:
            if f.offset != pos:
                raise AssertionError(f"{name}.{f.name}: offset {f.offset}, expected {pos}")
            fmt += f"{f.size}s" if f.type == "bytes" else _CODES[f.type]
            pos += f.size
        if pos != size:
            raise AssertionError(f"{name}: fields cover {pos} bytes, expected {size}")
        self.struct = struct.Struct(fmt)
        self.names = tuple(f.name for f in fields)

    def pack(self, **values: object) -> bytes:
        args = []
        for f in self.fields:
            v = values.get(f.name)
            if v is None:
                v = bytes(f.size) if f.type == "bytes" else 0
            args.append(v)
        return self.struct.pack(*args)

    def unpack(self, data: bytes | memoryview, offset: int = 0) -> dict[str, object]:
        return dict(zip(self.names, self.struct.unpack_from(data, offset), strict=True))

    def offset_of(self, name: str) -> int:
        return next(f.offset for f in self.fields if f.name == name)


HEADER = Layout(
    "header",
    64,
    (
        Field("magic", 0, 8, "bytes"),
        Field("version", 8, 4, "u32"),
        Field("flags", 12, 4, "u32"),
        Field("block_size", 16, 4, "u32"),
        Field("entry_count", 20, 4, "u32"),
        Field("strtab_size", 24, 8, "u64"),
        Field("reserved", 32, 32, "bytes"),
    ),
)

ENTRY = Layout(
    "entry",
    96,
    (
        Field("path_off", 0, 8, "u64"),
        Field("path_len", 8, 4, "u32"),
        Field("type", 12, 1, "u8"),
        Field("reserved1", 13, 3, "bytes"),
        Field("mode", 16, 4, "u32"),
        Field("reserved2", 20, 4, "u32"),
        Field("size", 24, 8, "u64"),
        Field("target_off", 32, 8, "u64"),
        Field("root", 40, 32, "bytes"),
        Field("file_id", 72, 16, "bytes"),
        Field("reserved3", 88, 8, "u64"),
    ),
)

ENC_HEADER = Layout(
    "encrypted metadata header",
    28,
    (
        Field("magic", 0, 8, "bytes"),
        Field("version", 8, 4, "u32"),
        Field("reserved", 12, 4, "u32"),
        Field("nonce", 16, 12, "bytes"),
    ),
)
ENC_AAD_SIZE = 16  # bytes 0..16 of the encrypted metadata file are the AAD


@dataclass(frozen=True)
class Entry:
    """One node of the tree as stored in the metadata (paths and targets are bytes)."""

    path: bytes
    type: int
    mode: int
    size: int = 0
    target: bytes = b""
    root: bytes = bytes(ROOT_SIZE)
    file_id: bytes = bytes(FILE_ID_SIZE)

    @property
    def display(self) -> str:
        return "/" + self.path.decode("utf-8", "backslashreplace")


def block_count(size: int) -> int:
    return (size + BLOCK_SIZE - 1) // BLOCK_SIZE


def object_size(size: int, encrypted: bool) -> int:
    """Exact size of the object file of a ``size``-byte file (section 4)."""
    n = block_count(size)
    return size + n * (LEAF_SIZE + (TAG_SIZE if encrypted else 0))


def path_problem(path: bytes) -> str | None:
    """Why ``path`` (relative, ``/``-joined) is not allowed in an image, or None."""
    if len(path) > MAX_PATH:
        return f"path longer than {MAX_PATH} bytes"
    if b"\0" in path:
        return "NUL byte in path"
    if path == b"":
        return None
    for comp in path.split(b"/"):
        if comp in (b"", b".", b".."):
            return "empty, '.' or '..' path component"
        if len(comp) > MAX_NAME:
            return f"path component longer than {MAX_NAME} bytes"
    return None


def parent_of(path: bytes) -> bytes:
    i = path.rfind(b"/")
    return b"" if i < 0 else path[:i]


# Error kinds a reader reports (section 7).
MAC_MISMATCH = "mac-mismatch"
METADATA_MALFORMED = "metadata-malformed"
METADATA_DECRYPT = "metadata-decrypt"
OBJECT_MISSING = "object-missing"
OBJECT_SIZE = "object-size"
ROOT_MISMATCH = "root-mismatch"
BLOCK_MISMATCH = "block-mismatch"
BLOCK_DECRYPT = "block-decrypt"


class ImageError(VerifyError):
    """An image failed verification: ``kind`` is one of the section 7 kinds."""

    def __init__(self, kind: str, message: str, *, where: str | None = None, path: str | None = None):
        self.kind = kind
        self.path = path
        text = f"{kind}: {message}" if path is None else f"{kind}: {path}: {message}"
        super().__init__(text, where=where)
