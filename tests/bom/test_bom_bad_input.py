"""Bad input: one clear line on stderr naming what and where, the documented exit code, and
nothing written into the root."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from bom_helpers import build_hello, have, run_cli

EXIT_USAGE, EXIT_VERIFY = 2, 3


def _write(tmp: Path, text: str, name: str = "app.yaml") -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def _fails(tmp: Path, bom: Path, *needles: str, code: int = EXIT_USAGE, env: dict | None = None,
           prefix: tuple[str, ...] = ()) -> str:
    root = tmp / "inst" / "image"
    root.parent.mkdir(exist_ok=True)
    if prefix:
        r = subprocess.run([*prefix, *_cli(), "-f", str(bom), "--root", str(root)],
                           capture_output=True, text=True)
    else:
        r = run_cli("-f", str(bom), "--root", str(root), env=env)
    assert r.returncode == code, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert not root.exists(), "bad input must not touch the root"
    return lines[0]


def _cli() -> list[str]:
    import sys
    return [sys.executable, "-m", "occlum_build.cli.bom"]


def test_malformed_yaml_line_col(tmp_path):
    bom = _write(tmp_path, "targets:\n  - target: /bin\n    copy: [\n")
    _fails(tmp_path, bom, f"{bom}:4:1", "malformed YAML")


def test_unknown_key_did_you_mean(tmp_path):
    bom = _write(tmp_path, "targets:\n  - target: /\n    mkdir:\n      - bin\n")
    _fails(tmp_path, bom, f"{bom}:3:5", "targets[0].mkdir", "unknown key 'mkdir'", "did you mean 'mkdirs'")


def test_wrong_type_targets_mapping(tmp_path):
    bom = _write(tmp_path, "targets:\n  target: /bin\n")
    _fails(tmp_path, bom, f"{bom}:2:3", "targets", "expected a list of targets, got a mapping")


def test_wrong_type_autodep_string(tmp_path):
    (tmp_path / "f").write_text("x")
    bom = _write(tmp_path, "targets:\n  - target: /\n    copy:\n      - files:\n"
                           "        - name: ../f\n          autodep: maybe\n")
    _fails(tmp_path, bom, f"{bom}:6:20", "targets[0].copy[0].files[0].autodep", "expected true or false")


def test_wrong_type_file_entry_list(tmp_path):
    bom = _write(tmp_path, "targets:\n  - target: /\n    copy:\n      - files:\n        - [a, b]\n")
    _fails(tmp_path, bom, f"{bom}:5:11", "files[0]", "got a list")


def test_missing_source_file(tmp_path):
    bom = _write(tmp_path, "targets:\n  - target: /bin\n    copy:\n      - files:\n          - ../nope\n")
    _fails(tmp_path, bom, f"{bom}:5:13", "source file", "nope does not exist", "parent of --root")


def test_missing_source_dir(tmp_path):
    bom = _write(tmp_path, "targets:\n  - target: /\n    copy:\n      - dirs:\n          - /no/such/dir\n")
    _fails(tmp_path, bom, f"{bom}:5:13", "/no/such/dir does not exist")


def test_dir_listed_as_file(tmp_path):
    bom = _write(tmp_path, "targets:\n  - target: /\n    copy:\n      - files:\n          - /etc\n")
    _fails(tmp_path, bom, "/etc is a directory; list it under 'dirs'")


@pytest.mark.skipif(os.geteuid() != 0 or not have("setpriv"), reason="needs root and setpriv")
def test_unreadable_source_file(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_text("x")
    secret.chmod(0)
    tmp_path.chmod(0o755)
    bom = _write(tmp_path, f"targets:\n  - target: /\n    copy:\n      - files:\n          - {secret}\n")
    drop = ("setpriv", "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search")  # root without its read-anything power
    _fails(tmp_path, bom, "not readable (permission denied)", str(secret), prefix=drop)


def test_non_elf_with_explicit_autodep(tmp_path):
    (tmp_path / "run.sh").write_text("#!/bin/sh\necho hi\n")
    bom = _write(tmp_path, "targets:\n  - target: /bin\n    copy:\n      - files:\n"
                           "          - name: ../run.sh\n            autodep: true\n")
    _fails(tmp_path, bom, "run.sh is not an ELF file", "autodep: true", f"{bom}:5:13")


def test_truncated_elf(tmp_path):
    (tmp_path / "broken").write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 20)
    bom = _write(tmp_path, "targets:\n  - target: /bin\n    copy:\n      - files: [../broken]\n")
    _fails(tmp_path, bom, "broken", "malformed ELF file")


@pytest.mark.parametrize("field,yaml_text", [
    ("target", "targets:\n  - target: /../etc\n    mkdirs: [x]\n"),
    ("linkname", "targets:\n  - target: /bin\n    createlinks:\n      - src: /bin/busybox\n"
                 "        linkname: ../../escape\n"),
    ("rename", "targets:\n  - target: /bin\n    copy:\n      - files:\n          - name: /etc/hostname\n"
               "            rename: ../../../escape\n"),
    ("mkdirs entry", "targets:\n  - target: /\n    mkdirs: [a/../../b]\n"),
])
def test_dotdot_refused(tmp_path, field, yaml_text):
    bom = _write(tmp_path, yaml_text)
    _fails(tmp_path, bom, f"'..' is not allowed in a {field}")


def test_absolute_linkname_refused(tmp_path):
    bom = _write(tmp_path, "targets:\n  - target: /bin\n    createlinks:\n"
                           "      - src: x\n        linkname: /x\n")
    _fails(tmp_path, bom, "relative to its target")


def test_write_through_symlink_outside_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "inst" / "image"
    root.mkdir(parents=True)
    os.symlink(str(outside), root / "bin")  # image/bin -> a host dir
    (tmp_path / "hello").write_text("data")
    bom = _write(tmp_path, "targets:\n  - target: /bin\n    copy:\n      - files: [../hello]\n")
    r = run_cli("-f", str(bom), "--root", str(root))
    assert r.returncode == EXIT_USAGE
    assert "symlink" in r.stderr and str(root / "bin") in r.stderr and "outside the root" in r.stderr
    assert list(outside.iterdir()) == []  # nothing written on the host


def test_include_cycle_shows_chain(tmp_path):
    a = _write(tmp_path, "includes: [b.yaml]\n", "a.yaml")
    _write(tmp_path, "includes: [c.yaml]\n", "b.yaml")
    _write(tmp_path, "includes: [a.yaml]\n", "c.yaml")
    line = _fails(tmp_path, a, "include cycle", "c.yaml:1:")
    assert line.count("a.yaml") >= 2 and "b.yaml -> " in line and "c.yaml -> " in line


def test_include_not_found(tmp_path):
    bom = _write(tmp_path, "includes:\n  - nosuch.yaml\n")
    _fails(tmp_path, bom, f"{bom}:2:5", "included bom 'nosuch.yaml' not found", "--include-dir")


def test_unset_variable(tmp_path):
    bom = _write(tmp_path, "targets:\n  - target: /bin\n    copy:\n      - files:\n"
                           "          - ${NO_SUCH_VAR_X}/a\n")
    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_VAR_X"}
    _fails(tmp_path, bom, "$NO_SUCH_VAR_X is not set", f"{bom}:5:13", env=env)


def test_empty_variable(tmp_path):
    bom = _write(tmp_path, "targets:\n  - target: /bin\n    copy:\n      - files: [$EMPTY_X/a]\n")
    _fails(tmp_path, bom, "$EMPTY_X is empty", env={"EMPTY_X": ""})


def test_hash_mismatch(tmp_path):
    (tmp_path / "data").write_bytes(b"abc")
    wrong = "A" * 64
    bom = _write(tmp_path, f"targets:\n  - target: /\n    copy:\n      - files:\n"
                           f"          - name: ../data\n            hash: {wrong}\n")
    actual = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
    _fails(tmp_path, bom, "hash mismatch", str(tmp_path / "data"), f"expected {wrong}", f"actual {actual}",
           code=EXIT_VERIFY)


def test_hash_not_hex(tmp_path):
    bom = _write(tmp_path, "targets:\n  - target: /\n    copy:\n      - files:\n"
                           "          - name: /etc/hostname\n            hash: 1234\n")
    _fails(tmp_path, bom, "is not a SHA-256 hash", f"{bom}:6:19")


def test_empty_copy_entry(tmp_path):
    bom = _write(tmp_path, "targets:\n  - target: /\n    copy:\n      - {}\n")
    _fails(tmp_path, bom, "needs 'from'")


def test_bom_file_missing(tmp_path):
    _fails(tmp_path, tmp_path / "none.yaml", "bom file not found")


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_bom_file_that_would_never_end(tmp_path, kind):
    """/dev/zero or a FIFO without a writer given as a bom hung copy_bom; each is refused
    before it is read (a FIFO without blocking), a huge file before it is read whole."""
    if kind == "fifo":
        bom = tmp_path / "fifo.yaml"
        os.mkfifo(bom)
        why = "bom file is a FIFO, not a regular file"
    elif kind == "device":
        bom, why = Path("/dev/zero"), "bom file is a device node, not a regular file"
    else:
        bom = tmp_path / "huge.yaml"
        with open(bom, "wb") as f:
            f.truncate((4 << 20) + 1)
        why = f"bom file is {(4 << 20) + 1} bytes, over the limit of 4 MiB"
    _fails(tmp_path, bom, f"{bom}: {why}")


def test_loader_config_that_would_never_end(tmp_path):
    fifo = tmp_path / "loaders.config"
    os.mkfifo(fifo)
    bom = _write(tmp_path, "targets:\n  - target: /\n    mkdirs: [x]\n")
    _fails(tmp_path, bom, f"{fifo}: ELF loader config is a FIFO, not a regular file",
           env={"OCCLUM_ELF_LOADER_CONFIG": str(fifo)})


def test_missing_libraries_listed(tmp_path):
    """Occlum's exit -8: every missing library of a files entry is named, nothing copied."""
    if not have("gcc"):
        pytest.skip("gcc missing")
    for n in ("gone1", "gone2"):
        (tmp_path / f"{n}.c").write_text(f"int {n}(void) {{ return 1; }}\n")
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / f"lib{n}.so"),
                        str(tmp_path / f"{n}.c")], check=True)
    (tmp_path / "main.c").write_text("int gone1(void); int gone2(void);\n"
                                     "int main(void) { return gone1() + gone2(); }\n")
    subprocess.run(["gcc", "-o", str(tmp_path / "prog"), str(tmp_path / "main.c"), f"-L{tmp_path}",
                    "-lgone1", "-lgone2"], check=True)
    for n in ("gone1", "gone2"):
        (tmp_path / f"lib{n}.so").unlink()
    bom = _write(tmp_path, "targets:\n  - target: /bin\n    copy:\n      - files: [../prog]\n")
    _fails(tmp_path, bom, "libraries are missing", "libgone1.so (needed by", "libgone2.so (needed by",
           str(tmp_path / "prog"))


def test_bad_loader_config(tmp_path):
    build_hello(tmp_path / "hello", "gcc")
    cfg = tmp_path / "loader.config"
    cfg.write_text("relative/ld.so /lib\n")
    bom = _write(tmp_path, "targets:\n  - target: /bin\n    copy:\n      - files: [../hello]\n")
    _fails(tmp_path, bom, f"{cfg}:1", "absolute loader path", env={"OCCLUM_ELF_LOADER_CONFIG": str(cfg)})


def test_failure_mid_run_reports_progress(tmp_path):
    """The top bom copies a file to /data; the included bom (processed after it) wants a dir
    there: the error says what was already written, and every written file is whole."""
    (tmp_path / "payload").write_text("x" * 1000)
    _write(tmp_path, "targets:\n  - target: /\n    mkdirs: [data/sub]\n", "inc.yaml")
    bom = _write(tmp_path, "includes: [inc.yaml]\ntargets:\n  - target: /\n    copy:\n"
                           "      - files:\n          - name: ../payload\n            rename: data\n")
    root = tmp_path / "inst" / "image"
    r = run_cli("-f", str(bom), "--root", str(root))
    assert r.returncode == EXIT_USAGE
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert len(err) == 1 and "a file is in the way" in err[0]
    assert "before this failure: 1 files" in err[0] and "run again" in err[0]
    assert (root / "data").read_text() == "x" * 1000
    assert not [p for p in root.rglob(".*copy_bom*")]  # no temporary leftovers
