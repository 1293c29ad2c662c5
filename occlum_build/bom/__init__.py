"""copy_bom: bom files to an image tree, ELF dependencies resolved, copied incrementally.

Public API: :func:`copy_bom` and :func:`resolve_deps` (docs/copy_bom.md).
"""

from .elfdeps import Resolver, resolve_deps
from .loaders import LoaderConfig, load_loader_config
from .run import CopyReport, copy_bom

__all__ = ["CopyReport", "LoaderConfig", "Resolver", "copy_bom", "load_loader_config", "resolve_deps"]
