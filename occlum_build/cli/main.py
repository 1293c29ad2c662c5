"""`occlum` — the command-line entry point; each command lives in its own cli module."""

from __future__ import annotations

import importlib
import sys

from .. import __version__

# Only what `occlum run` needs is imported at the top: typing alone costs ~5 ms of its
# start-up, and .common (argparse, logging, pathlib) is imported after the run fast path.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence

    from .common import Parser

# Command modules; each exposes register(subparsers).  Add a module here to add commands.
_MODULES = ("instance", "build", "package", "verify", "print", "signkey", "run")

# The usage summary under `occlum --help`, in the Occlum manual's order: each line is the
# usage of that command's own parser (argparse's, so it cannot drift from the options).
MANUAL_ORDER = ("new", "init", "build", "run", "start", "exec", "stop", "gdb", "package", "mount",
                "gen-image-key", "status", "print")
OURS = ("verify", "gen-sign-key")
ENVIRONMENT = """\
environment: OCCLUM_LOG_LEVEL=off|error|warn|info|debug|trace
             OCCLUM_SIM_RUNS_HW=1  run a HW build on the SIM runtime of a machine without SGX
"""


def _summary(commands: Mapping[str, argparse.ArgumentParser]) -> str:
    def usage(name: str) -> str:
        text = commands[name].format_usage().strip()
        return "  " + " ".join(text.removeprefix("usage: ").split())

    lines = ["commands (as in the Occlum manual):"] + [usage(n) for n in MANUAL_ORDER if n in commands]
    lines += ["occlum-build's own:"] + [usage(n) for n in OURS if n in commands]
    return "\n".join(lines) + "\n" + ENVIRONMENT


def build_parser() -> Parser:
    import argparse

    from .common import Parser

    parser = Parser(prog="occlum", description="Build and run Occlum instances (occlum-build).",
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"occlum-build {__version__}")
    sub = parser.add_subparsers(title="command", metavar="<command>")
    for name in _MODULES:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    parser.epilog = _summary(sub.choices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] in (["run"], ["exec"]):  # fast path: `occlum run` start-up is part of every run's latency
        if args[0] == "run":
            from .fastrun import exec_if_ready

            exec_if_ready(args[1:])  # returns unless it could exec occlum-run at once
        from .run import main_run

        return main_run(args)
    from .common import main_with

    return main_with(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
