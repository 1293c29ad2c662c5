"""Helpers for image tests: small real source trees and output snapshots."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from occlum_build.image import build_image


def make_tree(root: Path, seed: int = 0) -> Path:
    """A small tree with every entry kind; timestamps pushed into the past (not racy)."""
    root.mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "lib" / "deep").mkdir(parents=True)
    data = {
        "bin/app": hashlib.sha256(f"app{seed}".encode()).digest() * 300,  # 9600 bytes
        "bin/empty": b"",
        "lib/libc.so": bytes(range(256)) * 40 + bytes([seed]),
        "lib/deep/conf.txt": b"x=1\n",
        "lib/deep/conf.copy": b"x=1\n",
        "README": b"hello\n",
    }
    for rel, b in data.items():
        (root / rel).write_bytes(b)
    os.chmod(root / "bin/app", 0o755)
    os.chmod(root / "lib/deep/conf.copy", 0o600)
    os.symlink("libc.so", root / "lib/libc.so.6")
    os.symlink("/nonexistent", root / "dangling")
    os.chmod(root, 0o755)
    for d in ("bin", "lib", "lib/deep"):
        os.chmod(root / d, 0o755)
    age(root)
    return root


def age(root: Path) -> None:
    """Let the racy-clean window pass (cache.RACY_NS) so the manifest records the files."""
    time.sleep(0.15)


def snapshot(out: Path) -> dict[str, bytes]:
    """All bytes of an image directory, by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture
def build(tmp_path):
    """build(src, name="out", key=None, cache="cache") -> (ImageResult, out_dir, mac_file)."""

    def _build(src: Path, name: str = "out", key: bytes | None = None, cache: str = "cache", **kw):
        out = tmp_path / name / "__ROOT"
        mac = tmp_path / name / ".ROOT_MAC"
        res = build_image(src, out, mac, key=key, cache_dir=tmp_path / cache, **kw)
        return res, out, mac

    return _build
