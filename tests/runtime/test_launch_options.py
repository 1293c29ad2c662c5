"""Launch options of `occlum run` / `occlum start`: --expect-mrenclave/--expect-mrsigner (a local
stand-in for attestation), --config-id/--config-svn (KSS, with the simulated report at
/dev/attestation), --cpus (docs/runtime.md)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .rt_helpers import BIN, OCCLUM, build, needs_runtime, occlum

pytestmark = [pytest.mark.native, pytest.mark.slow, needs_runtime]

REPORT = "/dev/attestation/report_body"
IDENTITY = "/dev/attestation/identity.json"


def _print(inst: Path, what: str) -> str:
    r = occlum(inst, "print", what)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _one_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def _identity(inst: Path, *opts: str, cmd: str = "run") -> dict[str, object]:
    r = occlum(inst, cmd, *opts, "/bin/probe", "cat", IDENTITY)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _report(inst: Path, *opts: str) -> bytes:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    r = subprocess.run([OCCLUM, "run", *opts, "/bin/probe", "cat", REPORT], cwd=inst, env=env,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


# ------------------------------------------------------------------ --expect-mrenclave/-mrsigner
def test_swapped_build_refused_with_expectation(instance_copy: Path, tmp_path: Path) -> None:
    inst = instance_copy
    mre, mrs = _print(inst, "mrenclave"), _print(inst, "mrsigner")
    ok = occlum(inst, "run", "--expect-mrenclave", mre, "--expect-mrsigner", mrs, "/bin/hello")
    assert (ok.returncode, ok.stdout) == (0, "Hello World\n"), ok.stderr
    # Another instance (one more file in its image: another conf MAC, another MRENCLAVE, the
    # same signing key), whose build/ replaces ours.
    other = tmp_path / "other"
    shutil.copytree(inst, other, symlinks=True, ignore=shutil.ignore_patterns("run"))
    (other / "image" / "etc" / "other.txt").write_text("another instance\n")
    build(other)
    other_mre = _print(other, "mrenclave")
    assert other_mre != mre
    shutil.rmtree(inst / "build")
    shutil.copytree(other / "build", inst / "build", symlinks=True)
    # Without the option nothing notices: it is a valid build.
    r = occlum(inst, "run", "/bin/hello")
    assert (r.returncode, r.stdout) == (0, "Hello World\n"), r.stderr
    r = occlum(inst, "run", "--expect-mrenclave", mre, "/bin/hello")
    line = _one_line(r)
    assert r.returncode == 1 and r.stdout == ""
    assert f"expected {mre}" in line and f"measured {other_mre}" in line, line
    assert "MRENCLAVE" in line and "libocclum-libos.signed.so" in line
    # Upper-case hex is the same measurement; the signer did not change.
    r = occlum(inst, "run", "--expect-mrenclave", other_mre.upper(), "--expect-mrsigner", mrs,
               "/bin/hello")
    assert (r.returncode, r.stdout) == (0, "Hello World\n"), r.stderr
    r = occlum(inst, "run", "--expect-mrsigner", "ab" * 32, "/bin/hello")
    line = _one_line(r)
    assert r.returncode == 1 and f"expected {'ab' * 32}" in line and f"measured {mrs}" in line
    # occlum start checks the same at its boot, and starts nothing.
    r = occlum(inst, "start", "--expect-mrenclave", mre)
    assert r.returncode == 1 and f"expected {mre}" in _one_line(r), r.stderr
    assert not (inst / "run" / "occlum_exec.sock").exists()
    r = occlum(inst, "start", "--expect-mrenclave", other_mre)
    assert r.returncode == 0, r.stderr
    try:
        assert occlum(inst, "exec", "/bin/hello").stdout == "Hello World\n"
    finally:
        occlum(inst, "stop")


def test_expectation_syntax(built_instance: Path) -> None:
    for opt, value in (("--expect-mrenclave", "12ab"), ("--expect-mrsigner", "g" * 64)):
        r = occlum(built_instance, "run", opt, value, "/bin/hello")
        assert r.returncode == 2 and r.stdout == ""
        line = _one_line(r)
        assert line.startswith(f"Error: {opt} ") and "64 hex digits" in line, line


# ------------------------------------------------------------------ KSS: --config-id/--config-svn
@pytest.fixture(scope="module")
def kss_instance(built_instance: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    inst = tmp_path_factory.mktemp("kss") / "inst"
    shutil.copytree(built_instance, inst, symlinks=True, ignore=shutil.ignore_patterns("run"))
    cfg = json.loads((inst / "Occlum.json").read_text())
    cfg["metadata"]["enable_kss"] = True
    cfg["metadata"]["family_id"] = {"high": "0x1122334455667788", "low": "0x99aabbccddeeff00"}
    (inst / "Occlum.json").write_text(json.dumps(cfg, indent=4))
    build(inst)
    return inst


def test_config_id_reaches_the_report(kss_instance: Path) -> None:
    inst = kss_instance
    config_id = bytes(range(64))
    b64 = base64.b64encode(config_id).decode()
    ident = _identity(inst, "--config-id", b64, "--config-svn", "0x1234")
    assert ident["kss"] is True
    assert ident["config_id"] == config_id.hex() and ident["config_svn"] == 0x1234
    assert ident["mr_enclave"] == _print(inst, "mrenclave")
    assert ident["mr_signer"] == _print(inst, "mrsigner")
    # The binary report body, in the SDK's sgx_report_body_t layout.
    body = _report(inst, "--config-id", b64, "--config-svn", "4660")
    assert len(body) == 384
    assert body[192:256] == config_id and int.from_bytes(body[260:262], "little") == 0x1234
    assert body[64:96].hex() == ident["mr_enclave"] and body[128:160].hex() == ident["mr_signer"]
    assert int.from_bytes(body[48:56], "little") & 0x80  # KSS in the attributes
    # A shorter id is zero-padded (as Occlum's PAL does); no option: zeros.
    ident = _identity(inst, "--config-id", base64.b64encode(b"app-v2").decode())
    assert ident["config_id"] == (b"app-v2" + bytes(58)).hex() and ident["config_svn"] == 0
    assert _identity(inst)["config_id"] == "00" * 64


def test_config_id_through_start_and_read_only(kss_instance: Path) -> None:
    inst = kss_instance
    b64 = base64.b64encode(b"\xff" * 64).decode()
    r = occlum(inst, "start", "--config-id", b64, "--config-svn", "7")
    assert r.returncode == 0, r.stderr
    try:
        r = occlum(inst, "exec", "/bin/probe", "cat", IDENTITY)
        ident = json.loads(r.stdout)
        assert ident["config_id"] == "ff" * 64 and ident["config_svn"] == 7
        # The app is root in its sandbox, and still cannot change its report.
        r = occlum(inst, "exec", "/bin/probe", "write", REPORT, "forged")
        assert r.returncode == 1 and "Read-only file system" in r.stderr
        r = occlum(inst, "exec", "/bin/probe", "write", "/dev/attestation/new", "forged")
        assert r.returncode == 1
    finally:
        occlum(inst, "stop")


def test_config_id_refused_without_kss(built_instance: Path) -> None:
    inst = built_instance
    for opts in (("--config-id", base64.b64encode(b"x" * 64).decode()), ("--config-svn", "1")):
        r = occlum(inst, "run", *opts, "/bin/hello")
        line = _one_line(r)
        assert r.returncode == 1 and r.stdout == ""
        assert "enable_kss" in line and "KSS" in line, line
        r = occlum(inst, "start", *opts)
        assert r.returncode == 1 and "enable_kss" in r.stderr
    # Without the options the report is there, with KSS off and no config id.
    ident = _identity(inst)
    assert ident["kss"] is False and ident["config_id"] == "00" * 64


@pytest.mark.parametrize(("opts", "why"), [
    (("--config-id", "not base64!"), "not base64: character 4 is ' '"),
    (("--config-id", base64.b64encode(bytes(65)).decode()), "decodes to 65 bytes"),
    (("--config-id", "QQ="), "padding"),
    (("--config-id", "QR=="), "not canonical"),
    (("--config-svn", "65536"), "over 65535"),
    (("--config-svn", "0x1g"), "not a number"),
    (("--config-svn", "-1"), "not a number"),
])
def test_config_syntax(kss_instance: Path, opts: tuple[str, str], why: str) -> None:
    r = occlum(kss_instance, "run", *opts, "/bin/hello")
    assert r.returncode == 2 and r.stdout == ""
    line = _one_line(r)
    assert line.startswith(f"Error: {opts[0]} ") and why in line, line


def test_occlum_run_checks_the_environment_too(kss_instance: Path) -> None:
    """Real Occlum's PAL reads OCCLUM_CONF_ID_BASE64 / OCCLUM_CONF_SVN; ours too, and checks them."""
    b64 = base64.b64encode(b"env" * 21).decode()
    r = occlum(kss_instance, "run", "/bin/probe", "cat", IDENTITY,
               env={"OCCLUM_CONF_ID_BASE64": b64, "OCCLUM_CONF_SVN": "010"})
    ident = json.loads(r.stdout)
    assert ident["config_id"] == (b"env" * 21 + b"\0").hex() and ident["config_svn"] == 8
    r = occlum(kss_instance, "run", "/bin/hello", env={"OCCLUM_CONF_SVN": "99999"})
    assert r.returncode == 1 and "OCCLUM_CONF_SVN" in _one_line(r) and "over 65535" in r.stderr


# ------------------------------------------------------------------ --cpus
def test_cpus_limits_the_program(built_instance: Path) -> None:
    have = len(os.sched_getaffinity(0))
    r = occlum(built_instance, "run", "/bin/probe", "cpus")
    assert r.stdout.split("\n")[0] == str(have), r.stderr
    r = occlum(built_instance, "run", "--cpus", "1", "/bin/probe", "cpus")
    assert r.returncode == 0, r.stderr
    # One CPU, and asking for every CPU does not widen it.
    assert r.stdout.splitlines() == ["1", "set 1"]
    r = occlum(built_instance, "run", "--cpus", "1", "/bin/probe", "cat", "/proc/self/status")
    allowed = next(x for x in r.stdout.splitlines() if x.startswith("Cpus_allowed_list:"))
    assert allowed.split()[1].isdigit(), allowed  # a single CPU
    r = occlum(built_instance, "run", "--cpus", str(have), "/bin/probe", "cpus")
    assert r.stdout.splitlines() == [str(have), f"set {have}"]


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", "+1", "100000"])
def test_cpus_syntax(built_instance: Path, value: str) -> None:
    r = occlum(built_instance, "run", "--cpus", value, "/bin/hello")
    assert r.returncode == 2 and r.stdout == ""
    line = _one_line(r)
    assert line.startswith("Error: --cpus ") and "not a number of CPUs from 1 to" in line, line


def test_cpus_of_a_started_instance(instance_copy: Path) -> None:
    r = occlum(instance_copy, "start", "--cpus", "1")
    assert r.returncode == 0, r.stderr
    try:
        r = occlum(instance_copy, "exec", "/bin/probe", "cpus")
        assert r.stdout.splitlines() == ["1", "set 1"], r.stderr
    finally:
        occlum(instance_copy, "stop")
