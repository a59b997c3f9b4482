"""Finishing operations a killed daemon left in flight.

Runs once when the daemon starts, after the provider re-adopted its processes (and
stopped any replicas that were never routed). Each interrupted operation is settled
from facts, not hopes: re-observe, and if every change of the operation is now live
the operation succeeded; otherwise it failed, naming the step it stopped at and the
changes that did not happen. The edge is never half-switched: a switch is one atomic
edge update, so each service runs either its old or its new release. A service changed as a canary (its canary
step ended and the runtime still runs it) counts as changed, as the canary rollout leaves it; a rollback killed
while it aborted a canary has that abort finished first (:mod:`railguard.engine.canaryabort`).
"""

from __future__ import annotations

from railguard.engine import canaryabort
from railguard.engine.observe import observe_into
from railguard.model.api import Operation, OperationStatus, PlanStatus, ReleaseStatus
from railguard.model.diagnostics import RailguardError, error
from railguard.model.plans import Action
from railguard.model.resources import Resource, desired_digest
from railguard.providers.base import DescribeRequest, Provider
from railguard.state.store import Store


def recover(store: Store, provider: Provider) -> list[str]:
    notes: list[str] = []
    for op in store.unfinished_operations():
        env = op.env
        try:  # a rollback killed while it aborted a canary: finish the abort (what it had decided, toward safety)
            notes += canaryabort.finish_interrupted(store, provider, op)
        except (RailguardError, OSError) as exc:
            notes.append(f"operation {op.id}: the canary abort it began could not be finished: {exc}")
        observed = observe_into(store, provider, env)
        live = {o.address: o.fingerprint for o in observed}
        release = store.release_of_operation(env, op.id)
        if release is not None:
            live |= _canaries(provider, op, release.number, list(release.desired))
        wanted: list[tuple[str, str | None, Action]]
        unknowable = False
        if op.plan_id:
            try:
                plan, _, _ = store.load_plan(op.plan_id)
                wanted = [(c.address, c.after_fingerprint, c.action) for c in plan.actionable]
            except RailguardError:  # a damaged plan must not keep the daemon from starting
                wanted, unknowable = [], True
        elif release is not None:
            wanted = [(r.address, r.fingerprint, Action.replace) for r in release.desired]
        else:
            wanted, unknowable = [], True  # nothing recorded to compare with: never call it a success
        missing = [a for a, fp, action in wanted
                   if (action is Action.delete and a in live) or (action is not Action.delete and live.get(a) != fp)]
        queued = op.status is OperationStatus.queued
        if (queued or unknowable) and not wanted:
            missing = ["(the operation never started)" if queued else "(what it changed cannot be checked)"]
        last = next((j for j in reversed(op.journal) if j.phase == "begin"), None)
        where = last.step if last else "before its first step"
        # Only a release still pending is settled here: one that went live before the crash stays as it is.
        pending = release if release is not None and release.status is ReleaseStatus.pending else None
        planned = store.plan_record(op.plan_id) if op.plan_id else None
        plan_status = planned.status if planned is not None else None
        if not missing:
            store.finish_operation(op.id, OperationStatus.succeeded)
            if pending is not None:
                store.finish_release(env, pending.number, ReleaseStatus.live)
            if release is not None:
                store.add_spec_snapshot(env, desired_digest(list(release.desired)),
                                        [r.model_dump(mode="json") for r in release.desired])
            if plan_status is PlanStatus.saved:  # it was applied before it was marked applying
                store.mark_plan(str(op.plan_id), PlanStatus.applying)
            if plan_status in (PlanStatus.saved, PlanStatus.applying):
                store.mark_plan(str(op.plan_id), PlanStatus.applied)
            note = f"operation {op.id} was interrupted at '{where}' but every change is live: succeeded"
        else:
            diag = error(
                "operation.interrupted", f"Operation {op.id} was interrupted",
                f"The daemon stopped during '{where}'. Each service runs either its old or its new release "
                f"(the edge switches atomically); these changes did not happen: {', '.join(missing)}.",
                f"Run `railguard status --env {env}` to see what runs, then `railguard plan --env {env}` "
                "and apply the new plan.", address=env, extra={"step": where, "not_applied": missing})
            store.finish_operation(op.id, OperationStatus.failed, {"diagnostics": [diag.model_dump(mode="json")]})
            if pending is not None:
                store.finish_release(env, pending.number, ReleaseStatus.failed)
            if plan_status in (PlanStatus.saved, PlanStatus.applying):
                store.mark_plan(str(op.plan_id), PlanStatus.failed)
            note = f"operation {op.id} was interrupted at '{where}': failed, not applied: {', '.join(missing)}"
        store.add_event(env, "operation.recovered", note, data={"operation": op.id})
        notes.append(note)
    return notes


def _canaries(provider: Provider, op: Operation, number: int, desired: list[Resource]) -> dict[str, str]:
    """The services whose change ``op`` made as a canary of its release ``number`` that still runs (its canary step
    ended; the runtime removes a canary cut off half-way): changed as asked, as a canary rollout leaves them."""
    ended = {j.step.rsplit(": ", 1)[0] for j in op.journal if j.phase == "end" and j.step.endswith(": canary")}
    if not ended:
        return {}
    try:
        units = provider.describe(DescribeRequest(env=op.env)).services
    except (RailguardError, OSError):
        return {}
    running = {f"{op.env}/service.{u.name}" for u in units if u.canary is not None and u.canary.release == number}
    return {r.address: r.fingerprint for r in desired if r.address in ended & running}
