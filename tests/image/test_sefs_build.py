"""The incremental SEFS image build: every build equals a fresh `sefs-cli zip`-exact image
(sefs.zip_tree, itself pinned by the upstream vectors), and cost follows what changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from occlum_build.image import pfs, sefs
from occlum_build.image.pfs_reader import PfsReader
from occlum_build.image.sefs_build import MARKER, build_image, compute_mac

VEC = Path(__file__).resolve().parents[1] / "vectors" / "occlum-interop" / "sefs" / "integrity"
KEY = bytes(range(16))


def _same_image(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n


def _settle() -> None:
    time.sleep(0.15)  # past the racy window, so the manifest trusts the stat keys


@pytest.fixture
def tree(tmp_path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    subprocess.run(["tar", "--same-permissions", "-xf", str(VEC / "basic" / "tree.tar"), "-C", str(src)],
                   check=True)
    return src


def _build(src: Path, tmp: Path, key: bytes | None = None):
    return build_image(src, tmp / "__ROOT", tmp / ".ROOT_MAC", key=key, cache_dir=tmp / "cache")


@pytest.mark.parametrize("key", [None, KEY], ids=["integrity", "key"])
def test_incremental_builds_equal_fresh_images(tree, tmp_path, key):
    out = tmp_path / "__ROOT"
    _settle()
    r = _build(tree, tmp_path, key)
    if key is None:
        assert pfs.format_mac(r.mac) == (VEC / "basic" / "ROOT_MAC").read_text()
        _same_image(out, VEC / "basic" / "__ROOT")
    assert (tmp_path / ".ROOT_MAC").read_bytes() == pfs.format_mac(r.mac).encode()
    assert compute_mac(tree, key=key) == r.mac
    _settle()
    again = _build(tree, tmp_path, key)
    assert again.mac == r.mac and again.bytes_read == 0 and again.objects_written == 0

    def check(step: str):
        _settle()  # the edit is older than the racy window: its stat key can be trusted next time
        fresh = tmp_path / f"fresh-{step}"
        mac = sefs.zip_tree(tree, fresh, key)
        res = _build(tree, tmp_path, key)
        assert res.mac == mac, step
        _same_image(out, fresh)
        assert compute_mac(tree, key=key, cache_dir=tmp_path / "cache") == mac
        shutil.rmtree(fresh)
        return res

    (tree / "bin" / "init").write_bytes(b"changed" * 1000)
    res = check("edit")
    assert res.bytes_read == 7000
    (tree / "aaa").write_bytes(b"x" * 5000)  # first in the root: every later id shifts
    res = check("add-front")
    assert res.bytes_read == 5000  # the shifted files are renamed and re-headed, not read
    (tree / "aaa").unlink()
    res = check("remove-front")
    assert res.bytes_read == 0
    shutil.rmtree(tree / "opt")
    (tree / "zzz").mkdir()
    os.symlink("bin/busybox", tree / "zzz" / "link")
    check("restructure")


def test_failed_build_keeps_the_previous_image(tree, tmp_path):
    r = _build(tree, tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "__ROOT").iterdir()}
    _settle()
    bad = tree / "etc" / "shadow"
    (tree / "bin" / "init").write_bytes(b"new content")
    os.chmod(bad, 0)
    os.utime(bad)  # new stat key: it must be read
    if os.geteuid() == 0:  # root reads mode-0 files: make it unreadable another way
        bad.unlink()
        bad.mkdir()
        os.symlink("/nonexistent", tree / "etc" / "shadow" / "x")
        os.rename(tree / "bin" / "busybox", tree / "bin" / "busybox.tmp")
        os.mkfifo(tree / "bin" / "busybox")  # skipped with a warning, not an error
        os.unlink(tree / "bin" / "busybox")
        os.rename(tree / "bin" / "busybox.tmp", tree / "bin" / "busybox")
        os.chmod(tree / "bin", 0o755)
        target = tree / "lib" / "libfoo.so.1.2.3"
        os.truncate(target, 10)
        # a file that shrinks between the walk and its read is refused
        from occlum_build.image import sefs_build

        real = sefs_build._walk

        def walk_then_shrink(src, normalize_modes, mtimes=None):
            order = real(src, normalize_modes, mtimes)
            os.truncate(target, 5)
            return order

        sefs_build._walk = walk_then_shrink
        try:
            with pytest.raises(sefs.SefsSourceError, match="changed while the image was built"):
                _build(tree, tmp_path)
        finally:
            sefs_build._walk = real
    after = {p.name: p.read_bytes() for p in (tmp_path / "__ROOT").iterdir()}
    assert after == before and r.mac == PfsReader(
        (tmp_path / "__ROOT" / "metadata").read_bytes(), "metadata").mac


def test_interrupted_commit_is_rebuilt(tree, tmp_path):
    _settle()
    r = _build(tree, tmp_path)
    _settle()
    (tmp_path / "__ROOT" / MARKER).touch()  # as a build killed while committing leaves it
    (tmp_path / "__ROOT" / "05000000000000000000000000000000").write_bytes(b"torn")
    res = _build(tree, tmp_path)
    assert res.mac == r.mac and res.bytes_read > 0
    _same_image(tmp_path / "__ROOT", VEC / "basic" / "__ROOT")
    assert not (tmp_path / "__ROOT" / MARKER).exists()


@pytest.mark.parametrize("key", [None, KEY], ids=["integrity", "key"])
def test_worker_pool_gives_the_same_image_and_the_same_errors(tree, tmp_path, key, monkeypatch):
    """Files protected by worker processes (protect_files.py, used for large builds) give the
    bytes a one-process build gives, the upstream vector's in integrity-only mode; a source
    that changes under a worker fails the build with the same one line."""
    from occlum_build.image import protect_files

    (tree / "big").write_bytes(os.urandom(300_000))  # several MHT-level nodes
    one = tmp_path / "one"
    r1 = build_image(tree, one / "__ROOT", one / ".ROOT_MAC", key=key, cache_dir=one / "cache")
    pids = tmp_path / "pids"
    real = protect_files.protect_file

    def spy(*a):  # runs in the forked workers: it leaves their pid in a file
        with open(pids, "a") as f:
            f.write(f"{os.getpid()}\n")
        return real(*a)

    monkeypatch.setattr(protect_files, "workers_for", lambda total: 2)
    monkeypatch.setattr(protect_files, "protect_file", spy)
    pool = tmp_path / "pool"
    r2 = build_image(tree, pool / "__ROOT", pool / ".ROOT_MAC", key=key, cache_dir=pool / "cache")
    used = {int(x) for x in pids.read_text().split()}
    assert used and os.getpid() not in used  # the files were protected in other processes
    assert r2.mac == r1.mac and r2.bytes_read == r1.bytes_read
    _same_image(one / "__ROOT", pool / "__ROOT")
    assert compute_mac(tree, key=key) == r1.mac
    # A file that shrank after the walk: the worker's error, raised here.
    from occlum_build.image import sefs_build

    real_walk = sefs_build._walk

    def walk_then_shrink(src, normalize_modes, mtimes=None):
        order = real_walk(src, normalize_modes, mtimes)
        os.truncate(tree / "big", 5)
        return order

    monkeypatch.setattr(sefs_build, "_walk", walk_then_shrink)
    bad = tmp_path / "bad"
    with pytest.raises(sefs.SefsSourceError, match=r"/big: changed while the image was built"):
        build_image(tree, bad / "__ROOT", bad / ".ROOT_MAC", key=key, cache_dir=bad / "cache")
    assert not any(p.name.startswith(".tmp-") for p in (bad / "__ROOT").iterdir())
