"""Shortcuts taken to keep a no-change copy_bom run cheap give what the long way gives."""

from __future__ import annotations

import glob
import os

from occlum_build.bom.plan import _realpath


def test_realpath_with_cached_dirs_equals_os_realpath(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    links = {"up": "b/../../x", "dot": "./b//", "self": "self", "abs": "/lib", "chain": "up",
             "here": ".", "dangling": "nowhere/lib.so"}
    for name, target in links.items():
        os.symlink(target, tmp_path / "a" / name)
    paths = [str(tmp_path / "a" / n) for n in links] + [str(tmp_path / "a" / "b" / "missing")]
    paths += glob.glob("/lib/x86_64-linux-gnu/*.so*") + glob.glob("/usr/bin/*")
    paths += ["/", "/lib", "/nonexistent/x"]
    dirs: dict[str, str] = {}
    assert [_realpath(p, dirs) for p in paths] == [os.path.realpath(p) for p in paths]
