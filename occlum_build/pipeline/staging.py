"""The init FS source tree: the user's initfs/ plus files the build generates.

Occlum copies ``image_config.json`` (and, with --buildin-image-key, the image key) INTO the
user's ``initfs/etc/`` before zipping it.  We never write to initfs/: the build mirrors it into
build/.state/initfs-src with hard links (same inode, so the image stage's stat-keyed
manifest sees unchanged files as unchanged; a copy is the fallback across file systems) and
writes the generated files into the mirror only.  A user file at a generated path (an
``etc/image_key`` left by Occlum, say) is shadowed by the generated one or left out.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from .. import log, paths
from ..errors import OcclumError
from ..fsutil import atomic_write

_log = log.get("pipeline")


def _special(path: Path, st: os.stat_result) -> OcclumError:
    kind = ("socket" if stat.S_ISSOCK(st.st_mode) else "FIFO" if stat.S_ISFIFO(st.st_mode)
            else "device node" if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode) else "special file")
    return OcclumError(f"{kind} cannot go into an image; remove it", where=str(path))


def stage_initfs(src: Path, dst: Path, generated: dict[str, tuple[bytes, int]],
                 exclude: tuple[str, ...] = (paths.INITFS_IMAGE_KEY,)) -> None:
    """Make ``dst`` mirror ``src`` plus ``generated`` ({relative path: (bytes, mode)}).

    Paths in ``exclude`` are never taken from ``src`` (an image key left in initfs/etc by an
    Occlum build must not reach the init FS unless --buildin-image-key generates it)."""
    if not src.is_dir():
        raise OcclumError(f"{src} does not exist; 'occlum init' creates it with the init program")
    dst.mkdir(parents=True, exist_ok=True)
    _chmod_if_needed(dst, os.stat(src).st_mode)
    for rel in exclude:
        if rel not in generated and os.path.lexists(src / rel):
            _log.warning("%s is left out of the init FS (the build adds the image key only with "
                         "--buildin-image-key)", src / rel)
    gen_paths = set(generated) | set(exclude)
    gen_dirs = {str(Path(p).parent) for p in generated}
    _sync_dir(src, dst, "", gen_paths, gen_dirs)
    for rel in exclude:
        if rel not in generated:
            _remove(dst / rel)
    for rel, (data, mode) in sorted(generated.items()):
        target = dst / rel
        parent = target.parent
        if not parent.is_dir():
            parent.mkdir(parents=True, exist_ok=True)
            os.chmod(parent, 0o755)
        try:
            same = target.read_bytes() == data and (os.stat(target).st_mode & 0o777) == mode
        except OSError:
            same = False
        if not same:
            atomic_write(target, data, mode=mode)


def _sync_dir(src: Path, dst: Path, rel: str, gen_paths: set[str], gen_dirs: set[str]) -> None:
    wanted: set[str] = set()
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        r = f"{rel}/{e.name}" if rel else e.name
        if r in gen_paths:
            continue  # shadowed by a generated file
        wanted.add(e.name)
        st = e.stat(follow_symlinks=False)
        out = dst / e.name
        if stat.S_ISDIR(st.st_mode):
            if out.is_symlink() or (out.exists() and not out.is_dir()):
                out.unlink()
            out.mkdir(exist_ok=True)
            _chmod_if_needed(out, st.st_mode)
            _sync_dir(Path(e.path), out, r, gen_paths, gen_dirs)
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(e.path)
            if out.is_symlink() and os.readlink(out) == target:
                continue
            _remove(out)
            os.symlink(target, out)
        elif stat.S_ISREG(st.st_mode):
            try:
                if os.path.samefile(out, e.path):
                    continue
            except OSError:
                pass
            _remove(out)
            try:
                os.link(e.path, out)
            except OSError:
                shutil.copy2(e.path, out)
        else:
            raise _special(Path(e.path), st)
    for name in os.listdir(dst):
        r = f"{rel}/{name}" if rel else name
        if name not in wanted and r not in gen_paths and r not in gen_dirs:
            _remove(dst / name)


def _chmod_if_needed(path: Path, mode: int) -> None:
    """chmod only on a difference: a chmod changes the ctime even when the mode stays, which
    would make the mirror's tree stamp differ on every build and re-hash the init FS."""
    if os.lstat(path).st_mode & 0o777 != mode & 0o777:
        os.chmod(path, mode & 0o777)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()
