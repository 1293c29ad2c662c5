"""`occlum run` and `occlum mount`: hand over to the native runtime (occlum_build/runtime.py)."""

from __future__ import annotations

import argparse

from .. import instance, runtime


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="verify the instance and run a program in it",
                       usage="occlum run <program_name> <program_args>",
                       description="Boot the instance in the current directory (verified: signed "
                                   "LibOS, protected config, init FS, root FS) and run the "
                                   "program, which must lie under an entry point. Exit status: "
                                   "the program's & 0x7f, 128+signal, 127 if it cannot start, "
                                   "1 if the boot fails (docs/runtime.md).")
    p.add_argument("program")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_run)

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
    inst = instance.require_instance(".")
    runtime.exec_run(inst, args.program, args.args)


def cmd_mount(args: argparse.Namespace) -> None:
    inst = instance.require_instance(".")
    runtime.exec_mount(inst, args.path, args.image_key)
