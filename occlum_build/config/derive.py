"""build/Enclave.xml, build/.Occlum_sys.json and build/image_config.json, byte for byte as
Occlum 0.31 writes them (research: occlum_build.md §2.2a, §2.4, §2.5).

The bytes matter: .Occlum_sys.json's MAC is patched into the LibOS and so is measured into
MRENCLAVE, and Enclave.xml decides the enclave layout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..keys import HEX16_RE
from .model import OcclumConfig
from .schema import root_layers

# gen_internal_conf's MiscSelect/MiscMask pairs.
MISC_EDMM = ("1", "0xFFFFFFFF")
MISC_NON_EDMM = ("0", "0")
TCS_POLICY = 0  # Occlum >= 0.31 (1 in 0.29/0.30)

# Enclave.xml elements in the order serde-xml-rs writes gen_internal_conf's struct.
# Each getter takes (cfg, limits, edmm) and returns a value (None = element omitted).
_Getter = Callable[[OcclumConfig, Any, bool], "int | str | None"]
ENCLAVE_XML_FIELDS: tuple[tuple[str, _Getter], ...] = (
    ("ProdID", lambda c, lim, e: c.product_id),
    ("ISVSVN", lambda c, lim, e: c.version_number),
    ("StackMaxSize", lambda c, lim, e: lim.stack_size),
    ("StackMinSize", lambda c, lim, e: lim.stack_size),
    ("HeapInitSize", lambda c, lim, e: lim.heap_init),
    ("HeapMaxSize", lambda c, lim, e: lim.heap_max),
    ("HeapMinSize", lambda c, lim, e: lim.heap_init),
    ("TCSNum", lambda c, lim, e: lim.tcs_init),
    ("TCSMaxNum", lambda c, lim, e: lim.tcs_max),
    ("TCSMinPool", lambda c, lim, e: lim.tcs_min_pool),
    ("TCSPolicy", lambda c, lim, e: TCS_POLICY),
    ("DisableDebug", lambda c, lim, e: 0 if c.debuggable else 1),
    ("MiscSelect", lambda c, lim, e: (MISC_EDMM if e else MISC_NON_EDMM)[0]),
    ("MiscMask", lambda c, lim, e: (MISC_EDMM if e else MISC_NON_EDMM)[1]),
    ("ReservedMemMaxSize", lambda c, lim, e: lim.reserved_mem),
    ("ReservedMemMinSize", lambda c, lim, e: lim.reserved_mem),
    ("ReservedMemInitSize", lambda c, lim, e: lim.reserved_mem),
    ("ReservedMemExecutable", lambda c, lim, e: 1),
    ("UserRegionSize", lambda c, lim, e: lim.user_region),
    ("EnableKSS", lambda c, lim, e: 1 if c.enable_kss else 0),
    ("ISVEXTPRODID_H", lambda c, lim, e: c.ext_prod_id[0] if c.enable_kss else 0),
    ("ISVEXTPRODID_L", lambda c, lim, e: c.ext_prod_id[1] if c.enable_kss else 0),
    ("ISVFAMILYID_H", lambda c, lim, e: c.family_id[0] if c.enable_kss else 0),
    ("ISVFAMILYID_L", lambda c, lim, e: c.family_id[1] if c.enable_kss else 0),
    ("PKRU", lambda c, lim, e: c.pkru),
    ("AMX", lambda c, lim, e: c.amx),
)


def enclave_xml(cfg: OcclumConfig, *, edmm_platform: bool = False) -> bytes:
    """build/Enclave.xml: one line, no declaration, decimal numbers, no trailing newline.

    EDMM is on when ``edmm_platform`` (Occlum: INSTANCE_IS_FOR_EDMM_PLATFORM=YES, HW mode
    only) or feature.enable_edmm is set.
    """
    edmm = edmm_platform or cfg.edmm
    lim = cfg.limits(edmm_platform=edmm_platform)
    parts = ["<EnclaveConfiguration>"]
    for name, get in ENCLAVE_XML_FIELDS:
        value = get(cfg, lim, edmm)
        if value is not None:
            parts.append(f"<{name}>{value}</{name}>")
    parts.append("</EnclaveConfiguration>")
    return "".join(parts).encode()


def sys_json(cfg: OcclumConfig, *, image_mac: str, initfs_mac: str,
             edmm_platform: bool = False) -> bytes:
    """build/.Occlum_sys.json as serde_json::to_string_pretty writes it (no trailing newline).

    Struct-typed parts keep Occlum's field order; parts Occlum holds as serde_json::Value
    (env, app and everything in it) have their keys sorted, as serde_json does without
    the preserve_order feature.  ``image_mac`` goes into the root image layer,
    ``initfs_mac`` into the init stage's layer; both are ``xx-xx-...`` text.
    ``edmm_platform`` must be what enclave_xml got: the user space maximum depends on it.
    """
    for name, mac in (("image_mac", image_mac), ("initfs_mac", initfs_mac)):
        if not isinstance(mac, str) or not HEX16_RE.fullmatch(mac) or mac != mac.lower():
            raise ValueError(f"{name} must be 16 lower-case hex bytes 'xx-xx-...', got {mac!r}")
    lim = cfg.limits(edmm_platform=edmm_platform)
    doc = {
        "resource_limits": {
            "user_space_init_size": f"{lim.user_space_init}B",
            "user_space_max_size": f"{lim.user_space_max}B",
        },
        "process": {k: cfg.data["process"][k]
                    for k in ("default_stack_size", "default_heap_size", "default_mmap_size")},
        "env": _sorted(cfg.data["env"]),
        "disable_log": cfg.disable_log,
        "app": _sorted(_app(cfg, image_mac, initfs_mac)),
        "feature": {"amx": cfg.amx, "pkru": cfg.pkru, "io_uring": cfg.io_uring,
                    "enable_edmm": cfg.edmm, "enable_posix_shm": cfg.enable_posix_shm},
    }
    return json.dumps(doc, indent=2, ensure_ascii=False).encode()


def image_config_json(encrypted: bool) -> bytes:
    """build/image_config.json as ``jq -n '{image_type: ...}'`` prints it."""
    kind = "encrypted" if encrypted else "integrity-only"
    return (json.dumps({"image_type": kind}, indent=2) + "\n").encode()


def _app(cfg: OcclumConfig, image_mac: str, initfs_mac: str) -> list[dict[str, Any]]:
    init_stage = {
        "stage": "init",
        "entry_points": ["/bin"],
        "mount": [
            {"target": "/", "type": "unionfs", "options": {"layers": [
                {"target": "/", "type": "sefs", "source": "./build/initfs/__ROOT",
                 "options": {"MAC": initfs_mac}},
                {"target": "/", "type": "sefs", "source": "./run/initfs/__ROOT"},
            ]}},
            {"target": "/proc", "type": "procfs"},
            {"target": "/dev", "type": "devfs"},
        ],
    }
    user_mounts = [_mount(m) for m in cfg.mounts]
    root, image = root_layers(cfg.mounts)
    assert root is not None and image is not None  # guaranteed by schema validation
    user_mounts[root]["options"]["layers"][image]["options"]["MAC"] = image_mac
    app_stage = {
        "stage": "app",
        "entry_points": cfg.data["entry_points"],
        "mount": [{"target": "/proc", "type": "procfs"}, {"target": "/dev", "type": "devfs"},
                  *user_mounts],
    }
    return [init_stage, app_stage]


def _mount(m: dict[str, Any]) -> dict[str, Any]:
    """A user mount as gen_internal_conf re-serializes it (OcclumMount/OcclumMountOptions):
    ``source`` only when given, ``options`` only when not all-default, ``temporary`` only
    when true."""
    out: dict[str, Any] = {"type": m["type"], "target": m["target"]}
    if "source" in m:
        out["source"] = m["source"]
    given = m.get("options", {})
    opts: dict[str, Any] = {}
    if "MAC" in given:
        opts["MAC"] = given["MAC"]
    if "layers" in given:
        opts["layers"] = [_mount(x) for x in given["layers"]]
    if given.get("temporary", False):
        opts["temporary"] = True
    for k in ("cache_size", "disk_size"):
        if k in given:
            opts[k] = given[k]
    if opts:
        out["options"] = opts
    return out


def _sorted(v: Any) -> Any:
    """Recursively sort object keys (serde_json::Value's BTreeMap order = code point order)."""
    if isinstance(v, dict):
        return {k: _sorted(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [_sorted(x) for x in v]
    return v
