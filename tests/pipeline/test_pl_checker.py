"""The content checker inside a real doit run: edits with a reset mtime rebuild, touch does not."""

from __future__ import annotations

import os

from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain

from occlum_build.pipeline.checker import HashCache, checker_class


def _run(tmp_path, dep, runs):
    cache = HashCache(tmp_path / "hashes.json")

    def task_t():
        return {"actions": [lambda: runs.append(1)], "file_dep": [str(dep)],
                "targets": [str(tmp_path / "out")]}

    ns = {"task_t": task_t, "DOIT_CONFIG": {
        "dep_file": str(tmp_path / "db.sqlite"), "backend": "sqlite3", "verbosity": 0,
        "check_file_uptodate": checker_class(cache), "reporter": "zero"}}
    (tmp_path / "out").write_text("x")
    rc = DoitMain(ModuleTaskLoader(ns), config_filenames=()).run(["run", "t"])
    cache.save()
    assert rc == 0
    return cache.hashed


def test_content_edit_with_mtime_reset_rebuilds(tmp_path):
    dep = tmp_path / "in"
    dep.write_bytes(b"aaaa")
    runs: list[int] = []
    _run(tmp_path, dep, runs)
    assert len(runs) == 1
    _run(tmp_path, dep, runs)
    assert len(runs) == 1  # no-op
    st = os.stat(dep)
    dep.write_bytes(b"bbbb")  # same size
    os.utime(dep, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(dep).st_mtime_ns == st.st_mtime_ns
    _run(tmp_path, dep, runs)
    assert len(runs) == 2


def test_touch_does_not_rebuild_and_hashes_once(tmp_path):
    dep = tmp_path / "in"
    dep.write_bytes(b"aaaa")
    runs: list[int] = []
    _run(tmp_path, dep, runs)
    st = os.stat(dep)
    os.utime(dep, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert _run(tmp_path, dep, runs) == 1  # hashed once to see the content is the same
    assert len(runs) == 1
    assert _run(tmp_path, dep, runs) == 0  # and never again
    assert _run(tmp_path, dep, runs) == 0
    assert len(runs) == 1


def test_corrupt_hash_cache_is_ignored(tmp_path):
    p = tmp_path / "hashes.json"
    p.write_text("{not json")
    f = tmp_path / "f"
    f.write_bytes(b"hello")
    c = HashCache(p)
    d = c.digest(f)
    assert d == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    c.save()
    assert HashCache(p).digest(f) == d
