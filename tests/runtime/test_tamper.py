"""Tampering with any built artifact stops the boot before the app runs, with the artifact
named.  The app would write /host/side-effect (the instance folder): its absence proves it
never started; the untampered control run shows the same command does have the effect."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from .rt_helpers import flip, needs_runtime, occlum

pytestmark = [pytest.mark.native, pytest.mark.slow, needs_runtime]

APP = ("run", "/bin/probe", "write", "/host/side-effect", "started")
LIBOS = "build/lib/libocclum-libos.signed.so"


def _boot_refused(inst: Path, artifact: str, why: str, rc: int = 1) -> None:
    r = occlum(inst, *APP)
    assert r.returncode == rc, (r.returncode, r.stderr)
    line = r.stderr.strip().splitlines()[-1]
    assert artifact in line and why in line, line
    assert not (inst / "side-effect").exists()


def _sgxmeta(inst: Path) -> int:
    data = (inst / LIBOS).read_bytes()
    return ELFFile(io.BytesIO(data)).get_section_by_name(".note.sgxmeta")["sh_offset"] + 25


HEAD = 95 + 320  # where a Protected FS file's first content bytes sit in its metadata node


def _object_of(image_dir: Path, path: str) -> Path:
    """The inode file of ``path`` inside the image (found through its verified metadata)."""
    from occlum_build.image import SefsReader, read_mac_file
    from occlum_build.image.sefs_layout import disk_name

    mac = read_mac_file(image_dir.parent / ".ROOT_MAC")
    return image_dir / disk_name(SefsReader(image_dir, mac).lookup(path))


def test_control_run_has_the_side_effect(instance_copy: Path) -> None:
    r = occlum(instance_copy, *APP)
    assert r.returncode == 0, r.stderr
    assert (instance_copy / "side-effect").read_text() == "started"


def test_libos_code_byte(instance_copy: Path) -> None:
    data = (instance_copy / LIBOS).read_bytes()
    text = ELFFile(io.BytesIO(data)).get_section_by_name(".text")["sh_offset"]
    flip(instance_copy / LIBOS, text + 3)
    _boot_refused(instance_copy, LIBOS, "does not match the signed ENCLAVEHASH")


def test_libos_builtin_config(instance_copy: Path) -> None:
    data = (instance_copy / LIBOS).read_bytes()
    off = ELFFile(io.BytesIO(data)).get_section_by_name(".builtin_config")["sh_offset"]
    flip(instance_copy / LIBOS, off + 5)
    _boot_refused(instance_copy, LIBOS, "does not match the signed ENCLAVEHASH")


@pytest.mark.parametrize("field,offset", [("isvprodid", 1024), ("date", 20), ("signature", 516 + 7),
                                          ("enclavehash", 960), ("modulus", 128 + 9)])
def test_sigstruct(instance_copy: Path, field: str, offset: int) -> None:
    flip(instance_copy / LIBOS, _sgxmeta(instance_copy) + 64 + offset)
    _boot_refused(instance_copy, LIBOS, "SIGSTRUCT")


def test_metadata_layout(instance_copy: Path) -> None:
    # A byte of the layout/patch data after the header (the g_global_data template).
    flip(instance_copy / LIBOS, _sgxmeta(instance_copy) + 0x7B8 + 8)
    _boot_refused(instance_copy, LIBOS, "does not match the signed ENCLAVEHASH")


def test_protected_config(instance_copy: Path) -> None:
    flip(instance_copy / "build/.Occlum_sys.json.protected", 40)
    _boot_refused(instance_copy, "build/.Occlum_sys.json.protected", "")


def test_protected_config_replaced_consistently(instance_copy: Path) -> None:
    # A well-formed protected file with another payload: every node checks out, the conf MAC
    # does not.
    from occlum_build.image import protect_config

    payload = (instance_copy / "build/.Occlum_sys.json").read_bytes().replace(b'"/bin"', b'"/root"')
    (instance_copy / "build/.Occlum_sys.json.protected").write_bytes(protect_config(payload))
    _boot_refused(instance_copy, "build/.Occlum_sys.json.protected", "conf MAC")


def test_image_metadata(instance_copy: Path) -> None:
    flip(instance_copy / "build/mount/__ROOT/metadata", 100)
    _boot_refused(instance_copy, "build/mount/__ROOT", "MAC")


def test_initfs_metadata(instance_copy: Path) -> None:
    flip(instance_copy / "build/initfs/__ROOT/metadata", 100)
    _boot_refused(instance_copy, "build/initfs/__ROOT", "MAC")


def test_initfs_image_config_block(instance_copy: Path) -> None:
    obj = _object_of(instance_copy / "build/initfs/__ROOT", "/etc/image_config.json")
    flip(obj, 3)
    _boot_refused(instance_copy, "build/initfs/__ROOT", "")


def test_image_block_of_the_program(instance_copy: Path) -> None:
    flip(_object_of(instance_copy / "build/mount/__ROOT", "/bin/probe"), 4096 * 2 + 1000)  # data node 0
    # The program's own blocks fail verification: exec fails, the app never starts.
    r = occlum(instance_copy, *APP)
    assert r.returncode == 127, r.stderr
    assert "/bin/probe" in r.stderr
    assert not (instance_copy / "side-effect").exists()


def test_image_block_of_a_data_file(instance_copy: Path) -> None:
    flip(_object_of(instance_copy / "build/mount/__ROOT", "/bin/ulimit_test.sh"), HEAD + 10)
    r = occlum(instance_copy, "run", "/bin/probe", "cat", "/bin/ulimit_test.sh")
    assert r.returncode == 1
    # The app's message and the runtime's log line share stderr and may interleave (the app
    # writes its message in pieces), so the two are checked separately.
    assert ": I/O error" in r.stderr, r.stderr  # EIO reached the app (musl strerror)
    assert "/bin/ulimit_test.sh: metadata node: MAC mismatch" in r.stderr  # the runtime names the file
    assert "ulimit" not in r.stdout  # not a byte of the tampered block reached the app
