"""The image writer's native helpers, ``libocclum-build.so`` (libos/src/buildhelp, loaded
with ctypes): leaf hashing (``ofs_leaves``), sealing of encrypted blocks with their leaves
(``ofs_seal_blocks``: AES-GCM and SHA-256 per block, one call per chunk, for the same
reason as the leaves) and the tree walk (``ocb_walk``).

Leaves. Why: the format hashes every 4 KiB block on its own. With ``hashlib`` that is one call per
block, and each call takes and drops the interpreter lock, so two worker threads hand the
lock to each other 256 times per MiB: measured, two threads hashed *slower* than one
(0.75x). One ctypes call per chunk drops the lock once and hashes all its blocks in C, so
the workers really run on all cores. Same bytes either way (tests/image/test_image_native.py);
without the library (a wheel install, no ``make -C libos``) ``hashlib`` is used.

Walk. The walk of every build (scan.walk) lists and lstat-s each entry: in Python that was
~2.4 us per entry in a fresh process, about half of a one-file rebuild of a 3764-entry
tree; in C it is the system calls alone. It returns the walk scan.py would (tests compare
the two on the same trees); on any error it returns None and scan.py walks again in Python,
which reports the error.

The library is loaded (ctypes import and dlopen, ~1.5 ms) by the first walk of a process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .. import paths
from .directio import aligned_buffer
from .format import BLOCK_SIZE, LEAF_SIZE, TAG_SIZE

WALK_KEY_SIZE = 48  # scan.KEY.size (checked in scan.py)
SEAL_BUFFER = 256 * (BLOCK_SIZE + TAG_SIZE)  # one 1 MiB chunk, sealed

LIB_NAME = "libocclum-build.so"
log = logging.getLogger("occlum.image")
_lock = threading.Lock()
_loaded = False
_fn: Callable[[memoryview, int], bytes] | None = None
_walk: Callable[[bytes, int, int], tuple[list[bytes], bytes] | None] | None = None
_seal: Callable[[bytes, memoryview, int, int], tuple[memoryview, bytes]] | None = None


def _load() -> Callable[[memoryview, int], bytes] | None:
    global _walk
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

    w = lib.ocb_walk
    w.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p),
                  ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_void_p)]
    w.restype = ctypes.c_long
    free = lib.ocb_walk_free
    free.argtypes = [ctypes.c_void_p]
    free.restype = None
    string_at, byref = ctypes.string_at, ctypes.byref

    def walk(root: bytes, max_entries: int, max_path: int) -> tuple[list[bytes], bytes] | None:
        p, k, plen = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_size_t()
        n = w(root, max_entries, max_path, byref(p), byref(plen), byref(k))
        if n < 0:
            return None
        try:
            paths = string_at(p, plen.value).split(b"\0") if n else [b""]
            keys = string_at(k, n * WALK_KEY_SIZE) if n else b""
        finally:
            free(p)
            free(k)
        paths.pop()  # after the last NUL
        return paths, keys

    seal_c = lib.ofs_seal_blocks
    seal_c.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64, ctypes.c_uint64,
                       ctypes.c_void_p, ctypes.c_char_p]
    seal_c.restype = ctypes.c_int
    local = threading.local()

    def seal(fkey: bytes, mv: memoryview, first: int, size: int) -> tuple[memoryview, bytes]:
        n = len(mv)
        nblocks = (n + BLOCK_SIZE - 1) // BLOCK_SIZE
        stored = n + nblocks * TAG_SIZE
        # Reused (a fresh 1 MiB buffer per chunk faults in) and page-aligned (O_DIRECT)
        out = getattr(local, "out", None)
        if out is None or len(out) < stored:
            out = local.out = aligned_buffer(max(stored, SEAL_BUFFER))
        lv = ctypes.create_string_buffer(nblocks * LEAF_SIZE)
        if seal_c(fkey, addr((ctypes.c_char * n).from_buffer(mv)), n, first, size,
                  addr((ctypes.c_char * len(out)).from_buffer(out)), lv) != 0:
            raise MemoryError("ofs_seal_blocks failed (OpenSSL)")
        return out[:stored], lv.raw

    global _seal
    _seal = seal
    _walk = walk
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


def sealer() -> Callable[[bytes, memoryview, int, int], tuple[memoryview, bytes]] | None:
    """``seal(file_key, plain_buffer, first_block, file_size)`` -> (stored blocks, leaves),
    valid until this thread's next call; None unless a walk or load() loaded the library."""
    return _seal


def walker() -> Callable[[bytes, int, int], tuple[list[bytes], bytes] | None] | None:
    """``walk(root, max_entries, max_path)`` -> (paths, keys blob) or None (an error: walk
    in Python), from the native library (loaded on the first call); None without it."""
    load()
    return _walk
