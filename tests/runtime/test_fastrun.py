"""`occlum run` start-up fast path: the same occlum-run command line as the usual path, or
no shortcut at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from occlum_build import paths, runtime
from occlum_build.cli import fastrun


def _fake_built(root: Path, status: str = "built") -> None:
    (root / paths.STATUS_FILE).write_text(status + "\n")
    inst = paths.Instance.at(root)
    inst.build_lib.mkdir(parents=True)
    inst.build_bin.mkdir(parents=True)
    inst.libos_signed.write_bytes(b"")
    run = inst.build_bin / paths.RUN_BIN
    run.write_text("#!/bin/sh\nexit 0\n")
    run.chmod(0o755)


@pytest.fixture
def execs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda path, argv: calls.append([path, *argv]))
    return calls


def test_same_command_line_as_the_usual_path(tmp_path: Path, monkeypatch, execs) -> None:
    _fake_built(tmp_path)
    monkeypatch.chdir(tmp_path)
    fastrun.exec_if_ready(["/bin/hello", "a", "-b"])
    want = runtime.run_argv(paths.Instance.at("."), "/bin/hello", ["a", "-b"])
    assert execs == [[want[0], *want]]


@pytest.mark.parametrize("case", ["unfinished", "initialized", "no_libos", "no_runtime", "option", "empty"])
def test_no_shortcut_when_not_plainly_ready(tmp_path: Path, monkeypatch, execs, case: str) -> None:
    _fake_built(tmp_path, status=case if case in ("unfinished", "initialized") else "built")
    inst = paths.Instance.at(tmp_path)
    if case == "no_libos":
        inst.libos_signed.unlink()
    if case == "no_runtime":
        (inst.build_bin / paths.RUN_BIN).unlink()
    monkeypatch.chdir(tmp_path)
    args = {"option": ["--help"], "empty": []}.get(case, ["/bin/hello"])
    fastrun.exec_if_ready(args)
    assert execs == []


def test_not_an_instance(tmp_path: Path, monkeypatch, execs) -> None:
    monkeypatch.chdir(tmp_path)
    fastrun.exec_if_ready(["/bin/hello"])
    assert execs == []
