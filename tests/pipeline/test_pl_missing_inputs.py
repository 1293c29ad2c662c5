"""An input of a built instance that disappears (issue 15 A): the build names it in one line
(was doit's "checking dependencies: Dependent file ... does not exist") and the last build stays
usable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_helpers import Occlum, needs_native

from occlum_build import paths
from occlum_build.errors import EXIT_STATE, EXIT_USAGE

pytestmark = needs_native


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert "checking dependencies" not in err and "Traceback" not in err, err
    return lines[-1]


def test_missing_occlum_json_after_a_build(inst: Path, occlum: Occlum) -> None:
    occlum.build()
    (inst / "Occlum.json").unlink()
    rc, _, err = occlum("build", "--sgx-mode", "SIM")
    assert rc == EXIT_USAGE
    assert _one_line(err) == (f"Error: {inst / 'Occlum.json'}: no such file "
                              "(run 'occlum init' to create Occlum.json)")
    assert (inst / paths.STATUS_FILE).read_text() == "built\n"


def test_missing_native_runtime_after_a_build(inst: Path, occlum: Occlum, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    occlum.build()
    empty = tmp_path / "native"
    empty.mkdir()
    monkeypatch.setenv(paths.NATIVE_DIR_ENV, str(empty))
    rc, _, err = occlum("build", "--sgx-mode", "SIM")
    assert rc == EXIT_STATE
    assert _one_line(err) == (f"Error: the native runtime is not built: {empty / paths.LIBOS_SO} is "
                              f"missing (run 'make -C libos', or set {paths.NATIVE_DIR_ENV})")
    assert (inst / paths.STATUS_FILE).read_text() == "built\n"
