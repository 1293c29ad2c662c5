"""Encrypted root image: the image key comes from the init FS (--buildin-image-key) or from
the file named by OCCLUM_IMAGE_KEY_FILE (docs/runtime.md "Init stage")."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .rt_helpers import BIN, OCCLUM, build, needs_runtime, occlum

pytestmark = [pytest.mark.native, pytest.mark.slow, needs_runtime]


@pytest.fixture(scope="module")
def enc(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("enc")
    r = subprocess.run([OCCLUM, "new", str(d / "inst")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    inst = d / "inst"
    (d / "hello.c").write_text('#include <stdio.h>\nint main(void){puts("Hello World");return 0;}\n')
    subprocess.run([str(BIN / "occlum-gcc"), "-o", "image/bin/hello", "../hello.c"], cwd=inst, check=True)
    key = d / "image_key"
    assert occlum(inst, "gen-image-key", str(key)).returncode == 0
    build(inst, "--image-key", str(key))
    return inst, key


def test_key_from_env_file(enc: tuple[Path, Path]) -> None:
    inst, key = enc
    r = occlum(inst, "run", "/bin/hello", env={"OCCLUM_IMAGE_KEY_FILE": str(key)})
    assert (r.returncode, r.stdout) == (0, "Hello World\n"), r.stderr


def test_no_key_refused(enc: tuple[Path, Path]) -> None:
    inst, _ = enc
    r = occlum(inst, "run", "/bin/hello", env={"OCCLUM_IMAGE_KEY_FILE": ""})
    assert r.returncode == 1 and r.stdout == ""
    assert "encrypted but no image key" in r.stderr


def test_wrong_key_refused(enc: tuple[Path, Path], tmp_path: Path) -> None:
    inst, _ = enc
    other = tmp_path / "other_key"
    assert occlum(inst, "gen-image-key", str(other)).returncode == 0
    r = occlum(inst, "run", "/bin/hello", env={"OCCLUM_IMAGE_KEY_FILE": str(other)})
    assert r.returncode == 1 and r.stdout == ""
    assert "build/mount/__ROOT" in r.stderr


def test_buildin_image_key(enc: tuple[Path, Path], tmp_path: Path) -> None:
    inst, key = enc
    copy = tmp_path / "inst"
    shutil.copytree(inst, copy, symlinks=True, ignore=shutil.ignore_patterns("run"))
    build(copy, "--image-key", str(key), "--buildin-image-key")
    r = occlum(copy, "run", "/bin/hello", env={"OCCLUM_IMAGE_KEY_FILE": ""})
    assert (r.returncode, r.stdout) == (0, "Hello World\n"), r.stderr
