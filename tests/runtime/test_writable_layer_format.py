"""docs/formats/writable-layer.md, checked by an independent decoder of the spec.

occlum-fs writes a layer through FUSE; this module re-derives the keys, decrypts the index
and every data block with `cryptography`, and checks the tree and contents it finds.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from occlum_build.image import build_image
from occlum_build.keys import format_hex16, parse_hex16

from .fsmount import Mount, can_mount_fuse

pytestmark = [
    pytest.mark.native,
    pytest.mark.skipif(not can_mount_fuse(), reason="FUSE mounts need root and /dev/fuse"),
]

NODE = struct.Struct("<IBBHIQQqII4x")  # 48 bytes
TYPES = {1: "file", 2: "dir", 3: "symlink", 4: "whiteout"}


def hkdf(ikm: bytes, salt: bytes, info: bytes, n: int) -> bytes:
    return HKDF(hashes.SHA256(), n, salt or None, info).derive(ikm)


def decode_layer(layer_dir: Path, u: bytes) -> tuple[dict[str, dict], int]:
    """Decode a layer with key U: {path: node fields (+ 'content' for files)}, next_id."""
    hdr = (layer_dir / "layer").read_bytes()
    assert len(hdr) == 64 and hdr[:8] == b"OCBUPL01" and struct.unpack("<II", hdr[8:16]) == (1, 0)
    salt = hdr[16:48]
    assert hdr[48:64] == hkdf(u, salt, b"occlum-build upper v1 check", 16)
    idx = (layer_dir / "index").read_bytes()
    assert idx[:8] == b"OCBUPI01" and struct.unpack("<II", idx[8:16]) == (1, 0)
    t = AESGCM(hkdf(u, salt, b"occlum-build upper v1 index", 16)).decrypt(idx[16:28], idx[28:], idx[:16])
    next_id, count, zero = struct.unpack("<QII", t[:16])
    assert zero == 0
    pos, paths, nodes = 16, [], {}
    for i in range(count):
        parent, typ, flags, nlen, mode, size, fid, msec, mnsec, tlen = NODE.unpack_from(t, pos)
        pos += NODE.size
        name = t[pos:pos + nlen].decode()
        target = t[pos + nlen:pos + nlen + tlen].decode()
        pos += nlen + tlen
        path = "" if i == 0 else (paths[parent] + "/" + name).lstrip("/")
        assert (parent == 0xFFFFFFFF) == (i == 0) and (i == 0 or parent < i)
        paths.append(path)
        node = {"type": TYPES[typ], "opaque": bool(flags & 1), "mode": mode, "size": size,
                "id": fid, "target": target}
        if typ == 1:
            data = (layer_dir / "data" / f"{fid:016x}").read_bytes()
            kf = AESGCM(hkdf(u, salt, b"occlum-build upper v1 file" + struct.pack("<Q", fid), 16))
            plain = b""
            for b in range((size + 4095) // 4096):
                s = data[4124 * b:4124 * (b + 1)]
                plain += kf.decrypt(s[:12], s[12:], struct.pack("<QQ", fid, b))
            assert plain[size:] == bytes(len(plain) - size)  # bytes past the end are zero
            node["content"] = plain[:size]
        nodes[path] = node
    assert pos == len(t)
    return nodes, next_id


@pytest.fixture(params=["integrity", "encrypted"])
def setup(request, tmp_path: Path):
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc/passwd").write_bytes(b"root:x:0:0\n")
    (src / "etc/motd").write_bytes(b"hi\n")
    (src / "var/lib").mkdir(parents=True)
    key = bytes(range(16)) if request.param == "encrypted" else None
    out, mac = tmp_path / "build/mount/__ROOT", tmp_path / "build/mount/.ROOT_MAC"
    build_image(src, out, mac, key=key, cache_dir=tmp_path / "cache")
    extra: list[str] = []
    if key:
        (tmp_path / "key").write_text(format_hex16(key))
        extra = ["--image-key", str(tmp_path / "key")]
    (tmp_path / "run/mount").mkdir(parents=True)
    return tmp_path, out, mac, extra, key


def test_layer_decodes_per_spec(setup) -> None:
    tmp, out, mac, extra, key = setup
    upper, mnt = tmp / "run/mount/__ROOT", tmp / "mnt"
    content = os.urandom(9000)
    with Mount(out, mac, upper, mnt, *extra):
        (mnt / "var/lib/state.bin").write_bytes(content)
        (mnt / "etc/motd").write_bytes(b"changed\n")  # copy-up
        os.unlink(mnt / "etc/passwd")  # whiteout
        os.symlink("state.bin", mnt / "var/lib/link")
        os.mkdir(mnt / "newdir", 0o750)
    # the layer key: from the image key, or from the per-instance secret run/.sim_seal_key
    if key:
        u = hkdf(key, b"", b"occlum-build upper v1 from image key", 16)
        assert not (tmp / "run/.sim_seal_key").exists()
    else:
        secret_file = tmp / "run/.sim_seal_key"
        assert secret_file.stat().st_mode & 0o777 == 0o600
        secret = parse_hex16(secret_file.read_text(), str(secret_file))
        u = hkdf(secret, b"", b"occlum-build upper v1 from instance secret", 16)
    nodes, next_id = decode_layer(upper, u)
    assert nodes[""]["type"] == "dir"
    assert nodes["var/lib/state.bin"]["content"] == content
    assert nodes["etc/motd"]["content"] == b"changed\n"
    assert nodes["etc/passwd"]["type"] == "whiteout"
    assert nodes["var/lib/link"] == dict(nodes["var/lib/link"], type="symlink", target="state.bin")
    assert nodes["newdir"]["type"] == "dir" and nodes["newdir"]["mode"] == 0o750
    assert nodes["etc"]["type"] == "dir" and not nodes["etc"]["opaque"]  # copied-up parent
    assert set(nodes) == {"", "etc", "etc/motd", "etc/passwd", "var", "var/lib",
                          "var/lib/state.bin", "var/lib/link", "newdir"}
    assert next_id > max(n["id"] for n in nodes.values())
    assert sorted(p.name for p in (upper / "data").iterdir()) == sorted(
        f"{n['id']:016x}" for n in nodes.values() if n["type"] == "file")


def test_index_reaches_disk_without_unmount(setup, tmp_path: Path) -> None:
    """Index writes are coalesced (at most one a second from operations); the flusher
    thread still writes a burst's last change, so a killed server loses nothing of it."""
    import signal
    import subprocess
    import time

    tmp, out, mac, extra, key = setup
    upper, mnt = tmp / "run/mount/__ROOT", tmp / "mnt"
    ukey = bytes(range(100, 116))
    m = Mount(out, mac, upper, mnt, *extra, "--upper-key", format_hex16(ukey))
    with m:
        for i in range(50):  # a burst: far more changes than index writes
            (mnt / f"f{i}").write_bytes(b"%d" % i)
        nodes: dict[str, dict] = {}
        deadline = time.monotonic() + 30  # liveness bound, not a performance assertion
        while time.monotonic() < deadline:
            if (upper / "index").exists():  # written by the first flush
                nodes, _ = decode_layer(upper, ukey)  # --upper-key gives U directly (section 2)
                if "f49" in nodes:
                    break
            time.sleep(0.2)
        assert "f49" in nodes and nodes["f49"]["content"] == b"49"
        m.proc.send_signal(signal.SIGKILL)  # no unmount, no final flush
        m.proc.wait()
        subprocess.run(["fusermount3", "-u", str(mnt)], check=True)
        m.ready = False
    with Mount(out, mac, upper, mnt, *extra, "--upper-key", format_hex16(ukey)):
        assert all((mnt / f"f{i}").read_bytes() == b"%d" % i for i in range(50))
