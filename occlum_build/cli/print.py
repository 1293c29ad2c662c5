"""`occlum print <what>`: show what the build derives or produced.

Printers register with :func:`printer`; the subcommand's choices and usage line are built
from the registry.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from .. import instance, keys, log, paths
from ..errors import KeyFileError

PrintFunc = Callable[[argparse.Namespace], "int | None"]
PRINTERS: dict[str, tuple[str, PrintFunc]] = {}

_log = log.get("print")
_NO_MAC = keys.format_hex16(bytes(16))


def printer(name: str, help: str) -> Callable[[PrintFunc], PrintFunc]:
    """Register ``occlum print <name>``."""
    def deco(func: PrintFunc) -> PrintFunc:
        PRINTERS[name] = (help, func)
        return func
    return deco


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    names = "|".join(PRINTERS)
    lines = "\n".join(f"  {n:<12} {h}" for n, (h, _) in PRINTERS.items())
    p = sub.add_parser("print", help="print derived configuration or build results",
                       usage=f"occlum print {names} [--enable-edmm]",
                       description=f"Print, for the instance in the current directory:\n{lines}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=list(PRINTERS), metavar="|".join(PRINTERS))
    p.add_argument("--enable-edmm", action="store_true",
                   help="derive for an EDMM platform, as 'occlum build --enable-edmm Y' in HW mode")
    p.set_defaults(func=_dispatch)


def _dispatch(args: argparse.Namespace) -> int | None:
    return PRINTERS[args.what][1](args)


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data + b"\n")  # the files themselves end without a newline
    sys.stdout.flush()


@printer("enclave-xml", "build/Enclave.xml as the build writes it from Occlum.json")
def print_enclave_xml(args: argparse.Namespace) -> None:
    from .. import config

    inst = instance.require_instance(os.getcwd())
    cfg = config.load_config(inst.config)
    _write(config.enclave_xml(cfg, edmm_platform=args.enable_edmm))


@printer("sys-json", "build/.Occlum_sys.json (image and initfs MACs from build/ if built)")
def print_sys_json(args: argparse.Namespace) -> None:
    from .. import config

    inst = instance.require_instance(os.getcwd())
    cfg = config.load_config(inst.config)
    macs = [_read_mac(p) for p in (inst.image_mac_file, inst.initfs_mac_file)]
    _write(config.sys_json(cfg, image_mac=macs[0], initfs_mac=macs[1], edmm_platform=args.enable_edmm))


def _read_mac(path: os.PathLike[str]) -> str:
    try:
        text = open(path, encoding="ascii", errors="replace").read()
    except FileNotFoundError:
        _log.warning("%s does not exist (not built yet); showing its MAC as %s", path, _NO_MAC)
        return _NO_MAC
    try:
        return keys.format_hex16(keys.parse_hex16(text, str(path)))
    except KeyFileError as e:
        raise KeyFileError(f"{e} (rebuild with 'occlum build -f')", exit_code=e.exit_code) from None


def _signed_field(field: str) -> None:
    from ..errors import StateError
    from ..sgx.dump import dump_enclave as dump

    inst = instance.require_instance(os.getcwd())
    if not inst.libos_signed.is_file():
        raise StateError(f"{inst.libos_signed} does not exist; run 'occlum build' first")
    v = getattr(dump(inst.libos_signed.read_bytes(), str(inst.libos_signed)), field)
    if inst.status_file.read_text().strip() == paths.STATUS_UNFINISHED:
        _log.warning("the last build did not finish: this is the %s of the enclave signed by an "
                     "earlier build; run 'occlum build'", field.upper())
    print(v.hex() if isinstance(v, bytes | bytearray) else str(v).lower())


@printer("mrenclave", "MRENCLAVE of build/lib/libocclum-libos.signed.so (from its SIGSTRUCT)")
def print_mrenclave(args: argparse.Namespace) -> None:
    _signed_field("mrenclave")


@printer("mrsigner", "MRSIGNER of build/lib/libocclum-libos.signed.so (SHA-256 of the signer's modulus)")
def print_mrsigner(args: argparse.Namespace) -> None:
    _signed_field("mrsigner")
