"""Image keys: 16 bytes written as ``xx-xx-...-xx`` (47 characters) plus a newline.

This is Occlum's format (``occlum gen-image-key``, sefs-cli ``--key``); the same text form is
used for MACs (``.ROOT_MAC``, ``.builtin_config``).  One parser, used everywhere.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from .errors import KeyFileError
from .fsutil import atomic_write
from .inputfile import MAX_KEY_FILE_BYTES, read_limited

KEY_LEN = 16
HEX16_RE = re.compile(r"[0-9a-fA-F]{2}(?:-[0-9a-fA-F]{2}){15}")  # the text form, either case


def format_hex16(data: bytes) -> str:
    """16 bytes as lower-case ``xx-xx-…`` (Occlum's key and MAC text form)."""
    if len(data) != KEY_LEN:
        raise ValueError("expected 16 bytes")
    return "-".join(f"{b:02x}" for b in data)


def parse_hex16(text: str, where: str) -> bytes:
    """Parse ``xx-xx-…`` (16 bytes); trailing CR/LF is allowed, nothing else."""
    body = text.rstrip("\r\n")
    if not HEX16_RE.fullmatch(body):
        if len(body) != 47:
            why = f"expected 47 characters 'xx-xx-...-xx' (16 hex bytes), found {len(body)}"
        else:
            why = "expected 16 two-digit hex bytes separated by '-'"
        raise KeyFileError(why, where=where)
    return bytes(int(p, 16) for p in body.split("-"))


def read_image_key(path: str | os.PathLike[str]) -> bytes:
    """Read an image key file written by ``occlum gen-image-key``."""
    p = Path(path)
    raw = read_limited(p, what="image key file", limit=MAX_KEY_FILE_BYTES, error=KeyFileError)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError("image key file is not text 'xx-xx-...-xx'", where=str(p)) from None
    return parse_hex16(text, str(p))


def generate_image_key() -> bytes:
    return secrets.token_bytes(KEY_LEN)


def write_image_key(path: str | os.PathLike[str], key: bytes) -> None:
    """Write a key file with mode 0600, atomically; never leaves a readable partial key.  The
    directory must exist (as for Occlum's command; a typo in it is not silently created)."""
    p = Path(path)
    if not p.parent.is_dir():
        why = "is not a directory" if p.parent.exists() else "does not exist"
        raise KeyFileError(f"cannot write the key: the directory {p.parent} {why}", where=str(p))
    atomic_write(p, format_hex16(key) + "\n", mode=0o600)
