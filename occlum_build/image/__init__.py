"""The image format: writer, reader, verifier, protected config (docs/formats/image.md).

Plain functions from inputs to outputs; no doit, no other stage imported.
"""

from __future__ import annotations

from .format import ImageError
from .macfile import read_mac_file, write_mac_file
from .protect import conf_mac, protect_config, unprotect_config
from .reader import ImageReader
from .verify import VerifyReport, verify_image
from .writer import ImageResult, build_image, compute_mac

__all__ = [
    "ImageError",
    "ImageReader",
    "ImageResult",
    "VerifyReport",
    "build_image",
    "compute_mac",
    "conf_mac",
    "protect_config",
    "read_mac_file",
    "unprotect_config",
    "verify_image",
    "write_mac_file",
]
