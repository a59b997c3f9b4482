"""`railguard operations OP` shows a failed operation the way `apply` showed it live: which step failed and why.

The journal was a three-column table (at, step, phase); on an 80-column terminal the phase column was cut off, so
the failed step looked like every other, and the operation's diagnostic (cause and remediation) was not shown.
"""

from __future__ import annotations

from railguard.cli import render
from railguard.cli.output import err, out
from railguard.model.api import Operation


def test_a_failed_operation_shows_its_failed_step_and_its_diagnostic() -> None:
    at = "2026-12-02T14:01:40.291Z"
    record = Operation.model_validate({
        "id": "op-1", "env": "staging", "kind": "apply", "status": "failed", "principal": "user:root",
        "created_at": at, "updated_at": at,
        "journal": [
            {"step": "replace staging/service.web", "phase": "begin", "at": at},
            {"step": "staging/service.web: rehearse", "phase": "end", "at": at,
             "detail": {"note": "rehearsed on a copy in 0.44 s: column post.likes dropped"}},
            {"step": "replace staging/service.web", "phase": "fail", "at": at},
        ],
        "error": {"diagnostics": [{
            "code": "data.loss_detected", "severity": "error", "summary": "The release command would lose data",
            "detail": "its rehearsal lost a column", "remediation": "acknowledge it: --allow-data-loss post.likes",
            "address": "staging/service.web"}]},
    })
    with out.capture() as shown, err.capture() as problems:
        render.operation(record)
    text = shown.get() + problems.get()
    assert "✗ replace staging/service.web" in text, text
    assert "column post.likes dropped" in text  # the data guard's note
    assert "data.loss_detected" in text and "--allow-data-loss post.likes" in text, text
