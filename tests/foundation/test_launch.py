"""occlum_build.launch: the launch options' syntax, as libos/src/identity.c reads it (the
runtime checks again; tests/runtime/test_launch_options.py runs both)."""

from __future__ import annotations

import base64
import os

import pytest

from occlum_build import launch
from occlum_build.errors import EXIT_USAGE, OcclumError


@pytest.mark.parametrize("raw", [b"\0", b"ab", b"abc", bytes(range(64)), b"\xff" * 63])
def test_config_id_is_standard_base64(raw: bytes) -> None:
    text = base64.b64encode(raw).decode()
    assert launch.decode_config_id(text) == raw.ljust(64, b"\0")
    assert launch.decode_config_id(text.rstrip("=")) == raw.ljust(64, b"\0")  # padding optional


@pytest.mark.parametrize(("text", "why"), [
    ("", "empty"), ("A", "cannot be a whole number"), ("QQ=", "padding"), ("QR==", "not canonical"),
    ("AA-_", "character 3 is '-'"), (base64.b64encode(bytes(65)).decode(), "decodes to 65 bytes"),
])
def test_config_id_refusals(text: str, why: str) -> None:
    with pytest.raises(OcclumError) as e:
        launch.decode_config_id(text)
    assert why in str(e.value) and e.value.exit_code == EXIT_USAGE


def test_config_svn_as_strtoul() -> None:
    for text, value in (("0", 0), ("65535", 65535), ("0x10", 16), ("0XfF", 255), ("010", 8)):
        assert launch.parse_config_svn(text) == value
    for text in ("", "65536", "0x", "09", "-1", "+1", " 1", "1a", "0x10000"):
        with pytest.raises(OcclumError):
            launch.parse_config_svn(text)


def test_measurement_and_cpus() -> None:
    assert launch.parse_measurement("--expect-mrenclave", "AB" * 32) == "ab" * 32
    for bad in ("ab" * 31, "g" * 64, "ab" * 33):
        with pytest.raises(OcclumError):
            launch.parse_measurement("--expect-mrsigner", bad)
    have = len(os.sched_getaffinity(0))
    assert launch.parse_cpus(str(have)) == have
    for bad in ("0", str(have + 1), "-1", "1.0", "", "١"):
        with pytest.raises(OcclumError):
            launch.parse_cpus(bad)
