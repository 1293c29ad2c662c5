"""Native leaf hashing and tree walk (libocclum-build.so) and O_DIRECT object writes: the same bytes as
hashlib and buffered writes, and a clean fallback when either is unavailable."""

from __future__ import annotations

import errno
import hashlib
import os

import pytest
from image_helpers import age, make_tree, snapshot

from occlum_build import paths
from occlum_build.image import bigfile, crypto, directio, native, scan, verify_image

BLOCK = 4096


def _hashlib_leaves(data: bytes, block: int) -> bytes:
    return b"".join(hashlib.sha256(data[i : i + block]).digest() for i in range(0, len(data), block))


@pytest.fixture
def native_leaves():
    fn = native.load()
    assert fn is not None, f"{native.LIB_NAME} not found in {paths.native_dir()}: run `make -C libos`"
    return fn


@pytest.mark.parametrize("block", [BLOCK, BLOCK + 16])
@pytest.mark.parametrize("size", [1, BLOCK - 1, BLOCK, BLOCK + 1, 16 * BLOCK, 16 * BLOCK + 5, (1 << 20) + 1])
def test_native_leaves_equal_hashlib(native_leaves, size, block):
    data = os.urandom(size)
    buf = memoryview(bytearray(data))
    assert native_leaves(buf, block) == _hashlib_leaves(data, block)
    assert native.current() is native_leaves  # loaded: leaves_of takes it for >= 16 blocks
    assert crypto.leaves_of(buf, block) == _hashlib_leaves(data, block)


def test_native_library_absent_falls_back_to_hashlib(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.NATIVE_DIR_ENV, str(tmp_path))  # no library there
    monkeypatch.setattr(native, "_loaded", False)
    monkeypatch.setattr(native, "_fn", None)
    assert native.load() is None and native.current() is None
    data = os.urandom(40 * BLOCK + 3)
    assert crypto.leaves_of(memoryview(bytearray(data)), BLOCK) == _hashlib_leaves(data, BLOCK)


def _tree_with_large_files(tmp_path):
    src = make_tree(tmp_path / "src")
    sizes = {
        "m1": directio.MIN_SIZE,  # exactly the threshold: every block whole
        "m1p1": directio.MIN_SIZE + 1,  # a one-byte tail after the direct part
        "m2": 2 * directio.MIN_SIZE + BLOCK - 1,
        "seg": 3 * (1 << 20) + 77,  # split in segments below; tail in the last one
        "small": directio.MIN_SIZE - 1,  # buffered
    }
    for name, n in sizes.items():
        (src / name).write_bytes(os.urandom(n))
    age(src)
    return src


def test_direct_writes_give_the_bytes_of_buffered_ones(tmp_path, build, monkeypatch):
    monkeypatch.setattr(bigfile, "SEGMENT", 1 << 20)
    monkeypatch.setattr(directio, "MIN_BUILD", 0)  # this small build writes directly too
    src = _tree_with_large_files(tmp_path)
    opened = []
    real = directio.open_object

    def spy(*a):
        fd, direct = real(*a)
        if direct:
            opened.append(a[2])  # the object's size
        return fd, direct

    monkeypatch.setattr(directio, "open_object", spy)
    fast, of, _ = build(src, "direct", cache="c1", jobs=3)
    # m1 is one segment (store_object), the others are split (BigFile): both write directly
    assert directio.MIN_SIZE in opened and 3 * (1 << 20) + 77 in opened, opened
    monkeypatch.setattr(directio, "_FLAG", 0)  # buffered writes only
    monkeypatch.setattr(native, "_fn", None)  # and hashlib leaves
    monkeypatch.setattr(native, "_loaded", True)
    slow, os_, _ = build(src, "buffered", cache="c2", jobs=1)
    assert fast.mac == slow.mac and snapshot(of) == snapshot(os_)
    verify_image(of, fast.mac)


def test_file_system_refusing_direct_io_gets_buffered_writes(tmp_path, build, monkeypatch):
    src = _tree_with_large_files(tmp_path)
    normal, on, _ = build(src, "normal", cache="c1")
    real_open = os.open
    refused = []

    def no_direct(path, flags, *a, **kw):
        if flags & directio._FLAG:
            refused.append(path)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(directio, "_refused", set())
    monkeypatch.setattr(directio, "MIN_BUILD", 0)
    monkeypatch.setattr(directio.os, "open", no_direct)
    r, o, _ = build(src, "fallback", cache="c2", jobs=1)
    assert r.mac == normal.mac and snapshot(o) == snapshot(on)
    assert len(refused) == 1  # the directory is remembered: asked once


def test_small_builds_write_through_the_page_cache(tmp_path, build, monkeypatch):
    """A build reading less than directio.MIN_BUILD (a rebuild after an edit) opens no
    object with O_DIRECT: there each direct write would only add the device's latency."""
    src = _tree_with_large_files(tmp_path)
    calls = []
    real = directio.open_object
    monkeypatch.setattr(directio, "open_object", lambda *a: calls.append(a) or real(*a))
    r, o, _ = build(src, "small", cache="c1", jobs=2)
    assert not calls and r.objects_written >= 5
    verify_image(o, r.mac)


def _py_walk(src, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(native, "_walk", None)
        m.setattr(native, "_loaded", True)
        return scan.walk(src)


def test_native_walk_equals_the_python_walk(tmp_path, monkeypatch):
    assert native.walker() is not None, f"{native.LIB_NAME} not built: run `make -C libos`"
    src = make_tree(tmp_path / "src")
    odd = [b"caf\xc3\xa9", b"not-utf8-\xff\xfe", b"with space", b"new\nline", b"a.b", b"a-b", b"a"]
    for name in odd:
        d = os.path.join(os.fsencode(src), b"odd", name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, b"f"), "wb") as f:
            f.write(name)
    deep = src / "d1"
    for i in range(30):
        deep = deep / f"level{i}"
    deep.mkdir(parents=True)
    (deep / "leaf").write_text("x")
    (src / "empty").mkdir()
    os.symlink("lib", src / "dirlink")  # a symlink to a dir: an entry, never descended
    os.mkfifo(src / "fifo")
    fast = scan.walk(src)
    slow = _py_walk(src, monkeypatch)
    assert fast.paths == slow.paths and fast.keys == slow.keys
    assert fast.paths == sorted(fast.paths) and b"fifo" in fast.paths and b"dirlink/x" not in fast.paths


def test_native_walk_errors_are_reported_by_the_python_walk(tmp_path, monkeypatch):
    """On any error the native walk gives up and the Python walk names it (the path over
    the format's limit: test_image_bad_input.py::test_path_over_the_format_limit)."""
    from occlum_build.image.scan import SourceError

    few = tmp_path / "few"
    for i in range(5):
        (few / str(i)).mkdir(parents=True)
    monkeypatch.setattr(scan, "MAX_ENTRIES", 3)
    with pytest.raises(SourceError, match="more than 3 entries"):
        scan.walk(few)


def test_device_refusing_an_aligned_direct_write_gets_it_buffered(tmp_path, build, monkeypatch):
    """A device wanting more than 4 KiB alignment refuses the direct write (EINVAL): that
    object is written through the page cache instead, same bytes."""
    from occlum_build.image import objects

    monkeypatch.setattr(directio, "MIN_BUILD", 0)
    src = _tree_with_large_files(tmp_path)
    normal, on, _ = build(src, "normal", cache="c1")
    real_writev, real_pwritev = os.writev, os.pwritev
    refused = []

    def picky(real):
        def f(fd, parts, *a):
            if directio.is_direct(fd):
                refused.append(fd)
                raise OSError(errno.EINVAL, "Invalid argument")
            return real(fd, parts, *a)
        return f

    monkeypatch.setattr(objects.os, "writev", picky(real_writev))
    monkeypatch.setattr(objects.os, "pwritev", picky(real_pwritev))
    r, o, _ = build(src, "picky", cache="c2", jobs=2)
    monkeypatch.undo()
    assert refused and r.mac == normal.mac and snapshot(o) == snapshot(on)


@pytest.mark.parametrize("size", [16 * BLOCK, 16 * BLOCK + 1, (1 << 20), (1 << 20) - 7])
def test_native_sealing_equals_the_python_sealing(native_leaves, size, monkeypatch):
    key = crypto.ImageKey.from_key(bytes(range(16)))
    fc = key.file_cipher(bytes(16))
    data = os.urandom(size)
    first, total = 3, size + 3 * BLOCK + 11
    fast_parts, fast_leaves = crypto.seal_parts(fc, memoryview(bytearray(data)), first, total)
    assert native.sealer() is not None and len(fast_parts) == 1
    fast = bytes(fast_parts[0])
    monkeypatch.setattr(native, "_seal", None)
    slow_parts, slow_leaves = crypto.seal_parts(fc, memoryview(bytearray(data)), first, total)
    assert fast == b"".join(slow_parts) and fast_leaves == slow_leaves
    # and each block opens with the reader's nonce and AAD
    sb = BLOCK + 16
    last = (len(fast) - 1) // sb
    blk = fast[last * sb :]
    assert fc.decrypt(crypto.block_nonce(first + last), blk, crypto.block_aad(first + last, total)) == \
        data[last * BLOCK :]


@pytest.mark.parametrize("segment", [1 << 20, bigfile.SEGMENT], ids=["split", "whole"])
def test_encrypted_build_with_and_without_the_native_sealer(tmp_path, build, monkeypatch, segment):
    """Natively sealed blocks are also written with O_DIRECT (a chunk of 256 stored blocks is
    257 pages); the Python sealer's blocks never are. Same bytes either way, with the files
    split in segments (BigFile) or not (store_object)."""
    monkeypatch.setattr(bigfile, "SEGMENT", segment)
    monkeypatch.setattr(directio, "MIN_BUILD", 0)
    src = _tree_with_large_files(tmp_path)
    key = bytes(range(16))
    opened = []
    real = directio.open_object

    def spy(*a):
        fd, direct = real(*a)
        opened.append((a[2], direct))
        return fd, direct

    monkeypatch.setattr(directio, "open_object", spy)
    fast, of, _ = build(src, "native", key=key, cache="c1", jobs=3)
    assert (directio.MIN_SIZE, True) in opened and (3 * (1 << 20) + 77, True) in opened, opened
    opened.clear()
    monkeypatch.setattr(native, "_seal", None)
    monkeypatch.setattr(native, "_fn", None)
    slow, os_, _ = build(src, "python", key=key, cache="c2", jobs=1)
    assert not opened  # no native sealer: never opened for O_DIRECT
    assert fast.mac == slow.mac and snapshot(of) == snapshot(os_)
    verify_image(of, fast.mac, key=key)
