"""Enclave.xml values as sgx_sign checks and derives them (sdk/sign_tool/SignTool/
manage_metadata.cpp ``check_xml_parameter``, ``fill_enclave_css``, ``get_xsave_size``):
the create parameters, the SIGSTRUCT attribute/XFRM/MISCSELECT fields and the XSAVE size.
Where SDK releases differ (XFRM reserved bits, MISCSELECT masking) the signer profile says.
"""

from __future__ import annotations

from typing import Literal

from ..errors import ConfigError
from .elf import PAGE
from .enclave_xml import EnclaveConfig
from .profiles import XFRM_AMX, XFRM_AVX, XFRM_AVX512, XFRM_LEGACY, XFRM_MPX, XFRM_PKRU, SdkProfile
from .sigstruct import build_unsigned

U64 = (1 << 64) - 1

# SGX attribute bits (arch.h)
FLAGS_DEBUG = 0x2
FLAGS_MODE64BIT = 0x4
FLAGS_PROVISION_KEY = 0x10
FLAGS_EINITTOKEN_KEY = 0x20
FLAGS_KSS = 0x80
FLAGS_AEX_NOTIFY = 0x400
FLAGS_NON_CHECK_BITS = 0x00FF000000000000
FEATURE_MUST_BE_DISABLED, FEATURE_MUST_BE_ENABLED, FEATURE_LOADER_SELECTS = 0, 1, 2
XSAVE_SIZES = [(XFRM_LEGACY, 576), (XFRM_AVX, 832), (XFRM_MPX, 1088), (XFRM_AVX512, 2688),
               (XFRM_PKRU, 2752), (XFRM_AMX, 11008)]


class Params:
    """sgx_sign's create_param_t: the values derived from Enclave.xml.  Mutable: the layout
    builder sets ``xsave_size`` and edmm.py ``edmm_bk_overhead``.  (A plain class: the records
    on the signing path are not dataclasses, whose import and class creation cost
    occlum-sgx-sign ~12 ms of start-up; docs/benchmarks.md "Signing CLI".)"""

    def __init__(self, *, heap_min: int, heap_init: int, heap_max: int, rsrv_min: int, rsrv_init: int,
                 rsrv_max: int, rsrv_executable: int, user_region: int, stack_max: int, stack_min: int,
                 tcs_num: int, tcs_max_num: int, tcs_min_pool: int, tcs_policy: int, xsave_size: int = 0,
                 edmm_bk_overhead: int = 0) -> None:
        self.heap_min, self.heap_init, self.heap_max = heap_min, heap_init, heap_max
        self.rsrv_min, self.rsrv_init, self.rsrv_max = rsrv_min, rsrv_init, rsrv_max
        self.rsrv_executable, self.user_region = rsrv_executable, user_region
        self.stack_max, self.stack_min = stack_max, stack_min
        self.tcs_num, self.tcs_max_num, self.tcs_min_pool, self.tcs_policy = (tcs_num, tcs_max_num,
                                                                               tcs_min_pool, tcs_policy)
        self.xsave_size, self.edmm_bk_overhead = xsave_size, edmm_bk_overhead

    def __repr__(self) -> str:
        return "Params(" + ", ".join(f"{k}={v:#x}" for k, v in vars(self).items()) + ")"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Params) and vars(self) == vars(other)


def _err(msg: str, where: str) -> ConfigError:
    return ConfigError(msg, where=where)


def check_parameters(cfg: EnclaveConfig, where: str) -> Params:
    """CMetadata::check_xml_parameter, plus refusing what this signer does not implement (FIPS)."""
    v, given = cfg.values, cfg.given
    if v["StackMaxSize"] % PAGE or v["StackMinSize"] % PAGE:
        raise _err("StackMaxSize and StackMinSize must be multiples of 4 KB", where)
    if v["StackMinSize"] > v["StackMaxSize"]:
        raise _err("StackMinSize is larger than StackMaxSize", where)
    if any(v[k] % PAGE for k in ("HeapMaxSize", "HeapMinSize", "HeapInitSize")):
        raise _err("HeapMaxSize, HeapMinSize and HeapInitSize must be multiples of 4 KB", where)
    if "HeapInitSize" in given:
        if v["HeapInitSize"] > v["HeapMaxSize"]:
            raise _err("HeapInitSize is larger than HeapMaxSize", where)
        if v["HeapMinSize"] > v["HeapInitSize"]:
            raise _err("HeapMinSize is larger than HeapInitSize", where)
    elif v["HeapMinSize"] > v["HeapMaxSize"]:
        raise _err("HeapMinSize is larger than HeapMaxSize", where)
    if any(v[k] % PAGE for k in ("ReservedMemMaxSize", "ReservedMemMinSize", "ReservedMemInitSize")):
        raise _err("ReservedMem sizes must be multiples of 4 KB", where)
    if "ReservedMemInitSize" in given:
        if v["ReservedMemInitSize"] > v["ReservedMemMaxSize"]:
            raise _err("ReservedMemInitSize is larger than ReservedMemMaxSize", where)
        if v["ReservedMemMinSize"] > v["ReservedMemInitSize"]:
            raise _err("ReservedMemMinSize is larger than ReservedMemInitSize", where)
    elif v["ReservedMemMinSize"] > v["ReservedMemMaxSize"]:
        raise _err("ReservedMemMinSize is larger than ReservedMemMaxSize", where)
    if v["UserRegionSize"] % PAGE:
        raise _err("UserRegionSize must be a multiple of 4 KB", where)
    if (v["HW"] == 0) != (v["LaunchKey"] == 0):
        raise _err("HW and LaunchKey must be both zero or both non-zero (only a launch enclave sets them)",
                   where)
    if "TCSMaxNum" in given:
        if v["TCSMaxNum"] < v["TCSNum"]:
            raise _err("TCSMaxNum is smaller than TCSNum", where)
        if "TCSMinPool" in given and v["TCSMinPool"] > v["TCSMaxNum"]:
            raise _err("TCSMinPool is larger than TCSMaxNum", where)
    elif "TCSMinPool" in given and v["TCSMinPool"] > v["TCSNum"]:
        raise _err("TCSMinPool is larger than TCSNum", where)
    if (v["ISVEXTPRODID_H"] or v["ISVEXTPRODID_L"] or v["ISVFAMILYID_H"] or v["ISVFAMILYID_L"]) \
            and not v["EnableKSS"]:
        raise _err("ISVFAMILYID/ISVEXTPRODID need EnableKSS=1", where)
    if "EnclaveImageAddress" in given and "ELRangeSize" not in given:
        raise _err("EnclaveImageAddress needs ELRangeSize", where)
    if "ELRangeStartAddress" in given and "ELRangeSize" not in given:
        raise _err("ELRangeStartAddress needs ELRangeSize", where)
    if v["EnableIPPFIPS"] or v["EnableOSSLFIPS"]:
        raise _err("EnableIPPFIPS/EnableOSSLFIPS are not supported by this signer", where)
    return Params(
        heap_min=v["HeapMinSize"],
        heap_init=v["HeapInitSize"] if "HeapInitSize" in given else v["HeapMaxSize"],
        heap_max=v["HeapMaxSize"],
        rsrv_min=v["ReservedMemMinSize"],
        rsrv_init=v["ReservedMemInitSize"] if "ReservedMemInitSize" in given else v["ReservedMemMaxSize"],
        rsrv_max=v["ReservedMemMaxSize"],
        rsrv_executable=v["ReservedMemExecutable"] if "ReservedMemExecutable" in given else 0,
        user_region=v["UserRegionSize"],
        stack_max=v["StackMaxSize"],
        stack_min=v["StackMinSize"],
        tcs_num=v["TCSNum"],
        tcs_max_num=v["TCSMaxNum"] if "TCSMaxNum" in given else v["TCSNum"],
        tcs_min_pool=v["TCSMinPool"],
        tcs_policy=v["TCSPolicy"],
    )


def unsigned_css(cfg: EnclaveConfig, profile: SdkProfile, date: int = 0) -> bytearray:
    """CMetadata::fill_enclave_css + modify_metadata's MISCSELECT (ENCLAVEHASH still zero)."""
    v = cfg.values
    flags = 0
    mask = ~(FLAGS_DEBUG | FLAGS_NON_CHECK_BITS) & U64
    if v["DisableDebug"] == 1:
        mask |= FLAGS_DEBUG
    for name, bit in (("ProvisionKey", FLAGS_PROVISION_KEY), ("LaunchKey", FLAGS_EINITTOKEN_KEY),
                      ("EnableKSS", FLAGS_KSS), ("EnableAEXNotify", FLAGS_AEX_NOTIFY)):
        if v[name] == 1:
            flags |= bit
            mask |= bit
    flags |= FLAGS_MODE64BIT
    mask |= FLAGS_MODE64BIT
    xfrm = XFRM_LEGACY
    xmask = XFRM_LEGACY | profile.xfrm_reserved
    if v["PKRU"] == FEATURE_MUST_BE_DISABLED:
        xmask |= XFRM_PKRU
    elif v["PKRU"] == FEATURE_MUST_BE_ENABLED:
        xfrm |= XFRM_PKRU
        xmask |= XFRM_PKRU
    else:
        xmask &= ~XFRM_PKRU
    if v["AMX"] == FEATURE_MUST_BE_ENABLED:
        xfrm |= XFRM_AMX
        xmask |= XFRM_AMX
    elif v["AMX"] == FEATURE_LOADER_SELECTS:
        xmask &= ~XFRM_AMX
    else:
        xmask |= XFRM_AMX
    le: Literal["little"] = "little"
    return build_unsigned(
        enclavehash=bytes(32), date=date, attributes_flags=flags, attributes_xfrm=xfrm,
        attributemask_flags=mask, attributemask_xfrm=xmask,
        miscselect=v["MiscSelect"] & v["MiscMask"] if profile.misc_select_masked else v["MiscSelect"],
        miscmask=v["MiscMask"],
        isvprodid=v["ProdID"], isvsvn=v["ISVSVN"],
        isvfamilyid=v["ISVFAMILYID_L"].to_bytes(8, le) + v["ISVFAMILYID_H"].to_bytes(8, le),
        isvextprodid=v["ISVEXTPRODID_L"].to_bytes(8, le) + v["ISVEXTPRODID_H"].to_bytes(8, le),
        vendor=0x8086 if v["IntelSigned"] & 1 else 0, type_=(1 << 31) if v["ReleaseType"] & 1 else 0,
        swdefined=v["HW"])


def xsave_size(xfrm: int, profile: SdkProfile) -> int:
    """CMetadata::get_xsave_size: the last table entry whose bits are all in ``xfrm``."""
    if not xfrm or xfrm & profile.xfrm_reserved:
        raise ValueError(f"XFRM {xfrm:#x} has reserved bits")
    size = 0
    for bits, s in XSAVE_SIZES:
        if xfrm & bits == bits:
            size = s
    return size
