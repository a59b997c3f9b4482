"""Applying a saved plan: exactly what was reviewed, or nothing.

Before any change reaches a provider the plan must pass every check: its stored
content still matches its hash (not tampered), it has no errors, it was not applied
already, the environment's state serial is still the one it was computed against
(re-observed under the lock, so a live change since the review is caught), and the
spec on disk still asks for the same resources. Then each change runs in plan order,
journaled before and after, and the store records the new live state. Called by
``railguard apply``.
"""

from __future__ import annotations

from typing import Any

from railguard.model.diagnostics import Diagnostic, RailguardError, error
from railguard.model.plans import Plan
from railguard.providers.base import ApplyRequest, ObserveRequest, Provider
from railguard.state.store import Store


def verify_plan(store: Store, plan_id: str, current_desired_digest: str | None) -> Plan:
    """Load a saved plan and refuse it unless it is intact, clean, unused and current."""
    plan, stored_hash, status = store.load_plan(plan_id)
    recomputed = plan.content_hash()
    if recomputed != stored_hash or plan.hash != stored_hash:
        raise RailguardError(error(
            "plan.hash_mismatch", f"Plan {plan_id} was modified after it was saved",
            f"The plan was saved with hash {stored_hash}, but its content now hashes to {recomputed}. "
            "What would be applied is not what was reviewed.",
            f"Do not apply it. Make a new plan with `railguard plan --env {plan.env}` and review it.",
            address=plan_id, extra={"expected": stored_hash, "actual": recomputed},
        ))
    if status != "saved":
        raise RailguardError(error(
            "plan.already_applied", f"Plan {plan_id} was already used ({status})",
            "A plan is applied at most once; the live state has moved since it was made.",
            f"Make a new plan with `railguard plan --env {plan.env}`.", address=plan_id,
        ))
    if plan.errored:
        raise RailguardError(error(
            "plan.errored", f"Plan {plan_id} has errors",
            "The plan carries error diagnostics, so it does not describe a complete change.",
            f"Fix the errors it lists, then run `railguard plan --env {plan.env}` again.", address=plan_id,
            extra={"diagnostics": [d.model_dump(mode="json") for d in plan.diagnostics if d.is_error]},
        ))
    serial = store.serial(plan.env)
    if serial != plan.base_serial:
        raise RailguardError(error(
            "plan.stale", f"Plan {plan_id} is stale",
            f"It was computed against state serial {plan.base_serial} of '{plan.env}', which is now at "
            f"{serial}: the live state or the applied spec changed after the plan was reviewed.",
            f"Make a new plan with `railguard plan --env {plan.env}`, review it, and apply that one.",
            address=plan_id, extra={"base_serial": plan.base_serial, "current_serial": serial},
        ))
    if current_desired_digest is not None and current_desired_digest != plan.desired_digest:
        raise RailguardError(error(
            "plan.spec_changed", f"The spec changed since plan {plan_id}",
            "The spec on disk (or the app source) now asks for something other than what the plan was "
            "computed for, so the reviewed plan no longer describes the intent.",
            f"Make a new plan with `railguard plan --env {plan.env}` and review it.", address=plan_id,
        ))
    return plan


def apply_plan(store: Store, plan_id: str, provider: Provider, principal: str,
               current_desired_digest: str | None) -> dict[str, Any]:
    """Apply a verified plan through ``provider``; return the operation record."""
    plan, _, _ = store.load_plan(plan_id)
    with store.lock(operation=f"apply {plan_id}"):
        # Re-observe under the lock: a change to the live system since review makes the plan stale.
        store.record_observed(plan.env, provider.observe(ObserveRequest(env=plan.env)).resources)
        plan = verify_plan(store, plan_id, current_desired_digest)
        op_id = store.create_operation(plan.env, "apply", plan.id, principal)
        store.mark_plan(plan.id, "applying")
        desired = {r.address: r for r in plan.desired}
        failure: list[Diagnostic] = []
        for change in plan.actionable:
            step = f"{change.action.value} {change.address}"
            store.journal(op_id, step, "begin", {"risk": change.risk.value})
            response = provider.apply_change(ApplyRequest(
                env=plan.env, change=change, desired=desired.get(change.address), operation_id=op_id))
            if not response.ok:
                failure = list(response.diagnostics)
                store.journal(op_id, step, "fail", {"diagnostics": [d.model_dump(mode="json") for d in failure]})
                break
            store.set_observed(plan.env, response.observed, change.address)
            store.journal(op_id, step, "end")
        status = "failed" if failure else "succeeded"
        store.mark_plan(plan.id, "failed" if failure else "applied")
        if not failure:
            store.add_spec_snapshot(plan.env, plan.desired_digest, [r.model_dump(mode="json") for r in plan.desired])
        store.finish_operation(op_id, status, {"diagnostics": [d.model_dump(mode="json") for d in failure]}
                               if failure else None)
        store.add_event(plan.env, f"apply.{status}", f"plan {plan.id}: {len(plan.actionable)} change(s) {status}",
                        data={"operation": op_id, "plan": plan.id})
    record = store.operation(op_id)
    assert record is not None
    return record
