"""The ELF cache kept between copy_bom runs: outside the root, same results, never stale."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from occlum_build import fsutil
from occlum_build.bom import copy_bom, elfcache, elfdeps
from occlum_build.bom.elfcache import ElfCache, default_path
from occlum_build.bom.elfdeps import NotElf, Resolver
from occlum_build.bom.elfread import ElfInfo
from occlum_build.bom.loaders import load_loader_config

DYNLOAD = "/usr/lib/python3.11/lib-dynload"
BOM = f"targets:\n  - target: /lib\n    copy:\n      - dirs: [{DYNLOAD}]\n"


@pytest.fixture
def cache_file(tmp_path, monkeypatch) -> Path:
    p = tmp_path / "cache" / "elf.json"
    monkeypatch.setenv(elfcache.CACHE_ENV, str(p))
    return p


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """Every ELF file the resolver actually opens."""
    seen: list[str] = []
    real = elfdeps.read_elf

    def counting(path: str):
        seen.append(path)
        return real(path)

    monkeypatch.setattr(elfdeps, "read_elf", counting)
    return seen


def _modules() -> list[str]:
    if not os.path.isdir(DYNLOAD):
        pytest.skip("python3.11 not installed")
    return sorted(str(p) for p in Path(DYNLOAD).glob("*.so"))


def _all(resolver: Resolver, elfs: list[str]) -> list:
    return [(r.interp, r.loader, r.libs, r.missing) for r in map(resolver.resolve, elfs)]


def test_cache_lives_outside_the_root_and_gives_identical_results(tmp_path, cache_file, reads):
    mods = _modules()
    bom = tmp_path / "b.yaml"
    bom.write_text(BOM)
    root = tmp_path / "inst" / "image"
    copy_bom(bom, root)
    assert cache_file.is_file() and not any("elf" in p.name and p.suffix == ".json" for p in root.rglob("*"))
    data = json.loads(cache_file.read_text())
    assert data["version"] == elfcache.VERSION and len(data["entries"]) >= len(mods)

    config = load_loader_config()
    reads.clear()
    warm = _all(Resolver(config, ElfCache(cache_file)), mods)
    assert reads == []  # every module and library came from the cache
    assert warm == _all(Resolver(config), mods)  # and says exactly what reading the files says
    assert not copy_bom(bom, root).changed


def test_corrupt_cache_is_ignored_and_replaced(tmp_path, cache_file, reads):
    mods = _modules()
    cache_file.parent.mkdir()
    config = load_loader_config()
    for garbage in (b"\x00not json", b'{"version": "other", "entries": {}}', b"[1, 2]"):
        cache_file.write_bytes(garbage)
        c = ElfCache(cache_file)
        assert _all(Resolver(config, c), mods) == _all(Resolver(config), mods)
        c.save()
        assert json.loads(cache_file.read_text())["version"] == elfcache.VERSION
    # a damaged entry (right key, wrong shape) is read again from the file
    data = json.loads(cache_file.read_text())
    st = os.stat(mods[0])
    data["entries"][elfcache.key_of(st)] = [1, "x"]
    cache_file.write_text(json.dumps(data))
    reads.clear()
    info = Resolver(config, ElfCache(cache_file)).info(mods[0])
    assert reads == [mods[0]] and info.needed == Resolver(config).info(mods[0]).needed


def test_unwritable_cache_is_no_error(tmp_path, monkeypatch):
    _modules()
    bom = tmp_path / "b.yaml"
    bom.write_text(BOM)
    blocker = tmp_path / "file"
    blocker.write_text("")
    for where in (blocker / "elf.json", tmp_path):  # parent is a file; the path is a dir
        monkeypatch.setenv(elfcache.CACHE_ENV, str(where))
        assert copy_bom(bom, tmp_path / "inst" / str(where).replace("/", "_")).files_copied > 0
    assert blocker.read_text() == "" and tmp_path.is_dir()


def test_a_rewritten_file_is_read_again_even_with_size_and_mtime_kept(tmp_path, cache_file, monkeypatch):
    monkeypatch.setattr(fsutil, "RACY_NS", 0)  # cache even a file written a moment ago
    prog = tmp_path / "prog"
    shutil.copy2("/usr/bin/true", prog)
    config = load_loader_config()
    c = ElfCache(cache_file)
    assert Resolver(config, c).info(str(prog)).needed
    c.save()
    st = os.stat(prog)
    time.sleep(0.05)  # past the file system's timestamp granularity
    prog.write_bytes(b"#!/bin/sh\n".ljust(st.st_size, b"#"))  # same size, then the old mtime back
    os.utime(prog, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(prog).st_mtime_ns == st.st_mtime_ns and os.stat(prog).st_size == st.st_size
    with pytest.raises(NotElf):
        Resolver(config, ElfCache(cache_file)).info(str(prog))


def test_cache_location_and_switch(monkeypatch, tmp_path):
    monkeypatch.delenv(elfcache.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_path() == tmp_path / "occlum-build" / "copy_bom-elf.json"
    for off in ("off", ""):
        monkeypatch.setenv(elfcache.CACHE_ENV, off)
        assert default_path() is None
    c = ElfCache(None)  # switched off: nothing kept, nothing written
    c.put(os.stat("/usr/bin/true"), None)
    c.save()
    assert list(tmp_path.iterdir()) == []


def test_format_vector():
    from types import SimpleNamespace

    vec = Path(__file__).resolve().parents[1] / "vectors" / "elfcache" / "copy_bom-elf.json"
    c = ElfCache(vec)

    def st(key: str):
        dev, ino, size, mtime, ctime = map(int, key.split(":"))
        return SimpleNamespace(st_dev=dev, st_ino=ino, st_size=size, st_mtime_ns=mtime, st_ctime_ns=ctime,
                               st_mode=0o100755)

    true = c.get("/x/true", st("2049:1311:35336:1673622446000000000:1700000000123456789"))
    assert true == ElfInfo("/x/true", 64, 62, "ET_DYN", "/lib64/ld-linux-x86-64.so.2", ("libc.so.6",),
                           None, (), (), False, False)
    lib = c.get("/x/lib", st("2049:5020:14568:1673622446000000000:1700000000987654321"))
    assert lib.soname == "libbar.so.2" and lib.rpath == ("$ORIGIN/../lib",) and lib.nodeflib
    assert c.get("/x/script", st("2049:77:120:1700000000000000000:1700000000000000000")) is None
    assert c.get("/x/damaged", st("2049:78:1:1:1")) is False  # unknown: read the file
    assert c.get("/x/other", st("2049:1311:35336:1673622446000000000:1700000000123456780")) is False
