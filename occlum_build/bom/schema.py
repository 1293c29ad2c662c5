"""The bom file schema: load YAML into dataclasses, every value tagged with file:line:col.

Occlum's copy_bom ignores unknown keys and reports serde errors without positions; here an
unknown key is an error with a did-you-mean, and every error names ``file:line:col`` and the
path of the offending value (``targets[1].copy[0].files[2].hash``).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import BomError
from ..inputfile import MAX_BOM_BYTES, read_limited

_STR_TAGS = {"tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_BOOL_TRUE = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y"}
_NULL = "tag:yaml.org,2002:null"
_HASH_RE = re.compile(r"^[0-9A-Fa-f]{64}$")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml keeps marks too, ~5x faster


class Text(str):
    """A string from a bom file that remembers where it was written (``.where``)."""

    where: str

    def __new__(cls, value: str, where: str) -> Text:
        obj = super().__new__(cls, value)
        obj.where = where
        return obj


@dataclass
class FileSpec:
    name: Text
    hash: Text | None = None
    autodep: bool = True
    autodep_explicit: bool = False  # autodep: true was written (a non-ELF file is then an error)
    rename: Text | None = None
    where: str = ""


@dataclass
class CopySpec:
    from_: Text | None
    dirs: list[Text] | None
    files: list[FileSpec] | None
    where: str = ""


@dataclass
class LinkSpec:
    src: Text
    linkname: Text
    where: str = ""


@dataclass
class TargetSpec:
    target: Text
    mkdirs: list[Text] = field(default_factory=list)
    createlinks: list[LinkSpec] = field(default_factory=list)
    copy: list[CopySpec] = field(default_factory=list)
    where: str = ""


@dataclass
class BomSpec:
    path: Path
    includes: list[Text] = field(default_factory=list)
    excludes: list[Text] = field(default_factory=list)
    targets: list[TargetSpec] = field(default_factory=list)


class _Ctx:
    def __init__(self, path: str):
        self.path = path

    def where(self, node: Node, jpath: str) -> str:
        m = node.start_mark
        loc = f"{self.path}:{m.line + 1}:{m.column + 1}"
        return f"{loc}: {jpath}" if jpath else loc

    def fail(self, node: Node, jpath: str, msg: str) -> BomError:
        return BomError(msg, where=self.where(node, jpath))


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "null"
    if node.tag == "tag:yaml.org,2002:bool":
        return "a boolean"
    return f"{node.value!r}"


def _mapping(ctx: _Ctx, node: Node, jpath: str, allowed: tuple[str, ...], what: str) -> dict[str, Node]:
    if not isinstance(node, MappingNode):
        raise ctx.fail(node, jpath, f"expected {what} (a mapping with keys {', '.join(allowed)}), "
                                    f"got {_kind(node)}")
    out: dict[str, Node] = {}
    for knode, vnode in node.value:
        key = knode.value if isinstance(knode, ScalarNode) else None
        kpath = f"{jpath}.{key}" if jpath else str(key)
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(allowed)})"
            raise ctx.fail(knode, kpath, f"unknown key '{key}'{hint}")
        if key in out:
            raise ctx.fail(knode, kpath, f"duplicate key '{key}'")
        out[key] = vnode
    return out


def _present(m: dict[str, Node], key: str) -> Node | None:
    """A key's node, or None when it is absent or null (serde's Option semantics)."""
    n = m.get(key)
    if n is None or (isinstance(n, ScalarNode) and n.tag == _NULL):
        return None
    return n


def _text(ctx: _Ctx, node: Node, jpath: str, what: str = "a string") -> Text:
    if not isinstance(node, ScalarNode) or node.tag not in _STR_TAGS:
        raise ctx.fail(node, jpath, f"expected {what}, got {_kind(node)}")
    if node.value == "":
        raise ctx.fail(node, jpath, f"expected {what}, got an empty string")
    return Text(node.value, ctx.where(node, jpath))


def _texts(ctx: _Ctx, node: Node | None, jpath: str, what: str, one: str) -> list[Text]:
    """A list of strings; ``what`` names the list, ``one`` an item (for messages)."""
    if node is None:
        return []
    if not isinstance(node, SequenceNode):
        raise ctx.fail(node, jpath, f"expected a list of {what}, got {_kind(node)}")
    return [_text(ctx, n, f"{jpath}[{i}]", one) for i, n in enumerate(node.value)]


def _seq(ctx: _Ctx, node: Node | None, jpath: str, what: str) -> list[Node]:
    if node is None:
        return []
    if not isinstance(node, SequenceNode):
        raise ctx.fail(node, jpath, f"expected a list of {what}, got {_kind(node)}")
    return list(node.value)


def _file(ctx: _Ctx, node: Node, jpath: str) -> FileSpec:
    if isinstance(node, ScalarNode):
        return FileSpec(_text(ctx, node, jpath, "a file name"), where=ctx.where(node, jpath))
    m = _mapping(ctx, node, jpath, ("name", "hash", "autodep", "rename"), "a file entry")
    if _present(m, "name") is None:
        raise ctx.fail(node, jpath, "file entry needs 'name'")
    spec = FileSpec(_text(ctx, m["name"], f"{jpath}.name", "a file name"), where=ctx.where(node, jpath))
    h = _present(m, "hash")
    if h is not None:
        spec.hash = _text(ctx, h, f"{jpath}.hash", "a SHA-256 hex string")
        if not _HASH_RE.match(spec.hash):
            raise ctx.fail(h, f"{jpath}.hash", f"'{spec.hash}' is not a SHA-256 hash "
                                               "(64 hex digits, as `sha256sum` prints)")
    a = _present(m, "autodep")
    if a is not None:
        if not isinstance(a, ScalarNode) or a.tag != "tag:yaml.org,2002:bool":
            raise ctx.fail(a, f"{jpath}.autodep", f"expected true or false, got {_kind(a)}")
        spec.autodep = a.value in _BOOL_TRUE
        spec.autodep_explicit = spec.autodep
    r = _present(m, "rename")
    if r is not None:
        spec.rename = _text(ctx, r, f"{jpath}.rename", "a file name")
    return spec


def _copy(ctx: _Ctx, node: Node, jpath: str) -> CopySpec:
    m = _mapping(ctx, node, jpath, ("from", "dirs", "files"), "a copy entry")
    f = _present(m, "from")
    d = _present(m, "dirs")
    fl = _present(m, "files")
    spec = CopySpec(
        _text(ctx, f, f"{jpath}.from", "a directory") if f is not None else None,
        _texts(ctx, d, f"{jpath}.dirs", "directories", "a directory") if d is not None else None,
        [_file(ctx, n, f"{jpath}.files[{i}]") for i, n in enumerate(_seq(ctx, fl, f"{jpath}.files", "files"))]
        if fl is not None else None,
        ctx.where(node, jpath),
    )
    if spec.dirs is None and spec.files is None and spec.from_ is None:
        raise ctx.fail(node, jpath, "a copy entry needs 'from' (copy the whole dir), 'dirs' or 'files'")
    return spec


def _target(ctx: _Ctx, node: Node, jpath: str) -> TargetSpec:
    m = _mapping(ctx, node, jpath, ("target", "mkdirs", "createlinks", "copy"), "a target")
    if _present(m, "target") is None:
        raise ctx.fail(node, jpath, "target entry needs 'target' (the destination dir in the image)")
    t = TargetSpec(_text(ctx, m["target"], f"{jpath}.target", "a destination path"),
                   where=ctx.where(node, jpath))
    t.mkdirs = _texts(ctx, _present(m, "mkdirs"), f"{jpath}.mkdirs", "directory names", "a directory name")
    for i, ln in enumerate(_seq(ctx, _present(m, "createlinks"), f"{jpath}.createlinks", "links")):
        lp = f"{jpath}.createlinks[{i}]"
        lm = _mapping(ctx, ln, lp, ("src", "linkname"), "a link")
        for k in ("src", "linkname"):
            if _present(lm, k) is None:
                raise ctx.fail(ln, lp, f"link needs '{k}'")
        t.createlinks.append(LinkSpec(_text(ctx, lm["src"], f"{lp}.src"),
                                      _text(ctx, lm["linkname"], f"{lp}.linkname"), ctx.where(ln, lp)))
    t.copy = [_copy(ctx, n, f"{jpath}.copy[{i}]")
              for i, n in enumerate(_seq(ctx, _present(m, "copy"), f"{jpath}.copy", "copy entries"))]
    return t


def parse_bom(text: str, path: str | os.PathLike[str]) -> BomSpec:
    """Parse bom text; BomError with ``file:line:col`` on any problem."""
    p = Path(path)
    ctx = _Ctx(str(p))
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
        raise BomError(f"malformed YAML: {e.problem or e.context}", where=where) from None
    except yaml.YAMLError as e:
        raise BomError(f"malformed YAML: {e}", where=str(p)) from None
    bom = BomSpec(p)
    if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL):
        return bom
    m = _mapping(ctx, root, "", ("includes", "excludes", "targets"), "a bom")
    bom.includes = _texts(ctx, _present(m, "includes"), "includes", "bom file names", "a bom file name")
    bom.excludes = _texts(ctx, _present(m, "excludes"), "excludes", "patterns", "a pattern")
    bom.targets = [_target(ctx, n, f"targets[{i}]")
                   for i, n in enumerate(_seq(ctx, _present(m, "targets"), "targets", "targets"))]
    return bom


def load_bom(path: str | os.PathLike[str]) -> BomSpec:
    """Read and parse one bom file."""
    p = Path(path)
    if not p.exists():
        raise BomError("bom file not found", where=str(p))
    # a regular file of at most 4 MiB: /dev/zero or a FIFO given as a bom would never end
    data = read_limited(p, what="bom file", limit=MAX_BOM_BYTES, error=BomError)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BomError(f"not UTF-8 text (byte {e.start}); a bom file is YAML", where=str(p)) from None
    return parse_bom(text, p)
