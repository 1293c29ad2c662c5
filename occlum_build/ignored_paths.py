"""Image paths that Occlum's images use and programs in an occlum-build instance never read.

Occlum ships its own glibc, built with the prefix /opt/occlum/glibc, so its glibc programs read
the timezone from /opt/occlum/glibc/etc/localtime (the Occlum manual's Q&A on timezones).  Our
instances use Debian's glibc (docs/instance.md), which reads /etc/localtime, as musl
(occlum-gcc) programs do; TZ in the environment overrides both.  A file written only to the
Occlum path would be silently ignored: copy_bom and `occlum build` say so
(docs/runtime.md, "Timezones").
"""

from __future__ import annotations

import os

# image path -> (the path that is read instead, why)
IGNORED = {
    "/opt/occlum/glibc/etc/localtime": (
        "/etc/localtime",
        "glibc programs here use Debian's glibc, which reads /etc/localtime (as musl programs "
        "do), not Occlum's /opt/occlum/glibc"),
}


def _same_file(a: str, b: str) -> bool:
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            return fa.read(1 << 20) == fb.read(1 << 20)
    except OSError:
        return False


def notes(root: str | os.PathLike[str], written: set[str] | None = None) -> list[str]:
    """Warnings for the ignored paths present under ``root`` (an image directory), or only for
    those in ``written`` (image paths a copy_bom run writes).  A file that holds what the path
    read instead holds loses nothing and is not reported."""
    out = []
    for path, (used, why) in IGNORED.items():
        if written is not None and path not in written:
            continue
        host = os.path.join(os.fspath(root), path.lstrip("/"))
        if written is None and not os.path.isfile(host):
            continue
        if _same_file(host, os.path.join(os.fspath(root), used.lstrip("/"))):
            continue
        out.append(f"{host} is ignored at run time: {why}; write {used} instead "
                   "(docs/runtime.md, \"Timezones\")")
    return out
