"""The MAC file (`.ROOT_MAC`): 16 bytes as lower-case ``xx-xx-...`` text, no newline."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import KeyFileError, VerifyError
from ..fsutil import atomic_write
from ..inputfile import MAX_KEY_FILE_BYTES, read_limited
from ..keys import format_hex16, parse_hex16


def write_mac_file(path: Path, mac: bytes) -> None:
    atomic_write(path, format_hex16(mac))


def read_mac_file(path: Path) -> bytes:
    """Read a MAC file; a missing or malformed one is a VerifyError naming the file."""
    p = Path(path)
    if not os.path.lexists(p):
        raise VerifyError("MAC file does not exist; build the instance first", where=str(p))
    raw = read_limited(p, what="MAC file", limit=MAX_KEY_FILE_BYTES, error=VerifyError)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise VerifyError("cannot read MAC file: not ASCII text", where=str(p)) from None
    try:
        return parse_hex16(text, str(p))
    except KeyFileError as e:
        raise VerifyError(f"malformed MAC file: {e.message}", where=str(p)) from None
