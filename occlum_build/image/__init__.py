"""Real Occlum's on-disk formats: SEFS images over Protected FS files, and the protected
config (docs/formats/sefs.md, protected-fs.md).

Plain functions from inputs to outputs; no doit, no other stage imported.
"""

from __future__ import annotations

from .macfile import read_mac_file, write_mac_file
from .pfs import PfsError
from .protect import conf_mac, protect_config, unprotect_config
from .sefs import KeepMtimes, MtimePolicy, SefsError, SefsSourceError, zip_tree
from .sefs_build import ImageResult, build_image, compute_mac, matches_mac
from .sefs_reader import SefsReader
from .verify import VerifyReport, verify_image

__all__ = [
    "ImageResult",
    "KeepMtimes",
    "MtimePolicy",
    "PfsError",
    "SefsError",
    "SefsReader",
    "SefsSourceError",
    "VerifyReport",
    "build_image",
    "compute_mac",
    "conf_mac",
    "matches_mac",
    "protect_config",
    "read_mac_file",
    "unprotect_config",
    "verify_image",
    "write_mac_file",
    "zip_tree",
]
