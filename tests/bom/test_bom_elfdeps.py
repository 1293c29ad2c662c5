"""ELF dependency resolution (pyelftools, no loader run) against what the loader itself reports.

The reference is Occlum's own method: ``LD_LIBRARY_PATH=<configured dirs> <loader> --list <elf>``.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
from pathlib import Path

import pytest
from bom_helpers import build_hello, have

from occlum_build import paths
from occlum_build.bom import load_loader_config, resolve_deps
from occlum_build.bom.elfdeps import Resolver
from occlum_build.bom.loaders import parse_loader_config
from occlum_build.errors import BomError

DEBIAN_BINARIES = [
    "/usr/bin/python3.11", "/usr/bin/bash", "/usr/bin/busybox", "/usr/bin/sqlite3", "/usr/bin/redis-server",
    "/usr/bin/fio", "/usr/bin/iperf3", "/usr/bin/sysbench", "/usr/bin/openssl", "/usr/bin/gpg",
    "/usr/bin/ls", "/usr/bin/tar", "/usr/bin/perl", "/usr/bin/ssh", "/usr/bin/curl", "/usr/bin/git",
    "/usr/bin/make", "/usr/bin/gcc", "/usr/bin/systemctl", "/usr/bin/fusermount3",
    "/usr/bin/rsync", "/usr/bin/redis-cli", "/usr/bin/objdump", "/usr/bin/ld.bfd",
]  # on a fresh machine with scripts/packages/*.txt installed, at least 20 of these exist


def ld_list(elf: str, resolver: Resolver) -> tuple[set[tuple[str, str]], set[str]]:
    """(name, path) pairs and 'not found' names from the loader's --list, without the loader."""
    info = resolver.info(elf)
    loader = resolver.loader_for(info)
    assert loader is not None
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(loader.lib_dirs))
    out = subprocess.run([loader.path, "--list", elf], capture_output=True, text=True, env=env, check=True)
    pairs, missing = set(), set()
    for line in out.stdout.splitlines():
        line = line.strip()
        if m := re.match(r"^(\S+) => not found", line):
            missing.add(m.group(1))
        elif (m := re.match(r"^(\S+) => (\S+) \(", line)) and \
                os.path.realpath(m.group(2)) != os.path.realpath(loader.path):
            pairs.add((m.group(1), m.group(2)))
    return pairs, missing


def ours(elf: str, resolver: Resolver) -> tuple[set[tuple[str, str]], set[str]]:
    res = resolver.resolve(elf)
    assert res.loader is not None
    loader_real = os.path.realpath(res.loader.path)
    return ({(d.name, d.path) for d in res.libs if os.path.realpath(d.path) != loader_real},
            set(res.missing))


@pytest.fixture(scope="module")
def resolver() -> Resolver:
    return Resolver(load_loader_config())


def test_same_libraries_as_ld_so_on_debian_binaries(resolver):
    bins = [b for b in DEBIAN_BINARIES if os.path.exists(b)]
    dynload = sorted(glob.glob("/usr/lib/python3.11/lib-dynload/*.so"))
    with_deps = [m for m in dynload if resolver.info(m).needed]
    checked = 0
    for elf in bins + with_deps:
        assert ours(elf, resolver) == ld_list(elf, resolver), elf
        checked += 1
    assert len(bins) >= 20 and len(with_deps) >= 10 and checked >= 30
    # the resolution is not trivially empty
    ssl = ours("/usr/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so", resolver)[0]
    assert {n for n, _ in ssl} >= {"libssl.so.3", "libcrypto.so.3", "libc.so.6"}


def test_musl_hello(tmp_path, resolver):
    hello = build_hello(tmp_path / "hello", "musl-gcc")
    res = resolver.resolve(hello)
    assert res.interp == "/lib/ld-musl-x86_64.so.1"
    assert res.loader is not None and res.loader.kind == "musl"
    assert [(d.name, d.path) for d in res.libs] == [("libc.so", "/lib/ld-musl-x86_64.so.1")]
    out = subprocess.run(["/lib/ld-musl-x86_64.so.1", "--list", str(hello)], capture_output=True, text=True)
    assert "libc.so => /lib/ld-musl-x86_64.so.1" in out.stdout


@pytest.mark.skipif(not have("gcc"), reason="gcc missing")
@pytest.mark.parametrize("tags", ["--disable-new-dtags", "--enable-new-dtags"])  # DT_RPATH / DT_RUNPATH
def test_origin_run_paths_match_ld_so(tmp_path, resolver, tags):
    """A program finding libA via $ORIGIN/../lib, libA finding libB via its own $ORIGIN/sub
    (RPATH is inherited by what a library loads, RUNPATH is not: libB in prog's path only)."""
    lib, sub = tmp_path / "lib", tmp_path / "lib" / "sub"
    sub.mkdir(parents=True)
    (tmp_path / "bin").mkdir()
    (tmp_path / "b.c").write_text("int b(void) { return 2; }\n")
    (tmp_path / "a.c").write_text("int b(void); int a(void) { return b() + 1; }\n")
    (tmp_path / "m.c").write_text("int a(void); int main(void) { return a() - 3; }\n")
    cc = ["gcc", "-fPIC", f"-Wl,{tags}"]
    subprocess.run([*cc, "-shared", "-Wl,-soname,libb.so.1", "-o", str(sub / "libb.so.1"),
                    str(tmp_path / "b.c")], check=True)
    subprocess.run([*cc, "-shared", "-Wl,-soname,liba.so.1", "-o", str(lib / "liba.so.1"),
                    str(tmp_path / "a.c"), str(sub / "libb.so.1"), "-Wl,-rpath,$ORIGIN/sub"], check=True)
    prog = tmp_path / "bin" / "prog"
    subprocess.run([*cc, "-o", str(prog), str(tmp_path / "m.c"), str(lib / "liba.so.1"),
                    "-Wl,-rpath,$ORIGIN/../lib"], check=True)
    assert subprocess.run([str(prog)]).returncode == 0
    got = ours(str(prog), resolver)
    assert got == ld_list(str(prog), resolver)
    assert (("liba.so.1", f"{tmp_path}/bin/../lib/liba.so.1")) in got[0]
    assert resolver.info(str(prog)).has_runpath == (tags == "--enable-new-dtags")


def test_resolve_deps_api(tmp_path):
    hello = build_hello(tmp_path / "hello", "gcc")
    deps = resolve_deps(hello)
    assert deps[0] == Path("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")  # the loader first
    assert Path("/lib/x86_64-linux-gnu/libc.so.6") in deps
    with pytest.raises(BomError, match="not an ELF"):
        resolve_deps(tmp_path / "hello_gcc.c")


def test_loader_config_shipped_and_parsed():
    cfg = load_loader_config()
    glibc = cfg.for_interp("/lib64/ld-linux-x86-64.so.2")
    assert glibc.path == "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    assert glibc.lib_dirs[0] == "/lib/x86_64-linux-gnu"  # the loader dir first, as Occlum
    assert "/usr/lib/x86_64-linux-gnu" in glibc.lib_dirs
    musl = cfg.for_interp("/lib/ld-musl-x86_64.so.1")
    assert musl.dir == "/lib" and musl.kind == "musl"
    # an interpreter with no configured loader is its own loader
    other = cfg.for_interp("/opt/x/ld-other.so")
    assert other.path == "/opt/x/ld-other.so"
    parsed = parse_loader_config("# comment\n\n/a/ld.so /b:/c/\n", "t")
    assert parsed.loaders[0].lib_dirs == ("/a", "/b", "/c")


def _occlum_parse(text: str) -> dict[str, list[str]]:
    """Occlum 0.31 copy_bom's reading of the config (tools/copy_bom/src/util.rs, OCCLUM_LOADERS):
    each non-blank trimmed line split at ' '; [0] is the loader, [1] the LD_LIBRARY_PATH after
    the loader's dir; a line of one word panics (index out of bounds), so fail on it here."""
    out = {}
    for line in text.splitlines():
        t = line.strip()
        if not t:
            continue
        parts = t.split(" ")
        assert len(parts) >= 2, f"Occlum's copy_bom panics on the line {line!r}"
        dirs = f"{os.path.dirname(parts[0])}:{parts[1]}".split(":")
        out[parts[0]] = list(dict.fromkeys(d for d in dirs if d))  # what it searches, in order
    return out


def test_shipped_loader_config_is_readable_by_occlums_copy_bom():
    """Occlum's parser has no comments: the shipped file holds loader lines only (a comment
    line of one word crashed it, any other became a loader named '#'), and both parsers read
    the same loaders and dirs from it."""
    text = (paths.BOM_TEMPLATE_DIR / paths.ELF_LOADER_CONFIG_NAME).read_text()
    theirs = _occlum_parse(text)
    assert all(k.startswith("/") for k in theirs), theirs
    ours = parse_loader_config(text, "shipped")
    assert {ld.path: list(ld.lib_dirs) for ld in ours.loaders} == theirs


def test_musl_library_with_runpath_matches_musl_loader(tmp_path, resolver):
    if not have("musl-gcc"):
        pytest.skip("musl-gcc missing")
    (tmp_path / "lib").mkdir()
    (tmp_path / "a.c").write_text("int a(void) { return 0; }\n")
    (tmp_path / "m.c").write_text("int a(void); int main(void) { return a(); }\n")
    subprocess.run(["musl-gcc", "-shared", "-fPIC", "-Wl,-soname,liba.so", "-o",
                    str(tmp_path / "lib/liba.so"), str(tmp_path / "a.c")], check=True)
    prog = tmp_path / "prog"
    subprocess.run(["musl-gcc", "-o", str(prog), str(tmp_path / "m.c"), str(tmp_path / "lib/liba.so"),
                    "-Wl,-rpath,$ORIGIN/lib"], check=True)
    got = ours(str(prog), resolver)
    assert got == ld_list(str(prog), resolver)
    assert ("liba.so", f"{tmp_path}/lib/liba.so") in got[0]
