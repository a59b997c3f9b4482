"""Spec validation golden files: tests/golden/specs/<name>.toml -> <name>.expected.json.

Each expected file lists every diagnostic (code, severity, address, line, suggestion)
that ``railguard validate`` must report for the spec, all at once. UPDATE_GOLDEN=1
rewrites them after an intended change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from railguard.model.specfile import parse_spec

GOLDEN = Path(__file__).parent / "golden" / "specs"
CASES = sorted(p.stem for p in GOLDEN.glob("*.toml"))


def run_case(name: str) -> dict[str, Any]:
    spec, diagnostics = parse_spec((GOLDEN / f"{name}.toml").read_text(), file=f"{name}.toml")
    return {
        "parsed": spec is not None,
        "diagnostics": [
            {"code": d.code, "severity": d.severity.value, "address": d.address, "line": d.line,
             "suggestion": d.extra.get("suggestion")}
            for d in diagnostics
        ],
    }


@pytest.mark.parametrize("name", CASES)
def test_spec_golden(name: str) -> None:
    got = run_case(name)
    path = GOLDEN / f"{name}.expected.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(path.read_text())


@pytest.mark.parametrize("name", CASES)
def test_every_diagnostic_is_complete(name: str) -> None:
    _, diagnostics = parse_spec((GOLDEN / f"{name}.toml").read_text(), file=f"{name}.toml")
    for d in diagnostics:
        assert d.summary and d.detail and d.remediation
        assert d.file == f"{name}.toml"
        assert "Traceback" not in d.detail
