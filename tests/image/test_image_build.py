"""Building images: round trip, reproducibility, incremental cache, output independence."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from image_helpers import age, make_tree, snapshot

from occlum_build.image import (
    ImageError,
    ImageReader,
    build_image,
    cache,
    compute_mac,
    read_mac_file,
    verify_image,
)
from occlum_build.image.format import TYPE_SYMLINK

KEY = bytes(range(16))
KEY2 = bytes(range(16, 32))
MODES = pytest.mark.parametrize("key", [None, KEY], ids=["integrity", "encrypted"])


@MODES
def test_round_trip(tmp_path, build, key):
    src = make_tree(tmp_path / "src")
    seen = []
    res, out, macf = build(src, key=key, progress=lambda d, t: seen.append((d, t)))
    assert read_mac_file(macf) == res.mac
    assert res.entries == 12 and res.files == 6
    assert res.bytes_in == 9600 + 10241 + 4 + 4 + 6
    assert res.objects_written == 4  # conf.txt and conf.copy share one object
    assert seen[-1] == (res.bytes_read, res.bytes_read) and res.bytes_read == res.bytes_in
    assert res.bytes_stored == sum(p.stat().st_size for p in (out / "objects").iterdir())
    rep = verify_image(out, res.mac, key=key)
    assert rep.objects == 4 and rep.files == 6
    r = ImageReader(out, res.mac, key)
    for rel in ("bin/app", "lib/libc.so", "lib/deep/conf.copy", "README", "bin/empty"):
        assert r.read(rel) == (src / rel).read_bytes()
    assert r.read("/bin/app", 4000, 200) == (src / "bin/app").read_bytes()[4000:4200]
    link = r.entry("lib/libc.so.6")
    assert link.type == TYPE_SYMLINK and link.target == b"libc.so" and link.mode == 0o777
    assert r.entry("lib/deep/conf.copy").mode == 0o600
    assert [e.path for e in r.listdir("/lib")] == [b"lib/deep", b"lib/libc.so", b"lib/libc.so.6"]
    assert compute_mac(src, key=key) == res.mac
    assert compute_mac(src, key=key, cache_dir=tmp_path / "cache") == res.mac


@MODES
def test_reproducible_across_path_umask_and_times(tmp_path, build, key):
    a = make_tree(tmp_path / "a")
    old = os.umask(0o077)
    try:
        b = tmp_path / "elsewhere" / "deeper" / "b"
        shutil.copytree(a, b, symlinks=True)  # copies modes; new inodes, new ctimes
    finally:
        os.umask(old)
    for p in b.rglob("*"):
        if not p.is_symlink():
            os.utime(p, ns=(123, 456_000_000_000))
    ra, oa, _ = build(a, "oa", key=key, cache="ca")
    # A build clock far in the future or the past changes nothing in the output either.
    for fake_now in (0, 2**62):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("occlum_build.image.writer.time.time_ns", lambda fake_now=fake_now: fake_now)
            rc, oc, _ = build(a, f"oc{fake_now}", key=key, cache=f"cc{fake_now}")
        assert rc.mac == ra.mac and snapshot(oc) == snapshot(oa)
    old = os.umask(0o027)
    try:
        rb, ob, _ = build(b, "ob", key=key, cache="cb", jobs=1)
    finally:
        os.umask(old)
    assert ra.mac == rb.mac
    assert snapshot(oa) == snapshot(ob)


@MODES
def test_output_identical_whatever_the_cache_state(tmp_path, build, key):
    src = make_tree(tmp_path / "src")
    res, out, _ = build(src, key=key)
    first = snapshot(out)
    cache_file = tmp_path / "cache" / "image.manifest"
    assert cache_file.exists()
    assert KEY not in cache_file.read_bytes() and KEY.hex().encode() not in cache_file.read_bytes()
    for damage in (None, "flip", "count", b"{not a manifest", b"occlum-build image cache 4\n", b"", "delete"):
        if damage == "delete":
            shutil.rmtree(tmp_path / "cache")
        elif damage == "flip":  # well formed, one record changed: the checksum catches it
            text = cache_file.read_bytes()
            assert b"bin/app\0" in text
            cache_file.write_bytes(text.replace(b"bin/app\0", b"bin/app\x001", 1))
        elif damage == "count":  # one record fewer: the checksum covers the count too
            text = cache_file.read_bytes()
            n = int(re.search(rb"\nentries (\d+) objects ", text).group(1))
            cache_file.write_bytes(text.replace(b"\nentries %d " % n, b"\nentries %d " % (n - 1), 1))
        elif damage is not None:
            cache_file.write_bytes(damage)
        r2, out2, _ = build(src, key=key)
        assert snapshot(out2) == first and r2.mac == res.mac
        assert r2.bytes_read == (0 if damage is None else res.bytes_in)


def test_incremental_reads_only_what_changed(tmp_path, build):
    src = make_tree(tmp_path / "src")
    r1, out, _ = build(src)
    r2, _, _ = build(src)
    assert (r2.bytes_read, r2.objects_written, r2.mac) == (0, 0, r1.mac)
    # Same size, mtime restored: the stat key still differs (ctime), so it is re-read.
    p = src / "lib/libc.so"
    st = p.stat()
    data = bytearray(p.read_bytes())
    data[5] ^= 0xFF
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    age(src)
    r3, _, _ = build(src)
    assert r3.bytes_read == len(data) and r3.objects_written == 1 and r3.mac != r1.mac
    assert r3.mac == compute_mac(src, key=None)
    assert ImageReader(out, r3.mac).read("lib/libc.so") == bytes(data)
    # touch alone: re-read once, nothing written, same MAC; the next build reads nothing.
    os.utime(src / "bin/app")
    age(src)
    r4, _, _ = build(src)
    assert (r4.bytes_read, r4.objects_written, r4.mac) == (9600, 0, r3.mac)
    r5, _, _ = build(src)
    assert r5.bytes_read == 0


def test_manifest_keeps_any_file_name(tmp_path, build):
    """Names with newlines, spaces, separators of the manifest's text form or bytes that are
    not UTF-8 are recorded like any other: the second build reads nothing."""
    src = make_tree(tmp_path / "src")
    odd = [b"new\nline", b"two  spaces ", b"tab\there", b"not-utf8-\xff\xfe", b"ends-with-\\"]
    for i, name in enumerate(odd):
        (src / os.fsdecode(name)).write_bytes(b"x" * (100 + i))
    age(src)
    r1, _, _ = build(src)
    r2, _, _ = build(src)
    assert r2.bytes_read == 0 and r2.mac == r1.mac
    (src / os.fsdecode(odd[0])).write_bytes(b"y" * 100)
    age(src)
    r3, _, _ = build(src)
    assert r3.bytes_read == 100 and r3.mac != r1.mac


def test_removed_files_lose_their_objects(tmp_path, build):
    src = make_tree(tmp_path / "src")
    r1, out, _ = build(src)
    n1 = len(list((out / "objects").iterdir()))
    (src / "bin/app").unlink()
    r2, out, _ = build(src)
    assert len(list((out / "objects").iterdir())) == n1 - 1
    verify_image(out, r2.mac)


def test_key_change_reencrypts_everything(tmp_path, build):
    src = make_tree(tmp_path / "src")
    r1, out, _ = build(src, key=KEY)
    r2, out, _ = build(src, key=KEY2)
    assert r2.objects_reused == 0 and r2.bytes_read == r2.bytes_in and r2.mac != r1.mac
    verify_image(out, r2.mac, key=KEY2)
    with pytest.raises(ImageError) as ei:
        ImageReader(out, r2.mac, KEY)
    assert ei.value.kind == "metadata-decrypt"
    # Switching to integrity-only replaces every object as well.
    r3, out, _ = build(src, key=None)
    assert r3.objects_reused == 0
    verify_image(out, r3.mac)
    with pytest.raises(ImageError):
        verify_image(out, r2.mac, key=KEY2)


def test_damaged_object_is_caught_and_healed_by_a_fresh_build(tmp_path, build):
    # An incremental build trusts objects by name (no stat per object); verify catches
    # damage, and a build without the cache (occlum build -f) rewrites every object.
    src = make_tree(tmp_path / "src")
    r1, out, _ = build(src)
    obj = next(p for p in (out / "objects").iterdir() if p.stat().st_size > 9600)
    obj.write_bytes(obj.read_bytes()[:-1])
    r2, _, _ = build(src)
    assert r2.bytes_read == 0
    with pytest.raises(ImageError) as ei:
        verify_image(out, r2.mac)
    assert ei.value.kind == "object-size"
    shutil.rmtree(tmp_path / "cache")
    r3, _, _ = build(src)
    assert r3.objects_written == 1 and r3.mac == r1.mac
    verify_image(out, r3.mac)


def test_missing_object_is_rewritten_even_with_a_valid_cache(tmp_path, build):
    src = make_tree(tmp_path / "src")
    r1, out, _ = build(src)
    obj = out / "objects" / ImageReader(out, r1.mac).entry("bin/app").root.hex()
    obj.unlink()
    r2, _, _ = build(src)
    assert r2.objects_written == 1 and r2.bytes_read == 9600
    verify_image(out, r2.mac)


def test_leftover_temp_objects_are_removed(tmp_path, build):
    src = make_tree(tmp_path / "src")
    _, out, _ = build(src)
    stale = [out / "objects" / ".tmp-1-2-3", out / ".metadata.tmp77", out.parent / "..ROOT_MAC.tmp77"]
    for p in stale:
        p.write_bytes(b"partial")
    build(src)
    assert not any(p.exists() for p in stale)


def test_many_jobs_and_one_job_agree(tmp_path, build):
    src = make_tree(tmp_path / "src")
    for i in range(40):
        (src / "lib" / f"f{i}").write_bytes(bytes([i]) * (i * 1000))
    a, oa, _ = build(src, "a", cache="ca", jobs=1)
    b, ob, _ = build(src, "b", cache="cb", jobs=4)
    assert a.mac == b.mac and snapshot(oa) == snapshot(ob)


def test_small_files_go_to_one_worker_while_others_take_large_ones(tmp_path, build, monkeypatch):
    """Small files are run by one worker only (writer._run_units: two threads trading the
    GIL at every syscall are slower than one); large files run on every worker."""
    import threading

    from occlum_build.image import writer

    src = make_tree(tmp_path / "src")
    for i in range(30):
        (src / "lib" / f"s{i}").write_bytes(os.urandom(100 + i))
    for i in range(6):
        (src / f"L{i}").write_bytes(os.urandom(writer.SMALL_FILE + i))
    age(src)
    threads: dict[str, set[str]] = {"small": set(), "large": set()}
    real = writer._file_job

    def spy(node, *a):
        kind = "small" if node.size < writer.SMALL_FILE else "large"
        threads[kind].add(threading.current_thread().name)
        return real(node, *a)

    monkeypatch.setattr(writer, "_file_job", spy)
    r, o, _ = build(src, "many", cache="c1", jobs=3)
    assert len(threads["small"]) == 1 and threads["large"]
    monkeypatch.setattr(writer, "_file_job", real)
    one, o1, _ = build(src, "one", cache="c2", jobs=1)
    assert r.mac == one.mac and snapshot(o) == snapshot(o1)


def test_manifest_holds_no_key_and_mode_tag(tmp_path, build):
    src = make_tree(tmp_path / "src")
    build(src, key=KEY)
    text = (tmp_path / "cache" / "image.manifest").read_bytes()
    head = text.split(b"\n", 5)
    assert head[1].startswith(b"mode encrypted:") and KEY.hex().encode() not in text
    loaded = cache.load(tmp_path / "cache" / "image.manifest", head[1].decode()[5:])
    assert {p for i, p in enumerate(loaded.paths) if loaded.rec(i)[0] == 1} == {
        b"bin/app",
        b"bin/empty",
        b"lib/libc.so",
        b"lib/deep/conf.txt",
        b"lib/deep/conf.copy",
        b"README",
    }


def test_build_image_rejects_bad_key_length(tmp_path):
    from occlum_build.errors import KeyFileError

    src = make_tree(tmp_path / "src")
    with pytest.raises(KeyFileError):
        build_image(src, tmp_path / "o", tmp_path / "m", key=b"short", cache_dir=tmp_path / "c")
    assert not (tmp_path / "m").exists()


def test_read_nonexistent_and_dir(tmp_path, build):
    src = make_tree(tmp_path / "src")
    res, out, _ = build(src)
    r = ImageReader(out, res.mac)
    with pytest.raises(FileNotFoundError):
        r.read("nope")
    with pytest.raises(IsADirectoryError):
        r.read("bin")
    assert Path(out / "metadata").stat().st_mode & 0o777 == 0o644


@MODES
def test_large_files_split_across_workers_give_the_same_bytes(tmp_path, build, key, monkeypatch):
    from occlum_build.image import bigfile

    src = make_tree(tmp_path / "src")
    (src / "big1").write_bytes(os.urandom(5 * 65536 + 7))
    (src / "big2").write_bytes(os.urandom(3 * 65536))
    (src / "big2.copy").write_bytes((src / "big2").read_bytes())
    age(src)
    whole, ow, _ = build(src, "whole", key=key, cache="cw")
    monkeypatch.setattr(bigfile, "SEGMENT", 65536)
    for jobs in (1, 3):
        seen: list[tuple[int, int]] = []
        r, o, _ = build(
            src,
            f"seg{jobs}",
            key=key,
            cache=f"cs{jobs}",
            jobs=jobs,
            progress=lambda d, t, seen=seen: seen.append((d, t)),
        )
        assert r.mac == whole.mac and snapshot(o) == snapshot(ow)
        assert r.objects_written == whole.objects_written
        assert seen == sorted(seen) and seen[-1] == (
            whole.bytes_read,
            whole.bytes_read,
        )  # progress only grows
    verify_image(ow, whole.mac, key=key)
    assert compute_mac(src, key=key) == whole.mac  # segmented, without writing objects
    # Incremental with segments: one changed big file is the only one read.
    data = bytearray((src / "big1").read_bytes())
    data[70000] ^= 1
    (src / "big1").write_bytes(bytes(data))
    age(src)
    r2, o2, _ = build(src, "seg3", key=key, cache="cs3", jobs=3)
    assert r2.bytes_read == len(data) and r2.objects_written == 1
    assert ImageReader(o2, r2.mac, key).read("big1") == bytes(data)


@MODES
def test_short_reads_do_not_move_block_boundaries(tmp_path, build, key, monkeypatch):
    from occlum_build.image import objects

    src = make_tree(tmp_path / "src")
    (src / "odd").write_bytes(os.urandom(3 * 4096 + 1234))
    normal, on, _ = build(src, "normal", key=key, cache="c1")

    class Trickle:
        """A file whose reads return at most 1000 bytes, as a kernel may."""

        def __init__(self, f):
            self.f = f

        def readinto(self, buf):
            return self.f.readinto(memoryview(buf)[:1000])

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    real_open = open
    monkeypatch.setattr(objects, "open", lambda *a, **kw: Trickle(real_open(*a, **kw)), raising=False)
    trickled, ot, _ = build(src, "trickled", key=key, cache="c2")
    assert trickled.mac == normal.mac and snapshot(ot) == snapshot(on)


def test_temp_files_and_dirs_are_gone_after_a_build(tmp_path, build):
    """Workers write objects under per-thread temp directories; none is left behind, and
    the leftovers of a killed build (temp files and directories) are removed."""
    src = make_tree(tmp_path / "src")
    (src / "big").write_bytes(os.urandom(3 << 20))
    r1, out, _ = build(src, jobs=3)
    names = os.listdir(out / "objects")
    assert names and all(len(n) == 64 and int(n, 16) >= 0 for n in names)
    killed = out / "objects" / ".tmp-1-2"
    killed.mkdir()
    (killed / "7").write_bytes(b"half an object")
    (out / "objects" / ".tmp-3-4-5").write_bytes(b"older layout")
    r2, _, _ = build(src)
    assert sorted(os.listdir(out / "objects")) == sorted(names) and r2.mac == r1.mac


@MODES
def test_settled_objects_directory_is_trusted_only_while_unchanged(tmp_path, build, key, monkeypatch):
    """Once the objects directory has been left alone for the racy window, a rebuild does not
    list it: it still prunes what a changed or deleted file no longer names, and a change
    to the directory itself (an object deleted by hand) makes the next build list and heal."""
    from occlum_build.image import writer

    listed = []
    real = writer._list_objects
    monkeypatch.setattr(writer, "_list_objects", lambda d: listed.append(d) or real(d))
    src = make_tree(tmp_path / "src")
    r1, out, _ = build(src, key=key)
    age(out / "objects")
    build(src, key=key)  # records the settled objects directory in the manifest
    head = (tmp_path / "cache" / "image.manifest").read_bytes().split(b"\n", 5)
    assert not head[4].endswith(b" objects -")

    def referenced(mac: bytes) -> set[str]:
        return {e.root.hex() for e in ImageReader(out, mac, key).entries() if e.type == 1 and e.size}

    age(out / "objects")
    (src / "lib/libc.so").write_bytes(b"new content" * 50)
    (src / "README").unlink()
    age(src)
    listed.clear()
    r3, _, _ = build(src, key=key)
    assert not listed
    verify_image(out, r3.mac, key=key)
    assert r3.objects_written == 1 and r3.mac == compute_mac(src, key=key)
    assert {p.name for p in (out / "objects").iterdir()} == referenced(r3.mac)  # old objects pruned
    age(out / "objects")
    build(src, key=key)
    victim = next(iter(referenced(r3.mac)))
    (out / "objects" / victim).unlink()
    listed.clear()
    r5, _, _ = build(src, key=key)
    assert listed and r5.objects_written == 1 and r5.mac == r3.mac
    verify_image(out, r5.mac, key=key)
