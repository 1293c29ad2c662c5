"""Copy semantics: rsync -a behaviour, incremental runs, dry run, conflicts, includes, CLI."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from bom_helpers import build_hello, run_cli

from occlum_build.bom import copy_bom
from occlum_build.bom.fscopy import compile_excludes, unsafe_link

T0 = 1_600_000_000_123_456_789  # a fixed mtime (ns) for sources


def _src_tree(base: Path) -> Path:
    """app/ with a file, an executable, a nested dir, a safe and an unsafe symlink."""
    app = base / "app"
    (app / "conf" / "deep").mkdir(parents=True)
    (app / "run.sh").write_text("#!/bin/sh\necho run\n")
    (app / "run.sh").chmod(0o750)
    (app / "conf" / "a.conf").write_text("a=1\n")
    (app / "conf" / "deep" / "b.conf").write_text("b=2\n")
    (app / ".git").mkdir()
    (app / ".git" / "HEAD").write_text("ref")
    os.symlink("conf/a.conf", app / "safe_link")  # stays a link
    (base / "host_data.txt").write_text("outside\n")
    os.symlink(str(base / "host_data.txt"), app / "unsafe_link")  # absolute: the file is copied
    for p in [*app.rglob("*"), app]:
        if not p.is_symlink():
            os.utime(p, ns=(T0, T0))
    return app


def _bom(base: Path, text: str, name: str = "app.yaml") -> Path:
    p = base / name
    p.write_text(text)
    return p


DIR_BOM = """\
excludes:
  - .git
targets:
  - target: /opt
    copy:
      - dirs:
          - ../app
"""


def test_dir_copy_preserves_rsync_a_attributes(tmp_path):
    _src_tree(tmp_path)
    root = tmp_path / "inst" / "image"
    rep = copy_bom(_bom(tmp_path, DIR_BOM), root)
    out = root / "opt" / "app"
    assert (out / "conf" / "deep" / "b.conf").read_text() == "b=2\n"
    assert stat.S_IMODE((out / "run.sh").stat().st_mode) == 0o750
    assert (out / "run.sh").stat().st_mtime_ns == T0
    assert (out / "conf").stat().st_mtime_ns == T0  # dir mtimes too, after filling them
    assert os.readlink(out / "safe_link") == "conf/a.conf"
    assert not (out / "unsafe_link").is_symlink() and (out / "unsafe_link").read_text() == "outside\n"
    assert not (out / ".git").exists()  # excluded
    assert rep.files_copied == 4 and rep.links_created == 1


def test_second_run_copies_nothing_and_says_so(tmp_path):
    _src_tree(tmp_path)
    (tmp_path / "inst").mkdir()
    bom = _bom(tmp_path, DIR_BOM)
    r1 = run_cli("-f", str(bom), "--root", "image", cwd=tmp_path / "inst")
    assert r1.returncode == 0 and "copied 4 files" in r1.stderr
    r2 = run_cli("-f", str(bom), "--root", "image", cwd=tmp_path / "inst")
    assert r2.returncode == 0
    assert "nothing to copy" in r2.stderr and "up to date" in r2.stderr
    rep = copy_bom(bom, tmp_path / "inst" / "image")
    assert not rep.changed and rep.files_copied == 0 and rep.up_to_date == 4


def test_edit_one_file_copies_only_it(tmp_path):
    app = _src_tree(tmp_path)
    root = tmp_path / "inst" / "image"
    bom = _bom(tmp_path, DIR_BOM)
    copy_bom(bom, root)
    (app / "conf" / "a.conf").write_text("a=2\n")
    rep = copy_bom(bom, root)
    assert rep.files_copied == 1
    assert rep.operations == [f"copy {app}/conf/a.conf -> {root}/opt/app/conf/a.conf"]
    assert (root / "opt/app/conf/a.conf").read_text() == "a=2\n"
    # a mode change alone updates attributes without copying
    (app / "run.sh").chmod(0o700)
    rep = copy_bom(bom, root)
    assert rep.files_copied == 0 and rep.attrs_updated == 1
    assert stat.S_IMODE((root / "opt/app/run.sh").stat().st_mode) == 0o700


def test_never_deletes(tmp_path):
    app = _src_tree(tmp_path)
    root = tmp_path / "inst" / "image"
    bom = _bom(tmp_path, DIR_BOM)
    copy_bom(bom, root)
    (app / "run.sh").unlink()
    (root / "opt" / "mine.txt").write_text("user file")
    copy_bom(bom, root)
    assert (root / "opt/app/run.sh").exists() and (root / "opt/mine.txt").exists()


def test_dry_run_touches_nothing(tmp_path):
    _src_tree(tmp_path)
    build_hello(tmp_path / "hello", "gcc")
    bom = _bom(tmp_path, DIR_BOM + "  - target: /bin\n    copy:\n      - files: [../hello]\n"
                                   "    createlinks:\n      - {src: hello, linkname: hi}\n")
    (tmp_path / "inst").mkdir()
    r = run_cli("--dry-run", "-f", str(bom), "--root", "image", cwd=tmp_path / "inst")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "inst" / "image").exists()
    image = tmp_path / "inst" / "image"
    for expect in (f"mkdir -p {image}/bin", f"ln -s hello {image}/bin/hi",
                   f"copy {tmp_path}/hello -> {image}/bin/hello",
                   f"{image}/lib/x86_64-linux-gnu/libc.so.6", f"{image}/lib64/ld-linux-x86-64.so.2",
                   f"copy {tmp_path}/app/conf/deep/b.conf"):
        assert expect in r.stderr, expect
    # dry run over a populated root reports only what would change
    copy_bom(bom, image)
    before = {p: p.lstat().st_mtime_ns for p in image.rglob("*")}
    (tmp_path / "app" / "conf" / "a.conf").write_text("changed\n")
    rep = copy_bom(bom, image, dry_run=True)
    assert rep.operations == [f"copy {tmp_path}/app/conf/a.conf -> {image}/opt/app/conf/a.conf"]
    assert {p: p.lstat().st_mtime_ns for p in image.rglob("*")} == before


def test_files_follow_symlinks_rename_and_hash_lowercase(tmp_path):
    (tmp_path / "real.txt").write_bytes(b"abc")
    os.symlink("real.txt", tmp_path / "alias.txt")
    bom = _bom(tmp_path, """\
targets:
  - target: /etc/app/
    copy:
      - from: ..
        files:
          - alias.txt
          - name: real.txt
            rename: sub/renamed.txt
            hash: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
            autodep: false
""")
    root = tmp_path / "inst" / "image"
    copy_bom(bom, root)
    assert not (root / "etc/app/alias.txt").is_symlink()  # rsync -aL: content, not the link
    assert (root / "etc/app/alias.txt").read_bytes() == b"abc"
    assert (root / "etc/app/sub/renamed.txt").read_bytes() == b"abc"


def test_trailing_slash_and_whole_from(tmp_path):
    _src_tree(tmp_path)
    bom = _bom(tmp_path, """\
targets:
  - target: /contents
    copy:
      - dirs: [../app/conf/]
  - target: /whole
    copy:
      - from: ../app/conf
""")
    root = tmp_path / "inst" / "image"
    copy_bom(bom, root)
    assert (root / "contents/a.conf").is_file() and (root / "contents/deep/b.conf").is_file()
    assert (root / "whole/a.conf").is_file() and not (root / "whole/conf").exists()


def test_conflicts_first_mkdir_last_copy_and_link_win(tmp_path, caplog):
    (tmp_path / "one").write_text("1")
    (tmp_path / "two").write_text("2")
    inc = _bom(tmp_path, """\
targets:
  - target: /bin
    createlinks:
      - {src: from_include, linkname: tool}
    copy:
      - files:
          - name: ../two
            rename: data
""", "inc.yaml")
    top = _bom(tmp_path, f"""\
includes: [{inc.name}]
targets:
  - target: /bin
    createlinks:
      - {{src: from_top, linkname: tool}}
    copy:
      - files:
          - name: ../one
            rename: data
""")
    root = tmp_path / "inst" / "image"
    with caplog.at_level("INFO", logger="occlum"):
        rep = copy_bom(top, root)
    # Occlum processes the top bom first, then includes: the include's (later) entries win
    assert (root / "bin/data").read_text() == "2"
    assert os.readlink(root / "bin/tool") == "from_include"
    assert len(rep.conflicts) == 2 and all("overridden by" in c for c in rep.conflicts)
    assert any("conflict: file" in r.getMessage() for r in caplog.records)


def test_include_search_order_and_template_dir(tmp_path):
    incdir = tmp_path / "incs"
    incdir.mkdir()
    (incdir / "extra.yaml").write_text("targets:\n  - target: /\n    mkdirs: [from_include_dir]\n")
    bom = _bom(tmp_path, "includes: [base.yaml, extra.yaml]\n")
    root = tmp_path / "inst" / "image"
    rep = copy_bom(bom, root, include_dirs=[incdir])
    assert (root / "from_include_dir").is_dir() and (root / "ext2").is_dir()  # base.yaml shipped in bom/
    assert [p.name for p in rep.boms] == ["app.yaml", "base.yaml", "extra.yaml"]


def test_symlink_mtime_and_createlinks_idempotent(tmp_path):
    _src_tree(tmp_path)
    root = tmp_path / "inst" / "image"
    bom = _bom(tmp_path, DIR_BOM + "    createlinks:\n      - {src: /opt/app/run.sh, linkname: run}\n")
    copy_bom(bom, root)
    link = root / "opt" / "run"
    first = link.lstat().st_mtime_ns
    rep = copy_bom(bom, root)
    assert not rep.changed and link.lstat().st_mtime_ns == first  # Occlum re-creates it every run


def test_unsafe_link_and_exclude_rules():
    assert unsafe_link("top/x", "/abs")
    assert unsafe_link("x", "../y")
    assert not unsafe_link("top/x", "../y")  # stays within the transfer (rsync's rule)
    assert unsafe_link("top/x", "../../y")
    assert not unsafe_link("top/sub/x", "../a/./b")
    rx = compile_excludes([".git", "/top/build", "*.pyc", "cache/"])
    def hit(rel: str, d: bool = False) -> bool:
        return any((d or not only) and r.match(rel) for r, only in rx)
    assert hit("a/b/.git", True) and hit("top/build") and not hit("x/top/build")
    assert hit("m/n.pyc") and hit("x/cache", True) and not hit("x/cache", False)


def test_help_shows_occlum_usage():
    r = run_cli("--help")
    assert r.returncode == 0
    assert "copy_bom [FLAGS] [OPTIONS] --file <bom-file> --root <root-dir>" in r.stdout
    for opt in ("--dry-run", "--include-dir", "-f <bom-file>, --file", "--root"):
        assert opt in r.stdout
    r = run_cli("-f", "x.yaml")
    assert r.returncode == 2 and "--root" in r.stderr


OCCLUM_VECTORS = Path(__file__).parents[1] / "vectors/bom/occlum"


@pytest.mark.parametrize("name", sorted(p.relative_to(OCCLUM_VECTORS).as_posix()
                                        for p in OCCLUM_VECTORS.rglob("*.yaml")))
def test_every_occlum_bom_parses(name):
    from occlum_build.bom.schema import load_bom
    b = load_bom(OCCLUM_VECTORS / name)
    assert b.targets or b.includes


def test_occlum_example_bom_reports_missing_include(tmp_path):
    """tools/copy_bom/example.yaml includes java-11-alibaba-dragonwell.yaml, which only exists in
    an Occlum install: the error names the include and its line:col."""
    ex = Path(__file__).parents[1] / "vectors/bom/occlum/tools/copy_bom/example.yaml"
    r = run_cli("-f", str(ex), "--root", str(tmp_path / "image"))
    assert r.returncode == 2
    assert f"{ex}:4:5" in r.stderr and "java-11-alibaba-dragonwell.yaml" in r.stderr


def test_runpath_library_lands_at_its_host_path(tmp_path):
    """A library found through $ORIGIN/../lib (not in a loader dir) keeps its absolute host
    path inside the root (Occlum's rule), normalized; system libraries go to the loader dir."""
    import subprocess

    (tmp_path / "lib").mkdir()
    (tmp_path / "bin").mkdir()
    (tmp_path / "a.c").write_text("int a(void) { return 0; }\n")
    (tmp_path / "m.c").write_text("int a(void); int main(void) { return a(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,liba.so.1", "-o", str(tmp_path / "lib/liba.so.1"),
                    str(tmp_path / "a.c")], check=True)
    subprocess.run(["gcc", "-o", str(tmp_path / "bin/prog"), str(tmp_path / "m.c"),
                    str(tmp_path / "lib/liba.so.1"), "-Wl,-rpath,$ORIGIN/../lib"], check=True)
    bom = _bom(tmp_path, "targets:\n  - target: /bin\n    copy:\n      - files: [../bin/prog]\n")
    root = tmp_path / "inst" / "image"
    rep = copy_bom(bom, root)
    dests = {d for _, d in rep.libraries}
    assert f"{root}{tmp_path}/lib/liba.so.1" in dests
    assert (root / str(tmp_path).lstrip("/") / "lib/liba.so.1").is_file()
    assert f"{root}/lib/x86_64-linux-gnu/libc.so.6" in dests
    assert f"{root}/lib64/ld-linux-x86-64.so.2" in dests
    assert all(".." not in d for d in dests)


def test_modes_do_not_depend_on_umask(tmp_path):
    _src_tree(tmp_path)
    bom = _bom(tmp_path, DIR_BOM + "    mkdirs: [made/deeper]\n")
    trees = []
    for umask in (0o022, 0o077):
        old = os.umask(umask)
        try:
            root = tmp_path / f"inst{umask:o}" / "image"
            copy_bom(bom, root)
        finally:
            os.umask(old)
        trees.append({p.relative_to(root).as_posix(): stat.S_IMODE(p.lstat().st_mode)
                      for p in root.rglob("*") if not p.is_symlink()})
    assert trees[0] == trees[1]
    assert trees[0]["opt/made/deeper"] == 0o755


def test_dir_mode_change_is_reported(tmp_path):
    app = _src_tree(tmp_path)
    root = tmp_path / "inst" / "image"
    bom = _bom(tmp_path, DIR_BOM)
    copy_bom(bom, root)
    (app / "conf").chmod(0o700)
    rep = copy_bom(bom, root)
    assert rep.attrs_updated == 1 and rep.changed
    assert stat.S_IMODE((root / "opt/app/conf").stat().st_mode) == 0o700


def test_dry_run_predicts_the_real_run(tmp_path):
    _src_tree(tmp_path)
    build_hello(tmp_path / "hello", "gcc")
    bom = _bom(tmp_path, "includes: [base.yaml]\n" + DIR_BOM + "  - target: /bin\n    copy:\n"
               "      - files: [../hello]\n    createlinks:\n      - {src: hello, linkname: hi}\n")
    root = tmp_path / "inst" / "image"
    dry = copy_bom(bom, root, dry_run=True)
    real = copy_bom(bom, root)
    assert dry.changed and dry.operations == real.operations
    for f in ("files_copied", "bytes_copied", "links_created", "dirs_created", "up_to_date"):
        assert getattr(dry, f) == getattr(real, f), f
    assert dry.libraries == real.libraries and len(real.libraries) >= 2


def test_dry_run_predicts_attribute_updates_and_leaves_specials_alone(tmp_path):
    """After a first run: a file's and a dir's mode changed in the source, a FIFO in it.
    The dry run lists exactly what the real run then does (and never the FIFO)."""
    app = _src_tree(tmp_path)
    os.mkfifo(app / "conf" / "pipe")
    bom = _bom(tmp_path, DIR_BOM)
    root = tmp_path / "inst" / "image"
    copy_bom(bom, root)
    assert not os.path.lexists(root / "opt/app/conf/pipe")
    (app / "conf" / "a.conf").chmod(0o640)
    (app / "conf" / "deep").chmod(0o700)
    dry = copy_bom(bom, root, dry_run=True)
    assert stat.S_IMODE((root / "opt/app/conf/a.conf").stat().st_mode) != 0o640  # untouched
    real = copy_bom(bom, root)
    assert real.attrs_updated == 2 and dry.attrs_updated == 2
    assert dry.operations == real.operations
    assert not [op for op in dry.operations if "pipe" in op]
    again = copy_bom(bom, root, dry_run=True)
    assert not again.changed and again.operations == []


def test_root_inside_copied_dir_is_not_copied_into_itself(tmp_path):
    """`from: .` without dirs/files copies the whole instance dir, which holds the root."""
    inst = tmp_path / "inst"
    inst.mkdir()
    (inst / "Occlum.json").write_text("{}")
    bom = _bom(tmp_path, "targets:\n  - target: /inst_copy\n    copy:\n      - from: .\n")
    root = inst / "image"
    copy_bom(bom, root)
    rep = copy_bom(bom, root)
    assert (root / "inst_copy/Occlum.json").is_file()
    assert not (root / "inst_copy/image").exists()
    assert any("not copied into itself" in w for w in rep.warnings)


def test_autodep_false_copies_no_libraries(tmp_path):
    build_hello(tmp_path / "hello", "gcc")
    bom = _bom(tmp_path, "targets:\n  - target: /bin\n    copy:\n      - files:\n"
                         "          - {name: ../hello, autodep: false}\n")
    root = tmp_path / "inst" / "image"
    rep = copy_bom(bom, root)
    assert rep.libraries == [] and rep.files_copied == 1
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["bin", "bin/hello"]


def test_missing_library_in_dirs_entry_is_a_warning(tmp_path):
    import subprocess

    app = tmp_path / "app"
    app.mkdir()
    (tmp_path / "g.c").write_text("int g(void) { return 0; }\n")
    (tmp_path / "m.c").write_text("int g(void); int main(void) { return g(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "libgonex.so"), str(tmp_path / "g.c")],
                   check=True)
    subprocess.run(["gcc", "-o", str(app / "prog"), str(tmp_path / "m.c"), f"-L{tmp_path}", "-lgonex"],
                   check=True)
    (tmp_path / "libgonex.so").unlink()
    bom = _bom(tmp_path, "targets:\n  - target: /opt\n    copy:\n      - dirs: [../app]\n")
    (tmp_path / "inst").mkdir()
    r = run_cli("-f", str(bom), "--root", "image", cwd=tmp_path / "inst")
    assert r.returncode == 0, r.stderr
    assert "Warning: library libgonex.so needed by" in r.stderr
    image = tmp_path / "inst" / "image"
    assert (image / "opt/app/prog").is_file() and (image / "lib/x86_64-linux-gnu/libc.so.6").is_file()


def test_special_files_in_a_copied_dir_are_skipped_with_a_warning_each(tmp_path):
    """copy_bom and occlum build agree (issue 15 C): a FIFO, a socket or a device in a copied
    dir is not copied (an SEFS image cannot hold it; sefs-cli and the image stage skip it),
    with one warning per path, in the words the image stage uses."""
    import socket

    app = _src_tree(tmp_path)
    os.mkfifo(app / "pipe")
    os.mkfifo(app / "conf" / "deep" / "pipe2")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(app / "sock"))
    try:
        os.symlink("/dev/null", app / "devlink")  # unsafe: what it points to is copied
        root = tmp_path / "inst" / "image"
        r = run_cli("-f", str(_bom(tmp_path, DIR_BOM)), "--root", str(root))
    finally:
        s.close()
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if "not copied" in ln]
    want = {f"{app / n}: {kind}, not copied (an image cannot hold it: sefs-cli and occlum build "
            "skip it)" for n, kind in [("pipe", "a FIFO"), ("conf/deep/pipe2", "a FIFO"),
                                       ("sock", "a socket"), ("devlink", "a device node")]}
    assert {w.removeprefix("Warning: ") for w in warnings} == want, r.stderr
    assert len(warnings) == 4
    out = root / "opt" / "app"
    for n in ("pipe", "conf/deep/pipe2", "sock", "devlink"):
        assert not os.path.lexists(out / n), n
    assert (out / "conf" / "a.conf").is_file()
