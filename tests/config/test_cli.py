"""The CLI surface of this area: `occlum print enclave-xml|sys-json`, config errors through
the real command (exit 2, one line, no traceback), OCCLUM_LOG_LEVEL and --help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from occlum_build.config import enclave_xml, load_config

OCCLUM = [sys.executable, "-m", "occlum_build.cli.main"]
VEC = Path(__file__).resolve().parents[1] / "vectors" / "config"


def occlum(*args: str, cwd: Path, level: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("OCCLUM_LOG_LEVEL", None)
    if level is not None:
        env["OCCLUM_LOG_LEVEL"] = level
    return subprocess.run(OCCLUM + list(args), cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def inst(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cli")
    r = occlum("new", "inst", cwd=base)
    assert r.returncode == 0, r.stderr
    return base / "inst"


def test_print_enclave_xml(inst: Path) -> None:
    r = occlum("print", "enclave-xml", cwd=inst)
    assert r.returncode == 0, r.stderr
    expected = enclave_xml(load_config(VEC / "template.Occlum.json")).decode()  # golden-tested
    assert r.stdout == expected + "\n"
    r = occlum("print", "enclave-xml", "--enable-edmm", cwd=inst)
    assert "<MiscMask>0xFFFFFFFF</MiscMask>" in r.stdout and "<UserRegionSize>" in r.stdout


def test_print_sys_json_levels(inst: Path) -> None:
    r = occlum("print", "sys-json", cwd=inst)
    assert r.returncode == 0, r.stderr
    assert '"MAC": "00-00-00-00-00-00-00-00-00-00-00-00-00-00-00-00"' in r.stdout
    assert "Warning: " in r.stderr and "not built yet" in r.stderr  # default level: info
    assert occlum("print", "sys-json", cwd=inst, level="error").stderr == ""
    assert occlum("print", "sys-json", cwd=inst, level="off").stderr == ""
    dbg = occlum("print", "sys-json", cwd=inst, level="debug").stderr
    assert "occlum: print sys-json" in dbg
    bad = occlum("status", cwd=inst, level="loud")
    assert bad.returncode == 0 and "OCCLUM_LOG_LEVEL='loud' is not one of" in bad.stderr


def test_print_uses_built_macs(inst: Path, tmp_path: Path) -> None:
    mac = "0f-1e-2d-3c-4b-5a-69-78-87-96-a5-b4-c3-d2-e1-f0"
    (inst / "build" / "mount").mkdir(parents=True)
    (inst / "build" / "mount" / ".ROOT_MAC").write_text(mac)
    try:
        r = occlum("print", "sys-json", cwd=inst)
        assert f'"MAC": "{mac}"' in r.stdout
        assert r.stderr.count("does not exist") == 1  # only the initfs MAC is missing
        (inst / "build" / "mount" / ".ROOT_MAC").write_text("garbage")
        r = occlum("print", "sys-json", cwd=inst)
        assert r.returncode == 2 and ".ROOT_MAC" in r.stderr
    finally:
        import shutil

        shutil.rmtree(inst / "build")


def test_config_error_through_cli(tmp_path: Path) -> None:
    assert occlum("new", "bad", cwd=tmp_path).returncode == 0
    cfg = tmp_path / "bad" / "Occlum.json"
    cfg.write_text(cfg.read_text().replace('"300MB"', '"300XB"'))
    r = occlum("print", "enclave-xml", cwd=cfg.parent)
    assert r.returncode == 2
    assert r.stderr == (f'Error: {cfg}:5:28: resource_limits.user_space_size: "300XB" is not a size '
                        "(use B/KB/MB/GB/TB)\n")
    assert r.stdout == ""
    cfg.unlink()
    r = occlum("print", "enclave-xml", cwd=cfg.parent)
    assert r.returncode == 2 and str(cfg) in r.stderr and "Traceback" not in r.stderr


def test_print_outside_instance(tmp_path: Path) -> None:
    r = occlum("print", "enclave-xml", cwd=tmp_path)
    assert r.returncode == 4 and "is not an Occlum instance" in r.stderr


# Usage lines of the Occlum manual (our additions in brackets at the end are allowed).
MANUAL_USAGE = {
    "new": "occlum new <path> [--init-ra grpc_ratls|aecs]",
    "init": "occlum init [--init-ra grpc_ratls|aecs]",
    "status": "occlum status",
    "gen-image-key": "occlum gen-image-key <key_path>",
    "print": "occlum print ",
}


@pytest.mark.parametrize("cmd", sorted(MANUAL_USAGE))
def test_help(cmd: str, tmp_path: Path) -> None:
    r = occlum(cmd, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: " + MANUAL_USAGE[cmd])


def test_top_level_help_lists_every_command(tmp_path: Path) -> None:
    r = occlum("--help", cwd=tmp_path)
    assert r.returncode == 0
    for cmd in MANUAL_USAGE:
        assert f"    {cmd}" in r.stdout
    assert "OCCLUM_LOG_LEVEL=off|error|warn|info|debug|trace" in r.stdout
    r = occlum(cwd=tmp_path)
    assert r.returncode == 2 and "usage: occlum" in r.stderr


# Every command of the Occlum manual (occlum_cmds.md and tools/occlum's usage).
MANUAL_COMMANDS = ("new", "init", "build", "run", "start", "exec", "stop", "package", "mount",
                   "gen-image-key", "status", "print", "gdb")


def test_top_level_help_lists_every_manual_command(tmp_path: Path) -> None:
    r = occlum("--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.startswith("    ") and line.split()}
    assert set(MANUAL_COMMANDS) <= listed, set(MANUAL_COMMANDS) - listed
    for cmd in MANUAL_COMMANDS:  # and in the manual-style usage summary
        assert f"  occlum {cmd}" in r.stdout or f"/ {cmd}" in r.stdout, cmd
        h = occlum(cmd, "--help", cwd=tmp_path)
        assert h.returncode == 0 and h.stdout.startswith(f"usage: occlum {cmd}"), (cmd, h.stderr)


def test_build_output_follows_log_level(tmp_path: Path) -> None:
    r = occlum("new", "b", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    inst = tmp_path / "b"
    quiet = occlum("build", "--sgx-mode", "SIM", "--json", cwd=inst, level="off")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # no progress lines, no summary
    assert '"mrenclave"' in quiet.stdout  # machine output is not a log message
    (inst / "image" / "new_file").write_text("changed\n")
    err = occlum("build", "--sgx-mode", "SIM", cwd=inst, level="error")
    assert err.returncode == 0 and err.stderr == ""
    info = occlum("build", "--sgx-mode", "SIM", cwd=inst, level="info")
    assert "Built the Occlum image and enclave successfully" in info.stderr
    assert "MRENCLAVE" in info.stderr
    bad = occlum("build", "--sgx-mode", "SIM", "--image-key", "missing.key", cwd=inst, level="off")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1  # errors are still shown


def test_every_usage_line_names_every_option_of_its_command() -> None:
    """The usage lines (Occlum's style, written per command) cannot drift from the options:
    each names every option its parser has."""
    from occlum_build.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():  # type: ignore[attr-defined]
        usage = p.format_usage()
        for action in p._actions:
            opts = [o for o in action.option_strings if o not in ("-h", "--help")]
            if opts:
                assert any(f"{o} " in usage or f"{o}]" in usage or f"{o}/" in usage for o in opts), \
                    f"occlum {name}: usage lacks {opts[-1]}"
