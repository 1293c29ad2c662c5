"""`occlum package`: the runtime-only contents of a built instance as a reproducible tar.gz.

Contents as Occlum 0.31 packs them (research/occlum_build.md section 5): Occlum.json,
build/bin, the signed LibOS, the PAL library, both images and their MACs, the protected
config, initfs/, the status and SGX mode files, and run/ as Occlum's package has it: the
empty layer directories run/mount/__ROOT/ and run/initfs/__ROOT/ only.  Nothing that only the
build needs (image/, Enclave.xml, the unsigned LibOS, build/.state, keys) goes in, and no
run-time state: not the writable layer the app wrote, not the instance secret
run/.sim_seal_key (it keys that layer), not the runtime lock, socket or log.  A package is
deployed to start fresh, as Occlum's is.

Reproducible: entries sorted by name, owner 0/0 without names, every mtime set to
SOURCE_DATE_EPOCH (0 when unset), permission bits normalized (directories and executables
0755, other files 0644; the build's umask does not leak in), gzip header without name and
with mtime 0.  The same instance content gives the same sha256.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

from . import log
from .config import load_config
from .errors import OcclumError, StateError
from .fsutil import atomic_open, remove_stale_temps
from .paths import STATUS_BUILT, STATUS_RUNNING, STATUS_UNFINISHED, Instance
from .runtime import hw_without_sgx_note

_log = log.get("package")

GZIP_LEVEL = 9


# run/ in a package: these directories, empty (Occlum's package has them so).
RUN_DIRS = ("run", "run/mount", "run/mount/__ROOT", "run/initfs", "run/initfs/__ROOT")
# Files that are secrets of one instance: never packed, wherever they turn up.
SECRET_NAMES = frozenset({".sim_seal_key", ".dev_sign_key.pem"})


def contents(inst: Instance) -> list[Path]:
    """The top-level paths whose trees go into the package (files or directories), in order;
    run/ is not one of them (see RUN_DIRS)."""
    b = inst.build
    items = [inst.config, b / "bin", b / "initfs", b / "mount", inst.sys_json_protected,
             inst.initfs, inst.status_file, inst.sgx_mode_file, inst.libos_signed]
    lib = inst.build_lib
    if lib.is_dir():
        items += sorted(p for p in lib.iterdir() if p.name.startswith("libocclum-pal"))
    return items


def _walk(top: Path) -> Iterator[Path]:
    if top.name in SECRET_NAMES:
        _log.warning("%s: not packaged (an instance secret)", top)
        return
    yield top
    if top.is_dir() and not top.is_symlink():
        for child in sorted(top.iterdir(), key=lambda p: p.name.encode()):
            yield from _walk(child)


def _mtime() -> int:
    raw = os.environ.get("SOURCE_DATE_EPOCH", "")
    try:
        return int(raw) if raw else 0
    except ValueError:
        raise OcclumError(f"SOURCE_DATE_EPOCH={raw!r} is not a number of seconds") from None


def check_packageable(inst: Instance, *, debug: bool) -> None:
    """Occlum's rules: built; not debuggable and not SIM unless --debug."""
    try:
        status = inst.status_file.read_text().strip()
    except FileNotFoundError:
        raise StateError(f"{inst.root} is not an Occlum instance") from None
    if status == STATUS_UNFINISHED:
        raise StateError(f"the last build of {inst.root} did not finish; run 'occlum build' first")
    if status not in (STATUS_BUILT, STATUS_RUNNING) or not inst.report.is_file():
        raise StateError(f"{inst.root} is not built; run 'occlum build' first")
    if debug:
        return
    if load_config(inst.config).debuggable:
        raise OcclumError("the instance is debuggable (metadata.debuggable in Occlum.json); "
                          "set it to false and rebuild for production, or use --debug",
                          where=str(inst.config))
    mode = inst.sgx_mode_file.read_text().strip() if inst.sgx_mode_file.exists() else "HW"
    if mode == "SIM":
        raise OcclumError("the instance is built in SIM mode; rebuild with --sgx-mode HW for "
                          "production, or use --debug", where=str(inst.sgx_mode_file))
    # A HW release packed where there is no SGX has never run as HW here: say so.
    if note := hw_without_sgx_note("packaging a release built"):
        _log.warning("%s", note)


def package_path(inst: Instance, name: str | None) -> tuple[Path, str]:
    """(archive path, top-level folder name): default <instance>/<instance name>.tar.gz;
    a bare name goes into the instance directory, as Occlum does."""
    name = name or inst.root.name
    base = Path(name).name
    folder = base[: -len(".tar.gz")] if base.endswith(".tar.gz") else base
    if not folder or folder in (".", ".."):
        raise OcclumError(f"invalid package name {name!r}")
    dest = Path(name if name.endswith(".tar.gz") else name + ".tar.gz")
    if not dest.is_absolute() and len(dest.parts) == 1:
        dest = inst.root / dest
    return dest.absolute(), folder


def make_package(inst: Instance, dest: Path, folder: str) -> int:
    """Write the package to ``dest`` atomically; return its size."""
    items = contents(inst)
    missing = [p for p in items if not os.path.lexists(p)]
    if missing:
        raise StateError(f"{missing[0]} is missing; rebuild the instance ('occlum build')")
    mtime = _mtime()
    entries: list[tuple[str, Path | None]] = [(f"{folder}/{d}", None) for d in RUN_DIRS]
    for top in items:
        for p in _walk(top):
            entries.append((f"{folder}/{p.relative_to(inst.root).as_posix()}", p))
    entries.sort(key=lambda e: e[0].encode())
    remove_stale_temps(dest.parent, target=dest.name)  # of killed runs (fsutil: dead writers only)
    with atomic_open(dest) as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                           compresslevel=GZIP_LEVEL) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                # The folder itself first, as `tar --transform` of the instance dir would.
                tar.addfile(_dir_info(folder, mtime))
                for arcname, src in entries:
                    if src is None:  # an empty directory of RUN_DIRS
                        tar.addfile(_dir_info(arcname, mtime))
                    else:
                        _add(tar, arcname, src, mtime)
    return dest.stat().st_size


def _dir_info(name: str, mtime: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    ti.mtime = mtime
    return ti


def _add(tar: tarfile.TarFile, arcname: str, p: Path, mtime: int) -> None:
    st = os.lstat(p)
    if stat.S_ISDIR(st.st_mode):
        tar.addfile(_dir_info(arcname, mtime))
        return
    ti = tarfile.TarInfo(arcname)
    ti.mtime = mtime
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    if stat.S_ISLNK(st.st_mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink(p)
        ti.mode = 0o777
        tar.addfile(ti)
    elif stat.S_ISREG(st.st_mode):
        ti.mode = 0o755 if st.st_mode & 0o111 else 0o644
        ti.size = st.st_size
        with open(p, "rb") as f:
            tar.addfile(ti, f)
        _log.log(log.TRACE, "packed %s (%d bytes) as %s", p, st.st_size, arcname)
    else:
        raise OcclumError("special file cannot be packaged", where=str(p))


def sha256_of(path: Path) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


__all__ = ["check_packageable", "contents", "make_package", "package_path", "sha256_of"]
