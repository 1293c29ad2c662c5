"""Instance file names that the `occlum run` fast path needs before anything else is imported.

This module imports nothing: `occlum run` start-up is part of every run's latency
(cli/fastrun.py).  paths.py builds the Instance paths from these names; use paths.py
everywhere else.
"""

STATUS_FILE = ".__occlum_status"
# The words the status file holds: Occlum's three, plus ours for a build that replaced some
# outputs in build/ and then failed or was killed (build/ then mixes two builds).
STATUS_INITIALIZED = "initialized"
STATUS_BUILT = "built"
STATUS_RUNNING = "running"
STATUS_UNFINISHED = "unfinished"

BUILD_DIR = "build"
BUILD_LIB = "lib"  # under BUILD_DIR
BUILD_BIN = "bin"  # under BUILD_DIR
LIBOS_SIGNED = "libocclum-libos.signed.so"  # in BUILD_DIR/BUILD_LIB
RUN_BIN = "occlum-run"  # the native runtime's launcher, copied into BUILD_DIR/BUILD_BIN
PAL_SO = "libocclum-pal.so"  # the PAL library occlum-run loads, copied into BUILD_DIR/BUILD_LIB
# The first bytes of every native file: a copy without them (empty, truncated to nothing,
# overwritten) cannot run, and the fast path leaves it to the usual path to say so.
ELF_MAGIC = b"\x7fELF"
