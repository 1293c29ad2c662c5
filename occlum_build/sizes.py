"""Memory size strings as Occlum writes them ("32MB", "1GB", "4096B").

Occlum's ``parse_memory_size`` checks the suffixes KB, MB, GB, TB, then B (1024-based,
case-sensitive) and takes the trimmed integer before it.  This is the only size parser
in occlum-build; everything that reads a size imports it.
"""

from __future__ import annotations

_UNITS = (("KB", 1 << 10), ("MB", 1 << 20), ("GB", 1 << 30), ("TB", 1 << 40), ("B", 1))


class SizeError(ValueError):
    """The text is not a size; the message says why."""


def parse_size(text: object) -> int:
    """Return the number of bytes in an Occlum size string, or raise :class:`SizeError`."""
    if not isinstance(text, str):
        raise SizeError(f"{_show(text)} is not a size (expected a string like \"32MB\")")
    s = text.strip()
    for suffix, mult in _UNITS:
        if s.endswith(suffix):
            num = s[: -len(suffix)].strip()
            if not num.isdigit() or not num.isascii():
                break
            return int(num) * mult
    raise SizeError(f"{_show(text)} is not a size (use B/KB/MB/GB/TB)")


def format_size(n: int) -> str:
    """Human-readable size for reports (not an Occlum size string)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _show(v: object) -> str:
    import json

    try:
        return json.dumps(v)
    except (TypeError, ValueError):
        return repr(v)
