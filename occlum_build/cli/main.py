"""`occlum` — the command-line entry point; each command lives in its own cli module."""

from __future__ import annotations

import importlib
import sys

from .. import __version__

# Only what `occlum run` needs is imported at the top: typing alone costs ~5 ms of its
# start-up, and .common (argparse, logging, pathlib) is imported after the run fast path.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from .common import Parser

# Command modules; each exposes register(subparsers).  Add a module here to add commands.
_MODULES = ("instance", "build", "package", "verify", "print", "signkey", "run")

USAGE_EPILOG = """\
commands (as in the Occlum manual):
  occlum new <path> [--init-ra grpc_ratls|aecs]
  occlum init [--init-ra grpc_ratls|aecs]
  occlum build [--sign-key <key>] [--sign-tool <tool>] [--image-key <key>] [--buildin-image-key]
               [--sgx-mode <HW|SIM>] [-f/--force]
  occlum run [--config-id <base64>] [--config-svn <n>] <program_name> <program_args>
  occlum start [--config-id <base64>] [--config-svn <n>] / exec [cmd1] [args1] / stop
  occlum gdb <program_name> <program_args>
  occlum package [<package_name>.tar.gz] [--debug]
  occlum mount [--sign-key <key>] [--image-key <key>] <path>
  occlum gen-image-key <key_path>
  occlum status
  occlum print mrsigner|mrenclave|enclave-xml|sys-json
occlum-build's own: occlum verify, occlum gen-sign-key; occlum run/start/gdb [--cpus <n>]
  [--expect-mrenclave <hex>] [--expect-mrsigner <hex>]; occlum gdb [--gdb-args <args>]
environment: OCCLUM_LOG_LEVEL=off|error|warn|info|debug|trace
             OCCLUM_SIM_RUNS_HW=1  run a HW build on the SIM runtime of a machine without SGX
"""


def build_parser() -> Parser:
    import argparse

    from .common import Parser

    # RawDescriptionHelpFormatter: keeps the epilog's layout
    parser = Parser(prog="occlum", description="Build and run Occlum instances (occlum-build).",
                    epilog=USAGE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"occlum-build {__version__}")
    sub = parser.add_subparsers(title="command", metavar="<command>")
    for name in _MODULES:
        importlib.import_module(f"{__package__}.{name}").register(sub)
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
