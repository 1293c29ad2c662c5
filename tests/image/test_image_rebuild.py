"""Incremental rebuilds give what a build from scratch gives, edit after edit.

A rebuild with the same paths as the last one patches the previous metadata at the changed
entries and updates the totals from them (writer._metadata, cache.updated_totals); one
with paths added or removed encodes everything again. Each edit below is followed by an
incremental build and a build from scratch into another directory: the MAC, the output
bytes, the totals and the objects directory (exactly the referenced objects) must agree.
"""

from __future__ import annotations

import os
import shutil

import pytest
from image_helpers import age, make_tree, snapshot

from occlum_build.image import ImageReader, build_image, verify_image
from occlum_build.image import cache as image_cache

KEY = bytes(range(16))
MODES = pytest.mark.parametrize("key", [None, KEY], ids=["integrity", "encrypted"])


def _edits(src):
    """(name, edit, expect aligned: the paths stay those of the previous build)."""

    def write(rel, data):
        return lambda: (src / rel).write_bytes(data)

    def replace_with_symlink():
        (src / "README").unlink()
        os.symlink("bin/app", src / "README")

    def retarget():
        os.unlink(src / "lib/libc.so.6")
        os.symlink("deep/conf.txt", src / "lib/libc.so.6")

    def empty_dir_to_file():
        (src / "lib/deep/conf.txt").unlink()
        (src / "lib/deep/conf.txt").mkdir()

    def recreate_identical():
        data = (src / "bin/app").read_bytes()
        (src / "bin/app").unlink()
        (src / "bin/app").write_bytes(data)

    return [
        ("same size, new content", write("lib/libc.so", bytes(range(256)) * 40 + b"\x07"), True),
        ("now a copy of another file", write("lib/libc.so", (src / "bin/app").read_bytes()), True),
        ("back to its own content", write("lib/libc.so", b"libc" * 3000), True),
        ("emptied", write("README", b""), True),
        ("filled again", write("bin/empty", b"no longer empty\n"), True),
        ("two files at once", lambda: (write("README", b"r" * 5000)(), write("bin/app", b"a" * 7)()), True),
        ("chmod a file", lambda: os.chmod(src / "bin/app", 0o700), True),
        ("chmod a directory", lambda: os.chmod(src / "lib/deep", 0o711), True),
        ("file replaced by a symlink", replace_with_symlink, True),
        ("symlink retargeted", retarget, True),
        ("file replaced by an empty directory", empty_dir_to_file, True),
        ("deleted and written again, same bytes", recreate_identical, True),
        ("file added", write("lib/new.so", b"new" * 999), False),
        ("file removed", lambda: (src / "bin/empty").unlink(), False),
    ]


@MODES
def test_every_edit_rebuilds_to_what_a_fresh_build_gives(tmp_path, key):
    src = make_tree(tmp_path / "src")
    out, mac, state = tmp_path / "inc" / "__ROOT", tmp_path / "inc" / "MAC", tmp_path / "inc-state"
    build_image(src, out, mac, key=key, cache_dir=state)
    for k, (name, edit, aligned) in enumerate(_edits(src)):
        before = image_cache.load(image_cache.manifest_path(state), _tag(state))
        edit()
        age(src)
        inc = build_image(src, out, mac, key=key, cache_dir=state)
        fresh_out = tmp_path / f"fresh{k}" / "__ROOT"
        fresh = build_image(
            src, fresh_out, tmp_path / f"fresh{k}" / "MAC", key=key, cache_dir=tmp_path / f"s{k}"
        )
        assert inc.mac == fresh.mac, name
        assert snapshot(out) == snapshot(fresh_out), name
        for field in ("entries", "files", "bytes_in", "bytes_stored"):
            assert getattr(inc, field) == getattr(fresh, field), (name, field)
        assert inc.objects_written + inc.objects_reused == fresh.objects_written, name
        assert inc.bytes_read < fresh.bytes_read or fresh.bytes_read == 0, name
        verify_image(out, inc.mac, key=key)
        referenced = {
            e.root.hex() for e in ImageReader(out, inc.mac, key).entries() if e.type == 1 and e.size
        }
        assert {p.name for p in (out / "objects").iterdir()} == referenced, name
        assert (
            before.paths == image_cache.load(image_cache.manifest_path(state), _tag(state)).paths
        ) == aligned
        shutil.rmtree(tmp_path / f"fresh{k}")
        shutil.rmtree(tmp_path / f"s{k}")


def _tag(state) -> str:
    return (image_cache.manifest_path(state)).read_bytes().split(b"\n", 2)[1].decode()[5:]


def test_tampered_previous_metadata_is_not_patched(tmp_path):
    """The manifest records the SHA-256 of the metadata it was built with: metadata changed
    since (by hand, or by another tool) is encoded from scratch, never patched."""
    src = make_tree(tmp_path / "src")
    out, mac, state = tmp_path / "o", tmp_path / "MAC", tmp_path / "state"
    r1 = build_image(src, out, mac, key=None, cache_dir=state)
    meta = out / "metadata"
    data = bytearray(meta.read_bytes())
    entry = data.index(b"README")  # flip a byte of the string table: a path that does not exist
    data[entry] ^= 0x20
    meta.write_bytes(bytes(data))
    (src / "bin/app").write_bytes(b"changed")
    age(src)
    r2 = build_image(src, out, mac, key=None, cache_dir=state)
    assert (
        r2.mac == build_image(src, tmp_path / "f", tmp_path / "fm", key=None, cache_dir=tmp_path / "fs").mac
    )
    assert ImageReader(out, r2.mac).read("README") == b"hello\n"
    assert r1.mac != r2.mac


def test_a_racy_file_is_read_again_by_the_next_build(tmp_path):
    """A file written within the racy window of a build is recorded with a key that
    matches nothing: the next build reads it again even though its stat is unchanged."""
    src = make_tree(tmp_path / "src")
    out, mac, state = tmp_path / "o", tmp_path / "MAC", tmp_path / "state"
    build_image(src, out, mac, key=None, cache_dir=state)
    (src / "README").write_bytes(b"fresh\n")  # no age(): racy for the next build
    r2 = build_image(src, out, mac, key=None, cache_dir=state)
    assert r2.bytes_read == 6
    r3 = build_image(src, out, mac, key=None, cache_dir=state)
    assert r3.bytes_read == 6 and r3.mac == r2.mac
    age(src)  # out of the window now: this build records its key (reading it if r3 did not)
    build_image(src, out, mac, key=None, cache_dir=state)
    r5 = build_image(src, out, mac, key=None, cache_dir=state)
    assert r5.bytes_read == 0 and r5.mac == r2.mac
