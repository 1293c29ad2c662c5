"""SIGSTRUCT (Intel SDM "Enclave Signature Structure"; SDK ``enclave_css_t``), 1808 bytes.

Signed data = bytes [0, 128) + [900, 1028) (header + body, 256 bytes), signed with
RSASSA-PKCS1-v1_5 / SHA-256 by a 3072-bit key with public exponent 3.  MODULUS, SIGNATURE,
Q1 and Q2 are stored little-endian; MRSIGNER is SHA-256 of the stored (little-endian) MODULUS.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..errors import VerifyError
from .measure import sha256
from .structs import Struct

SIGSTRUCT_SIZE = 1808
KEY_BYTES = 384  # RSA-3072
EXPONENT = 3

SIGSTRUCT = Struct("SIGSTRUCT", SIGSTRUCT_SIZE, [
    ("header", 0, 12, "bytes"),
    ("type", 12, 4, "u"),  # bit 31: ReleaseType (Intel internal)
    ("vendor", 16, 4, "u"),  # 0 or 0x8086
    ("date", 20, 4, "u"),  # 0xYYYYMMDD (digits as hex nibbles)
    ("header2", 24, 16, "bytes"),
    ("swdefined", 40, 4, "u"),
    ("reserved1", 44, 84, "bytes"),
    ("modulus", 128, 384, "bytes"),
    ("exponent", 512, 4, "u"),
    ("signature", 516, 384, "bytes"),
    ("miscselect", 900, 4, "u"),
    ("miscmask", 904, 4, "u"),
    ("cet_attributes", 908, 1, "u"),
    ("cet_attributes_mask", 909, 1, "u"),
    ("reserved2", 910, 2, "bytes"),
    ("isvfamilyid", 912, 16, "bytes"),
    ("attributes_flags", 928, 8, "u"),
    ("attributes_xfrm", 936, 8, "u"),
    ("attributemask_flags", 944, 8, "u"),
    ("attributemask_xfrm", 952, 8, "u"),
    ("enclavehash", 960, 32, "bytes"),
    ("reserved3", 992, 16, "bytes"),
    ("isvextprodid", 1008, 16, "bytes"),
    ("isvprodid", 1024, 2, "u"),
    ("isvsvn", 1026, 2, "u"),
    ("reserved4", 1028, 12, "bytes"),
    ("q1", 1040, 384, "bytes"),
    ("q2", 1424, 384, "bytes"),
])

HEADER = bytes.fromhex("06000000E100000000000100")
HEADER2 = bytes.fromhex("01010000600000006000000001000000")
SIGNED_HEADER = slice(0, 128)
SIGNED_BODY = slice(900, 1028)
SIGNED_DATA_SIZE = 256


def build_unsigned(*, enclavehash: bytes, date: int, attributes_flags: int, attributes_xfrm: int,
                   attributemask_flags: int, attributemask_xfrm: int, miscselect: int = 0,
                   miscmask: int = 0xFFFFFFFF, isvprodid: int = 0, isvsvn: int = 0,
                   isvfamilyid: bytes = bytes(16), isvextprodid: bytes = bytes(16), vendor: int = 0,
                   type_: int = 0, swdefined: int = 0) -> bytearray:
    """A SIGSTRUCT with header and body filled and key/signature/q1/q2 zero."""
    return bytearray(SIGSTRUCT.pack({
        "header": HEADER, "type": type_, "vendor": vendor, "date": date, "header2": HEADER2,
        "swdefined": swdefined, "miscselect": miscselect, "miscmask": miscmask,
        "isvfamilyid": isvfamilyid, "attributes_flags": attributes_flags, "attributes_xfrm": attributes_xfrm,
        "attributemask_flags": attributemask_flags, "attributemask_xfrm": attributemask_xfrm,
        "enclavehash": enclavehash, "isvextprodid": isvextprodid, "isvprodid": isvprodid, "isvsvn": isvsvn,
    }))


def signed_data(css: bytes | bytearray) -> bytes:
    """The 256 bytes that are signed (what ``sgx_sign gendata`` writes)."""
    return bytes(css[SIGNED_HEADER]) + bytes(css[SIGNED_BODY])


def q1q2(s: int, n: int) -> tuple[int, int]:
    """The two helper values the CPU uses to check s**3 mod n without division."""
    q1 = s * s // n
    q2 = s * (s * s % n) // n
    return q1, q2


def _le(v: int) -> bytes:
    return v.to_bytes(KEY_BYTES, "little")


def apply_signature(css: bytearray, public_key: rsa.RSAPublicKey, signature_be: bytes) -> None:
    """Insert key, signature (as openssl writes it: big-endian) and q1/q2 into ``css``."""
    nums = public_key.public_numbers()
    n, s = nums.n, int.from_bytes(signature_be, "big")
    q1, q2 = q1q2(s, n)
    SIGSTRUCT.set(css, "modulus", _le(n))
    SIGSTRUCT.set(css, "exponent", nums.e)
    SIGSTRUCT.set(css, "signature", _le(s))
    SIGSTRUCT.set(css, "q1", _le(q1))
    SIGSTRUCT.set(css, "q2", _le(q2))


def public_key_of(css: bytes | bytearray) -> rsa.RSAPublicKey:
    n = int.from_bytes(css[SIGSTRUCT.span("modulus")], "little")
    e = SIGSTRUCT.get(css, "exponent")
    assert isinstance(e, int)
    return rsa.RSAPublicNumbers(e, n).public_key()


def mrsigner(css: bytes | bytearray) -> bytes:
    """MRSIGNER: SHA-256 of the MODULUS field exactly as stored (little-endian)."""
    return sha256(bytes(css[SIGSTRUCT.span("modulus")]))


def mrsigner_of_key(public_key: rsa.RSAPublicKey) -> bytes:
    return sha256(_le(public_key.public_numbers().n))


def verify_signature(public_key: rsa.RSAPublicKey, data: bytes, signature_be: bytes) -> bool:
    try:
        public_key.verify(signature_be, data, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_sigstruct(css: bytes | bytearray, where: str = "SIGSTRUCT") -> None:
    """Check a complete SIGSTRUCT: fixed headers, exponent 3, the RSA signature, q1 and q2."""
    if len(css) != SIGSTRUCT_SIZE:
        raise VerifyError(f"SIGSTRUCT is {len(css)} bytes, expected {SIGSTRUCT_SIZE}", where=where)
    if bytes(css[SIGSTRUCT.span("header")]) != HEADER or bytes(css[SIGSTRUCT.span("header2")]) != HEADER2:
        raise VerifyError("SIGSTRUCT header constants are wrong", where=where)
    if SIGSTRUCT.get(css, "exponent") != EXPONENT:
        raise VerifyError("SIGSTRUCT exponent is not 3", where=where)
    n = int.from_bytes(css[SIGSTRUCT.span("modulus")], "little")
    s = int.from_bytes(css[SIGSTRUCT.span("signature")], "little")
    if n.bit_length() != 3072 or s >= n:
        raise VerifyError("SIGSTRUCT modulus is not a 3072-bit key (or signature >= modulus)", where=where)
    if not verify_signature(public_key_of(css), signed_data(css), s.to_bytes(KEY_BYTES, "big")):
        raise VerifyError("SIGSTRUCT signature does not verify with its own modulus", where=where)
    q1, q2 = q1q2(s, n)
    if bytes(css[SIGSTRUCT.span("q1")]) != _le(q1) or bytes(css[SIGSTRUCT.span("q2")]) != _le(q2):
        raise VerifyError("SIGSTRUCT q1/q2 do not match the signature", where=where)


def date_bcd(year: int, month: int, day: int) -> int:
    """sgx_sign's DATE: the decimal digits of YYYYMMDD read as hex (2025-09-27 -> 0x20250927)."""
    return int(f"{year:04d}{month:02d}{day:02d}", 16)


def parse_date(text: str) -> int:
    """``YYYYMMDD`` (as given to ``-date``) -> DATE value; raises ValueError if it is not a
    date of the Gregorian calendar (years 1 to 9999, as datetime.date; not imported for this)."""
    if len(text) != 8 or not text.isascii() or not text.isdigit():
        raise ValueError(f"date {text!r} is not YYYYMMDD")
    year, month, day = int(text[:4]), int(text[4:6]), int(text[6:])
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not (year >= 1 and 1 <= month <= 12 and 1 <= day <= _MONTH_DAYS[month - 1] + (month == 2 and leap)):
        raise ValueError(f"date {text!r} is not a valid date")
    return date_bcd(year, month, day)


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def format_date(value: int) -> str:
    """DATE value -> ``YYYY-MM-DD`` (nibbles printed as digits)."""
    h = f"{value:08x}"
    return f"{h[:4]}-{h[4:6]}-{h[6:]}"
