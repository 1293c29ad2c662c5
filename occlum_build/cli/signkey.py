"""`occlum gen-sign-key`: create an enclave signing key (RSA-3072, e=3, PEM, mode 0600)."""

from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("gen-sign-key", help="generate an enclave signing key (RSA-3072, exponent 3)",
                       usage="occlum gen-sign-key <key_path> [-f]")
    p.add_argument("key_path")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing key file")
    p.set_defaults(func=cmd_gen_sign_key)


def cmd_gen_sign_key(args: argparse.Namespace) -> None:
    from ..sgx.signer import generate_signing_key
    from ..sgx.sigstruct import mrsigner_of_key

    path = os.path.abspath(args.key_path)
    pub = generate_signing_key(path, overwrite=args.force)
    print(f"Generated signing key: {path}")
    print(f"mrsigner: {mrsigner_of_key(pub).hex()}")
