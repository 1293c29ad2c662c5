"""Logging controlled by OCCLUM_LOG_LEVEL (off/error/warn/info/debug/trace), as in Occlum."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO, cast

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS = {
    "off": logging.CRITICAL + 10,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}
DEFAULT_LEVEL = "info"

log = logging.getLogger("occlum")


def level_name() -> str:
    name = os.environ.get("OCCLUM_LOG_LEVEL", DEFAULT_LEVEL).strip().lower() or DEFAULT_LEVEL
    return name if name in LEVELS else DEFAULT_LEVEL


def setup() -> None:
    """Configure the ``occlum`` logger from OCCLUM_LOG_LEVEL; messages go to stderr."""
    raw = os.environ.get("OCCLUM_LOG_LEVEL", "")
    log.setLevel(LEVELS[level_name()])
    if not log.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(_Fmt())
        log.addHandler(h)
        log.propagate = False
    if raw and raw.strip().lower() not in LEVELS:
        log.warning("OCCLUM_LOG_LEVEL=%r is not one of %s; using %s", raw, "/".join(LEVELS), DEFAULT_LEVEL)


def get(name: str) -> logging.Logger:
    """Logger for a module, under the ``occlum`` hierarchy."""
    return log.getChild(name)


def debug_enabled() -> bool:
    return log.isEnabledFor(logging.DEBUG)


class _Discard:
    """A text stream that drops what is written (progress when the level is below info)."""

    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None: ...

    def isatty(self) -> bool:
        return False


def status_stream(out: TextIO | None = None) -> TextIO:
    """Where progress lines and summaries go: ``out`` (stderr by default) at level info or
    more verbose, nowhere at OCCLUM_LOG_LEVEL=warn/error/off (machine output such as
    ``--json`` on stdout is not affected)."""
    level = log.level or LEVELS[level_name()]  # NOTSET: setup() not called (a library user)
    if level <= logging.INFO:
        return out if out is not None else sys.stderr
    return cast(TextIO, _Discard())


class _Fmt(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"Error: {msg}"
        if record.levelno >= logging.WARNING:
            return f"Warning: {msg}"
        return msg
