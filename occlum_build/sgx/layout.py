"""The enclave layout and metadata that sgx_sign builds (sdk/sign_tool/SignTool/
manage_metadata.cpp ``CMetadata::build_metadata``), step by step in the same order, because
the order of allocations inside the metadata buffer ends up in the measured ``g_global_data``.

Input: a parsed enclave ELF, Enclave.xml and the signer profile of the enclave's SDK
(profiles.py).  Output: :class:`Built` with the primary metadata buffer (SIGSTRUCT not yet
filled), its layout table and patch table, the enclave size and the metadata versions to
write.  Enclave.xml checks and SIGSTRUCT attributes are in params.py, EDMM bookkeeping in
edmm.py, the compatible (SGX1) metadata in compat.py.
"""

from typing import NamedTuple

from ..errors import ConfigError
from . import metadata as M
from .edmm import user_region_size
from .elf import PAGE, EnclaveElf, EnclaveError
from .enclave_xml import EnclaveConfig
from .measure import SI_FLAGS_RW, SI_FLAGS_RWX, SI_FLAGS_TCS
from .params import FLAGS_AEX_NOTIFY, U64, Params, check_parameters, unsigned_css, xsave_size
from .profiles import SdkProfile, global_data_offset, profile_for_enclave
from .sigstruct import SIGSTRUCT

GUARD_PAGES = 0x10000 // PAGE  # SE_GUARD_PAGE_SIZE


def _page_round(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


class Built(NamedTuple):
    buf: bytearray  # METADATA_SIZE bytes; header fields filled, enclave_css unsigned
    size: int  # metadata->size
    layout: list[M.Entry]  # primary layout table (with the trailing guard)
    patches: list[tuple[int, int, int]]
    enclave_size: int
    ecreate_size: int  # ELRangeSize when ELRANGE is configured, else enclave_size
    page_delta: int  # EnclaveImageAddress - ELRangeStartAddress (0 without ELRANGE)
    ssa_frame_size: int
    meta_versions: int  # bit 0: SGX1 (compat) metadata, bit 1: SGX2 (primary)
    params: Params
    cfg: EnclaveConfig
    profile: SdkProfile

    @property
    def version(self) -> int:
        return int(self.profile.header.get(self.buf, "version"))

    @property
    def elrange(self) -> bool:
        return self.cfg["ELRangeSize"] != 0


def _err(msg: str, where: str) -> ConfigError:
    return ConfigError(msg, where=where)


class _Builder:
    def __init__(self, elf: EnclaveElf, cfg: EnclaveConfig, where: str, profile: SdkProfile):
        self.elf, self.cfg, self.where, self.profile = elf, cfg, where, profile
        self.buf = bytearray(profile.metadata_size)
        self.size = profile.header.size  # offsetof(metadata_t, data)
        self.layouts: list[M.Entry] = []
        self.patches: list[tuple[int, int, int]] = []

    def hdr(self, name: str, value: int | bytes) -> None:
        self.profile.header.set(self.buf, name, value)

    def alloc(self, n: int) -> int:
        off = self.size
        self.size += n
        if self.size > self.profile.metadata_size:
            raise EnclaveError(f"metadata does not fit in {self.profile.metadata_size:#x} bytes "
                               "(layout too large)", where=self.where)
        return off

    # -- modify_metadata ---------------------------------------------------------------------
    def modify_metadata(self) -> None:
        v = self.cfg.values
        self.p = check_parameters(self.cfg, self.where)
        css = unsigned_css(self.cfg, self.profile)
        self.elrange = (v["EnclaveImageAddress"], v["ELRangeStartAddress"], v["ELRangeSize"])
        self.hdr("version", self.profile.metadata_version(compat=False, elrange=v["ELRangeSize"] != 0))
        self.hdr("tcs_policy", v["TCSPolicy"])
        self.hdr("magic_num", M.METADATA_MAGIC)
        self.hdr("desired_misc_select", v["MiscSelect"] if self.profile.misc_select_masked else 0)
        self.hdr("tcs_min_pool", v["TCSMinPool"])
        flags = int(SIGSTRUCT.get(css, "attributes_flags"))
        xmask = int(SIGSTRUCT.get(css, "attributemask_xfrm"))
        xfrm = (~xmask & U64) | (int(SIGSTRUCT.get(css, "attributes_xfrm")) & xmask)
        self.hdr("attributes_flags", flags)
        self.hdr("attributes_xfrm", xfrm)
        self.css = css
        self.p.xsave_size = xsave_size(xfrm, self.profile)
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
        dir_at = None if self.profile.elrange_dir_in_header else self.alloc(M.DATA_DIRECTORY.size)
        off = self.alloc(M.ELRANGE_ENTRY.size)
        self.buf[off:off + M.ELRANGE_ENTRY.size] = M.ELRANGE_ENTRY.pack(
            {"enclave_image_address": image, "elrange_start_address": start, "elrange_size": size})
        if dir_at is None:
            self.hdr("dir_elrange_offset", off)
            self.hdr("dir_elrange_size", M.ELRANGE_ENTRY.size)
        else:  # SDK 2.18-2.23: a data_directory_t at the start of data[] points at the entry
            self.buf[dir_at:dir_at + M.DATA_DIRECTORY.size] = M.DATA_DIRECTORY.pack(
                {"offset": off, "size": M.ELRANGE_ENTRY.size})

    def build_extend_table(self) -> None:
        if self.profile.dir_num > 2:  # SDK 2.24+: an empty extend table (FIPS is refused)
            self.hdr("dir_extend_offset", 0)
            self.hdr("dir_extend_size", 0)

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
            user = user_region_size(p, self.elf, self.ssa_frame_size, minpool, erem)
            L.append(E(M.USER_REGION, M.PAGE_ATTR_POST_ADD, user // PAGE, si_flags=SI_FLAGS_RW))
        self.update_layout_entries()
        self.build_tcs_template()

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
        aex = int(SIGSTRUCT.get(self.css, "attributes_flags")) & FLAGS_AEX_NOTIFY
        flags = M.TCS_FLAG_AEXNOTIFY if aex else 0
        self.buf[self.tcs_template:self.tcs_template + M.TCS.size] = M.TCS.pack({
            "flags": flags, "oentry": (oentry + offset) & U64, "nssa": M.SSA_NUM, "cssa": 0,
            "ossa": (ssa.rva - tcs.rva + offset) & U64, "ofs_base": fs, "ogs_base": fs,
            "ofs_limit": 0xFFFFFFFF, "ogs_limit": 0xFFFFFFFF})

    def build_patch_table(self) -> None:
        gd_size = self.profile.global_data.size
        self.gd = self.alloc(gd_size)
        dst = global_data_offset(self.elf, self.where)  # sdk_version checked by profile_for_enclave
        self.patches.append((dst, self.gd, gd_size))
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
        if size == 0 and self.profile.gd_elrange_size_is_enclave_size:
            size = self.enclave_size  # SDK < 2.24 update_global_data.hxx (image, start stay 0)
        gd = self.profile.global_data.pack({
            "enclave_size": self.enclave_size, "heap_offset": heap.rva, "heap_size": p.heap_init,
            "rsrv_offset": rsrv.rva if rsrv else 0, "rsrv_size": p.rsrv_init if rsrv else 0,
            "rsrv_executable": p.rsrv_executable if rsrv else 0, "thread_policy": p.tcs_policy,
            "tcs_max_num": p.tcs_max_num, "tcs_num": p.tcs_num, "td_template": tdata,
            "tcs_template": bytes(self.buf[self.tcs_template:self.tcs_template + M.TCS.size]),
            "layout_entry_num": len(self.layouts),
            "layout_table": table + bytes(32 * M.LAYOUT_ENTRY_NUM - len(table)),
            "enclave_image_address": image, "elrange_start_address": start,
            "elrange_size": size, "edmm_bk_overhead": p.edmm_bk_overhead})
        self.buf[self.gd:self.gd + len(gd)] = gd


def build_metadata(elf: EnclaveElf, cfg: EnclaveConfig, where: str = "enclave",
                   profile: SdkProfile | None = None) -> Built:
    """CMetadata::build_metadata: everything but the date, ENCLAVEHASH and signature.

    ``profile`` defaults to the one the enclave's g_global_data.sdk_version selects."""
    if profile is None:
        profile = profile_for_enclave(elf, where)
    b = _Builder(elf, cfg, where, profile)
    b.modify_metadata()
    b.build_elrange_entry()
    b.build_extend_table()
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
                 ssa_frame_size=b.ssa_frame_size, meta_versions=b.meta_versions, params=b.p, cfg=cfg,
                 profile=profile)
