"""Full verification of a built SEFS image (``occlum verify`` and tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import log
from .sefs_layout import T_FILE
from .sefs_reader import SefsReader

_log = log.get("verify")


@dataclass(frozen=True)
class VerifyReport:
    entries: int
    files: int
    bytes_checked: int


def verify_image(out_dir: Path, mac: bytes, *, key: bytes | None = None) -> VerifyReport:
    """Check ``metadata`` against the root MAC, every inode file against its inode MAC and
    every node of every file.  Raises SefsError (a VerifyError) naming the first failure and
    the path inside the image."""
    r = SefsReader(out_dir, mac, key)
    entries = files = total = 0
    trace = _log.isEnabledFor(log.TRACE)
    for e in r.walk():
        entries += 1
        data = r.content(e.id, e.path)
        if trace:
            _log.log(log.TRACE, "%s: %s: verified (%d bytes, every node against its MAC)", out_dir,
                     e.path, len(data))
        if e.type == T_FILE:
            files += 1
            total += len(data)
    return VerifyReport(entries, files, total)
