"""fsutil's temp names and the rule for removing them (issue 15 B), on real processes: a temp
file is removed only when no live process has its pid, or the live one started after the file
was last changed (the pid was reused); a running writer's temp is never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from occlum_build import fsutil

# A writer that opens an atomic write of its argument and then blocks on a FIFO inside it.
WRITER = """
import sys
from occlum_build import fsutil
with fsutil.atomic_open(sys.argv[1]) as f:
    f.write(b"partial")
    f.flush()
    open(sys.argv[2], "rb").read()  # blocks: no writer on the FIFO
"""


def start_writer(target: Path, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """A real process blocked inside atomic_open(target); returns it and its temp file."""
    fifo = tmp_path / f"block-{target.name}"
    os.mkfifo(fifo)
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(fifo)])
    temp = target.with_name(f".{target.name}.tmp{p.pid}")
    deadline = time.monotonic() + 30
    while not temp.exists():
        assert p.poll() is None and time.monotonic() < deadline, "the writer did not start"
        time.sleep(0.005)
    return p, temp


def test_temp_names() -> None:
    assert fsutil.temp_name("a.json") == f".a.json.tmp{os.getpid()}"
    assert fsutil.temp_name("x", fsutil.COPY_BOM_TAG) == f".x.copy_bom{os.getpid()}"
    assert fsutil.parse_temp_name(".a.json.tmp123") == ("a.json", "tmp", 123)
    assert fsutil.parse_temp_name(".lib.so.6.copy_bom9") == ("lib.so.6", "copy_bom", 9)
    for other in ("a.json.tmp123", ".a.json.tmp", ".a.tmpx1", ".a.tmp0", ".a.copy_bom"):
        assert fsutil.parse_temp_name(other) is None, other
    long = "n" * 250  # the suffix would not fit in 255 bytes: a digest stands in for the name
    t = fsutil.temp_name(long)
    assert len(t) <= 255 and fsutil.parse_temp_name(t) is not None


def test_a_killed_writer_s_temp_is_removed_a_live_one_is_kept(tmp_path: Path) -> None:
    live, live_temp = start_writer(tmp_path / "live.json", tmp_path)
    dead, dead_temp = start_writer(tmp_path / "dead.json", tmp_path)
    try:
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait()
        assert dead_temp.read_bytes() == b"partial"  # what a kill leaves behind
        (tmp_path / ".user.tmp.txt").write_text("not ours")  # other names are never touched
        (tmp_path / "dead.json.tmp1").write_text("not ours either")
        removed = fsutil.remove_stale_temps(tmp_path)
        assert removed == [str(dead_temp)]
        assert live_temp.exists() and (tmp_path / ".user.tmp.txt").exists()
        assert (tmp_path / "dead.json.tmp1").exists()
        assert fsutil.remove_stale_temps(tmp_path, target="live.json") == []
    finally:
        live.kill()
        live.wait()
    assert fsutil.remove_stale_temps(tmp_path, target="live.json") == [str(live_temp)]


def test_a_reused_pid_does_not_keep_an_old_temp(tmp_path: Path) -> None:
    """A temp written before the process now holding its pid started is stale."""
    old = tmp_path / "old"
    old.write_text("x")
    time.sleep(1.5)  # beyond the slack for the start time of a process
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert fsutil.is_stale_temp(old, p.pid)
        new = tmp_path / "new"
        new.write_text("x")
        assert not fsutil.is_stale_temp(new, p.pid)  # written while it runs: its own, perhaps
    finally:
        p.kill()
        p.wait()
    assert fsutil.is_stale_temp(new, p.pid)  # and now it is dead
