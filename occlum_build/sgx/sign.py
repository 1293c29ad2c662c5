"""Signing an enclave as ``sgx_sign sign / gendata / catsig`` of the enclave's SDK does
(the signer profile its g_global_data.sdk_version selects, profiles.py).

The output file differs from the input only in the METADATA_SIZE metadata bytes of
``.note.sgxmeta`` (the patch table is applied to a private copy for measuring; the runtime
loader applies it again).
"""

from typing import TYPE_CHECKING, NamedTuple

from ..errors import OcclumError, VerifyError
from . import metadata as M
from .compat import metadata_block
from .elf import EnclaveElf, parse_enclave
from .enclave_xml import parse_enclave_xml
from .layout import Built, build_metadata
from .loader import measure_layout, measure_sections
from .measure import Measurement
from .profiles import profile_for_enclave
from .signer import Signer, check_key
from .sigstruct import (
    KEY_BYTES,
    SIGNED_HEADER,
    SIGSTRUCT,
    apply_signature,
    mrsigner,
    signed_data,
    verify_signature,
    verify_sigstruct,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa


class SignResult(NamedTuple):
    signed: bytes  # the signed enclave file
    mrenclave: bytes
    mrsigner: bytes
    sigstruct: bytes  # 1808 bytes
    metadata_version: int  # of the first metadata written (e.g. 0x300000003 or 0x100000005 for SDK 2.26)
    sdk: str = ""  # the signer profile used: the enclave's SDK version, "2.26.100"


def today() -> int:
    """Today's date (UTC) as sgx_sign writes it: 0xYYYYMMDD."""
    import datetime  # only when no -date is given

    d = datetime.datetime.now(datetime.UTC).date()
    return int(f"{d.year:04d}{d.month:02d}{d.day:02d}", 16)


class _Measured(NamedTuple):
    elf: EnclaveElf
    built: Built
    css: bytearray  # header and body filled, ENCLAVEHASH set, unsigned
    mrenclave: bytes


def _measure(enclave: bytes, config_xml: bytes, date: int, where: str, config_where: str,
             allow_text_relocations: bool, resign: bool, allow_init_section: bool = False) -> _Measured:
    elf = parse_enclave(enclave, where, allow_text_relocations=allow_text_relocations,
                        allow_init_section=allow_init_section)
    magic = int.from_bytes(enclave[elf.metadata_offset:elf.metadata_offset + 8], "little")
    if magic == M.METADATA_MAGIC and not resign:
        raise OcclumError("the enclave is already signed (sign the unsigned .so)", where=where)
    profile = profile_for_enclave(elf, where)
    cfg = parse_enclave_xml(config_xml, config_where, absent=profile.xml_parameters_absent, sdk=profile.name)
    built = build_metadata(elf, cfg, where, profile)
    image = bytearray(enclave)
    for dst, src, size in built.patches:
        image[dst:dst + size] = built.buf[src:src + size]
    m = Measurement()
    m.ecreate(built.ssa_frame_size, built.ecreate_size)
    measure_sections(m, bytes(image), elf.segments, built.version, built.page_delta, elf.reloc_bitmap)
    measure_layout(m, built.layout, built.buf, built.page_delta)
    mrenclave = m.digest()
    css = bytearray(profile.header.get(built.buf, "enclave_css"))
    SIGSTRUCT.set(css, "date", date)
    SIGSTRUCT.set(css, "enclavehash", mrenclave)
    return _Measured(elf, built, css, mrenclave)


def _finish(meas: _Measured, enclave: bytes, css: bytearray) -> SignResult:
    verify_sigstruct(css)
    built = meas.built
    profile = built.profile
    profile.header.set(built.buf, "enclave_css", bytes(css))
    primary = bytes(built.buf[:built.size])
    block = metadata_block(primary, built.layout, built.meta_versions, built.params.tcs_num, built.elrange,
                           profile)
    off = meas.elf.metadata_offset
    signed = enclave[:off] + block + enclave[off + len(block):]
    version = int(M.METADATA_HEADER_DIR2.get(block, "version"))
    return SignResult(signed, meas.mrenclave, mrsigner(css), bytes(css), version, profile.name)


def sign_enclave(enclave: bytes, config_xml: bytes, signer: Signer, *, date: int | None = None,
                 where: str = "enclave", config_where: str = "Enclave.xml",
                 allow_text_relocations: bool = False, resign: bool = False,
                 allow_init_section: bool = False) -> SignResult:
    """Measure and sign ``enclave`` (an unsigned SDK enclave .so) with ``config_xml``.

    ``date`` is the SIGSTRUCT DATE as 0xYYYYMMDD (default: today, UTC); pin it for reproducible
    builds.  The signer's signature is verified before it is used.
    """
    check_key(signer.public_key, "signing key")
    meas = _measure(enclave, config_xml, today() if date is None else date, where, config_where,
                    allow_text_relocations, resign, allow_init_section)
    css = meas.css
    data = signed_data(css)
    sig = signer.sign(data)
    if len(sig) != KEY_BYTES or not verify_signature(signer.public_key, data, sig):
        raise VerifyError("the signer returned a signature that does not verify with its public key")
    apply_signature(css, signer.public_key, sig)
    return _finish(meas, enclave, css)


def gendata(enclave: bytes, config_xml: bytes, *, date: int | None = None, where: str = "enclave",
            config_where: str = "Enclave.xml", allow_text_relocations: bool = False,
            allow_init_section: bool = False) -> bytes:
    """The 256 bytes to sign (``sgx_sign gendata``): SIGSTRUCT header and body."""
    meas = _measure(enclave, config_xml, today() if date is None else date, where, config_where,
                    allow_text_relocations, False, allow_init_section)
    return signed_data(meas.css)


def catsig(enclave: bytes, config_xml: bytes, public_key: "rsa.RSAPublicKey", signature: bytes,
           unsigned_data: bytes, *,
           where: str = "enclave", config_where: str = "Enclave.xml",
           allow_text_relocations: bool = False, allow_init_section: bool = False) -> SignResult:
    """Insert an externally made signature (``sgx_sign catsig``).

    Re-measures the enclave, takes DATE from ``unsigned_data`` (the gendata output), requires
    header and body to match it byte for byte, and the signature (big-endian, as ``openssl dgst
    -sha256 -sign`` writes it) to verify with ``public_key`` over those bytes.
    """
    check_key(public_key, "public key")
    if len(unsigned_data) != 256:
        raise VerifyError(f"the unsigned data is {len(unsigned_data)} bytes, expected 256 (gendata output)")
    date = int.from_bytes(unsigned_data[20:24], "little")
    meas = _measure(enclave, config_xml, date, where, config_where, allow_text_relocations, False,
                    allow_init_section)
    css = meas.css
    mine = signed_data(css)
    hl = SIGNED_HEADER.stop - SIGNED_HEADER.start
    if mine[:hl] != unsigned_data[:hl]:
        raise VerifyError("the unsigned data's SIGSTRUCT header does not match this enclave and config")
    if mine[hl:] != unsigned_data[hl:]:
        raise VerifyError("the unsigned data's SIGSTRUCT body (MRENCLAVE, attributes, ISV fields) does not "
                          "match this enclave and config")
    if len(signature) != KEY_BYTES:
        raise VerifyError(f"the signature is {len(signature)} bytes, expected {KEY_BYTES} (RSA-3072)")
    if not verify_signature(public_key, mine, signature):
        raise VerifyError("the signature does not verify with the public key over the unsigned data")
    apply_signature(css, public_key, signature)
    return _finish(meas, enclave, css)
