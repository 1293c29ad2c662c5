"""Reading a Protected FS file as Occlum's SDK fork does (docs/formats/protected-fs.md; the
writer is pfs.py): node 0's mode, MAC and clean name at open, every MHT and data node against
the tag its parent holds before its bytes are used."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .pfs import IV, MAX_SIZE, Body, PfsError, gmac0, metadata_key
from .pfs_layout import (
    DATA_SLOTS,
    ENC_OFF,
    ENCRYPTED,
    FILE_ID,
    MAJOR,
    META_DATA,
    NODE,
    PLAIN,
    SLOT,
    data_phys,
    file_size,
    mht_parent,
    mht_phys,
)


def read_meta_node(node0: bytes, name: str, key: bytes | None = None,
                   where: str | None = None) -> tuple[Body, bytes]:
    """Check a metadata node (mode, MAC, clean name) and return (its Body, the file MAC).
    ``name`` is the basename the file is opened under; ``key`` None: integrity-only."""
    def fail(msg: str) -> PfsError:
        return PfsError(msg, where=where or name)

    if len(node0) != NODE:
        raise fail("truncated at node 0")
    p = PLAIN.unpack(node0)
    if p["file_id"] != FILE_ID or p["major_version"] != MAJOR:
        raise fail("not a Protected FS file (bad file id or version)")
    integrity = key is None
    if p["use_user_kdk_key"] != 1 or p["integrity_only"] != (1 if integrity else 0):
        mode = "integrity-only" if p["integrity_only"] else "user-key"
        raise fail(f"is a {mode} file, opened as {'integrity-only' if integrity else 'user-key'}")
    stored = node0[ENC_OFF:ENC_OFF + ENCRYPTED.size]
    mac = bytes(p["meta_data_gmac"])  # type: ignore[arg-type]
    # Integrity-only files have no key id, SVNs or attribute mask and are never mid-update:
    # those bytes are outside every MAC, so they must be zero.
    if key is None and (any(node0[PLAIN.offset("meta_data_key_id"):PLAIN.offset("use_user_kdk_key")])
                        or any(node0[PLAIN.span("attribute_mask")]) or p["update_flag"]):
        raise fail("metadata node: non-zero unused plain-part fields")
    if key is None:
        if gmac0(stored) != mac:
            raise fail("metadata node: MAC mismatch")
        enc = stored
    else:
        mk = metadata_key(key, bytes(p["meta_data_key_id"]))  # type: ignore[arg-type]
        try:
            enc = AESGCM(mk).decrypt(IV, stored + mac, None)
        except InvalidTag:
            raise fail("metadata node: MAC mismatch (wrong key or tampered)") from None
    e = ENCRYPTED.unpack(enc)
    clean = bytes(e["clean_filename"]).split(b"\0", 1)[0]  # type: ignore[arg-type]
    if clean != os.fsencode(name):
        raise fail(f"file name mismatch: the file was written as {clean.decode(errors='replace')!r}")
    size = int(e["size"])  # type: ignore[arg-type]
    if size > MAX_SIZE:
        raise fail(f"size {size} out of range")
    head = bytes(e["data"])[:min(size, META_DATA)]  # type: ignore[index]
    return Body(size, head, bytes(e["mht_key"]), bytes(e["mht_gmac"])), mac  # type: ignore[arg-type]


class PfsReader:
    """An open protected file: node 0 checked at open, each node against its parent when read.

    ``name`` is the basename the file is opened under (the clean name inside must equal it,
    as the SDK checks); ``key`` None opens integrity-only, else the 16-byte user key."""

    def __init__(self, data_or_fd: bytes | int, name: str, key: bytes | None = None,
                 where: str | None = None):
        self.where = where or name
        self._fd = data_or_fd if isinstance(data_or_fd, int) else None
        self._data = data_or_fd if isinstance(data_or_fd, bytes) else None
        self.key = key
        self._mht: dict[int, bytes] = {}
        body, self.mac = read_meta_node(self._node(0), name, key, self.where)
        self.size = body.size
        self._head = body.head
        self._root = (body.mht_key, body.mht_gmac)
        if self._length() < file_size(self.size):
            self._fail(f"truncated: {self._length()} bytes, a {self.size}-byte file needs "
                       f"{file_size(self.size)}")

    # raw access
    def _length(self) -> int:
        if self._data is not None:
            return len(self._data)
        assert self._fd is not None
        return os.fstat(self._fd).st_size

    def _node(self, phys: int) -> bytes:
        if self._data is not None:
            b = self._data[phys * NODE:(phys + 1) * NODE]
        else:
            assert self._fd is not None
            b = os.pread(self._fd, NODE, phys * NODE)
        if len(b) != NODE:
            self._fail(f"truncated at node {phys}")
        return b

    def _fail(self, msg: str) -> None:
        raise PfsError(msg, where=self.where)

    def _open_node(self, phys: int, k: bytes, tag: bytes, what: str) -> bytes:
        stored = self._node(phys)
        if self.key is None:
            if gmac0(stored) != tag:
                self._fail(f"{what} (node {phys}): MAC mismatch")
            return stored
        try:
            return AESGCM(k).decrypt(IV, stored + tag, None)
        except InvalidTag:
            self._fail(f"{what} (node {phys}): MAC mismatch")
            raise  # unreachable

    def _mht_node(self, m: int) -> bytes:
        got = self._mht.get(m)
        if got is not None:
            return got
        if m == 0:
            k, tag = self._root
        else:
            parent, slot = mht_parent(m)
            pb = self._mht_node(parent)
            off = DATA_SLOTS * SLOT + slot * SLOT
            k, tag = pb[off:off + 16], pb[off + 16:off + SLOT]
        node = self._open_node(mht_phys(m), k, tag, f"MHT node {m}")
        if len(self._mht) > 4096:
            self._mht.clear()
        self._mht[m] = node
        return node

    def data_node(self, d: int) -> bytes:
        """Plaintext of data node ``d``, verified against its MHT slot."""
        mb = self._mht_node(d // DATA_SLOTS)
        off = (d % DATA_SLOTS) * SLOT
        return self._open_node(data_phys(d), mb[off:off + 16], mb[off + 16:off + SLOT],
                               f"data node {d}")

    def read(self, offset: int = 0, length: int | None = None) -> bytes:
        """Content bytes [offset, offset+length), every node touched verified first."""
        end = self.size if length is None else min(self.size, offset + length)
        if offset >= end:
            return b""
        out = bytearray()
        if offset < META_DATA:
            out += self._head[offset:min(end, META_DATA)]
            offset = META_DATA
        while offset < end:
            d, within = divmod(offset - META_DATA, NODE)
            node = self.data_node(d)
            take = min(NODE - within, end - offset)
            out += node[within:within + take]
            offset += take
        return bytes(out)
