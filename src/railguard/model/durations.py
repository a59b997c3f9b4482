"""Duration strings ("500ms", "2s", "5m", "1h30m") used across the spec.

Durations stay strings in the spec (so the JSON Schema tells an agent the exact
format) and are turned into milliseconds here, by the spec's semantic checks and by
resource normalisation (so "60s" and "1m" fingerprint the same).
"""

from __future__ import annotations

import re
from functools import lru_cache

DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_MAX_MS = 7 * 24 * 3_600_000


@lru_cache(maxsize=1024)  # a large spec repeats the same few durations tens of thousands of times
def parse_ms(text: str) -> int:
    """Return the duration in milliseconds; raise ValueError with a readable reason."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration; write a number and a unit, like '500ms', '2s', '5m', '1h'")
    total = sum(int(n) * _UNIT_MS[unit] for n, unit in _PART.findall(text))
    if total > _MAX_MS:
        raise ValueError(f"{text!r} is longer than 7 days")
    return total


def format_ms(ms: int) -> str:
    """The shortest canonical string for a duration in milliseconds."""
    if ms == 0:
        return "0s"
    for unit in ("h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"
