"""Helpers to run occlum-fs (the native root-FS server) from tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from occlum_build.paths import FS_BIN, REPO_DIR, native_dir


def occlum_fs_binary() -> Path:
    """Path of occlum-fs, building libos/ once if it is missing."""
    binary = native_dir() / FS_BIN
    if not binary.exists():
        subprocess.run(["make", "-C", str(REPO_DIR / "libos"), "-s"], check=True)
    return binary


def can_mount_fuse() -> bool:
    return os.geteuid() == 0 and os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None


class Mount:
    """occlum-fs serving an image (and a writable layer) at a mountpoint, in the foreground."""

    def __init__(self, image_dir: Path, mac_file: Path, upper: Path | None, mnt: Path,
                 *extra: str) -> None:
        mnt.mkdir(parents=True, exist_ok=True)
        self.mnt = mnt
        r, w = os.pipe()
        args = [str(occlum_fs_binary()), "--ready-fd", str(w), *extra, str(image_dir),
                str(mac_file), str(upper) if upper else "-", str(mnt)]
        self.proc = subprocess.Popen(args, pass_fds=(w,), stderr=subprocess.PIPE)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            ready = f.read(1)  # one byte once mounted; EOF if occlum-fs exits first
        self.ready = ready == b"1"
        self.stderr = ""

    def unmount(self) -> int:
        if self.ready:
            for _ in range(50):  # EBUSY while the kernel still holds a reference
                if subprocess.run(["fusermount3", "-u", str(self.mnt)],
                                  capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
        _, err = self.proc.communicate(timeout=60)
        self.stderr = err.decode(errors="replace")
        return self.proc.returncode

    def __enter__(self) -> Mount:
        if not self.ready:
            self.unmount()
            raise RuntimeError(f"occlum-fs did not mount: {self.stderr.strip()}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmount()
