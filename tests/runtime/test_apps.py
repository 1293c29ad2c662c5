"""Real applications on real Occlum's formats: a python3 instance (the shipped bom/python3.yaml)
and redis (Occlum's demos/redis bom with Debian's redis), built into SEFS images and run by the
SIM runtime, which verifies every inode file it opens against the image's metadata."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from occlum_build.image.sefs_layout import disk_name
from occlum_build.image.sefs_reader import SefsReader
from occlum_build.keys import parse_hex16

from .rt_helpers import BIN, OCCLUM, build, needs_runtime, occlum

DEBIAN_BOMS = Path(__file__).resolve().parents[1] / "vectors" / "bom" / "debian"
pytestmark = needs_runtime


def _new(parent: Path, bom: str) -> Path:
    inst = parent / "inst"
    r = subprocess.run([OCCLUM, "new", str(inst)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (parent / "app.yaml").write_text(bom)
    r = subprocess.run([str(BIN / "copy_bom"), "-f", "../app.yaml", "--root", "image",
                        "--include-dir", str(DEBIAN_BOMS)], cwd=inst, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return inst


def _reader(inst: Path) -> SefsReader:
    mac = parse_hex16((inst / "build/mount/.ROOT_MAC").read_text(), where=".ROOT_MAC")
    return SefsReader(inst / "build/mount/__ROOT", mac, None)


def _image_has(inst: Path, path: str) -> bool:
    try:
        _reader(inst).lookup(path)
    except FileNotFoundError:
        return False
    return True


@pytest.mark.skipif(not Path("/usr/lib/python3.11").is_dir(), reason="needs Debian's python3.11")
def test_python3_instance_runs_from_the_sefs_image(tmp_path: Path) -> None:
    inst = _new(tmp_path, "includes: [base.yaml, python3.yaml]\n")
    build(inst)
    assert _image_has(inst, "/usr/lib/python3.11/json/__init__.py")
    code = ("import json, hashlib; "
            "print(json.dumps({'sum': sum(range(10)), "
            "'sha': hashlib.sha256(b'occlum').hexdigest()[:12]}))")
    r = occlum(inst, "run", "/bin/python3", "-c", code)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"sum": 45, "sha": hashlib.sha256(b"occlum").hexdigest()[:12]}
    # An extension module is read from the image on every import (a .py module may be
    # served from a .pyc the first run wrote into the writable layer): a flipped byte in its
    # inode file is refused when it is opened, naming the path inside the image.
    mod = "/usr/lib/python3.11/lib-dynload/_decimal.cpython-311-x86_64-linux-gnu.so"
    r = occlum(inst, "run", "/bin/python3", "-c", "import _decimal; print(_decimal.__file__)")
    assert r.returncode == 0 and r.stdout.strip() == mod, r.stderr
    victim = _inode_file(inst, mod)
    data = bytearray(victim.read_bytes())
    data[2000] ^= 1  # the first 3 KiB of content, in the metadata node
    victim.write_bytes(bytes(data))
    r = occlum(inst, "run", "/bin/python3", "-c", "import _decimal")
    assert r.returncode != 0
    assert f"{mod}: " in r.stderr and "metadata node: MAC mismatch" in r.stderr, r.stderr


def _inode_file(inst: Path, path: str) -> Path:
    return inst / "build/mount/__ROOT" / disk_name(_reader(inst).lookup(path))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
                    reason="redis-server not installed (scripts/packages/bom.txt)")
def test_redis_serves_from_the_sefs_image(tmp_path: Path) -> None:
    inst = _new(tmp_path, (DEBIAN_BOMS / "redis.yaml").read_text())
    build(inst)
    assert _image_has(inst, "/bin/redis-server")
    port = _free_port()
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    server = subprocess.Popen(
        [OCCLUM, "run", "/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", "/tmp"],
        cwd=inst, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(port)]
        for _ in range(100):
            r = subprocess.run([*cli, "ping"], capture_output=True, text=True)
            if r.stdout.strip() == "PONG":
                break
            assert server.poll() is None, server.communicate()[1]
            time.sleep(0.1)
        assert r.stdout.strip() == "PONG", r.stderr
        def cmd(*argv: str) -> str:
            return subprocess.run([*cli, *argv], capture_output=True, text=True).stdout.strip()

        assert cmd("set", "k", "occlum") == "OK"
        assert cmd("get", "k") == "occlum"
        cmd("shutdown", "nosave")
        out, err = server.communicate(timeout=30)
        assert server.returncode == 0, err
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


@pytest.mark.skipif(not Path("/usr/lib/python3.11").is_dir(), reason="needs Debian's python3.11")
def test_keep_mtimes_makes_the_pyc_files_valid(tmp_path: Path) -> None:
    """SEFS stores mtime 0 (as sefs-cli): Python finds every shipped .pyc stale and compiles
    the module again on each first run.  --keep-mtimes stores the sources' mtimes (capped at
    $SOURCE_DATE_EPOCH), so the .pyc files are used as they are."""
    inst = _new(tmp_path, "includes: [base.yaml, python3.yaml]\n")
    pyc = "/usr/lib/python3.11/json/__pycache__/decoder.cpython-311.pyc"
    if not _host_has(pyc):
        pytest.skip("Debian's python3.11 without its .pyc files")
    code = ("import os, json.decoder; "
            "print(int(os.stat('/usr/lib/python3.11/json/decoder.py').st_mtime))")
    build(inst)
    r = occlum(inst, "run", "/bin/python3", "-v", "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0" and "bytecode is stale for 'json.decoder'" in r.stderr
    build(inst, "--keep-mtimes")
    r = occlum(inst, "run", "/bin/python3", "-v", "-c", code)
    assert r.returncode == 0, r.stderr
    host = int(os.stat("/usr/lib/python3.11/json/decoder.py").st_mtime)
    assert r.stdout.strip() == str(host)
    assert "bytecode is stale" not in r.stderr and f"code object from '{pyc}'" in r.stderr
    # Capped at SOURCE_DATE_EPOCH: an epoch before the file's mtime is what is stored.
    r = occlum(inst, "build", "--sgx-mode", "SIM", "--keep-mtimes", env={"SOURCE_DATE_EPOCH": "1000"})
    assert r.returncode == 0, r.stderr
    assert occlum(inst, "run", "/bin/python3", "-c", code).stdout.strip() == "1000"
    v = occlum(inst, "verify")
    assert v.returncode == 0, v.stderr


def _host_has(path: str) -> bool:
    return Path(path).is_file()
