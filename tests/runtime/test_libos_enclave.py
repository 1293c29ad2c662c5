"""libocclum-libos.so against docs/formats/libos-enclave.md: accepted and measured by the
Python signer (occlum_build.sgx, SDK 2.26 rules), verified by the C runtime with the same
MRENCLAVE, and built reproducibly (its bytes are measured)."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from occlum_build import paths
from occlum_build.sgx import sign_enclave
from occlum_build.sgx.elf import update_builtin_config
from occlum_build.sgx.signer import PemSigner, generate_signing_key

from .rt_helpers import native_ready

pytestmark = [pytest.mark.native,
              pytest.mark.skipif(not native_ready(), reason="native runtime not built")]

SO = paths.native_dir() / paths.LIBOS_SO
XML = (b"<EnclaveConfiguration><StackMaxSize>0x40000</StackMaxSize><StackMinSize>0x40000"
       b"</StackMinSize><HeapMaxSize>0x100000</HeapMaxSize><TCSNum>4</TCSNum></EnclaveConfiguration>")
# Dynamic features with MiscSelect[0] = 1: sgx_sign writes metadata 3.3 first (then 1.5 when
# MiscMask[0] = 0); dynamic threads, heap and reserved memory entries are POST_ADD only.
XML_EDMM_BOTH = (b"<EnclaveConfiguration><StackMaxSize>0x40000</StackMaxSize><StackMinSize>0x2000"
                 b"</StackMinSize><HeapMaxSize>0x1000000</HeapMaxSize><HeapMinSize>0x1000</HeapMinSize>"
                 b"<HeapInitSize>0x10000</HeapInitSize><TCSNum>4</TCSNum><TCSMaxNum>8</TCSMaxNum>"
                 b"<TCSMinPool>2</TCSMinPool><MiscSelect>1</MiscSelect><MiscMask>0xFFFFFFFE</MiscMask>"
                 b"</EnclaveConfiguration>")
XML_EDMM_ONLY = (b"<EnclaveConfiguration><StackMaxSize>0x40000</StackMaxSize><StackMinSize>0x2000"
                 b"</StackMinSize><HeapMaxSize>0x1000000</HeapMaxSize><HeapMinSize>0x1000</HeapMinSize>"
                 b"<TCSNum>4</TCSNum><TCSMaxNum>8</TCSMaxNum><MiscSelect>1</MiscSelect>"
                 b"<MiscMask>0xFFFFFFFF</MiscMask><ReservedMemMaxSize>0x100000</ReservedMemMaxSize>"
                 b"<ReservedMemMinSize>0x10000</ReservedMemMinSize></EnclaveConfiguration>")


def test_elf_shape() -> None:
    elf = ELFFile(io.BytesIO(SO.read_bytes()))
    assert elf["e_type"] == "ET_DYN" and elf["e_machine"] == "EM_X86_64"
    dynsym = {s.name: s for s in elf.get_section_by_name(".dynsym").iter_symbols()}
    assert dynsym["g_global_data"]["st_size"] == 1768
    assert "enclave_entry" in dynsym and "g_global_data_sim" in dynsym
    assert all(s["st_shndx"] != "SHN_UNDEF" for n, s in dynsym.items() if n)
    note = elf.get_section_by_name(".note.sgxmeta")
    assert note["sh_size"] == 0x601C and note["sh_addralign"] == 4 and not note["sh_flags"] & 2
    bc = elf.get_section_by_name(".builtin_config")
    # 47 bytes as in Occlum's LibOS, ALLOC and not WRITE, with room for objcopy's 48-byte update
    assert bc["sh_size"] == 47 and bc["sh_flags"] & 2 and not bc["sh_flags"] & 1
    assert bc.data() == bytes(47)
    assert elf.get_section_by_name(".init") is None and elf.get_section_by_name(".ctors") is None
    gd = dynsym["g_global_data"]
    seg = next(s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"
               and s["p_vaddr"] <= gd["st_value"] < s["p_vaddr"] + s["p_filesz"])
    assert seg["p_flags"] & 2  # writable segment
    off = seg["p_offset"] + gd["st_value"] - seg["p_vaddr"]
    assert int.from_bytes(SO.read_bytes()[off:off + 8], "little") == 0x2001A0064


@pytest.mark.parametrize("xml,version", [(XML, 0x100000005), (XML_EDMM_BOTH, 0x300000003),
                                         (XML_EDMM_ONLY, 0x300000003)])
def test_signed_by_python_verified_by_c(tmp_path: Path, xml: bytes, version: int) -> None:
    key = tmp_path / "k.pem"
    generate_signing_key(key)
    data = update_builtin_config(SO.read_bytes(), b"00-11-22-33-44-55-66-77-88-99-aa-bb-cc-dd-ee-ff\n")
    res = sign_enclave(data, xml, PemSigner(key), date=0x20250101)
    assert res.metadata_version == version
    inst = tmp_path / "inst"
    (inst / "build/lib").mkdir(parents=True)
    (inst / "build/lib/libocclum-libos.signed.so").write_bytes(res.signed)
    (inst / ".sgx_mode").write_text("SIM\n")  # as a SIM build writes it (no SGX here)
    run = paths.native_dir() / paths.RUN_BIN
    r = subprocess.run([str(run), "--instance", str(inst), "/bin/x"], capture_output=True, text=True,
                       env={"OCCLUM_LOG_LEVEL": "info"})
    # Step (a) passes with the MRENCLAVE/MRSIGNER the Python signer computed; step (b) then
    # stops the boot: there is no protected config in this bare instance.
    assert f"MRENCLAVE {res.mrenclave.hex()} MRSIGNER {res.mrsigner.hex()}" in r.stderr
    assert r.returncode == 1 and ".Occlum_sys.json.protected: cannot open" in r.stderr
    # Unpatched (all-zero .builtin_config): signed fine, refused by the runtime.
    res0 = sign_enclave(SO.read_bytes(), xml, PemSigner(key), date=0x20250101)
    (inst / "build/lib/libocclum-libos.signed.so").write_bytes(res0.signed)
    r = subprocess.run([str(run), "--instance", str(inst), "/bin/x"], capture_output=True, text=True)
    assert r.returncode == 1 and ".builtin_config is all zero" in r.stderr


def test_reproducible_build(tmp_path: Path) -> None:
    """Two checkouts at different paths build the same enclave bytes."""
    for name in ("a", "bb/c"):
        src = tmp_path / name / "libos"
        shutil.copytree(paths.REPO_DIR / "libos" / "src", src / "src")
        shutil.copytree(paths.REPO_DIR / "libos" / "include", src / "include")
        shutil.copy2(paths.REPO_DIR / "libos" / "Makefile", src / "Makefile")
        subprocess.run(["make", "-s", "-C", str(src), "build/libocclum-libos.so"], check=True,
                       capture_output=True)
    a = (tmp_path / "a/libos/build/libocclum-libos.so").read_bytes()
    b = (tmp_path / "bb/c/libos/build/libocclum-libos.so").read_bytes()
    assert a == b == SO.read_bytes()
