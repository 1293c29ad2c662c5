"""build/report.json: what a build produced, for people and for CI scripts.

Top level always has ``image_mac``, ``initfs_mac``, ``conf_mac`` (32 lower-case hex digits)
and, when the enclave is signed, ``mrenclave`` and ``mrsigner`` (64 lower-case hex digits).
Everything is read back from the outputs on disk (MAC files, the protected config), not from
what a stage believed it wrote.  Format: docs/build.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import paths
from ..fsutil import atomic_write
from ..sizes import format_size
from .context import mtimes_desc
from .graph import BuildContext, conf_mac_of, stage_names
from .state import StateDir

REPORT_VERSION = 1
LAYER_STATS = ("encrypted", "entries", "files", "bytes_in", "bytes_stored",
               "objects_written", "objects_reused")

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# The top level of build/report.json (docs/formats/build-report.md): key -> (check, required).
REPORT_FIELDS: dict[str, tuple[Callable[[Any], bool], bool]] = {
    "version": (lambda v: v == REPORT_VERSION, True),
    "sgx_mode": (lambda v: v in ("HW", "SIM"), True),
    "edmm_platform": (lambda v: isinstance(v, bool), True),
    "image_mac": (lambda v: isinstance(v, str) and bool(_HEX32.fullmatch(v)), True),
    "initfs_mac": (lambda v: isinstance(v, str) and bool(_HEX32.fullmatch(v)), True),
    "conf_mac": (lambda v: isinstance(v, str) and bool(_HEX32.fullmatch(v)), True),
    "mrenclave": (lambda v: isinstance(v, str) and bool(_HEX64.fullmatch(v)), False),
    "mrsigner": (lambda v: isinstance(v, str) and bool(_HEX64.fullmatch(v)), False),
    "image": (lambda v: isinstance(v, dict) and set(v) == set(LAYER_STATS), True),
    "initfs": (lambda v: isinstance(v, dict) and set(v) == set(LAYER_STATS), True),
    "sizes": (lambda v: isinstance(v, dict) and all(isinstance(x, int) for x in v.values()), True),
    "stages": (lambda v: isinstance(v, dict) and all(
        isinstance(x, dict) and set(x) == {"ran", "seconds"} for x in v.values()), True),
    "seconds": (lambda v: isinstance(v, int | float), True),
    "normalize_modes": (lambda v: isinstance(v, bool), False),
    "mtimes": (lambda v: isinstance(v, str), False),
    "target": (lambda v: isinstance(v, dict) and v.get("kind") in ("sim-runtime", "occlum"), False),
}


def check_report(rep: Any) -> None:
    """Raise ValueError naming the first field of ``rep`` that does not follow the format."""
    if not isinstance(rep, dict):
        raise ValueError("report is not a JSON object")
    for key, (ok, required) in REPORT_FIELDS.items():
        if key not in rep:
            if required:
                raise ValueError(f"{key}: missing")
            continue
        if not ok(rep[key]):
            raise ValueError(f"{key}: unexpected value {rep[key]!r}")
    if ("mrenclave" in rep) != ("mrsigner" in rep):
        raise ValueError("mrenclave and mrsigner come together")
    extra = set(rep) - set(REPORT_FIELDS)
    if extra:
        raise ValueError(f"unknown keys {sorted(extra)}")


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _mac_hex(path: Path) -> str:
    from ..image import read_mac_file

    return read_mac_file(path).hex()


def make_report(ctx: BuildContext) -> dict[str, Any]:
    inst, state = ctx.inst, ctx.state
    rep: dict[str, Any] = {
        "version": REPORT_VERSION,
        "sgx_mode": ctx.opts.sgx_mode,
        "edmm_platform": ctx.edmm_platform,
        "image_mac": _mac_hex(inst.image_mac_file),
        "initfs_mac": _mac_hex(inst.initfs_mac_file),
        "conf_mac": conf_mac_of(inst).hex(),
        "target": dict(ctx.target),
        "normalize_modes": ctx.opts.normalize_modes,
        "mtimes": mtimes_desc(ctx.mtimes),
    }
    signed = state.read_stage("sign")
    if signed is not None:
        st = signed.get("stats") or {}
        want = (st.get("outputs") or {}).get(str(inst.libos_signed))
        if want is not None and want == ctx.cache.digest(inst.libos_signed):
            rep["mrenclave"] = st["mrenclave"]
            rep["mrsigner"] = st["mrsigner"]
    for layer in ("image", "initfs"):
        st = (state.read_stage(layer) or {}).get("stats") or {}
        rep[layer] = {k: st.get(k) for k in LAYER_STATS}
    sizes = {layer: int(rep[layer].get("bytes_stored") or 0) + _size(out / "metadata")
             for layer, out in (("image", inst.image_out), ("initfs", inst.initfs_out))}
    sizes["protected_config"] = inst.sys_json_protected.stat().st_size
    if inst.libos_signed.exists():
        sizes["libos_signed"] = inst.libos_signed.stat().st_size
    rep["sizes"] = sizes
    stages: dict[str, Any] = {}
    for name in ["prepare", *stage_names(ctx)]:
        rec = state.read_stage(name) or {}
        ran = rec.get("run_id") == ctx.run_id
        stages[name] = {"ran": ran, "seconds": rec.get("seconds", 0.0) if ran else 0.0}
    rep["stages"] = stages
    return rep


def write_report(ctx: BuildContext, rep: dict[str, Any]) -> None:
    atomic_write(ctx.inst.report, json.dumps(rep, indent=2, sort_keys=True) + "\n")


def read_report(inst: paths.Instance) -> dict[str, Any] | None:
    try:
        rep = json.loads(inst.report.read_text())
    except (OSError, ValueError):
        return None
    return rep if isinstance(rep, dict) else None


def summary(rep: dict[str, Any]) -> str:
    """The human summary printed after `occlum build`."""

    def size(n: Any) -> str:
        return format_size(int(n)) if isinstance(n, int) else "?"

    lines = []
    if "mrenclave" in rep:
        lines += [f"  MRENCLAVE   {rep['mrenclave']}", f"  MRSIGNER    {rep['mrsigner']}"]
    else:
        lines.append("  (enclave not signed: the signing stage is not available in this build)")
    for layer, key in (("image", "image_mac"), ("initfs", "initfs_mac")):
        st = rep.get(layer) or {}
        mode = "encrypted" if st.get("encrypted") else "integrity-only"
        ran = ((rep.get("stages") or {}).get(layer) or {}).get("ran")
        work = (f"{st.get('objects_written')} objects written, {st.get('objects_reused')} reused"
                if ran else "up to date")
        lines.append(f"  {layer + ' MAC':<11} {rep[key]}  ({st.get('files')} files, "
                     f"{size(st.get('bytes_in'))}, {mode}; {work})")
    lines.append(f"  conf MAC    {rep['conf_mac']}")
    sizes = rep.get("sizes") or {}
    lines.append("  sizes       " + ", ".join(f"{k} {size(v)}" for k, v in sizes.items()))
    ran = [(n, s["seconds"]) for n, s in (rep.get("stages") or {}).items() if s.get("ran")
           and n != "prepare"]
    rebuilt = ", ".join(f"{n} {sec:.2f}s" for n, sec in ran) or "nothing"
    lines.append(f"  time        {rep.get('seconds', 0.0):.2f}s (ran: {rebuilt})")
    return "\n".join(lines)


__all__ = ["StateDir", "make_report", "read_report", "summary", "write_report"]
