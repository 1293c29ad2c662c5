"""Validation of Occlum.json against the Occlum 0.31 schema (research §3), with locations.

Stricter than Occlum on purpose: unknown keys are errors (serde silently drops them, so a
typo such as ``user_space_max`` silently changes nothing), and values that Occlum would
accept at build time but that the LibOS rejects at run time (relative entry points,
malformed env lists, bad mount types) are caught here.  Every error is one line:
``file:line:col: json.path: what is wrong (what to do)``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError
from ..keys import HEX16_RE
from ..sizes import SizeError, parse_size
from . import limits
from .jsonc import Document, Path, path_text

U16_MAX = 0xFFFF
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF
MOUNT_TYPES = ("sefs", "hostfs", "ramfs", "unionfs", "devfs", "procfs", "ext2")
_HEX64 = re.compile(r"(?:0x)?([0-9a-fA-F]+)")
_ENV_NAME = re.compile(r"[^=\s\x00]+")

# Keys people carry over from other Occlum versions: say where they went.
_HINTS: dict[tuple[str | int | None, str], str] = {  # (parent key, key) -> hint
    ("metadata", "pkru"): "pkru moved to feature.pkru in Occlum 0.30",
    ("options", "index"): "Occlum's build drops mount option 'index'; remove it",
}
_PREVIEW_ONLY = ("autokey_policy", "sefs_cache_size", "async_sfs", "async_sfs_total_size",
                 "page_cache_size", "untrusted_unix_socks", "num_of_cpus")

Check = Callable[["Validator", Path, object], None]


class Validator:
    """Checks one parsed document; raises ConfigError at the first problem."""

    def __init__(self, doc: Document):
        self.doc = doc

    # -- errors --------------------------------------------------------------------------
    def error(self, path: Path, msg: str, *, key: bool = False) -> ConfigError:
        return ConfigError(f"{path_text(path)}: {msg}", where=self.doc.where(path, key=key))

    # -- primitive checks ----------------------------------------------------------------
    def obj(self, path: Path, value: object, fields: Mapping[str, tuple[Check, bool]]) -> dict[str, Any]:
        """An object with exactly the given fields (name -> (check, required))."""
        if not isinstance(value, dict):
            raise self.error(path, f"expected an object, found {_kind(value)}")
        for key in value:
            if key not in fields:
                raise self.error((*path, key), _unknown(path, key, fields), key=True)
        for key, (check, required) in fields.items():
            if key in value:
                check(self, (*path, key), value[key])
            elif required:
                raise self.error(path, f'missing key "{key}"')
        return value

    def string(self, path: Path, value: object) -> str:
        if not isinstance(value, str):
            raise self.error(path, f"expected a string, found {_kind(value)}")
        if "\x00" in value:
            raise self.error(path, "NUL character in string")
        return value

    def boolean(self, path: Path, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.error(path, f"expected true or false, found {_kind(value)}")
        return value

    def integer(self, path: Path, value: object, lo: int, hi: int, what: str = "") -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"expected an integer, found {_kind(value)}")
        if not lo <= value <= hi:
            raise self.error(path, f"{value} is out of range {lo}..{hi}{what}")
        return value

    def size(self, path: Path, value: object) -> int:
        try:
            n = parse_size(value)
        except SizeError as e:
            raise self.error(path, str(e)) from None
        if n > U64_MAX:
            raise self.error(path, f"{_show(value)} is too large (sizes must fit in 64 bits)")
        return n

    def array(self, path: Path, value: object) -> list[Any]:
        if not isinstance(value, list):
            raise self.error(path, f"expected an array, found {_kind(value)}")
        return value

    def abs_path(self, path: Path, value: object, what: str) -> str:
        s = self.string(path, value)
        if not s.startswith("/"):
            raise self.error(path, f"{_show(s)} is not an absolute path ({what} must start with '/')")
        return s

    def hex64(self, path: Path, value: object) -> int:
        s = self.string(path, value)
        m = _HEX64.fullmatch(s)
        if not m or int(m.group(1), 16) > U64_MAX:
            raise self.error(path, f"{_show(s)} is not a 64-bit hex id (e.g. \"0x1234567812345678\")")
        return int(m.group(1), 16)


# -- field checks (table-driven) ---------------------------------------------------------
def _size(v: Validator, p: Path, x: object) -> None:
    v.size(p, x)


def _threads(v: Validator, p: Path, x: object) -> None:
    v.integer(p, x, 1, limits.MAX_THREADS,
              f" (thread counts must be at least 1, and at most {limits.MAX_THREADS}, Occlum's own TCS "
              "maximum: signing and every boot measure each thread, ~1 ms each)")


def _u16(v: Validator, p: Path, x: object) -> None:
    v.integer(p, x, 0, U16_MAX, " (SGX stores it in 16 bits)")


def _bool(v: Validator, p: Path, x: object) -> None:
    v.boolean(p, x)


def _hex(v: Validator, p: Path, x: object) -> None:
    v.hex64(p, x)


def _ranged(hi: int, what: str) -> Check:
    def check(v: Validator, p: Path, x: object) -> None:
        v.integer(p, x, 0, hi, what)
    return check


def _id_pair(v: Validator, p: Path, x: object) -> None:
    v.obj(p, x, {"high": (_hex, True), "low": (_hex, True)})


def _entry_points(v: Validator, p: Path, x: object) -> None:
    for i, ep in enumerate(v.array(p, x)):
        v.abs_path((*p, i), ep, "entry points")


def _env_default(v: Validator, p: Path, x: object) -> None:
    for i, item in enumerate(v.array(p, x)):
        s = v.string((*p, i), item)
        name, eq, _ = s.partition("=")
        if not eq or not _ENV_NAME.fullmatch(name):
            raise v.error((*p, i), f"{_show(s)} is not NAME=value (trusted env entries set a value)")


def _env_untrusted(v: Validator, p: Path, x: object) -> None:
    for i, item in enumerate(v.array(p, x)):
        s = v.string((*p, i), item)
        if not _ENV_NAME.fullmatch(s):
            why = "names only, no '=value'" if "=" in s else "a bare variable name"
            raise v.error((*p, i), f"{_show(s)} is not a variable name (untrusted env lists {why})")


def _env(v: Validator, p: Path, x: object) -> None:
    v.obj(p, x, {"default": (_env_default, True), "untrusted": (_env_untrusted, True)})


RESOURCE_LIMITS = {
    "kernel_space_heap_size": (_size, True),
    "kernel_space_heap_max_size": (_size, False),
    "kernel_space_stack_size": (_size, True),
    "user_space_size": (_size, True),
    "user_space_max_size": (_size, False),
    "max_num_of_threads": (_threads, True),
    "init_num_of_threads": (_threads, False),
    "marshal_buffer_size": (_size, False),  # HYPER-mode builds only; ignored otherwise
}
PROCESS = {
    "default_stack_size": (_size, True),
    "default_heap_size": (_size, True),
    "default_mmap_size": (_size, True),
}
METADATA = {
    "product_id": (_u16, True),
    "version_number": (_u16, True),
    "debuggable": (_bool, True),
    "enable_kss": (_bool, True),
    "family_id": (_id_pair, True),
    "ext_prod_id": (_id_pair, True),
    "disable_log": (_bool, False),
}
FEATURE = {
    "amx": (_ranged(2, " (0 off, 1 on, 2 on if the CPU has it)"), False),
    "pkru": (_ranged(2, " (0 off, 1 on, 2 on if the CPU has it)"), False),
    "io_uring": (_ranged(16, " (number of io_uring instances, 0 = off)"), False),
    "enable_edmm": (_bool, False),
    "enable_posix_shm": (_bool, False),
}


def _mount_list(v: Validator, p: Path, x: object) -> None:
    for i, m in enumerate(v.array(p, x)):
        _mount(v, (*p, i), m)


def _mount_type(v: Validator, p: Path, x: object) -> None:
    s = v.string(p, x)
    if s not in MOUNT_TYPES:
        close = difflib.get_close_matches(s, MOUNT_TYPES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise v.error(p, f"{_show(s)} is not a mount type ({hint}use one of {', '.join(MOUNT_TYPES)})")


def _target(v: Validator, p: Path, x: object) -> None:
    v.abs_path(p, x, "mount targets")


def _source(v: Validator, p: Path, x: object) -> None:
    v.string(p, x)


def _mac(v: Validator, p: Path, x: object) -> None:
    s = v.string(p, x)
    if s and not HEX16_RE.fullmatch(s):
        raise v.error(p, f'{_show(s)} is not a MAC ("" to have the build fill it in, '
                         "or 16 hex bytes xx-xx-...)")


def _temporary(v: Validator, p: Path, x: object) -> None:
    v.boolean(p, x)


MOUNT_OPTIONS = {
    "MAC": (_mac, False),
    "layers": (_mount_list, False),
    "temporary": (_temporary, False),
    "cache_size": (_size, False),
    "disk_size": (_size, False),
}
MOUNT = {
    "type": (_mount_type, True),
    "target": (_target, True),
    "source": (_source, False),
    "options": (lambda v, p, x: v.obj(p, x, MOUNT_OPTIONS), False),
}


def _mount(v: Validator, p: Path, x: object) -> None:
    m = v.obj(p, x, MOUNT)
    kind = m["type"]
    opts = m.get("options", {})
    if kind in ("sefs", "hostfs") and "source" not in m:
        raise v.error(p, f'missing key "source" (a {kind} mount needs a source directory)')
    if kind == "unionfs" and "layers" not in opts:
        raise v.error((*p, "options") if "options" in m else p,
                      'missing key "layers" (a unionfs mount is a list of layers)')
    if kind != "unionfs" and "layers" in opts:
        raise v.error((*p, "options", "layers"), f"only unionfs mounts have layers (this one is {kind})",
                      key=True)
    if kind == "ext2" and "disk_size" not in opts:
        raise v.error((*p, "options") if "options" in m else p,
                      'missing key "disk_size" (an ext2 mount needs its disk size, at least 5GB)')
    if "disk_size" in opts:
        size = v.size((*p, "options", "disk_size"), opts["disk_size"])
        if size < limits.MIN_EXT2_DISK_SIZE:
            raise v.error((*p, "options", "disk_size"),
                          f'{_show(opts["disk_size"])} is too small (the minimum disk_size is 5GB)')


TOP = {
    "resource_limits": (lambda v, p, x: v.obj(p, x, RESOURCE_LIMITS), True),
    "process": (lambda v, p, x: v.obj(p, x, PROCESS), True),
    "entry_points": (_entry_points, True),
    "env": (_env, True),
    "metadata": (lambda v, p, x: v.obj(p, x, METADATA), True),
    "feature": (lambda v, p, x: v.obj(p, x, FEATURE), True),
    "mount": (_mount_list, True),
}


def validate(doc: Document) -> None:
    """Raise ConfigError (with file:line:col and JSON path) unless ``doc`` is a valid Occlum.json."""
    v = Validator(doc)
    data = v.obj((), doc.value, TOP)
    _cross_checks(v, data)


def _cross_checks(v: Validator, data: dict[str, Any]) -> None:
    rl = data["resource_limits"]
    p = ("resource_limits",)
    if "init_num_of_threads" in rl and rl["init_num_of_threads"] > rl["max_num_of_threads"]:
        raise v.error((*p, "init_num_of_threads"),
                      f"{rl['init_num_of_threads']} is more than max_num_of_threads "
                      f"({rl['max_num_of_threads']})")
    for init_key, max_key in (("kernel_space_heap_size", "kernel_space_heap_max_size"),
                              ("user_space_size", "user_space_max_size")):
        if max_key in rl and parse_size(rl[init_key]) > parse_size(rl[max_key]):
            raise v.error((*p, max_key), f"{_show(rl[max_key])} is smaller than {init_key} "
                                         f"({_show(rl[init_key])})")
    edmm = bool(data["feature"].get("enable_edmm", False))
    heap_max = limits.kernel_heap(
        parse_size(rl["kernel_space_heap_size"]),
        parse_size(rl["kernel_space_heap_max_size"]) if "kernel_space_heap_max_size" in rl else None,
        edmm)[1]
    _check_caches(v, ("mount",), data["mount"], heap_max)
    _check_macs_and_root(v, data["mount"])


def _check_caches(v: Validator, p: Path, mounts: list[dict[str, Any]], heap_max: int) -> None:
    for i, m in enumerate(mounts):
        opts = m.get("options", {})
        if "cache_size" in opts:
            cp = (*p, i, "options", "cache_size")
            size = parse_size(opts["cache_size"])
            if size < limits.MIN_CACHE_SIZE or size % limits.CACHE_PAGE_SIZE:
                raise v.error(cp, f"{_show(opts['cache_size'])} must be at least 192KB and a multiple of 4KB")
            if size > heap_max:
                raise v.error(cp, f"{_show(opts['cache_size'])} is larger than the kernel heap "
                                  f"({heap_max} bytes); raise kernel_space_heap_max_size")
        if "layers" in opts:
            _check_caches(v, (*p, i, "options", "layers"), opts["layers"], heap_max)


def root_layers(mounts: list[dict[str, Any]]) -> tuple[int | None, int | None]:
    """Index of the root unionfs in ``mounts`` and of its image layer, as Occlum finds them.

    Occlum takes the first mount with target "/" and type "unionfs", then its first layer
    with target "/", type "sefs" and an ``options.MAC`` key: that layer gets the image MAC.
    """
    for i, m in enumerate(mounts):
        if m["target"] == "/" and m["type"] == "unionfs":
            for j, layer in enumerate(m.get("options", {}).get("layers", [])):
                if layer["target"] == "/" and layer["type"] == "sefs" and "MAC" in layer.get("options", {}):
                    return i, j
            return i, None
    return None, None


def _check_macs_and_root(v: Validator, mounts: list[dict[str, Any]]) -> None:
    root, image = root_layers(mounts)
    if root is None:
        raise v.error(("mount",), 'no root file system: add a mount {"target": "/", "type": "unionfs"} '
                                  "with the image and run/ layers")
    if image is None:
        raise v.error(("mount", root, "options", "layers"),
                      'no image layer: one sefs layer at "/" needs options.MAC ("") for the image MAC')

    def walk(p: Path, ms: list[dict[str, Any]]) -> None:
        for i, m in enumerate(ms):
            opts = m.get("options", {})
            here = (*p, i)
            if opts.get("MAC") == "" and here != ("mount", root, "options", "layers", image):
                raise v.error((*here, "options", "MAC"),
                              'an empty MAC is filled in only for the root image layer '
                              f'({path_text(("mount", root, "options", "layers", image))}); '
                              "give the MAC or remove the key")
            if "layers" in opts:
                walk((*here, "options", "layers"), opts["layers"])

    walk(("mount",), mounts)


# -- message helpers ---------------------------------------------------------------------
def _unknown(parent: Path, key: str, fields: Mapping[str, object]) -> str:
    last = parent[-1] if parent else None
    if (last, key) in _HINTS:
        return f"unknown key {_show(key)} ({_HINTS[(last, key)]})"
    if key in _PREVIEW_ONLY:
        return f"unknown key {_show(key)} (it exists only in Occlum's 1.0.0-preview branch)"
    close = difflib.get_close_matches(key, list(fields), n=1)
    if close:
        return f"unknown key {_show(key)} (did you mean {_show(close[0])}?)"
    return f"unknown key {_show(key)} (allowed: {', '.join(fields)})"


def _kind(x: object) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return f"the number {x}"
    if isinstance(x, float):
        return f"the number {x!r}"
    if isinstance(x, str):
        return f"the string {_show(x)}"
    if isinstance(x, list):
        return "an array"
    return "an object"


def _show(s: object) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)
