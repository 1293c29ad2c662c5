"""`occlum print mrenclave|mrsigner` (Occlum's command), read from the signed LibOS."""

from __future__ import annotations

import argparse
import os

from ..errors import StateError
from ..instance import require_instance
from ..pipeline.graph import signing_available


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("print", help="print MRENCLAVE or MRSIGNER of the built enclave",
                       usage="occlum print mrenclave|mrsigner")
    p.add_argument("what", choices=("mrenclave", "mrsigner"))
    p.set_defaults(func=cmd_print)


def cmd_print(args: argparse.Namespace) -> None:
    inst = require_instance(os.getcwd())
    if not signing_available():
        raise StateError("enclave signing is not available in this build of occlum-build")
    if not inst.libos_signed.is_file():
        raise StateError(f"{inst.libos_signed} does not exist; run 'occlum build' first")
    from ..sgx import dump_enclave

    v = getattr(dump_enclave(inst.libos_signed.read_bytes()), args.what)
    print(v.hex() if isinstance(v, bytes | bytearray) else str(v).lower())
