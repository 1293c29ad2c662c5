"""Shared CLI plumbing: run a command function, turn OcclumError into one line + exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .. import log
from ..errors import EXIT_FAILURE, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, OcclumError


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
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
        if log.debug_enabled():
            import traceback

            traceback.print_exc()
        return EXIT_INTERNAL


def main_with(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` with ``parser`` (whose subcommands set ``func``) and run the command."""
    log.setup()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    log.get("cli").debug("%s: %s", parser.prog, " ".join(sys.argv[1:] if argv is None else argv))
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return run_command(func, args)
