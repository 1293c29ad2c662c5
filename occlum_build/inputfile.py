"""Reading small input files (Occlum.json, key files) without trusting what the path names.

A path given as Occlum.json, image key or signing key may name ``/dev/zero`` (endless), a
FIFO without a writer (an ``open`` that blocks forever), a directory or a huge file.  Each is
refused with one line naming the file, before anything is read:

* the file must be a regular file (``stat`` first, links followed); it is then opened with
  ``O_NONBLOCK``, so a FIFO or device swapped in after the ``stat`` cannot block the open, and
  checked again with ``fstat`` on the descriptor actually read;
* it may hold at most ``limit`` bytes (Occlum.json 1 MiB, bom files 4 MiB, keys 64 KiB); at
  most ``limit + 1`` bytes are read, so a file that grows after the ``stat`` is caught too.

The limits of each kind of file are defined once, here, and documented in
docs/configuration.md, docs/build.md and docs/copy_bom.md.
"""

from __future__ import annotations

import os
import stat

from .errors import OcclumError
from .fsutil import special_kind

# Occlum.json and init_ra_conf.json: Occlum's template is ~1.5 KB; 1 MiB leaves room for any
# real environment list and still bounds what a mistaken path can make us read.
MAX_CONFIG_BYTES = 1 << 20
# copy_bom's bom files (the shipped python3.yaml is 2 KB) and the ELF loader config.
MAX_BOM_BYTES = 4 << 20
# Image keys are 48 bytes, RSA-3072 PEM keys ~2.5 KB; MAC files 47 bytes.
MAX_KEY_FILE_BYTES = 64 << 10
# Enclave files occlum-sgx-sign reads whole (Occlum's LibOS is tens of MiB) and their
# companions (Enclave.xml, signature and data files).
MAX_ENCLAVE_BYTES = 1 << 30


def _kind(mode: int) -> str:
    return "a directory" if stat.S_ISDIR(mode) else special_kind(mode)


def _size_text(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else \
        f"{n >> 10} KiB" if n % 1024 == 0 else f"{n} bytes"


def read_limited(path: str | os.PathLike[str], *, what: str, limit: int,
                 error: type[OcclumError] = OcclumError) -> bytes:
    """The bytes of the regular file ``path`` (at most ``limit`` of them), or ``error`` naming
    the file: missing, unreadable, not a regular file, or larger than ``limit``.  ``what`` says
    what the file is for ("image key file"); a missing file reads "<what> does not exist"."""
    where = os.fspath(path)
    try:
        st = os.stat(where)
    except FileNotFoundError:
        raise error(f"{what} does not exist", where=where) from None
    except OSError as e:
        raise error(f"cannot read {what}: {e.strerror}", where=where) from None
    _check(st, what, limit, where, error)
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        raise error(f"cannot read {what}: {e.strerror}", where=where) from None
    try:
        _check(os.fstat(fd), what, limit, where, error)  # what was opened, not what was stat-ed
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            b = os.read(fd, min(left, 1 << 16))
            if not b:
                break
            chunks.append(b)
            left -= len(b)
    except OSError as e:
        raise error(f"cannot read {what}: {e.strerror}", where=where) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise error(f"{what} holds more than {_size_text(limit)} (the limit)",
                    where=where)
    return data


def _check(st: os.stat_result, what: str, limit: int, where: str,
           error: type[OcclumError]) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} is {_kind(st.st_mode)}, not a regular file", where=where)
    if st.st_size > limit:
        raise error(f"{what} is {st.st_size} bytes, over the limit of {_size_text(limit)}",
                    where=where)
