"""Leaf hashing through the native ``libocclum-leaves.so`` (``ofs_leaves``, libos/src/fs).

Why: the format hashes every 4 KiB block on its own. With ``hashlib`` that is one call per
block, and each call takes and drops the interpreter lock, so two worker threads hand the
lock to each other 256 times per MiB: measured, two threads hashed *slower* than one
(0.75x). One ctypes call per chunk drops the lock once and hashes all its blocks in C, so
the workers really run on all cores. Same bytes either way (tests/image/test_image_native.py);
without the library (a wheel install, no ``make -C libos``) ``hashlib`` is used.

The library is loaded (ctypes import and dlopen, ~1.5 ms) only by builds with enough to
hash (writer.py calls :func:`load`); :func:`current` never loads it, so a one-file
rebuild does not pay for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .. import paths
from .format import LEAF_SIZE

LIB_NAME = "libocclum-leaves.so"
log = logging.getLogger("occlum.image")
_lock = threading.Lock()
_loaded = False
_fn: Callable[[memoryview, int], bytes] | None = None


def _load() -> Callable[[memoryview, int], bytes] | None:
    import ctypes

    path = paths.native_dir() / LIB_NAME
    try:
        lib = ctypes.CDLL(str(path))  # CDLL: calls release the GIL
    except OSError as e:
        log.debug("native leaf hashing unavailable (%s); using hashlib", e)
        return None
    f = lib.ofs_leaves
    f.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_char_p]
    f.restype = ctypes.c_int
    addr = ctypes.addressof

    def leaves(mv: memoryview, block: int) -> bytes:
        n = len(mv)
        out = ctypes.create_string_buffer((n + block - 1) // block * LEAF_SIZE)
        if f(addr((ctypes.c_char * n).from_buffer(mv)), n, block, out) != 0:
            raise MemoryError("ofs_leaves failed (OpenSSL)")
        return out.raw

    return leaves


def load() -> Callable[[memoryview, int], bytes] | None:
    """``leaves(writable_buffer, block)`` from the native library (loaded on the first
    call), or None without it."""
    global _loaded, _fn
    if not _loaded:
        with _lock:
            if not _loaded:
                _fn = _load()
                _loaded = True
    return _fn


def current() -> Callable[[memoryview, int], bytes] | None:
    """What :func:`load` returned, if it was called; never loads anything."""
    return _fn
