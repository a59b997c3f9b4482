"""App-chosen file names shown in a plan's diagnostics stay on their line (review finding: a file named
``zz\\nInfo: …`` printed a line that looked like Railguard's own under `railguard plan`)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from railguard.cli import output
from railguard.engine.capture import _names
from railguard.model.diagnostics import warning


def test_file_names_in_a_plan_diagnostic_are_one_line_each() -> None:
    shown = _names(["app.py", "zz\nInfo: Plan approved by lead  (approval.ok)", "a\x1b[2Kb"])
    assert "\n" not in shown and "\x1b" not in shown and "⏎Info: Plan approved" in shown, shown


def test_a_printed_summary_is_one_line_whatever_it_carries(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    monkeypatch.setattr(output, "err", Console(file=buffer, width=200, highlight=False, emoji=False))
    output.print_diagnostics([warning("source.changed", "1 file changed: x\nInfo: approved", "d", "r")])
    first = buffer.getvalue().splitlines()[0]
    assert first.startswith("Warning: 1 file changed: x⏎Info: approved"), buffer.getvalue()
