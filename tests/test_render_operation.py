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


def test_approve_shows_the_plan_without_telling_the_approver_to_ask_for_an_approval() -> None:
    """`railguard approve` printed the plan's footer "It needs an approval ...: ask them to run railguard approve"
    right above its own prompt."""
    from railguard.engine import planner
    from railguard.model.plans import Effect, Verdict
    from railguard.model.resources import desired_resources
    from railguard.model.specfile import parse_spec

    spec, problems = parse_spec('[app]\nname = "a"\n[environments.production]\nedge_port = 18443\nprotected = true\n'
                                '[services.web]\nrun = ["python", "app.py"]\n')
    assert spec is not None, problems
    plan = planner.plan("production", desired_resources(spec, "production", "sha256:abc"), [], 0).model_copy(
        update={"id": "plan-1", "verdicts": [Verdict(rule="guard.protected_env", effect=Effect.require_approval,
                                                     message="protected", approvers=["approver"])]})
    with out.capture() as shown:
        render.plan(plan)
    assert "ask them to run" in shown.get()  # `plan` says what comes next
    with out.capture() as shown:
        render.plan(plan, next_step=False)
    assert "ask them to run" not in shown.get() and "production/service.web" in shown.get()
