"""Where the SGX test vectors live (tests/vectors/sgx, README there); imported by the sgx tests.

A module of its own rather than ``from conftest import``: several test folders have a
conftest.py, and which one a bare ``conftest`` import finds depends on collection order.
"""

from pathlib import Path

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "sgx"
