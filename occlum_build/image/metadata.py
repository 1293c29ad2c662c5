"""Metadata encoding and strict decoding (docs/formats/image.md sections 3 and 5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag

from .crypto import ImageKey
from .format import (
    BLOCK_SIZE,
    ENC_AAD_SIZE,
    ENC_HEADER,
    ENTRY,
    FILE_ID_SIZE,
    FLAG_ENCRYPTED,
    HEADER,
    MAGIC_ENCRYPTED,
    MAGIC_PLAIN,
    MAX_TARGET,
    METADATA_DECRYPT,
    METADATA_MALFORMED,
    ROOT_SIZE,
    SYMLINK_MODE,
    TAG_SIZE,
    TYPE_DIR,
    TYPE_FILE,
    TYPE_SYMLINK,
    VERSION,
    Entry,
    ImageError,
    parent_of,
    path_problem,
)

if TYPE_CHECKING:
    from .scan import Node

_ZERO_ROOT = bytes(ROOT_SIZE)
_ZERO_ID = bytes(FILE_ID_SIZE)


def encode_plain(entries: Sequence[Entry | Node], encrypted: bool) -> bytes:
    """The plaintext metadata P of ``entries`` (already sorted and validated by the writer;
    it passes its scan nodes, which carry the same attributes, rather than make entries)."""
    strtab = bytearray()
    recs = []
    pack = ENTRY.struct.pack
    for e in entries:
        path_off = len(strtab)
        strtab += e.path
        target_off = 0
        if e.type == TYPE_SYMLINK:
            target_off = len(strtab)
            strtab += e.target
        # Positional pack of the ENTRY table's fields, in table order (hot loop).
        recs.append(
            pack(
                path_off, len(e.path), e.type, b"\0\0\0", e.mode, 0, e.size, target_off, e.root, e.file_id, 0
            )
        )
    head = HEADER.pack(
        magic=MAGIC_PLAIN,
        version=VERSION,
        flags=FLAG_ENCRYPTED if encrypted else 0,
        block_size=BLOCK_SIZE,
        entry_count=len(entries),
        strtab_size=len(strtab),
    )
    return head + b"".join(recs) + bytes(strtab)


def patch_plain(plain: bytes, changed: Sequence[tuple[int, Entry | Node]]) -> bytes:
    """``plain`` with the records of entries ``changed`` (index, new entry) replaced.

    Only for files and directories replacing files or directories at the same path: their
    records name the path by offset and hold no target, so the string table and every
    other record stay as they are. The caller guarantees this (a symlink on either side,
    or an added or removed path, needs encode_plain())."""
    out = bytearray(plain)
    st = ENTRY.struct
    for i, e in changed:
        at = HEADER.size + i * ENTRY.size
        path_off, path_len, old_type = st.unpack_from(out, at)[:3]
        if TYPE_SYMLINK in (old_type, e.type) or path_len != len(e.path):
            raise ValueError(f"entry {i} cannot be patched")
        fields = (path_off, path_len, e.type, b"\0\0\0", e.mode, 0, e.size, 0, e.root, e.file_id, 0)
        st.pack_into(out, at, *fields)
    return bytes(out)


def seal(plain: bytes, key: ImageKey | None) -> bytes:
    """The metadata file bytes of plaintext metadata ``plain``."""
    if key is None:
        return plain
    head16 = ENC_HEADER.pack(magic=MAGIC_ENCRYPTED, version=VERSION)[:ENC_AAD_SIZE]
    nonce, sealed = key.seal_metadata(head16, plain)
    return head16 + nonce + sealed


def open_sealed(data: bytes, key: ImageKey | None) -> bytes:
    """The plaintext of metadata file bytes this writer sealed (no validation: for data
    whose digest the caller recorded when it wrote them)."""
    if key is None:
        return data
    nonce = data[ENC_AAD_SIZE : ENC_HEADER.size]
    return key.open_metadata(data[:ENC_AAD_SIZE], nonce, data[ENC_HEADER.size :])


def encode(entries: Sequence[Entry | Node], key: ImageKey | None) -> bytes:
    """The metadata file bytes as stored."""
    return seal(encode_plain(entries, key is not None), key)


def _bad(msg: str, where: str | None) -> ImageError:
    return ImageError(METADATA_MALFORMED, msg, where=where)


def decode(data: bytes, key: ImageKey | None, where: str | None = None) -> list[Entry]:
    """Decrypt (if ``key``) and strictly validate a metadata file; return its entries."""
    if data[:8] == MAGIC_ENCRYPTED:
        if key is None:
            raise _bad("the image is encrypted but no image key was given", where)
        if len(data) < ENC_HEADER.size + TAG_SIZE:
            raise _bad("encrypted metadata is too short", where)
        h = ENC_HEADER.unpack(data)
        if h["version"] != VERSION or h["reserved"] != 0:
            raise _bad(f"unknown encrypted metadata version {h['version']}", where)
        try:
            plain = key.open_metadata(data[:ENC_AAD_SIZE], h["nonce"], data[ENC_HEADER.size :])
        except InvalidTag:
            raise ImageError(
                METADATA_DECRYPT,
                "cannot decrypt the metadata: wrong image key or tampered image",
                where=where,
            ) from None
        return parse_plain(plain, encrypted=True, where=where)
    if data[:8] == MAGIC_PLAIN:
        if key is not None:
            raise _bad("an image key was given but the image is integrity-only", where)
        return parse_plain(data, encrypted=False, where=where)
    raise _bad("not an occlum-build image metadata file (bad magic)", where)


def parse_plain(p: bytes, *, encrypted: bool, where: str | None = None) -> list[Entry]:
    if len(p) < HEADER.size:
        raise _bad("metadata shorter than its header", where)
    h = HEADER.unpack(p)
    if h["magic"] != MAGIC_PLAIN:
        raise _bad("bad metadata magic", where)
    if h["version"] != VERSION:
        raise _bad(f"unknown metadata version {h['version']}", where)
    if h["flags"] != (FLAG_ENCRYPTED if encrypted else 0):
        raise _bad(f"metadata flags {h['flags']:#x} do not match the container", where)
    if h["block_size"] != BLOCK_SIZE:
        raise _bad(f"block size {h['block_size']}, expected {BLOCK_SIZE}", where)
    if h["reserved"] != bytes(32):
        raise _bad("non-zero reserved header bytes", where)
    n, strsize = h["entry_count"], h["strtab_size"]
    if n == 0:
        raise _bad("no entries", where)
    base = HEADER.size + ENTRY.size * n
    if len(p) != base + strsize:
        raise _bad(f"metadata is {len(p)} bytes, header says {base + strsize}", where)
    strtab = p[base:]
    entries: list[Entry] = []
    kinds: dict[bytes, int] = {}
    pos = 0
    prev: bytes | None = None
    for i in range(n):
        r = ENTRY.unpack(p, HEADER.size + ENTRY.size * i)
        at = f"entry {i}"
        if r["reserved1"] != b"\0\0\0" or r["reserved2"] or r["reserved3"]:
            raise _bad(f"{at}: non-zero reserved bytes", where)
        if r["path_off"] != pos or pos + r["path_len"] > strsize:
            raise _bad(f"{at}: path offset/length outside the string table order", where)
        path = strtab[pos : pos + r["path_len"]]
        pos += r["path_len"]
        why = path_problem(path)
        if why:
            raise _bad(f"{at}: {why}", where)
        if prev is not None and path <= prev:
            raise _bad(f"{at}: entries out of order or duplicated", where)
        t, mode, size, root, fid = r["type"], r["mode"], r["size"], r["root"], r["file_id"]
        target = b""
        if t not in (TYPE_FILE, TYPE_DIR, TYPE_SYMLINK):
            raise _bad(f"{at}: unknown type {t}", where)
        if mode > 0o777 or (t == TYPE_SYMLINK and mode != SYMLINK_MODE):
            raise _bad(f"{at}: bad mode {mode:#o}", where)
        if t == TYPE_SYMLINK:
            if not 1 <= size <= MAX_TARGET:
                raise _bad(f"{at}: symlink target length {size}", where)
            if r["target_off"] != pos or pos + size > strsize:
                raise _bad(f"{at}: target offset/length outside the string table order", where)
            target = strtab[pos : pos + size]
            pos += size
            if b"\0" in target:
                raise _bad(f"{at}: NUL byte in link target", where)
        elif r["target_off"] != 0:
            raise _bad(f"{at}: target offset on a non-symlink", where)
        if t == TYPE_DIR and size != 0:
            raise _bad(f"{at}: directory with non-zero size", where)
        has_obj = t == TYPE_FILE and size > 0
        if has_obj and root == _ZERO_ROOT:
            raise _bad(f"{at}: file without object root", where)
        if not has_obj and root != _ZERO_ROOT:
            raise _bad(f"{at}: object root on an entry without content", where)
        if fid != _ZERO_ID and not (has_obj and encrypted):
            raise _bad(f"{at}: file id where none is allowed", where)
        if i == 0:
            if path != b"" or t != TYPE_DIR:
                raise _bad("entry 0 is not the root directory", where)
        elif kinds.get(parent_of(path)) != TYPE_DIR:
            raise _bad(f"{at}: parent directory of /{path.decode('utf-8', 'replace')} is missing", where)
        kinds[path] = t
        prev = path
        entries.append(Entry(path, t, mode, size, target, root, fid))
    if pos != strsize:
        raise _bad("string table has unused bytes", where)
    return entries
