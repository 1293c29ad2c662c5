"""Variable expansion and include resolution for bom files.

Includes are looked up in the including file's folder, then in each ``--include-dir`` (relative
to the current directory) in order, then in the templates shipped in ``bom/``.  The processing
order is Occlum's: the top bom, then its includes breadth first; a bom reached more than once
keeps only its last place.  A cycle is an error that prints the chain.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .. import paths
from ..errors import BomError
from .schema import BomSpec, Text, load_bom

if TYPE_CHECKING:
    from .stamp import Watch

_VAR = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def expand(text: Text, env: Mapping[str, str] | None = None) -> str:
    """Expand ``$VAR`` and ``${VAR}``; an unset or empty variable is an error naming it."""
    if "$" not in text:
        return str(text)
    env = os.environ if env is None else env
    if text.count("${") > text.count("}"):
        raise BomError(f"unterminated '${{' in '{text}'", where=text.where)

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) if m.group(1) is not None else m.group(2)
        if not _NAME.match(name):
            raise BomError(f"'${{{name}}}' is not a variable name in '{text}'", where=text.where)
        val = env.get(name)
        if val is None:
            raise BomError(f"variable ${name} is not set (used in '{text}'); export it first",
                           where=text.where)
        if val == "":
            raise BomError(f"variable ${name} is empty (used in '{text}'); set it to a path",
                           where=text.where)
        return val

    return _VAR.sub(sub, text)


def search_dirs(bom: Path, include_dirs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    dirs = [bom.parent]
    dirs.extend(Path(os.path.abspath(d)) for d in include_dirs)
    dirs.append(paths.BOM_TEMPLATE_DIR)
    return list(dict.fromkeys(dirs))


def find_include(name: Text, including: Path, include_dirs: Sequence[str | os.PathLike[str]],
                 env: Mapping[str, str] | None = None, seen: Watch | None = None) -> Path:
    """The bom file an ``includes`` entry names; ``seen`` gets every candidate probed."""
    rel = expand(name, env)
    if os.path.isabs(rel):
        candidates = [Path(rel)]
    else:
        candidates = [d / rel for d in search_dirs(including, include_dirs)]
    for c in candidates:
        try:
            st: os.stat_result | None = os.stat(c)
        except OSError:
            st = None
        if seen is not None:
            seen.add(str(c), st)
        if st is not None and stat.S_ISREG(st.st_mode):
            return Path(os.path.abspath(c))
    looked = ", ".join(str(c.parent) for c in candidates)
    raise BomError(f"included bom '{rel}' not found (looked in {looked}); pass --include-dir DIR",
                   where=name.where)


def collect_boms(top: str | os.PathLike[str], include_dirs: Sequence[str | os.PathLike[str]] = (),
                 env: Mapping[str, str] | None = None, seen: Watch | None = None) -> list[BomSpec]:
    """The top bom and everything it includes, in Occlum's processing order (``seen``: gets
    every bom file and include candidate, for the run stamp)."""
    top_path = Path(os.path.abspath(top))
    if seen is not None:
        seen.add_now([str(top_path)])
    loaded: dict[Path, BomSpec] = {}
    edges: dict[Path, list[tuple[Path, Text]]] = {}

    def load(p: Path) -> BomSpec:
        if p not in loaded:
            loaded[p] = load_bom(p)
            edges[p] = [(find_include(inc, p, include_dirs, env, seen), inc) for inc in loaded[p].includes]
        return loaded[p]

    # Cycle check first (depth first, with the chain), so the BFS below terminates.
    done: set[Path] = set()

    def visit(p: Path, stack: list[Path]) -> None:
        load(p)
        for child, inc in edges[p]:
            key = Path(os.path.realpath(child))
            chain = [Path(os.path.realpath(s)) for s in stack]
            if key in chain:
                names = " -> ".join(str(s) for s in stack[chain.index(key):] + [child])
                raise BomError(f"include cycle: {names}", where=inc.where)
            if child not in done:
                visit(child, stack + [child])
        done.add(p)

    visit(top_path, [top_path])

    order: list[Path] = [top_path]
    queue = [top_path]
    while queue:
        cur = queue.pop(0)
        for child, _ in edges[cur]:
            order.append(child)
            queue.append(child)
            if len(order) > 10000:
                raise BomError("too many includes (over 10000 after expansion)", where=str(top_path))
    # keep the last occurrence of each bom (not `seen`: that is the Watch that load() reads)
    kept_set: set[Path] = set()
    kept: list[Path] = []
    for p in reversed(order):
        if p not in kept_set:
            kept_set.add(p)
            kept.append(p)
    kept.reverse()
    return [loaded[p] for p in kept]
