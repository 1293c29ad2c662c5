"""build/report.json follows docs/formats/build-report.md (vector and fresh builds)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pipeline_helpers import needs_native

from occlum_build.pipeline.report import REPORT_FIELDS, check_report

ROOT = Path(__file__).resolve().parents[2]
VECTOR = ROOT / "tests/vectors/build-report/report.json"


def test_vector_follows_the_format():
    check_report(json.loads(VECTOR.read_text()))


def test_doc_table_lists_every_field():
    doc = (ROOT / "docs/formats/build-report.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)`", doc, re.M))
    documented |= {"initfs"}  # documented together with image
    assert set(REPORT_FIELDS) <= documented


@pytest.mark.parametrize("mutate,field", [
    (lambda r: r.pop("conf_mac"), "conf_mac"),
    (lambda r: r.update(image_mac=r["image_mac"].upper()), "image_mac"),
    (lambda r: r.update(mrenclave="00"), "mrenclave"),
    (lambda r: r.pop("mrsigner"), "mrenclave and mrsigner"),
    (lambda r: r.update(extra=1), "unknown keys"),
])
def test_check_report_names_the_field(mutate, field):
    rep = json.loads(VECTOR.read_text())
    mutate(rep)
    with pytest.raises(ValueError, match=field):
        check_report(rep)


@needs_native
def test_fresh_builds_follow_the_format(inst, occlum):
    check_report(occlum.build())
    check_report(json.loads((inst / "build/report.json").read_text()))
    check_report(occlum.build())  # a no-op build too
