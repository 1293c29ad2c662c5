"""Binary structures declared once as a table of fields, packed and unpacked from it (shared
by sgx/ and image/: SGX structures, Protected-FS nodes, SEFS records).

A :class:`Struct` is an ordered list of :class:`Field` (name, offset, size, kind).  Integers are
little-endian (every SGX structure is); ``bytes`` fields are copied as is.  The table checks
that fields do not overlap and that they tile the structure exactly, so an offset typo is
caught when the module is imported, and tests assert the offsets against the SDM/SDK tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Kind = Literal["u", "bytes"]


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    size: int
    kind: Kind = "u"  # "u": unsigned little-endian integer; "bytes": raw bytes


class Struct:
    """A fixed-size little-endian structure described by a field table."""

    def __init__(self, name: str, size: int, fields: list[tuple[str, int, int, Kind]]):
        self.name = name
        self.size = size
        self.fields = [Field(*f) for f in fields]
        self.by_name = {f.name: f for f in self.fields}
        pos = 0
        for f in self.fields:
            if f.offset != pos:
                raise AssertionError(f"{name}.{f.name}: offset {f.offset} but previous field ends at {pos}")
            if f.kind == "u" and f.size not in (1, 2, 4, 8):
                raise AssertionError(f"{name}.{f.name}: integer of size {f.size}")
            pos += f.size
        if pos != size:
            raise AssertionError(f"{name}: fields end at {pos}, structure size is {size}")

    def offset(self, name: str) -> int:
        return self.by_name[name].offset

    def span(self, name: str) -> slice:
        f = self.by_name[name]
        return slice(f.offset, f.offset + f.size)

    def pack(self, values: Mapping[str, int | bytes]) -> bytes:
        """Pack ``values``; fields not named are zero.  Unknown names are an error."""
        unknown = set(values) - set(self.by_name)
        if unknown:
            raise KeyError(f"{self.name}: unknown fields {sorted(unknown)}")
        buf = bytearray(self.size)
        for name, v in values.items():
            self.set(buf, name, v)
        return bytes(buf)

    def set(self, buf: bytearray, name: str, value: int | bytes, base: int = 0) -> None:
        f = self.by_name[name]
        start = base + f.offset
        if f.kind == "u":
            if not isinstance(value, int):
                raise TypeError(f"{self.name}.{name}: expected an integer")
            buf[start:start + f.size] = (value & ((1 << (8 * f.size)) - 1)).to_bytes(f.size, "little")
        else:
            if not isinstance(value, bytes | bytearray) or len(value) != f.size:
                raise ValueError(f"{self.name}.{name}: expected {f.size} bytes")
            buf[start:start + f.size] = value

    def get(self, data: bytes | bytearray | memoryview, name: str, base: int = 0) -> int | bytes:
        f = self.by_name[name]
        raw = bytes(data[base + f.offset: base + f.offset + f.size])
        return int.from_bytes(raw, "little") if f.kind == "u" else raw

    def unpack(self, data: bytes | bytearray | memoryview, base: int = 0) -> dict[str, int | bytes]:
        if len(data) - base < self.size:
            raise ValueError(f"{self.name}: need {self.size} bytes, have {len(data) - base}")
        return {f.name: self.get(data, f.name, base) for f in self.fields}
