"""`occlum run` end to end: real instances built by `occlum build`, real programs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .rt_helpers import needs_runtime, occlum

pytestmark = [pytest.mark.native, pytest.mark.slow, needs_runtime]


@pytest.fixture
def inst(built_instance: Path) -> Path:
    return built_instance


def test_hello_musl(inst: Path) -> None:
    r = occlum(inst, "run", "/bin/hello")
    assert (r.returncode, r.stdout) == (0, "Hello World\n"), r.stderr


def test_hello_glibc(inst: Path) -> None:
    r = occlum(inst, "run", "/bin/hello_glibc")
    assert (r.returncode, r.stdout) == (0, "Hello World\n"), r.stderr


def test_file_persists_across_runs_encrypted_at_rest(inst: Path) -> None:
    secret = "persisted-secret-8c1f"
    r = occlum(inst, "run", "/bin/probe", "write", "/root/note.txt", secret)
    assert r.returncode == 0, r.stderr
    r = occlum(inst, "run", "/bin/probe", "cat", "/root/note.txt")
    assert (r.returncode, r.stdout) == (0, secret), r.stderr
    # Never as plaintext on the host: not under run/, not anywhere in the instance.
    for p in inst.rglob("*"):
        if p.is_file() and not p.is_symlink():
            assert secret.encode() not in p.read_bytes(), p


def test_delete_lower_file(instance_copy: Path) -> None:
    copy = instance_copy
    assert occlum(copy, "run", "/bin/probe", "exists", "/bin/ulimit_test.sh").returncode == 0
    r = occlum(copy, "run", "/bin/probe", "rm", "/bin/ulimit_test.sh")
    assert r.returncode == 0, r.stderr
    # Gone in the next run too (the deletion is recorded in the writable layer).
    assert occlum(copy, "run", "/bin/probe", "exists", "/bin/ulimit_test.sh").returncode == 1


def test_exit_status_rules(inst: Path) -> None:
    assert occlum(inst, "run", "/bin/probe", "exit", "3").returncode == 3
    assert occlum(inst, "run", "/bin/probe", "exit", "200").returncode == 200 & 0x7F
    assert occlum(inst, "run", "/bin/probe", "signal", "15").returncode == 128 + 15
    r = occlum(inst, "run", "/bin/missing")
    assert r.returncode == 127 and "cannot execute /bin/missing" in r.stderr


def test_outside_entry_points_refused(inst: Path) -> None:
    marker = inst / "entry-marker"
    r = occlum(inst, "run", "/root/probe", "write", "/host/entry-marker", "x")
    assert r.returncode == 127
    assert "/root/probe: not under an entry point" in r.stderr
    assert not marker.exists()
    # The same program under /bin runs and has the side effect: the check above is real.
    r = occlum(inst, "run", "/bin/probe", "write", "/host/entry-marker", "x")
    assert r.returncode == 0 and marker.read_text() == "x"
    marker.unlink()
    # A path that only looks as if it were under /bin.
    r = occlum(inst, "run", "/bin/../root/probe", "hello")
    assert r.returncode == 127


def test_untrusted_env_filtering(inst: Path) -> None:
    r = occlum(inst, "run", "/bin/probe", "env", env={"EXAMPLE": "from-host", "SECRET_X": "no"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "OCCLUM=yes" in lines  # env.default
    assert "EXAMPLE=from-host" in lines  # env.untrusted name taken from the host
    assert not any(ln.startswith(("SECRET_X=", "PATH=", "HOME=")) for ln in lines)


def test_hostfs_and_proc_dev(inst: Path) -> None:
    # bash builtins only: the image has no coreutils besides dd.
    r = occlum(inst, "run", "/bin/bash", "-c",
               "read -r l < /host/Occlum.json && echo $l && echo $$ && cd /dev && echo * && "
               "read -r c < /proc/self/comm && echo $c && echo x > /dev/null && "
               "/bin/dd if=/dev/urandom of=/dev/null bs=8 count=1 2>/dev/null && echo ok")
    assert r.returncode == 0, r.stderr
    out = r.stdout.split()
    assert out[0] == "{"  # /host is the instance directory
    assert out[1] == "2"  # pid 2 in a fresh pid namespace (pid 1 is its init)
    for node in ("null", "zero", "random", "urandom", "tty", "fd", "stdin", "stdout", "stderr"):
        assert node in out
    assert out[-2:] == ["bash", "ok"]


def test_manual_ulimit_script(inst: Path) -> None:
    r = occlum(inst, "run", "/bin/bash", "/bin/ulimit_test.sh")
    assert r.returncode == 0, r.stderr
    before, after = r.stdout.split("ulimit result:")
    # Occlum.json defaults: default_stack_size 4MB, user_space_size 300MB (template).
    assert re.search(r"stack size\s+\(kbytes, -s\) 4096", before)
    assert re.search(r"virtual memory\s+\(kbytes, -v\) 307200", before)
    assert re.search(r"stack size\s+\(kbytes, -s\) 10240", after)
    assert re.search(r"virtual memory\s+\(kbytes, -v\) 102400", after)
    assert re.search(r"data seg size\s+\(kbytes, -d\) 40960", after)
    assert "2+0 records out" in r.stderr  # dd ran within the lowered limits


def test_limits_enforced(inst: Path) -> None:
    dd = "/bin/dd if=/dev/zero of=/dev/null bs=100M count=1"
    # 100 MB fits the defaults (heap 32 MB + mmap 100 MB, user space 300 MB) ...
    r = occlum(inst, "run", "/bin/bash", "-c", dd)
    assert r.returncode == 0, r.stderr
    # ... but not a 100 MB address space, nor a 150 MB one once the mmap area is used up.
    for lim in ("ulimit -Sv 102400", "ulimit -Sd 0 && ulimit -Sv 153600"):
        r = occlum(inst, "run", "/bin/bash", "-c", f"{lim}; {dd}")
        assert r.returncode != 0 and "memory exhausted" in r.stderr, (lim, r.stderr)
    # More than the user space can never be had: the hard limit cannot be raised.
    r = occlum(inst, "run", "/bin/bash", "-c", "ulimit -Hv 614400")
    assert r.returncode != 0


def test_stdin_passes_through(inst: Path) -> None:
    r = occlum(inst, "run", "/bin/bash", "-c", "read -r x; echo got $x", input_text="hello\n")
    assert (r.returncode, r.stdout) == (0, "got hello\n"), r.stderr


def test_signal_sent_to_occlum_run_reaches_the_program(inst: Path) -> None:
    import os
    import signal
    import subprocess

    from .rt_helpers import BIN, OCCLUM

    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    p = subprocess.Popen([OCCLUM, "run", "/bin/probe", "wait"], cwd=inst, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    p.send_signal(signal.SIGUSR1)  # `occlum run` has become occlum-run (exec)
    assert p.wait(timeout=60) == 128 + signal.SIGUSR1


def test_occlum_run_binary_finds_its_instance(inst: Path, tmp_path: Path) -> None:
    """build/bin/occlum-run, started from anywhere, boots the instance it belongs to."""
    import subprocess

    r = subprocess.run([str(inst / "build/bin/occlum-run"), "/bin/hello"], cwd=tmp_path,
                       capture_output=True, text=True, env={})
    assert (r.returncode, r.stdout) == (0, "Hello World\n"), r.stderr
