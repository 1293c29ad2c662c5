"""A real Occlum install (`occlum build --occlum-dir DIR`, docs/build.md "Building for real
Occlum"): where its LibOS, PAL, programs and init are, and the file names and symlinks real
`occlum build` (tools/occlum + tools/occlum_build.mk) makes from them in an instance's build/.

An install is laid out as /opt/occlum is:

    include/occlum_version.h            OCCLUM_{MAJOR,MINOR,PATCH}_VERSION (a source tree
                                        keeps it in src/pal/include/ instead)
    build/lib/libocclum-libos.so.<ver>  the LibOS enclave (HW; _sim in SIM mode)
    build/lib/libocclum-pal.so.<ver>    the PAL (HW; _sim in SIM mode)
    build/bin/occlum-run, occlum_exec_client, occlum_exec_server
    build/bin/init                      the init FS's /bin/init

Nothing here runs those files: a build only copies, patches, signs and links them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

OCCLUM_DIR_ENV = "OCCLUM_DIR"
VERSION_HEADERS = ("include/occlum_version.h", "src/pal/include/occlum_version.h")
BIN_LINKS = ("occlum_exec_client", "occlum_exec_server", "occlum-run")  # build/bin symlinks
INIT = "build/bin/init"
SIGN_KEY = "etc/template/Enclave.pem"
_DEFINE = re.compile(rb"^\s*#\s*define\s+OCCLUM_(MAJOR|MINOR|PATCH)_VERSION\s+(\d+)\s*$", re.M)
MAX_HEADER = 64 << 10  # a version header is a few hundred bytes


class InstallError(ConfigError):
    """--occlum-dir does not name a usable Occlum install (exit 2); the message names the file."""


def _suffix(sgx_mode: str) -> str:
    return "" if sgx_mode == "HW" else "_sim"


@dataclass(frozen=True)
class OcclumInstall:
    root: Path
    version: str  # "0.30.1"
    sgx_mode: str  # "HW" or "SIM": which LibOS and PAL builds are used

    @property
    def major(self) -> str:
        return self.version.split(".", 1)[0]

    @property
    def libos_name(self) -> str:
        """build/lib/ name of the LibOS copy real Occlum patches and signs."""
        return f"libocclum-libos{_suffix(self.sgx_mode)}.so.{self.version}"

    @property
    def pal_name(self) -> str:
        return f"libocclum-pal{_suffix(self.sgx_mode)}.so.{self.version}"

    @property
    def libos(self) -> Path:
        return self.root / "build/lib" / self.libos_name

    @property
    def pal(self) -> Path:
        return self.root / "build/lib" / self.pal_name

    @property
    def init(self) -> Path:
        return self.root / INIT

    @property
    def sign_key(self) -> Path:
        """The install's development signing key, real `occlum build`'s default --sign-key."""
        return self.root / SIGN_KEY

    def bin(self, name: str) -> Path:
        return self.root / "build/bin" / name

    def libos_links(self) -> list[tuple[str, str]]:
        """(link name, target) in build/lib, in the order occlum_build.mk makes them."""
        return [(f"libocclum-libos.so.{self.major}", self.libos_name),
                ("libocclum-libos.so", f"libocclum-libos.so.{self.major}")]

    def pal_links(self) -> list[tuple[str, str]]:
        return [(f"libocclum-pal.so.{self.major}", self.pal_name),
                ("libocclum-pal.so", f"libocclum-pal.so.{self.major}")]

    @property
    def signing_input(self) -> str:
        """build/lib/ name real Occlum passes to sgx_sign -enclave (a symlink to the copy)."""
        return f"libocclum-libos.so.{self.major}"

    def describe(self) -> dict[str, str]:
        return {"kind": "occlum", "occlum_dir": str(self.root), "occlum_version": self.version,
                "sgx_mode": self.sgx_mode}


def read_version(root: Path) -> str:
    """The install's version from its occlum_version.h, as tools/occlum reads it."""
    for rel in VERSION_HEADERS:
        p = root / rel
        if not p.is_file():
            continue
        if p.stat().st_size > MAX_HEADER:
            raise InstallError(f"over {MAX_HEADER} bytes: not a version header", where=str(p))
        found = {k.decode(): v.decode() for k, v in _DEFINE.findall(p.read_bytes())}
        missing = [k for k in ("MAJOR", "MINOR", "PATCH") if k not in found]
        if missing:
            raise InstallError(f"no OCCLUM_{missing[0]}_VERSION define", where=str(p))
        return f"{int(found['MAJOR'])}.{int(found['MINOR'])}.{int(found['PATCH'])}"
    raise InstallError(f"not an Occlum install: {VERSION_HEADERS[0]} is missing "
                       f"(an install is laid out as /opt/occlum is)", where=str(root))


def _versions_of(d: Path, stem: str) -> list[str]:
    try:
        names = os.listdir(d)
    except OSError:
        return []
    tails = (n[len(stem) + 1:] for n in names if n.startswith(stem + "."))
    return sorted(t for t in tails if t[:1].isdigit())


def load_install(root: Path, sgx_mode: str) -> OcclumInstall:
    """Check that ``root`` holds every file a build takes from it; one error naming the first
    missing file (or a LibOS/PAL of another version than the header's)."""
    root = Path(root).absolute()
    if not root.is_dir():
        raise InstallError("--occlum-dir: not a directory", where=str(root))
    inst = OcclumInstall(root, read_version(root), sgx_mode)
    for path, stem in ((inst.libos, f"libocclum-libos{_suffix(sgx_mode)}.so"),
                       (inst.pal, f"libocclum-pal{_suffix(sgx_mode)}.so")):
        if path.is_file():
            continue
        others = _versions_of(path.parent, stem)
        if others:
            raise InstallError(f"version mismatch: the install is {inst.version} "
                               f"(occlum_version.h) but has {stem}.{', .'.join(others)}",
                               where=str(path.parent))
        raise InstallError(f"not an Occlum install for SGX mode {sgx_mode}: {path.name} is missing",
                           where=str(path))
    for p in [inst.bin(n) for n in BIN_LINKS] + [inst.init]:
        if not p.is_file():
            raise InstallError(f"not an Occlum install: {p.relative_to(root)} is missing",
                               where=str(p))
    return inst
