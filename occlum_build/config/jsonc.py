"""JSON with comments, keeping the line:column of every value and key.

Occlum's own tools read Occlum.json with serde_json and jq, which reject comments; the
manual nevertheless shows ``//`` comments in its examples.  We accept ``//`` line and
``/* */`` block comments and otherwise hold to strict JSON (RFC 8259): no trailing commas,
no single quotes, no duplicate keys (serde rejects duplicate struct fields; for free-form
values it silently keeps the last one, which hides mistakes).

The json module cannot report positions, hence this small recursive-descent scanner.
The result is plain Python data (dict/list/str/int/float/bool/None) plus two tables that
map a path (tuple of keys and indices) to the 1-based (line, column) of the value and,
for object members, of the key.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from ..errors import ConfigError

Path = tuple[str | int, ...]
Pos = tuple[int, int]

_WS = " \t\n\r"
# Objects and arrays nest at most this deep: serde_json, which Occlum's tools read Occlum.json
# with, refuses a 128th level ("recursion limit exceeded"); the limit also keeps this
# recursive parser far from Python's recursion limit (docs/configuration.md).
MAX_DEPTH = 127
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass
class Document:
    """A parsed JSON text: the value and where each part of it was written."""

    value: object
    source: str  # the file name used in messages
    value_pos: dict[Path, Pos] = field(default_factory=dict)
    key_pos: dict[Path, Pos] = field(default_factory=dict)

    def where(self, path: Path, *, key: bool = False) -> str:
        """``file:line:col`` of the value at ``path`` (or of its key), else of the nearest parent."""
        table = self.key_pos if key else self.value_pos
        p = path
        while p not in table and p:
            p = p[:-1]
            table = self.value_pos
        line, col = table.get(p, (1, 1))
        return f"{self.source}:{line}:{col}"


def path_text(path: Path) -> str:
    """``mount[0].options.layers`` for ("mount", 0, "options", "layers"); ``(top level)`` for ()."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def parse(text: str, source: str) -> Document:
    """Parse JSON-with-comments ``text``; ``source`` names the file in error messages."""
    return _Parser(text, source).document()


class _Parser:
    def __init__(self, text: str, source: str):
        self.s = text
        self.i = 0
        self.source = source
        self.doc = Document(None, source)
        # Line starts, for offset -> (line, col) without rescanning.
        self._lines = [0]
        for n, ch in enumerate(text):
            if ch == "\n":
                self._lines.append(n + 1)

    # -- positions and errors ------------------------------------------------------------
    def pos(self, offset: int | None = None) -> Pos:
        off = self.i if offset is None else offset
        line = bisect.bisect_right(self._lines, off)
        return line, off - self._lines[line - 1] + 1

    def fail(self, msg: str, offset: int | None = None, path: Path | None = None) -> ConfigError:
        line, col = self.pos(offset)
        prefix = f"{path_text(path)}: " if path else ""
        return ConfigError(prefix + msg, where=f"{self.source}:{line}:{col}")

    def _found(self) -> str:
        if self.i >= len(self.s):
            return "end of file"
        return repr(self.s[self.i])

    # -- scanning ------------------------------------------------------------------------
    def skip(self) -> None:
        """Skip whitespace and comments."""
        s, n = self.s, len(self.s)
        while self.i < n:
            ch = s[self.i]
            if ch in _WS:
                self.i += 1
            elif s.startswith("//", self.i):
                end = s.find("\n", self.i)
                self.i = n if end < 0 else end + 1
            elif s.startswith("/*", self.i):
                end = s.find("*/", self.i + 2)
                if end < 0:
                    raise self.fail("unterminated /* comment (add */)")
                self.i = end + 2
            else:
                return

    def document(self) -> Document:
        self.skip()
        if self.i >= len(self.s):
            raise self.fail("the file is empty (expected a JSON object)")
        self.doc.value = self.value(())
        self.skip()
        if self.i < len(self.s):
            raise self.fail(f"unexpected {self._found()} after the end of the JSON value")
        return self.doc

    def value(self, path: Path) -> object:
        self.doc.value_pos[path] = self.pos()
        ch = self.s[self.i] if self.i < len(self.s) else ""
        if ch in "{[" and ch and len(path) >= MAX_DEPTH:
            raise self.fail(f"objects and arrays nested more than {MAX_DEPTH} levels deep "
                            "(the limit, as Occlum's serde_json)")
        if ch == "{":
            return self.obj(path)
        if ch == "[":
            return self.arr(path)
        if ch == '"':
            return self.string(path)
        if ch == "-" or ch.isdigit():
            return self.number(path)
        for word, val in (("true", True), ("false", False), ("null", None)):
            if self.s.startswith(word, self.i):
                self.i += len(word)
                return val
        if ch == "'":
            raise self.fail("strings must use double quotes", path=path)
        raise self.fail(f"expected a JSON value, found {self._found()}", path=path)

    def obj(self, path: Path) -> dict[str, object]:
        self.i += 1
        out: dict[str, object] = {}
        self.skip()
        if self.s.startswith("}", self.i):
            self.i += 1
            return out
        while True:
            self.skip()
            if self.i >= len(self.s) or self.s[self.i] != '"':
                raise self.fail(f"expected a key in double quotes, found {self._found()}", path=path)
            kpos = self.pos()
            key = self.string(path)
            child = (*path, key)
            if key in out:
                first = self.doc.key_pos[child]
                raise self.fail(f"duplicate key {key!r} (first at line {first[0]}:{first[1]})",
                                offset=self._offset(kpos), path=child)
            self.doc.key_pos[child] = kpos
            self.skip()
            if not self.s.startswith(":", self.i):
                raise self.fail(f"expected ':' after key {key!r}, found {self._found()}", path=child)
            self.i += 1
            self.skip()
            out[key] = self.value(child)
            self.skip()
            if self.s.startswith(",", self.i):
                comma = self.i
                self.i += 1
                self.skip()
                if self.s.startswith("}", self.i):
                    raise self.fail("trailing comma before '}' (remove it)", offset=comma, path=path)
                continue
            if self.s.startswith("}", self.i):
                self.i += 1
                return out
            raise self.fail(f"expected ',' or '}}', found {self._found()}", path=path)

    def arr(self, path: Path) -> list[object]:
        self.i += 1
        out: list[object] = []
        self.skip()
        if self.s.startswith("]", self.i):
            self.i += 1
            return out
        while True:
            self.skip()
            out.append(self.value((*path, len(out))))
            self.skip()
            if self.s.startswith(",", self.i):
                comma = self.i
                self.i += 1
                self.skip()
                if self.s.startswith("]", self.i):
                    raise self.fail("trailing comma before ']' (remove it)", offset=comma, path=path)
                continue
            if self.s.startswith("]", self.i):
                self.i += 1
                return out
            raise self.fail(f"expected ',' or ']', found {self._found()}", path=path)

    def string(self, path: Path) -> str:
        start = self.i
        self.i += 1
        s, n = self.s, len(self.s)
        parts: list[str] = []
        while True:
            if self.i >= n:
                raise self.fail("unterminated string", offset=start, path=path)
            ch = s[self.i]
            if ch == '"':
                self.i += 1
                return "".join(parts)
            if ch == "\\":
                parts.append(self._escape(path))
                continue
            if ch < " ":
                raise self.fail("control character in string (escape it, e.g. \\n)", path=path)
            parts.append(ch)
            self.i += 1

    def _escape(self, path: Path) -> str:
        s = self.s
        esc = s[self.i + 1: self.i + 2]
        if esc in _ESCAPES:
            self.i += 2
            return _ESCAPES[esc]
        if esc != "u":
            raise self.fail(f"invalid escape '\\{esc}' in string", path=path)
        code = self._hex4(path)
        if 0xD800 <= code <= 0xDBFF:  # a pair: high surrogate must be followed by a low one
            if s.startswith("\\u", self.i):
                save = self.i
                low = self._hex4(path)
                if 0xDC00 <= low <= 0xDFFF:
                    return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00))
                self.i = save
            raise self.fail("lone surrogate in \\u escape", path=path)
        if 0xDC00 <= code <= 0xDFFF:
            raise self.fail("lone surrogate in \\u escape", path=path)
        return chr(code)

    def _hex4(self, path: Path) -> int:
        digits = self.s[self.i + 2: self.i + 6]
        if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise self.fail("invalid \\u escape (expected 4 hex digits)", path=path)
        self.i += 6
        return int(digits, 16)

    def number(self, path: Path) -> int | float:
        m = _NUMBER.match(self.s, self.i)
        if not m or m.end() == self.i:
            raise self.fail(f"invalid number starting with {self._found()}", path=path)
        text = m.group(0)
        self.i = m.end()
        if self.i < len(self.s) and (self.s[self.i].isalnum() or self.s[self.i] == "."):
            raise self.fail(f"invalid number {text + self.s[self.i]!r}...", offset=m.start(), path=path)
        if m.group("frac") or m.group("exp"):
            return float(text)
        return int(text)

    def _offset(self, pos: Pos) -> int:
        return self._lines[pos[0] - 1] + pos[1] - 1


_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?P<frac>\.[0-9]+)?(?P<exp>[eE][+-]?[0-9]+)?")
