"""docs/diagnostics.md lists exactly the codes the code base can emit."""

from __future__ import annotations

import re
from pathlib import Path

from railguard.model.diagnostics import CODES

ROOT = Path(__file__).resolve().parents[1]
# Any string literal shaped like a code whose group is a diagnostic group ("spec.", "rollout.", ...).
LITERAL = re.compile(r"""["']([a-z]+\.[a-z_]+)["']""")
GROUPS = {code.split(".")[0] for code in CODES}
# Literals of the same shape that are not codes: event kinds (passed to add_event, or named *_EVENT) and file names.
EVENT_KIND = re.compile(r"""add_event\(\s*[^,()]+,\s*["']([a-z]+\.[a-z_]+)["']""")
EVENT_CONSTANT = re.compile(r"""^[A-Z_]*_EVENT(?:: str)? = ["']([a-z]+\.[a-z_]+)["']""", re.MULTILINE)
FILE_SUFFIXES = {"db", "log", "out", "sock", "pid", "lock", "json", "toml", "html"}


def documented() -> set[str]:
    text = (ROOT / "docs" / "diagnostics.md").read_text()
    return set(re.findall(r"^\| `([a-z]+\.[a-z_]+)` \|", text, flags=re.MULTILINE))


def emitted() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "src" / "railguard").rglob("*.py"):
        if path.name == "diagnostics.py":  # the declarations themselves are not emissions
            continue
        text = path.read_text()
        events = set(EVENT_KIND.findall(text)) | set(EVENT_CONSTANT.findall(text))
        found |= {c for c in LITERAL.findall(text)
                  if c.split(".")[0] in GROUPS and c.split(".")[1] not in FILE_SUFFIXES and c not in events}
    return found


def test_docs_list_exactly_the_declared_codes() -> None:
    assert documented() == set(CODES)


def test_every_emitted_code_is_declared_and_every_declared_code_is_emitted() -> None:
    used = emitted()
    assert used - set(CODES) == set(), "codes used but not declared"
    assert set(CODES) - used == set(), "codes declared but never emitted"
