"""Bad input and failing outputs: one clear error, nothing half-written, previous image intact."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from image_helpers import make_tree, snapshot

from occlum_build.errors import KeyFileError, OcclumError, OutputError
from occlum_build.image import ImageError, ImageReader, build_image, verify_image
from occlum_build.image.objects import SourceChanged, content_sha256
from occlum_build.keys import read_image_key

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, mount, seteuid)")


def _prev_image(tmp_path, build):
    src = make_tree(tmp_path / "src")
    res, out, macf = build(src)
    return src, res, out, macf, snapshot(out), macf.read_bytes()


def _assert_intact(out, macf, snap, mac_text, res):
    assert snapshot(out) == snap
    assert macf.read_bytes() == mac_text
    verify_image(out, res.mac)
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def _special(kind: str, path: Path) -> contextlib.AbstractContextManager:
    if kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        return contextlib.closing(s)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    return contextlib.nullcontext()


@root_only
@pytest.mark.parametrize(
    "kind,word", [("socket", "a socket"), ("fifo", "a FIFO"), ("device", "a character device")]
)
def test_special_files_are_refused(tmp_path, build, kind, word):
    src, res, out, macf, snap, mac_text = _prev_image(tmp_path, build)
    bad = src / "lib" / f"the-{kind}"
    with _special(kind, bad):
        with pytest.raises(OcclumError) as ei:
            build(src)
    msg = str(ei.value)
    assert str(bad) in msg and word in msg and "remove it" in msg and "\n" not in msg
    _assert_intact(out, macf, snap, mac_text, res)


@root_only
def test_special_file_on_first_build_writes_nothing(tmp_path, build):
    src = make_tree(tmp_path / "src")
    os.mkfifo(src / "fifo")
    with pytest.raises(OcclumError, match="FIFO"):
        build(src)
    assert not (tmp_path / "out").exists()


@root_only
def test_unreadable_file(tmp_path):
    # Root reads everything: drop the effective uid to nobody for the build.
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        src = make_tree(base / "src")
        os.chmod(src / "lib/deep/conf.copy", 0o644)
        secret = src / "lib" / "secret"
        secret.write_bytes(b"s")
        os.chmod(secret, 0o600)
        (base / "out").mkdir()
        os.chown(base / "out", 65534, 65534)
        os.seteuid(65534)
        try:
            with pytest.raises(OcclumError) as ei:
                build_image(
                    src, base / "out" / "img", base / "out" / "MAC", key=None, cache_dir=base / "out" / "c"
                )
        finally:
            os.seteuid(0)
        assert str(secret) in str(ei.value) and "Permission denied" in str(ei.value)
        assert not (base / "out" / "MAC").exists()
        assert not [p for p in (base / "out").rglob("*") if p.is_file()]
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=True)


def test_path_over_the_format_limit(tmp_path, build):
    src = make_tree(tmp_path / "src")
    fd = os.open(src, os.O_RDONLY)
    try:
        for _ in range(21):  # 21 components of 200 bytes: over 4095 bytes
            os.mkdir("d" * 200, dir_fd=fd)
            nfd = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
    finally:
        os.close(fd)
    with pytest.raises(OcclumError, match="path longer than 4095 bytes"):
        build(src)


def test_file_changed_while_reading(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"12345")
    with pytest.raises(SourceChanged, match="changed while it was being read"):
        content_sha256(p, 4)


def test_malformed_and_wrong_key_files(tmp_path, build):
    bad = tmp_path / "bad.key"
    bad.write_text("00-11-22\n")
    with pytest.raises(KeyFileError, match="bad.key"):
        read_image_key(bad)
    src = make_tree(tmp_path / "src")
    key = bytes(16)
    res, out, _ = build(src, key=key)
    wrong = tmp_path / "wrong.key"
    wrong.write_text("01" + "-00" * 15 + "\n")
    with pytest.raises(ImageError) as ei:
        verify_image(out, res.mac, key=read_image_key(wrong))
    assert ei.value.kind == "metadata-decrypt" and "wrong image key" in str(ei.value)


@contextlib.contextmanager
def _small_tmpfs(path: Path, size: str):
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@root_only
@pytest.mark.parametrize("segment", [None, 1 << 20], ids=["whole-files", "segmented"])
@pytest.mark.parametrize("direct", [False, True], ids=["buffered", "o-direct"])
def test_disk_full_keeps_the_previous_image(tmp_path, monkeypatch, segment, direct):
    from occlum_build.image import bigfile, directio

    if segment:
        monkeypatch.setattr(bigfile, "SEGMENT", segment)
    if direct:  # this small build writes its large object with O_DIRECT (tmpfs takes it)
        monkeypatch.setattr(directio, "MIN_BUILD", 0)
    src = make_tree(tmp_path / "src")
    with _small_tmpfs(tmp_path / "fs", "2m") as fs:
        out, macf, cache = fs / "mount" / "__ROOT", fs / "mount" / ".ROOT_MAC", fs / "state"
        res = build_image(src, out, macf, key=None, cache_dir=cache)
        snap, mac_text = snapshot(out), macf.read_bytes()
        (src / "big").write_bytes(os.urandom(3 << 20))
        with pytest.raises(OutputError) as ei:
            build_image(src, out, macf, key=None, cache_dir=cache)
        assert "no space left on device" in str(ei.value) and "previous image kept" in str(ei.value)
        _assert_intact(out, macf, snap, mac_text, res)
        # Space back: the next build succeeds.
        (src / "big").write_bytes(b"small now")
        res2 = build_image(src, out, macf, key=None, cache_dir=cache)
        verify_image(out, res2.mac)


@root_only
def test_file_over_the_size_limit(tmp_path, build):
    src = make_tree(tmp_path / "src")
    with _small_tmpfs(tmp_path / "fs", "1m") as fs:
        (src / "huge").symlink_to(fs / "huge")  # only the symlink is in the tree
        build(src)
        (src / "huge").unlink()
        sub = fs / "tree"
        sub.mkdir()
        with open(sub / "sparse", "wb") as f:
            f.truncate(2**48)  # tmpfs files may be sparse and this large
        with pytest.raises(OcclumError, match="larger than the image format allows"):
            build(sub, name="o2", cache="c2")


KILL_CHILD = r"""
import os, signal, sys
from pathlib import Path
from occlum_build.image import writer
real = writer._file_job
calls = []
def dying_job(*a, **kw):
    out = real(*a, **kw)
    calls.append(1)
    if len(calls) == 2:  # some new objects written, metadata not yet
        os.kill(os.getpid(), signal.SIGKILL)
    return out
writer._file_job = dying_job
src, out, mac, cache = map(Path, sys.argv[1:5])
writer.build_image(src, out, mac, key=None, cache_dir=cache, jobs=1)
"""


def test_killed_build_keeps_the_previous_image_and_the_next_build_recovers(tmp_path, build):
    import sys

    src, res, out, macf, snap, mac_text = _prev_image(tmp_path, build)
    for i in range(6):
        (src / f"new{i}").write_bytes(os.urandom(5000 + i))
    r = subprocess.run(
        [sys.executable, "-c", KILL_CHILD, str(src), str(out), str(macf), str(tmp_path / "cache")],
        capture_output=True,
    )
    assert r.returncode == -9
    assert macf.read_bytes() == mac_text and (out / "metadata").read_bytes() == snap["metadata"]
    verify_image(out, res.mac)  # the previous image is whole (new objects are extra, unreferenced)
    assert len(list((out / "objects").iterdir())) > len([k for k in snap if k.startswith("objects/")])
    r2, out2, _ = build(src)
    verify_image(out2, r2.mac)
    assert r2.files == res.files + 6
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    roots = {e.root.hex() for e in ImageReader(out, r2.mac).entries() if e.size and e.type == 1}
    assert {p.name for p in (out / "objects").iterdir()} == roots  # leftovers pruned


def test_output_inside_the_source_tree_is_refused(tmp_path):
    src = make_tree(tmp_path / "src")
    with pytest.raises(OcclumError, match="inside its own source tree"):
        build_image(src, src / "build" / "__ROOT", tmp_path / "MAC", key=None, cache_dir=tmp_path / "c")
    assert not (src / "build").exists() and not (tmp_path / "MAC").exists()


def test_names_that_are_not_utf8(tmp_path, build):
    src = make_tree(tmp_path / "src")
    name = b"caf\xe9-\xff"
    with open(os.path.join(os.fsencode(src), name), "wb") as f:
        f.write(b"latin-1 name")
    os.symlink(b"\xfe-target", os.path.join(os.fsencode(src), b"link-\xfe"))
    from image_helpers import age

    age(src)
    res, out, _ = build(src)
    r = ImageReader(out, res.mac)
    assert r.read(name) == b"latin-1 name"
    assert r.entry(b"link-\xfe").target == b"\xfe-target"
    res2, _, _ = build(src)
    assert res2.bytes_read == 0 and res2.mac == res.mac  # the manifest round-trips such names
