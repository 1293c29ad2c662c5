"""The no-change fast path (occlum_build/bom/stamp.py): a run over an unchanged tree answers
from the stamp without planning, and every kind of change sends the run the long way."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import occlum_build
from occlum_build import paths
from occlum_build.bom import copy_bom, elfcache, run, stamp
from occlum_build.fsutil import RACY_NS

LIBDIR = "/lib/x86_64-linux-gnu"


def settle() -> None:
    """Let the racy window pass: sources changed within RACY_NS of a run get no stamp."""
    time.sleep(RACY_NS / 1e9 + 0.05)


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A workspace: sources, a bom using $APP_DIR and an include, and the image root."""
    src = tmp_path / "src"
    (src / "tree" / "sub").mkdir(parents=True)
    (src / "tree" / "a.txt").write_text("alpha\n")
    (src / "tree" / "sub" / "b.txt").write_text("beta\n")
    os.symlink("a.txt", src / "tree" / "link")
    shutil.copy2("/bin/true", src / "true")  # an ELF with libraries
    (tmp_path / "inc.yaml").write_text("targets:\n  - target: /etc\n    mkdirs: [conf.d]\n")
    bom = tmp_path / "app.yaml"
    bom.write_text(
        "includes: [inc.yaml]\n"
        "targets:\n"
        "  - target: /$APP_DIR\n"
        "    copy:\n"
        "      - dirs: [src/tree]\n"
        "      - files: [src/true]\n"
    )
    monkeypatch.setenv("APP_DIR", "app")
    settle()
    return tmp_path, bom, tmp_path / "image"


def run_bom(bom: Path, root: Path, **kw):
    return copy_bom(bom, root, **kw)


def planned(monkeypatch) -> list[int]:
    """Counts the runs that parse boms (the long way)."""
    calls: list[int] = []
    real = run.collect_boms

    def spy(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(run, "collect_boms", spy)
    return calls


def test_unchanged_run_answers_from_the_stamp_with_the_same_report(ws, monkeypatch):
    tmp, bom, root = ws
    first = run_bom(bom, root)
    assert first.files_copied >= 3 and first.libraries
    with monkeypatch.context() as m:  # the long way, for comparison (no stamp, no ELF cache)
        m.setenv(elfcache.CACHE_ENV, "off")
        slow = run_bom(bom, root)
    calls = planned(monkeypatch)
    fast = run_bom(bom, root)
    assert not calls, "the no-change run planned again"
    assert not fast.changed and fast.up_to_date == slow.up_to_date == first.files_copied
    assert fast.libraries == slow.libraries and fast.boms == slow.boms
    assert fast.summary() == slow.summary()
    sp = stamp.stamp_path(str(root), str(bom), [], str(paths.elf_loader_config()))
    assert sp is not None and sp.is_file() and not str(sp).startswith(str(root))


def _edit_source(tmp, root):
    p = tmp / "src" / "tree" / "a.txt"
    st = p.stat()
    p.write_text("ALPHA\n")  # same size
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # and mtime put back: only ctime moves
    return lambda: (root / "app" / "tree" / "a.txt").read_text() == "alpha\n"  # rsync: size+mtime


def _add_source(tmp, root):
    (tmp / "src" / "tree" / "sub" / "new.txt").write_text("new\n")
    return lambda: (root / "app" / "tree" / "sub" / "new.txt").read_text() == "new\n"


def _touch_dest(tmp, root):
    (root / "app" / "tree" / "a.txt").write_text("tampered, longer\n")
    return lambda: (root / "app" / "tree" / "a.txt").read_text() == "alpha\n"


def _remove_dest_dir(tmp, root):
    shutil.rmtree(root / "etc" / "conf.d")
    return lambda: (root / "etc" / "conf.d").is_dir()


def _edit_bom(tmp, root):
    bom = tmp / "app.yaml"
    bom.write_text(bom.read_text().replace("[src/true]", "[src/true, src/tree/a.txt]"))
    return lambda: (root / "app" / "a.txt").is_file()


def _edit_include(tmp, root):
    (tmp / "inc.yaml").write_text("targets:\n  - target: /etc\n    mkdirs: [other.d]\n")
    return lambda: (root / "etc" / "other.d").is_dir()


def _change_env(tmp, root):
    os.environ["APP_DIR"] = "app2"
    return lambda: (root / "app2" / "tree" / "a.txt").is_file()


CHANGES = [_edit_source, _add_source, _touch_dest, _remove_dest_dir, _edit_bom, _edit_include,
           _change_env]


@pytest.mark.parametrize("change", CHANGES, ids=[c.__name__.strip("_") for c in CHANGES])
def test_any_change_takes_the_long_way(ws, monkeypatch, change):
    tmp, bom, root = ws
    run_bom(bom, root)
    run_bom(bom, root)
    calls = planned(monkeypatch)
    assert not run_bom(bom, root).changed and not calls  # the stamp is in use
    monkeypatch.setenv("APP_DIR", "app")  # restored after the test (the change may set it)
    check = change(tmp, root)
    settle()
    rep = run_bom(bom, root)
    assert calls, f"{change.__name__}: answered from a stale stamp"
    assert check(), f"{change.__name__}: the long way did not do what the change asks"
    if change is not _edit_source:  # rsync semantics: same size and mtime is not copied
        assert rep.changed


def test_library_appearing_earlier_in_the_search_path(ws, monkeypatch, tmp_path):
    """The ELF search probed paths where no library was: one appearing there is a change.
    A program with DT_RPATH (searched before everything else) needs libm."""
    if not shutil.which("gcc"):
        pytest.skip("gcc not installed (scripts/packages/base.txt)")
    tmp, _, root = ws
    first_dir = tmp_path / "rpath"
    first_dir.mkdir()
    c = tmp_path / "m.c"
    c.write_text("#include <math.h>\nvolatile double x = 0.5;\nint main(void) { return (int)cos(x); }\n")
    prog = tmp_path / "src" / "mprog"
    subprocess.run(["gcc", "-o", str(prog), str(c), "-Wl,--no-as-needed", "-lm",
                    f"-Wl,-rpath,{first_dir}", "-Wl,--disable-new-dtags"], check=True)
    bom = tmp_path / "m.yaml"
    bom.write_text("targets:\n  - target: /bin\n    copy:\n      - files: [src/mprog]\n")
    settle()
    first = run_bom(bom, root)
    assert f"{LIBDIR}/libm.so.6" in [s for s, _ in first.libraries]
    calls = planned(monkeypatch)
    run_bom(bom, root)
    assert not calls
    shutil.copy2(f"{LIBDIR}/libm.so.6", first_dir / "libm.so.6")  # found first from now on
    settle()
    rep = run_bom(bom, root)
    assert calls and str(first_dir / "libm.so.6") in [s for s, _ in rep.libraries]


def test_include_shadowed_by_one_earlier_in_the_search(ws, monkeypatch, tmp_path):
    """Includes are looked up in the bom's folder before --include-dir: an include file
    appearing there (where the last run probed and found nothing) is a change."""
    tmp, _, root = ws
    (tmp / "boms").mkdir()
    (tmp / "incdir").mkdir()
    bom = tmp / "boms" / "top.yaml"
    bom.write_text("includes: [part.yaml]\n")
    (tmp / "incdir" / "part.yaml").write_text("targets:\n  - target: /\n    mkdirs: [from-incdir]\n")
    settle()
    run_bom(bom, root, include_dirs=[tmp / "incdir"])
    calls = planned(monkeypatch)
    run_bom(bom, root, include_dirs=[tmp / "incdir"])
    assert not calls
    (tmp / "boms" / "part.yaml").write_text("targets:\n  - target: /\n    mkdirs: [from-bomdir]\n")
    settle()
    run_bom(bom, root, include_dirs=[tmp / "incdir"])
    assert calls and (root / "from-bomdir").is_dir()


def test_dry_run_uses_but_never_writes_a_stamp(ws, monkeypatch):
    tmp, bom, root = ws
    dry = run_bom(bom, root, dry_run=True)
    sp = stamp.stamp_path(str(root), str(bom), [], str(paths.elf_loader_config()))
    assert dry.changed and not sp.exists() and not root.exists()
    run_bom(bom, root)
    calls = planned(monkeypatch)
    assert not run_bom(bom, root, dry_run=True).changed and not calls


def test_no_stamp_after_warnings_or_just_changed_sources(ws, monkeypatch):
    tmp, bom, root = ws
    sp = stamp.stamp_path(str(root), str(bom), [], str(paths.elf_loader_config()))
    (tmp / "src" / "tree" / "fresh.txt").write_text("just now\n")  # racy: changed right now
    run_bom(bom, root)
    assert not sp.exists()
    settle()
    os.symlink("/nonexistent/target", tmp / "src" / "tree" / "dangling")  # a warning
    settle()
    assert run_bom(bom, root).warnings and not sp.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip", "foreign-shape"])
def test_damaged_stamp_means_a_full_run(ws, monkeypatch, damage):
    tmp, bom, root = ws
    run_bom(bom, root)
    sp = stamp.stamp_path(str(root), str(bom), [], str(paths.elf_loader_config()))
    raw = sp.read_bytes()
    if damage == "truncate":
        sp.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        sp.write_bytes(b"\x00garbage\n" * 10)
    elif damage == "flip":
        sp.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    else:  # a valid digest over a header of another shape
        import hashlib

        magic, _, head, body = raw.split(b"\n", 3)
        head = head.replace(b'"files":', b'"files":"many","x":')
        sp.write_bytes(magic + b"\n" + hashlib.sha256(head + b"\n" + body).hexdigest().encode()
                       + b"\n" + head + b"\n" + body)
    calls = planned(monkeypatch)
    rep = run_bom(bom, root)
    assert calls and not rep.changed
    assert sp.read_bytes() == raw  # written again by the full run


def test_cache_off_means_no_stamp(ws, monkeypatch):
    tmp, bom, root = ws
    monkeypatch.setenv(elfcache.CACHE_ENV, "off")
    assert stamp.stamp_path(str(root), str(bom), [], "x") is None
    run_bom(bom, root)
    calls = planned(monkeypatch)
    run_bom(bom, root)
    assert calls


def test_stamp_file_layout_matches_the_spec(ws):
    """Read a stamp with a parser written from docs/formats/copy_bom-stamp.md alone."""
    import hashlib
    import json
    import struct

    tmp, bom, root = ws
    run_bom(bom, root)
    sp = stamp.stamp_path(str(root), str(bom), [], str(paths.elf_loader_config()))
    ident = "\0".join([str(root), str(bom), str(paths.elf_loader_config()), str(os.geteuid()),
                       occlum_build.__version__])
    assert sp.name == hashlib.sha256(ident.encode()).hexdigest()[:32] + ".stamp"
    assert sp.stat().st_mode & 0o777 == 0o600
    raw = sp.read_bytes()
    line1, line2, rest = raw.split(b"\n", 2)
    assert line1 == b"occlum-build copy_bom stamp 2"
    assert line2.decode() == hashlib.sha256(rest).hexdigest()
    head_raw, body = rest.split(b"\n", 1)
    head = json.loads(head_raw)
    assert head["env"] == {"APP_DIR": "app"}
    s, n = head["stat"], head["stat"] + head["lstat"]
    keys = body[len(body) - 44 * n :]
    names = body[: len(body) - 44 * n].split(b"\0")[:-1]
    assert len(names) == n
    by_path = {}
    for i, p in enumerate(names):
        dev, ino, size, mtime, ctime, mode = struct.unpack_from("<QQqqqI", keys, 44 * i)
        try:
            st = os.stat(p) if i < s else os.lstat(p)
            want = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
        except FileNotFoundError:
            want = (0, 0, 0, 0, 0, 0)  # probed and absent
        assert (dev, ino, size, mtime, ctime, mode) == want, p
        by_path[os.fsdecode(p)] = i < s
    assert by_path[str(bom)] and by_path[str(tmp / "inc.yaml")]  # boms: stat
    assert by_path[str(tmp / "src" / "tree" / "link")] is False  # a copied symlink: lstat
    assert by_path[str(root / "app" / "tree" / "a.txt")] is False  # destinations: lstat
    # a.txt, b.txt, true, and true's loader and libc
    assert head["report"]["files"] == 5 and len(head["report"]["libraries"]) == 2


def test_dir_in_the_root_swapped_for_a_symlink_is_a_change(ws, monkeypatch, tmp_path):
    """root/opt and root/opt/x are made implicitly (target /opt/x/app): x moved out and
    replaced by a symlink to where it went keeps every file below it as it was (and the
    root's mtime), but the full run refuses to write through the symlink."""
    from occlum_build.errors import OcclumError

    tmp, _, root = ws
    bom = tmp / "nested.yaml"
    bom.write_text("targets:\n  - target: /opt/x/app\n    copy:\n      - dirs: [src/tree]\n")
    settle()
    run_bom(bom, root)
    calls = planned(monkeypatch)
    run_bom(bom, root)
    assert not calls
    outside = tmp_path / "outside"
    outside.mkdir()
    os.rename(root / "opt" / "x", outside / "x")
    os.symlink(outside / "x", root / "opt" / "x")
    with pytest.raises(OcclumError, match="outside"):
        run_bom(bom, root)
    assert calls
