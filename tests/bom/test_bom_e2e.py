"""End to end: Occlum's own demo boms (unmodified where their sources can be staged on Debian,
Debian-path variants otherwise) copied with the real CLI, then run under chroot."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from bom_helpers import CHROOT, DEBIAN_BOMS, OCCLUM_BOMS, build_hello, chroot, have, needs_root, run_cli

pytestmark = needs_root


def _instance(tmp_path: Path) -> tuple[Path, Path]:
    """A demo dir with an instance dir in it, as Occlum's demos run copy_bom:
    ``cd <demo>/occlum_instance && copy_bom -f ../x.yaml --root image``."""
    inst = tmp_path / "occlum_instance"
    inst.mkdir()
    return inst, inst / "image"


def test_hello_glibc_occlum_bom_unmodified(tmp_path):
    inst, image = _instance(tmp_path)
    build_hello(tmp_path / "hello_world", "gcc")
    shutil.copy(OCCLUM_BOMS / "demos/hello_c/hello.yaml", tmp_path / "hello.yaml")
    r = run_cli("-f", "../hello.yaml", "--root", "image", "--include-dir", str(OCCLUM_BOMS / "etc/template"),
                cwd=inst)
    assert r.returncode == 0, r.stderr
    # Occlum's placement: loader at its PT_INTERP path, libraries in the loader's dir
    assert (image / "lib64/ld-linux-x86-64.so.2").is_file()
    assert (image / "lib/x86_64-linux-gnu/libc.so.6").is_file()
    for d in ("bin", "dev", "etc", "host", "lib", "lib64", "opt", "proc", "root", "sys", "tmp", "sbin",
              "ext2"):
        assert (image / d).is_dir()
    out = chroot(image, "/bin/hello_world")
    assert out.returncode == 0 and out.stdout == "Hello World\n"


def test_hello_musl(tmp_path):
    inst, image = _instance(tmp_path)
    build_hello(tmp_path / "hello_world", "musl-gcc")
    shutil.copy(OCCLUM_BOMS / "demos/hello_c/hello.yaml", tmp_path / "hello.yaml")
    r = run_cli("-f", "../hello.yaml", "--root", "image", cwd=inst)  # base.yaml from the shipped bom/
    assert r.returncode == 0, r.stderr
    assert (image / "lib/ld-musl-x86_64.so.1").is_file()
    assert not (image / "lib/x86_64-linux-gnu/libc.so.6").exists()  # no glibc pulled in
    out = chroot(image, "/bin/hello_world")
    assert out.returncode == 0 and out.stdout == "Hello World\n"


def test_runtime_boot_init_with_variable(tmp_path):
    """demos/runtime_boot/init.yaml: ${INIT_DIR}, target '/bin/', into an initfs root."""
    inst, _ = _instance(tmp_path)
    init_dir = tmp_path / "init"
    (init_dir / "target/release").mkdir(parents=True)
    build_hello(init_dir / "target/release/init", "musl-gcc")
    r = run_cli("-f", str(OCCLUM_BOMS / "demos/runtime_boot/init.yaml"), "--root", "initfs",
                env={"INIT_DIR": str(init_dir)}, cwd=inst)
    assert r.returncode == 0, r.stderr
    out = chroot(inst / "initfs", "/bin/init")
    assert out.stdout == "Hello World\n"


def test_bash_and_busybox(tmp_path):
    inst, image = _instance(tmp_path)
    (tmp_path / "occlum_bash_test.sh").write_text(
        "#!/bin/bash\nset -e\necho \"sum=$((6*7))\"\nls /bin | grep -c busybox\ncat /etc/hostname\n")
    (tmp_path / "occlum_bash_test.sh").chmod(0o755)
    shutil.copy(DEBIAN_BOMS / "bash.yaml", tmp_path / "bash.yaml")
    r = run_cli("-f", "../bash.yaml", "--root", "image", cwd=inst)
    assert r.returncode == 0, r.stderr
    (image / "etc/hostname").write_text("occlum\n")
    out = chroot(image, "/bin/occlum_bash_test.sh")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "sum=42\n1\nocclum\n"
    assert os.readlink(image / "bin/ls") == "/bin/busybox"


@pytest.mark.slow
def test_redis_server_serves(tmp_path):
    if not have("redis-server", "redis-cli"):
        pytest.skip("redis-server not installed (scripts/packages/bom.txt)")
    inst, image = _instance(tmp_path)
    shutil.copy(DEBIAN_BOMS / "redis.yaml", tmp_path / "redis.yaml")
    r = run_cli("-f", "../redis.yaml", "--root", "image", cwd=inst)
    assert r.returncode == 0, r.stderr
    sock = image / "tmp/redis.sock"
    proc = subprocess.Popen([CHROOT, str(image), "/bin/redis-server", "--port", "0", "--unixsocket",
                             "/tmp/redis.sock", "--save", "", "--appendonly", "no", "--dir", "/tmp"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(200):
            if sock.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sock))
            s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
            data = b""
            while b"value" not in data:
                chunk = s.recv(100)
                if not chunk:
                    break
                data += chunk
        assert data == b"+OK\r\n$5\r\nvalue\r\n"
        cli = chroot(image, "/bin/redis-cli", "-s", "/tmp/redis.sock", "ping")
        assert cli.stdout.strip() == "PONG", cli.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.slow
def test_python_glibc_demo_bom_unmodified(tmp_path):
    """demos/python/python_glibc/python-glibc.yaml as Occlum ships it.  The staged
    python-occlum dir holds absolute symlinks to Debian's python: rsync's --copy-unsafe-links
    semantics copy what they point to; autodep of the copied dir finds the extension modules'
    libraries (libssl, libcrypto, libsqlite3 ...)."""
    inst, image = _instance(tmp_path)
    py = tmp_path / "python-occlum"
    (py / "bin").mkdir(parents=True)
    (py / "lib").mkdir()
    os.symlink("/usr/bin/python3.11", py / "bin/python3")
    os.symlink("/usr/lib/python3.11", py / "lib/python3.11")
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset/data.json").write_text('{"rows": [1, 2, 3]}')
    (tmp_path / "demo.py").write_text(
        "import json, ssl, sqlite3\n"
        "rows = json.load(open('/dataset/data.json'))['rows']\n"
        "db = sqlite3.connect(':memory:')\n"
        "db.execute('create table t(x)'); db.executemany('insert into t values (?)', [(r,) for r in rows])\n"
        "print(db.execute('select sum(x) from t').fetchone()[0], ssl.OPENSSL_VERSION.split()[0])\n")
    shutil.copy(OCCLUM_BOMS / "demos/python/python_glibc/python-glibc.yaml", tmp_path / "python-glibc.yaml")
    r = run_cli("-f", "../python-glibc.yaml", "--root", "image", cwd=inst)
    assert r.returncode == 0, r.stderr
    assert os.readlink(image / "bin/python3") == "/opt/python-occlum/bin/python3"
    assert (image / "lib/x86_64-linux-gnu/libssl.so.3").is_file()
    assert (image / "lib/x86_64-linux-gnu/libsqlite3.so.0").is_file()
    out = chroot(image, "/bin/python3", "/demo.py")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "6 OpenSSL\n"
    # a second run over the unchanged tree copies nothing and says so
    again = run_cli("-f", "../python-glibc.yaml", "--root", "image", cwd=inst)
    assert again.returncode == 0
    assert "nothing to copy" in again.stderr


@pytest.mark.slow
def test_benchmark_boms_fio_sysbench_iperf3_sqlite(tmp_path):
    """Occlum's fio, sysbench, iperf3 and sqlite demo boms, with their build outputs staged
    from Debian's packages, copy into one image whose programs all run."""
    if not have("fio", "sysbench", "iperf3", "sqlite3"):
        pytest.skip("fio/sysbench/iperf3/sqlite3 not installed (scripts/packages/bom.txt)")
    inst, image = _instance(tmp_path)
    (tmp_path / "fio_src").mkdir()
    shutil.copy("/usr/bin/fio", tmp_path / "fio_src/fio")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs/job.fio").write_text(
        "[job]\nioengine=psync\nrw=write\nsize=256k\nbs=4k\nfilename=/tmp/fio.dat\n")
    (tmp_path / "sysbench-install/bin").mkdir(parents=True)
    shutil.copy("/usr/bin/sysbench", tmp_path / "sysbench-install/bin/sysbench")
    ip = tmp_path / "iperf3-install"
    (ip / "bin").mkdir(parents=True)
    (ip / "lib").mkdir()
    shutil.copy("/usr/bin/iperf3", ip / "bin/iperf3")
    shutil.copy("/usr/lib/x86_64-linux-gnu/libiperf.so.0", ip / "lib/libiperf.so.0")
    shutil.copy("/usr/bin/sqlite3", tmp_path / "sqlite3")
    shutil.copy("/usr/bin/sqlite3", tmp_path / "speedtest1")
    env = {"IPERF3_INSTALL_DIR": str(ip), "DEMO": "sqlite3", "SPEEDTEST": "speedtest1"}
    for bom in ("benchmarks/fio/fio.yaml", "benchmarks/sysbench/sysbench.yaml",
                "benchmarks/iperf3/iperf3.yaml", "sqlite/sqlite.yaml"):
        r = run_cli("-f", str(OCCLUM_BOMS / "demos" / bom), "--root", "image", env=env, cwd=inst)
        assert r.returncode == 0, (bom, r.stderr)
    assert (image / "opt/occlum/glibc/lib/libiperf.so.0").is_file()
    fio = chroot(image, "/bin/fio", "--output-format=terse", "/configs/job.fio")
    assert fio.returncode == 0, fio.stderr
    assert (image / "tmp/fio.dat").stat().st_size == 256 * 1024
    sb = chroot(image, "/bin/sysbench", "--version")
    assert sb.returncode == 0 and sb.stdout.startswith("sysbench"), sb.stderr
    ipf = chroot(image, "/bin/iperf3", "--version")
    assert ipf.returncode == 0 and "iperf" in ipf.stdout, ipf.stderr
    sq = chroot(image, "/bin/sqlite3", ":memory:", "select 6*7;")
    assert sq.stdout == "42\n", sq.stderr


@pytest.mark.slow
def test_shipped_python3_template(tmp_path):
    """bom/python3.yaml (Debian's python3 + stdlib) included by an app bom, run under chroot."""
    inst, image = _instance(tmp_path)
    (tmp_path / "app.py").write_text("import json, sqlite3, ssl, sys\n"
                                     "print(json.dumps(sys.version_info[:2]))\n")
    (tmp_path / "app.yaml").write_text("includes: [base.yaml, python3.yaml]\ntargets:\n  - target: /\n"
                                       "    copy:\n      - files: [../app.py]\n")
    r = run_cli("-f", "../app.yaml", "--root", "image", cwd=inst)
    assert r.returncode == 0, r.stderr
    out = chroot(image, "/bin/python3", "/app.py")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[3, 11]\n"
