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

from collections.abc import Callable
from pathlib import Path
from typing import Any

from railguard.engine.execute import Context, run_changes
from railguard.engine.observe import observe_into
from railguard.model.api import Operation, OperationStatus, PlanStatus, ReleaseStatus
from railguard.model.diagnostics import RailguardError, error
from railguard.model.plans import Action, Change, Plan
from railguard.model.resources import Resource, desired_digest
from railguard.providers.base import Provider
from railguard.state.store import Store


def verify_plan(store: Store, plan_id: str, current_desired_digest: str | None) -> Plan:
    """Load a saved plan and refuse it unless it is intact, clean, unused and current."""
    plan, stored_hash, status = store.load_plan(plan_id)
    return check_plan(plan_id, plan, stored_hash, status, store.serial(plan.env), current_desired_digest)


def check_plan(plan_id: str, plan: Plan, stored_hash: str, status: str, serial: int,
               current_desired_digest: str | None) -> Plan:
    """Refuse the plan loaded as ``plan_id`` unless it is intact, clean, unused, bound to ``serial`` and to the
    spec's digest."""
    recomputed = plan.content_hash()
    # The hash does not cover the id, so a body that names another plan is caught here.
    if recomputed != stored_hash or plan.hash != stored_hash or plan.id != plan_id:
        raise RailguardError(error(
            "plan.hash_mismatch", f"Plan {plan_id} was modified after it was saved",
            f"The plan was saved with hash {stored_hash}, but its content now hashes to {recomputed}. "
            "What would be applied is not what was reviewed.",
            f"Do not apply it. Make a new plan with `railguard plan --env {plan.env}` and review it.",
            address=plan_id, extra={"expected": stored_hash, "actual": recomputed},
        ))
    if status is not PlanStatus.saved:
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


def _release_body(desired: list[Resource], source: dict[str, Any] | None,
                  rollback_of: int | None = None) -> dict[str, Any]:
    return {
        "services": {r.name: {"fingerprint": r.fingerprint, "source": r.config.get("source")}
                     for r in desired if r.kind == "service"},
        "desired": [r.model_dump(mode="json") for r in desired],
        "source": source or {},
        "rollback_of": rollback_of,
    }


def execute(store: Store, *, env: str, kind: str, plan_id: str | None, changes: list[Change],
            desired: list[Resource], provider: Provider, principal: str, ctx: Context,
            source: dict[str, Any] | None = None, rollback_of: int | None = None,
            op_id: str | None = None, allow_data_loss: list[str] | None = None) -> Operation:
    """Run an operation's changes with a release record; return the operation record."""
    op_id = op_id or store.create_operation(env, kind, plan_id, principal)
    actionable = [c for c in changes if c.action is not Action.noop]
    release = None
    # A one-off command runs in a release that exists; it makes no new release and applies no spec.
    commands_only = bool(actionable) and all(c.action is Action.command for c in actionable)
    if any(c.kind == "service" for c in actionable) and not commands_only:
        release = store.add_release(env, plan_id, op_id, _release_body(desired, source, rollback_of))
    # A rollback goes back at once: never a canary of the release it restores.
    failure = run_changes(store, op_id, env, actionable, desired, provider, release, ctx, allow_data_loss,
                          canary_percent=100 if kind == "rollback" else None)
    status = OperationStatus.failed if failure else OperationStatus.succeeded
    if release is not None:
        store.finish_release(env, release, ReleaseStatus.failed if failure else ReleaseStatus.live)
    # A restore's target (the database with the backup to write back) is no part of the spec: the applied
    # spec keeps that database as it was applied. Every other database is part of the spec like a service.
    restored = {c.address for c in actionable if c.action is Action.restore}
    if restored:
        before = {str(r["address"]): Resource.model_validate(r) for r in store.last_spec(env) or []}
        desired = [r for r in desired if r.address not in restored] + [before[a] for a in sorted(restored)
                                                                       if a in before]
    if not failure and not commands_only:
        store.add_spec_snapshot(env, desired_digest(desired), [r.model_dump(mode="json") for r in desired])
    store.finish_operation(op_id, status, {"diagnostics": [d.model_dump(mode="json") for d in failure]}
                           if failure else None)
    what = f"release {release}" if release is not None else f"{len(actionable)} change(s)"
    store.add_event(env, f"{kind}.{status}", f"{kind} {status}: {what}"
                    + (f" (rollback to {rollback_of})" if rollback_of else "")
                    + (f": {failure[0].summary}" if failure else ""),
                    data={"operation": op_id, "plan": plan_id, "release": release})
    record = store.operation(op_id)
    assert record is not None
    return record


def apply_plan(store: Store, plan_id: str, provider: Provider, principal: str,
               current_desired_digest: str | None, ctx: Context | None = None,
               source: dict[str, Any] | None = None, op_id: str | None = None,
               check: Callable[[Plan], object] | None = None, env: str | None = None) -> Operation:
    """Apply a verified plan through ``provider``; return the operation record.

    Everything that can move while a job waits is checked under the lock, against the plan as
    stored now: its hash and status, the serial after a fresh observation of ``env`` (the plan's
    environment, read from the plan when not given), and ``check`` (policy and approvals), right
    before the first change. ``current_desired_digest`` is the request's fact about the spec.
    """
    env = env or store.load_plan(plan_id)[0].env
    with store.lock(operation=f"apply {plan_id}"):
        # Re-observe under the lock: a change to the live system since review makes the plan stale.
        observe_into(store, provider, env)
        plan = verify_plan(store, plan_id, current_desired_digest)
        if plan.env != env:
            raise RailguardError(error(
                "plan.hash_mismatch", f"Plan {plan_id} changed after it was submitted",
                f"It was submitted for '{env}' and now names '{plan.env}'.",
                f"Do not apply it. Make a new plan with `railguard plan --env {env}` and review it.",
                address=plan_id))
        if check is not None:
            check(plan)
        store.mark_plan(plan.id, PlanStatus.applying)
        record = execute(store, env=plan.env, kind="apply", plan_id=plan.id, changes=plan.changes,
                         desired=plan.desired, provider=provider, principal=principal,
                         ctx=ctx or Context(Path("."), Path(".")), source=source, op_id=op_id,
                         allow_data_loss=plan.allow_data_loss)
        succeeded = record.status is OperationStatus.succeeded
        store.mark_plan(plan.id, PlanStatus.applied if succeeded else PlanStatus.failed)
    return record
