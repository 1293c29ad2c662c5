"""The start-up fast path of `occlum run <program> [args]`.

Its start-up time is part of every run's latency (benchmarks/run_latency.py): the usual
path (argparse, logging, pathlib, runtime.py) costs ~20 ms before occlum-run starts.  When
the instance in the current directory is plainly built and ready, this execs its
build/bin/occlum-run with exactly the command line that runtime.run_argv makes, importing
only os and the name-only layout module.  Anything else (an option, a missing or unfinished
build, a runtime not copied into build/bin, a build for real Occlum) returns, and the usual path runs with its
checks and its one-line errors.
"""

from __future__ import annotations

import os

from .. import layout


def _not_corrupt(path: str) -> bool:
    """False for a file that exists and does not start as an ELF file does."""
    try:
        with open(path, "rb") as f:
            return f.read(len(layout.ELF_MAGIC)) == layout.ELF_MAGIC
    except OSError:
        return True  # absent or unreadable: the loader says so


def exec_if_ready(rest: list[str]) -> None:
    """Replace this process with occlum-run for ``occlum run <rest...>``, or return."""
    if not rest or rest[0].startswith("-"):
        return  # --help, --, options: argparse's to handle
    root = os.path.abspath(".")
    build = os.path.join(root, layout.BUILD_DIR)
    try:
        with open(os.path.join(root, layout.STATUS_FILE), encoding="utf-8") as f:
            status = f.read().strip()
    except (OSError, UnicodeDecodeError):
        return
    if status not in (layout.STATUS_BUILT, layout.STATUS_RUNNING):
        return
    if not os.path.isfile(os.path.join(build, layout.BUILD_LIB, layout.LIBOS_SIGNED)):
        return
    binary = os.path.join(build, layout.BUILD_BIN, layout.RUN_BIN)
    # A symlink is real Occlum's occlum-run (a build with --occlum-dir links build/bin into
    # the install; ours copies): the usual path refuses that instance with its reason.
    if os.path.islink(binary) or not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        return
    if not _not_corrupt(os.path.join(build, layout.BUILD_LIB, layout.PAL_SO)):
        return  # an empty or corrupt PAL: the usual path names it (runtime.check_runnable)
    try:
        os.execv(binary, [binary, "--instance", root, *rest])
    except OSError:
        return  # the usual path reports it
