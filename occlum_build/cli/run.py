"""`occlum run` and `occlum mount`: hand over to the native runtime (occlum_build/runtime.py)."""

from __future__ import annotations

import argparse

from .. import launch, paths, runtime
from .common import Parser, main_with

LAUNCH_USAGE = ("[--cpus <n>] [--config-id <base64>] [--config-svn <n>] "
                "[--expect-mrenclave <hex>] [--expect-mrsigner <hex>]")


def register(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser("run", help="verify the instance and run a program in it",
                       usage=f"occlum run {LAUNCH_USAGE} <program_name> <program_args>",
                       description="Boot the instance in the current directory (verified: signed "
                                   "LibOS, protected config, init FS, root FS) and run the "
                                   "program, which must lie under an entry point. Exit status: "
                                   "the program's & 0x7f, 128+signal, 127 if it cannot start, "
                                   "1 if the boot fails (docs/runtime.md).")
    launch.add_arguments(p)
    p.add_argument("program")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("start", help="boot the instance in the background for occlum exec",
                       usage=f"occlum start {LAUNCH_USAGE}",
                       description="Verify and boot the instance in the current directory (as "
                                   "occlum run does) in a background server on "
                                   "run/occlum_exec.sock; its later messages go to "
                                   "run/occlum_exec.log. The options apply to every program "
                                   "that occlum exec runs in it.")
    launch.add_arguments(p)
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("exec", help="run a program in the started instance",
                       usage="occlum exec [--] <program_name> <program_args>")
    p.add_argument("program")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("stop", help="stop the started instance (kills what still runs)",
                       usage="occlum stop")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("gdb", help="run a program in the instance under gdb",
                       usage=f"occlum gdb [--gdb-args <args>] {LAUNCH_USAGE} "
                             "<program_name> <program_args>",
                       description="As occlum run (the same verified boot, mounts, environment "
                                   "and entry points), under Debian's gdb: type 'run' at the "
                                   "prompt; breakpoints on the program are pending until it is "
                                   "loaded. --gdb-args (or $OCCLUM_GDB_ARGS) adds gdb options, "
                                   "split as a shell does, e.g. --gdb-args '-batch -ex run'. "
                                   "Exit status: gdb's (docs/runtime.md, \"occlum gdb\").")
    p.add_argument("--gdb-args", metavar="ARGS",
                   help="options for gdb, one string split as a shell does (default: "
                        "$OCCLUM_GDB_ARGS)")
    launch.add_arguments(p)
    p.add_argument("program")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_gdb)

    p = sub.add_parser("mount", help="serve the instance's root FS at a directory (FUSE)",
                       usage="occlum mount [--sign-key <key>] [--sign-tool <tool>] "
                             "[--image-key <key>] <path>",
                       description="Mount the verified root FS image with its writable layer "
                                   "at <path> in the foreground, until it is unmounted "
                                   "(fusermount3 -u <path>). --sign-key/--sign-tool are "
                                   "accepted for compatibility with Occlum and not needed.")
    p.add_argument("--sign-key")
    p.add_argument("--sign-tool")
    p.add_argument("--image-key", help="the image key file, for an encrypted image")
    p.add_argument("path")
    p.set_defaults(func=cmd_mount)


def cmd_run(args: argparse.Namespace) -> None:
    runtime.exec_run(paths.Instance.at("."), args.program, args.args, launch.occlum_run_args(args))


def cmd_start(args: argparse.Namespace) -> None:
    runtime.start(paths.Instance.at("."), launch.occlum_run_args(args))


def cmd_gdb(args: argparse.Namespace) -> int:
    return runtime.gdb(paths.Instance.at("."), args.program, args.args,
                       launch.occlum_run_args(args), args.gdb_args)


def cmd_exec(args: argparse.Namespace) -> None:
    prog, rest = args.program, list(args.args)
    if prog == "--" and rest:
        prog, rest = rest[0], rest[1:]
    runtime.exec_in(paths.Instance.at("."), prog, rest)


def cmd_stop(args: argparse.Namespace) -> int:
    return runtime.stop(paths.Instance.at("."))


def cmd_mount(args: argparse.Namespace) -> None:
    runtime.exec_mount(paths.Instance.at("."), args.path, args.image_key)


def main_run(argv: list[str]) -> int:
    """`occlum run|exec ...` without building the whole CLI: its start-up time is part of
    every run's latency (benchmarks/run_latency.py), and the other commands import more."""
    parser = Parser(prog="occlum")
    register(parser.add_subparsers())
    return main_with(parser, argv)
