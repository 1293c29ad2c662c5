"""SIGSTRUCT field table, RSA-3072 e=3 signing, q1/q2 and MRSIGNER against public vectors."""

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from occlum_build.errors import VerifyError
from occlum_build.sgx import sigstruct as S
from occlum_build.sgx.signer import PemSigner

# SDM / SDK enclave_css_t offsets, asserted field by field.
OFFSETS = {
    "header": (0, 12), "type": (12, 4), "vendor": (16, 4), "date": (20, 4), "header2": (24, 16),
    "swdefined": (40, 4), "reserved1": (44, 84), "modulus": (128, 384), "exponent": (512, 4),
    "signature": (516, 384), "miscselect": (900, 4), "miscmask": (904, 4), "cet_attributes": (908, 1),
    "cet_attributes_mask": (909, 1), "reserved2": (910, 2), "isvfamilyid": (912, 16),
    "attributes_flags": (928, 8), "attributes_xfrm": (936, 8), "attributemask_flags": (944, 8),
    "attributemask_xfrm": (952, 8), "enclavehash": (960, 32), "reserved3": (992, 16),
    "isvextprodid": (1008, 16), "isvprodid": (1024, 2), "isvsvn": (1026, 2), "reserved4": (1028, 12),
    "q1": (1040, 384), "q2": (1424, 384),
}


def test_field_table_offsets():
    assert S.SIGSTRUCT.size == 1808
    assert {f.name: (f.offset, f.size) for f in S.SIGSTRUCT.fields} == OFFSETS


def test_sig1_sigstruct_byte_exact(vectors):
    """Fortanix sgxs-sign test_sig: same inputs -> identical 1808 bytes."""
    d = vectors / "fortanix"
    css = S.build_unsigned(
        enclavehash=bytes.fromhex("c50673624a6cb17c1c6c2a4e6906f47a170c4629b8723781d1017ef376f1a75d"),
        date=0x20160109, attributes_flags=0x4, attributes_xfrm=0x3,
        attributemask_flags=0xFFFFFFFFFFFFFFFD, attributemask_xfrm=0xFFFFFFFFFFFFFF1B,
        miscselect=0, miscmask=0xFFFFFFFF)
    signer = PemSigner(d / "sig1.key.pem")
    S.apply_signature(css, signer.public_key, signer.sign(S.signed_data(css)))
    assert bytes(css) == (d / "sig1.sigstruct.bin").read_bytes()
    assert S.mrsigner(css).hex() == "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e"
    S.verify_sigstruct(css)


def test_sig1_prehashed_q1q2(vectors):
    """Fortanix sgxs crypto tests: LE modulus/signature, q1/q2 over a given digest."""
    d = vectors / "fortanix"
    key = serialization.load_pem_private_key((d / "sig1.key.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    n = key.public_key().public_numbers().n
    assert (d / "sig1.key_n.bin").read_bytes() == n.to_bytes(384, "little")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    sig = key.sign((d / "sig1.data.bin").read_bytes(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    s = int.from_bytes(sig, "big")
    assert (d / "sig1.sig.bin").read_bytes() == s.to_bytes(384, "little")
    q1, q2 = S.q1q2(s, n)
    assert (d / "sig1.q1.bin").read_bytes() == q1.to_bytes(384, "little")
    assert (d / "sig1.q2.bin").read_bytes() == q2.to_bytes(384, "little")


@pytest.mark.parametrize("path,mrenclave,mrsigner,date", [
    ("fortanix/test_enclave.sig", "784acfd7d5096a8f0fbd3265760bff21b120f62407a9a9e5ba31aa3c8ed198fc",
     "fb4bab3d6036ac1d730fa83d7366df1dd2dfeac194ef335d6854d8a6c6475542", 0x20161214),
    ("mobilecoin/valid.css", "5b9fbfca6ac62d8236ec5e1c4eebd847fb1807450a78ea2421be5cb4b49a5ea9",
     "7ee5e29d74623fdbc6fbf1454be6f3bb0b86c12366b7b478ad13353e44de8411", 0x20200128),
    ("intel/le_prod_css.bin", "7881af9f9def547da9908c008f29cde9bd78064e36ac7e14c83c294ca4806150",
     "acb77012053e05a63d413b8bbae8fb6c5d73b3f2996d91c43bbbf90959c0f8d4", None),
])
def test_shared_sigstructs_verify(vectors, path, mrenclave, mrsigner, date):
    css = (vectors / path).read_bytes()
    S.verify_sigstruct(css, where=path)
    assert css[S.SIGSTRUCT.span("enclavehash")].hex() == mrenclave
    assert S.mrsigner(css).hex() == mrsigner
    if date is not None:
        assert S.SIGSTRUCT.get(css, "date") == date


def test_intel_le_fields(vectors):
    f = S.SIGSTRUCT.unpack((vectors / "intel/le_prod_css.bin").read_bytes())
    assert (f["vendor"], f["swdefined"], f["attributes_flags"]) == (0x8086, 0x10, 0x24)


@pytest.mark.parametrize("field,offset", [("enclavehash", 961), ("signature", 600), ("q1", 1100),
                                          ("modulus", 200), ("date", 21), ("header", 0)])
def test_tampered_sigstruct_fails(vectors, field, offset):
    css = bytearray((vectors / "mobilecoin/valid.css").read_bytes())
    css[offset] ^= 1
    with pytest.raises(VerifyError):
        S.verify_sigstruct(css)


def test_dates():
    assert S.parse_date("20250927") == 0x20250927
    assert S.format_date(0x20250927) == "2025-09-27"
    for bad in ("2025097", "20251301", "2025-9-27", "abcdefgh"):
        with pytest.raises(ValueError):
            S.parse_date(bad)


def test_mrsigner_of_key(vectors):
    signer = PemSigner(vectors / "fortanix/sig1.key.pem")
    n = signer.public_key.public_numbers().n
    assert S.mrsigner_of_key(signer.public_key) == hashlib.sha256(n.to_bytes(384, "little")).digest()
