"""50 SIGKILLs of `occlum build` at random points: the next build always equals a clean build
of the same inputs, byte for byte (issue 15, "Reliability figures to keep").

The inputs alternate between two states (a file of image/ and Occlum.json edited and put
back), so every killed build has work to do: the kill lands in any stage, in the middle of
an image being written, of a rename, of a signature.  Builds use a fixed signing key and
SOURCE_DATE_EPOCH, so a clean build's bytes are a function of the inputs alone."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_helpers import needs_native

pytestmark = [needs_native, pytest.mark.stress]

OCCLUM = str(Path(sys.executable).parent / "occlum")
ENV = {**os.environ, "SOURCE_DATE_EPOCH": "1736942400"}
KILLS = 50


def _build(inst: Path, key: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([OCCLUM, "build", "--sgx-mode", "SIM", "--sign-key", str(key), *extra],
                            cwd=inst, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _outputs(inst: Path) -> dict[str, str]:
    """sha256 of every file (and target of every link) the build made, but its own bookkeeping
    (build/.state) and build/report.json's timings and per-stage work counts."""
    out = {}
    for p in sorted((inst / "build").rglob("*")):
        rel = str(p.relative_to(inst))
        if rel.startswith("build/.state"):
            continue
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            data = p.read_bytes()
            if rel == "build/report.json":  # what was built, not what this build had to do
                rep = json.loads(data)
                for k in ("seconds", "stages", "image", "initfs"):
                    rep.pop(k)
                data = json.dumps(rep, sort_keys=True).encode()
            out[rel] = hashlib.sha256(data).hexdigest()
    out[".__occlum_status"] = (inst / ".__occlum_status").read_text()
    return out


def _set_state(inst: Path, state: int, base_cfg: dict) -> None:
    (inst / "image/bin/data.bin").write_bytes(bytes([state]) * (3 << 20))
    cfg = dict(base_cfg, env={**base_cfg.get("env", {}), "default": [f"STATE={state}"]})
    (inst / "Occlum.json").write_text(json.dumps(cfg, indent=4))


def test_killed_builds_converge_to_the_clean_build(tmp_path: Path) -> None:
    subprocess.run([OCCLUM, "new", str(tmp_path / "inst")], check=True, capture_output=True)
    inst = tmp_path / "inst"
    key = tmp_path / "key.pem"
    subprocess.run([OCCLUM, "gen-sign-key", str(key)], check=True, capture_output=True, env=ENV)
    for i in range(40):
        (inst / "image/bin" / f"f{i}").write_bytes(os.urandom(1000 * (i + 1)))
    base_cfg = json.loads((inst / "Occlum.json").read_text())
    clean: dict[int, dict[str, str]] = {}
    took = []
    for state in (0, 1):
        _set_state(inst, state, base_cfg)
        t = time.monotonic()
        p = _build(inst, key, "-f")
        assert p.wait() == 0, p.stderr.read() if p.stderr else ""
        took.append(time.monotonic() - t)
        clean[state] = _outputs(inst)
    assert clean[0] != clean[1]
    rng = random.Random(20261204)
    span = max(took)
    for n in range(KILLS):
        state = n % 2
        _set_state(inst, state, base_cfg)
        p = _build(inst, key)
        time.sleep(rng.uniform(0, span))
        p.send_signal(signal.SIGKILL)
        p.wait()
        q = _build(inst, key)
        err = q.stderr.read().decode() if q.stderr else ""
        assert q.wait() == 0, f"kill {n}: {err}"
        assert _outputs(inst) == clean[state], f"kill {n}: the build after it differs from a clean build"
