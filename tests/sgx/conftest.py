from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "sgx"


@pytest.fixture
def vectors() -> Path:
    return VECTORS
