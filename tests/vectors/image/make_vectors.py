#!/usr/bin/env python3
"""Regenerate tests/vectors/image/ and tests/vectors/protected-config/.

Usage: python tests/vectors/image/make_vectors.py [OUT_ROOT]
(OUT_ROOT defaults to tests/vectors; tests run it into a temp dir and compare).

Builds one source tree deterministically (contents, modes, symlinks; timestamps and owners do
not matter), writes it as an integrity-only and as an encrypted image with the Python
writer, records what a reader must find (manifest.json), and derives tampered variants with
the failure a reader must report (cases.json). See the README next to this script.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from occlum_build.image import build_image, conf_mac, protect_config  # noqa: E402
from occlum_build.image import metadata as md  # noqa: E402
from occlum_build.image.crypto import ImageKey, image_mac, leaves_of, root_of  # noqa: E402
from occlum_build.image.format import (  # noqa: E402
    BLOCK_SIZE,
    ENTRY,
    HEADER,
    METADATA_FILE,
    OBJECTS_DIR,
    TAG_SIZE,
    TYPE_FILE,
    TYPE_NAMES,
)
from occlum_build.image.reader import ImageReader  # noqa: E402
from occlum_build.keys import format_hex16  # noqa: E402

TEST_KEY = bytes(range(16))  # 00-01-02-...-0f
WRONG_KEY = bytes(range(1, 17))


def content(n: int, seed: int) -> bytes:
    """n deterministic bytes (a SHA-256 counter stream)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


# (path, kind, mode, data-or-target)
TREE: list[tuple[str, str, int, object]] = [
    ("bin", "dir", 0o755, None),
    ("bin/empty", "file", 0o644, content(0, 1)),
    ("bin/one", "file", 0o600, content(1, 2)),
    ("bin/b4095", "file", 0o755, content(4095, 3)),
    ("bin/b4096", "file", 0o755, content(4096, 4)),
    ("bin/b4097", "file", 0o700, content(4097, 5)),
    ("lib", "dir", 0o755, None),
    ("lib/big", "file", 0o444, content(3 * 4096 + 5, 6)),
    ("lib/big.same", "file", 0o644, content(3 * 4096 + 5, 6)),
    ("lib/link-rel", "symlink", 0, "big"),
    ("etc", "dir", 0o750, None),
    ("etc/hosts", "file", 0o644, b"127.0.0.1 localhost\n"),
    ("etc/hosts.copy", "file", 0o640, b"127.0.0.1 localhost\n"),
    ("etc/abs-link", "symlink", 0, "/etc/hosts"),
    ("dangling", "symlink", 0, "nowhere/at/all"),
    ("a", "dir", 0o755, None),
    ("a/b", "dir", 0o711, None),
    ("a/b/c", "dir", 0o700, None),
    ("a/b/c/leaf.txt", "file", 0o644, b"deep\n"),
    ("a-c", "file", 0o644, b"sorts between a and a/b\n"),
    ("caf\u00e9.txt", "file", 0o644, b"non-ASCII name\n"),
    ("emptydir", "dir", 0o555, None),
]
ROOT_MODE = 0o755


def make_tree(root: Path) -> None:
    root.mkdir()
    for path, kind, _mode, data in TREE:
        p = root / path
        if kind == "dir":
            p.mkdir()
        elif kind == "file":
            assert isinstance(data, bytes)
            p.write_bytes(data)
        else:
            os.symlink(str(data), p)
    # Modes last, deepest first, so read-only directories do not block creation.
    for path, kind, mode, _ in sorted(TREE, key=lambda t: -t[0].count("/")):
        if kind != "symlink":
            os.chmod(root / path, mode)
    os.chmod(root, ROOT_MODE)


def describe(image: Path, mac: bytes, key: bytes | None) -> dict:
    r = ImageReader(image, mac, key)
    entries = []
    for e in r.entries():
        item = {
            "path": "/" + e.path.decode(),
            "path_hex": e.path.hex(),
            "type": TYPE_NAMES[e.type],
            "mode": f"{e.mode:04o}",
            "size": e.size,
        }
        if e.type == TYPE_FILE:
            item["sha256"] = hashlib.sha256(r.read(e.path)).hexdigest()
            item["root"] = e.root.hex()
            if key is not None:
                item["file_id"] = e.file_id.hex()
        if e.target:
            item["target"] = e.target.decode()
        entries.append(item)
    return {
        "mode": "encrypted" if key else "integrity-only",
        "key": format_hex16(key) if key else None,
        "mac": format_hex16(mac),
        "entries": entries,
    }


def write_json(path: Path, doc: object) -> None:
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def tamper_cases(out: Path, images: dict[str, tuple[bytes, bytes | None]]) -> list[dict]:
    """Tampered copies under out/tampered/<name>/image; returns the case list."""
    cases: list[dict] = []

    def case(name, base, what, error, path=None, mac=None, key="same", mutate=None):
        bmac, bkey = images[base]
        img = out / base / "image"
        if mutate is not None:
            dst = out / "tampered" / name / "image"
            shutil.copytree(img, dst)
            new_mac = mutate(dst, bkey)
            img_rel = f"tampered/{name}/image"
            mac = new_mac or mac
        else:
            img_rel = f"{base}/image"
        k = bkey if key == "same" else key
        cases.append(
            {
                "name": name,
                "what": what,
                "image": img_rel,
                "mac": format_hex16(mac or bmac),
                "key": format_hex16(k) if k else None,
                "error": error,
                "path": path,
            }
        )

    def obj_of(image: Path, entry_path: bytes, key: bytes | None) -> Path:
        meta = (image / METADATA_FILE).read_bytes()
        ents = md.decode(meta, ImageKey.from_key(key) if key else None)
        e = next(x for x in ents if x.path == entry_path)
        return image / OBJECTS_DIR / e.root.hex()

    for base in ("integrity", "encrypted"):
        enc = base == "encrypted"
        sb = BLOCK_SIZE + (TAG_SIZE if enc else 0)

        def meta_flip(img, key, enc=enc):
            # Entry 1's mode byte (integrity) or a ciphertext byte (encrypted): the MAC catches it.
            flip(img / METADATA_FILE, HEADER.size + ENTRY.size + ENTRY.offset_of("mode") if not enc else 40)

        def block_flip(img, key, sb=sb):
            flip(obj_of(img, b"lib/big", key), sb + 7)  # block 1

        def leaf_flip(img, key):
            p = obj_of(img, b"lib/big", key)
            flip(p, p.stat().st_size - 32 * 4 + 3)  # leaf 0 of 4

        def truncate(img, key):
            p = obj_of(img, b"bin/b4097", key)
            p.write_bytes(p.read_bytes()[:-1])

        def remove(img, key):
            obj_of(img, b"a/b/c/leaf.txt", key).unlink()

        case(f"{base}-metadata-flip", base, "one metadata byte flipped", "mac-mismatch", mutate=meta_flip)
        case(
            f"{base}-wrong-mac",
            base,
            "untouched image, MAC with one bit flipped",
            "mac-mismatch",
            mac=bytes([images[base][0][0] ^ 1]) + images[base][0][1:],
        )
        case(
            f"{base}-block-flip",
            base,
            "byte 7 of block 1 of /lib/big's object flipped",
            "block-mismatch",
            path="/lib/big",
            mutate=block_flip,
        )
        case(
            f"{base}-leaf-flip",
            base,
            "leaf 0 of /lib/big's object flipped",
            "root-mismatch",
            path="/lib/big",
            mutate=leaf_flip,
        )
        case(
            f"{base}-truncated-object",
            base,
            "last byte of /bin/b4097's object removed",
            "object-size",
            path="/bin/b4097",
            mutate=truncate,
        )
        case(
            f"{base}-missing-object",
            base,
            "object of /a/b/c/leaf.txt deleted",
            "object-missing",
            path="/a/b/c/leaf.txt",
            mutate=remove,
        )

    # Structure errors behind a valid MAC: the reader's parser must reject them.
    def reserved_nonzero(img, key):
        meta = bytearray((img / METADATA_FILE).read_bytes())
        meta[HEADER.size + ENTRY.size + 13] = 1  # entry 1, reserved1
        (img / METADATA_FILE).write_bytes(bytes(meta))
        return image_mac(bytes(meta))

    def out_of_order(img, key):
        meta = bytearray((img / METADATA_FILE).read_bytes())
        ents = md.parse_plain(bytes(meta), encrypted=False)
        # Swap the records of entries 1 and 2 (string table untouched): offsets no longer chain.
        a, b = HEADER.size + ENTRY.size, HEADER.size + 2 * ENTRY.size
        meta[a : a + ENTRY.size], meta[b : b + ENTRY.size] = (
            meta[b : b + ENTRY.size],
            meta[a : a + ENTRY.size],
        )
        assert len(ents) > 2
        (img / METADATA_FILE).write_bytes(bytes(meta))
        return image_mac(bytes(meta))

    case(
        "integrity-reserved-nonzero",
        "integrity",
        "entry 1 reserved byte set, MAC recomputed",
        "metadata-malformed",
        mutate=reserved_nonzero,
    )
    case(
        "integrity-entries-swapped",
        "integrity",
        "entries 1 and 2 swapped, MAC recomputed",
        "metadata-malformed",
        mutate=out_of_order,
    )
    case(
        "integrity-given-key",
        "integrity",
        "integrity-only image opened with a key",
        "metadata-malformed",
        key=TEST_KEY,
    )
    case(
        "encrypted-no-key",
        "encrypted",
        "encrypted image opened without a key",
        "metadata-malformed",
        key=None,
    )
    case(
        "encrypted-wrong-key",
        "encrypted",
        "encrypted image opened with key 01-02-...-10",
        "metadata-decrypt",
        key=WRONG_KEY,
    )

    def bad_ciphertext(img, key):
        # Flip a ciphertext byte of /etc/hosts and re-hash leaf, root, metadata and MAC so that
        # only the GCM tag can catch it.
        ikey = ImageKey.from_key(key)
        meta = (img / METADATA_FILE).read_bytes()
        ents = md.decode(meta, ikey)
        new = []
        target = next(e for e in ents if e.path == b"etc/hosts")
        old = img / OBJECTS_DIR / target.root.hex()
        data = bytearray(old.read_bytes())
        n = len(data) - 32  # one block
        data[0] ^= 1
        leaves = leaves_of(bytes(data[:n]), BLOCK_SIZE + TAG_SIZE)
        root = root_of(leaves)
        (img / OBJECTS_DIR / root.hex()).write_bytes(bytes(data[:n]) + leaves)
        old.unlink()
        for e in ents:
            if e.root == target.root:  # /etc/hosts and /etc/hosts.copy share the object
                e = md.Entry(e.path, e.type, e.mode, e.size, e.target, root, e.file_id)
            new.append(e)
        meta = md.encode(new, ikey)
        (img / METADATA_FILE).write_bytes(meta)
        return image_mac(meta)

    case(
        "encrypted-block-decrypt",
        "encrypted",
        "ciphertext byte of /etc/hosts flipped, leaf/root/metadata/MAC recomputed",
        "block-decrypt",
        path="/etc/hosts",
        mutate=bad_ciphertext,
    )

    # More structure errors behind a valid MAC (and, encrypted, a valid GCM tag): each
    # rewrites the metadata and recomputes the MAC; the reader must reject it at open.
    def rewrite(header=None, entries=None, append=b""):
        def mutate(img, key):
            ikey = ImageKey.from_key(key) if key else None
            meta = (img / METADATA_FILE).read_bytes()
            ents = md.decode(meta, ikey)
            if entries is not None:
                ents = sorted(entries(ents), key=lambda e: e.path)
            plain = bytearray(md.encode_plain(ents, ikey is not None))
            for off, value in (header or {}).items():
                plain[off : off + len(value)] = value
            plain += append
            if ikey is None:
                meta = bytes(plain)
            else:
                head16 = meta[:16]
                nonce, sealed = ikey.seal_metadata(head16, bytes(plain))
                meta = head16 + nonce + sealed
            (img / METADATA_FILE).write_bytes(meta)
            return image_mac(meta)

        return mutate

    def replace(which, **changes):
        def fn(ents):
            return [md.Entry(**{**e.__dict__, **changes}) if e.path == which else e for e in ents]

        return fn

    malformed = [
        ("bad-magic", "metadata magic OCBIMG02", rewrite(header={0: b"OCBIMG02"})),
        ("version-2", "metadata version 2", rewrite(header={8: (2).to_bytes(4, "little")})),
        ("unknown-flag", "flag bit 1 set", rewrite(header={12: (2).to_bytes(4, "little")})),
        ("block-size-8192", "block size 8192", rewrite(header={16: (8192).to_bytes(4, "little")})),
        ("trailing-byte", "one byte after the string table", rewrite(append=b"\0")),
        (
            "missing-parent",
            "entry of directory /a removed",
            rewrite(entries=lambda es: [e for e in es if e.path != b"a"]),
        ),
        (
            "dotdot-component",
            "/bin/one renamed /bin/..",
            rewrite(entries=replace(b"bin/one", path=b"bin/..")),
        ),
        (
            "symlink-mode",
            "symlink /lib/link-rel with mode 0755",
            rewrite(entries=replace(b"lib/link-rel", mode=0o755)),
        ),
        (
            "file-without-root",
            "/etc/hosts with a zero root",
            rewrite(entries=replace(b"etc/hosts", root=bytes(32))),
        ),
        ("dir-with-size", "directory /emptydir with size 5", rewrite(entries=replace(b"emptydir", size=5))),
        (
            "nul-in-target",
            "NUL byte in the target of /dangling",
            rewrite(entries=replace(b"dangling", target=b"nowhere\0at/all")),
        ),
    ]
    for name, what, mutate in malformed:
        case(f"integrity-{name}", "integrity", what + ", MAC recomputed", "metadata-malformed", mutate=mutate)
    case(
        "encrypted-missing-parent",
        "encrypted",
        "entry of directory /a removed inside the encrypted metadata, re-encrypted, MAC recomputed",
        "metadata-malformed",
        mutate=rewrite(entries=lambda es: [e for e in es if e.path != b"a"]),
    )
    return cases


def make_protected(out: Path) -> None:
    sys_json = (
        b'{"resource_limits":{"user_space_size":"300MB"},'
        b'"mount":[{"target":"/","type":"unionfs","options":{"layers":['
        b'{"target":"/","type":"sefs","source":"./build/mount/__ROOT",'
        b'"options":{"MAC":"00-11-22-33-44-55-66-77-88-99-aa-bb-cc-dd-ee-ff"}},'
        b'{"target":"/","type":"sefs","source":"./run/mount/__ROOT"}]}}],'
        b'"env":{"default":["OCCLUM=yes"]}}\n'
    )
    prot = protect_config(sys_json)
    (out / "sys.json").write_bytes(sys_json)
    (out / "sys.json.protected").write_bytes(prot)
    (out / "conf_mac.txt").write_text(format_hex16(conf_mac(prot)))
    cases = [{"file": "sys.json.protected", "error": None, "payload": "sys.json"}]

    def variant(name, data, error):
        (out / name).write_bytes(data)
        cases.append({"file": name, "error": error})

    flipped = bytearray(prot)
    flipped[16 + 5] ^= 1
    variant("payload-flip.protected", bytes(flipped), "digest-mismatch")
    variant("truncated.protected", prot[:-1], "bad-size")
    variant("bad-magic.protected", b"OCBCONF2" + prot[8:], "bad-magic")
    longer = bytearray(prot)
    longer[12] += 1
    variant("length-plus-one.protected", bytes(longer), "bad-size")
    write_json(out / "cases.json", cases)


def main(out_root: Path) -> None:
    out = out_root / "image"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("integrity", "encrypted", "tampered"):
        shutil.rmtree(out / name, ignore_errors=True)
    images: dict[str, tuple[bytes, bytes | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "tree"
        make_tree(src)
        for name, key in (("integrity", None), ("encrypted", TEST_KEY)):
            d = out / name
            res = build_image(
                src, d / "image", d / "ROOT_MAC", key=key, cache_dir=Path(tmp) / f"cache-{name}"
            )
            images[name] = (res.mac, key)
            write_json(d / "manifest.json", describe(d / "image", res.mac, key))
    (out / "key.txt").write_text(format_hex16(TEST_KEY) + "\n")
    (out / "wrong_key.txt").write_text(format_hex16(WRONG_KEY) + "\n")
    write_json(out / "cases.json", tamper_cases(out, images))
    pc = out_root / "protected-config"
    pc.mkdir(parents=True, exist_ok=True)
    make_protected(pc)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent)
