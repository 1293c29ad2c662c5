"""The one size parser and the one key/MAC text parser."""

import os
import stat

import pytest

from occlum_build.errors import KeyFileError
from occlum_build.keys import format_hex16, parse_hex16, read_image_key, write_image_key
from occlum_build.sizes import SizeError, parse_size


@pytest.mark.parametrize("text,expected", [
    ("32MB", 32 << 20), ("1KB", 1024), ("4096B", 4096), ("2GB", 2 << 30), ("1TB", 1 << 40),
    (" 300MB ", 300 << 20), ("16 GB", 16 << 30), ("0B", 0),
])
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text,why", [
    ("300XB", r'^"300XB" is not a size \(use B/KB/MB/GB/TB\)$'), ("MB", "use B/KB"), ("1.5MB", "use B/KB"),
    ("32mb", "use B/KB"), ("-1MB", "use B/KB"), ("", "use B/KB"), (32, "expected a string"),
    ("0x10MB", "use B/KB"),
])
def test_bad_sizes(text, why):
    with pytest.raises(SizeError, match=why):
        parse_size(text)


def test_key_roundtrip(tmp_path):
    key = bytes(range(16))
    p = tmp_path / "k"
    write_image_key(p, key)
    assert p.read_text() == format_hex16(key) + "\n"
    assert len(p.read_text()) == 48
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert read_image_key(p) == key


@pytest.mark.parametrize("text,why", [
    ("00-11", "found 5"),
    ("00-11-22-33-44-55-66-77-88-99-aa-bb-cc-dd-ee", "found 44"),
    ("00-11-22-33-44-55-66-77-88-99-aa-bb-cc-dd-ee-fg", "two-digit hex"),
    ("00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff", "two-digit hex"),
    ("00-11-22-33-44-55-66-77-88-99-aa-bb-cc-dd-ee-ff ", "found 48"),
])
def test_bad_keys(tmp_path, text, why):
    p = tmp_path / "key"
    p.write_text(text)
    with pytest.raises(KeyFileError, match=why) as e:
        read_image_key(p)
    assert str(p) in str(e.value)


def test_key_crlf_accepted():
    assert parse_hex16("ff-" * 15 + "ff\r\n", "x") == b"\xff" * 16


def test_missing_key(tmp_path):
    with pytest.raises(KeyFileError, match="does not exist"):
        read_image_key(tmp_path / "nope")
