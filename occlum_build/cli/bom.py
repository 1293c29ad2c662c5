"""`copy_bom` — Occlum's bom copier (docs/copy_bom.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .common import Parser, main_with

USAGE = "copy_bom [FLAGS] [OPTIONS] --file <bom-file> --root <root-dir>"
DESCRIPTION = """\
Copy the files, directories, links and ELF dependencies that a bom file describes into a root
directory (usually an Occlum instance's image/), incrementally: only what changed is copied,
modes, symlinks and mtimes are preserved, nothing is deleted."""
EPILOG = """\
Relative paths in the bom (from, dirs, files) are relative to the parent of --root.
Included boms are searched next to the including bom, then in each --include-dir, then in the
templates shipped with occlum-build (base.yaml).
environment: OCCLUM_LOG_LEVEL=off|error|warn|info|debug|trace,
             OCCLUM_ELF_LOADER_CONFIG=<occlum_elf_loader.config to use>
exit codes: 0 ok, 2 bad bom / missing source or library, 3 hash mismatch, 5 write failed"""


def build_parser() -> Parser:
    p = Parser(prog="copy_bom", usage=USAGE, description=DESCRIPTION, epilog=EPILOG,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-f", "--file", required=True, metavar="<bom-file>",
                   help="The bom file which describes files we want to copy")
    p.add_argument("--root", required=True, metavar="<root-dir>",
                   help="The destination root directory (usually the image directory of an instance)")
    p.add_argument("--dry-run", action="store_true",
                   help="Print every file operation without doing any")
    p.add_argument("-i", "--include-dir", action="append", default=[], metavar="<include-dir>",
                   help="A directory to look for included bom files in (repeatable; relative to the "
                        "current directory)")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from ..bom import copy_bom

    copy_bom(args.file, args.root, include_dirs=args.include_dir, dry_run=args.dry_run)
    return 0  # the summary line is logged (info level) by copy_bom


def main(argv: Sequence[str] | None = None) -> int:
    return main_with(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
