"""Shared instances for the runtime tests (built once per session; tests that modify an
instance work on a copy)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .rt_helpers import make_instance, native_ready


@pytest.fixture(scope="session")
def built_instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not native_ready():
        pytest.skip("native runtime not built (make -C libos)")
    return make_instance(tmp_path_factory.mktemp("rt"))


@pytest.fixture
def instance_copy(built_instance: Path, tmp_path: Path) -> Path:
    """A private copy of the built instance, without its run/ state."""
    copy = tmp_path / "inst"
    shutil.copytree(built_instance, copy, symlinks=True, ignore=shutil.ignore_patterns("run"))
    return copy
