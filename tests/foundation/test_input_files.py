"""Input files that are not what they claim (issue 15 A): endless devices, FIFOs without a
writer, directories, huge or growing files, deeply nested JSON.  Each is refused with one line
naming the file and exit 2, without reading it whole and without blocking; the commands run as
real processes with a timeout, so a hang fails the test instead of stalling the suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from occlum_build.config.jsonc import MAX_DEPTH
from occlum_build.errors import EXIT_USAGE, OcclumError
from occlum_build.inputfile import MAX_CONFIG_BYTES, MAX_KEY_FILE_BYTES, read_limited

OCCLUM = [sys.executable, "-m", "occlum_build.cli.main"]
TIMEOUT = 60


def occlum(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("OCCLUM_LOG_LEVEL", None)
    return subprocess.run(OCCLUM + list(args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)


def one_error_line(r: subprocess.CompletedProcess[str], *parts: str) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == EXIT_USAGE, r.stderr
    assert lines and lines[-1].startswith("Error: "), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    for p in parts:
        assert p in lines[-1], lines[-1]
    return lines[-1]


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("inputs")
    r = occlum("new", "inst", cwd=base)
    assert r.returncode == 0, r.stderr
    return base / "inst"


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    p = tmp_path / "fifo"
    os.mkfifo(p)
    return p


# ------------------------------------------------------------------ read_limited itself
def test_regular_file_within_the_limit(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"x" * 100)
    assert read_limited(p, what="f", limit=100) == b"x" * 100


def test_file_over_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"x" * 101)
    with pytest.raises(OcclumError, match=r"f is 101 bytes, over the limit of 100 bytes") as e:
        read_limited(p, what="f", limit=100)
    assert str(p) in str(e.value)


def test_file_larger_than_its_stat_size_is_caught_while_reading() -> None:
    """/proc/kallsyms says size 0 and holds megabytes: a growing file, as far as a stat can
    tell; at most limit + 1 bytes are read."""
    if not os.access("/proc/kallsyms", os.R_OK) or os.stat("/proc/kallsyms").st_size != 0:
        pytest.skip("needs a readable /proc/kallsyms")
    with pytest.raises(OcclumError, match=r"holds more than 64 KiB \(the limit\)"):
        read_limited("/proc/kallsyms", what="key", limit=MAX_KEY_FILE_BYTES)


@pytest.mark.parametrize("path,kind", [("/dev/zero", "a device node"), ("/", "a directory")])
def test_non_regular_files_are_refused(path: str, kind: str) -> None:
    with pytest.raises(OcclumError, match=f"key is {kind}, not a regular file"):
        read_limited(path, what="key", limit=10)


def test_fifo_is_refused_without_blocking(fifo: Path) -> None:
    with pytest.raises(OcclumError, match="key is a FIFO, not a regular file"):
        read_limited(fifo, what="key", limit=10)


# ------------------------------------------------------------------ through the commands
@pytest.mark.parametrize("option", ["--image-key", "--sign-key"])
@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "dir", "big"])
def test_build_refuses_bad_key_files(inst: Path, tmp_path: Path, option: str, target: str) -> None:
    what = "image key file" if option == "--image-key" else "signing key file"
    if target == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
        why = "is a FIFO"
    elif target == "dir":
        path, why = tmp_path, "is a directory"
    elif target == "big":
        path = tmp_path / "big"
        with open(path, "wb") as f:
            f.truncate(MAX_KEY_FILE_BYTES + 1)
        why = f"is {MAX_KEY_FILE_BYTES + 1} bytes, over the limit of 64 KiB"
    else:
        path, why = Path(target), "is a device node"
    r = occlum("build", "--sgx-mode", "SIM", option, str(path), cwd=inst)
    one_error_line(r, f"{path}: {what} {why}")


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "big"])
def test_build_refuses_a_bad_occlum_json(tmp_path: Path, target: str) -> None:
    assert occlum("new", "i", cwd=tmp_path).returncode == 0
    inst = tmp_path / "i"
    conf = inst / "Occlum.json"
    conf.unlink()
    if target == "fifo":
        os.mkfifo(conf)
        why = "is a FIFO, not a regular file"
    elif target == "big":
        with open(conf, "wb") as f:
            f.truncate(MAX_CONFIG_BYTES + 1)
        why = f"is {MAX_CONFIG_BYTES + 1} bytes, over the limit of 1 MiB"
    else:
        conf.symlink_to(target)
        why = "is a device node, not a regular file"
    for cmd in (["build", "--sgx-mode", "SIM"], ["print", "enclave-xml"]):
        one_error_line(occlum(*cmd, cwd=inst), f"{conf}: Occlum.json {why}")


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000, 100_000])
def test_deeply_nested_occlum_json(tmp_path: Path, depth: int) -> None:
    """Was a RecursionError (exit 70): now one line with the position and the limit."""
    assert occlum("new", "i", cwd=tmp_path).returncode == 0
    conf = tmp_path / "i" / "Occlum.json"
    d = json.loads(conf.read_text())
    d["env"]["extra"] = None
    # the top-level object and "env" are levels 1 and 2
    text = json.dumps(d).replace("null", "[" * (depth - 2) + "]" * (depth - 2))
    conf.write_text(text)
    col = text.index("[" * (MAX_DEPTH - 2 + 1)) + MAX_DEPTH - 2 + 1
    line = one_error_line(occlum("print", "enclave-xml", cwd=tmp_path / "i"),
                          f"{conf}:1:{col}: objects and arrays nested more than {MAX_DEPTH} "
                          "levels deep")
    assert len(line) < 300


def test_nesting_at_the_limit_is_parsed(tmp_path: Path) -> None:
    """MAX_DEPTH levels are fine (the schema then names the unknown key)."""
    assert occlum("new", "i", cwd=tmp_path).returncode == 0
    conf = tmp_path / "i" / "Occlum.json"
    d = json.loads(conf.read_text())
    d["env"]["extra"] = None
    conf.write_text(json.dumps(d).replace("null", "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)))
    one_error_line(occlum("print", "enclave-xml", cwd=tmp_path / "i"), 'unknown key "extra"')
