"""`occlum verify`: recompute what build/ should hold from the instance's inputs and compare.

Checks, in the order of the boot chain; the first difference raises VerifyError (exit 3)
naming the artifact and, for images, the first path that differs:

1. build/mount/__ROOT: every node of every inode file against the metadata and the root MAC
   (verify_image), then the
   MAC recomputed from image/ (every file read; no cache is trusted);
2. build/initfs/__ROOT: the same, from initfs/ plus the generated etc/ files;
3. build/Enclave.xml, build/.Occlum_sys.json and .protected regenerated from Occlum.json and
   the MACs; the conf MAC;
4. the signed LibOS: .builtin_config holds the conf MAC and the
   SIGSTRUCT's MRENCLAVE/MRSIGNER are the ones in build/report.json.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import keys, paths
from ..errors import KeyFileError, StateError, VerifyError
from ..paths import Instance
from .context import BUILTIN_CONFIG_SECTION
from .report import read_report
from .stages import builtin_config_bytes


def _src_entries(src: Path, normalize_modes: bool) -> dict[str, tuple[str, int, int, bytes]]:
    """path -> (type, mode, size, link target) of a source tree, as the image keeps them."""
    from ..image.sefs import normalized_mode
    from ..image.sefs_layout import T_DIR, T_FILE

    def mode(kind: int, m: int) -> int:
        return normalized_mode(kind, m) if normalize_modes else m & 0o777

    out: dict[str, tuple[str, int, int, bytes]] = {}
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(dirs + files):
            p = os.path.join(root, name)
            rel = os.path.relpath(p, src)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", 0, 0, os.fsencode(os.readlink(p)))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", mode(T_DIR, st.st_mode), 0, b"")
            else:
                out[rel] = ("file", mode(T_FILE, st.st_mode), st.st_size, b"")
    return out


def _first_difference(label: str, src: Path, out_dir: Path, mac: bytes, key: bytes | None,
                      normalize_modes: bool = False) -> str:
    """Name the first path where ``src`` and the built image differ."""
    from ..image import SefsReader

    r = SefsReader(out_dir, mac, key)
    built: dict[str, Any] = {e.path.lstrip("/"): e for e in r.walk() if e.path != "/"}
    have = _src_entries(src, normalize_modes)
    for p in sorted(set(built) | set(have)):
        if p not in built:
            return f"{label}/{p} is not in the built image"
        if p not in have:
            return f"{label}/{p} is in the built image but not in {label}/"
        e, (kind, mode, size, target) = built[p], have[p]
        ekind = {1: "file", 2: "dir", 3: "symlink"}.get(int(e.type), str(e.type))
        if ekind != kind:
            return f"{label}/{p}: built as {ekind}, now a {kind}"
        if kind == "symlink":
            if r.content(e.id, e.path) != target:
                return f"{label}/{p}: link target differs"
            continue
        if kind != "symlink" and (e.mode & 0o777) != mode:
            return f"{label}/{p}: mode {oct(mode)} differs from the built {oct(e.mode & 0o777)}"
        if kind == "file":
            if e.size != size:
                return f"{label}/{p}: size {size} differs from the built {e.size}"
            if r.content(e.id, e.path) != (src / p).read_bytes():
                return f"{label}/{p}: content differs"
    return f"{label}/: the tree differs from the built image (same entries and content)"


def _check_layer(label: str, src: Path, out_dir: Path, mac_file: Path, key: bytes | None,
                 say: Callable[[str], None], normalize_modes: bool = False,
                 mtimes: Any = None) -> bytes:
    from ..image import compute_mac, read_mac_file, verify_image

    mac = read_mac_file(mac_file)
    try:
        verify_image(out_dir, mac, key=key)
    except VerifyError as e:  # name the image, not only the path inside it
        raise VerifyError(str(e), where=str(out_dir)) from None
    if compute_mac(src, key=key, normalize_modes=normalize_modes, mtimes=mtimes) != mac:
        raise VerifyError(_first_difference(label, src, out_dir, mac, key, normalize_modes),
                          where=str(mac_file))
    say(f"  ok  {label:<7} MAC {mac.hex()} (every block checked; recomputed from {label}/)")
    return mac


def _same(path: Path, want: bytes, why: str) -> None:
    try:
        have = path.read_bytes()
    except FileNotFoundError:
        raise VerifyError("missing; rebuild", where=str(path)) from None
    if have != want:
        raise VerifyError(f"differs from what {why} gives", where=str(path))


def _section(data: bytes, name: str) -> bytes:
    import io

    from elftools.elf.elffile import ELFFile

    sec = ELFFile(io.BytesIO(data)).get_section_by_name(name)
    if sec is None:
        raise VerifyError(f"no {name} section")
    return sec.data()


def verify_instance(inst: Instance, *, image_key: bytes | None,
                    say: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Run every check; return the report the checks were made against."""
    from ..config import enclave_xml, image_config_json, load_config, sys_json
    from ..image import SefsReader
    from ..image.protect import conf_mac, protect_config
    from .staging import stage_initfs

    rep = read_report(inst)
    if rep is None:
        raise StateError(f"{inst.root} is not built (no build/report.json); run 'occlum build'")
    encrypted = json.loads(inst.image_config_json.read_text()).get("image_type") == "encrypted"
    if encrypted and image_key is None:
        raise KeyFileError("the image is encrypted: pass the key it was built with (--image-key)")
    if not encrypted and image_key is not None:
        raise VerifyError("the image was built integrity-only but --image-key was given",
                          where=str(inst.image_config_json))
    image_mac = _check_layer("image", inst.image, inst.image_out, inst.image_mac_file,
                             image_key, say, bool(rep.get("normalize_modes")), _mtimes_of(rep))

    # The init FS: the same generated files as the build puts in (graph._stage_initfs_src).
    initfs_mac_text = inst.initfs_mac_file.read_text().strip()
    built_initfs = SefsReader(inst.initfs_out, keys.parse_hex16(initfs_mac_text, str(inst.initfs_mac_file)))
    generated: dict[str, tuple[bytes, int]] = {
        paths.INITFS_IMAGE_CONFIG: (image_config_json(encrypted), 0o644)}
    if inst.init_ra_conf.is_file():
        generated["etc/" + paths.INIT_RA_CONF] = (inst.init_ra_conf.read_bytes(), 0o644)
    target = rep.get("target") or {}
    if target.get("kind") == "occlum":
        from ..install import load_install
        from .target import initfs_files

        generated.update(initfs_files(load_install(Path(target["occlum_dir"]),
                                                   str(target.get("sgx_mode", rep["sgx_mode"])))))
    try:
        built_initfs.lookup("/" + paths.INITFS_IMAGE_KEY)
        has_key = True
    except FileNotFoundError:
        has_key = False
    if has_key:
        if image_key is None:
            raise KeyFileError("the init FS holds a built-in image key; pass it with --image-key")
        generated[paths.INITFS_IMAGE_KEY] = ((keys.format_hex16(image_key) + "\n").encode(), 0o600)
    inst.state_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="verify-initfs.", dir=inst.state_dir) as tmp:
        staged = Path(tmp) / "initfs"
        stage_initfs(inst.initfs, staged, generated)
        initfs_mac = _check_layer("initfs", staged, inst.initfs_out, inst.initfs_mac_file, None, say)

    cfg = load_config(inst.config)
    _same(inst.enclave_xml, enclave_xml(cfg, edmm_platform=bool(rep.get("edmm_platform"))),
          "Occlum.json")
    sysj = sys_json(cfg, image_mac=keys.format_hex16(image_mac), initfs_mac=keys.format_hex16(initfs_mac),
                    edmm_platform=bool(rep.get("edmm_platform")))
    _same(inst.sys_json, sysj, "Occlum.json and the image MACs")
    protected = protect_config(sysj)
    _same(inst.sys_json_protected, protected, ".Occlum_sys.json")
    cmac = conf_mac(protected)
    say(f"  ok  config  Enclave.xml, .Occlum_sys.json, .protected; conf MAC {cmac.hex()}")
    for field, val in (("image_mac", image_mac), ("initfs_mac", initfs_mac), ("conf_mac", cmac)):
        if rep.get(field) != val.hex():
            raise VerifyError(f"{field} {rep.get(field)} differs from the recomputed {val.hex()}",
                              where=str(inst.report))

    from ..sgx.dump import verify_signed_enclave

    try:
        data = inst.libos_signed.read_bytes()
    except FileNotFoundError:
        raise VerifyError("missing; rebuild", where=str(inst.libos_signed)) from None
    if _section(data, BUILTIN_CONFIG_SECTION) != builtin_config_bytes(cmac):
        raise VerifyError(f"{BUILTIN_CONFIG_SECTION} does not hold the conf MAC {cmac.hex()}",
                          where=str(inst.libos_signed))
    # Signature and measurement replay, strictly: a failure of either raises.
    d = verify_signed_enclave(data, str(inst.libos_signed))
    for field in ("mrenclave", "mrsigner"):
        got = _hexval(getattr(d, field))
        if rep.get(field) != got:
            raise VerifyError(f"{field.upper()} {got} differs from build/report.json "
                              f"({rep.get(field)})", where=str(inst.libos_signed))
    say(f"  ok  enclave .builtin_config, signature, MRENCLAVE {rep.get('mrenclave')}")
    return rep


def _mtimes_of(rep: dict[str, Any]) -> Any:
    """The mtime policy a build used, from its report (mtimes_desc's text)."""
    from ..image import KeepMtimes

    desc = rep.get("mtimes", "zero")
    if desc == "zero":
        return None
    if desc == "keep":
        return KeepMtimes()
    prefix = "keep, at most "
    if isinstance(desc, str) and desc.startswith(prefix) and desc[len(prefix):].lstrip("-").isdigit():
        return KeepMtimes(clamp=int(desc[len(prefix):]))
    raise VerifyError(f"mtimes: unknown value {desc!r}", where=str(rep.get("_path", "build/report.json")))


def _hexval(v: Any) -> str:
    return v.hex() if isinstance(v, bytes | bytearray) else str(v).lower()
