"""occlum-gcc builds PIE musl binaries that run natively."""

import shutil
import subprocess
from pathlib import Path

import pytest

from occlum_build.paths import REPO_DIR

TC = REPO_DIR / "toolchains"
pytestmark = pytest.mark.skipif(shutil.which("musl-gcc") is None, reason="musl-tools not installed")


def test_occlum_gcc_pie(tmp_path: Path):
    src = tmp_path / "hello.c"
    src.write_text('#include <stdio.h>\nint main(void){puts("Hello World");return 0;}\n')
    exe = tmp_path / "hello"
    subprocess.run([TC / "occlum-gcc", "-o", exe, src], check=True)
    hdr = exe.read_bytes()[:20]
    assert hdr[:4] == b"\x7fELF" and hdr[16] == 3  # ET_DYN: a PIE
    out = subprocess.run(["readelf", "-l", exe], capture_output=True, text=True).stdout
    assert "/lib/ld-musl-x86_64.so.1" in out
    assert subprocess.run([exe], capture_output=True, text=True).stdout == "Hello World\n"


def test_occlum_gcc_compile_only_and_ld(tmp_path: Path):
    src = tmp_path / "m.c"
    src.write_text('#include <stdio.h>\nint main(void){puts("linked");return 0;}\n')
    obj = tmp_path / "m.o"
    subprocess.run([TC / "occlum-gcc", "-c", "-o", obj, src], check=True)
    exe = tmp_path / "m"
    subprocess.run([TC / "occlum-gcc", "-o", exe, obj], check=True)
    assert subprocess.run([exe], capture_output=True, text=True).stdout == "linked\n"


CXX_SRC = """extern "C" int puts(const char *);
struct Counter { int v; explicit Counter(int x) : v(x) {} int twice() const { return v + v; } };
template <class T> T add(T a, T b) { return a + b; }
int main() { Counter c(21); puts(add(c.twice(), 0) == 42 ? "Hello C++" : "wrong"); return 0; }
"""


@pytest.mark.parametrize("suffix", [".cc", ".c"])  # g++ compiles .c as C++ too
def test_occlum_gxx_freestanding_pie(tmp_path: Path, suffix: str):
    src = tmp_path / ("hello" + suffix)
    src.write_text(CXX_SRC)
    exe = tmp_path / "hello"
    subprocess.run([TC / "occlum-g++", "-O2", "-o", exe, src], check=True)
    assert exe.read_bytes()[16] == 3  # ET_DYN: a PIE
    dyn = subprocess.run(["readelf", "-ld", exe], capture_output=True, text=True).stdout
    assert "/lib/ld-musl-x86_64.so.1" in dyn
    assert "libstdc++" not in dyn
    assert subprocess.run([exe], capture_output=True, text=True).stdout == "Hello C++\n"


def test_occlum_gxx_compile_then_link(tmp_path: Path):
    src = tmp_path / "m.cpp"
    src.write_text(CXX_SRC)
    obj = tmp_path / "m.o"
    subprocess.run([TC / "occlum-g++", "-c", "-o", obj, src], check=True)
    exe = tmp_path / "m"
    subprocess.run([TC / "occlum-g++", "-o", exe, obj], check=True)
    assert subprocess.run([exe], capture_output=True, text=True).stdout == "Hello C++\n"


def test_occlum_gxx_needing_the_cxx_runtime_fails_at_link(tmp_path: Path):
    src = tmp_path / "n.cc"
    src.write_text("int main() { int *p = new int(3); int r = *p - 3; delete p; return r; }\n")
    r = subprocess.run([TC / "occlum-g++", "-o", tmp_path / "n", src], capture_output=True, text=True)
    assert r.returncode != 0
    assert "operator new" in r.stderr or "_Znwm" in r.stderr


def test_occlum_ld_links_a_musl_pie(tmp_path: Path):
    src = tmp_path / "l.c"
    src.write_text('#include <stdio.h>\nint main(void){puts("via ld");return 0;}\n')
    obj = tmp_path / "l.o"
    subprocess.run([TC / "occlum-gcc", "-c", "-o", obj, src], check=True)
    crt = Path("/usr/lib/x86_64-linux-musl")
    exe = tmp_path / "l"
    subprocess.run(
        [TC / "occlum-ld", "-o", exe, crt / "Scrt1.o", crt / "crti.o", obj, "-lc", crt / "crtn.o"],
        check=True,
    )
    assert exe.read_bytes()[16] == 3
    assert subprocess.run([exe], capture_output=True, text=True).stdout == "via ld\n"


def test_package_data_is_the_top_level_template_and_boms():
    """occlum_build/data links to the files a wheel must carry (pip install . copies them)."""
    from occlum_build import paths

    assert paths.CONFIG_TEMPLATE.read_bytes() == (REPO_DIR / "Occlum.json.template").read_bytes()
    for f in (REPO_DIR / "bom").iterdir():
        assert (paths.BOM_TEMPLATE_DIR / f.name).read_bytes() == f.read_bytes()
