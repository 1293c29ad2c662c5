"""State dir validation and the build lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from occlum_build.paths import Instance
from occlum_build.pipeline.state import StateDir, build_lock


def test_prepare_creates_and_keeps_valid_state(tmp_path):
    sd = StateDir(Instance.at(tmp_path))
    sd.prepare()
    assert sd.meta.is_file()
    (sd.dir / "keep").write_text("1")
    sd.prepare()
    assert (sd.dir / "keep").exists()


def test_corrupt_state_is_discarded_with_warning(tmp_path, caplog):
    sd = StateDir(Instance.at(tmp_path))
    sd.prepare()
    (sd.dir / "keep").write_text("1")
    sd.dep_file.write_bytes(b"this is not a sqlite database" * 100)
    sd.prepare()
    assert not (sd.dir / "keep").exists()
    assert sd.meta.is_file() and not sd.dep_file.exists()


def test_state_dir_that_is_a_file_is_discarded(tmp_path):
    sd = StateDir(Instance.at(tmp_path))
    sd.dir.parent.mkdir(parents=True)
    sd.dir.write_text("junk")
    sd.prepare()
    assert sd.dir.is_dir() and sd.meta.is_file()


def test_lock_serializes_and_says_it_waits(tmp_path):
    inst = Instance.at(tmp_path)
    code = textwrap.dedent(f"""
        import sys, time
        from occlum_build.paths import Instance
        from occlum_build.pipeline.state import build_lock
        with build_lock(Instance.at({str(tmp_path)!r})):
            print("got", flush=True)
            time.sleep(float(sys.argv[1]))
    """)
    holder = subprocess.Popen([sys.executable, "-c", code, "1.5"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "got"
    waiter = subprocess.run([sys.executable, "-c", code, "0"], capture_output=True, text=True)
    holder.wait()
    assert waiter.returncode == 0 and waiter.stdout.strip() == "got"
    assert "Waiting for another build" in waiter.stderr
    with build_lock(inst):  # free again
        pass
