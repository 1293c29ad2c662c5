"""The enclave layout and metadata that SDK 2.26 sgx_sign builds (sdk/sign_tool/SignTool/
manage_metadata.cpp ``CMetadata::build_metadata``), step by step in the same order, because
the order of allocations inside the metadata buffer ends up in the measured ``g_global_data``.

Input: a parsed enclave ELF and Enclave.xml.  Output: :class:`Built` with the primary
metadata buffer (SIGSTRUCT not yet filled), its layout table and patch table, the enclave
size and the metadata versions to write.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from . import metadata as M
from .elf import PAGE, EnclaveElf, EnclaveError
from .enclave_xml import EnclaveConfig
from .measure import SI_FLAGS_RW, SI_FLAGS_RWX, SI_FLAGS_TCS
from .sigstruct import SIGSTRUCT, build_unsigned

U64 = (1 << 64) - 1
GUARD_PAGES = 0x10000 // PAGE  # SE_GUARD_PAGE_SIZE

# SGX attribute bits (arch.h)
FLAGS_DEBUG = 0x2
FLAGS_MODE64BIT = 0x4
FLAGS_PROVISION_KEY = 0x10
FLAGS_EINITTOKEN_KEY = 0x20
FLAGS_KSS = 0x80
FLAGS_AEX_NOTIFY = 0x400
FLAGS_NON_CHECK_BITS = 0x00FF000000000000
XFRM_LEGACY = 0x3
XFRM_AVX = 0x6
XFRM_MPX = 0x18
XFRM_AVX512 = 0xE6
XFRM_PKRU = 0x200
XFRM_AMX = 0x60000
XFRM_RESERVED = ~(XFRM_LEGACY | XFRM_AVX | XFRM_AVX512 | XFRM_PKRU | XFRM_AMX) & U64
FEATURE_MUST_BE_DISABLED, FEATURE_MUST_BE_ENABLED, FEATURE_LOADER_SELECTS = 0, 1, 2
XSAVE_SIZES = [(XFRM_LEGACY, 576), (XFRM_AVX, 832), (XFRM_MPX, 1088), (XFRM_AVX512, 2688),
               (XFRM_PKRU, 2752), (XFRM_AMX, 11008)]
# sgx-emm bookkeeping structures (calculate_rts_bk_overhead): sizeof(struct ema_t_) and
# sizeof(struct bit_array_) on x86-64, intel/sgx-emm @ 893dcbc (pinned by linux-sgx 2.26)
EMA_SIZE, BIT_ARRAY_SIZE = 72, 24


def _page_round(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


@dataclass
class Params:
    """sgx_sign's create_param_t: the values derived from Enclave.xml."""

    heap_min: int
    heap_init: int
    heap_max: int
    rsrv_min: int
    rsrv_init: int
    rsrv_max: int
    rsrv_executable: int
    user_region: int
    stack_max: int
    stack_min: int
    tcs_num: int
    tcs_max_num: int
    tcs_min_pool: int
    tcs_policy: int
    xsave_size: int = 0
    edmm_bk_overhead: int = 0


@dataclass
class Built:
    buf: bytearray  # METADATA_SIZE bytes; header fields filled, enclave_css unsigned
    size: int  # metadata->size
    layout: list[M.Entry]  # primary layout table (with the trailing guard)
    patches: list[tuple[int, int, int]]
    enclave_size: int
    ecreate_size: int  # ELRangeSize when ELRANGE is configured, else enclave_size
    page_delta: int  # EnclaveImageAddress - ELRangeStartAddress (0 without ELRANGE)
    ssa_frame_size: int
    meta_versions: int  # bit 0: SGX1 (compat 1.5) metadata, bit 1: SGX2 (primary 3.3)
    params: Params
    cfg: EnclaveConfig

    @property
    def version(self) -> int:
        return int(M.METADATA_HEADER.get(self.buf, "version"))


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


def unsigned_css(cfg: EnclaveConfig, date: int = 0) -> bytearray:
    """CMetadata::fill_enclave_css + modify_metadata's MISCSELECT masking (ENCLAVEHASH still zero)."""
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
    xmask = XFRM_LEGACY | XFRM_RESERVED
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
    le = "little"
    return build_unsigned(
        enclavehash=bytes(32), date=date, attributes_flags=flags, attributes_xfrm=xfrm,
        attributemask_flags=mask, attributemask_xfrm=xmask,
        miscselect=v["MiscSelect"] & v["MiscMask"], miscmask=v["MiscMask"],
        isvprodid=v["ProdID"], isvsvn=v["ISVSVN"],
        isvfamilyid=v["ISVFAMILYID_L"].to_bytes(8, le) + v["ISVFAMILYID_H"].to_bytes(8, le),
        isvextprodid=v["ISVEXTPRODID_L"].to_bytes(8, le) + v["ISVEXTPRODID_H"].to_bytes(8, le),
        vendor=0x8086 if v["IntelSigned"] & 1 else 0, type_=(1 << 31) if v["ReleaseType"] & 1 else 0,
        swdefined=v["HW"])


def xsave_size(xfrm: int) -> int:
    if not xfrm or xfrm & XFRM_RESERVED:
        raise ValueError(f"XFRM {xfrm:#x} has reserved bits")
    size = 0
    for bits, s in XSAVE_SIZES:
        if xfrm & bits == bits:
            size = s
    return size


class _Builder:
    def __init__(self, elf: EnclaveElf, cfg: EnclaveConfig, where: str):
        self.elf, self.cfg, self.where = elf, cfg, where
        self.buf = bytearray(M.METADATA_SIZE)
        self.size = M.METADATA_DATA_OFFSET
        self.layouts: list[M.Entry] = []
        self.patches: list[tuple[int, int, int]] = []

    def hdr(self, name: str, value: int | bytes) -> None:
        M.METADATA_HEADER.set(self.buf, name, value)

    def alloc(self, n: int) -> int:
        off = self.size
        self.size += n
        if self.size > M.METADATA_SIZE:
            raise EnclaveError(f"metadata does not fit in {M.METADATA_SIZE:#x} bytes (layout too large)",
                               where=self.where)
        return off

    # -- modify_metadata ---------------------------------------------------------------------
    def modify_metadata(self) -> None:
        v = self.cfg.values
        self.p = check_parameters(self.cfg, self.where)
        css = unsigned_css(self.cfg)
        self.elrange = (v["EnclaveImageAddress"], v["ELRangeStartAddress"], v["ELRangeSize"])
        self.hdr("version", M.VERSION_PRIMARY if v["ELRangeSize"] == 0 else M.VERSION_PRIMARY_ELRANGE)
        self.hdr("tcs_policy", v["TCSPolicy"])
        self.hdr("magic_num", M.METADATA_MAGIC)
        self.hdr("desired_misc_select", v["MiscSelect"])
        self.hdr("tcs_min_pool", v["TCSMinPool"])
        flags = int(SIGSTRUCT.get(css, "attributes_flags"))
        xmask = int(SIGSTRUCT.get(css, "attributemask_xfrm"))
        xfrm = (~xmask & U64) | (int(SIGSTRUCT.get(css, "attributes_xfrm")) & xmask)
        self.hdr("attributes_flags", flags)
        self.hdr("attributes_xfrm", xfrm)
        self.css = css
        self.p.xsave_size = xsave_size(xfrm)
        self.ssa_frame_size = _page_round(self.p.xsave_size + M.SSA_GPR_SIZE) // PAGE
        self.hdr("ssa_frame_size", self.ssa_frame_size)
        self.hdr("max_save_buffer_size", self.p.xsave_size)
        self.meta_versions = self.check_config()

    def _minpool(self) -> tuple[int, int]:
        p = self.p
        if p.tcs_min_pool > p.tcs_num - 1:
            return p.tcs_num - 1, 0
        return p.tcs_min_pool, p.tcs_num - 1 - p.tcs_min_pool

    def check_config(self) -> int:
        p, v = self.p, self.cfg.values
        misc_select0 = (v["MiscSelect"] & v["MiscMask"]) & 1
        misc_mask0 = v["MiscMask"] & 1
        desired0 = v["MiscSelect"] & 1
        minpool, _ = self._minpool()
        rts_dynamic = not (p.heap_init == p.heap_min == p.heap_max and p.stack_max == p.stack_min
                           and p.rsrv_init == p.rsrv_min == p.rsrv_max and p.tcs_max_num == minpool + 1)
        if p.user_region > 0:
            if not (misc_mask0 and misc_select0):
                raise _err("UserRegionSize needs MiscSelect[0] and MiscMask[0] set to 1", self.where)
            return 2
        if rts_dynamic:
            if desired0 == 0:
                return 1
            return 2 if misc_mask0 == 1 else 3
        return 1

    # -- tables ------------------------------------------------------------------------------
    def build_elrange_entry(self) -> None:
        image, start, size = self.elrange
        if size == 0:
            return
        off = self.alloc(M.ELRANGE_ENTRY.size)
        self.buf[off:off + 24] = M.ELRANGE_ENTRY.pack(
            {"enclave_image_address": image, "elrange_start_address": start, "elrange_size": size})
        self.hdr("dir_elrange_offset", off)
        self.hdr("dir_elrange_size", 24)

    def build_layout_table(self) -> None:
        p = self.p
        E = M.Entry
        L = self.layouts
        guard = E(M.GUARD, page_count=GUARD_PAGES)
        L.append(E(M.HEAP_MIN, M.PAGE_ATTR_EADD, p.heap_min // PAGE, si_flags=SI_FLAGS_RW))
        if p.heap_init > p.heap_min:
            L.append(E(M.HEAP_INIT, M.PAGE_ATTR_EADD | M.PAGE_ATTR_POST_REMOVE | M.PAGE_ATTR_POST_ADD,
                       (p.heap_init - p.heap_min) // PAGE, si_flags=SI_FLAGS_RW))
        if p.heap_max > p.heap_init:
            L.append(E(M.HEAP_MAX, M.PAGE_ATTR_POST_ADD, (p.heap_max - p.heap_init) // PAGE,
                       si_flags=SI_FLAGS_RW))
        t: list[M.Entry] = [guard]
        if p.stack_max > p.stack_min:
            t.append(E(M.STACK_MAX, M.PAGE_ATTR_EADD | M.PAGE_ATTR_EEXTEND | M.PAGE_DIR_GROW_DOWN,
                       (p.stack_max - p.stack_min) // PAGE, content_size=0xCCCCCCCC, si_flags=SI_FLAGS_RW))
        t.append(E(M.STACK_MIN, M.PAGE_ATTR_EADD | M.PAGE_ATTR_EEXTEND, p.stack_min // PAGE,
                   content_size=0xCCCCCCCC, si_flags=SI_FLAGS_RW))
        t.append(guard)
        self.tcs_template = self.alloc(M.TCS.size)
        t.append(E(M.TCS_ID, M.PAGE_ATTR_EADD | M.PAGE_ATTR_EEXTEND, 1, content_size=M.TCS.size,
                   content_offset=self.tcs_template, si_flags=SI_FLAGS_TCS))
        t.append(E(M.SSA, M.PAGE_ATTR_EADD | M.PAGE_ATTR_EEXTEND, self.ssa_frame_size * M.SSA_NUM,
                   si_flags=SI_FLAGS_RW))
        t.append(guard)
        td_pages = 1 + (_page_round(self.elf.tls_size) // PAGE if self.elf.tls_size is not None else 0)
        t.append(E(M.TD, M.PAGE_ATTR_EADD | M.PAGE_ATTR_EEXTEND, td_pages, si_flags=SI_FLAGS_RW))
        for e in t:  # the utility thread: part of its stack can be added/removed dynamically
            if e.id == M.STACK_MAX:
                e = e.with_(attributes=e.attributes | M.PAGE_ATTR_POST_ADD | M.PAGE_ATTR_POST_REMOVE)
            L.append(e)
        minpool, erem = self._minpool()
        if minpool > 0:
            L.extend(t)
            if minpool > 1:
                L.append(E.group(M.THREAD_GROUP, len(t), minpool - 1))
        if erem > 0:
            L.extend(e if e.id == M.GUARD else e.with_(attributes=e.attributes | M.PAGE_ATTR_EREMOVE)
                     for e in t)
            if erem > 1:
                L.append(E.group(M.THREAD_GROUP, len(t), erem - 1))
        if p.tcs_max_num > minpool + 1:
            for e in t:
                if e.id == M.STACK_MAX:
                    e = e.with_(id=e.id + M.DYN_DELTA, attributes=M.PAGE_ATTR_POST_ADD | M.PAGE_DIR_GROW_DOWN)
                elif e.id != M.GUARD:
                    e = e.with_(id=e.id + M.DYN_DELTA,
                                attributes=M.PAGE_ATTR_POST_ADD | M.PAGE_ATTR_DYN_THREAD)
                L.append(e)
            L.append(E.group(M.THREAD_GROUP_DYN, len(t), p.tcs_max_num - minpool - 1))
        if p.rsrv_min > 0 or p.rsrv_init > 0 or p.rsrv_max > 0:
            rflags = SI_FLAGS_RWX if p.rsrv_executable else SI_FLAGS_RW
            L.append(E(M.RSRV_MIN, M.PAGE_ATTR_EADD, p.rsrv_min // PAGE, si_flags=rflags))
            if p.rsrv_init > p.rsrv_min:
                L.append(E(M.RSRV_INIT, M.PAGE_ATTR_EADD | M.PAGE_ATTR_POST_REMOVE | M.PAGE_ATTR_POST_ADD,
                           (p.rsrv_init - p.rsrv_min) // PAGE, si_flags=rflags))
            if p.rsrv_max > p.rsrv_init:
                L.append(E(M.RSRV_MAX, M.PAGE_ATTR_POST_ADD, (p.rsrv_max - p.rsrv_init) // PAGE,
                           si_flags=SI_FLAGS_RW))
        if self.meta_versions & 2:
            user = 0
            if p.user_region > 0:
                user = p.user_region
                overhead = p.user_region >> 15
                p.edmm_bk_overhead += _page_round(overhead) if _page_round(overhead) > 0 else PAGE
            p.edmm_bk_overhead += self.rts_bk_overhead()
            aligned = -(-(p.edmm_bk_overhead + 32) // 0x10000) * 0x10000
            user += aligned + (0x8000 << 1)
            p.edmm_bk_overhead = aligned
            L.append(E(M.USER_REGION, M.PAGE_ATTR_POST_ADD, user // PAGE, si_flags=SI_FLAGS_RW))
        self.update_layout_entries()
        self.build_tcs_template()

    def rts_bk_overhead(self) -> int:
        """CMetadata::calculate_rts_bk_overhead (EDMM bookkeeping, from sgx-emm struct sizes)."""
        def aligned(size: int) -> int:
            b = -(-(size + 8) // 8) * 8
            return max(b, 0x10)

        ema, bit = aligned(EMA_SIZE), aligned(BIT_ARRAY_SIZE)

        def node(pages: int) -> int:
            return ema + bit + aligned(-(-pages // 8) * 8 >> 3)

        p = self.p
        heap = node(p.heap_min // PAGE)
        if p.heap_init > p.heap_min:
            heap += node((p.heap_init - p.heap_min) // PAGE)
        if p.heap_max > p.heap_init:
            heap += node((p.heap_max - p.heap_init) // PAGE)
        rsrv = node(p.rsrv_min // PAGE)
        if p.rsrv_init > p.rsrv_min:
            rsrv += node((p.rsrv_init - p.rsrv_min) // PAGE)
        if p.rsrv_max > p.rsrv_init:
            rsrv += node((p.rsrv_max - p.rsrv_init) // PAGE)
        keep = ema + node(p.stack_min // PAGE)
        removed = ema + ema
        if p.stack_max > p.stack_min:
            keep += node((p.stack_max - p.stack_min) // PAGE)
            removed += ema
        keep += ema
        removed += ema
        keep += node(1)
        removed += ema
        keep += node(self.ssa_frame_size * M.SSA_NUM)
        removed += ema
        keep += ema
        removed += ema
        td = 1 + (_page_round(self.elf.tls_size) // PAGE if self.elf.tls_size is not None else 0)
        keep += node(td)
        removed += ema
        minpool, erem = self._minpool()
        total_keep = keep
        if minpool > 0:
            total_keep += keep + (keep * (minpool - 1) if minpool > 1 else 0)
        total_removed = removed
        if erem > 0:
            total_removed += removed + (removed * (erem - 1) if erem > 1 else 0)
        if p.tcs_max_num > minpool + 1:
            total_keep += keep * (p.tcs_max_num - minpool)
        sections = sum(node(_page_round(s.memsz) // PAGE) for s in self.elf.segments)
        return heap + rsrv + total_keep + total_removed + sections + ema

    def sections_size(self) -> int:
        last = None
        max_rva = 0
        for s in self.elf.segments:
            if s.vaddr > max_rva:
                max_rva, last = s.vaddr, s
        return 0 if last is None else _page_round(last.vaddr + last.memsz)

    def update_layout_entries(self) -> None:
        rva = self.sections_size()
        if rva == 0:
            raise EnclaveError("the loadable segments have size 0", where=self.where)
        out: list[M.Entry] = []
        for i, e in enumerate(self.layouts):
            if not e.is_group and e.page_count > 0xFFFFFFFF:
                raise _err(f"{M.LAYOUT_NAMES.get(e.id, e.id)} needs {e.page_count} pages, more than a layout "
                           "entry holds (2**32 - 1)", self.where)
            if not e.is_group:
                e = e.with_(rva=rva)
                rva += e.page_count * PAGE
            else:
                step = sum(out[i - j - 1].page_count for j in range(e.entry_count)) * PAGE
                e = M.Entry.group(e.id, e.entry_count, e.load_times, e.load_step + step)
                rva += e.load_times * e.load_step
            out.append(e)
        self.layouts = out
        self.rva = rva

    def first(self, ident: int) -> M.Entry | None:
        return next((e for e in self.layouts if e.id == ident), None)

    def build_tcs_template(self) -> None:
        image, start, size = self.elrange
        offset = (image - start) if size else 0
        oentry = self.elf.symbols.get("enclave_entry", 0)
        if oentry == 0:
            raise EnclaveError("no enclave_entry symbol and no ELF entry point", where=self.where)
        tcs, ssa, td = self.first(M.TCS_ID), self.first(M.SSA), self.first(M.TD)
        assert tcs and ssa and td
        fs = (td.rva - tcs.rva + (td.page_count - 1) * PAGE + offset) & U64
        flags = 1 if int(SIGSTRUCT.get(self.css, "attributes_flags")) & FLAGS_AEX_NOTIFY else 0
        self.buf[self.tcs_template:self.tcs_template + M.TCS.size] = M.TCS.pack({
            "flags": flags, "oentry": (oentry + offset) & U64, "nssa": M.SSA_NUM, "cssa": 0,
            "ossa": (ssa.rva - tcs.rva + offset) & U64, "ofs_base": fs, "ogs_base": fs,
            "ofs_limit": 0xFFFFFFFF, "ogs_limit": 0xFFFFFFFF})

    def build_patch_table(self) -> None:
        self.gd = self.alloc(M.GLOBAL_DATA.size)
        rva = self.elf.symbols.get("g_global_data", 0)
        if rva == 0:
            raise EnclaveError("no g_global_data symbol in .dynsym (link the enclave with the SGX SDK trts)",
                               where=self.where)
        dst = self.elf.file_offset_of(rva, 8)
        found = int.from_bytes(self.elf.data[dst:dst + 8], "little")
        if found != M.VERSION_UINT:
            major, minor, rev = found >> 32, (found >> 16) & 0xFFFF, found & 0xFFFF
            raise EnclaveError(f"g_global_data.sdk_version is {found:#x} ({major}.{minor}.{rev}); "
                               "this signer "
                               f"implements SDK {'.'.join(map(str, M.SDK_VERSION))} ({M.VERSION_UINT:#x})",
                               where=self.where)
        if dst + M.GLOBAL_DATA.size > len(self.elf.data):
            raise EnclaveError("g_global_data extends past the end of the file", where=self.where)
        self.patches.append((dst, self.gd, M.GLOBAL_DATA.size))
        zero = self.alloc(0)
        self.patches += [(0x3C, zero, 2), (0x28, zero, 8), (0x3E, zero, 2)]  # e_shnum, e_shoff, e_shstrndx
        self.alloc(8)
        off = self.alloc(32 * len(self.patches))
        for i, (d, s, n) in enumerate(self.patches):
            self.buf[off + 32 * i:off + 32 * i + 32] = M.PATCH_ENTRY.pack({"dst": d, "src": s, "size": n})
        self.hdr("dir_patch_offset", off)
        self.hdr("dir_patch_size", 32 * len(self.patches))

    def build_layout_entries(self) -> None:
        size = 1
        while size < self.rva:
            size <<= 1
        if size > U64:
            raise _err(f"the enclave needs {self.rva:#x} bytes, which does not fit in a 64-bit enclave; "
                       "reduce the heap, stack, thread or reserved memory sizes", self.where)
        self.enclave_size = size
        self.hdr("enclave_size", size)
        if size > self.rva:
            self.layouts.append(M.Entry(M.GUARD, page_count=(size - self.rva) // PAGE, rva=self.rva))
        raw = M.pack_entries(self.layouts)
        off = self.alloc(len(raw))
        self.buf[off:off + len(raw)] = raw
        self.hdr("dir_layout_offset", off)
        self.hdr("dir_layout_size", len(raw))

    def validate_elrange(self) -> None:
        image, start, size = self.elrange
        if size == 0:
            return
        w = self.where
        if image % PAGE or start % PAGE or size % PAGE:
            raise _err("EnclaveImageAddress, ELRangeStartAddress and ELRangeSize must be page-aligned", w)
        if start & (size - 1):
            raise _err("ELRangeStartAddress must be aligned to ELRangeSize", w)
        if start > image:
            raise _err("ELRangeStartAddress is above EnclaveImageAddress", w)
        if image + self.rva > U64 or start + size > U64:
            raise _err("ELRANGE overflows the address space", w)
        if image + self.rva > start + size:
            raise _err("the enclave image does not fit in the ELRANGE", w)
        if size & (size - 1):
            raise _err("ELRangeSize must be a power of two", w)
        if image + self.enclave_size > start + size:  # the loader's check (set_elrange_config)
            raise _err(f"EnclaveImageAddress + enclave size ({self.enclave_size:#x}) exceeds the ELRANGE", w)

    def build_gd_template(self) -> None:
        p = self.p
        tcs, ssa, td = self.first(M.TCS_ID), self.first(M.SSA), self.first(M.TD)
        smin = self.first(M.STACK_MIN)
        heap, rsrv = self.first(M.HEAP_MIN), self.first(M.RSRV_MIN)
        assert tcs and ssa and td and smin and heap
        stack_base = (smin.rva + p.stack_min - tcs.rva) & U64
        stack_limit = (stack_base - p.stack_max) & U64
        ssa_base = (ssa.rva - tcs.rva) & U64
        tmp_tls = (td.rva - tcs.rva) & U64
        td_addr = (tmp_tls + (td.page_count - 1) * PAGE) & U64
        tls_addr = (td_addr - self.elf.tls_size) & U64 if self.elf.tls_size is not None else tmp_tls
        tdata = M.THREAD_DATA.pack({
            "self_addr": td_addr, "last_sp": stack_base, "stack_base_addr": stack_base,
            "stack_limit_addr": stack_limit, "xsave_size": p.xsave_size,
            "first_ssa_gpr": (ssa_base + self.ssa_frame_size * PAGE - M.SSA_GPR_SIZE) & U64,
            "first_ssa_xsave": ssa_base, "tls_addr": tls_addr,
            "tls_array": (td_addr + M.THREAD_DATA.offset("tls_addr")) & U64})
        if len(self.layouts) > M.LAYOUT_ENTRY_NUM:
            raise _err(f"the layout has {len(self.layouts)} entries; g_global_data holds at most "
                       f"{M.LAYOUT_ENTRY_NUM}", self.where)
        table = M.pack_entries(self.layouts)
        image, start, size = self.elrange
        gd = M.GLOBAL_DATA.pack({
            "enclave_size": self.enclave_size, "heap_offset": heap.rva, "heap_size": p.heap_init,
            "rsrv_offset": rsrv.rva if rsrv else 0, "rsrv_size": p.rsrv_init if rsrv else 0,
            "rsrv_executable": p.rsrv_executable if rsrv else 0, "thread_policy": p.tcs_policy,
            "tcs_max_num": p.tcs_max_num, "tcs_num": p.tcs_num, "td_template": tdata,
            "tcs_template": bytes(self.buf[self.tcs_template:self.tcs_template + M.TCS.size]),
            "layout_entry_num": len(self.layouts),
            "layout_table": table + bytes(32 * M.LAYOUT_ENTRY_NUM - len(table)),
            "enclave_image_address": image if size else 0, "elrange_start_address": start if size else 0,
            "elrange_size": size, "edmm_bk_overhead": p.edmm_bk_overhead, "fips_on": 0})
        self.buf[self.gd:self.gd + len(gd)] = gd


def build_metadata(elf: EnclaveElf, cfg: EnclaveConfig, where: str = "enclave") -> Built:
    """CMetadata::build_metadata: everything but the date, ENCLAVEHASH and signature."""
    b = _Builder(elf, cfg, where)
    b.modify_metadata()
    b.build_elrange_entry()
    b.hdr("dir_extend_offset", 0)
    b.hdr("dir_extend_size", 0)
    b.build_layout_table()
    b.build_patch_table()
    b.build_layout_entries()
    b.validate_elrange()
    b.build_gd_template()
    b.hdr("size", b.size)
    b.hdr("enclave_css", bytes(b.css))
    image, start, size = b.elrange
    return Built(buf=b.buf, size=b.size, layout=b.layouts, patches=b.patches, enclave_size=b.enclave_size,
                 ecreate_size=size if size else b.enclave_size, page_delta=(image - start) if size else 0,
                 ssa_frame_size=b.ssa_frame_size, meta_versions=b.meta_versions, params=b.p, cfg=cfg)


def compat_metadata(primary: bytes, layout: list[M.Entry], tcs_num: int, elrange: bool) -> bytes:
    """sign_tool.cpp generate_compatible_metadata: the SGX1 (version 1.5) copy of ``primary``."""
    h = M.METADATA_HEADER.unpack(primary)
    lo = int(h["dir_layout_offset"])
    entries = list(layout)
    ut_start = next(i for i, e in enumerate(entries) if e.id == M.GUARD)
    ut_end = next(i for i, e in enumerate(entries) if e.id == M.TD)
    rsrv = {e.id: i for i, e in enumerate(entries) if e.id in (M.RSRV_MIN, M.RSRV_INIT, M.RSRV_MAX)}

    def cleanup(es: list[M.Entry]) -> None:
        for ident in (M.HEAP_MAX, M.HEAP_INIT, M.STACK_MAX):
            i = next((k for k, e in enumerate(es) if e.id == ident), None)
            if i is None:
                continue
            e = es[i].with_(attributes=es[i].attributes & ~M.PAGE_ATTR_POST_ADD)
            es[i] = e.with_(si_flags=0) if ident == M.HEAP_MAX else e

    def rsrv_fix(e: M.Entry) -> M.Entry:
        e = e.with_(attributes=e.attributes & ~M.PAGE_ATTR_POST_ADD)
        return e.with_(si_flags=0) if e.id == M.RSRV_MAX else e

    if ut_end + 1 == len(entries):
        cleanup(entries)
    elif rsrv.get(M.RSRV_MIN) == ut_end + 1:
        cleanup(entries)
        entries = [rsrv_fix(e) if e.id in (M.RSRV_INIT, M.RSRV_MAX) else e for e in entries]
    else:
        count = ut_end + 1 - ut_start
        step = sum(e.page_count for e in entries[ut_start:ut_end + 1]) * PAGE
        added = [entries[i] for i in (rsrv.get(M.RSRV_MIN), rsrv.get(M.RSRV_INIT), rsrv.get(M.RSRV_MAX))
                 if i is not None] if M.RSRV_MIN in rsrv else []
        entries = entries[:ut_end + 1] + [M.Entry.group(M.THREAD_GROUP, count, tcs_num - 1, step)]
        cleanup(entries)
        entries += [rsrv_fix(e) for e in added]
    raw = M.pack_entries(entries)
    out = bytearray(primary[:lo]) + raw
    M.METADATA_HEADER.set(out, "version", M.VERSION_COMPAT_ELRANGE if elrange else M.VERSION_COMPAT)
    M.METADATA_HEADER.set(out, "size", len(out))
    M.METADATA_HEADER.set(out, "dir_layout_size", len(raw))
    return bytes(out)
