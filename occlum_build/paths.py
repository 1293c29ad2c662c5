"""Where things live in an Occlum instance (Occlum 0.31 layout) and in this package.

One place for every path convention; stages and the CLI import these names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .layout import (  # noqa: F401 (re-exported: paths is where callers look)
    BUILD_BIN,
    BUILD_DIR,
    BUILD_LIB,
    ELF_MAGIC,
    LIBOS_SIGNED,
    PAL_SO,
    RUN_BIN,
    STATUS_BUILT,
    STATUS_FILE,
    STATUS_INITIALIZED,
    STATUS_RUNNING,
    STATUS_UNFINISHED,
)

SGX_MODE_FILE = ".sgx_mode"

# Modes of the directories occlum-build and its runtime own, whatever the umask
# (docs/build.md, docs/runtime.md; libos/src/pal.c and upper_index.c use the same).
OUTPUT_DIR_MODE = 0o755  # build/ and what is under it, run/, run/mount, run/initfs
STATE_DIR_MODE = 0o700  # build/.state: occlum-build's bookkeeping
LAYER_DIR_MODE = 0o700  # run/mount/__ROOT, run/initfs/__ROOT: the writable layers
CONFIG_FILE = "Occlum.json"
INIT_RA_CONF = "init_ra_conf.json"

# Standard image directories created by `occlum init` (Occlum 0.31: sbin and ext2 included).
IMAGE_DIRS = ("bin", "lib", "lib64", "root", "host", "tmp", "dev", "proc", "etc", "sbin", "ext2")
INITFS_DIRS = ("bin", "lib", "dev", "proc", "etc")

PACKAGE_DIR = Path(__file__).resolve().parent
# Files shipped with the package.  In the source tree, data/ holds links to the top-level
# Occlum.json.template and bom/; a wheel carries copies of them.
DATA_DIR = PACKAGE_DIR / "data"
CONFIG_TEMPLATE = DATA_DIR / "Occlum.json.template"
REPO_DIR = PACKAGE_DIR.parent

# The native runtime built by `make -C libos` (docs/runtime.md).  OCCLUM_NATIVE_DIR overrides
# where the artifacts are looked up (an installed copy, a test build).
NATIVE_DIR_ENV = "OCCLUM_NATIVE_DIR"
NATIVE_BUILD_DIR = REPO_DIR / "libos" / "build"
LIBOS_SO = "libocclum-libos.so"
FS_BIN = "occlum-fs"

# Inside the init FS (as Occlum's init reads them).
INITFS_IMAGE_CONFIG = "etc/image_config.json"  # {"image_type": "encrypted" | "integrity-only"}
INITFS_IMAGE_KEY = "etc/image_key"  # only with --buildin-image-key
# Without --buildin-image-key, the SIM runtime takes the image key from the file this names
# (a stand-in for the KMS that Occlum's RA init programs contact; docs/runtime.md).
IMAGE_KEY_ENV = "OCCLUM_IMAGE_KEY_FILE"


# copy_bom (docs/copy_bom.md): templates shipped to users (base.yaml, the ELF loader config).
# The template dir is searched for included boms after every --include-dir.
BOM_TEMPLATE_DIR = DATA_DIR / "bom"  # a link to the top-level bom/ (copied into a wheel)
ELF_LOADER_CONFIG_ENV = "OCCLUM_ELF_LOADER_CONFIG"
ELF_LOADER_CONFIG_NAME = "occlum_elf_loader.config"


def elf_loader_config() -> Path:
    """The occlum_elf_loader.config copy_bom reads ($OCCLUM_ELF_LOADER_CONFIG overrides)."""
    return Path(os.environ.get(ELF_LOADER_CONFIG_ENV) or BOM_TEMPLATE_DIR / ELF_LOADER_CONFIG_NAME)


def native_dir() -> Path:
    """Directory holding the native runtime artifacts (occlum-run, the PAL and LibOS .so)."""
    return Path(os.environ.get(NATIVE_DIR_ENV) or NATIVE_BUILD_DIR)


@dataclass(frozen=True)
class Instance:
    """Paths of one instance directory."""

    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> Instance:
        return cls(Path(os.path.abspath(path)))

    # user-edited inputs
    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def image(self) -> Path:
        return self.root / "image"

    @property
    def initfs(self) -> Path:
        return self.root / "initfs"

    @property
    def status_file(self) -> Path:
        return self.root / STATUS_FILE

    @property
    def sgx_mode_file(self) -> Path:
        return self.root / SGX_MODE_FILE

    @property
    def init_ra_conf(self) -> Path:
        return self.root / INIT_RA_CONF

    # build outputs (Occlum 0.31 names)
    @property
    def build(self) -> Path:
        return self.root / BUILD_DIR

    @property
    def enclave_xml(self) -> Path:
        return self.build / "Enclave.xml"

    @property
    def image_config_json(self) -> Path:
        return self.build / "image_config.json"

    @property
    def sys_json(self) -> Path:
        return self.build / ".Occlum_sys.json"

    @property
    def sys_json_protected(self) -> Path:
        return self.build / ".Occlum_sys.json.protected"

    @property
    def image_out(self) -> Path:
        """The secure root FS image (Occlum: build/mount/__ROOT)."""
        return self.build / "mount" / "__ROOT"

    @property
    def image_mac_file(self) -> Path:
        return self.build / "mount" / ".ROOT_MAC"

    @property
    def initfs_out(self) -> Path:
        return self.build / "initfs" / "__ROOT"

    @property
    def initfs_mac_file(self) -> Path:
        return self.build / "initfs" / ".ROOT_MAC"

    @property
    def build_lib(self) -> Path:
        return self.build / BUILD_LIB

    @property
    def build_bin(self) -> Path:
        return self.build / BUILD_BIN

    @property
    def libos_unsigned(self) -> Path:
        return self.build_lib / "libocclum-libos.so"

    @property
    def libos_signed(self) -> Path:
        return self.build_lib / LIBOS_SIGNED

    @property
    def report(self) -> Path:
        return self.build / "report.json"

    @property
    def state_dir(self) -> Path:
        """occlum-build's own bookkeeping (doit db, manifests, lock)."""
        return self.build / ".state"

    @property
    def target_file(self) -> Path:
        """Which runtime the last build targeted (pipeline/target.py): our SIM runtime or a
        real Occlum install."""
        return self.state_dir / "target.json"

    @property
    def build_lock(self) -> Path:
        """Lock serializing builds of this instance (outside build/, which -f removes)."""
        return self.root / ".__occlum_build.lock"

    @property
    def dev_sign_key(self) -> Path:
        """Per-instance development signing key, created on first build without --sign-key."""
        return self.root / ".dev_sign_key.pem"

    # run-time state
    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def run_upper(self) -> Path:
        """The writable layer of the root FS (Occlum: run/mount/__ROOT)."""
        return self.run / "mount" / "__ROOT"

    @property
    def run_initfs_upper(self) -> Path:
        return self.run / "initfs" / "__ROOT"
