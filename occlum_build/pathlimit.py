"""The Linux limit on path length, and how messages show a path over it.

The kernel refuses a path of PATH_MAX (4096) bytes or more, the terminating NUL included
(ENAMETOOLONG), so 4095 bytes is the longest path any command can open.  A source path over it
(a deep tree under image/, a long `dirs` entry of a bom) is bad input: one line, exit 2, with
the path shortened to its two ends so the line stays readable (docs/exit-codes.md).
"""

from __future__ import annotations

import errno
import os

PATH_MAX = 4096  # <linux/limits.h>, the NUL included
MAX_PATH_BYTES = PATH_MAX - 1
NAME_MAX = 255  # <linux/limits.h>: one name in a path (the same ENAMETOOLONG)
_HEAD, _TAIL = 60, 40  # characters kept at the start and the end of a shortened path


def _text(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    p = os.fspath(path)
    return os.fsdecode(p) if isinstance(p, bytes) else p


def shown(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """``path`` for a message: as it is, or its first 60 and last 40 characters around '...'
    when it is longer than 120 characters (undecodable bytes are shown as escapes)."""
    s = _text(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return s if len(s) <= 120 else f"{s[:_HEAD]}...{s[-_TAIL:]}"


def too_long(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> bool:
    return len(os.fsencode(path)) > MAX_PATH_BYTES


def message(path: str | bytes | os.PathLike[str] | os.PathLike[bytes], what: str = "path") -> str:
    """The one wording of the path-limit error: ``<what> <shortened path> is N bytes, over
    the Linux limit of 4095 bytes (PATH_MAX)``."""
    n = len(os.fsencode(path))
    return f"{what} {shown(path)} is {n} bytes, over the Linux limit of {MAX_PATH_BYTES} bytes (PATH_MAX)"


def error_message(e: OSError, path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
                  what: str = "path") -> str | None:
    """For an ENAMETOOLONG about ``path``: the path-limit message (or the name-limit one when
    a single name is over 255 bytes); None for any other error."""
    if e.errno != errno.ENAMETOOLONG:
        return None
    if too_long(path):
        return message(path, what)
    longest = max(os.fsencode(path).split(b"/"), key=len)
    return (f"{what} {shown(path)} has a name of {len(longest)} bytes, over the Linux limit of "
            f"{NAME_MAX} bytes (NAME_MAX)")
