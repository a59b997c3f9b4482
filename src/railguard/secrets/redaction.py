"""Redaction: secret values never leave Railguard in anything it prints, serves or stores.

A :class:`Redactor` knows the current secret values (and the forms they take inside
JSON and URLs) and replaces each with ``(sensitive:NAME)``. The daemon applies it to
every API answer as a last line of defence, and to events, journal entries and
operation errors before they are stored. Values shorter than 4 characters are not
redacted (they would mangle ordinary text); ``secret set`` refuses them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from urllib.parse import quote

MIN_SECRET_LENGTH = 4


class Redactor:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pairs: list[tuple[str, str]] = []

    def update(self, secrets: Iterable[tuple[str, str]]) -> None:
        """Replace the known (name, value) pairs."""
        pairs: dict[str, str] = {}
        for name, value in secrets:
            if len(value) < MIN_SECRET_LENGTH:
                continue
            marker = f"(sensitive:{name})"
            for form in {value, json.dumps(value)[1:-1], quote(value, safe="")}:
                if len(form) >= MIN_SECRET_LENGTH:
                    pairs[form] = marker
        # Longest first, so a value that contains another is replaced whole.
        with self._lock:
            self._pairs = sorted(pairs.items(), key=lambda p: -len(p[0]))

    def __call__(self, text: str) -> str:
        with self._lock:
            pairs = self._pairs
        for value, marker in pairs:
            if value in text:
                text = text.replace(value, marker)
        return text
