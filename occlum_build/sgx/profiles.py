"""Signer profiles: what differs between the SDK releases whose enclaves this signer signs.

sgx_sign signs an enclave only if ``g_global_data.sdk_version`` (its first u64) equals its
own ``VERSION_UINT``, because ``metadata_t``, ``global_data_t`` and the layout rules change
between SDK releases.  This signer implements several releases, one :class:`SdkProfile`
each (the table :data:`PROFILES`); :func:`profile_for_enclave` reads the enclave's
sdk_version and picks the profile, and every other module takes its sizes, versions and
rules from that profile (nothing else tests an SDK version).

Sources (read for facts, docs/sgx-signing.md "Profiles"): intel/linux-sgx tags sgx_2.20,
sgx_2.21, sgx_2.26 and occlum/linux-sgx@cd4e96fd (branch sgx_2.20_for_occlum, 2.20.100.4):
``common/inc/internal/metadata.h``, ``global_data.h``, ``common/inc/sgx_attributes.h``,
``sdk/sign_tool/SignTool/manage_metadata.cpp``, ``sign_tool.cpp``,
``psw/urts/parser/update_global_data.hxx``.
"""

from typing import NamedTuple

from . import metadata as M
from .elf import EnclaveElf, EnclaveError
from .structs import Struct

# sgx_attributes.h SGX_XFRM_*
XFRM_LEGACY, XFRM_AVX, XFRM_MPX, XFRM_AVX512 = 0x3, 0x6, 0x18, 0xE6
XFRM_PKRU, XFRM_AMX = 0x200, 0x60000
U64 = (1 << 64) - 1


class SdkProfile(NamedTuple):
    """One SDK release's sgx_sign, as far as the output bytes depend on it."""

    version: tuple[int, int, int]  # (major, minor, revision): g_global_data.sdk_version
    origin: str  # whose sgx_sign, at which source revision
    metadata_size: int  # METADATA_SIZE: the .note.sgxmeta descriptor size (descsz)
    header: Struct  # metadata_t up to data[]: DIR_NUM 2 (patch, layout) or 4 (+ elrange, extend)
    global_data: Struct  # global_data_t (ELF64), the measured g_global_data template
    version_primary: int  # metadata version written for SGX2 (MAJOR_VERSION.MINOR_VERSION)
    version_compat: int  # the SGX1 compatible metadata (SGX_1_9_MAJOR.SGX_1_9_MINOR)
    xfrm_reserved: int  # SGX_XFRM_RESERVED: XFRM bits checked to be zero
    # modify_metadata: SIGSTRUCT MISCSELECT = MiscSelect & MiscMask and metadata
    # desired_misc_select = MiscSelect (2.24+); else MISCSELECT = MiscSelect, desired 0
    misc_select_masked: bool
    # the ELRANGE entry is found through dirs[DIR_ELRANGE] (DIR_NUM 4); else through a
    # data_directory_t allocated at the start of data[] (2.18-2.23)
    elrange_dir_in_header: bool
    # update_global_data.hxx without ELRANGE: g_global_data.elrange_size = enclave_size
    # (before 2.24), else 0
    gd_elrange_size_is_enclave_size: bool
    # generate_compatible_metadata also appends the SGX1 (compat) metadata to SGX2-only
    # metadata (Occlum's fork patch 64e8e0c9); Intel's tool writes the primary alone
    compat_for_sgx2_only: bool
    xml_parameters_absent: frozenset[str]  # Enclave.xml elements this sgx_sign does not know
    verified: str  # what a vector confirms (docs/sgx-signing.md)

    @property
    def sdk_version(self) -> int:
        major, minor, rev = self.version
        return major << 32 | minor << 16 | rev

    @property
    def name(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def dir_num(self) -> int:
        return (self.header.size - M.METADATA_DIRS_OFFSET) // 8

    def metadata_version(self, *, compat: bool, elrange: bool) -> int:
        """The version of the primary (SGX2) or compat (SGX1) metadata; ELRANGE adds 10 to the major."""
        v = self.version_compat if compat else self.version_primary
        return v + (M.SGX_MAJOR_VERSION_GAP << 32 if elrange else 0)


SDK_2_26 = SdkProfile(
    version=(2, 26, 100),
    origin="Intel SGX SDK 2.26 sgx_sign (intel/linux-sgx sgx_2.26, 2.26.100.0)",
    metadata_size=0x6000,
    header=M.METADATA_HEADER_DIR4,
    global_data=M.GLOBAL_DATA_FIPS,
    version_primary=M.make_version(3, 3),
    version_compat=M.make_version(1, 5),
    xfrm_reserved=~(XFRM_LEGACY | XFRM_AVX | XFRM_AVX512 | XFRM_PKRU | XFRM_AMX) & U64,
    misc_select_masked=True,
    elrange_dir_in_header=True,
    gd_elrange_size_is_enclave_size=False,
    compat_for_sgx2_only=False,
    xml_parameters_absent=frozenset(),
    verified="byte-identical to real sgx_sign 2.26.100 output (tests/vectors/sgx/h0mur0)",
)

# Occlum's fork of SDK 2.20 (Occlum 0.30): Intel's 2.20 sign tool plus two fork patches,
# c45a5cdf "Enable Intel MPX for enclaves by default" (MPX left out of SGX_XFRM_RESERVED, so
# the default XFRM mask is ...FF03 and metadata attributes.xfrm 0xFF) and 64e8e0c9
# "Generate compatible metadata for SGX2".
_FORK_XFRM_RESERVED = ~(XFRM_LEGACY | XFRM_AVX | XFRM_AVX512 | XFRM_MPX | XFRM_PKRU | XFRM_AMX) & U64
_FIPS_PARAMETERS = frozenset({"EnableIPPFIPS", "EnableOSSLFIPS"})  # added in SDK 2.24/2.26

SDK_2_20 = SdkProfile(
    version=(2, 20, 100),
    origin="Occlum's SDK 2.20 fork sgx_sign (occlum/linux-sgx@cd4e96fd, 2.20.100.4)",
    metadata_size=0x5000,
    header=M.METADATA_HEADER_DIR2,
    global_data=M.GLOBAL_DATA_NO_FIPS,
    version_primary=M.make_version(3, 0),
    version_compat=M.make_version(1, 4),
    xfrm_reserved=_FORK_XFRM_RESERVED,
    misc_select_masked=False,
    elrange_dir_in_header=False,
    gd_elrange_size_is_enclave_size=True,
    compat_for_sgx2_only=True,
    xml_parameters_absent=_FIPS_PARAMETERS,
    verified="byte-identical to the fork's sgx_sign output "
             "(tests/vectors/occlum-interop/signing-sdk220, SGX1-only and EDMM configs)",
)

# Occlum 0.31's fork (2.21.100.1).  Intel's sgx_2.21 differs from sgx_2.20 only in
# se_version.h among the files the sign tool is built from (sdk/sign_tool, psw/urts loader
# and parser, common/inc/internal, sgx-emm pinned at the same commit); the fork branch
# (sgx_2.21_for_occlum) was not available, so its two patches are assumed carried over as
# they were from 2.16 to 2.20 (MPX) and into 2.20 (compat).  No 2.21 vector exists.
SDK_2_21 = SdkProfile(
    version=(2, 21, 100),
    origin="Occlum's SDK 2.21 fork sgx_sign (2.21.100.1; assumed = the 2.20 fork but for the version)",
    metadata_size=SDK_2_20.metadata_size,
    header=SDK_2_20.header,
    global_data=SDK_2_20.global_data,
    version_primary=SDK_2_20.version_primary,
    version_compat=SDK_2_20.version_compat,
    xfrm_reserved=SDK_2_20.xfrm_reserved,
    misc_select_masked=SDK_2_20.misc_select_masked,
    elrange_dir_in_header=SDK_2_20.elrange_dir_in_header,
    gd_elrange_size_is_enclave_size=SDK_2_20.gd_elrange_size_is_enclave_size,
    compat_for_sgx2_only=SDK_2_20.compat_for_sgx2_only,
    xml_parameters_absent=SDK_2_20.xml_parameters_absent,
    verified="not verified against a vector: derived from the 2.20 profile (Intel 2.20 -> 2.21 changes "
             "only the version in the sign tool's sources)",
)

PROFILES: tuple[SdkProfile, ...] = (SDK_2_20, SDK_2_21, SDK_2_26)
_BY_VERSION = {p.sdk_version: p for p in PROFILES}
DEFAULT = SDK_2_26  # what `occlum build` links its own LibOS against


def supported() -> str:
    names = [p.name for p in PROFILES]
    return ", ".join(names[:-1]) + " and " + names[-1]


def version_str(v: int) -> str:
    return f"{v >> 32}.{(v >> 16) & 0xFFFF}.{v & 0xFFFF}"


def select_profile(sdk_version: int, where: str = "enclave") -> SdkProfile:
    """The profile for an enclave whose g_global_data.sdk_version is ``sdk_version``."""
    p = _BY_VERSION.get(sdk_version)
    if p is None:
        raise EnclaveError(f"g_global_data.sdk_version is {sdk_version:#x} ({version_str(sdk_version)}); "
                           f"this signer supports SDK {supported()}", where=where)
    return p


def global_data_offset(elf: EnclaveElf, where: str = "enclave") -> int:
    """File offset of g_global_data (what the patch table's first entry overwrites)."""
    rva = elf.symbols.get("g_global_data", 0)
    if rva == 0:
        raise EnclaveError("no g_global_data symbol in .dynsym (link the enclave with the SGX SDK trts)",
                           where=where)
    return elf.file_offset_of(rva, 8)


def profile_for_enclave(elf: EnclaveElf, where: str = "enclave") -> SdkProfile:
    """Read g_global_data.sdk_version, select its profile, and check the enclave against it."""
    off = global_data_offset(elf, where)
    p = select_profile(int.from_bytes(elf.data[off:off + 8], "little"), where)
    if elf.metadata_size != p.metadata_size:
        raise EnclaveError(f".note.sgxmeta holds {elf.metadata_size:#x} bytes, but an SDK {p.name} enclave "
                           f"(g_global_data.sdk_version) has {p.metadata_size:#x}: the enclave was not "
                           f"linked with SDK {p.name}'s trts", where=where)
    if off + p.global_data.size > len(elf.data):
        raise EnclaveError("g_global_data extends past the end of the file", where=where)
    return p
