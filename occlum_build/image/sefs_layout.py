"""The records of an SEFS image as Occlum's ``sefs-cli zip`` writes them (docs/formats/sefs.md).

An image directory holds ``metadata`` and one Protected-FS file per inode (pfs.py), named by
``disk_name(id)``.  ``metadata`` is a table of 128-byte blocks: the superblock in block 0,
the free map of group g in block 1024 g + 1, inode i in block i.
"""

from __future__ import annotations

from ..fields import Struct

BLOCK = 128
GROUP_BLOCKS = 1024
MAGIC = 0x2F8DBE2A
ROOT_ID = 2
METADATA_FILE = "metadata"
NAME_MAX = 255
MAX_ID = (1 << 32) - 1  # a directory entry stores the id in a u32
T_FILE, T_DIR, T_SYMLINK = 1, 2, 3

SUPERBLOCK = Struct("SuperBlock", 16, [
    ("magic", 0, 4, "u"),
    ("blocks", 4, 4, "u"),
    ("unused_blocks", 8, 4, "u"),
    ("groups", 12, 4, "u"),
])

DISK_INODE = Struct("DiskINode", 112, [
    ("size", 0, 8, "u"),
    ("type", 8, 4, "u"),
    ("mode", 12, 2, "u"),
    ("nlinks", 14, 2, "u"),
    ("blocks", 16, 4, "u"),
    ("uid", 20, 4, "u"),
    ("gid", 24, 4, "u"),
    ("pad", 28, 4, "u"),
    ("atime", 32, 16, "bytes"),
    ("mtime", 48, 16, "bytes"),
    ("ctime", 64, 16, "bytes"),
    ("disk_filename", 80, 16, "bytes"),
    ("inode_mac", 96, 16, "bytes"),
])

DISK_ENTRY = Struct("DiskEntry", 264, [
    ("id", 0, 4, "u"),
    ("name", 4, 256, "bytes"),
    ("type", 260, 4, "u"),
])


def disk_id(i: int) -> bytes:
    """The 16 bytes naming inode ``i``'s file: the id as a little-endian u128."""
    return i.to_bytes(16, "little")


def disk_name(i: int) -> str:
    """File name of inode ``i`` in the image directory (root: 0200...00)."""
    return disk_id(i).hex()


def is_freemap_block(b: int) -> bool:
    return b % GROUP_BLOCKS == 1


def ids(count: int) -> list[int]:
    """The ids ``count`` inodes get, in allocation order: the first free block each time,
    skipping block 0, 1 and every group's free-map block."""
    out: list[int] = []
    b = ROOT_ID
    while len(out) < count:
        if not is_freemap_block(b):
            out.append(b)
        b += 1
    return out


def inodes_up_to(max_id: int) -> int:
    """How many inodes get ids of at most ``max_id``: ROOT_ID..max_id less the free-map blocks."""
    return (max_id - 1) - (max_id - 1) // GROUP_BLOCKS


MAX_INODES = inodes_up_to(MAX_ID)  # the most an image can hold: ids are u32


def groups_for(max_id: int) -> int:
    """Groups of an image whose highest inode id is ``max_id`` (added only when needed)."""
    return max_id // GROUP_BLOCKS + 1


def metadata_size(max_id: int, groups: int) -> int:
    """Logical size of ``metadata``: the end of the last block written (sefs-cli's set_len
    does nothing, so the file ends at the last inode or the last free map)."""
    return max(max_id * BLOCK + DISK_INODE.size, (GROUP_BLOCKS * (groups - 1) + 1) * BLOCK + BLOCK)
