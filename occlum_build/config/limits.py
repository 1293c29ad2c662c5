"""How Occlum 0.31's gen_internal_conf turns Occlum.json limits into enclave numbers.

One place for the EDMM / non-EDMM rules (research: occlum_build.md §2.4), used by the
schema (cache_size must fit the kernel heap) and by Enclave.xml / .Occlum_sys.json.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..sizes import parse_size

# gen_internal_conf's DefaultConfig (Occlum 0.31).
DEFAULT_KERNEL_HEAP_MAX = parse_size("1024MB")
DEFAULT_USER_SPACE_MAX = parse_size("16GB")
DEFAULT_TCS_INIT = 16
DEFAULT_TCS_MAX = 4096
# The most threads (max_num_of_threads, init_num_of_threads) we accept.  Occlum reads a u32 and
# documents no bound; 4096 is its own TCS maximum (TCSMaxNum with EDMM).  Every thread is a TCS,
# SSA and stack that signing and every SIM boot measure: ~1 ms each, 4-5 s at 4096, and 100000
# threads took 108 s per build and per boot (docs/configuration.md).
MAX_THREADS = DEFAULT_TCS_MAX
EXTRA_USER_REGION_FOR_SDK = parse_size("1GB")

# Mount option bounds checked by gen_internal_conf.
CACHE_PAGE_SIZE = 0x1000
MIN_CACHE_SIZE = 48 * CACHE_PAGE_SIZE  # 192KB
MIN_EXT2_DISK_SIZE = 5 * (1 << 30)  # 5GB


@dataclass(frozen=True)
class EnclaveLimits:
    """The numbers Enclave.xml and .Occlum_sys.json carry, for one EDMM setting."""

    edmm: bool
    stack_size: int
    heap_init: int
    heap_max: int
    tcs_init: int
    tcs_min_pool: int
    tcs_max: int
    user_space_init: int
    user_space_max: int
    reserved_mem: int
    user_region: int | None  # only with EDMM


def kernel_heap(heap_size: int, heap_max_size: int | None, edmm: bool) -> tuple[int, int]:
    """(init, max) kernel heap in bytes."""
    if edmm:
        return heap_size, max(heap_max_size if heap_max_size is not None else heap_size,
                              DEFAULT_KERNEL_HEAP_MAX)
    chosen = heap_max_size if heap_max_size is not None else heap_size
    return chosen, chosen


def user_space(init: int, max_size: int | None, edmm: bool) -> tuple[int, int]:
    """(init, max) user space in bytes."""
    given = max_size if max_size is not None else init
    return init, (max(given, DEFAULT_USER_SPACE_MAX) if edmm else given)


def tcs(max_threads: int, init_threads: int | None, edmm: bool) -> tuple[int, int, int]:
    """(TCSNum, TCSMinPool, TCSMaxNum)."""
    if not edmm:
        return max_threads, max_threads, max_threads
    init = init_threads if init_threads is not None else min(DEFAULT_TCS_INIT, max_threads)
    return init, init, max(max_threads, DEFAULT_TCS_MAX)


def compute(*, stack_size: int, heap_size: int, heap_max_size: int | None, user_size: int,
            user_max_size: int | None, max_threads: int, init_threads: int | None,
            edmm: bool) -> EnclaveLimits:
    heap_init, heap_max = kernel_heap(heap_size, heap_max_size, edmm)
    u_init, u_max = user_space(user_size, user_max_size, edmm)
    t_init, t_pool, t_max = tcs(max_threads, init_threads, edmm)
    if edmm:
        reserved = u_init
        region: int | None = u_max if u_max == u_init else u_max + EXTRA_USER_REGION_FOR_SDK
    else:
        reserved, region = u_max, None
    return EnclaveLimits(edmm, stack_size, heap_init, heap_max, t_init, t_pool, t_max,
                         u_init, u_max, reserved, region)
