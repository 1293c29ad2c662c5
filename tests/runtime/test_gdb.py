"""`occlum gdb`: the program runs under Debian's gdb inside the instance's view (docs/runtime.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .rt_helpers import BIN, needs_runtime, occlum

pytestmark = [pytest.mark.native, pytest.mark.slow, needs_runtime,
              pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb not installed")]

BATCH = "-nx -batch -ex run"


def test_breakpoint_in_the_program(built_instance: Path) -> None:
    for prog in ("/bin/hello", "/bin/hello_glibc"):
        r = occlum(built_instance, "gdb", "--gdb-args",
                   "-nx -batch -ex 'break main' -ex run -ex bt -ex continue", prog)
        assert r.returncode == 0, r.stderr
        out = r.stdout
        # gdb stopped in the program's main (not occlum-run's), then the program finished.
        assert f"is executing new program: {prog}" in out, out
        assert "Breakpoint 3, " in out and "main" in out.split("Breakpoint 3, ")[1].splitlines()[0]
        assert "#0 " in out and "Hello World\n" in out
        assert "exited normally" in out
        assert out.index("Breakpoint 3, ") < out.index("Hello World")


def test_same_view_as_occlum_run(built_instance: Path) -> None:
    inst = built_instance
    (inst / "gdb-marker").write_text("seen through /host\n")
    env = {"EXAMPLE": "e", "OTHER": "o"}
    ran = occlum(inst, "run", "/bin/probe", "env", env=env).stdout.splitlines()
    r = occlum(inst, "gdb", "--gdb-args", BATCH, "/bin/probe", "env", env=env)
    assert r.returncode == 0, r.stderr
    seen = [x for x in r.stdout.splitlines() if "=" in x and not x.startswith("[")]
    assert seen == ran == ["OCCLUM=yes", "EXAMPLE=e"]  # the config's env, the untrusted name
    # The instance's mounts: hostfs at /host, /dev/attestation; the image as root FS.
    r = occlum(inst, "gdb", "--gdb-args", BATCH, "/bin/probe", "cat", "/host/gdb-marker")
    assert "seen through /host\n" in r.stdout, r.stderr
    r = occlum(inst, "gdb", "--gdb-args", BATCH, "/bin/probe", "exists", "/dev/attestation/report_body")
    assert "exited normally" in r.stdout, r.stdout
    # $OCCLUM_GDB_ARGS instead of --gdb-args; the instance is free again at once.
    r = occlum(inst, "gdb", "/bin/hello", env={"OCCLUM_GDB_ARGS": BATCH})
    assert r.returncode == 0 and "Hello World\n" in r.stdout, r.stderr
    r = occlum(inst, "run", "/bin/hello")
    assert (r.returncode, r.stdout) == (0, "Hello World\n"), r.stderr
    assert occlum(inst, "status").stdout.strip() == "built"


def test_refusals_as_occlum_run(built_instance: Path, instance_copy: Path) -> None:
    r = occlum(built_instance, "gdb", "--gdb-args", BATCH, "/root/probe", "hello")
    assert "not under an entry point" in r.stderr and "exited with code 0177" in r.stdout
    # The verified boot runs under gdb too.
    sys_json = instance_copy / "build" / ".Occlum_sys.json.protected"
    data = bytearray(sys_json.read_bytes())
    data[40] ^= 1
    sys_json.write_bytes(bytes(data))
    r = occlum(instance_copy, "gdb", "--gdb-args", BATCH, "/bin/hello")
    assert ".Occlum_sys.json.protected" in r.stderr and "exited with code 01" in r.stdout
    assert "Hello World" not in r.stdout
    # Launch options and their checks are those of occlum run.
    r = occlum(built_instance, "gdb", "--cpus", "0", "/bin/hello")
    assert r.returncode == 2 and r.stderr.startswith("Error: --cpus '0'")
    r = occlum(built_instance, "gdb", "--gdb-args", "'unclosed", "/bin/hello")
    assert r.returncode == 2 and r.stderr.startswith("Error: --gdb-args: cannot split")


def test_gdb_missing(built_instance: Path) -> None:
    r = occlum(built_instance, "gdb", "/bin/hello", env={"PATH": str(BIN)})
    assert r.returncode == 1 and r.stderr == "Error: gdb is not installed (apt-get install gdb)\n"
