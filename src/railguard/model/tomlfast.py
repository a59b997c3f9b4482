"""Parse a spec's TOML fast when that is safe, and exactly as ``tomllib`` would in every case.

``tomllib`` is pure Python: ~0.5–0.9 s of a 10,000-service spec, the largest single part of planning one
(docs/benchmarks.md). ``toml_rs`` (the Rust ``toml`` crate) parses the same text ~4x faster and, held to
TOML 1.0, answers like ``tomllib`` on the whole toml-test suite and CPython's tomllib tests, with one
difference handled here (a leading byte-order mark, which tomllib refuses). But it recurses on the native
stack: a text nested ~10,000 levels deep (a 20 kB hostile spec, which an agent may send as proposed text)
ends the process with a segmentation fault instead of an error. So it is used only on a text whose nesting
is provably shallow (:func:`shallow`), and any error it raises is left to ``tomllib`` to raise, so a bad
spec gets the very diagnostic (message, line) it always had. Without ``toml_rs`` installed, ``tomllib`` does
everything. Called by :func:`railguard.model.specfile.parse_spec`.
"""

from __future__ import annotations

import re
import tomllib
from types import ModuleType
from typing import Any

_rust: ModuleType | None
try:
    import toml_rs as _rust
except ImportError:  # pragma: no cover - an install without it: tomllib parses everything
    _rust = None

# How deep one line may nest (brackets, braces, dots of dotted keys) for the fast parser: real specs use 2–3.
MAX_PER_LINE = 32
# What TOML reads as a string or a comment on one line, leftmost first, as its lexer does: a basic string
# (with escapes), a literal string (none), a comment. Multi-line strings are not here: a text with one is
# left to tomllib (shallow() says no), so every line of a text that gets here starts outside any string.
_NOT_CODE = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*')


def loads(text: str) -> dict[str, Any]:
    """``tomllib.loads(text)``: the same value, or the same exception."""
    if _rust is not None and shallow(text):
        try:
            parsed: dict[str, Any] = _rust.loads(text, toml_version="1.0.0")
            return parsed
        except Exception:  # any refusal: tomllib says why, in its own words
            pass
    return tomllib.loads(text)


def shallow(text: str) -> bool:
    """True when no line of ``text`` nests deeper than :data:`MAX_PER_LINE` and every line closes what it opens.

    Sound for the parser's recursion depth: outside multi-line strings (refused here), TOML strings and comments
    end on their line, so stripping them as TOML's lexer reads them leaves the code of each line. A line whose
    brackets do not balance either errs (the parser stops) or opens a multi-line array (refused here); so every
    line starts at depth 0, and within a line the parser nests at most once per opening bracket and per dot of
    a dotted key (table header and key together: at most 3 x MAX_PER_LINE levels).
    """
    if '"""' in text or "'''" in text or text.startswith("\ufeff"):
        return False
    # Only what counts is kept (a few bytes a line; UTF-8 never hides these bytes inside another character).
    kept = _NOT_CODE.sub("", text).encode("utf-8", errors="replace").translate(None, _UNCOUNTED)
    for line in kept.split(b"\n"):
        if line:
            opened = line.count(b"[") + line.count(b"{")
            if opened > MAX_PER_LINE or line.count(b".") > MAX_PER_LINE:
                return False
            if opened != line.count(b"]") + line.count(b"}"):
                return False
    return True


_UNCOUNTED = bytes(range(256)).translate(None, b"[]{}.\n")  # every byte but these
