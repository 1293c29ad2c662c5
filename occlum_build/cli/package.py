"""`occlum package`."""

from __future__ import annotations

import argparse
import os
import sys

from .. import log


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("package", help="pack the runtime files of a built instance (tar.gz)",
                       usage="occlum package [<package_name>[.tar.gz]] [--debug]",
                       description="Write a reproducible tar.gz with what is needed to run the "
                                   "instance elsewhere (docs/build.md).")
    p.add_argument("name", nargs="?", help="default: <instance dir>/<instance name>.tar.gz")
    p.add_argument("--debug", action="store_true",
                   help="allow a debuggable or SIM-mode instance (not for production)")
    p.set_defaults(func=cmd_package)


def cmd_package(args: argparse.Namespace) -> None:
    from .. import package
    from ..instance import require_instance
    from ..pipeline.state import build_lock
    from ..sizes import format_size

    inst = require_instance(os.getcwd())
    with build_lock(inst, shared=True):
        package.check_packageable(inst, debug=args.debug)
        dest, folder = package.package_path(inst, args.name)
        size = package.make_package(inst, dest, folder)
    print(f"The package {dest} is generated successfully ({format_size(size)}, "
          f"sha256 {package.sha256_of(dest)})", file=log.status_stream(sys.stdout))
