"""Shared CLI plumbing: run a command function, turn OcclumError into one line + exit code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ..errors import EXIT_FAILURE, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, OcclumError


def _columns() -> int:
    """``shutil.get_terminal_size().columns``, as argparse sizes help, without importing shutil
    (and the bz2, lzma and zlib modules it imports): argparse makes a formatter at every
    add_argument, and that import was a twentieth of occlum-sgx-sign's start-up."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's default formatter, its width found without shutil (:func:`_columns`)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        width = _columns() - 2 if width is None else width
        super().__init__(prog, indent_increment, max_help_position, width)


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2 (and formats help with
    :class:`HelpFormatter` unless told otherwise; subparsers are Parsers too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"Error: {self.prog}: {message} (see '{self.prog} --help')\n")


def run_command(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Call a command; map known failures to their exit codes, never show a traceback for them."""
    try:
        rc = func(args)
        return EXIT_OK if rc is None else int(rc)
    except OcclumError as e:
        print(f"Error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAILURE
    except Exception as e:  # a bug: say so, traceback only when asked
        print(f"Error: internal error: {type(e).__name__}: {e} "
              "(set OCCLUM_LOG_LEVEL=debug for the traceback)", file=sys.stderr)
        if _debug_enabled():
            import traceback

            traceback.print_exc()
        return EXIT_INTERNAL


def _debug_enabled() -> bool:
    if "occlum_build.log" not in sys.modules:  # logging never set up: the default level, info
        return False
    from .. import log

    return log.debug_enabled()


def main_with(parser: argparse.ArgumentParser, argv: Sequence[str] | None, *, logs: bool = True) -> int:
    """Parse ``argv`` with ``parser`` (whose subcommands set ``func``) and run the command.

    ``logs=False``: the command's code never logs (occlum-sgx-sign), so logging is set up only
    when OCCLUM_LOG_LEVEL is given (the debug line below, the traceback of an internal error,
    the warning about a bad level); otherwise the ``logging`` import (~25 M instructions,
    ~5 ms) is skipped."""
    use_log = logs or "OCCLUM_LOG_LEVEL" in os.environ
    if use_log:
        from .. import log

        log.setup()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if use_log:
        log.get("cli").debug("%s: %s", parser.prog, " ".join(sys.argv[1:] if argv is None else argv))
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return run_command(func, args)
