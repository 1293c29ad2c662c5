from pathlib import Path

import pytest
from sgx_vectors import VECTORS


@pytest.fixture
def vectors() -> Path:
    return VECTORS
