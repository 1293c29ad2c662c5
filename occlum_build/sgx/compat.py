"""The metadata block sgx_sign writes into ``.note.sgxmeta`` (sign_tool.cpp
``generate_compatible_metadata``, ``handle_compatible_metadata``, ``update_metadata``): the
primary (SGX2) metadata, its SGX1 compatible copy, or both, as the signer profile rules.
"""

from __future__ import annotations

from ..errors import OcclumError
from . import metadata as M
from .elf import PAGE
from .profiles import SdkProfile

SGX1, SGX2 = 1, 2  # bits of the metadata versions check_config asks for


def compat_metadata(primary: bytes, layout: list[M.Entry], tcs_num: int, elrange: bool,
                    profile: SdkProfile) -> bytes:
    """generate_compatible_metadata: the SGX1 copy of ``primary`` (version 1.5 or 1.4)."""
    hdr = M.METADATA_HEADER_DIR2  # version, size and the layout directory are in the shared prefix
    lo = int(hdr.get(primary, "dir_layout_offset"))
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
    hdr.set(out, "version", profile.metadata_version(compat=True, elrange=elrange))
    hdr.set(out, "size", len(out))
    hdr.set(out, "dir_layout_size", len(raw))
    return bytes(out)


def metadata_block(primary: bytes, layout: list[M.Entry], meta_versions: int, tcs_num: int, elrange: bool,
                   profile: SdkProfile) -> bytes:
    """The METADATA_SIZE bytes written at the metadata offset.

    SGX1 only: the compat copy alone.  SGX1 and SGX2: primary, then the compat copy.  SGX2
    only: the primary alone (Intel), or primary then compat when the profile says so
    (Occlum's fork, patch 64e8e0c9)."""
    kind = meta_versions & (SGX1 | SGX2)
    if kind == SGX2 and not profile.compat_for_sgx2_only:
        block = primary
    else:
        compat = compat_metadata(primary, layout, tcs_num, elrange, profile)
        block = compat if kind == SGX1 else primary + compat
    if len(block) > profile.metadata_size:
        raise OcclumError(f"the metadata ({len(block):#x} bytes) does not fit in .note.sgxmeta "
                          f"({profile.metadata_size:#x}); reduce the number of layout entries")
    return block + bytes(profile.metadata_size - len(block))
