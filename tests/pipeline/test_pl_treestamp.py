"""The stat-key stamp of a source tree, alone and as the image stage's no-op test."""

from __future__ import annotations

import os

from pipeline_helpers import needs_native

from occlum_build import fsutil
from occlum_build.pipeline.treestamp import tree_stamp


def _tree(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d/f").write_bytes(b"abc")
    (tmp_path / "g").write_bytes(b"x" * 100)
    os.symlink("d/f", tmp_path / "l")
    return tmp_path


def test_stamp_changes_on_every_kind_of_change(tmp_path):
    t = _tree(tmp_path)
    s0, racy = tree_stamp(t)
    assert racy  # just written
    assert tree_stamp(t)[0] == s0
    f = t / "d/f"
    st = os.stat(f)
    f.write_bytes(b"xyz")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # content edit, mtime reset
    s1 = tree_stamp(t)[0]
    assert s1 != s0
    os.chmod(t / "g", 0o600)
    s2 = tree_stamp(t)[0]
    assert s2 != s1
    os.utime(t / "g")
    s3 = tree_stamp(t)[0]
    assert s3 != s2
    os.unlink(t / "l")
    os.symlink("g", t / "l")
    assert tree_stamp(t)[0] != s3


def test_old_tree_is_not_racy(tmp_path, monkeypatch):
    t = _tree(tmp_path)
    monkeypatch.setattr(fsutil, "RACY_NS", 0)
    assert tree_stamp(t)[1] is False


@needs_native
def test_stamped_noop_then_edit_with_mtime_reset(inst, occlum, monkeypatch):
    monkeypatch.setattr(fsutil, "RACY_NS", 0)  # no file counts as just written
    rep = occlum.build()
    rec = (inst / "build/.state/stages/image.json").read_text()
    assert '"tree_stamp": "' in rec
    assert occlum.ran(occlum.build()) == set()
    f = inst / "image/etc/app.conf"
    st = os.stat(f)
    f.write_bytes(b"z" * 10000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    rep2 = occlum.build()
    assert "image" in occlum.ran(rep2) and rep2["image_mac"] != rep["image_mac"]
    # touch: the MAC is recomputed once (same), then the refreshed stamp makes it a stat walk
    os.utime(f)
    assert occlum.ran(occlum.build()) == set()
    before = (inst / "build/.state/stages/image.json").read_text()
    assert occlum.ran(occlum.build()) == set()
    assert (inst / "build/.state/stages/image.json").read_text() == before


@needs_native
def test_initfs_noop_settles_on_its_stamp(inst, occlum, monkeypatch):
    """The initfs mirror is staged on every build; staging an unchanged initfs/ must not
    touch the mirror (a chmod alone moves the ctime), or its stamp never matches and every
    no-op build re-hashes the init FS."""
    monkeypatch.setattr(fsutil, "RACY_NS", 0)
    big = inst / "initfs/lib/big"
    big.write_bytes(os.urandom(1 << 16))
    occlum.build()
    mirror = inst / "build/.state/initfs-src"
    ctimes = {p: os.lstat(p).st_ctime_ns for p in [mirror, *mirror.rglob("*")]}
    assert occlum.ran(occlum.build()) == set()
    rec = (inst / "build/.state/stages/initfs.json").read_text()
    assert '"tree_stamp": "' in rec
    assert occlum.ran(occlum.build()) == set()
    assert (inst / "build/.state/stages/initfs.json").read_text() == rec
    assert {p: os.lstat(p).st_ctime_ns for p in ctimes} == ctimes
    os.chmod(inst / "initfs/lib", 0o700)  # a real mode change still reaches the mirror
    rep = occlum.build()
    assert "initfs" in occlum.ran(rep)
    assert os.lstat(mirror / "lib").st_mode & 0o777 == 0o700
