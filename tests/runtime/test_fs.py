"""occlum-fs end to end: a real image written by the Python writer, served through FUSE.

Reads match the source tree; writes, renames and deletions of image files persist in the
encrypted writable layer across remounts; the layer holds no plaintext; a flipped image
block gives EIO and one log line naming the file; tampering stops the mount.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from occlum_build.image import build_image
from occlum_build.keys import format_hex16

from .fsmount import Mount, can_mount_fuse

pytestmark = [
    pytest.mark.native,
    pytest.mark.skipif(not can_mount_fuse(), reason="FUSE mounts need root and /dev/fuse"),
]

MARKER = b"OCCLUM-FS-SECRET-MARKER-7f3a9c"
KEY = bytes(range(16))


def make_tree(src: Path) -> dict[str, bytes]:
    files = {
        "bin/hello": b"#!/bin/sh\necho hello\n",
        "etc/hosts": b"127.0.0.1 localhost\n",
        "etc/app/conf.txt": b"x = 1\n",
        "lib/big": os.urandom(40 * 4096 + 123),  # 41 blocks: reads split over two threads
        "lib/empty": b"",
        "data/old.txt": b"to be renamed\n",
        "data/gone.txt": b"to be deleted\n",
    }
    for rel, data in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (src / "bin/hello").chmod(0o755)
    (src / "emptydir").mkdir()
    os.symlink("../etc/hosts", src / "bin/hosts-link")
    return files


@pytest.fixture(params=["integrity", "encrypted"])
def image(request, tmp_path: Path):
    key = KEY if request.param == "encrypted" else None
    src = tmp_path / "src"
    files = make_tree(src)
    out, mac = tmp_path / "build/mount/__ROOT", tmp_path / "build/mount/.ROOT_MAC"
    build_image(src, out, mac, key=key, cache_dir=tmp_path / "cache")
    extra: tuple[str, ...] = ()
    if key:
        keyfile = tmp_path / "image_key"
        keyfile.write_text(format_hex16(key) + "\n")
        extra = ("--image-key", str(keyfile))
    (tmp_path / "run/mount").mkdir(parents=True)
    return {"src": src, "files": files, "out": out, "mac": mac, "extra": extra,
            "upper": tmp_path / "run/mount/__ROOT", "mnt": tmp_path / "mnt", "tmp": tmp_path}


def mount(img: dict, *more: str) -> Mount:
    return Mount(img["out"], img["mac"], img["upper"], img["mnt"], *img["extra"], *more)


def test_read_write_persist_and_tamper(image: dict) -> None:
    mnt: Path = image["mnt"]
    with mount(image):
        for rel, data in image["files"].items():
            assert (mnt / rel).read_bytes() == data, rel
        assert sorted(os.listdir(mnt)) == ["bin", "data", "emptydir", "etc", "lib"]
        assert os.readlink(mnt / "bin/hosts-link") == "../etc/hosts"
        assert (mnt / "bin/hosts-link").read_bytes() == image["files"]["etc/hosts"]
        assert (mnt / "bin/hello").stat().st_mode & 0o777 == 0o755
        # writes into the writable layer
        (mnt / "data/new.txt").write_bytes(MARKER * 100)
        with open(mnt / "data/new.txt", "r+b") as f:  # overwrite inside, extend past a gap
            f.seek(5000)
            f.write(b"middle")
            f.seek(5 * 4096 + 7)
            f.write(b"end")
        (mnt / "etc/hosts").write_bytes(b"10.0.0.1 modified\n")  # copy-up of an image file
        with open(mnt / "lib/big", "r+b") as f:  # partial overwrite of a copied-up file
            f.seek(4096 + 10)
            f.write(MARKER)
        os.rename(mnt / "data/old.txt", mnt / "data/renamed.txt")
        os.unlink(mnt / "data/gone.txt")
        os.rmdir(mnt / "emptydir")
        os.mkdir(mnt / "newdir")
        os.symlink("/etc/hosts", mnt / "newdir/abs-link")
        os.chmod(mnt / "etc/app/conf.txt", 0o600)
        os.truncate(mnt / "bin/hello", 5)
        with pytest.raises(OSError) as e:
            os.rename(mnt / "etc", mnt / "etc2")  # image directory: refused like overlayfs
        assert e.value.errno == errno.EXDEV
        with pytest.raises(FileNotFoundError):
            (mnt / "data/gone.txt").read_bytes()
    # nothing written in plaintext
    upper: Path = image["upper"]
    for p in upper.rglob("*"):
        if p.is_file():
            blob = p.read_bytes()
            assert MARKER not in blob and b"modified" not in blob and b"new.txt" not in blob, p

    expected_new = bytearray(MARKER * 100)
    expected_new += bytes(5000 - len(expected_new)) + b"middle"
    expected_new += bytes(5 * 4096 + 7 - len(expected_new)) + b"end"
    big = bytearray(image["files"]["lib/big"])
    big[4096 + 10:4096 + 10 + len(MARKER)] = MARKER
    with mount(image):  # persisted across the remount
        assert (mnt / "data/new.txt").read_bytes() == bytes(expected_new)
        assert (mnt / "etc/hosts").read_bytes() == b"10.0.0.1 modified\n"
        assert (mnt / "lib/big").read_bytes() == bytes(big)
        assert (mnt / "data/renamed.txt").read_bytes() == b"to be renamed\n"
        assert sorted(os.listdir(mnt / "data")) == ["new.txt", "renamed.txt"]
        assert sorted(os.listdir(mnt)) == ["bin", "data", "etc", "lib", "newdir"]
        assert os.readlink(mnt / "newdir/abs-link") == "/etc/hosts"
        assert (mnt / "etc/app/conf.txt").stat().st_mode & 0o777 == 0o600
        assert (mnt / "bin/hello").read_bytes() == b"#!/bin/sh"[:5]
        # deleting files that are open: image file and upper file stay usable through the fd
        with open(mnt / "lib/big", "rb") as lower, open(mnt / "data/new.txt", "r+b") as up:
            os.unlink(mnt / "lib/big")
            os.unlink(mnt / "data/new.txt")
            assert lower.read() == bytes(big)
            up.write(b"still here")
            up.seek(0)
            assert up.read(10) == b"still here"
            assert os.fstat(up.fileno()).st_size == len(expected_new)
            # (libfuse keeps open deleted files as .fuse_hidden* until they are closed)
            visible = [n for n in os.listdir(mnt / "data") if not n.startswith(".fuse_hidden")]
            assert visible == ["renamed.txt"]
            assert not (mnt / "lib/big").exists()
        assert sorted(os.listdir(mnt / "data")) == ["renamed.txt"]
        assert sorted(os.listdir(mnt / "lib")) == ["empty"]
        # an image directory deleted and recreated is empty (opaque)
        os.unlink(mnt / "etc/app/conf.txt")
        os.rmdir(mnt / "etc/app")
        os.mkdir(mnt / "etc/app")
        assert os.listdir(mnt / "etc/app") == []


def test_flipped_block_gives_eio_and_names_file(image: dict) -> None:
    from occlum_build.image import SefsReader, read_mac_file
    from occlum_build.image.sefs_layout import disk_name

    key = KEY if image["extra"] else None
    ino = SefsReader(image["out"], read_mac_file(image["mac"]), key).lookup("/lib/big")
    obj = image["out"] / disk_name(ino)
    data = bytearray(obj.read_bytes())
    d, within = divmod(25 * 4096 + 100 - 3072, 4096)  # content byte -> data node, offset in it
    data[(d + 2 + d // 96) * 4096 + within] ^= 1  # inside block 25 (second half of a 32-block read)
    obj.write_bytes(bytes(data))
    m = mount(image)
    with m:
        with open(image["mnt"] / "lib/big", "rb") as f:
            assert len(f.read(4096)) == 4096  # block 0 is intact
            f.seek(25 * 4096)
            with pytest.raises(OSError) as e:
                f.read(4096)
            assert e.value.errno == errno.EIO
            f.seek(26 * 4096)
            assert len(f.read()) == 14 * 4096 + 123  # blocks after it are intact
            f.seek(0)
            with pytest.raises(OSError) as e:
                f.read()
            assert e.value.errno == errno.EIO
        assert (image["mnt"] / "etc/hosts").read_bytes() == image["files"]["etc/hosts"]
    assert m.proc.returncode == 0, m.stderr
    lines = [ln for ln in m.stderr.splitlines() if "MAC mismatch" in ln]
    assert lines and "/lib/big" in lines[0] and str(image["out"]) in lines[0]


def test_tampered_metadata_is_not_mounted(image: dict) -> None:
    meta = image["out"] / "metadata"
    data = bytearray(meta.read_bytes())
    data[70 if not image["extra"] else 200] ^= 1  # integrity-only: a plain-part byte no MAC covers
    meta.write_bytes(bytes(data))
    m = mount(image)
    assert not m.ready
    assert m.unmount() == 3
    want = "MAC mismatch" if image["extra"] else "non-zero unused plain-part fields"
    assert f"__ROOT: metadata: metadata node: {want}" in m.stderr and str(image["out"]) in m.stderr
    assert not os.path.ismount(image["mnt"])


def test_writable_layer_tamper_and_wrong_key(image: dict) -> None:
    mnt: Path = image["mnt"]
    with mount(image):
        (mnt / "w.txt").write_bytes(b"A" * 10000)
    data_files = list((image["upper"] / "data").iterdir())
    assert len(data_files) == 1
    blob = bytearray(data_files[0].read_bytes())
    blob[4200] ^= 1  # block 1's ciphertext
    data_files[0].write_bytes(bytes(blob))
    m = mount(image)
    with m:
        with open(mnt / "w.txt", "rb") as f:
            assert f.read(4096) == b"A" * 4096
            with pytest.raises(OSError) as e:
                f.read()
            assert e.value.errno == errno.EIO
    # the layer belongs to its key: another key is refused before mounting
    m = mount(image, "--upper-key", "ff-" * 15 + "ff")
    assert not m.ready and m.unmount() == 3
    assert "different key" in m.stderr and str(image["upper"]) in m.stderr


def test_read_only_mount_without_upper(image: dict) -> None:
    img = dict(image, upper=None)
    with Mount(img["out"], img["mac"], None, img["mnt"], *img["extra"], "--read-only"):
        assert (img["mnt"] / "lib/big").read_bytes() == image["files"]["lib/big"]
        with pytest.raises(OSError) as e:
            (img["mnt"] / "x").write_bytes(b"x")
        assert e.value.errno == errno.EROFS


def test_single_threaded_serves(image: dict) -> None:
    mnt: Path = image["mnt"]
    with mount(image, "--single-threaded"):
        assert (mnt / "lib/big").read_bytes() == image["files"]["lib/big"]
        (mnt / "x").write_bytes(b"y" * 10000)
        assert (mnt / "x").read_bytes() == b"y" * 10000


def test_bad_arguments_name_the_artifact(image: dict, tmp_path: Path) -> None:
    import subprocess

    from .fsmount import occlum_fs_binary

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(occlum_fs_binary()), *args], capture_output=True, text=True)

    mnt = str(tmp_path / "m")
    missing = run(str(tmp_path / "nope"), str(image["mac"]), "-", mnt)
    assert missing.returncode == 2 and str(tmp_path / "nope") in missing.stderr
    (tmp_path / "badmac").write_text("zz")
    bad = run(str(image["out"]), str(tmp_path / "badmac"), "-", mnt)
    assert bad.returncode == 2 and "badmac" in bad.stderr and "image MAC" in bad.stderr
    assert run("--bogus").returncode == 2
    # the wrong mode for the image: a key for an integrity-only image, none for an encrypted one
    if image["extra"]:
        r = run(str(image["out"]), str(image["mac"]), "-", mnt)
    else:
        (tmp_path / "k").write_text("00-" * 15 + "00")
        r = run("--image-key", str(tmp_path / "k"), str(image["out"]), str(image["mac"]), "-", mnt)
    want = "is a user-key file, opened as integrity-only" if image["extra"] else \
        "is a integrity-only file, opened as user-key"
    assert r.returncode == 3 and want in r.stderr and "__ROOT: metadata" in r.stderr


def test_sigterm_unmounts_and_keeps_writes(image: dict) -> None:
    """The runtime stops the server with SIGTERM (PR_SET_PDEATHSIG): it must unmount and
    write the index before exiting."""
    import signal

    mnt: Path = image["mnt"]
    m = mount(image)
    with m:
        (mnt / "kept.txt").write_bytes(b"kept")
        m.proc.send_signal(signal.SIGTERM)
        assert m.proc.wait(timeout=60) == 0
        m.ready = False  # already unmounted by the server itself
    assert not os.path.ismount(mnt)
    with mount(image):
        assert (mnt / "kept.txt").read_bytes() == b"kept"
