"""The dependency rule of docs/architecture.md, checked on the source: doit is imported only
under pipeline/; config, bom, image and sgx never import each other; `occlum package` loads
without doit."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "occlum_build"
STAGES = ("config", "bom", "image", "sgx")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted module) of every import in ``path``."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    package = parts if path.name == "__init__.py" else parts[:-1]
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def _modules() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def _violations() -> list[str]:
    bad = []
    for path in _modules():
        area = path.relative_to(PKG).parts[0]
        for line, mod in _imports(path):
            where = f"{path.relative_to(PKG.parent)}:{line}"
            if (mod == "doit" or mod.startswith("doit.")) and area != "pipeline":
                bad.append(f"{where}: imports {mod} outside pipeline/")
            if area in STAGES:
                for other in STAGES:
                    if other != area and (mod == f"occlum_build.{other}"
                                          or mod.startswith(f"occlum_build.{other}.")):
                        bad.append(f"{where}: {area}/ imports {mod}")
    return bad


def test_dependency_rule_holds():
    assert _violations() == []


def test_rule_checker_catches_a_violation(tmp_path, monkeypatch):
    """The checker itself can fail: a planted import is reported with file:line."""
    fake = tmp_path / "occlum_build"
    (fake / "image").mkdir(parents=True)
    (fake / "image" / "x.py").write_text("import os\nfrom ..sgx import elf\nimport doit.tools\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", fake)
    got = _violations()
    assert "occlum_build/image/x.py:2: image/ imports occlum_build.sgx" in got
    assert "occlum_build/image/x.py:3: imports doit.tools outside pipeline/" in got


@pytest.mark.parametrize("module", ["occlum_build.package", "occlum_build.cli.package",
                                    "occlum_build.cli.print"])
def test_commands_load_without_doit(module):
    code = (f"import importlib, sys; importlib.import_module({module!r}); "
            "print(sorted(m for m in sys.modules if m == 'doit' or m.startswith('doit.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
