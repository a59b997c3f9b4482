"""Rollback: run an earlier release again, exactly as it ran.

The target release's frozen desired resources (artifact digest, resolved config) are
planned against the live state like any spec, and the changes run through the same
journaled executor, so a rollback is an operation and a new release entry: history
stays linear. The local provider makes it instant when the target's replicas are
still warm; otherwise they are started from the release's artifact and health-gated.
Nothing is rebuilt from the working tree. A canary in progress is aborted first (:mod:`.canaryabort`): a
rollback goes back at once. Called by the daemon for ``railguard rollback``.
"""

from __future__ import annotations

from railguard.engine import canaryabort, planner, schemacheck
from railguard.engine.apply import execute
from railguard.engine.execute import Context
from railguard.engine.guard import facts, require
from railguard.engine.observe import observe_for_plan
from railguard.model.api import Operation, OperationStatus, Release
from railguard.model.diagnostics import RailguardError, error
from railguard.model.plans import Effect, Plan
from railguard.model.principals import Permission, Principal, Role
from railguard.policy.guardrails import evaluate
from railguard.providers.base import Provider
from railguard.state import datarecords
from railguard.state.store import Store


def pick_target(store: Store, env: str, to: int | None) -> Release:
    if to is not None:
        found = store.release(env, to)
        if found is None or not found.status.ran_healthy:
            raise RailguardError(error(
                "rollback.no_target", f"Release {to} cannot be rolled back to",
                f"Environment '{env}' has " + (f"release {to} with status {found.status}; only releases that "
                                               "ran healthy can be restored." if found else f"no release {to}."),
                f"List releases with `railguard releases --env {env}` and pick one marked live or superseded.",
                address=f"{env}/release.{to}"))
        return found
    live = store.live_release(env)
    # The candidates without their desired resources (parsing every superseded release's resources to pick one was
    # most of a rollback's checks in a long history); the one picked is read whole.
    found = next((r for r in store.superseded_before(env, live.number if live else None, desired=False)
                  if live is None or r.services != live.services), None)
    target = store.release(env, found.number) if found is not None else None
    if target is None:
        raise RailguardError(error(
            "rollback.no_target", "There is no earlier healthy release",
            f"Environment '{env}' has no superseded release that differs from the live one, so there is "
            "nothing to roll back to.",
            f"List releases with `railguard releases --env {env}`; deploy a fix with `railguard plan`.",
            address=env))
    return target


def rollback_plan(store: Store, env: str, provider: Provider | None,
                  to: int | None) -> tuple[Release, Plan, str | None]:
    """The release to restore, the (unsaved) plan that restores it against the live state, and the schema
    check's note (the expand case; it refuses old code on a newer schema).

    Without a ``provider`` nothing is observed: the plan is made against the state as last
    recorded, reading the store only (the pre-check before a rollback is queued).
    """
    target = pick_target(store, env, to)
    note = schema_note(store, env, target)
    desired = list(target.desired)
    inventory, serial = observe_for_plan(store, provider, env, desired)
    computed = planner.plan(env, desired, inventory, serial)
    return target, computed.model_copy(update={"id": f"rollback-{env}-{target.number}"}), note


def schema_note(store: Store, env: str, target: Release) -> str | None:
    """Check ``target``'s code against the live schema (see :func:`schemacheck.check`). The history is read
    only when the target recorded no schema of its own, and without its desired resources."""
    recorded = target.data is not None and bool(target.data.schemas)
    known = target if recorded or not target.services else schemacheck.with_known_schema(
        target, store.releases(env, None, desired=False))
    return schemacheck.check(env, known, datarecords.live_schemas(store, env))


def check_rollback(store: Store, plan: Plan, principal: Principal) -> None:
    """A rollback is an emergency path, not a way around review: in a protected environment it may
    restore replaced services at once (for deployers and admins), but anything else a plan would
    need approval for (deletes, an agent acting, a freeze, weakened safety, your own rules) must go
    through `railguard plan` and an approval."""
    require(principal, Permission.apply, plan.env)
    verdicts = evaluate(plan, facts(store, plan, principal))
    blocking = [v for v in verdicts if v.effect in (Effect.require_approval, Effect.deny)
                and not (v.rule == "guard.protected_env" and principal.role is not Role.agent)]
    if blocking:
        raise RailguardError(error(
            "policy.approval_required", f"This rollback of '{plan.env}' needs review",
            "; ".join(f"{v.rule}: {v.message}" for v in blocking) + ".",
            f"Restore the release through review instead: check out its spec, run `railguard plan --env {plan.env}` "
            "and have it approved.", address=plan.env,
            extra={"verdicts": [v.model_dump(mode="json") for v in blocking]}))


def rollback(store: Store, env: str, provider: Provider, principal: Principal, ctx: Context, to: int | None = None,
             op_id: str | None = None) -> Operation:
    with store.lock(operation=f"rollback {env}"):
        target, computed, note = rollback_plan(store, env, provider, to)  # checked once, under the lock
        check_rollback(store, computed, principal)
        if note is not None and op_id is not None:
            store.journal(op_id, "schema-check", "end", {"note": note})
        # Back at once: a canary beside the live release is aborted first (observation reports the live release
        # only, so the plan alone would leave the canary taking its share), recorded as `railguard abort` is.
        created = op_id is None  # (the daemon's runner settles its own operations when this raises)
        op_id = op_id or store.create_operation(env, "rollback", None, principal.id)
        try:
            aborted = canaryabort.abort_all(store, provider, env, principal.id, op_id)
        except RailguardError as exc:
            if created:
                store.finish_operation(op_id, OperationStatus.failed,
                                       {"diagnostics": [d.model_dump(mode="json") for d in exc.diagnostics]})
            raise
        if aborted:
            # What runs now (an abort may have put back a live release a cut-off promotion had replaced).
            target, computed, _ = rollback_plan(store, env, provider, target.number)
            check_rollback(store, computed, principal)
        return execute(store, env=env, kind="rollback", plan_id=None, changes=computed.changes,
                       desired=computed.desired, provider=provider, principal=principal.id, ctx=ctx,
                       source=target.source, rollback_of=target.number, op_id=op_id)
