"""`occlum verify`."""

from __future__ import annotations

import argparse
import os
import sys

from .. import log


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("verify", help="recompute every MAC from image/ and initfs/ and compare with build/",
                       usage="occlum verify [--image-key <key>]",
                       description="Check build/ against the instance's inputs; exit 3 naming the "
                                   "first difference (docs/build.md).")
    p.add_argument("--image-key", help="the key the image was built with (encrypted images)")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> None:
    from .. import keys
    from ..instance import require_instance
    from ..pipeline.state import build_lock
    from ..pipeline.verify import verify_instance

    inst = require_instance(os.getcwd())
    key = keys.read_image_key(args.image_key) if args.image_key else None
    out = log.status_stream(sys.stdout)  # confirmations: from OCCLUM_LOG_LEVEL=info
    with build_lock(inst, shared=True):
        verify_instance(inst, image_key=key, say=lambda line: print(line, file=out))
    print(f"Verified: {inst.build} matches Occlum.json, image/ and initfs/", file=out)
