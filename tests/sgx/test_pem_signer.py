"""PemSigner loads keys without OpenSSL's private key validation and verifies each signature
instead (docs/sgx-signing.md "Key validation")."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from occlum_build.errors import KeyFileError
from occlum_build.sgx.signer import PemSigner, load_signing_key
from occlum_build.sgx.sigstruct import verify_signature

KEY = Path(__file__).resolve().parents[1] / "vectors" / "sgx" / "h0mur0" / "Enclave_private_test.pem"


def _write(tmp_path: Path, nums: rsa.RSAPrivateNumbers) -> Path:
    key = nums.private_key(unsafe_skip_rsa_key_validation=True)
    p = tmp_path / "k.pem"
    p.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()))
    return p


def _numbers() -> rsa.RSAPrivateNumbers:
    return load_signing_key(KEY).private_numbers()


def test_good_key_signs_and_verifies():
    s = PemSigner(KEY)
    sig = s.sign(b"\x5a" * 256)
    assert len(sig) == 384 and verify_signature(s.public_key, b"\x5a" * 256, sig)


def test_inconsistent_key_never_yields_a_bad_signature(tmp_path):
    n = _numbers()
    # d and the CRT exponent for p both wrong: no way to compute a valid signature.
    bad = _write(tmp_path, rsa.RSAPrivateNumbers(n.p, n.q, n.d + 2, n.dmp1 + 2, n.dmq1, n.iqmp,
                                                 n.public_numbers))
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_signing_key(bad)  # the validating load refuses it outright
    signer = PemSigner(bad)  # the fast load accepts it ...
    with pytest.raises(KeyFileError, match=r"k\.pem: the private key is inconsistent"):
        signer.sign(b"\x01" * 256)  # ... and its first signature is refused


def test_inconsistent_crt_value_still_gives_a_valid_signature(tmp_path):
    n = _numbers()
    # A wrong CRT coefficient alone: OpenSSL notices the bad CRT result and recomputes with d.
    bad = _write(tmp_path, rsa.RSAPrivateNumbers(n.p, n.q, n.d, n.dmp1, n.dmq1, n.iqmp + 1,
                                                 n.public_numbers))
    signer = PemSigner(bad)
    sig = signer.sign(b"\x02" * 256)
    assert verify_signature(signer.public_key, b"\x02" * 256, sig)


def test_fast_load_keeps_the_sgx_key_checks(tmp_path):
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p = tmp_path / "k.pem"
    p.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with pytest.raises(KeyFileError, match="RSA-2048 key with exponent 65537"):
        PemSigner(p)
    junk = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
    (tmp_path / "junk.pem").write_text(junk)
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        PemSigner(tmp_path / "junk.pem")


def test_pem_loaders_are_cryptographys_own():
    """The signer takes the PEM loaders from the Rust bindings to skip importing
    ``serialization`` (SSH keys, ciphers...): they must be the very functions it exports."""
    from occlum_build.sgx.signer import _pem_loaders

    assert _pem_loaders() == (serialization.load_pem_private_key, serialization.load_pem_public_key)
