"""One rule for "xx-xx-...-xx" text (image keys, MAC files, conf MACs): keys.parse_hex16 on
the shared cases of tests/vectors/hex16/cases.json, which libos/tests/test_hex16.c runs through
the C parser (ofs_parse_hex16) too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from occlum_build.keys import KeyFileError, parse_hex16

CASES = json.loads((Path(__file__).resolve().parents[1] / "vectors/hex16/cases.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["why"] for c in CASES])
def test_parse_hex16_follows_the_shared_cases(case: dict) -> None:
    if case["bytes"] is None:
        with pytest.raises(KeyFileError):
            parse_hex16(case["text"], "case")
    else:
        assert parse_hex16(case["text"], "case").hex() == case["bytes"]
