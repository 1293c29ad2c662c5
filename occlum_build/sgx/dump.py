"""Reading a signed enclave: its SIGSTRUCT and metadata, and replaying its measurement.

Works on enclaves signed by any SDK with the ``.note.sgxmeta`` metadata (checked on 2.13,
2.20 and 2.26 output): the SIGSTRUCT is read from the embedded metadata, and the measurement is
replayed from the embedded layout and patch tables as the SDK loader would add the pages.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from ..errors import OcclumError, VerifyError
from . import metadata as M
from .elf import EnclaveElf, parse_enclave
from .loader import measure_layout, measure_sections
from .measure import Measurement
from .sigstruct import SIGSTRUCT, format_date, mrsigner, verify_sigstruct


@dataclass
class EnclaveInfo:
    mrenclave: str  # hex, from SIGSTRUCT.ENCLAVEHASH
    mrsigner: str  # hex
    date: str  # YYYY-MM-DD
    isv_prod_id: int
    isv_svn: int
    attributes_flags: int
    attributes_xfrm: int
    attributes_mask_flags: int
    attributes_mask_xfrm: int
    misc_select: int
    misc_mask: int
    debuggable: bool  # the SIGSTRUCT allows a DEBUG enclave (DisableDebug=0)
    kss: bool
    isv_family_id: str
    isv_ext_prod_id: str
    vendor: int
    enclave_size: int
    metadata_versions: list[str] = field(default_factory=list)
    metadata: list[dict[str, int]] = field(default_factory=list)  # each metadata_t's header scalars
    signature_valid: bool = False
    signature_error: str = ""
    replayed_mrenclave: str = ""  # measurement recomputed from the file ("" if it could not be)
    replay_error: str = ""

    @property
    def measurement_matches(self) -> bool:
        return self.replayed_mrenclave == self.mrenclave

    def to_json(self) -> str:
        d = asdict(self)
        d["measurement_matches"] = self.measurement_matches
        return json.dumps(d, indent=2, sort_keys=True)

    def to_text(self) -> str:
        rows = [
            ("MRENCLAVE", self.mrenclave), ("MRSIGNER", self.mrsigner), ("date", self.date),
            ("ISV product id", str(self.isv_prod_id)), ("ISV SVN", str(self.isv_svn)),
            ("attributes", f"flags {self.attributes_flags:#x} xfrm {self.attributes_xfrm:#x}"),
            ("attribute mask", f"flags {self.attributes_mask_flags:#x} xfrm {self.attributes_mask_xfrm:#x}"),
            ("misc select/mask", f"{self.misc_select:#x} / {self.misc_mask:#x}"),
            ("debuggable", "yes" if self.debuggable else "no"), ("KSS", "yes" if self.kss else "no"),
            ("ISV family id", self.isv_family_id), ("ISV ext product id", self.isv_ext_prod_id),
            ("enclave size", f"{self.enclave_size:#x}"), ("metadata", ", ".join(self.metadata_versions)),
            *((f"  {v}", " ".join(f"{k} {x:#x}" for k, x in md.items() if k != "version"))
              for v, md in zip(self.metadata_versions, self.metadata, strict=True)),
            ("signature", "valid" if self.signature_valid else f"INVALID ({self.signature_error})"),
            ("measurement", "matches the file" if self.measurement_matches
             else f"DOES NOT MATCH ({self.replay_error or self.replayed_mrenclave})"),
        ]
        return "\n".join(f"{k:<20}{v}" for k, v in rows)


# metadata_t header fields reported per metadata (sgx_sign -dumpfile prints the same ones)
METADATA_FIELDS = ("version", "size", "tcs_policy", "ssa_frame_size", "max_save_buffer_size",
                   "desired_misc_select", "tcs_min_pool", "enclave_size", "attributes_flags",
                   "attributes_xfrm")


def _version_str(v: int) -> str:
    return f"{v >> 32}.{v & 0xFFFFFFFF}"


def read_metadata(data: bytes, where: str = "enclave") -> tuple[list[M.ParsedMetadata], EnclaveElf]:
    elf = parse_enclave(data, where, allow_text_relocations=True, allow_init_section=True)
    block = data[elf.metadata_offset:elf.metadata_offset + elf.metadata_size]
    mds = M.parse_metadata_block(block)
    if not mds:
        raise OcclumError("the enclave is not signed (no metadata in .note.sgxmeta)", where=where)
    return mds, elf


def replay_mrenclave(data: bytes, md: M.ParsedMetadata, elf: EnclaveElf) -> bytes:
    """Recompute MRENCLAVE from the file and one embedded metadata, as the SDK loader adds pages."""
    image = bytearray(data)
    for dst, src, size in md.patches:
        if src + size > len(md.raw) or dst + size > len(image):
            raise VerifyError("metadata patch entry outside the file or metadata")
        image[dst:dst + size] = md.raw[src:src + size]
    h = md.header
    size = int(h["enclave_size"])
    delta = 0
    elrange = md.elrange()
    if elrange is not None:
        image_address, start, size = elrange
        delta = image_address - start
    m = Measurement()
    m.ecreate(int(h["ssa_frame_size"]), size)
    measure_sections(m, bytes(image), elf.segments, md.version, delta, elf.reloc_bitmap)
    measure_layout(m, md.layout, md.raw, delta)
    return m.digest()


def dump_enclave(data: bytes, where: str = "enclave") -> EnclaveInfo:
    """Describe a signed enclave (any SDK version with .note.sgxmeta metadata)."""
    mds, elf = read_metadata(data, where)
    css = mds[0].css
    f = SIGSTRUCT.unpack(css)
    flags, mask = int(f["attributes_flags"]), int(f["attributemask_flags"])
    info = EnclaveInfo(
        mrenclave=bytes(f["enclavehash"]).hex(), mrsigner=mrsigner(css).hex(),
        date=format_date(int(f["date"])),
        isv_prod_id=int(f["isvprodid"]), isv_svn=int(f["isvsvn"]), attributes_flags=flags,
        attributes_xfrm=int(f["attributes_xfrm"]), attributes_mask_flags=mask,
        attributes_mask_xfrm=int(f["attributemask_xfrm"]), misc_select=int(f["miscselect"]),
        misc_mask=int(f["miscmask"]), debuggable=not mask & 0x2, kss=bool(flags & 0x80),
        isv_family_id=bytes(f["isvfamilyid"]).hex(), isv_ext_prod_id=bytes(f["isvextprodid"]).hex(),
        vendor=int(f["vendor"]), enclave_size=int(mds[0].header["enclave_size"]),
        metadata_versions=[_version_str(md.version) for md in mds],
        metadata=[{k: int(md.header[k]) for k in METADATA_FIELDS} for md in mds])
    try:
        verify_sigstruct(css, where)
        info.signature_valid = True
    except VerifyError as e:
        info.signature_error = e.message
    try:
        info.replayed_mrenclave = replay_mrenclave(data, mds[0], elf).hex()
    except (VerifyError, ValueError) as e:
        info.replay_error = str(e)
    return info


def verify_signed_enclave(data: bytes, where: str = "enclave") -> EnclaveInfo:
    """dump_enclave, raising VerifyError unless the signature verifies and the measurement matches."""
    info = dump_enclave(data, where)
    if not info.signature_valid:
        raise VerifyError(f"SIGSTRUCT does not verify: {info.signature_error}", where=where)
    if not info.measurement_matches:
        raise VerifyError("the measurement of the file does not match the SIGSTRUCT's MRENCLAVE "
                          f"({info.replay_error or info.replayed_mrenclave})", where=where)
    return info
