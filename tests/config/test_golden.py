"""Golden tests: derived configs for known Occlum.json files equal hand-written expectations.

Every expected number below was computed by hand from the rules in
the project's research notes (shared/research/occlum_build.md §2.4-2.5) (see tests/vectors/config/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from occlum_build.config import enclave_xml, image_config_json, load_config, sys_json
from occlum_build.instance import render_config

VEC = Path(__file__).resolve().parents[1] / "vectors" / "config"
IMAGE_MAC = "00-11-22-33-44-55-66-77-88-99-aa-bb-cc-dd-ee-ff"
INITFS_MAC = "ff-ee-dd-cc-bb-aa-99-88-77-66-55-44-33-22-11-00"

# Element order of Occlum 0.31's EnclaveConfiguration (UserRegionSize only with EDMM).
ORDER = ["ProdID", "ISVSVN", "StackMaxSize", "StackMinSize", "HeapInitSize", "HeapMaxSize",
         "HeapMinSize", "TCSNum", "TCSMaxNum", "TCSMinPool", "TCSPolicy", "DisableDebug",
         "MiscSelect", "MiscMask", "ReservedMemMaxSize", "ReservedMemMinSize",
         "ReservedMemInitSize", "ReservedMemExecutable", "UserRegionSize", "EnableKSS",
         "ISVEXTPRODID_H", "ISVEXTPRODID_L", "ISVFAMILYID_H", "ISVFAMILYID_L", "PKRU", "AMX"]

MB = 1048576
# Non-EDMM Enclave.xml of the template: 1MB stack, 32MB heap, 32 threads, 300MB user space.
TEMPLATE = dict(ProdID=0, ISVSVN=0, StackMaxSize=1048576, StackMinSize=1048576,
                HeapInitSize=33554432, HeapMaxSize=33554432, HeapMinSize=33554432,
                TCSNum=32, TCSMaxNum=32, TCSMinPool=32, TCSPolicy=0, DisableDebug=0,
                MiscSelect="0", MiscMask="0", ReservedMemMaxSize=314572800,
                ReservedMemMinSize=314572800, ReservedMemInitSize=314572800,
                ReservedMemExecutable=1, EnableKSS=0, ISVEXTPRODID_H=0, ISVEXTPRODID_L=0,
                ISVFAMILYID_H=0, ISVFAMILYID_L=0, PKRU=0, AMX=0)
# EDMM: heap max 1GB, TCS 16/16/4096, reserved = user init, user region = 16GB + 1GB.
TEMPLATE_EDMM = {**TEMPLATE, "HeapMaxSize": 1073741824, "TCSNum": 16, "TCSMaxNum": 4096,
                 "TCSMinPool": 16, "MiscSelect": "1", "MiscMask": "0xFFFFFFFF",
                 "UserRegionSize": 18253611008}
# test/Occlum.json non-EDMM: heap = heap max 40MB, 64 threads, reserved = user max 600MB.
TEST = {**TEMPLATE, "HeapInitSize": 41943040, "HeapMaxSize": 41943040, "HeapMinSize": 41943040,
        "TCSNum": 64, "TCSMaxNum": 64, "TCSMinPool": 64, "ReservedMemMaxSize": 629145600,
        "ReservedMemMinSize": 629145600, "ReservedMemInitSize": 629145600}
# test/Occlum.json EDMM: heap 1MB..1GB, TCS init 2 (given), reserved = user init 1MB.
TEST_EDMM = {**TEST, "HeapInitSize": 1048576, "HeapMaxSize": 1073741824, "HeapMinSize": 1048576,
             "TCSNum": 2, "TCSMaxNum": 4096, "TCSMinPool": 2, "MiscSelect": "1",
             "MiscMask": "0xFFFFFFFF", "ReservedMemMaxSize": 1048576, "ReservedMemMinSize": 1048576,
             "ReservedMemInitSize": 1048576, "UserRegionSize": 18253611008}
KSS = {**TEMPLATE, "ProdID": 1, "ISVSVN": 88, "EnableKSS": 1, "ISVEXTPRODID_H": 1,
       "ISVEXTPRODID_L": 11259375, "ISVFAMILYID_H": 1311768465173141112, "ISVFAMILYID_L": 255}
RELEASE = {**TEMPLATE, "ProdID": 9999, "ISVSVN": 8888, "DisableDebug": 1}
# mounts.Occlum.json: heap max 64MB used as heap, reserved = user max 1GB, pkru 1.
MOUNTS = {**TEMPLATE, "HeapInitSize": 67108864, "HeapMaxSize": 67108864, "HeapMinSize": 67108864,
          "DisableDebug": 1, "ReservedMemMaxSize": 1073741824, "ReservedMemMinSize": 1073741824,
          "ReservedMemInitSize": 1073741824, "PKRU": 1}


def xml(values: dict) -> bytes:
    assert set(values) <= set(ORDER)
    body = "".join(f"<{k}>{values[k]}</{k}>" for k in ORDER if k in values)
    return f"<EnclaveConfiguration>{body}</EnclaveConfiguration>".encode()


CASES = [
    ("template", False, TEMPLATE), ("template", True, TEMPLATE_EDMM),
    ("test", False, TEST), ("test", True, TEST_EDMM),
    ("edmm", False, TEMPLATE_EDMM),  # feature.enable_edmm forces EDMM even off an EDMM platform
    ("edmm", True, TEMPLATE_EDMM),
    ("kss", False, KSS), ("release", False, RELEASE), ("mounts", False, MOUNTS),
]


@pytest.mark.parametrize("name,edmm_platform,expected", CASES,
                         ids=[f"{n}-{'edmm' if e else 'noedmm'}" for n, e, _ in CASES])
def test_enclave_xml(name: str, edmm_platform: bool, expected: dict) -> None:
    cfg = load_config(VEC / f"{name}.Occlum.json")
    assert enclave_xml(cfg, edmm_platform=edmm_platform) == xml(expected)


def test_enclave_xml_literal_template() -> None:
    """One expectation spelled out completely, independent of the ORDER helper."""
    cfg = load_config(VEC / "template.Occlum.json")
    assert enclave_xml(cfg) == (
        b"<EnclaveConfiguration><ProdID>0</ProdID><ISVSVN>0</ISVSVN>"
        b"<StackMaxSize>1048576</StackMaxSize><StackMinSize>1048576</StackMinSize>"
        b"<HeapInitSize>33554432</HeapInitSize><HeapMaxSize>33554432</HeapMaxSize>"
        b"<HeapMinSize>33554432</HeapMinSize><TCSNum>32</TCSNum><TCSMaxNum>32</TCSMaxNum>"
        b"<TCSMinPool>32</TCSMinPool><TCSPolicy>0</TCSPolicy><DisableDebug>0</DisableDebug>"
        b"<MiscSelect>0</MiscSelect><MiscMask>0</MiscMask>"
        b"<ReservedMemMaxSize>314572800</ReservedMemMaxSize>"
        b"<ReservedMemMinSize>314572800</ReservedMemMinSize>"
        b"<ReservedMemInitSize>314572800</ReservedMemInitSize>"
        b"<ReservedMemExecutable>1</ReservedMemExecutable><EnableKSS>0</EnableKSS>"
        b"<ISVEXTPRODID_H>0</ISVEXTPRODID_H><ISVEXTPRODID_L>0</ISVEXTPRODID_L>"
        b"<ISVFAMILYID_H>0</ISVFAMILYID_H><ISVFAMILYID_L>0</ISVFAMILYID_L>"
        b"<PKRU>0</PKRU><AMX>0</AMX></EnclaveConfiguration>")


@pytest.mark.parametrize("name", ["template", "mounts"])
def test_sys_json_full(name: str) -> None:
    cfg = load_config(VEC / f"{name}.Occlum.json")
    out = sys_json(cfg, image_mac=IMAGE_MAC, initfs_mac=INITFS_MAC)
    assert out == (VEC / f"{name}.Occlum_sys.json").read_bytes()
    assert not out.endswith(b"\n")


def test_rendered_template_matches_occlum_template(tmp_path: Path) -> None:
    """`occlum new`'s Occlum.json derives exactly what Occlum's own template does."""
    p = tmp_path / "Occlum.json"
    p.write_text(render_config())
    cfg = load_config(p)
    assert enclave_xml(cfg) == xml(TEMPLATE)
    assert enclave_xml(cfg, edmm_platform=True) == xml(TEMPLATE_EDMM)
    assert sys_json(cfg, image_mac=IMAGE_MAC, initfs_mac=INITFS_MAC) == \
        (VEC / "template.Occlum_sys.json").read_bytes()


def _sys(name: str, edmm_platform: bool = False) -> dict:
    cfg = load_config(VEC / f"{name}.Occlum.json")
    return json.loads(sys_json(cfg, image_mac=IMAGE_MAC, initfs_mac=INITFS_MAC,
                               edmm_platform=edmm_platform))


def test_sys_json_test_input_key_parts() -> None:
    d = _sys("test")
    assert d["resource_limits"] == {"user_space_init_size": "1048576B",
                                    "user_space_max_size": "629145600B"}
    assert d["process"] == {"default_stack_size": "4MB", "default_heap_size": "8MB",
                            "default_mmap_size": "100MB"}
    assert d["env"] == {"default": ["OCCLUM=yes", "STABLE=yes", "OVERRIDE=N"],
                        "untrusted": ["TEST", "OVERRIDE"]}
    assert d["feature"] == {"amx": 0, "pkru": 0, "io_uring": 0, "enable_edmm": False,
                            "enable_posix_shm": True}
    assert list(d) == ["resource_limits", "process", "env", "disable_log", "app", "feature"]
    assert d["disable_log"] is False
    # On an EDMM platform the user space maximum grows to 16GB.
    assert _sys("test", True)["resource_limits"]["user_space_max_size"] == "17179869184B"


def test_sys_json_edmm_and_release() -> None:
    d = _sys("edmm")
    assert d["resource_limits"] == {"user_space_init_size": "314572800B",
                                    "user_space_max_size": "17179869184B"}
    assert d["feature"]["enable_edmm"] is True
    r = _sys("release")
    assert r["disable_log"] is True  # defaults to !debuggable
    assert _sys("mounts")["disable_log"] is False  # explicit value wins


def test_kss_sys_json_unchanged_by_ids() -> None:
    """KSS ids live only in Enclave.xml; the sys json of the KSS variant equals the template's."""
    assert _sys("kss") == _sys("template")


def test_image_config_json() -> None:
    assert image_config_json(False) == b'{\n  "image_type": "integrity-only"\n}\n'
    assert image_config_json(True) == b'{\n  "image_type": "encrypted"\n}\n'


def test_sys_json_rejects_malformed_mac() -> None:
    cfg = load_config(VEC / "template.Occlum.json")
    with pytest.raises(ValueError):
        sys_json(cfg, image_mac="00-11", initfs_mac=INITFS_MAC)
    with pytest.raises(ValueError):
        sys_json(cfg, image_mac=IMAGE_MAC.upper(), initfs_mac=INITFS_MAC)


def test_accessors() -> None:
    cfg = load_config(VEC / "test.Occlum.json")
    assert (cfg.debuggable, cfg.enable_kss, cfg.edmm) == (True, False, False)
    assert cfg.entry_points == ("/bin",)
    assert cfg.kernel_space_heap_size == 1 * MB and cfg.kernel_space_heap_max_size == 40 * MB
    assert cfg.user_space_size == MB and cfg.user_space_max_size == 600 * MB
    assert (cfg.init_num_of_threads, cfg.max_num_of_threads) == (2, 64)
    assert cfg.default_heap_size == 8 * MB and cfg.enable_posix_shm
    assert cfg.env_untrusted == ("TEST", "OVERRIDE")
    kss = load_config(VEC / "kss.Occlum.json")
    assert kss.family_id == (0x1234567812345678, 0xFF) and kss.ext_prod_id == (1, 0xABCDEF)
    assert (kss.product_id, kss.version_number, kss.enable_kss) == (1, 88, True)
    assert load_config(VEC / "mounts.Occlum.json").mounts[2] == {"type": "ramfs", "target": "/tmp"}


def test_every_vector_config_loads() -> None:
    """Every Occlum.json vector loads, among them the two Occlum ships (etc/template and
    test/, copied from shared/occlum-inputs: tests/vectors/config/README.md)."""
    found = sorted(VEC.glob("*.Occlum.json"))
    assert {"template.Occlum.json", "test.Occlum.json"} <= {p.name for p in found}
    for p in found:
        load_config(p)
