"""Intel SGX Protected FS files as Occlum's SDK fork writes and reads them
(docs/formats/protected-fs.md; layout in pfs_layout.py).

Every node is protected with AES-128-GCM under an all-zero 12-byte IV:

- integrity-only (the key is all zero): nodes are stored in the clear and each node's tag is
  GCM(0, 0, aad=node, pt="") -- the same bytes as Occlum's ``sgx_fopen_integrity_only``;
- user key: each node is encrypted under its own key, kept with its tag in the parent node;
  the metadata key is AES-CMAC(user key, kdf_input(key id)) as the SDK derives it.  Real
  Occlum draws node keys and the key id at random; this writer derives them from the user
  key and what the node holds (``_Keys``), so the same key, name and content give the same
  bytes, and a key is never used for two different plaintexts (docs/security.md).

In both modes only node 0 depends on the file's clean name: ``write_body`` writes nodes 1..N
and returns what node 0 needs, ``meta_node`` makes node 0 for a name, so a build can reuse a
body by content and rewrite 4 KiB when a file's name (a SEFS inode id) changes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.cmac import CMAC

from ..errors import OutputError, VerifyError
from .pfs_layout import (
    CHILD_SLOTS,
    DATA_SLOTS,
    ENCRYPTED,
    FILE_ID,
    MAJOR,
    META_DATA,
    META_PAD,
    METADATA_KEY_LABEL,
    MINOR,
    NODE,
    PLAIN,
    SLOT,
    data_nodes,
    data_phys,
    file_size,
    kdf_input,
    mht_nodes,
    mht_parent,
    mht_phys,
)

IV = bytes(12)
ZERO16 = bytes(16)
_GMAC0 = AESGCM(ZERO16)
# Largest content size: the SDK keeps it in an i64; SEFS never comes near.  We refuse
# what the node numbering cannot address in a u64 file offset.
MAX_SIZE = (1 << 62)


class PfsError(VerifyError):
    """A protected file failed a check; the message names the file and what failed."""


def format_mac(mac: bytes) -> str:
    """A MAC as Occlum prints it: 16 lower-case hex bytes joined by '-' (47 characters)."""
    return "-".join(f"{b:02x}" for b in mac)


def gmac0(node: bytes | bytearray | memoryview) -> bytes:
    """The integrity-only tag of a node: GCM with key 0 and IV 0, the node as AAD."""
    return _GMAC0.encrypt(IV, b"", bytes(node))


def _cmac(key: bytes, data: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def metadata_key(user_key: bytes, key_id: bytes) -> bytes:
    """The SDK's metadata key: AES-CMAC-128(user key, kdf_input(label, 0, key id))."""
    return _cmac(user_key, kdf_input(METADATA_KEY_LABEL, 0, key_id))


class _Keys:
    """Deterministic per-node keys of a user-key file (docs/formats/protected-fs.md §4)."""

    def __init__(self, user_key: bytes):
        if len(user_key) != 16:
            raise ValueError("a Protected FS user key is 16 bytes")
        self.user_key = user_key
        k_det = hmac.new(user_key, b"occlum-build pfs deterministic keys v2", hashlib.sha256).digest()
        self._hmac = hmac.new(k_det, digestmod=hashlib.sha256)  # copied per use: keyed once

    def node(self, phys: int, plain: bytes | memoryview) -> bytes:
        h = self._hmac.copy()
        h.update(b"node\0" + phys.to_bytes(8, "little"))
        h.update(plain)
        return h.digest()[:16]

    def key_id(self, enc_plain: bytes) -> bytes:
        h = self._hmac.copy()
        h.update(b"metadata key id\0")
        h.update(enc_plain)
        return h.digest()


@dataclass(frozen=True)
class Body:
    """What node 0 needs from a written body: the content size, its first 3072 bytes and the
    root MHT node's key and tag (zero for files of at most 3072 bytes)."""

    size: int
    head: bytes
    mht_key: bytes = ZERO16
    mht_gmac: bytes = ZERO16


def _protect(node: bytes | bytearray | memoryview, phys: int,
             keys: _Keys | None) -> tuple[bytes, bytes, bytes]:
    """(stored bytes, key, tag) of one data or MHT node."""
    if keys is None:
        return bytes(node), ZERO16, gmac0(node)
    k = keys.node(phys, node)
    sealed = AESGCM(k).encrypt(IV, bytes(node), None)
    return sealed[:NODE], k, sealed[NODE:]


class _Tree:
    """MHT nodes of a body being written: each is finished (tagged, written, entered into its
    parent) once its data slots and all its child MHT nodes are; few are open at a time."""

    def __init__(self, fd: int, n_mht: int, keys: _Keys | None):
        self.fd, self.n, self.keys = fd, n_mht, keys
        self.open: dict[int, bytearray] = {}
        self.waiting: dict[int, int] = {}  # MHT -> children not finished yet
        self.data_done: set[int] = set()
        self.root: tuple[bytes, bytes] = (ZERO16, ZERO16)

    def node(self, m: int) -> bytearray:
        b = self.open.get(m)
        if b is None:
            b = self.open[m] = bytearray(NODE)
            first = CHILD_SLOTS * m + 1
            self.waiting[m] = max(0, min(first + CHILD_SLOTS, self.n) - first)
        return b

    def data_finished(self, m: int) -> None:
        self.data_done.add(m)
        self._try(m)

    def _try(self, m: int) -> None:
        while self.waiting.get(m) == 0 and m in self.data_done:
            buf = self.open.pop(m)
            del self.waiting[m]
            self.data_done.discard(m)
            stored, k, tag = _protect(buf, mht_phys(m), self.keys)
            os.pwrite(self.fd, stored, mht_phys(m) * NODE)
            if m == 0:
                self.root = (k, tag)
                return
            parent, slot = mht_parent(m)
            pb = self.node(parent)
            off = DATA_SLOTS * SLOT + slot * SLOT
            pb[off:off + SLOT] = k + tag
            self.waiting[parent] -= 1
            m = parent


def write_body(out_fd: int, src_fd: int, size: int, key: bytes | None = None,
               where: str = "") -> Body:
    """Write nodes 1..N of a protected file holding the ``size`` bytes read from ``src_fd``
    (from its current offset) into ``out_fd`` (at their node offsets), and return what node 0
    needs.  Memory stays bounded: 96 data nodes and the open MHT nodes."""
    if size > MAX_SIZE:
        raise OutputError(f"a file of {size} bytes is over the Protected FS limit", where=where)
    keys = _Keys(key) if key is not None else None
    head = _read_exact(src_fd, min(size, META_DATA), where)
    n = data_nodes(size)
    if n == 0:
        return Body(size, head)
    tree = _Tree(out_fd, mht_nodes(size), keys)
    left = size - META_DATA
    buf = bytearray(DATA_SLOTS * NODE)
    for m in range(tree.n):
        count = min(DATA_SLOTS, n - DATA_SLOTS * m)
        want = min(left, count * NODE)
        mv = memoryview(buf)
        got = _readinto_exact(src_fd, mv[:want], where)
        left -= got
        if got < count * NODE:
            mv[got:count * NODE] = bytes(count * NODE - got)
        mb = tree.node(m)
        d0 = DATA_SLOTS * m
        if keys is None:
            for i in range(count):
                mb[i * SLOT + 16:(i + 1) * SLOT] = _GMAC0.encrypt(IV, b"", mv[i * NODE:(i + 1) * NODE])
            _pwrite_all(out_fd, mv[:count * NODE], data_phys(d0) * NODE)
        else:
            # Each node is encrypted straight into place; its tag lands on the first 16 bytes
            # of the next node's place (overwritten next) or the 16 spare bytes at the end.
            out = bytearray(count * NODE + 16)
            omv = memoryview(out)
            for i in range(count):
                node = mv[i * NODE:(i + 1) * NODE]
                k = keys.node(data_phys(d0 + i), node)
                AESGCM(k).encrypt_into(IV, node, None, omv[i * NODE:(i + 1) * NODE + 16])
                mb[i * SLOT:i * SLOT + 16] = k
                mb[i * SLOT + 16:(i + 1) * SLOT] = omv[(i + 1) * NODE:(i + 1) * NODE + 16]
            _pwrite_all(out_fd, omv[:count * NODE], data_phys(d0) * NODE)
        tree.data_finished(m)
    if tree.open:
        raise AssertionError("MHT nodes left open")  # a bug in _Tree, never input
    return Body(size, head, *tree.root)


_pack_encrypted = ENCRYPTED.packer("clean_filename", "size", "mht_key", "mht_gmac", "data")
_pack_plain = PLAIN.packer("file_id", "major_version", "minor_version", "meta_data_key_id",
                           "use_user_kdk_key", "integrity_only", "meta_data_gmac")
_PAD = bytes(META_PAD)
ZERO32 = bytes(32)


def meta_node(clean_name: bytes, body: Body, key: bytes | None = None) -> tuple[bytes, bytes]:
    """(node 0, file MAC) of a protected file named ``clean_name`` with ``body``."""
    if not clean_name or len(clean_name) >= 260 or b"/" in clean_name or b"\0" in clean_name:
        raise ValueError(f"bad Protected FS clean name {clean_name!r}")
    # (struct pads the name and the head with NULs to their field sizes)
    enc = _pack_encrypted(clean_name, body.size, body.mht_key, body.mht_gmac, body.head)
    if key is None:
        mac = gmac0(enc)
        stored = enc
        plain = _pack_plain(FILE_ID, MAJOR, MINOR, ZERO32, 1, 1, mac)
    else:
        key_id = _Keys(key).key_id(enc)
        sealed = AESGCM(metadata_key(key, key_id)).encrypt(IV, enc, None)
        stored, mac = sealed[:-16], sealed[-16:]
        plain = _pack_plain(FILE_ID, MAJOR, MINOR, key_id, 1, 0, mac)
    return plain + stored + _PAD, mac


def protect_bytes(data: bytes, clean_name: bytes, key: bytes | None = None) -> tuple[bytes, bytes]:
    """(file bytes, MAC) of a whole protected file made in memory (the protected config,
    directory contents, small files)."""
    src = os.memfd_create("pfs-src", os.MFD_CLOEXEC)
    out = os.memfd_create("pfs-out", os.MFD_CLOEXEC)
    try:
        if data:
            _pwrite_all(src, memoryview(data), 0)
        body = write_body(out, src, len(data), key)
        node0, mac = meta_node(clean_name, body, key)
        rest = os.pread(out, file_size(len(data)), 0)
    finally:
        os.close(src)
        os.close(out)
    return node0 + rest[NODE:].ljust(file_size(len(data)) - NODE, b"\0"), mac


def _read_exact(fd: int, n: int, where: str) -> bytes:
    buf = bytearray(n)
    _readinto_exact(fd, memoryview(buf), where)
    return bytes(buf)


def _readinto_exact(fd: int, mv: memoryview, where: str) -> int:
    done = 0
    while done < len(mv):
        got = os.readv(fd, [mv[done:]])
        if got == 0:
            raise OutputError(f"file shrank while it was read ({done} of {len(mv)} bytes)",
                              where=where)
        done += got
    return done


def _pwrite_all(fd: int, mv: memoryview, off: int) -> None:
    while len(mv):
        n = os.pwrite(fd, mv, off)
        mv, off = mv[n:], off + n
