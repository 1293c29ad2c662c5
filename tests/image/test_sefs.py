"""SEFS images against the upstream `sefs-cli zip` vectors (tests/vectors/occlum-interop/sefs;
UPSTREAM-README.md there): byte-identical writer, LibOS-like reader, refusals."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from occlum_build.errors import OutputError
from occlum_build.image import pfs, sefs
from occlum_build.image.sefs_layout import (
    DISK_ENTRY,
    DISK_INODE,
    SUPERBLOCK,
    T_DIR,
    T_FILE,
    T_SYMLINK,
    disk_name,
    groups_for,
    ids,
    inodes_up_to,
    metadata_size,
)
from occlum_build.image.sefs_reader import SefsReader
from occlum_build.keys import parse_hex16

VEC = Path(__file__).resolve().parents[1] / "vectors" / "occlum-interop"
INTEG = VEC / "sefs" / "integrity"
USERKEY = VEC / "sefs" / "userkey"
TREES = ["basic", "edge", "twogroups", "fullgroup"]
UKEY = parse_hex16((USERKEY / "key.txt").read_text(), "key.txt")
TYPES = {T_FILE: "file", T_DIR: "dir", T_SYMLINK: "symlink"}

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="extracting the trees with their modes needs root")


def _manifest(tree: str) -> dict[str, str]:
    out = {}
    prefix = f"./sefs/integrity/{tree}/__ROOT/"
    for line in (VEC / "MANIFEST.sha256").read_text().splitlines():
        h, p = line.split(None, 1)
        if p.startswith(prefix):
            out[p[len(prefix):]] = h
    return out


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("trees")
    out = {}
    for t in TREES:
        d = base / t
        d.mkdir()
        subprocess.run(["tar", "--same-permissions", "-xf", str(INTEG / t / "tree.tar"), "-C", str(d)],
                       check=True)
        out[t] = d
    return out


def test_record_tables():
    assert (SUPERBLOCK.size, DISK_INODE.size, DISK_ENTRY.size) == (16, 112, 264)
    assert DISK_INODE.offset("disk_filename") == 80 and DISK_INODE.offset("inode_mac") == 96
    assert disk_name(2) == "02000000000000000000000000000000"
    got = ids(1063)
    assert got[1021:1024] == [1023, 1024, 1026] and got[-1] == 1065  # 1025: group 1's free map
    assert groups_for(1023) == 1 and groups_for(1024) == 2
    assert metadata_size(39, 1) == 5104 and metadata_size(1065, 2) == 1065 * 128 + 112


@root_only
@pytest.mark.parametrize("tree", TREES)
def test_writer_is_byte_identical(tree, trees, tmp_path):
    warns: list[str] = []
    mac = sefs.zip_tree(trees[tree], tmp_path / "__ROOT", warn=warns.append)
    assert pfs.format_mac(mac) == (INTEG / tree / "ROOT_MAC").read_text()
    want = _manifest(tree)
    got = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "__ROOT").iterdir()}
    assert got == want
    if (INTEG / tree / "__ROOT").is_dir():
        for name in want:
            assert (tmp_path / "__ROOT" / name).read_bytes() == (INTEG / tree / "__ROOT" / name).read_bytes()
    if tree == "edge":
        assert "/special/fifo: a FIFO, not stored in the image (as sefs-cli skips it)" in warns
        assert any(w.startswith("/modes/suid: setuid/setgid/sticky bits 0o4000 dropped") for w in warns)
    if tree == "basic":
        assert warns == ["/tmp: setuid/setgid/sticky bits 0o1000 dropped (SEFS stores mode & 0o777)"]


def _check_against_expected(r: SefsReader, tree: str) -> None:
    want = json.loads((INTEG / tree / "expected_unzip.json").read_text())
    got = list(r.walk())
    assert [e.path for e in got] == ["/" if w["path"] == "." else "/" + w["path"] for w in want]
    for e, w in zip(got, want, strict=True):
        assert TYPES[e.type] == w["type"] and oct(e.mode) == w["mode"], e.path
        if w["type"] == "file":
            data = r.content(e.id, e.path)
            assert len(data) == w["size"] and hashlib.sha256(data).hexdigest() == w["sha256"], e.path
        elif w["type"] == "symlink":
            assert r.content(e.id, e.path) == os.fsencode(w["target"]), e.path


@pytest.mark.parametrize("tree", ["basic", "edge"])
def test_reader_reads_upstream_integrity_images(tree):
    mac = parse_hex16((INTEG / tree / "ROOT_MAC").read_text(), "ROOT_MAC")
    _check_against_expected(SefsReader(INTEG / tree / "__ROOT", mac), tree)
    with pytest.raises(sefs.SefsError, match="metadata: root MAC mismatch"):
        SefsReader(INTEG / tree / "__ROOT", bytes(16))


@pytest.mark.parametrize("tree", ["basic", "edge"])
def test_reader_reads_upstream_userkey_images(tree):
    d = USERKEY / tree
    mac = parse_hex16((d / "ROOT_MAC").read_text(), "ROOT_MAC")
    _check_against_expected(SefsReader(d / "__ROOT", mac, UKEY), tree)
    with pytest.raises(sefs.SefsError, match="is a user-key file, opened as integrity-only"):
        SefsReader(d / "__ROOT", mac)
    with pytest.raises(sefs.SefsError, match="metadata node: MAC mismatch"):
        SefsReader(d / "__ROOT", mac, b"\x07" * 16)


def test_tampered_userkey_images():
    d = USERKEY / "tampered-data"
    r = SefsReader(d / "__ROOT", parse_hex16((d / "ROOT_MAC").read_text(), "x"), UKEY)
    assert r.read("/etc/hosts")  # other files are fine
    with pytest.raises(sefs.SefsError, match=r"/bin/init: 05000000000000000000000000000000: "
                                             r"data node 0 \(node 2\): MAC mismatch"):
        r.read("/bin/init")  # the read itself fails: no zero-filled bytes
    d = USERKEY / "tampered-meta"
    with pytest.raises(sefs.SefsError, match="metadata: metadata: metadata node: MAC mismatch"):
        SefsReader(d / "__ROOT", parse_hex16((d / "ROOT_MAC").read_text(), "x"), UKEY)


def test_swapped_and_missing_inode_files_are_named(tmp_path):
    img = tmp_path / "__ROOT"
    shutil.copytree(INTEG / "basic" / "__ROOT", img)
    mac = parse_hex16((INTEG / "basic" / "ROOT_MAC").read_text(), "x")
    init, busybox = img / disk_name(5), img / disk_name(4)
    os.replace(busybox, init)  # /bin/init's file now holds /bin/busybox (another clean name)
    r = SefsReader(img, mac)
    with pytest.raises(sefs.SefsError, match="/bin/init: .*file name mismatch"):
        r.read("/bin/init")
    with pytest.raises(sefs.SefsError, match="/bin/busybox: missing file 04000000"):
        r.read("/bin/busybox")


@root_only
@pytest.mark.parametrize("tree", ["basic", "edge"])
def test_key_mode_round_trip_is_deterministic(tree, trees, tmp_path):
    a = sefs.zip_tree(trees[tree], tmp_path / "a", UKEY)
    b = sefs.zip_tree(trees[tree], tmp_path / "b", UKEY)
    assert a == b
    for p in (tmp_path / "a").iterdir():
        assert p.read_bytes() == (tmp_path / "b" / p.name).read_bytes()
    _check_against_expected(SefsReader(tmp_path / "a", a, UKEY), tree)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(_manifest(tree))


def test_bad_names_are_refused(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / os.fsdecode(b"bad\xff")).write_text("x")
    with pytest.raises(sefs.SefsSourceError, match=r"/d/bad\\xff: the name is not UTF-8"):
        sefs.zip_tree(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused while planning: nothing written


def test_inode_limit_formula_matches_the_allocator():
    # ids() allocates as sefs-cli does; inodes_up_to() is the closed form the limit uses.
    for count in (1, 1021, 1022, 1023, 2046, 2047, 5000):
        assert inodes_up_to(ids(count)[-1]) == count


def test_a_tree_over_the_inode_limit_is_refused_naming_the_path(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    for i in range(6):
        (src / "a" / f"f{i}").write_text("x")
    monkeypatch.setattr(sefs, "MAX_INODES", 5)  # the real limit (~4.29e9) cannot be built here
    with pytest.raises(sefs.SefsSourceError, match=r"/a/f3: over 5 inodes"):
        sefs.zip_tree(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_file_over_the_size_limit_is_refused(tmp_path):
    r, w = os.pipe()
    try:
        with pytest.raises(OutputError, match="over the Protected FS limit"):
            pfs.write_body(w, r, pfs.MAX_SIZE + 1, where="/big")
    finally:
        os.close(r)
        os.close(w)
