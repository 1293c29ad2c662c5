"""Timezones (docs/runtime.md "Timezones"; the Occlum manual's Q&A): what musl (occlum-gcc) and
glibc (gcc) programs in an instance actually read, and the warnings for the Occlum path that no
program here reads (/opt/occlum/glibc/etc/localtime)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .rt_helpers import BIN, build, needs_runtime, occlum

ZONES = Path("/usr/share/zoneinfo")
pytestmark = [pytest.mark.native, pytest.mark.slow, needs_runtime,
              pytest.mark.skipif(not (ZONES / "Asia" / "Tokyo").is_file(), reason="no tzdata")]

TZ_C = """#include <stdio.h>
#include <time.h>
int main(void) {
    time_t t = 0;
    struct tm *m = localtime(&t);
    printf("%s %02d\\n", m->tm_zone, m->tm_hour);
    return 0;
}
"""
IGNORED = "is ignored at run time"


def _env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")


@pytest.fixture
def tz_inst(instance_copy: Path, tmp_path: Path) -> Path:
    src = tmp_path / "tz.c"
    src.write_text(TZ_C)
    for cc, out in (("occlum-gcc", "tz_musl"), ("gcc", "tz_glibc")):
        subprocess.run([cc, "-o", str(instance_copy / "image" / "bin" / out), str(src)],
                       env=_env(), check=True)
    return instance_copy


def _zones(inst: Path) -> tuple[str, str]:
    out = []
    for prog in ("/bin/tz_musl", "/bin/tz_glibc"):
        r = occlum(inst, "run", prog)
        assert r.returncode == 0, r.stderr
        out.append(r.stdout.strip())
    return out[0], out[1]


def test_etc_localtime_for_musl_and_glibc(tz_inst: Path) -> None:
    inst = tz_inst
    shutil.copyfile(ZONES / "Asia" / "Tokyo", inst / "image" / "etc" / "localtime")
    # Occlum's glibc path, with another zone: its glibc would read it, Debian's does not.
    occ = inst / "image" / "opt" / "occlum" / "glibc" / "etc" / "localtime"
    occ.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ZONES / "America" / "New_York", occ)
    r = occlum(inst, "build", "--sgx-mode", "SIM")
    assert r.returncode == 0, r.stderr
    warn = [x for x in r.stderr.splitlines() if IGNORED in x]
    assert len(warn) == 1 and warn[0].startswith(f"Warning: {occ} ") and "/etc/localtime" in warn[0]
    assert _zones(inst) == ("JST 09", "JST 09")  # both read /etc/localtime
    # Without /etc/localtime both fall back to UTC, whatever the Occlum path holds.
    (inst / "image" / "etc" / "localtime").unlink()
    r = occlum(inst, "build", "--sgx-mode", "SIM")
    assert any(IGNORED in x for x in r.stderr.splitlines())
    assert _zones(inst) == ("UTC 00", "UTC 00")
    # The same file in both places loses nothing: no warning.
    shutil.copyfile(occ, inst / "image" / "etc" / "localtime")
    r = occlum(inst, "build", "--sgx-mode", "SIM")
    assert r.returncode == 0 and IGNORED not in r.stderr, r.stderr
    assert _zones(inst) == ("EST 19", "EST 19")


def test_tz_overrides_both(tz_inst: Path) -> None:
    inst = tz_inst
    shutil.copyfile(ZONES / "Asia" / "Tokyo", inst / "image" / "etc" / "localtime")
    cfg = json.loads((inst / "Occlum.json").read_text())
    cfg["env"]["default"].append("TZ=XYZ-3")
    (inst / "Occlum.json").write_text(json.dumps(cfg, indent=4))
    build(inst)
    assert _zones(inst) == ("XYZ 03", "XYZ 03")


def test_copy_bom_warns_about_the_occlum_glibc_path(tmp_path: Path) -> None:
    bom = tmp_path / "tz.yaml"
    bom.write_text("targets:\n"
                   "  - target: /opt/occlum/glibc/etc\n"
                   f"    copy:\n      - files: [{ZONES / 'Asia' / 'Tokyo'}]\n")
    # copy_bom copies a file under its own name: rename it as the Occlum demos do.
    bom.write_text(bom.read_text().replace(f"[{ZONES / 'Asia' / 'Tokyo'}]",
                                           f"[{{name: {ZONES / 'Asia' / 'Tokyo'}, rename: localtime}}]"))
    root = tmp_path / "image"

    def copy_bom() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "copy_bom"), "-f", str(bom), "--root", str(root)],
                              cwd=tmp_path, env=_env(), capture_output=True, text=True)

    r = copy_bom()
    assert r.returncode == 0, r.stderr
    warn = [x for x in r.stderr.splitlines() if IGNORED in x]
    assert len(warn) == 1 and "opt/occlum/glibc/etc/localtime" in warn[0], r.stderr
    r = copy_bom()  # nothing to copy (its stamp): still said
    assert "nothing to copy" in r.stderr and IGNORED in r.stderr, r.stderr
    # Writing /etc/localtime too, with the same zone, loses nothing: no warning.
    bom.write_text(bom.read_text() + "  - target: /etc\n"
                   f"    copy:\n      - files: [{{name: {ZONES / 'Asia' / 'Tokyo'}, rename: localtime}}]\n")
    r = copy_bom()
    assert r.returncode == 0 and IGNORED not in r.stderr, r.stderr
