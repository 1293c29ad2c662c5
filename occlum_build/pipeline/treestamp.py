"""A digest of a source tree's stat keys: the cheap "nothing changed" test of an image stage.

One scandir walk, no file read: SHA-256 over every entry's name, type/mode, size, mtime_ns,
ctime_ns and inode, in sorted order.  ctime cannot be set back by a user, so any edit, touch,
chmod, rename or replacement changes the stamp; an unchanged stamp means the tree is the one
the stage saw.  A stamp taken while an entry was changed very recently (its ctime within
RACY_NS of the walk) is *racy* (file time granularity can hide a write in the same tick) and is
not stored: the next check then recomputes the MAC from the image manifest instead.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from pathlib import Path

RACY_NS = 2_000_000_000
_REC = struct.Struct("<IQqqQ")


def tree_stamp(src: Path) -> tuple[str, bool]:
    """(stamp, racy) of the tree at ``src``."""
    h = hashlib.sha256()
    racy_after = time.time_ns() - RACY_NS
    racy = False
    st = os.lstat(src)
    h.update(_REC.pack(st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    stack = [os.fsencode(src)]
    while stack:
        top = stack.pop()
        with os.scandir(top) as it:
            entries = sorted(it, key=lambda e: e.name)
        h.update(b"D" + top + b"\0")
        for e in entries:
            s = e.stat(follow_symlinks=False)
            h.update(e.name + b"\0")
            h.update(_REC.pack(s.st_mode, s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino))
            if s.st_ctime_ns > racy_after or s.st_mtime_ns > racy_after:
                racy = True
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
    return h.hexdigest(), racy
