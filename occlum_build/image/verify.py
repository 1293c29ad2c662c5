"""Full verification of a built image (``occlum verify`` and tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .format import TYPE_FILE
from .reader import ImageReader


@dataclass(frozen=True)
class VerifyReport:
    entries: int
    files: int
    objects: int
    bytes_checked: int


def verify_image(out_dir: Path, mac: bytes, *, key: bytes | None = None) -> VerifyReport:
    """Check the MAC, the metadata and every block of every object.

    Raises :class:`occlum_build.image.format.ImageError` (a VerifyError) naming the first
    failure: its ``kind`` (docs/formats/image.md section 7) and the path inside the image.
    """
    r = ImageReader(out_dir, mac, key)
    seen: set[bytes] = set()
    files = total = 0
    for e in r.entries():
        if e.type != TYPE_FILE:
            continue
        files += 1
        if e.size == 0 or e.root in seen:
            continue
        r.check(e)
        seen.add(e.root)
        total += e.size
    return VerifyReport(len(r.entries()), files, len(seen), total)
