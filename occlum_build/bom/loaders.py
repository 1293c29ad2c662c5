"""occlum_elf_loader.config: which loader an ELF runs with, and where its libraries land.

Format (Occlum's, one line per loader):  ``<loader path> <colon-separated library dirs>``.
Blank lines and ``#`` comments are allowed here (an extension: Occlum's parser panics on a line
of one word, so the shipped file has loader lines only).  As in Occlum, the loader's own
directory is put in front of the listed directories; together they are the LD_LIBRARY_PATH the
loader searches first, and a library found in one of them lands in the loader's directory in
the image (docs/copy_bom.md, "Where libraries land").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..errors import BomError
from ..inputfile import MAX_BOM_BYTES, read_limited

GLIBC = "glibc"
MUSL = "musl"


def loader_kind(path: str) -> str:
    """musl loaders are named ld-musl-<arch>.so.1; everything else is treated as glibc."""
    return MUSL if os.path.basename(path).startswith("ld-musl-") else GLIBC


@dataclass(frozen=True)
class Loader:
    """One configured loader: the host file copied into the image and its search dirs."""

    path: str  # host path of the loader (copied to the ELF's PT_INTERP path in the image)
    lib_dirs: tuple[str, ...]  # loader dir first, then the configured dirs (LD_LIBRARY_PATH)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def dir(self) -> str:
        return os.path.dirname(self.path)

    @property
    def kind(self) -> str:
        return loader_kind(self.path)


@dataclass(frozen=True)
class LoaderConfig:
    """The parsed config: loaders by file name (the basename of an ELF's PT_INTERP)."""

    loaders: tuple[Loader, ...]
    source: str = "<builtin>"

    def for_interp(self, interp: str) -> Loader:
        """The loader to use for an ELF whose PT_INTERP is ``interp``.

        A configured loader with the same file name wins (Occlum substitutes its own loader
        the same way); otherwise the interpreter itself is the loader, searching only its
        own directory plus the defaults of its kind.
        """
        base = os.path.basename(interp)
        for ld in self.loaders:
            if ld.name == base:
                return ld
        return Loader(interp, (os.path.dirname(interp),))

    def of_kind(self, kind: str) -> Loader | None:
        for ld in self.loaders:
            if ld.kind == kind:
                return ld
        return None


def parse_loader_config(text: str, source: str) -> LoaderConfig:
    loaders: list[Loader] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 2 or not parts[0].startswith("/"):
            raise BomError("expected '<absolute loader path> <dir>:<dir>:...'", where=f"{source}:{lineno}")
        loader = parts[0]
        dirs = [os.path.dirname(loader)]
        if len(parts) == 2:
            for d in parts[1].split(":"):
                d = d.rstrip("/") or "/"
                if d and d not in dirs:
                    dirs.append(d)
        loaders.append(Loader(loader, tuple(dirs)))
    return LoaderConfig(tuple(loaders), source)


def load_loader_config(path: str | os.PathLike[str] | None = None) -> LoaderConfig:
    """Read the loader config: ``path``, else $OCCLUM_ELF_LOADER_CONFIG, else the shipped one."""
    p = Path(path) if path else paths.elf_loader_config()
    try:
        text = read_limited(p, what="ELF loader config", limit=MAX_BOM_BYTES, error=BomError).decode()
    except BomError as e:
        e.message += f" (set {paths.ELF_LOADER_CONFIG_ENV} to a readable file)"
        raise
    except UnicodeDecodeError:
        raise BomError("the ELF loader config is not UTF-8 text", where=str(p)) from None
    return parse_loader_config(text, str(p))
