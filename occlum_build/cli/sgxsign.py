"""`occlum-sgx-sign`: Intel sgx_sign's command line (sign, gendata, catsig, dump), in Python.

Options keep sgx_sign's single-dash spellings (``-enclave``, ``-config``, ...); ``-date
YYYYMMDD`` pins the SIGSTRUCT date for reproducible output.  Outputs are written atomically:
on any failure nothing is written.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import EXIT_VERIFY, OcclumError
from ..fsutil import atomic_write
from ..inputfile import MAX_ENCLAVE_BYTES, read_limited
from ..sgx.sign import catsig, gendata, sign_enclave
from ..sgx.signer import PemSigner, load_public_key
from ..sgx.sigstruct import parse_date
from .common import Parser, main_with

DEFAULT_CONFIG = b"<EnclaveConfiguration></EnclaveConfiguration>"


def _read(path: str, what: str) -> bytes:
    return read_limited(path, what=what, limit=MAX_ENCLAVE_BYTES)


def _date(args: argparse.Namespace) -> int | None:
    if args.date is None:
        return None
    try:
        return parse_date(args.date)
    except ValueError:
        raise OcclumError(f"-date {args.date!r} is not a valid date YYYYMMDD") from None


def _config(args: argparse.Namespace) -> tuple[bytes, str]:
    if args.config is None:
        return DEFAULT_CONFIG, "(default configuration)"
    return _read(args.config, "enclave configuration"), args.config


def _mode(path: str) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return 0o644


def _common(p: argparse.ArgumentParser, *, out: bool = True, date: bool = True) -> None:
    p.add_argument("-enclave", required=True, metavar="FILE", help="the enclave .so to sign")
    p.add_argument("-config", metavar="FILE", help="Enclave.xml (default: SDK defaults)")
    if out:
        p.add_argument("-out", required=True, metavar="FILE", help="output file")
    if date:
        p.add_argument("-date", metavar="YYYYMMDD", help="SIGSTRUCT date (default: today, UTC)")
    p.add_argument("-ignore-rel-error", dest="ignore_rel", action="store_true",
                   help="accept text relocations (as sgx_sign's option)")
    p.add_argument("-ignore-init-sec-error", dest="ignore_init", action="store_true",
                   help="accept an .init section (as sgx_sign's option)")


def build_parser() -> Parser:
    parser = Parser(prog="occlum-sgx-sign",
                    description="Sign and inspect SGX enclaves exactly as sgx_sign does (SDK 2.26, and "
                                "Occlum's 2.20/2.21 forks: the enclave's sdk_version selects).")
    sub = parser.add_subparsers(title="mode", metavar="<mode>")
    p = sub.add_parser("sign", help="sign an enclave with a private key")
    _common(p)
    p.add_argument("-key", required=True, metavar="PEM", help="RSA-3072 e=3 private key")
    p.add_argument("-resign", action="store_true", help="re-sign an enclave that is already signed")
    p.set_defaults(func=cmd_sign)
    p = sub.add_parser("gendata", help="write the 256 bytes to be signed (two-step signing, step 1)")
    _common(p)
    p.set_defaults(func=cmd_gendata)
    p = sub.add_parser("catsig", help="insert an external signature (two-step signing, step 2)")
    _common(p, date=False)
    p.add_argument("-key", required=True, metavar="PEM", help="RSA-3072 e=3 PUBLIC key")
    p.add_argument("-sig", required=True, metavar="FILE", help="signature (384 bytes, as openssl writes it)")
    p.add_argument("-unsigned", required=True, metavar="FILE", help="the gendata output that was signed")
    p.set_defaults(func=cmd_catsig)
    p = sub.add_parser("dump", help="print MRENCLAVE, MRSIGNER and the SIGSTRUCT fields of a signed enclave")
    p.add_argument("-enclave", required=True, metavar="FILE")
    p.add_argument("--json", "-json", dest="json", action="store_true", help="machine-readable output")
    p.add_argument("-cssfile", metavar="FILE", help="also write the 1808-byte SIGSTRUCT here")
    p.add_argument("-dumpfile", metavar="FILE", help="also write the text report here")
    p.set_defaults(func=cmd_dump)
    return parser


def _report(mrenclave: bytes, mrsigner: bytes) -> None:
    print(f"mrenclave: {mrenclave.hex()}")
    print(f"mrsigner:  {mrsigner.hex()}")
    print("Succeed.")


def cmd_sign(args: argparse.Namespace) -> None:
    signer = PemSigner(args.key)
    xml, xml_where = _config(args)
    r = sign_enclave(_read(args.enclave, "enclave"), xml, signer, date=_date(args), where=args.enclave,
                     config_where=xml_where, allow_text_relocations=args.ignore_rel, resign=args.resign,
                     allow_init_section=args.ignore_init)
    atomic_write(args.out, r.signed, mode=_mode(args.enclave))
    _report(r.mrenclave, r.mrsigner)


def cmd_gendata(args: argparse.Namespace) -> None:
    xml, xml_where = _config(args)
    data = gendata(_read(args.enclave, "enclave"), xml, date=_date(args), where=args.enclave,
                   config_where=xml_where, allow_text_relocations=args.ignore_rel,
                   allow_init_section=args.ignore_init)
    atomic_write(args.out, data)
    print("Succeed.")


def cmd_catsig(args: argparse.Namespace) -> None:
    key = load_public_key(args.key)
    xml, xml_where = _config(args)
    r = catsig(_read(args.enclave, "enclave"), xml, key, _read(args.sig, "signature file"),
               _read(args.unsigned, "unsigned data file"), where=args.enclave, config_where=xml_where,
               allow_text_relocations=args.ignore_rel, allow_init_section=args.ignore_init)
    atomic_write(args.out, r.signed, mode=_mode(args.enclave))
    _report(r.mrenclave, r.mrsigner)


def cmd_dump(args: argparse.Namespace) -> int:
    from ..sgx.dump import dump_enclave, read_metadata  # only `dump` needs it (and json)

    data = _read(args.enclave, "enclave")
    info = dump_enclave(data, args.enclave)
    text = info.to_json() if args.json else info.to_text()
    if args.cssfile:
        atomic_write(args.cssfile, read_metadata(data, args.enclave)[0][0].css)
    if args.dumpfile:
        atomic_write(args.dumpfile, text + "\n")
    print(text)
    if not info.signature_valid or not info.measurement_matches:
        print(f"Error: {args.enclave}: the signature or the measurement does not verify", file=sys.stderr)
        return EXIT_VERIFY
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return main_with(build_parser(), argv, logs=False)  # the sgx modules never log


if __name__ == "__main__":
    sys.exit(main())
