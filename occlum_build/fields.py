"""Binary structures declared once as a table of fields, packed and unpacked from it (shared
by sgx/, image/ and the ELF readers: SGX structures, Protected-FS nodes, SEFS records, ELF
headers).

A :class:`Struct` is an ordered list of :class:`Field` (name, offset, size, kind).  Integers are
little-endian (every SGX structure is), unsigned (``"u"``) or two's complement (``"s"``, e.g.
ELF's ``Sxword``); ``bytes`` fields are copied as is.  The table checks
that fields do not overlap and that they tile the structure exactly, so an offset typo is
caught when the module is imported, and tests assert the offsets against the SDM/SDK tables.
"""

import struct
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, NamedTuple

Kind = Literal["u", "s", "bytes"]
_INT = {1: "B", 2: "H", 4: "I", 8: "Q"}
_INTS = {"u": _INT, "s": {n: c.lower() for n, c in _INT.items()}}


class Field(NamedTuple):
    name: str
    offset: int
    size: int
    kind: Kind = "u"  # "u"/"s": unsigned/signed little-endian integer; "bytes": raw bytes


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
            if f.kind != "bytes" and f.size not in (1, 2, 4, 8):
                raise AssertionError(f"{name}.{f.name}: integer of size {f.size}")
            pos += f.size
        if pos != size:
            raise AssertionError(f"{name}: fields end at {pos}, structure size is {size}")
        # The table compiled once into a struct format: packing a record is one C call
        # (the image stage packs one per inode and directory entry).
        self._st = struct.Struct("<" + "".join(f"{f.size}s" if f.kind == "bytes" else _INTS[f.kind][f.size]
                                               for f in self.fields))
        self._index = {f.name: i for i, f in enumerate(self.fields)}
        self._zero = tuple(bytes(f.size) if f.kind == "bytes" else 0 for f in self.fields)

    def offset(self, name: str) -> int:
        return self.by_name[name].offset

    def span(self, name: str) -> slice:
        f = self.by_name[name]
        return slice(f.offset, f.offset + f.size)

    def pack(self, values: Mapping[str, int | bytes]) -> bytes:
        """Pack ``values``; fields not named are zero.  Unknown names are an error."""
        row = list(self._zero)
        for name, v in values.items():
            i = self._index.get(name)
            if i is None:
                unknown = sorted(set(values) - set(self.by_name))
                raise KeyError(f"{self.name}: unknown fields {unknown}")
            f = self.fields[i]
            if f.kind != "bytes":
                if not isinstance(v, int):
                    raise TypeError(f"{self.name}.{name}: expected an integer")
                row[i] = v & ((1 << (8 * f.size)) - 1) if f.kind == "u" else _wrap(v, f)
            else:
                if not isinstance(v, bytes | bytearray) or len(v) != f.size:
                    raise ValueError(f"{self.name}.{name}: expected {f.size} bytes")
                row[i] = bytes(v)
        return self._st.pack(*row)

    def packer(self, *names: str) -> Callable[..., bytes]:
        """A fast packer taking the values of ``names`` positionally (the other fields are
        zero), for records packed by the thousand.  Out-of-range values raise struct.error."""
        idx = [self._index[n] for n in names]
        zero = self._zero
        st = self._st

        def pack(*values: int | bytes) -> bytes:
            row = list(zero)
            for i, v in zip(idx, values, strict=True):
                row[i] = v
            return st.pack(*row)

        return pack

    def set(self, buf: bytearray, name: str, value: int | bytes, base: int = 0) -> None:
        f = self.by_name[name]
        start = base + f.offset
        if f.kind != "bytes":
            if not isinstance(value, int):
                raise TypeError(f"{self.name}.{name}: expected an integer")
            buf[start:start + f.size] = _wrap(value, f).to_bytes(f.size, "little", signed=f.kind == "s")
        else:
            if not isinstance(value, bytes | bytearray) or len(value) != f.size:
                raise ValueError(f"{self.name}.{name}: expected {f.size} bytes")
            buf[start:start + f.size] = value

    def get(self, data: bytes | bytearray | memoryview, name: str, base: int = 0) -> int | bytes:
        f = self.by_name[name]
        raw = bytes(data[base + f.offset: base + f.offset + f.size])
        return raw if f.kind == "bytes" else int.from_bytes(raw, "little", signed=f.kind == "s")

    def unpack(self, data: bytes | bytearray | memoryview, base: int = 0) -> dict[str, int | bytes]:
        if len(data) - base < self.size:
            raise ValueError(f"{self.name}: need {self.size} bytes, have {len(data) - base}")
        return dict(zip(self._index, self._st.unpack_from(data, base), strict=True))

    def index(self, name: str) -> int:
        """Position of field ``name`` in the tuples of :meth:`unpack_tuple` and :meth:`iter_unpack`."""
        return self._index[name]

    # The positional readers return tuple[Any, ...]: each element is an int for an integer
    # field and bytes for a bytes field, by position, which a tuple type over a table built
    # at run time cannot say; callers index them with index() of fields they know the kind of.
    def unpack_tuple(self, data: bytes | bytearray | memoryview, base: int = 0) -> tuple[Any, ...]:
        """The field values in table order (struct.error if ``data`` is short): one C call."""
        return self._st.unpack_from(data, base)

    def iter_unpack(self, data: bytes | bytearray | memoryview) -> Iterator[tuple[Any, ...]]:
        """Tuples of field values for an array of records filling ``data`` exactly (struct.error
        otherwise), for tables read by the thousand (ELF symbols, dynamic entries)."""
        return self._st.iter_unpack(data)


def _wrap(v: int, f: Field) -> int:
    """``v`` reduced modulo 2**bits into the field's range (as C stores it)."""
    bits = 8 * f.size
    v &= (1 << bits) - 1
    return v - (1 << bits) if f.kind == "s" and v >> (bits - 1) else v
