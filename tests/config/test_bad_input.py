"""Bad Occlum.json inputs: each fails with exit code 2 and one line naming file:line:col and
the JSON path.  Cases are edits of Occlum's own template (tests/vectors/config/
template.Occlum.json) that keep its line layout, so the expected positions can be read off
the template by eye (e.g. line 5 is ``        "user_space_size": "300MB",``; the value
starts in column 28)."""

from __future__ import annotations

from pathlib import Path

import pytest

from occlum_build.config import load_config
from occlum_build.errors import EXIT_USAGE, ConfigError

TEMPLATE = (Path(__file__).resolve().parents[1] / "vectors" / "config" / "template.Occlum.json").read_text()

ROOT_LAYER_MAC = '"options": {\n                            "MAC": ""\n                        }'
HOSTFS_TYPE = '"type": "hostfs"'

# (id, old text, new text, count of replacements (0 = all), "line:col", json path, message part)
CASES = [
    ("bad-size-unit", '"300MB"', '"300XB"', 1, "5:28", "resource_limits.user_space_size",
     '"300XB" is not a size (use B/KB/MB/GB/TB)'),
    ("size-overflow", '"300MB"', '"99999999TB"', 1, "5:28", "resource_limits.user_space_size",
     "too large (sizes must fit in 64 bits)"),
    ("size-is-number", '"kernel_space_heap_size": "32MB"', '"kernel_space_heap_size": 32', 1, "3:35",
     "resource_limits.kernel_space_heap_size", "is not a size"),
    ("zero-threads", '"max_num_of_threads": 32', '"max_num_of_threads": 0', 1, "6:31",
     "resource_limits.max_num_of_threads", "0 is out of range 1..4096"),
    ("too-many-threads", '"max_num_of_threads": 32', '"max_num_of_threads": 100000', 1, "6:31",
     "resource_limits.max_num_of_threads",
     "100000 is out of range 1..4096 (thread counts must be at least 1, and at most 4096, Occlum's "
     "own TCS maximum: signing and every boot measure each thread, ~1 ms each)"),
    ("too-many-init-threads", '"max_num_of_threads": 32',
     '"init_num_of_threads": 4097, "max_num_of_threads": 32', 1, "6:32",
     "resource_limits.init_num_of_threads", "4097 is out of range 1..4096"),
    ("negative-threads", '"max_num_of_threads": 32', '"max_num_of_threads": -4', 1, "6:31",
     "resource_limits.max_num_of_threads", "at least 1"),
    ("float-threads", '"max_num_of_threads": 32', '"max_num_of_threads": 32.0', 1, "6:31",
     "resource_limits.max_num_of_threads", "expected an integer, found the number 32.0"),
    ("string-threads", '"max_num_of_threads": 32', '"max_num_of_threads": "32"', 1, "6:31",
     "resource_limits.max_num_of_threads", 'expected an integer, found the string "32"'),
    ("init-over-max-threads", '"max_num_of_threads": 32',
     '"init_num_of_threads": 64, "max_num_of_threads": 32', 1, "6:32",
     "resource_limits.init_num_of_threads", "64 is more than max_num_of_threads (32)"),
    ("heap-over-heap-max", '"kernel_space_heap_size": "32MB",',
     '"kernel_space_heap_size": "32MB", "kernel_space_heap_max_size": "16MB",', 1, "3:73",
     "resource_limits.kernel_space_heap_max_size", "is smaller than kernel_space_heap_size"),
    ("user-over-user-max", '"user_space_size": "300MB",',
     '"user_space_size": "300MB", "user_space_max_size": "1MB",', 1, "5:60",
     "resource_limits.user_space_max_size", "is smaller than user_space_size"),
    ("unknown-key-typo", '"user_space_size"', '"user_space_sise"', 1, "5:9",
     "resource_limits.user_space_sise", 'unknown key "user_space_sise" (did you mean "user_space_size"?)'),
    ("unknown-top-key", '"entry_points": [', '"entry_point": [', 1, "13:5",
     "entry_point", 'did you mean "entry_points"?'),
    ("old-metadata-pkru", '"debuggable": true,', '"debuggable": true, "pkru": 1,', 1, "27:29",
     "metadata.pkru", "moved to feature.pkru"),
    ("preview-only-key", '"max_num_of_threads": 32', '"max_num_of_threads": 32, "num_of_cpus": 2', 1,
     "6:35", "resource_limits.num_of_cpus", "1.0.0-preview"),
    ("missing-key", '"enable_kss": false,\n', "", 1, "24:17", "metadata", 'missing key "enable_kss"'),
    ("relative-entry-point", '"/bin"', '"bin"', 1, "14:9", "entry_points[0]",
     '"bin" is not an absolute path'),
    ("entry-point-not-string", '"/bin"', '["/bin"]', 1, "14:9", "entry_points[0]",
     "expected a string, found an array"),
    ("env-default-no-value", '"OCCLUM=yes"', '"OCCLUM"', 1, "18:13", "env.default[0]",
     '"OCCLUM" is not NAME=value'),
    ("env-default-empty-name", '"OCCLUM=yes"', '"=yes"', 1, "18:13", "env.default[0]", "is not NAME=value"),
    ("env-untrusted-with-value", '"EXAMPLE"', '"EXAMPLE=1"', 1, "21:13", "env.untrusted[0]",
     "names only, no '=value'"),
    ("env-default-number", '"OCCLUM=yes"', "7", 1, "18:13", "env.default[0]", "expected a string"),
    ("bad-hex-id", '"high": "0x0"', '"high": "0xZZ"', 1, "30:21", "metadata.family_id.high",
     '"0xZZ" is not a 64-bit hex id'),
    ("hex-id-too-big", '"low": "0x0"\n        }\n    }', '"low": "0x10000000000000000"\n        }\n    }', 1,
     "35:20", "metadata.ext_prod_id.low", "is not a 64-bit hex id"),
    ("empty-hex-id", '"high": "0x0"', '"high": "0x"', 1, "30:21", "metadata.family_id.high",
     "is not a 64-bit hex id"),
    ("product-id-over-16-bits", '"product_id": 0', '"product_id": 70000', 1, "25:23", "metadata.product_id",
     "70000 is out of range 0..65535"),
    ("negative-version", '"version_number": 0', '"version_number": -1', 1, "26:27",
     "metadata.version_number", "out of range"),
    ("bool-as-string", '"debuggable": true', '"debuggable": "yes"', 1, "27:23", "metadata.debuggable",
     'expected true or false, found the string "yes"'),
    ("amx-out-of-range", '"amx": 0', '"amx": 3', 1, "39:16", "feature.amx", "3 is out of range 0..2"),
    ("io-uring-out-of-range", '"io_uring": 0', '"io_uring": 17', 1, "41:21", "feature.io_uring",
     "out of range 0..16"),
    ("unknown-mount-type", HOSTFS_TYPE, '"type": "nfs"', 1, "69:21", "mount[1].type",
     '"nfs" is not a mount type'),
    ("mount-type-typo", HOSTFS_TYPE, '"type": "hostf"', 1, "69:21", "mount[1].type",
     "did you mean 'hostfs'?"),
    ("relative-mount-target", '"/host"', '"host"', 1, "68:23", "mount[1].target",
     '"host" is not an absolute path'),
    ("hostfs-without-source", ',\n            "source": "."', "", 1, "67:9", "mount[1]",
     'missing key "source"'),
    ("no-root-unionfs", '"target": "/",\n            "type": "unionfs"',
     '"target": "/x",\n            "type": "unionfs"', 1, "45:14", "mount", "no root file system"),
    ("no-image-layer-mac", ROOT_LAYER_MAC,
     '"options": {\n                            "temporary": false\n                        }', 1,
     "50:27", "mount[0].options.layers", "no image layer"),
    ("bad-mac", '"MAC": ""', '"MAC": "zz"', 1, "56:36", "mount[0].options.layers[0].options.MAC",
     '"zz" is not a MAC'),
    ("layers-on-hostfs", '"source": "."', '"source": ".", "options": {"layers": []}', 1, "70:40",
     "mount[1].options.layers", "only unionfs mounts have layers"),
    ("cache-size-too-small", '"source": "."', '"source": ".", "options": {"cache_size": "100KB"}', 1,
     "70:54", "mount[1].options.cache_size", "at least 192KB and a multiple of 4KB"),
    ("cache-size-unaligned", '"source": "."', '"source": ".", "options": {"cache_size": "1001KB"}', 1,
     "70:54", "mount[1].options.cache_size", "multiple of 4KB"),
    ("cache-size-over-heap", '"source": "."', '"source": ".", "options": {"cache_size": "64MB"}', 1,
     "70:54", "mount[1].options.cache_size", "larger than the kernel heap (33554432 bytes)"),
    ("bad-cache-size", '"source": "."', '"source": ".", "options": {"cache_size": "lots"}', 1,
     "70:54", "mount[1].options.cache_size", '"lots" is not a size'),
    ("ext2-without-disk-size", HOSTFS_TYPE, '"type": "ext2"', 1, "67:9", "mount[1]",
     'missing key "disk_size"'),
    ("ext2-disk-too-small", '"type": "hostfs",\n            "source": "."',
     '"type": "ext2",\n            "source": ".", "options": {"disk_size": "1GB"}', 1, "70:53",
     "mount[1].options.disk_size", "too small (the minimum disk_size is 5GB)"),
    ("unknown-mount-option", '"MAC": ""', '"MAC": "", "index": 1', 1, "56:40",
     "mount[0].options.layers[0].options.index", "drops mount option 'index'"),
    ("temporary-not-bool", '"MAC": ""', '"MAC": "", "temporary": 1', 1, "56:53",
     "mount[0].options.layers[0].options.temporary", "expected true or false"),
    ("stray-empty-mac", '"source": "."', '"source": ".", "options": {"MAC": ""}', 1, "70:47",
     "mount[1].options.MAC", "an empty MAC is filled in only for the root image layer"),
    ("null-source", '"source": "."', '"source": null', 1, "70:23", "mount[1].source",
     "expected a string, found null"),
    ("feature-missing", ',\n    "feature": {\n        "amx": 0,\n        "pkru": 0,\n        "io_uring": 0,\n'
     '        "enable_edmm": false,\n        "enable_posix_shm": false\n    }', "", 1, "1:1", "(top level)",
     'missing key "feature"'),
    # Syntax errors: the path is the enclosing value.
    ("trailing-comma", '"/bin"\n    ],', '"/bin",\n    ],', 1, "14:15", "entry_points", "trailing comma"),
    ("duplicate-key", '"amx": 0,', '"amx": 0, "amx": 1,', 1, "39:19", "feature.amx",
     "duplicate key 'amx' (first at line 39:9)"),
    ("single-quotes", '"OCCLUM=yes"', "'OCCLUM=yes'", 1, "18:13", "env.default[0]",
     "strings must use double quotes"),
    ("missing-colon", '"amx": 0', '"amx" 0', 1, "39:15", "feature.amx", "expected ':' after key 'amx'"),
    ("leading-zero", '"amx": 0', '"amx": 01', 1, "39:16", "feature.amx", "invalid number"),
]


def _write(tmp_path: Path, text: str | bytes) -> Path:
    p = tmp_path / "Occlum.json"
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


@pytest.mark.parametrize("old,new,count,where,jpath,part", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(tmp_path: Path, old: str, new: str, count: int, where: str, jpath: str, part: str) -> None:
    assert TEMPLATE.count(old) >= 1, "test case does not apply to the template"
    text = TEMPLATE.replace(old, new, count if count else -1)
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}:{where}: {jpath}: "), msg
    assert part in msg, msg
    assert "\n" not in msg
    assert ei.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("text,where,part", [
    ("", "1:1", "the file is empty"),
    ("  // only a comment\n", "2:1", "the file is empty"),
    (TEMPLATE + "/* oops", "74:1", "unterminated /* comment"),
    ("[]", "1:1", "(top level): expected an object, found an array"),
    ('{"resource_limits": {}} x', "1:25", "unexpected 'x' after the end"),
    ('{"a": "unterminated', "1:7", "a: unterminated string"),
    ('{"a": "\\q"}', "1:8", "a: invalid escape '\\q'"),
    ('{"a": "\\ud800"}', "1:14", "a: lone surrogate"),
    ('{"a": "tab\there"}', "1:11", "a: control character in string"),
    ('{"a": 1 "b": 2}', "1:9", "expected ',' or '}', found '\"'"),
    ("\ufeff{}", "1:1", "byte order mark"),
])
def test_syntax_errors(tmp_path: Path, text: str, where: str, part: str) -> None:
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(ei.value).startswith(f"{p}:{where}: "), str(ei.value)
    assert part in str(ei.value)


def test_non_utf8(tmp_path: Path) -> None:
    p = _write(tmp_path, b'{\n  "a": "\xff"}')
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(ei.value) == f"{p}:2:9: byte 0xff is not UTF-8 (save the file as UTF-8)"


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope" / "Occlum.json"
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(p) in str(ei.value) and "no such file" in str(ei.value)
    assert ei.value.exit_code == EXIT_USAGE


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_comments_accepted(tmp_path: Path) -> None:
    """The manual's commented examples load; comments may sit anywhere whitespace can."""
    text = TEMPLATE.replace('"user_space_size": "300MB",',
                            '"user_space_size": /* inline */ "300MB", // user memory')
    text = text.replace('"OCCLUM=yes"', '"URL=http://example.com/*x*/"')
    cfg = load_config(_write(tmp_path, "// header\n" + text + "// end, no newline"))
    assert cfg.user_space_size == 300 << 20
    assert cfg.data["resource_limits"]["user_space_size"] == "300MB"
    assert cfg.env_default == ("URL=http://example.com/*x*/",)  # comment markers inside strings stay


def test_positions_count_characters() -> None:
    """Columns count characters, not bytes, and keys and values have their own positions."""
    from occlum_build.config.jsonc import parse

    doc = parse('{\n  "é": {"ü": [1, /* c */ "x"]}\n}', "f.json")
    assert doc.value == {"é": {"ü": [1, "x"]}}
    assert doc.key_pos[("é",)] == (2, 3)
    assert doc.value_pos[("é",)] == (2, 8)
    assert doc.key_pos[("é", "ü")] == (2, 9)
    assert doc.value_pos[("é", "ü", 1)] == (2, 26)
    assert doc.where(("é", "ü", 5)) == "f.json:2:14"  # falls back to the nearest known parent
