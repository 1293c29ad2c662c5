"""Enclave metadata (``metadata_t``) and the structures the signer writes or measures.

Declared once as field tables (SDK common/inc/internal/metadata.h, arch.h, global_data.h,
thread_data.h); tests assert the offsets.  Where SDK releases differ (``metadata_t`` has 2
or 4 data directories, ``global_data_t`` 1760 or 1768 bytes) both tables are here and the
signer profile (profiles.py) says which one a release uses.
"""

from typing import NamedTuple

from .structs import Kind, Struct

METADATA_MAGIC = 0x86A80294635D0E4C
SGX_MAJOR_VERSION_GAP = 10  # ELRANGE metadata: major + 10 (13.x primary, 11.x compat)


def make_version(major: int, minor: int) -> int:
    return major << 32 | minor


VERSION_LEGACY_1_3 = make_version(1, 3)  # SGX_1_5: loader adds a page after unaligned segment ends

_HEADER_FIELDS: list[tuple[str, int, int, Kind]] = [
    ("magic_num", 0, 8, "u"),
    ("version", 8, 8, "u"),
    ("size", 16, 4, "u"),
    ("tcs_policy", 20, 4, "u"),
    ("ssa_frame_size", 24, 4, "u"),
    ("max_save_buffer_size", 28, 4, "u"),
    ("desired_misc_select", 32, 4, "u"),
    ("tcs_min_pool", 36, 4, "u"),
    ("enclave_size", 40, 8, "u"),
    ("attributes_flags", 48, 8, "u"),
    ("attributes_xfrm", 56, 8, "u"),
    ("enclave_css", 64, 1808, "bytes"),
    ("dir_patch_offset", 1872, 4, "u"),
    ("dir_patch_size", 1876, 4, "u"),
    ("dir_layout_offset", 1880, 4, "u"),
    ("dir_layout_size", 1884, 4, "u"),
]
METADATA_DIRS_OFFSET = 1872  # offsetof(metadata_t, dirs)
# SDK 2.18-2.23: dirs[DIR_NUM = 2] (patch, layout); data[] at 0x760.  Also the prefix every
# metadata_t shares, used to read metadata of any version.
METADATA_HEADER_DIR2 = Struct("metadata_t (DIR_NUM 2)", 0x760, _HEADER_FIELDS)
# SDK 2.24+: dirs[DIR_NUM = 4] (+ ELRANGE, EXTEND); data[] at 0x770.
METADATA_HEADER_DIR4 = Struct("metadata_t (DIR_NUM 4)", 0x770, [
    *_HEADER_FIELDS,
    ("dir_elrange_offset", 1888, 4, "u"),
    ("dir_elrange_size", 1892, 4, "u"),
    ("dir_extend_offset", 1896, 4, "u"),
    ("dir_extend_size", 1900, 4, "u"),
])
DATA_DIRECTORY = Struct("data_directory_t", 8, [("offset", 0, 4, "u"), ("size", 4, 4, "u")])

LAYOUT_ENTRY = Struct("layout_entry_t", 32, [
    ("id", 0, 2, "u"), ("attributes", 2, 2, "u"), ("page_count", 4, 4, "u"), ("rva", 8, 8, "u"),
    ("content_size", 16, 4, "u"), ("content_offset", 20, 4, "u"), ("si_flags", 24, 8, "u"),
])
LAYOUT_GROUP = Struct("layout_group_t", 32, [
    ("id", 0, 2, "u"), ("entry_count", 2, 2, "u"), ("load_times", 4, 4, "u"), ("load_step", 8, 8, "u"),
    ("reserved", 16, 16, "bytes"),
])
PATCH_ENTRY = Struct("patch_entry_t", 32, [
    ("dst", 0, 8, "u"), ("src", 8, 4, "u"), ("size", 12, 4, "u"), ("reserved", 16, 16, "bytes"),
])
ELRANGE_ENTRY = Struct("elrange_config_entry_t", 24, [
    ("enclave_image_address", 0, 8, "u"), ("elrange_start_address", 8, 8, "u"), ("elrange_size", 16, 8, "u"),
])
TCS = Struct("tcs_t (template)", 72, [
    ("reserved0", 0, 8, "u"), ("flags", 8, 8, "u"), ("ossa", 16, 8, "u"), ("cssa", 24, 4, "u"),
    ("nssa", 28, 4, "u"), ("oentry", 32, 8, "u"), ("reserved1", 40, 8, "u"), ("ofs_base", 48, 8, "u"),
    ("ogs_base", 56, 8, "u"), ("ofs_limit", 64, 4, "u"), ("ogs_limit", 68, 4, "u"),
])
THREAD_DATA = Struct("thread_data_t", 192, [
    ("self_addr", 0, 8, "u"), ("last_sp", 8, 8, "u"), ("stack_base_addr", 16, 8, "u"),
    ("stack_limit_addr", 24, 8, "u"), ("first_ssa_gpr", 32, 8, "u"), ("stack_guard", 40, 8, "u"),
    ("flags", 48, 8, "u"), ("xsave_size", 56, 8, "u"), ("last_error", 64, 8, "u"),
    ("aex_mitigation_list", 72, 8, "u"), ("aex_notify_flag", 80, 8, "u"), ("first_ssa_xsave", 88, 8, "u"),
    ("m_next", 96, 8, "u"), ("tls_addr", 104, 8, "u"), ("tls_array", 112, 8, "u"),
    ("exception_flag", 120, 8, "u"), ("cxx_thread_info", 128, 48, "bytes"),
    ("stack_commit_addr", 176, 8, "u"),
    ("aex_notify_entropy_cache", 184, 4, "u"), ("aex_notify_entropy_remaining", 188, 4, "u"),
])
LAYOUT_ENTRY_NUM = 43
_GLOBAL_DATA_FIELDS: list[tuple[str, int, int, Kind]] = [
    ("sdk_version", 0, 8, "u"), ("enclave_size", 8, 8, "u"), ("heap_offset", 16, 8, "u"),
    ("heap_size", 24, 8, "u"), ("rsrv_offset", 32, 8, "u"), ("rsrv_size", 40, 8, "u"),
    ("rsrv_executable", 48, 8, "u"), ("thread_policy", 56, 8, "u"), ("tcs_max_num", 64, 8, "u"),
    ("tcs_num", 72, 8, "u"), ("td_template", 80, 192, "bytes"), ("tcs_template", 272, 72, "bytes"),
    ("layout_entry_num", 344, 4, "u"), ("reserved", 348, 4, "u"),
    ("layout_table", 352, 32 * LAYOUT_ENTRY_NUM, "bytes"), ("enclave_image_address", 1728, 8, "u"),
    ("elrange_start_address", 1736, 8, "u"), ("elrange_size", 1744, 8, "u"),
    ("edmm_bk_overhead", 1752, 8, "u"),
]
# SDK 2.20-2.24 (ELF64): ends with edmm_bk_overhead.
GLOBAL_DATA_NO_FIPS = Struct("global_data_t (1760)", 1760, _GLOBAL_DATA_FIELDS)
# SDK 2.25+: fips_on and a reserved u32 appended.
GLOBAL_DATA_FIPS = Struct("global_data_t (1768, fips_on)", 1768, [
    *_GLOBAL_DATA_FIELDS, ("fips_on", 1760, 4, "u"), ("reserved2", 1764, 4, "u"),
])
TCS_FLAG_AEXNOTIFY = 0x2  # tcs_t.flags with EnableAEXNotify (thread_data.h, 2.20 and 2.26)
SSA_GPR_SIZE = 184  # sizeof(ssa_gpr_t)
SSA_NUM = 2

# Layout ids (metadata.h)
GROUP_FLAG = 1 << 12
HEAP_MIN, HEAP_INIT, HEAP_MAX, TCS_ID, TD, SSA, STACK_MAX, STACK_MIN = 1, 2, 3, 4, 5, 6, 7, 8
THREAD_GROUP = GROUP_FLAG | 9
GUARD = 10
DYN_DELTA = 10  # LAYOUT_ID_HEAP_DYN_MIN - LAYOUT_ID_HEAP_MIN
THREAD_GROUP_DYN = GROUP_FLAG | 19
RSRV_MIN, RSRV_INIT, RSRV_MAX, USER_REGION = 20, 21, 22, 23
LAYOUT_NAMES = {1: "HEAP_MIN", 2: "HEAP_INIT", 3: "HEAP_MAX", 4: "TCS", 5: "TD", 6: "SSA", 7: "STACK_MAX",
                8: "STACK_MIN", THREAD_GROUP: "THREAD_GROUP", 10: "GUARD", 11: "HEAP_DYN_MIN",
                12: "HEAP_DYN_INIT", 13: "HEAP_DYN_MAX", 14: "TCS_DYN", 15: "TD_DYN", 16: "SSA_DYN",
                17: "STACK_DYN_MAX", 18: "STACK_DYN_MIN", THREAD_GROUP_DYN: "THREAD_GROUP_DYN",
                20: "RSRV_MIN", 21: "RSRV_INIT", 22: "RSRV_MAX", 23: "USER_REGION"}

# Page attributes (se_page_attr.h)
PAGE_ATTR_EADD = 0x1
PAGE_ATTR_EEXTEND = 0x2
PAGE_ATTR_EREMOVE = 0x4
PAGE_ATTR_POST_ADD = 0x8
PAGE_ATTR_POST_REMOVE = 0x10
PAGE_ATTR_DYN_THREAD = 0x20
PAGE_DIR_GROW_DOWN = 0x40


class Entry(NamedTuple):
    """A layout entry (``layout_entry_t``) or, when ``id`` has GROUP_FLAG, a group (``layout_group_t``):
    for groups, ``page_count`` holds entry_count, ``content_size`` load_times, ``rva`` load_step."""

    id: int
    attributes: int = 0
    page_count: int = 0
    rva: int = 0
    content_size: int = 0
    content_offset: int = 0
    si_flags: int = 0

    @property
    def is_group(self) -> bool:
        return bool(self.id & GROUP_FLAG)

    @staticmethod
    def group(id_: int, entry_count: int, load_times: int, load_step: int = 0) -> "Entry":
        return Entry(id_, 0, entry_count, load_step, load_times)

    @property
    def entry_count(self) -> int:
        return self.page_count

    @property
    def load_times(self) -> int:
        return self.content_size

    @property
    def load_step(self) -> int:
        return self.rva

    def with_(self, **kw: int) -> "Entry":
        return self._replace(**kw)

    def pack(self) -> bytes:
        if self.is_group:
            return LAYOUT_GROUP.pack({"id": self.id, "entry_count": self.entry_count,
                                      "load_times": self.load_times, "load_step": self.load_step})
        return LAYOUT_ENTRY.pack({"id": self.id, "attributes": self.attributes, "page_count": self.page_count,
                                  "rva": self.rva, "content_size": self.content_size,
                                  "content_offset": self.content_offset, "si_flags": self.si_flags})

    @staticmethod
    def unpack(raw: bytes | memoryview) -> "Entry":
        ident = int.from_bytes(raw[0:2], "little")
        if ident & GROUP_FLAG:
            g = LAYOUT_GROUP.unpack(raw)
            return Entry.group(ident, int(g["entry_count"]), int(g["load_times"]), int(g["load_step"]))
        e = LAYOUT_ENTRY.unpack(raw)
        return Entry(ident, int(e["attributes"]), int(e["page_count"]), int(e["rva"]), int(e["content_size"]),
                     int(e["content_offset"]), int(e["si_flags"]))

    def describe(self) -> str:
        name = LAYOUT_NAMES.get(self.id, str(self.id))
        if self.is_group:
            return f"{name} count={self.entry_count} times={self.load_times} step={self.load_step:#x}"
        return (f"{name} rva={self.rva:#x} pages={self.page_count} attr={self.attributes:#x} "
                f"flags={self.si_flags:#x}")


def pack_entries(entries: list[Entry]) -> bytes:
    return b"".join(e.pack() for e in entries)


def unpack_entries(raw: bytes | memoryview) -> list[Entry]:
    return [Entry.unpack(raw[i:i + 32]) for i in range(0, len(raw) - len(raw) % 32, 32)]


class ParsedMetadata(NamedTuple):
    """One metadata_t found in a signed file's .note.sgxmeta."""

    offset: int  # inside the metadata block
    header: dict[str, int | bytes]  # the metadata_t header fields (Struct.unpack)
    raw: bytes  # this metadata's bytes [0, size)
    layout: list[Entry]
    patches: list[tuple[int, int, int]]  # (dst file offset, src metadata offset, size)

    @property
    def version(self) -> int:
        return int(self.header["version"])

    @property
    def css(self) -> bytes:
        return bytes(self.header["enclave_css"])

    def elrange(self) -> tuple[int, int, int] | None:
        """(enclave_image_address, elrange_start_address, elrange_size) of ELRANGE metadata
        (major > 10), else None.  Metadata 13.2/11.5 and later (SDK 2.24+) point at the entry
        with dirs[DIR_ELRANGE]; earlier ELRANGE metadata with a data_directory_t at the start
        of data[] (SDK 2.18-2.23 loader.cpp set_elrange_config)."""
        major, minor = self.version >> 32, self.version & 0xFFFFFFFF
        if major <= SGX_MAJOR_VERSION_GAP:
            return None
        if (major % SGX_MAJOR_VERSION_GAP, minor) >= (3, 2) or (major % SGX_MAJOR_VERSION_GAP == 1
                                                             and minor >= 5):
            hdr = METADATA_HEADER_DIR4
            if len(self.raw) < hdr.size:
                raise ValueError("ELRANGE metadata shorter than its header")
            off = int(hdr.get(self.raw, "dir_elrange_offset"))
            size = int(hdr.get(self.raw, "dir_elrange_size"))
        else:
            d = DATA_DIRECTORY.unpack(self.raw, METADATA_HEADER_DIR2.size)
            off, size = int(d["offset"]), int(d["size"])
        if size != ELRANGE_ENTRY.size or off < METADATA_HEADER_DIR2.size or off + size > len(self.raw):
            raise ValueError("ELRANGE metadata without a valid ELRANGE entry")
        e = ELRANGE_ENTRY.unpack(self.raw, off)
        return int(e["enclave_image_address"]), int(e["elrange_start_address"]), int(e["elrange_size"])


def parse_metadata_block(block: bytes) -> list[ParsedMetadata]:
    """All metadata_t records chained in a .note.sgxmeta descriptor (primary, then compat)."""
    out = []
    pos = 0
    hdr = METADATA_HEADER_DIR2  # the prefix all versions share
    while pos + hdr.size <= len(block):
        h = hdr.unpack(block, pos)
        size = int(h["size"])
        if h["magic_num"] != METADATA_MAGIC or size < hdr.size or pos + size > len(block):
            break
        raw = block[pos:pos + size]
        lo, ls = int(h["dir_layout_offset"]), int(h["dir_layout_size"])
        po, ps = int(h["dir_patch_offset"]), int(h["dir_patch_size"])
        if lo + ls > size or po + ps > size:
            break
        layout = unpack_entries(raw[lo:lo + ls])
        patches = []
        for i in range(po, po + ps - ps % 32, 32):
            p = PATCH_ENTRY.unpack(raw, i)
            patches.append((int(p["dst"]), int(p["src"]), int(p["size"])))
        out.append(ParsedMetadata(pos, h, raw, layout, patches))
        pos += size
    return out
