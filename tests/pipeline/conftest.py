"""Fixtures: real instances made by `occlum new`, built by the real `occlum build`."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_helpers import Occlum, make_instance


@pytest.fixture
def inst(tmp_path: Path) -> Path:
    return make_instance(tmp_path)


@pytest.fixture
def occlum(inst: Path, capsys: pytest.CaptureFixture[str]) -> Occlum:
    return Occlum(inst, capsys)
