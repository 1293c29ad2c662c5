"""EDMM bookkeeping that sgx_sign reserves in the USER_REGION layout entry (manage_metadata.cpp
``calculate_rts_bk_overhead`` and the USER_REGION part of ``build_layout_table``).

The sizes of sgx-emm's ``struct ema_t_`` (72) and ``struct bit_array_`` (24) on x86-64 are the
same at intel/sgx-emm eb4d16c (pinned by linux-sgx 2.20, 2.21 and Occlum's 2.20 fork) and at
893dcbc (pinned by 2.26): ``include/ema_imp.h`` and ``bit_array_imp.h`` did not change.
"""

from __future__ import annotations

from .elf import PAGE, EnclaveElf
from .metadata import SSA_NUM
from .params import Params

EMA_SIZE, BIT_ARRAY_SIZE = 72, 24
USER_REGION_GUARD = 0x8000  # two of them around the bookkeeping area
BK_ALIGN = 0x10000


def _page_round(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


def _aligned(size: int) -> int:
    """edmm_aligned_overhead: an emalloc block (8-byte header, 8-byte aligned, at least 16)."""
    b = -(-(size + 8) // 8) * 8
    return max(b, 0x10)


def rts_bk_overhead(p: Params, elf: EnclaveElf, ssa_frame_size: int, minpool: int, erem: int) -> int:
    """CMetadata::calculate_rts_bk_overhead: emalloc bytes for the EMAs of every region."""
    ema, bit = _aligned(EMA_SIZE), _aligned(BIT_ARRAY_SIZE)

    def node(pages: int) -> int:
        return ema + bit + _aligned(-(-pages // 8) * 8 >> 3)

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
    keep += node(ssa_frame_size * SSA_NUM)
    removed += ema
    keep += ema
    removed += ema
    td = 1 + (_page_round(elf.tls_size) // PAGE if elf.tls_size is not None else 0)
    keep += node(td)
    removed += ema
    total_keep = keep
    if minpool > 0:
        total_keep += keep + (keep * (minpool - 1) if minpool > 1 else 0)
    total_removed = removed
    if erem > 0:
        total_removed += removed + (removed * (erem - 1) if erem > 1 else 0)
    if p.tcs_max_num > minpool + 1:
        total_keep += keep * (p.tcs_max_num - minpool)
    sections = sum(node(_page_round(s.memsz) // PAGE) for s in elf.segments)
    return heap + rsrv + total_keep + total_removed + sections + ema


def user_region_size(p: Params, elf: EnclaveElf, ssa_frame_size: int, minpool: int, erem: int) -> int:
    """Bytes of the USER_REGION entry (UserRegionSize + bookkeeping + guards); sets
    ``p.edmm_bk_overhead`` to the aligned bookkeeping size (g_global_data.edmm_bk_overhead)."""
    user = 0
    if p.user_region > 0:
        user = p.user_region
        overhead = _page_round(p.user_region >> 15)
        p.edmm_bk_overhead += overhead if overhead > 0 else PAGE
    p.edmm_bk_overhead += rts_bk_overhead(p, elf, ssa_frame_size, minpool, erem)
    aligned = -(-(p.edmm_bk_overhead + 32) // BK_ALIGN) * BK_ALIGN
    p.edmm_bk_overhead = aligned
    return user + aligned + (USER_REGION_GUARD << 1)
