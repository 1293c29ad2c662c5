"""What keeps the fixed cost of `occlum build` low must not change what it builds: the
signer description cached in build/.state/signer.json, and the heavy modules an up-to-date
build does not import (docs/benchmarks.md "Build pipeline")."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pipeline_helpers import needs_native

pytestmark = needs_native


def test_key_file_replaced_in_place_resigns(inst, occlum, tmp_path):
    from occlum_build.sgx.signer import generate_signing_key

    key = tmp_path / "k.pem"
    generate_signing_key(key)
    rep = occlum.build("--sign-key", str(key))
    assert json.loads((inst / "build/.state/signer.json").read_text())["public_key"]
    generate_signing_key(key, overwrite=True)  # same path, another key
    rep2 = occlum.build("--sign-key", str(key))
    assert occlum.ran(rep2) == {"sign"}
    assert rep2["mrsigner"] != rep["mrsigner"] and rep2["mrenclave"] == rep["mrenclave"]
    assert occlum.ran(occlum.build("--sign-key", str(key))) == set()


def test_corrupt_signer_cache_is_not_trusted(inst, occlum):
    rep = occlum.build()
    cache = inst / "build/.state/signer.json"
    for bad in ("{", '{"key_file": "x", "public_key": "y"}', "[]"):
        cache.write_text(bad)
        again = occlum.build()
        assert occlum.ran(again) == set() and again["mrsigner"] == rep["mrsigner"]
        assert json.loads(cache.read_text())["key_file"] != "x"


_PROBE = """
import sys
from occlum_build.cli.main import main
rc = main(["build", "--sgx-mode", "SIM"])
heavy = sorted(m for m in ("elftools", "jinja2", "yaml") if m in sys.modules)
print(rc, " ".join(heavy) or "-")
"""


def test_up_to_date_build_imports_no_signing_or_template_code(inst, occlum):
    occlum.build()
    r = subprocess.run([sys.executable, "-c", _PROBE], cwd=inst, capture_output=True, text=True,
                       env={**os.environ, "SGX_MODE": "SIM"}, check=True)
    assert r.stdout.split() == ["0", "-"], r.stdout + r.stderr
