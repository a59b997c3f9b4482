"""Find the line of a key path in TOML text.

``tomllib`` gives values without positions, yet a diagnostic must say "file, line".
This is a small line scanner that records where each table header and key starts;
it is used only to point at problems, never to read values, so an imprecise answer
costs a slightly wrong line number and nothing else. Called by
:mod:`railguard.model.specfile`.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]#]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=")
_INLINE_KEY = re.compile(r"([A-Za-z0-9_-]+|\"[^\"]*\")\s*=")


def _split_dotted(key: str) -> tuple[str, ...]:
    parts = re.findall(r"\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+)", key)
    return tuple(a or b or c for a, b, c in parts)


class LineIndex:
    """Map of key paths (tuples of strings and array indexes) to 1-based lines."""

    def __init__(self, text: str) -> None:
        # Built on first use: a valid spec never needs line numbers, and scanning costs time on big specs.
        self._text = text
        self._built: dict[tuple[str | int, ...], int] | None = None

    @property
    def _lines(self) -> dict[tuple[str | int, ...], int]:
        if self._built is None:
            self._built = self._scan(self._text)
        return self._built

    @staticmethod
    def _scan(text: str) -> dict[tuple[str | int, ...], int]:
        lines: dict[tuple[str | int, ...], int] = {}
        table: tuple[str | int, ...] = ()
        array_counts: dict[tuple[str, ...], int] = {}
        in_multiline = False
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            # Skip the bodies of multi-line strings so their content is never read as keys.
            if in_multiline:
                if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                    in_multiline = False
                continue
            if not line or line.startswith("#"):
                continue
            header = _HEADER.match(raw)
            if header:
                path = _split_dotted(header.group(2))
                if header.group(1) == "[[":
                    index = array_counts.get(path, 0)
                    array_counts[path] = index + 1
                    table = (*path, index)
                else:
                    table = path
                lines.setdefault(table, number)
                continue
            key = _KEY.match(raw)
            if key:
                key_path: tuple[str | int, ...] = (*table, *_split_dotted(key.group(1)))
                lines.setdefault(key_path, number)
                rest = raw[key.end():]
                if rest.strip().startswith("{"):
                    for inline in _INLINE_KEY.finditer(rest):
                        lines.setdefault((*key_path, *_split_dotted(inline.group(1))), number)
                if rest.count('"""') == 1 or rest.count("'''") == 1:
                    in_multiline = True
        return lines

    def line_of(self, path: tuple[str | int, ...]) -> int | None:
        """The line of ``path``, or of its closest known parent."""
        for end in range(len(path), 0, -1):
            found = self._lines.get(path[:end])
            if found is not None:
                return found
        return None
