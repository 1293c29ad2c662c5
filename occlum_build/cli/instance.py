"""`occlum new`, `init`, `status`, `gen-image-key`."""

from __future__ import annotations

import argparse
import os
import sys

from .. import instance, keys, log
from ..errors import OcclumError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("new", help="create a new instance directory",
                       description="Create <path> and initialize it as an Occlum instance.",
                       usage="occlum new <path> [--init-ra grpc_ratls|aecs]")
    p.add_argument("path")
    p.add_argument("--init-ra", choices=instance.INIT_RA_KINDS,
                   help="write init_ra_conf.json for a remote-attestation init (see docs/instance.md)")
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("init", help="initialize the current directory as an instance",
                       usage="occlum init [--init-ra grpc_ratls|aecs]")
    p.add_argument("--init-ra", choices=instance.INIT_RA_KINDS)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("status", help="print the instance state", usage="occlum status")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("gen-image-key", help="generate an image encryption key",
                       usage="occlum gen-image-key <key_path> [-f]")
    p.add_argument("key_path")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing key file")
    p.set_defaults(func=cmd_gen_image_key)


def cmd_new(args: argparse.Namespace) -> None:
    inst = instance.new_instance(args.path, args.init_ra)
    print(f"{inst.root} initialized as an Occlum instance", file=log.status_stream(sys.stdout))


def cmd_init(args: argparse.Namespace) -> None:
    inst = instance.init_instance(os.getcwd(), args.init_ra)
    print(f"{inst.root} initialized as an Occlum instance", file=log.status_stream(sys.stdout))


def cmd_status(args: argparse.Namespace) -> None:
    print(instance.status_word(os.getcwd()))


def cmd_gen_image_key(args: argparse.Namespace) -> None:
    path = os.path.abspath(args.key_path)
    if os.path.lexists(path) and not args.force:
        raise OcclumError(f"{path} exists; refusing to overwrite a key (use -f to replace it)")
    keys.write_image_key(path, keys.generate_image_key())
    print(f"Generated image key: {path}", file=log.status_stream(sys.stdout))
