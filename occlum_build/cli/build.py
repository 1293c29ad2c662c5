"""`occlum build`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .. import log
from ..pipeline.context import SGX_MODES

if TYPE_CHECKING:
    from ..pipeline.context import BuildOptions


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "build", help="build the image and the signed enclave (incremental)",
        usage="occlum build [--sgx-mode HW|SIM] [--sign-key <key>] [--sign-tool <tool>] "
              "[--image-key <key>] [--buildin-image-key] [--enable-edmm Y|N] [--occlum-dir DIR] "
              "[--normalize-modes] [--keep-mtimes] "
              "[-f/--force] [--json]",
        description="Build build/ from Occlum.json, image/ and initfs/ (docs/build.md).")
    p.add_argument("--sgx-mode", type=str.upper, choices=SGX_MODES, default=None,
                   help="default: $SGX_MODE, else HW; a change forces a clean build")
    p.add_argument("--sign-key", type=Path, help="RSA-3072 (e=3) private key PEM; default: the "
                   "instance's development key (created once; not for release); with --sign-tool, "
                   "the public key PEM")
    p.add_argument("--sign-tool",
                   help="external signer command: run as '<tool> <data file> <signature file>', it "
                        "signs the 256 bytes in the data file (docs/sgx-signing.md)")
    p.add_argument("--image-key", type=Path, help="encrypt the image with this key "
                   "(occlum gen-image-key)")
    p.add_argument("--buildin-image-key", action="store_true",
                   help="put the image key into the init FS (demo/test only: it is readable there)")
    p.add_argument("--enable-edmm", default=None, metavar="Y|N",
                   help="HW mode: build for an EDMM platform (default: $ENABLE_EDMM)")
    p.add_argument("--occlum-dir", type=Path, default=None, metavar="DIR",
                   help="build for this real Occlum install (laid out as /opt/occlum; default: "
                        "$OCCLUM_DIR; without it: our SIM runtime; docs/build.md)")
    p.add_argument("--normalize-modes", action="store_true",
                   help="store image/ modes as git sees them (dirs 0755, files 0644 or 0755 by the "
                        "owner's x bit), so checkouts under any umask give the same MACs; "
                        "default: modes as they are, as Occlum")
    p.add_argument("--keep-mtimes", action="store_true",
                   help="store image/ files' mtimes (whole seconds, at most $SOURCE_DATE_EPOCH "
                        "when set) instead of 0, so Python finds its .pyc files valid")
    p.add_argument("-f", "--force", action="store_true", help="rebuild everything")
    p.add_argument("--json", action="store_true", help="print build/report.json on stdout")
    p.set_defaults(func=cmd_build)


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    from ..pipeline.context import YES, BuildOptions, env_defaults

    env = env_defaults()
    return BuildOptions(
        sgx_mode=args.sgx_mode or env["sgx_mode"],
        sign_key=args.sign_key.absolute() if args.sign_key else None,
        sign_tool=args.sign_tool or None,
        image_key=args.image_key.absolute() if args.image_key else None,
        buildin_image_key=args.buildin_image_key,
        edmm_platform=args.enable_edmm in YES if args.enable_edmm is not None else env["edmm_platform"],
        force=args.force,
        occlum_dir=args.occlum_dir.absolute() if args.occlum_dir else env["occlum_dir"],
        normalize_modes=args.normalize_modes,
        keep_mtimes=args.keep_mtimes,
    )


def cmd_build(args: argparse.Namespace) -> None:
    # The pipeline (doit, and the stage modules it loads) is imported by `occlum build` only.
    from ..pipeline.report import summary
    from ..pipeline.run import run_build

    rep = run_build(os.getcwd(), options_from_args(args))
    status = log.status_stream()
    print("Built the Occlum image and enclave successfully", file=status)
    print(summary(rep), file=status)
    if args.json:
        print(json.dumps(rep, indent=2, sort_keys=True))
