"""`occlum new` / `occlum init` / `occlum status`: create and inspect instance directories.

The layout follows Occlum 0.31 (research/occlum_build.md section 1), adapted to a Debian host:
the musl loader and libc come from Debian's ``musl`` package and the glibc loader and core
libraries from the host, placed where Debian-built programs look for them inside the chroot
(docs/instance.md explains every difference from Occlum).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import log
from .errors import OcclumError, OutputError, StateError
from .fsutil import atomic_write
from .paths import (
    CONFIG_TEMPLATE,
    IMAGE_DIRS,
    INITFS_DIRS,
    STATUS_BUILT,
    STATUS_INITIALIZED,
    STATUS_RUNNING,
    Instance,
)

_log = log.get("instance")

HOSTS = "127.0.0.1   localhost\n"  # Occlum writes three spaces
INIT_RA_KINDS = ("grpc_ratls", "aecs")

# Host files copied into every new image: (host path, path inside image/, required?)
MUSL_FILES = (
    ("/usr/lib/x86_64-linux-musl/libc.so", "lib/ld-musl-x86_64.so.1", False),
    ("/usr/lib/x86_64-linux-musl/libc.so", "lib/libc.so", False),
)
GLIBC_LIBDIR = "lib/x86_64-linux-gnu"  # Debian's multiarch dir: found by ld.so without a cache
GLIBC_FILES = (
    ("/lib64/ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2", True),
    ("/lib/x86_64-linux-gnu/libc.so.6", f"{GLIBC_LIBDIR}/libc.so.6", True),
    ("/lib/x86_64-linux-gnu/libm.so.6", f"{GLIBC_LIBDIR}/libm.so.6", True),
    ("/lib/x86_64-linux-gnu/libpthread.so.0", f"{GLIBC_LIBDIR}/libpthread.so.0", False),
    ("/lib/x86_64-linux-gnu/libdl.so.2", f"{GLIBC_LIBDIR}/libdl.so.2", False),
    ("/usr/lib/x86_64-linux-gnu/libstdc++.so.6", f"{GLIBC_LIBDIR}/libstdc++.so.6", False),
    ("/lib/x86_64-linux-gnu/libgcc_s.so.1", f"{GLIBC_LIBDIR}/libgcc_s.so.1", False),
)

# init_ra_conf.json written for --init-ra (fields per Occlum's templates, research section 7).
_RA_CONF = {
    "grpc_ratls": {
        "kms_server": "localhost:50051",
        "kms_keys": [{"key": "demo_key", "path": "/etc/saved_key"}],
        "ra_config": {
            "verify_mr_enclave": "on", "verify_mr_signer": "on", "verify_isv_prod_id": "on",
            "verify_isv_svn": "on", "verify_config_svn": "off", "verify_enclave_debuggable": "on",
            "sgx_mrs": [{"mr_enclave": "", "mr_signer": "", "isv_prod_id": 0, "isv_svn": 0,
                         "config_svn": 0, "debuggable": False}],
        },
    },
    "aecs": {
        "service": "service1",
        "kms_server": "localhost:19527",
        "ua_env_pccs_url": "https://localhost:8081/sgx/certification/v3/",
        "kms_keys": [{"key": "demo_key", "path": "/etc/saved_key", "service": "service1"}],
        "ra_config": {"ua_policy_file": "", "ua_policy_id": ""},
    },
}


@dataclass(frozen=True)
class TemplateValues:
    """The values `occlum new` renders into Occlum.json.template."""

    user_space_size: str = "300MB"
    max_num_of_threads: int = 32
    debuggable: bool = True
    product_id: int = 0
    version_number: int = 0
    env_default: tuple[str, ...] = ("OCCLUM=yes",)


def render_config(values: TemplateValues = TemplateValues()) -> str:
    """Render Occlum.json.template to plain JSON text (no comments, so jq edits work)."""
    import jinja2  # here, not at the top: every command imports this module, few render

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    text = env.from_string(CONFIG_TEMPLATE.read_text()).render(**values.__dict__)
    json.loads(text)  # the template must always render to valid JSON
    return text


def new_instance(path: str | os.PathLike[str], init_ra: str | None = None) -> Instance:
    """`occlum new`: create ``path`` and initialise it; the directory appears complete or not at
    all.  Missing parent directories are created first, as Occlum's ``mkdir -p`` does (and
    removed again if the instance cannot be made)."""
    dest = Path(os.path.abspath(path))
    if os.path.lexists(dest):
        raise StateError(f'destination "{dest}" already exists')
    made = _make_parents(dest.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    except OSError as e:
        _remove_made(made)
        raise OutputError(f"cannot create the instance: {e.strerror}", where=str(dest)) from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the instance gets the usual mode
    try:
        init_instance(tmp, init_ra)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_made(made)
        raise
    return Instance(dest)


def _make_parents(parent: Path) -> list[Path]:
    """``mkdir -p parent`` (modes from the umask, as mkdir's); the directories created, top
    first.  A file in the way is bad input."""
    missing: list[Path] = []
    p = parent
    while not p.is_dir():
        if os.path.lexists(p):
            raise OcclumError(f'cannot create the instance: "{p}" is not a directory')
        missing.append(p)
        p = p.parent
    made: list[Path] = []
    for d in reversed(missing):
        try:
            os.mkdir(d)
        except FileExistsError:
            continue
        except OSError as e:
            _remove_made(made)
            raise OutputError(f"cannot create the directory: {e.strerror}", where=str(d)) from None
        made.append(d)
    return made


def _remove_made(made: list[Path]) -> None:
    for d in reversed(made):
        try:
            os.rmdir(d)
        except OSError:
            return


def init_instance(path: str | os.PathLike[str], init_ra: str | None = None) -> Instance:
    """`occlum init`: lay out an instance in an existing directory."""
    inst = Instance.at(path)
    if init_ra is not None and init_ra not in INIT_RA_KINDS:
        raise OcclumError(f"--init-ra: unknown kind {init_ra!r} (use grpc_ratls or aecs)")
    if inst.status_file.exists():
        raise StateError(f"{inst.root} has been initialized as an Occlum instance already")
    inst.root.mkdir(parents=True, exist_ok=True)
    for d in IMAGE_DIRS:
        (inst.image / d).mkdir(parents=True, exist_ok=True)
    (inst.image / GLIBC_LIBDIR).mkdir(parents=True, exist_ok=True)
    for d in INITFS_DIRS:
        (inst.initfs / d).mkdir(parents=True, exist_ok=True)
    for base in (inst.image, inst.initfs):
        (base / "etc" / "hosts").write_text(HOSTS)
        _copy_host("/etc/localtime", base / "etc" / "localtime", required=False)
    for host, rel, required in MUSL_FILES + GLIBC_FILES:
        _copy_host(host, inst.image / rel, required)
    if init_ra:
        atomic_write(inst.init_ra_conf, json.dumps(_RA_CONF[init_ra], indent=4) + "\n")
    atomic_write(inst.config, render_config(), mode=0o644)
    atomic_write(inst.status_file, STATUS_INITIALIZED + "\n")
    return inst


def read_status(path: str | os.PathLike[str]) -> str:
    """`occlum status`: the instance's state word (initialized, built, running)."""
    inst = Instance.at(path)
    try:
        return inst.status_file.read_text().strip()
    except FileNotFoundError:
        raise StateError(f"{inst.root} is not an Occlum instance (no {inst.status_file.name}); "
                         "run 'occlum init' or 'occlum new <dir>'") from None


def status_word(path: str | os.PathLike[str]) -> str:
    """`occlum status`: the build state of .__occlum_status (initialized, unfinished), or for
    a built instance its run-time state, asked of the runtime lock: running, crashed, stopped,
    else built (docs/instance.md, "States")."""
    from . import runtime

    word = read_status(path)
    inst = Instance.at(path)
    if runtime.lock_held(inst):
        return runtime.STATE_RUNNING
    if word in (STATUS_BUILT, STATUS_RUNNING):
        # "running" in the file (Occlum writes it at start) says nothing once no runtime is alive.
        return runtime.runtime_state(inst) or STATUS_BUILT
    return word


def require_instance(path: str | os.PathLike[str]) -> Instance:
    """The instance at ``path``, or a StateError telling the user how to make one."""
    read_status(path)
    return Instance.at(path)


def _copy_host(src: str, dst: Path, required: bool) -> None:
    if not os.path.exists(src):
        if required:
            raise OcclumError(f"host file {src} is missing; it is copied into every new image")
        _log.debug("skipping %s (not on this host)", src)
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)  # follows links: the image gets the file, not a host link
    os.chmod(dst, os.stat(src).st_mode & 0o777)
    _log.log(log.TRACE, "copied %s -> %s", src, dst)
