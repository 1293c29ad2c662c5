"""Launch options of `occlum run`, `occlum start` and `occlum gdb` (docs/runtime.md).

Checked here so that a bad value is one line with exit 2 before anything starts; the native
runtime checks them again (occlum-run's options set the PAL's environment, which real Occlum's
PAL reads for the KSS values: OCCLUM_CONF_ID_BASE64, OCCLUM_CONF_SVN).
"""

from __future__ import annotations

import argparse
import os
import string

from .errors import OcclumError

CONFIG_ID_SIZE = 64  # bytes of an SGX CONFIGID
_B64 = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
_HEX = set(string.hexdigits)


def add_arguments(p: argparse.ArgumentParser, *, cpus: bool = True) -> None:
    """The launch options, before the program (argparse stops at the program name)."""
    p.add_argument("--config-id", metavar="BASE64",
                   help="KSS CONFIGID: base64 of at most 64 bytes (zero-padded), as Occlum's "
                        "occlum run; needs metadata.enable_kss")
    p.add_argument("--config-svn", metavar="N",
                   help="KSS CONFIGSVN: 0..65535 (decimal, 0x hex or 0 octal); needs "
                        "metadata.enable_kss")
    p.add_argument("--expect-mrenclave", metavar="HEX",
                   help="refuse to boot unless the measured MRENCLAVE is this (64 hex digits)")
    p.add_argument("--expect-mrsigner", metavar="HEX",
                   help="refuse to boot unless the MRSIGNER is this (64 hex digits)")
    if cpus:
        p.add_argument("--cpus", metavar="N",
                       help="run the programs on N CPUs (affinity; an occlum-build extension)")


def decode_config_id(text: str) -> bytes:
    """Occlum's --config-id: standard base64, padding optional, at most 64 bytes (the same rules
    as libos/src/identity.c), zero-padded to 64."""
    where = f"--config-id {text[:100]!r}"
    body = text
    pad = 0
    while pad < 2 and body.endswith("="):
        body, pad = body[:-1], pad + 1
    if not body:
        raise OcclumError("empty (a base64 text of at most 64 bytes)", where=where)
    if pad and len(text) % 4:
        raise OcclumError("'=' padding where the text does not end a 4-character group", where=where)
    if len(body) % 4 == 1:
        raise OcclumError(f"{len(body)} base64 characters cannot be a whole number of bytes",
                          where=where)
    size = len(body) // 4 * 3 + (len(body) % 4 - 1 if len(body) % 4 else 0)
    if size > CONFIG_ID_SIZE:
        raise OcclumError(f"decodes to {size} bytes, more than the 64 of an SGX CONFIGID",
                          where=where)
    acc = bits = 0
    out = bytearray()
    for i, c in enumerate(body):
        v = _B64.find(c)
        if v < 0:
            raise OcclumError(f"not base64: character {i + 1} is {c!r}", where=where)
        acc, bits = acc << 6 | v, bits + 6
        if bits >= 8:
            bits -= 8
            out.append(acc >> bits)
            acc &= (1 << bits) - 1
    if acc:
        raise OcclumError("not canonical base64 (the unused bits of the last character are not zero)",
                          where=where)
    return bytes(out).ljust(CONFIG_ID_SIZE, b"\0")


def parse_config_svn(text: str) -> int:
    """Occlum's --config-svn: what strtoul(text, 0) reads (decimal, 0x hex, 0 octal), <= 0xFFFF."""
    where = f"--config-svn {text[:40]!r}"
    digits, base = text, 10
    if text[:2] in ("0x", "0X"):
        digits, base = text[2:], 16
    elif text.startswith("0") and len(text) > 1:
        digits, base = text[1:], 8
    try:
        if not digits or not all(c in string.hexdigits for c in digits):
            raise ValueError
        value = int(digits, base)
    except ValueError:
        raise OcclumError("not a number (decimal, 0x hex or 0 octal, at most 65535)",
                          where=where) from None
    if value > 0xFFFF:
        raise OcclumError("over 65535 (CONFIGSVN is 16 bits)", where=where)
    return value


def parse_measurement(opt: str, text: str) -> str:
    if len(text) != 64 or not set(text) <= _HEX:
        raise OcclumError("not 64 hex digits (as 'occlum print mrenclave' prints a measurement)",
                          where=f"{opt} {text[:80]!r}")
    return text.lower()


def parse_cpus(text: str) -> int:
    have = len(os.sched_getaffinity(0))
    if not (text.isdigit() and text.isascii()) or not 1 <= int(text) <= have:
        raise OcclumError(f"not a number of CPUs from 1 to {have} (the CPUs this process may use)",
                          where=f"--cpus {text[:40]!r}")
    return int(text)


def occlum_run_args(args: argparse.Namespace) -> list[str]:
    """Check the launch options in ``args`` and return them as occlum-run options."""
    out: list[str] = []
    if args.config_id is not None:
        decode_config_id(args.config_id)
        out += ["--config-id", args.config_id]
    if args.config_svn is not None:
        out += ["--config-svn", str(parse_config_svn(args.config_svn))]
    for opt, value in (("--expect-mrenclave", args.expect_mrenclave),
                       ("--expect-mrsigner", args.expect_mrsigner)):
        if value is not None:
            out += [opt, parse_measurement(opt, value)]
    cpus = getattr(args, "cpus", None)
    if cpus is not None:
        out += ["--cpus", str(parse_cpus(cpus))]
    return out
