"""OCCLUM_LOG_LEVEL off/error/warn/info/debug/trace, for the build side and the runtime
(docs/runtime.md "Log levels"): each level shows what the one below shows and more; off shows
nothing but the error a failing command must report."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from occlum_build.runtime import SIM_RUNS_HW_ENV

from .rt_helpers import BIN, flip, needs_runtime, occlum

pytestmark = [pytest.mark.native, pytest.mark.slow, needs_runtime]

LEVELS = ("off", "error", "warn", "info", "debug", "trace")
HEAD = 95 + 320  # first content bytes of a Protected FS file (test_tamper.py)


def _at(level: str) -> dict[str, str]:
    return {"OCCLUM_LOG_LEVEL": level}


def _kinds(text: str, marks: dict[str, str]) -> set[str]:
    return {kind for kind, mark in marks.items() if mark in text}


def _grows(seen: dict[str, set[str]], marks: dict[str, str], expect: dict[str, set[str]]) -> None:
    """Level by level: exactly the expected kinds of lines, each level a superset of the last."""
    for level in LEVELS:
        assert seen[level] == expect[level], (level, seen[level])
    for lo, hi in zip(LEVELS, LEVELS[1:], strict=False):
        assert seen[lo] <= seen[hi]


def test_runtime_levels(instance_copy: Path) -> None:
    inst = instance_copy
    r = occlum(inst, "build", env={"SGX_MODE": ""})  # HW: run with OCCLUM_SIM_RUNS_HW=1 (a warning)
    assert r.returncode == 0, r.stderr
    from occlum_build.image import SefsReader, read_mac_file
    from occlum_build.image.sefs_layout import disk_name

    image = inst / "build/mount/__ROOT"
    flip(image / disk_name(SefsReader(image, read_mac_file(image.parent / ".ROOT_MAC"))
                           .lookup("/bin/ulimit_test.sh")), HEAD + 10)
    marks = {
        "block": "/bin/ulimit_test.sh: metadata node: MAC mismatch",   # error: the FUSE server's
        "hw": f"occlum: warn: {inst}: a HW build",                      # warn
        "boot": "verified LibOS",                                       # info: boot steps
        "mr": "occlum: MRENCLAVE ",                                     # info
        "start": "occlum: debug: start /bin/probe: ",                   # debug: each sandbox
        "ids": "occlum: debug: ISVPRODID",                              # debug
        "mount": "occlum: trace: mount procfs at /proc",                # trace: every mount
        "hostfs": f"occlum: trace: mount hostfs at /host from {inst}",  # trace
        "exec": "occlum: trace: exec [pid 2] /bin/probe",               # trace: every exec
        "file": "trace: verified open of image file /bin/probe (",      # trace: every file
    }
    seen = {}
    for level in LEVELS:
        r = occlum(inst, "run", "/bin/probe", "cat", "/bin/ulimit_test.sh",
                   env={**_at(level), SIM_RUNS_HW_ENV: "1"})
        # the app's own perror line (its pieces may interleave with the FS server's line)
        assert r.returncode == 1 and "I/O error" in r.stderr, r.stderr
        seen[level] = _kinds(r.stderr, marks)
        if level == "off":  # nothing of the runtime: the app's perror line only
            assert not [x for x in r.stderr.splitlines() if "occlum" in x or "MAC" in x], r.stderr
    _grows(seen, marks, {
        "off": set(), "error": {"block"}, "warn": {"block", "hw"},
        "info": {"block", "hw", "boot", "mr"}, "debug": {"block", "hw", "boot", "mr", "start", "ids"},
        "trace": set(marks)})
    # A boot failure is shown at every level, off included: the one line and nothing else.
    for level in ("off", "trace"):
        r = occlum(inst, "run", "--expect-mrenclave", "0" * 64, "/bin/hello",
                   env={**_at(level), SIM_RUNS_HW_ENV: "1"})
        lines = [x for x in r.stderr.splitlines() if "mismatch" in x]
        assert r.returncode == 1 and len(lines) == 1 and "expected 000" in lines[0], r.stderr
        if level == "off":
            assert r.stderr == lines[0] + "\n"


def test_started_instance_logs_at_its_start_level(instance_copy: Path) -> None:
    """occlum exec: the level of the server (occlum start); its programs' lines reach exec."""
    inst = instance_copy
    r = occlum(inst, "start", env=_at("trace"))
    assert r.returncode == 0, r.stderr
    try:
        r = occlum(inst, "exec", "/bin/hello", env=_at("off"))
        assert r.stdout == "Hello World\n"
        assert "occlum: trace: exec [pid 2] /bin/hello" in r.stderr
        assert "occlum: trace: mount procfs at /proc" in r.stderr
    finally:
        occlum(inst, "stop")
    r = occlum(inst, "start", env=_at("off"))
    assert (r.returncode, r.stderr) == (0, "")
    try:
        r = occlum(inst, "exec", "/bin/hello", env=_at("trace"))
        assert r.stdout == "Hello World\n"
        # Only what the exec client itself does (its command, the program it starts).
        assert "occlum: trace:" not in r.stderr and f"exec {inst}/build/bin/occlum-run" in r.stderr
    finally:
        occlum(inst, "stop")


def test_build_levels(instance_copy: Path) -> None:
    inst = instance_copy
    occ = inst / "image/opt/occlum/glibc/etc/localtime"  # a warning (docs/runtime.md "Timezones")
    occ.parent.mkdir(parents=True, exist_ok=True)
    occ.write_bytes(b"TZif not the same as /etc/localtime")
    marks = {
        "warning": "Warning: ",                                  # warn
        "progress": "Built the Occlum image and enclave successfully",  # info
        "tasks": "enclave_xml: up to date",                      # debug: each task's decision
        "cli": "occlum: build --sgx-mode SIM",                   # debug
        "file": f"{inst / 'image'}: /bin/hello: unchanged (",    # trace: every file
        "stored": f"{inst / 'image'}: /etc/changed: hashed and stored (",  # trace
    }
    seen = {}
    for n, level in enumerate(LEVELS):
        (inst / "image/etc/changed").write_text(f"build {n}\n")  # the image stage runs every time
        r = occlum(inst, "build", "--sgx-mode", "SIM", env=_at(level))
        assert r.returncode == 0, r.stderr
        seen[level] = _kinds(r.stderr, marks)
        if level in ("off", "error"):
            assert r.stderr == ""  # a build has no errors that do not stop it
    _grows(seen, marks, {
        "off": set(), "error": set(), "warn": {"warning"}, "info": {"warning", "progress"},
        "debug": {"warning", "progress", "tasks", "cli"}, "trace": set(marks)})
    # A failing build at off: its error line only.
    r = occlum(inst, "build", "--sgx-mode", "SIM", "--image-key", "missing.key", env=_at("off"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("Error: ")


def test_verify_and_copy_bom_levels(built_instance: Path, tmp_path: Path) -> None:
    r = occlum(built_instance, "verify", env=_at("trace"))
    assert r.returncode == 0, r.stderr
    assert f"{built_instance / 'build/mount/__ROOT'}: /bin/hello: verified (" in r.stderr
    r = occlum(built_instance, "verify", env=_at("debug"))
    assert r.returncode == 0 and ": verified (" not in r.stderr
    r = occlum(built_instance, "verify", env=_at("off"))
    assert (r.returncode, r.stderr) == (0, "")

    src = tmp_path / "prog"
    shutil.copy2(built_instance / "image/bin/probe", src)
    bom = tmp_path / "b.yaml"
    bom.write_text(f"targets:\n  - target: /bin\n    copy:\n      - files: [{src}]\n")
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")

    def copy_bom(level: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "copy_bom"), "-f", str(bom), "--root", "root", *extra],
                              cwd=tmp_path, env={**env, **_at(level)}, capture_output=True, text=True)

    out = {lvl: copy_bom(lvl).stderr for lvl in LEVELS}  # the first one copies, then the stamp
    assert out["off"] == out["error"] == out["warn"] == ""
    assert "copy_bom: nothing to copy" in out["info"] and "stamp" not in out["info"]
    assert "every input and destination is as the last run left it" in out["debug"]
    assert f"copy_bom stamp: {src} unchanged" in out["trace"]
    assert f"copy_bom stamp: {src} unchanged" not in out["debug"]
    bom.write_text(bom.read_text() + "# edited: the stamp no longer holds, every file is checked\n")
    r = copy_bom("trace")
    assert f"up to date: {tmp_path / 'root/bin/prog'} (from {src})" in r.stderr, r.stderr
    bom.write_text("targets: [")
    r = copy_bom("off")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and r.stderr.startswith("Error: ")


def test_instance_commands_levels(built_instance: Path, tmp_path: Path) -> None:
    """new, gen-image-key, package, verify: confirmations from info, every file at trace,
    nothing at off (results such as `occlum status` stay)."""
    def run(level: str, *argv: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", OCCLUM_LOG_LEVEL=level)
        return subprocess.run([str(BIN / "occlum"), *argv], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=120)

    for n, level in enumerate(LEVELS):
        r = run(level, "new", f"i{n}")
        assert r.returncode == 0, r.stderr
        if level in ("off", "error", "warn"):
            assert (r.stdout, r.stderr) == ("", "")
        else:
            assert "initialized as an Occlum instance" in r.stdout
        traced = "copied /etc/localtime -> " in r.stderr
        assert traced == (level == "trace" and Path("/etc/localtime").exists())
        r = run(level, "status", cwd=tmp_path / f"i{n}")
        assert r.stdout == "initialized\n"  # a result, at every level
        r = run(level, "gen-image-key", f"k{n}")
        assert r.returncode == 0 and (r.stdout == "") == (level in ("off", "error", "warn"))
    pkg = tmp_path / "p.tar.gz"
    r = run("off", "package", "--debug", str(pkg), cwd=built_instance)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = run("trace", "package", "--debug", str(pkg), cwd=built_instance)
    assert r.returncode == 0 and "is generated successfully" in r.stdout
    assert f"packed {built_instance / 'build/lib/libocclum-libos.signed.so'} (" in r.stderr
    r = run("off", "verify", cwd=built_instance)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = run("info", "verify", cwd=built_instance)
    assert r.stdout.endswith("matches Occlum.json, image/ and initfs/\n") and r.stderr == ""
