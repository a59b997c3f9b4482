"""docs/diagnostics.md lists exactly the codes the code base can emit."""

from __future__ import annotations

import re
from pathlib import Path

from railguard.model.diagnostics import CODES

ROOT = Path(__file__).resolve().parents[1]
# A code passed to error()/warning()/Diagnostic(code=...) anywhere in the sources.
EMITTED = re.compile(r"""(?:\berror\(|\bwarning\(|code=)\s*["']([a-z]+\.[a-z_]+)["']""")


def documented() -> set[str]:
    text = (ROOT / "docs" / "diagnostics.md").read_text()
    return set(re.findall(r"^\| `([a-z]+\.[a-z_]+)` \|", text, flags=re.MULTILINE))


def emitted() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "src" / "railguard").rglob("*.py"):
        found |= set(EMITTED.findall(path.read_text()))
    return found


def test_docs_list_exactly_the_declared_codes() -> None:
    assert documented() == set(CODES)


def test_every_emitted_code_is_declared_and_every_declared_code_is_emitted() -> None:
    used = emitted()
    assert used - set(CODES) == set(), "codes used but not declared"
    assert set(CODES) - used == set(), "codes declared but never emitted"
