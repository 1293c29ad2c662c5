"""Helpers for the pipeline tests: real instances made by `occlum new`, built by `occlum build`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from occlum_build import paths
from occlum_build.cli.main import main


def native_ready() -> bool:
    return (paths.native_dir() / paths.PAL_SO).is_file() and (paths.native_dir() / paths.LIBOS_SO).is_file()


needs_native = pytest.mark.skipif(not native_ready(), reason="native runtime not built (make -C libos)")


class Occlum:
    """Run `occlum ...` in-process inside an instance directory; returns (rc, stdout, stderr)."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]):
        self.root = root
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        old = os.getcwd()
        os.chdir(self.root)
        try:
            rc = main(list(argv))
        finally:
            os.chdir(old)
        out, err = self.capsys.readouterr()
        return rc, out, err

    def build(self, *argv: str) -> dict:
        rc, out, err = self("build", "--sgx-mode", "SIM", "--json", *argv)
        assert rc == 0, err
        return json.loads(out)

    def ran(self, rep: dict) -> set[str]:
        return {n for n, s in rep["stages"].items() if s["ran"] and n not in ("prepare", "build")}


def make_instance(parent: Path, name: str = "inst") -> Path:
    rc = main(["new", str(parent / name)])
    assert rc == 0
    root = parent / name
    (root / "image" / "bin" / "hello.txt").write_text("hello\n")
    (root / "image" / "etc" / "app.conf").write_bytes(b"x" * 10000)
    return root
