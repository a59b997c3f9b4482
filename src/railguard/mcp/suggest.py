"""Next actions: the concrete tool calls that make sense after a result, with their arguments.

A model should never have to guess the next step: after a plan that needs approval it is
``request_approval``; after an apply refused as stale it is a new ``plan``; after a queued operation
it is ``get_operation`` with a wait. These rules are pure functions of the result (and the tool's
arguments); :mod:`railguard.mcp.diagnose` adds the ones that need the live state (roll back to
which release). Used by the server (after errors) and the tool modules.
"""

from __future__ import annotations

import re
from typing import Any

from railguard.mcp.briefs import promote_from
from railguard.mcp.outputs import NextAction
from railguard.mcp.results import act
from railguard.model.api import OperationStatus, OperationSummary, PlanAnswer, PlanStatus
from railguard.model.diagnostics import Diagnostic
from railguard.model.plans import Effect

_SOURCE = re.compile(r"has not run healthy in '([^']+)'")


def follow(op_id: str) -> NextAction:
    return act("get_operation", "Follow it until it ends (the call waits up to wait_s seconds).",
               operation_id=op_id, wait_s=30)


def after_plan(plan: PlanAnswer, proposed: bool, status: PlanStatus | None = PlanStatus.saved) -> list[NextAction]:
    """What to do with a saved plan, from its flags and verdicts."""
    summary = plan.summary
    plan_id, env, decision = plan.id, plan.env, summary.decision
    if summary.errored:
        return [act("validate_spec", "See every problem of the spec at once, with lines and remediation.")]
    if not summary.applyable:
        return [act("get_status", "Nothing to change: the live state matches the spec.", env=env)]
    if status not in (None, PlanStatus.saved):
        return [act("plan", f"This plan is {status}; make a fresh one.", env=env)]
    if decision == Effect.deny:
        rules = {v.rule for v in plan.verdicts}
        source = promote_from(plan)
        if "guard.promotion" in rules and source:
            return [act("promote", f"Protected environments run only artifacts proven in '{source}'.",
                        from_env=source, to_env=env),
                    act("list_policies", "See the rules that apply.", env=env)]
        return [act("list_policies", "A policy denies this plan; see which rules apply.", env=env)]
    actions = []
    if decision == Effect.require_approval:
        actions += [act("request_approval", "A person must approve this exact plan before it can be applied.",
                        plan_id=plan_id, env=env),
                    act("approval_status", "Check whether it was approved.", plan_id=plan_id)]
    if proposed:
        return actions + [act("show_plan", "Review it. To apply it, save the proposed text as the spec file first: "
                              "apply_plan refuses a plan the spec on disk does not ask for.", plan_id=plan_id)]
    if decision != Effect.require_approval:
        actions.append(act("apply_plan", "Apply exactly this reviewed plan.", plan_id=plan_id, env=env))
    return actions


def after_operation(op: OperationSummary) -> list[NextAction]:
    if op.status.in_flight:
        return [follow(op.id)]
    if op.status is OperationStatus.failed:
        return [act("diagnose", "Find out why it failed and what to do.", env=op.env, operation_id=op.id)]
    return [act("get_status", "Check the live state after the change.", env=op.env)]


# args: the tool's validated arguments as JSON (Args.model_dump()): any tool's, so only their common keys are read.
def after_error(tool: str, args: dict[str, Any], diagnostics: tuple[Diagnostic, ...]) -> list[NextAction]:
    """Next calls after a refused or failed call, from the first diagnostic's code."""
    if not diagnostics:
        return []
    first = diagnostics[0]
    code, group = first.code, first.code.split(".")[0]
    env = args.get("env") or args.get("to_env")
    plan_id = args.get("plan_id")
    if code == "policy.approval_required" and plan_id:
        return [act("request_approval", "A person must approve this exact plan first.", plan_id=plan_id, env=env),
                act("approval_status", "Check whether it was approved.", plan_id=plan_id)]
    if code in ("policy.denied", "policy.frozen"):
        sources = [m.group(1) for v in first.extra.get("verdicts", []) if (m := _SOURCE.search(v.get("message", "")))]
        head = [act("promote", "Promote the artifact proven there instead.", from_env=sources[0], to_env=env)] \
            if sources and env else []
        return head + ([act("list_policies", "See the rules that apply.", env=env)] if env else [])
    if code in ("plan.stale", "plan.spec_changed", "plan.already_applied") and env:
        return [act("plan", "Make a fresh plan from the current spec and live state.", env=env)]
    if code == "plan.not_found":
        return [act("list_plans", "See the saved plans.", env=env)]
    if code == "mcp.env_mismatch" and plan_id:
        return [act("show_plan", "See which environment the plan is for.", plan_id=plan_id)]
    if code == "operation.busy" and first.extra.get("operation"):
        return [follow(str(first.extra["operation"]))]
    if code == "operation.not_found":
        return [act("list_operations", "See the recent operations.", env=env)]
    if code == "rollback.no_target" and env:
        return [act("list_releases", "See which releases exist.", env=env)]
    if code == "spec.unknown_environment":
        return [act("whoami", "See the environments the spec defines.")]
    if group == "spec" and tool != "validate_spec" and not args.get("spec_text"):
        return [act("validate_spec", "See every problem of the spec with its line and remediation.")]
    if group == "auth":
        return [act("whoami", "See who the server acts as and which tools it may use.")]
    return []
