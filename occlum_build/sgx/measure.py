"""The SGX measurement primitive: MRENCLAVE as SHA-256 over ECREATE/EADD/EEXTEND records.

Every record is 64 bytes, little-endian (Intel SDM, ECREATE/EADD/EEXTEND pseudocode):

* ECREATE: ``"ECREATE\\0"``, SSAFRAMESIZE u32 (pages) at 8, SIZE u64 at 12, zeros to 64;
* EADD:    ``"EADD\\0\\0\\0\\0"``, page offset u64 at 8, the first 48 bytes of SECINFO (FLAGS u64 and
  40 zero bytes) at 16;
* EEXTEND: ``"EEXTEND\\0"``, chunk offset u64 at 8, zeros to 64, then the 256 measured bytes.

A page added with EADD+EEXTEND contributes one EADD record followed by 16 EEXTEND records,
one per 256-byte chunk.  The stream is exactly Fortanix's ``.sgxs`` format (sgxs.py).

Ranges of identical pages (heap, reserved memory: EADD only; stacks, SSA, TD: constant
content) are hashed from a template window whose offset fields are rewritten once per window
with C-level byte operations, so a 16 GB reserved region costs little more than hashing its
256 MB of records (benchmarks/sign_measure.py).

SHA-256 is cryptography's (OpenSSL's, with the SHA extensions where the CPU has them: as fast as
hashlib's), not hashlib's: the signer loads cryptography anyway, and hashlib would load a second
OpenSSL library (~13 M instructions, ~3 ms of `occlum-sgx-sign sign`; docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.hashes import SHA256, Hash

PAGE_SIZE = 4096
CHUNK_SIZE = 256
RECORD_SIZE = 64

# SECINFO.FLAGS (SDM; SDK common/inc/internal/arch.h)
SI_FLAG_R = 0x1
SI_FLAG_W = 0x2
SI_FLAG_X = 0x4
SI_FLAG_PT_SECS = 0x000
SI_FLAG_PT_TCS = 0x100
SI_FLAG_PT_REG = 0x200
SI_FLAG_PT_TRIM = 0x400
SI_FLAGS_PT_MASK = 0xFF00
SI_FLAGS_EXTERNAL = SI_FLAGS_PT_MASK | SI_FLAG_R | SI_FLAG_W | SI_FLAG_X
SI_FLAGS_R = SI_FLAG_PT_REG | SI_FLAG_R  # 0x201
SI_FLAGS_RW = SI_FLAG_PT_REG | SI_FLAG_R | SI_FLAG_W  # 0x203
SI_FLAGS_RX = SI_FLAG_PT_REG | SI_FLAG_R | SI_FLAG_X  # 0x205
SI_FLAGS_RWX = SI_FLAG_PT_REG | SI_FLAG_R | SI_FLAG_W | SI_FLAG_X  # 0x207
SI_FLAGS_TCS = SI_FLAG_PT_TCS  # 0x100

ECREATE_TAG = b"ECREATE\0"
EADD_TAG = b"EADD\0\0\0\0"
EEXTEND_TAG = b"EEXTEND\0"

_EXT_PAGE = RECORD_SIZE + (PAGE_SIZE // CHUNK_SIZE) * (RECORD_SIZE + CHUNK_SIZE)  # 5184 bytes per page

# Template windows.  EADD-only: 4096 pages, so offset bytes 3..7 are constant in a window.
# EADD+EEXTEND: 256 pages (1 MB), so offset bytes 3..7 are constant and byte 2 is the page
# index's high nibble ORed with the window's.  Per window only the bytes that changed are
# rewritten, with strided slice assignments (C loops).
_ADD_WINDOW = 4096
_EXT_WINDOW = 256
_SMALL_EXT = 4  # runs this short are measured page by page
_SMALL_ADD = 64


def sha256(data: bytes | bytearray | memoryview) -> bytes:
    h = Hash(SHA256())
    h.update(data)
    return h.finalize()


def ecreate_record(ssa_frame_size: int, size: int) -> bytes:
    return ECREATE_TAG + ssa_frame_size.to_bytes(4, "little") + size.to_bytes(8, "little") + bytes(44)


def eadd_record(offset: int, flags: int) -> bytes:
    return EADD_TAG + offset.to_bytes(8, "little") + flags.to_bytes(8, "little") + bytes(40)


def eextend_header(offset: int) -> bytes:
    return EEXTEND_TAG + offset.to_bytes(8, "little") + bytes(48)


def _check_flags(flags: int) -> None:
    if flags & ~SI_FLAGS_EXTERNAL:
        raise ValueError(f"SECINFO flags {flags:#x} outside R/W/X and the page type")
    if flags & SI_FLAGS_PT_MASK == SI_FLAG_PT_TCS and flags & (SI_FLAG_R | SI_FLAG_W | SI_FLAG_X):
        raise ValueError("a TCS page must not have R/W/X in SECINFO")


class Measurement:
    """Accumulates MRENCLAVE.  ``sink`` (optional) receives every byte of the record stream,
    which makes the stream observable (an .sgxs file, a benchmark baseline)."""

    def __init__(self, sink: Callable[[bytes], object] | None = None):
        self._h = Hash(SHA256())
        self._sink = sink
        self._created = False
        self.size = 0
        self._templates: dict[tuple[bool, int, int], _Window] = {}

    def _update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)
        if self._sink is not None:
            self._sink(bytes(data))

    def ecreate(self, ssa_frame_size: int, size: int) -> None:
        if self._created:
            raise ValueError("ECREATE twice")
        if size & (size - 1) or size < PAGE_SIZE:
            raise ValueError(f"enclave size {size:#x} is not a power of two of at least one page")
        self._created = True
        self.size = size
        self._update(ecreate_record(ssa_frame_size, size))

    def _check(self, offset: int, count: int, flags: int) -> None:
        if not self._created:
            raise ValueError("EADD before ECREATE")
        if offset % PAGE_SIZE:
            raise ValueError(f"page offset {offset:#x} is not page-aligned")
        if offset + count * PAGE_SIZE > self.size:
            raise ValueError(f"pages at {offset:#x} (+{count}) beyond the enclave size {self.size:#x}")
        _check_flags(flags)

    def add_page(self, offset: int, flags: int, content: bytes | bytearray | memoryview = b"", *,
                 extend: bool = True) -> None:
        """EADD one page (content zero-padded to 4 KB) and, if ``extend``, its 16 EEXTENDs."""
        self._check(offset, 1, flags)
        if len(content) > PAGE_SIZE:
            raise ValueError("page content larger than a page")
        if not extend:
            self._update(eadd_record(offset, flags))
            return
        page = bytes(content) + bytes(PAGE_SIZE - len(content)) if len(content) < PAGE_SIZE else content
        buf = bytearray(_EXT_PAGE)
        buf[0:RECORD_SIZE] = eadd_record(offset, flags)
        pos = RECORD_SIZE
        for c in range(0, PAGE_SIZE, CHUNK_SIZE):
            buf[pos:pos + 8] = EEXTEND_TAG
            buf[pos + 8:pos + 16] = (offset + c).to_bytes(8, "little")
            buf[pos + RECORD_SIZE:pos + RECORD_SIZE + CHUNK_SIZE] = page[c:c + CHUNK_SIZE]
            pos += RECORD_SIZE + CHUNK_SIZE
        self._update(buf)

    def add_pages(self, offset: int, count: int, flags: int, *, extend: bool, fill: int = 0) -> None:
        """EADD ``count`` consecutive pages; with ``extend`` each page is measured as 4 KB of
        the byte ``fill``.  Equivalent to ``add_page`` in a loop, without the per-page cost."""
        if count <= 0:
            return
        self._check(offset, count, flags)
        if not 0 <= fill <= 255:
            raise ValueError("fill must be a byte value")
        if count <= (_SMALL_EXT if extend else _SMALL_ADD):  # cheaper than repositioning a window
            if extend:
                page = bytes((fill,)) * PAGE_SIZE
                for k in range(count):
                    self.add_page(offset + k * PAGE_SIZE, flags, page)
            else:
                self._update(b"".join(eadd_record(offset + k * PAGE_SIZE, flags) for k in range(count)))
            return
        window, per_page, low = (_EXT_WINDOW, _EXT_PAGE, 2) if extend else (_ADD_WINDOW, RECORD_SIZE, 3)
        tpl = self._template(extend, flags, fill)
        first = offset // PAGE_SIZE
        end = first + count
        win = first // window
        while win * window < end:
            lo = max(first, win * window) - win * window
            hi = min(end, (win + 1) * window) - win * window
            tpl.set_high(((win * window * PAGE_SIZE) >> (8 * low)).to_bytes(8 - low, "little"))
            self._update(tpl.view[lo * per_page:hi * per_page])
            win += 1

    def _template(self, extend: bool, flags: int, fill: int) -> _Window:
        key = (extend, flags, fill if extend else 0)
        t = self._templates.get(key)
        if t is None:
            t = self._templates[key] = _Window(extend, flags, fill)
        return t

    def digest(self) -> bytes:
        """MRENCLAVE (32 bytes) of the records so far (EINIT finalizes the same hash)."""
        if not self._created:
            raise ValueError("no ECREATE")
        return self._h.copy().finalize()  # the hash goes on (as hashlib's digest() allows)


_WINDOW_CACHE: dict[tuple[bool, int, int], bytes] = {}


class _Window:
    """The record stream of one window of identical pages, with mutable high offset bytes.

    ``fields`` lists the offset fields as arithmetic progressions (first byte, stride, count);
    the low ``low`` bytes of each field are set once, the rest by :meth:`set_high`.  The initial
    bytes are built once per process (module cache) and copied per Measurement.
    """

    def __init__(self, extend: bool, flags: int, fill: int):
        step = RECORD_SIZE + CHUNK_SIZE
        if extend:
            self.low = 2
            self.fields = [(8, _EXT_PAGE, _EXT_WINDOW)] + [
                (RECORD_SIZE + c * step + 8, _EXT_PAGE, _EXT_WINDOW) for c in range(PAGE_SIZE // CHUNK_SIZE)]
        else:
            self.low = 3
            self.fields = [(8, RECORD_SIZE, _ADD_WINDOW)]
        key = (extend, flags, fill)
        initial = _WINDOW_CACHE.get(key)
        if initial is None:
            initial = _WINDOW_CACHE[key] = self._initial(extend, flags, fill)
        self.buf = bytearray(initial)
        self.view = memoryview(self.buf)
        self.high = bytes(8 - self.low)
        # byte 2 of an EEXTEND window's offsets: page index >> 4, ORed with the window's bits
        self._mixed: dict[int, bytes] = {0: bytes(j >> 4 for j in range(_EXT_WINDOW))} if extend else {}

    @staticmethod
    def _initial(extend: bool, flags: int, fill: int) -> bytes:
        if not extend:
            # one record repeated, then the low offset bytes (j << 12: bytes 1 and 2) per record
            buf = bytearray(eadd_record(0, flags) * _ADD_WINDOW)
            buf[9::RECORD_SIZE] = bytes(((j & 0xF) << 4) for j in range(_ADD_WINDOW))
            buf[10::RECORD_SIZE] = bytes((j >> 4) for j in range(_ADD_WINDOW))
            return bytes(buf)
        # one page's records at offset 0 repeated, then the offset bytes 1 and 2 of every record
        # (page j, chunk c: offset j << 12 | c << 8) with strided assignments
        chunk = bytes([fill]) * CHUNK_SIZE
        page = eadd_record(0, flags) + b"".join(eextend_header(c) + chunk for c in range(0, PAGE_SIZE,
                                                                                         CHUNK_SIZE))
        buf = bytearray(page * _EXT_WINDOW)
        low = bytes(((j & 0xF) << 4) for j in range(_EXT_WINDOW))
        high = bytes((j >> 4) for j in range(_EXT_WINDOW))
        step = RECORD_SIZE + CHUNK_SIZE
        for k, pos in enumerate([0] + [RECORD_SIZE + c * step for c in range(PAGE_SIZE // CHUNK_SIZE)]):
            c = k - 1 if k else 0  # record k > 0 is the EEXTEND of chunk k - 1
            buf[pos + 9::_EXT_PAGE] = low.translate(bytes(x | c for x in range(256))) if c else low
            buf[pos + 10::_EXT_PAGE] = high
        return bytes(buf)

    def set_high(self, high: bytes) -> None:
        for i, (old, new) in enumerate(zip(self.high, high, strict=True)):
            if old != new:
                if i == 0 and self._mixed:
                    values = self._mixed.get(new)
                    if values is None:
                        values = self._mixed[new] = bytes(x | new for x in self._mixed[0])
                else:
                    values = bytes((new,)) * self.fields[0][2]
                for start, stride, count in self.fields:
                    s = start + self.low + i
                    self.buf[s:s + stride * count:stride] = values
        self.high = high
