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


def test_shared_resolutions_equal_fresh_ones():
    """A Resolver reuses the result for files with the same ELF facts, dir and loader; every
    ELF of /usr/bin, lib-dynload and the multiarch lib dir resolves as with a fresh Resolver."""
    from occlum_build.bom.elfdeps import NotElf, Resolver
    from occlum_build.bom.loaders import load_loader_config
    from occlum_build.errors import BomError

    cfg = load_loader_config()
    shared = Resolver(cfg)
    files = sorted(glob.glob("/usr/bin/*") + glob.glob("/usr/lib/python3.11/lib-dynload/*.so")
                   + glob.glob("/usr/lib/x86_64-linux-gnu/*.so*"))
    compared = 0
    for f in files:
        try:
            got = shared.resolve(f)
        except (NotElf, BomError, OSError):
            continue
        want = Resolver(cfg).resolve(f)
        assert (got.libs, got.missing, got.loader, got.interp) == \
            (want.libs, want.missing, want.loader, want.interp), f
        compared += 1
    assert compared > 100 and shared._memo


def test_shared_resolution_not_reused_when_the_search_met_the_main_file(tmp_path):
    """a.so needs libbar.so, which needs libfoo2.so, a symlink to a.so: for a.so the loader
    reuses a.so itself; for b.so (a copy of a.so: same ELF facts, same dir) it loads a.so."""
    import shutil
    import subprocess

    import pytest

    from occlum_build.bom.elfdeps import Resolver
    from occlum_build.bom.loaders import load_loader_config

    if not shutil.which("gcc"):
        pytest.skip("gcc not installed")
    (tmp_path / "x.c").write_text("int x(void) { return 1; }\n")

    def cc(out: str, *libs: str) -> None:
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", out, "x.c", "-L.", "-Wl,--no-as-needed", *libs,
                        "-Wl,-rpath,$ORIGIN"],
                       cwd=tmp_path, check=True)

    cc("libfoo2.so")
    cc("libbar.so", "-lfoo2")
    cc("a.so", "-lbar")
    (tmp_path / "libfoo2.so").unlink()
    (tmp_path / "libfoo2.so").symlink_to("a.so")
    shutil.copy(tmp_path / "a.so", tmp_path / "b.so")
    cfg = load_loader_config()
    for order in (["a.so", "b.so"], ["b.so", "a.so"]):
        shared = Resolver(cfg)
        for name in order:
            got = shared.resolve(str(tmp_path / name))
            want = Resolver(cfg).resolve(str(tmp_path / name))
            assert got.libs == want.libs and got.missing == want.missing, name
    libs = {n: [d.name for d in Resolver(cfg).resolve(str(tmp_path / n)).libs] for n in ("a.so", "b.so")}
    assert "libfoo2.so" not in libs["a.so"] and "libfoo2.so" in libs["b.so"]
