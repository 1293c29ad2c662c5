"""Intel SGX enclave measurement and signing, byte-compatible with SDK 2.26 ``sgx_sign``.

See docs/sgx-signing.md for the algorithm, the public API and what is verified.
"""
