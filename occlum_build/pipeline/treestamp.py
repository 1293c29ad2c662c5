"""A digest of a source tree's stat keys: the cheap "nothing changed" test of an image stage.

One scandir walk, no file read: SHA-256 over every entry's name and stat key
(fsutil.stat_key: device, inode, size, mtime_ns, ctime_ns, mode), in sorted order.  ctime
cannot be set back by a user, so any edit, touch,
chmod, rename or replacement changes the stamp; an unchanged stamp means the tree is the one
the stage saw.  A stamp taken while an entry was changed very recently (its ctime within
fsutil.RACY_NS of the walk) is *racy* (file time granularity can hide a write in the same tick) and is
not stored: the next check then recomputes the MAC from the image manifest instead.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from ..fsutil import STAT_KEY, is_racy, stat_key


def tree_stamp(src: Path) -> tuple[str, bool]:
    """(stamp, racy) of the tree at ``src``."""
    h = hashlib.sha256()
    now = time.time_ns()
    racy = False
    pack = STAT_KEY.pack
    h.update(pack(*stat_key(os.lstat(src))))
    stack = [os.fsencode(src)]
    while stack:
        top = stack.pop()
        with os.scandir(top) as it:
            entries = sorted(it, key=lambda e: e.name)
        h.update(b"D" + top + b"\0")
        for e in entries:
            s = e.stat(follow_symlinks=False)
            h.update(e.name + b"\0")
            h.update(pack(*stat_key(s)))
            if is_racy(s, now):
                racy = True
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
    return h.hexdigest(), racy
