"""The node layout of Intel's SGX Protected FS in Occlum's fork (docs/formats/protected-fs.md).

One field table per node type; every offset a writer or reader uses comes from here.
A file is a sequence of 4 KiB nodes: node 0 the metadata, then MHT (Merkle hash tree) nodes
and data nodes interleaved (``mht_phys``/``data_phys``).  All integers little-endian.
"""

from __future__ import annotations

from ..fields import Struct

NODE = 4096
FILE_ID = 0x5347585F46494C45  # "SGX_FILE" read as a little-endian u64
MAJOR, MINOR = 1, 0
CLEAN_NAME_MAX = 260  # bytes of the clean-name field, NUL-padded (a name may use 259 of them)
META_DATA = 3072  # the first bytes of a file's content live in the metadata node
SLOT = 32  # an MHT slot: key (16) + GMAC (16)
DATA_SLOTS = 96  # data nodes per MHT node
CHILD_SLOTS = 32  # child MHT nodes per MHT node

# Metadata node, plain part (stored as is in both modes).
PLAIN = Struct("metadata plain", 95, [
    ("file_id", 0, 8, "u"),
    ("major_version", 8, 1, "u"),
    ("minor_version", 9, 1, "u"),
    ("meta_data_key_id", 10, 32, "bytes"),
    ("cpu_svn", 42, 16, "bytes"),
    ("isv_svn", 58, 2, "u"),
    ("use_user_kdk_key", 60, 1, "u"),
    ("attribute_mask", 61, 16, "bytes"),
    ("meta_data_gmac", 77, 16, "bytes"),  # the file MAC
    ("update_flag", 93, 1, "u"),
    ("integrity_only", 94, 1, "u"),
])

# Metadata node, encrypted part (plaintext in integrity-only files), right after PLAIN.
ENCRYPTED = Struct("metadata encrypted", 3392, [
    ("clean_filename", 0, CLEAN_NAME_MAX, "bytes"),
    ("size", 260, 8, "u"),  # i64 in the SDK; never negative
    ("mc_uuid", 268, 16, "bytes"),
    ("mc_value", 284, 4, "u"),
    ("mht_key", 288, 16, "bytes"),
    ("mht_gmac", 304, 16, "bytes"),
    ("data", 320, META_DATA, "bytes"),
])
ENC_OFF = PLAIN.size  # 95
META_PAD = NODE - PLAIN.size - ENCRYPTED.size  # 609 zero bytes end node 0

# The SDK's kdf_input_t with natural alignment (4 pad bytes after label and at the end).
KDF_INPUT = Struct("kdf_input_t", 120, [
    ("index", 0, 4, "u"),
    ("label", 4, 64, "bytes"),
    ("pad0", 68, 4, "bytes"),
    ("node_number", 72, 8, "u"),
    ("nonce", 80, 32, "bytes"),
    ("output_len", 112, 4, "u"),
    ("pad1", 116, 4, "bytes"),
])
METADATA_KEY_LABEL = b"SGX-PROTECTED-FS-METADATA-KEY"


def mht_phys(m: int) -> int:
    """Physical node number of MHT node ``m`` (the root MHT is 0, at node 1)."""
    return 1 + 97 * m


def data_phys(d: int) -> int:
    """Physical node number of data node ``d`` (content bytes 3072 + 4096 d onwards)."""
    return d + 2 + d // DATA_SLOTS


def mht_parent(m: int) -> tuple[int, int]:
    """(parent MHT, child slot) of MHT node ``m`` >= 1."""
    return (m - 1) // CHILD_SLOTS, (m - 1) % CHILD_SLOTS


def data_nodes(size: int) -> int:
    """Data nodes of a file of ``size`` content bytes."""
    return 0 if size <= META_DATA else -(-(size - META_DATA) // NODE)


def mht_nodes(size: int) -> int:
    n = data_nodes(size)
    return 0 if n == 0 else (n - 1) // DATA_SLOTS + 1


def file_size(size: int) -> int:
    """Bytes of the protected file holding ``size`` content bytes (a whole number of nodes)."""
    n = data_nodes(size)
    return NODE if n == 0 else (data_phys(n - 1) + 1) * NODE


def kdf_input(label: bytes, node_number: int, nonce: bytes) -> bytes:
    """The 120-byte KDF input the SDK feeds AES-CMAC to derive a key."""
    return KDF_INPUT.pack({"index": 1, "label": label.ljust(64, b"\0"), "node_number": node_number,
                           "nonce": nonce.ljust(32, b"\0"), "output_len": 0x80})
