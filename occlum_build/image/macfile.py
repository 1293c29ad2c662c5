"""The MAC file (`.ROOT_MAC`): 16 bytes as lower-case ``xx-xx-...`` text, no newline."""

from __future__ import annotations

from pathlib import Path

from ..errors import KeyFileError, VerifyError
from ..fsutil import atomic_write
from ..keys import format_hex16, parse_hex16


def write_mac_file(path: Path, mac: bytes) -> None:
    atomic_write(path, format_hex16(mac))


def read_mac_file(path: Path) -> bytes:
    """Read a MAC file; a missing or malformed one is a VerifyError naming the file."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("ascii")
    except FileNotFoundError:
        raise VerifyError("MAC file does not exist; build the instance first", where=str(p)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise VerifyError(
            f"cannot read MAC file: {getattr(e, 'strerror', None) or e}", where=str(p)
        ) from None
    try:
        return parse_hex16(text, str(p))
    except KeyFileError as e:
        raise VerifyError(f"malformed MAC file: {e.message}", where=str(p)) from None
