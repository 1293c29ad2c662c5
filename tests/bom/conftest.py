"""copy_bom tests keep their ELF cache in their own temporary dir, not in ~/.cache."""

from __future__ import annotations

import pytest

from occlum_build.bom import elfcache


@pytest.fixture(autouse=True)
def _private_elf_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv(elfcache.CACHE_ENV, str(tmp_path_factory.mktemp("elfcache") / "copy_bom-elf.json"))
